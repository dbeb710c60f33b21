//! The in-process consumers the harness runs as child processes (so that their CPU and
//! memory can be measured like any other client's): walstream's library in typed and raw
//! mode, and the many-streams-on-one-thread scale test.

use std::time::{Duration, Instant};

use walstream::{Config, Event, EventKind, LogicalStream, Lsn, RetryPolicy, Row, Streaming};

/// How a consumer reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// `LogicalStream::next_event`: every event decoded, every column value decoded to its
    /// typed value, every commit acknowledged.
    Typed,
    /// `LogicalStream::next_raw`: undecoded pgoutput messages, counted by their tag; commits
    /// acknowledged with the end LSN read from the message.
    Raw,
}

/// Arguments of one consumer.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConsumeArgs {
    #[arg(long, value_enum)]
    pub(crate) mode: Mode,
    #[arg(long)]
    pub(crate) conninfo: String,
    #[arg(long)]
    pub(crate) slot: String,
    #[arg(long)]
    pub(crate) publication: String,
    /// Stop at the first commit after this many row changes.
    #[arg(long)]
    pub(crate) rows: u64,
    /// Protocol 2 with `streaming = on`.
    #[arg(long)]
    pub(crate) streamed: bool,
}

/// Arguments of the scale test's child.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ScaleArgs {
    /// idle: connect every stream, let them settle, report memory; busy: consume `rows` row
    /// changes on every stream concurrently.
    #[arg(long)]
    pub(crate) busy: bool,
    #[arg(long)]
    pub(crate) conninfo: String,
    /// Slots `<prefix>0` .. `<prefix><count - 1>`.
    #[arg(long)]
    pub(crate) slot_prefix: String,
    #[arg(long)]
    pub(crate) count: usize,
    #[arg(long)]
    pub(crate) publication: String,
    #[arg(long, default_value_t = 0)]
    pub(crate) rows: u64,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn builder(
    conninfo: &str,
    slot: &str,
    publication: &str,
    streamed: bool,
    raw: bool,
) -> Result<walstream::LogicalStreamBuilder, BoxError> {
    let config: Config = conninfo.parse()?;
    let mut b = LogicalStream::builder(config, slot)
        .publication(publication)
        .retry(RetryPolicy::never())
        .raw(raw);
    if streamed {
        b = b.proto_version(2).streaming(Streaming::On);
    }
    Ok(b)
}

fn decode_row(row: &Row, fields: &mut u64) -> Result<(), BoxError> {
    for field in row.typed()? {
        std::hint::black_box(field?);
        *fields += 1;
    }
    Ok(())
}

/// Counts and fully decodes one event; returns whether it was a row change.
fn typed_event(ev: &Event, fields: &mut u64) -> Result<bool, BoxError> {
    let Some(change) = ev.kind().row_change() else {
        return Ok(false);
    };
    if let Some(new) = &change.new {
        decode_row(new, fields)?;
    }
    if let Some(old) = &change.old {
        decode_row(old.row(), fields)?;
    }
    Ok(true)
}

fn is_commit(ev: &Event) -> bool {
    matches!(ev.kind(), EventKind::Commit(_) | EventKind::StreamCommit(_))
}

/// What one stream consumed.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rows: u64,
    events: u64,
    fields: u64,
}

async fn consume_typed(mut stream: LogicalStream, target: u64) -> Result<Counts, BoxError> {
    let mut c = Counts::default();
    while let Some(ev) = stream.next_event().await? {
        c.events += 1;
        if typed_event(&ev, &mut c.fields)? {
            c.rows += 1;
        }
        if is_commit(&ev) {
            ev.ack();
            if c.rows >= target {
                break;
            }
        }
    }
    stream.shutdown().await?;
    Ok(c)
}

/// The end LSN of a Commit (`C`) or Stream Commit (`c`) message, if `data` is one.
fn commit_end_lsn(data: &[u8]) -> Option<Lsn> {
    // Commit: tag, flags u8, commit LSN, end LSN. Stream Commit: tag, xid u32, flags u8,
    // commit LSN, end LSN.
    let at = match data.first()? {
        b'C' => 10,
        b'c' => 14,
        _ => return None,
    };
    let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
    Some(Lsn(u64::from_be_bytes(bytes)))
}

async fn consume_raw(mut stream: LogicalStream, target: u64) -> Result<Counts, BoxError> {
    let mut c = Counts::default();
    let feedback = stream.feedback().clone();
    while let Some(x) = stream.next_raw().await? {
        c.events += 1;
        match x.data.first() {
            Some(b'I' | b'U' | b'D') => c.rows += 1,
            _ => {
                if let Some(end) = commit_end_lsn(&x.data) {
                    feedback.ack(end);
                    if c.rows >= target {
                        break;
                    }
                }
            }
        }
    }
    stream.shutdown().await?;
    Ok(c)
}

fn runtime() -> Result<tokio::runtime::Runtime, BoxError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `walstream-bench consume`: prints `rows N events N fields N`.
pub(crate) fn consume(args: &ConsumeArgs) -> Result<(), BoxError> {
    let rt = runtime()?;
    let counts = rt.block_on(async {
        let raw = args.mode == Mode::Raw;
        let stream = builder(
            &args.conninfo,
            &args.slot,
            &args.publication,
            args.streamed,
            raw,
        )?
        .start()
        .await?;
        if raw {
            consume_raw(stream, args.rows).await
        } else {
            consume_typed(stream, args.rows).await
        }
    })?;
    println!(
        "rows {} events {} fields {}",
        counts.rows, counts.events, counts.fields
    );
    Ok(())
}

fn own_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| crate::measure::parse_status_kb(&s, "VmRSS"))
        .unwrap_or(0)
}

/// `walstream-bench scale`: `count` streams on one current-thread runtime.
///
/// Idle: prints `rss_before_kb N rss_after_kb N` (after every stream connected and idled
/// for a second). Busy: prints `rows N events N seconds F`.
pub(crate) fn scale(args: &ScaleArgs) -> Result<(), BoxError> {
    let rt = runtime()?;
    rt.block_on(async {
        let before = own_rss_kb();
        let mut streams = Vec::with_capacity(args.count);
        for i in 0..args.count {
            let slot = format!("{}{i}", args.slot_prefix);
            let s = builder(&args.conninfo, &slot, &args.publication, false, false)?
                .start()
                .await?;
            streams.push(s);
        }
        if !args.busy {
            // Let every stream receive its first keepalives and settle.
            let tasks: Vec<_> = streams
                .into_iter()
                .map(|mut s| {
                    tokio::spawn(async move {
                        let r = tokio::time::timeout(Duration::from_secs(1), s.next_event()).await;
                        (s, r.is_ok())
                    })
                })
                .collect();
            let mut settled = Vec::new();
            for t in tasks {
                let (s, _) = t.await?;
                settled.push(s);
            }
            let after = own_rss_kb();
            println!("rss_before_kb {before} rss_after_kb {after}");
            for mut s in settled {
                s.shutdown().await?;
            }
            return Ok(());
        }
        let start = Instant::now();
        let tasks: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::spawn(consume_typed(s, args.rows)))
            .collect();
        let mut total = Counts::default();
        for t in tasks {
            let c = t.await??;
            total.rows += c.rows;
            total.events += c.events;
        }
        println!(
            "rows {} events {} seconds {:.3}",
            total.rows,
            total.events,
            start.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_end_lsns() {
        let mut commit = vec![b'C', 0];
        commit.extend_from_slice(&0x10u64.to_be_bytes());
        commit.extend_from_slice(&0x0123_4567_89abu64.to_be_bytes());
        commit.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(commit_end_lsn(&commit), Some(Lsn(0x0123_4567_89ab)));
        let mut stream = vec![b'c', 0, 0, 0, 7, 0];
        stream.extend_from_slice(&0x10u64.to_be_bytes());
        stream.extend_from_slice(&0x20u64.to_be_bytes());
        assert_eq!(commit_end_lsn(&stream), Some(Lsn(0x20)));
        assert_eq!(commit_end_lsn(&commit[..12]), None);
        assert_eq!(commit_end_lsn(b"I"), None);
        assert_eq!(commit_end_lsn(b""), None);
    }
}
