//! `walstream tail` and `walstream record`: a logical slot to events or to a capture file.
use std::path::PathBuf;

use walstream::{AssemblyOptions, TwoPhaseDelivery};
use walstream_conn::ReplicationMode;
use walstream_proto::CaptureWriter;

use crate::error::CliError;
use crate::output::{Format, Renderer};
use crate::stream::{self, Limits, Output, Sink, SlotStreamArgs};

/// Arguments of `walstream tail`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream tail -d 'host=db user=rep dbname=app' -S s1 -P p1 --create-slot --if-not-exists
  walstream tail -d postgresql://rep@db/app -S s1 -P p1,p2 --format pretty
  walstream tail -d ... -S s1 -P p1 --endpos 0/3000060 -o changes.jsonl
  walstream tail -d ... -S s1 -P p1 --streaming on --messages --format jsonl | jq .
  walstream tail -d ... -S s1 -P p1 --streaming on --transactions --memory-limit 256M
  walstream tail -d ... -S s1 -P p1 --no-resolve-types   # user types as the server's text

The server needs wal_level = logical, a publication (CREATE PUBLICATION p1 FOR ALL TABLES)
and a role with REPLICATION. Values of user-defined types (enums, domains, arrays, ranges,
composites) are typed in the output: their types are looked up in the catalog over a second,
ordinary connection (the role needs to be able to log in to the database);
--no-resolve-types writes them as the server's text instead. Output is acknowledged to the server only after it is written
(and, for -o FILE, synced); Ctrl-C or SIGTERM sends a final acknowledgement and exits 0, so
the next run resumes after the last transaction written.")]
pub(crate) struct TailArgs {
    #[command(flatten)]
    pub(crate) stream: SlotStreamArgs,
    /// Output file (appended to; default standard output).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Output format: jsonl (one JSON object per event, docs/jsonl.md), debezium (Debezium
    /// change-event values, docs/debezium.md), pretty (readable), raw (one line per pgoutput
    /// message: LSN and hex bytes), none (decode every event and value fully, write nothing,
    /// acknowledge; the event count goes to standard error at the end: for benchmarks).
    #[arg(short = 'f', long, value_enum, default_value_t = TailFormat::Jsonl)]
    pub(crate) format: TailFormat,
    /// Debezium: the logical server name (`source.name`, topic prefix).
    #[arg(long, value_name = "NAME", default_value = "walstream")]
    pub(crate) debezium_server: String,
    /// Print whole transactions in commit order, each at its commit (begin, changes, commit;
    /// streamed transactions reassembled, rolled-back subtransactions left out), and
    /// acknowledge after the whole transaction is written. Not with --format raw.
    #[arg(long)]
    pub(crate) transactions: bool,
    /// With --transactions: memory for buffered changes before the largest open transaction
    /// spills to a temporary file (bytes, or with a K, M or G suffix: KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size, requires = "transactions")]
    pub(crate) memory_limit: usize,
    /// Do not look up user-defined types: enums, domains, composites and arrays or ranges of
    /// them are written as the server's text (JSON strings), and no second connection is
    /// opened. By default they are looked up in the catalog (pg_type, pg_enum, pg_attribute)
    /// over an ordinary connection with the same connection options.
    #[arg(long)]
    pub(crate) no_resolve_types: bool,
}

/// Parses `65536`, `64K`, `64M`, `1G` (also `KiB`/`MiB`/`GiB`, case-insensitive).
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, shift) = [
        ("gib", 30),
        ("mib", 20),
        ("kib", 10),
        ("g", 30),
        ("m", 20),
        ("k", 10),
    ]
    .iter()
    .find_map(|(suffix, shift)| lower.strip_suffix(suffix).map(|d| (d.trim(), *shift)))
    .unwrap_or((lower.as_str(), 0));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("not a size: {t:?} (e.g. 65536, 64K, 64M, 1G)"))?;
    n.checked_mul(1usize << shift)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("size out of range: {t:?}"))
}

/// Formats `tail` supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TailFormat {
    /// One JSON object per event.
    Jsonl,
    /// Debezium change-event values.
    Debezium,
    /// Readable lines.
    Pretty,
    /// LSN and hex bytes of each pgoutput message.
    Raw,
    /// Nothing written: every event and value decoded, acknowledged, counted on stderr.
    None,
}

impl From<TailFormat> for Format {
    fn from(f: TailFormat) -> Self {
        match f {
            TailFormat::Jsonl => Self::Jsonl,
            TailFormat::Debezium => Self::Debezium,
            TailFormat::Pretty => Self::Pretty,
            TailFormat::Raw => Self::Raw,
            TailFormat::None => Self::None,
        }
    }
}

/// Arguments of `walstream record`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream record -d 'host=db user=rep dbname=app' -S s1 -P p1 -o changes.cap --endpos 0/3000060
  walstream decode changes.cap --format pretty

The capture holds every replication message (XLogData with its LSNs, keepalives) as frames of
a u32 big-endian length and the message; `walstream decode` turns it into events offline.
The slot is acknowledged as with `tail`, after the capture is synced.")]
pub(crate) struct RecordArgs {
    #[command(flatten)]
    pub(crate) stream: SlotStreamArgs,
    /// The capture file to write (appended to).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub(crate) output: PathBuf,
}

fn limits(args: &SlotStreamArgs) -> Limits {
    Limits {
        endpos: args.endpos,
        ..Limits::default()
    }
}

pub(crate) async fn tail(args: &TailArgs) -> Result<(), CliError> {
    if args.transactions && args.format == TailFormat::Raw {
        return Err(CliError::usage(
            "--transactions prints decoded transactions; it cannot be used with --format raw",
        ));
    }
    let out = Output::open(args.output.as_deref())?;
    let shutdown = stream::shutdown_on_signals();
    let client =
        crate::conn::connect(args.stream.conninfo.as_deref(), ReplicationMode::Logical).await?;
    let mut opened = stream::open(&args.stream, client).await?;
    // Raw output prints the bytes: nothing to decode.
    if !args.no_resolve_types && args.format != TailFormat::Raw {
        let config = crate::conn::config(args.stream.conninfo.as_deref(), ReplicationMode::Off)?;
        opened = opened.resolve_types(&config);
    }
    let renderer = if args.format == TailFormat::Debezium {
        let config =
            crate::conn::config(args.stream.conninfo.as_deref(), ReplicationMode::Logical)?;
        let db = config
            .effective_dbname()
            .unwrap_or_else(|| "postgres".to_owned());
        Renderer::debezium(&args.debezium_server, &db)
    } else {
        Renderer::new(args.format.into())
    };
    let sink = Sink::Render {
        renderer: Box::new(renderer),
        out,
        assembly: args.transactions.then_some(AssemblyOptions {
            memory_limit: args.memory_limit,
            two_phase: TwoPhaseDelivery::AtPrepare,
        }),
    };
    let summary = stream::run(opened, sink, &limits(&args.stream), shutdown).await?;
    stream::check_stop(&summary)
}

pub(crate) async fn record(args: &RecordArgs) -> Result<(), CliError> {
    let out = Output::open(Some(&args.output))?;
    let shutdown = stream::shutdown_on_signals();
    let client =
        crate::conn::connect(args.stream.conninfo.as_deref(), ReplicationMode::Logical).await?;
    let opened = stream::open(&args.stream, client).await?;
    let sink = Sink::Capture {
        writer: CaptureWriter::new(out),
    };
    let summary = stream::run(opened, sink, &limits(&args.stream), shutdown).await?;
    stream::check_stop(&summary)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
