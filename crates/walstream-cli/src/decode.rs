//! `walstream decode`: a capture file to events, offline.
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::PathBuf;

use bytes::BytesMut;
use walstream::{DecodeOptions, LogicalDecoder, Lsn, LsnFeedback};
use walstream_proto::{CaptureDecoder, CaptureKind, ReplicationMessage};

use crate::error::CliError;
use crate::output::{Format, Renderer};

/// Arguments of `walstream decode`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream decode changes.cap                   # JSON lines on stdout
  walstream decode changes.cap --format pretty   # readable lines
  walstream decode changes.cap --format count    # events by kind and by table
  walstream decode old.cap --proto-version 1     # a capture of a protocol-1 stream

The file is a capture written by `walstream record` (replication messages with their LSNs) or
a file of bare pgoutput messages (each frame a u32 big-endian length and the message), such as
crates/walstream-proto/tests/golden/*.bin; LSNs of the latter decode as 0/0.")]
pub(crate) struct DecodeArgs {
    /// The capture file (`-` for standard input).
    pub(crate) file: PathBuf,
    /// Output format.
    #[arg(long, short = 'f', value_enum, default_value_t = DecodeFormat::Jsonl)]
    pub(crate) format: DecodeFormat,
    /// pgoutput protocol version the stream was started with (1-4). Version 4 also reads
    /// streams of versions 1-3 unless they used parallel streaming.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub(crate) proto_version: u32,
    /// The stream was started with `streaming 'parallel'` (protocol 4: Stream Abort carries
    /// the abort LSN and time).
    #[arg(long)]
    pub(crate) parallel: bool,
    /// Debezium: the logical server name (`source.name`).
    #[arg(long, value_name = "NAME", default_value = "walstream")]
    pub(crate) debezium_server: String,
    /// Debezium: the database name (`source.db`).
    #[arg(long, value_name = "NAME", default_value = "postgres")]
    pub(crate) debezium_database: String,
}

/// Formats `decode` supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DecodeFormat {
    /// One JSON object per event (docs/jsonl.md).
    Jsonl,
    /// Debezium change-event values (docs/debezium.md).
    Debezium,
    /// Readable lines.
    Pretty,
    /// Counts by event kind and by table.
    Count,
}

impl From<DecodeFormat> for Format {
    fn from(f: DecodeFormat) -> Self {
        match f {
            DecodeFormat::Jsonl => Self::Jsonl,
            DecodeFormat::Debezium => Self::Debezium,
            DecodeFormat::Pretty => Self::Pretty,
            DecodeFormat::Count => Self::Count,
        }
    }
}

pub(crate) fn run(args: &DecodeArgs) -> Result<(), CliError> {
    let name = args.file.display().to_string();
    let input: Box<dyn io::Read> = if name == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(&args.file).map_err(|e| CliError::io(&name, &e))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    decode(input, args, &mut out).map_err(|e| e.context(&name))?;
    out.flush()
        .map_err(|e| CliError::io("writing standard output", &e))
}

/// Decodes every frame of `input` to `out`.
pub(crate) fn decode(
    input: impl io::Read,
    args: &DecodeArgs,
    out: &mut impl Write,
) -> Result<u64, CliError> {
    let options = DecodeOptions::new(args.proto_version).with_parallel_streaming(args.parallel);
    let feedback = LsnFeedback::new(Lsn(0));
    feedback.set_auto_ack(true);
    let mut decoder = LogicalDecoder::new(options, feedback);
    let mut renderer = if args.format == DecodeFormat::Debezium {
        Renderer::debezium(&args.debezium_server, &args.debezium_database)
    } else {
        Renderer::new(args.format.into())
    };
    let mut input = input;
    let mut capture = CaptureDecoder::new();
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut eof = false;
    let mut frames = 0u64;
    loop {
        let Some(payload) = capture.decode(&mut buf).map_err(corrupt)? else {
            if eof {
                capture.finish(&buf).map_err(corrupt)?;
                break;
            }
            eof = fill(&mut input, &mut buf).map_err(|e| CliError::io("reading", &e))? == 0;
            continue;
        };
        frames += 1;
        // Replication captures (`walstream record`) carry LSNs and keepalives; pgoutput
        // captures are bare messages whose LSNs decode as 0/0.
        let (wal_start, wal_end, data) = if capture.kind() == Some(CaptureKind::Replication) {
            match ReplicationMessage::decode(payload).map_err(corrupt)? {
                ReplicationMessage::XLogData(x) => (x.wal_start, x.wal_end, x.data),
                ReplicationMessage::PrimaryKeepalive(k) => {
                    decoder.handle_keepalive(k.wal_end);
                    continue;
                }
                _ => {
                    return Err(CliError::other(
                        "corrupt capture: an unexpected replication message",
                    )
                    .context(&format!("frame {frames}")));
                }
            }
        } else {
            (Lsn(0), Lsn(0), payload)
        };
        decoder
            .handle_xlog_data(wal_start, wal_end, data)
            .map_err(|e| CliError::from(e).context(&format!("frame {frames}")))?;
        while let Some(ev) = decoder.poll_event() {
            renderer.event(&ev, out)?;
        }
    }
    renderer.finish(out)?;
    tracing::info!(frames, kind = ?capture.kind(), events = renderer.events(), "decoded");
    Ok(renderer.events())
}

/// Read chunk size.
const CHUNK: usize = 1 << 16;

/// Appends up to [`CHUNK`] bytes of `src` to `buf`; 0 at the end of the input.
fn fill(src: &mut impl io::Read, buf: &mut BytesMut) -> io::Result<usize> {
    let start = buf.len();
    buf.resize(start + CHUNK, 0);
    let n = loop {
        let Some(space) = buf.get_mut(start..) else {
            break Ok(0);
        };
        match src.read(space) {
            Ok(n) => break Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(start + *n.as_ref().unwrap_or(&0));
    n
}

fn corrupt(e: walstream_proto::DecodeError) -> CliError {
    CliError::other(format!("corrupt capture: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../walstream-proto/tests/golden/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn run_on(name: &str, format: DecodeFormat, proto: u32) -> String {
        let args = DecodeArgs {
            file: PathBuf::from(name),
            format,
            proto_version: proto,
            parallel: false,
            debezium_server: "walstream".into(),
            debezium_database: "postgres".into(),
        };
        let mut out = Vec::new();
        decode(golden(name).as_slice(), &args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn decodes_every_golden_capture() {
        for (name, proto) in [
            ("pgoutput-v1-text.bin", 1),
            ("pgoutput-v1-binary.bin", 1),
            ("pgoutput-v1-narrow-inserts.bin", 1),
            ("pgoutput-v2-stream.bin", 2),
            ("pgoutput-v3-twophase.bin", 3),
            ("pgoutput-v3-twophase-binary.bin", 3),
        ] {
            let text = run_on(name, DecodeFormat::Jsonl, proto);
            assert!(!text.is_empty(), "{name}");
            for line in text.lines() {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
                assert!(v["kind"].is_string(), "{name}: {line}");
            }
            // Version 4 (the default) reads the older streams the same way.
            assert_eq!(run_on(name, DecodeFormat::Jsonl, 4), text, "{name}");
        }
    }

    #[test]
    fn debezium_envelopes() {
        let text = run_on("pgoutput-v1-text.bin", DecodeFormat::Debezium, 1);
        let values: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let first = values.first().unwrap();
        assert_eq!(first["op"], "c", "{first}");
        assert_eq!(first["source"]["connector"], "postgresql");
        assert_eq!(first["source"]["table"], "t_default");
        assert_eq!(first["after"]["id"], 1);
        assert!(values.iter().any(|v| v["op"] == "u"));
        assert!(values.iter().any(|v| v["op"] == "d"));
    }

    #[test]
    fn narrow_inserts_count() {
        // capture.sh: 2000 narrow inserts in 20 transactions.
        let text = run_on("pgoutput-v1-narrow-inserts.bin", DecodeFormat::Count, 1);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"insert\t2000"), "{text}");
        assert!(lines.contains(&"begin\t20"), "{text}");
        assert!(lines.contains(&"commit\t20"), "{text}");
    }

    #[test]
    fn text_capture_content() {
        let text = run_on("pgoutput-v1-text.bin", DecodeFormat::Jsonl, 1);
        // The first DML of capture.sh: INSERT INTO t_default VALUES (1, 'a', repeat('x', 3000)).
        let first_insert = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["kind"] == "insert")
            .unwrap();
        assert_eq!(first_insert["table"], "t_default");
        assert_eq!(first_insert["new"]["id"], 1);
        assert_eq!(first_insert["new"]["name"], "a");
        assert_eq!(
            first_insert["new"]["big"].as_str().map(str::len),
            Some(3000)
        );
        // The update that leaves the TOASTed column alone names it as unchanged.
        assert!(
            text.lines()
                .any(|l| l.contains(r#""kind":"update""#) && l.contains(r#""unchanged":["big"]"#)),
            "{text}"
        );
        // Pretty output renders every transaction.
        let pretty = run_on("pgoutput-v1-text.bin", DecodeFormat::Pretty, 1);
        assert!(
            pretty
                .lines()
                .any(|l| l.starts_with("INSERT    public.t_default  {id: 1, name: \"a\"")),
            "{pretty}"
        );
        assert_eq!(
            pretty.lines().filter(|l| l.starts_with("BEGIN")).count(),
            pretty.lines().filter(|l| l.starts_with("COMMIT")).count()
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let bytes = golden("pgoutput-v1-text.bin");
        let cut = bytes.get(..bytes.len() - 3).unwrap();
        let args = DecodeArgs {
            file: PathBuf::from("x"),
            format: DecodeFormat::Count,
            proto_version: 1,
            parallel: false,
            debezium_server: "walstream".into(),
            debezium_database: "postgres".into(),
        };
        let err = decode(cut, &args, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("corrupt capture"), "{err}");
    }

    /// A reader that hands out one byte per read, to cross every frame boundary.
    struct Trickle<'a>(&'a [u8]);

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn args(format: DecodeFormat) -> DecodeArgs {
        DecodeArgs {
            file: PathBuf::from("x"),
            format,
            proto_version: 1,
            parallel: false,
            debezium_server: "walstream".into(),
            debezium_database: "postgres".into(),
        }
    }

    #[test]
    fn replication_capture_read_byte_by_byte() {
        use walstream_proto::{
            CaptureReader, CaptureWriter, PgTimestamp, PrimaryKeepalive, XLogData,
        };
        // The golden pgoutput capture re-framed as `walstream record` writes it: XLogData
        // with LSNs, and a keepalive after every message.
        let mut w = CaptureWriter::new(Vec::new());
        let mut frame = BytesMut::new();
        let mut lsn = 0x100u64;
        for payload in CaptureReader::new(golden("pgoutput-v1-text.bin").into()) {
            lsn += 0x10;
            for msg in [
                ReplicationMessage::XLogData(XLogData {
                    wal_start: Lsn(lsn),
                    wal_end: Lsn(lsn),
                    send_time: PgTimestamp(5),
                    data: payload.unwrap(),
                }),
                ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                    wal_end: Lsn(lsn),
                    send_time: PgTimestamp(6),
                    reply_requested: false,
                }),
            ] {
                frame.clear();
                msg.encode(&mut frame);
                w.write_frame(&frame).unwrap();
            }
        }
        let bytes = w.into_inner();
        let mut out = Vec::new();
        decode(Trickle(&bytes), &args(DecodeFormat::Count), &mut out).unwrap();
        let count = run_on("pgoutput-v1-text.bin", DecodeFormat::Count, 1);
        assert_eq!(String::from_utf8(out).unwrap(), count);
        // The LSNs come from the XLogData headers.
        let mut out = Vec::new();
        decode(bytes.as_slice(), &args(DecodeFormat::Jsonl), &mut out).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
        assert_ne!(first["lsn"], "0/0", "{first}");
    }

    #[test]
    fn corrupt_frames_are_errors() {
        for bytes in [
            // An absurd length, a cut length, a truncated frame.
            &[0xff, 0xff, 0xff, 0xff, 0][..],
            &[0, 0][..],
            &[0, 0, 0, 9, b'B'][..],
            // A malformed XLogData, a replication message that never appears in captures.
            &[0, 0, 0, 2, b'w', 0][..],
        ] {
            let err = decode(bytes, &args(DecodeFormat::Count), &mut Vec::new()).unwrap_err();
            assert!(err.to_string().contains("corrupt capture"), "{err}");
        }
    }
}
