//! The streaming loop shared by `tail`, `record` and `demo`: slot set-up, START_REPLICATION,
//! decoding, writing, acknowledging after the output is flushed, and a clean stop.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::{Category, CliError};
use crate::output::Renderer;
use tokio::sync::watch;
use tokio::time::Instant;
use walstream::{
    AckHandle, Assembled, AssemblyOptions, DecodeOptions, EventKind, LogicalDecoder, Lsn,
    LsnFeedback, TransactionAssembler, TypeResolver,
};
use walstream_conn::{Client, CreateSlotOptions, FeedbackLsns, ReplicationStream, SnapshotAction};
use walstream_proto::{CaptureWriter, ReplicationMessage};

/// Connection and slot options shared by `tail` and `record`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SlotStreamArgs {
    /// Connection string: `host=db user=rep dbname=app` or `postgresql://rep@db/app`
    /// (unset parts come from PGHOST, PGUSER, ... and ~/.pgpass).
    #[arg(short = 'd', long = "dbname", value_name = "CONNINFO")]
    pub(crate) conninfo: Option<String>,
    /// The logical replication slot (pgoutput).
    #[arg(short = 'S', long)]
    pub(crate) slot: String,
    /// Publication name(s), comma-separated.
    #[arg(short = 'P', long, value_name = "P[,P...]")]
    pub(crate) publication: String,
    /// Create the slot first (pgoutput, no snapshot).
    #[arg(long)]
    pub(crate) create_slot: bool,
    /// With --create-slot: a temporary slot, dropped when walstream exits.
    #[arg(long, requires = "create_slot")]
    pub(crate) temporary: bool,
    /// With --create-slot: use the slot if it already exists.
    #[arg(long, requires = "create_slot")]
    pub(crate) if_not_exists: bool,
    /// Decode prepared transactions at PREPARE (PostgreSQL 15+; with --create-slot the slot
    /// is created with two-phase enabled).
    #[arg(long)]
    pub(crate) two_phase: bool,
    /// With --create-slot: synchronize the slot to standbys (PostgreSQL 17+).
    #[arg(long, requires = "create_slot")]
    pub(crate) failover: bool,
    /// Where to start (default: the slot's confirmed position).
    #[arg(long, value_name = "LSN")]
    pub(crate) start: Option<Lsn>,
    /// Stop cleanly (exit 0) once the stream reaches this position: after the last
    /// transaction that begins at or before it, or when the server is idle beyond it.
    #[arg(short = 'E', long, value_name = "LSN")]
    pub(crate) endpos: Option<Lsn>,
    /// pgoutput protocol version (default: the newest the server has: 14→2, 15→3, 16+→4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub(crate) proto_version: Option<u32>,
    /// Large transactions streamed before commit: off, on (protocol 2+), parallel (4+).
    #[arg(long, value_enum, default_value_t = Streaming::Off)]
    pub(crate) streaming: Streaming,
    /// Ask for values in binary format.
    #[arg(long)]
    pub(crate) binary: bool,
    /// Include logical messages (pg_logical_emit_message).
    #[arg(long)]
    pub(crate) messages: bool,
    /// Which changes by origin to send (PostgreSQL 16+): any, or none (only local changes).
    #[arg(long, value_enum)]
    pub(crate) origin: Option<Origin>,
    /// Seconds between status updates to the server.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) status_interval: f64,
    /// Latency budget of batched reads, in milliseconds: while messages arrive faster than
    /// one per budget, the socket is read once per budget instead of once per message (far
    /// less CPU; each message waits at most the budget + 1 ms; over a Unix-domain socket the
    /// reads are 100 µs apart). 0 reads every message as it arrives.
    #[arg(long, value_name = "MS", default_value_t = 1)]
    pub(crate) batch_latency: u64,
}

/// `streaming` option values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Streaming {
    /// Whole transactions at commit.
    Off,
    /// Stream large transactions in blocks (protocol 2+).
    On,
    /// Stream with parallel-apply information (protocol 4+).
    Parallel,
}

/// `origin` option values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Origin {
    /// Changes of any origin.
    Any,
    /// Only changes without an origin.
    None,
}

/// A started stream with its decoder.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) stream: ReplicationStream,
    pub(crate) decoder: LogicalDecoder,
    pub(crate) feedback: LsnFeedback,
    /// Looks up user-defined types (see [`Opened::resolve_types`]).
    pub(crate) resolver: Option<TypeResolver>,
}

impl Opened {
    /// Decodes user-defined types (enums, domains, arrays, ranges, composites): the types
    /// the stream names are looked up in the catalog over an ordinary connection made from
    /// `config`, before the rows that use them are written.
    pub(crate) fn resolve_types(self, config: &walstream_conn::Config) -> Self {
        Self {
            decoder: self.decoder.with_unresolved_type_collection(true),
            resolver: Some(TypeResolver::new(config)),
            ..self
        }
    }
}

/// The default pgoutput protocol version for a server major version.
pub(crate) fn default_proto_version(major: u32) -> u32 {
    match major {
        0..=13 => 1,
        14 => 2,
        15 => 3,
        _ => 4,
    }
}

/// Checks the options against the server, creates the slot if asked, and starts streaming.
pub(crate) async fn open(args: &SlotStreamArgs, mut client: Client) -> Result<Opened, CliError> {
    let major = client.server_major_version().unwrap_or(0);
    let proto = args
        .proto_version
        .unwrap_or_else(|| default_proto_version(major));
    let need = |ok: bool, what: &str| -> Result<(), CliError> {
        if ok {
            Ok(())
        } else {
            Err(
                CliError::usage(format!("{what} (server {major}, protocol version {proto})"))
                    .hint("drop the option or raise --proto-version on a newer server"),
            )
        }
    };
    need(
        args.streaming != Streaming::On || proto >= 2,
        "--streaming on needs protocol version 2",
    )?;
    need(
        args.streaming != Streaming::Parallel || proto >= 4,
        "--streaming parallel needs protocol version 4",
    )?;
    need(
        !args.two_phase || proto >= 3,
        "--two-phase needs protocol version 3",
    )?;
    need(
        args.origin.is_none() || major >= 16,
        "--origin needs PostgreSQL 16",
    )?;
    need(
        !args.failover || major >= 17,
        "--failover needs PostgreSQL 17",
    )?;

    let mut start = args.start.unwrap_or(Lsn(0));
    if args.create_slot {
        let mut opts = CreateSlotOptions::logical("pgoutput")
            .snapshot(SnapshotAction::Nothing)
            .two_phase(args.two_phase)
            .failover(args.failover);
        if args.temporary {
            opts = opts.temporary();
        }
        match client.create_replication_slot(&args.slot, &opts).await {
            Ok(created) => {
                tracing::info!(slot = %args.slot, consistent_point = ?created.consistent_point, "created slot");
                if args.start.is_none() {
                    start = created.consistent_point.unwrap_or(Lsn(0));
                }
            }
            Err(e) if args.if_not_exists && e.code().is_some_and(|c| c.to_string() == "42710") => {
                tracing::info!(slot = %args.slot, "slot exists already; using it");
            }
            Err(e) => return Err(CliError::from(e).context("creating the slot")),
        }
    }

    let proto_text = proto.to_string();
    let mut options: Vec<(&str, &str)> = vec![
        ("proto_version", proto_text.as_str()),
        ("publication_names", args.publication.as_str()),
    ];
    match args.streaming {
        Streaming::Off => {}
        Streaming::On => options.push(("streaming", "on")),
        Streaming::Parallel => options.push(("streaming", "parallel")),
    }
    if args.binary {
        options.push(("binary", "true"));
    }
    if args.messages {
        options.push(("messages", "true"));
    }
    if args.two_phase {
        options.push(("two_phase", "true"));
    }
    match args.origin {
        Some(Origin::Any) => options.push(("origin", "any")),
        Some(Origin::None) => options.push(("origin", "none")),
        None => {}
    }
    let feedback = LsnFeedback::new(start);
    let decode =
        DecodeOptions::new(proto).with_parallel_streaming(args.streaming == Streaming::Parallel);
    let decoder = LogicalDecoder::new(decode, feedback.clone());
    tracing::info!(slot = %args.slot, %start, ?options, "starting replication");
    let mut stream = client
        .start_logical_replication(&args.slot, start, &options)
        .await
        .map_err(|e| CliError::from(e).context("starting replication"))?;
    let interval = Duration::try_from_secs_f64(args.status_interval)
        .map_err(|_| CliError::usage("--status-interval must be a non-negative number"))?;
    stream.set_status_interval(interval);
    stream
        .set_batch_latency(Duration::from_millis(args.batch_latency))
        .map_err(|e| CliError::from(e).context("starting replication"))?;
    Ok(Opened {
        stream,
        decoder,
        feedback,
        resolver: None,
    })
}

/// Where output goes: standard output or a file (synced before acknowledging).
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(BufWriter<io::Stdout>),
    File(BufWriter<File>),
}

impl Output {
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, CliError> {
        Ok(match path {
            None => Self::Stdout(BufWriter::with_capacity(1 << 16, io::stdout())),
            Some(p) if p == Path::new("-") => {
                Self::Stdout(BufWriter::with_capacity(1 << 16, io::stdout()))
            }
            Some(p) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| CliError::io(&p.display().to_string(), &e))?;
                Self::File(BufWriter::with_capacity(1 << 16, file))
            }
        })
    }

    /// Whether a flush must be followed by an fsync before acknowledging.
    fn is_file(&self) -> bool {
        matches!(self, Self::File(_))
    }

    /// Flushes and, for files, syncs to disk.
    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        if let Self::File(f) = self {
            f.get_ref().sync_data()?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::File(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.write_all(buf),
            Self::File(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::File(w) => w.flush(),
        }
    }
}

/// What the loop does with the stream.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Render events.
    Render {
        renderer: Box<Renderer>,
        out: Output,
        /// Whole transactions at their commit (`tail --transactions`).
        assembly: Option<AssemblyOptions>,
    },
    /// Write every replication message to a capture file.
    Capture { writer: CaptureWriter<Output> },
}

impl Sink {
    fn output(&mut self) -> &mut Output {
        match self {
            Self::Render { out, .. } => out,
            Self::Capture { writer } => writer.get_mut(),
        }
    }
}

/// When the loop stops on its own.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    /// Stop at this position (see `--endpos`).
    pub(crate) endpos: Option<Lsn>,
    /// Stop after this many events.
    pub(crate) max_events: Option<u64>,
    /// Stop at this time.
    pub(crate) deadline: Option<Instant>,
    /// Stop after a non-transactional logical message with this prefix.
    pub(crate) stop_message_prefix: Option<String>,
}

/// Why the loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    Endpos,
    Events,
    Deadline,
    StopMessage,
    Signal,
    ServerEnded,
}

/// The outcome of [`run`].
#[derive(Debug)]
pub(crate) struct Summary {
    pub(crate) reason: StopReason,
    pub(crate) events: u64,
    /// The flush position reported in the final status update.
    pub(crate) flushed: Lsn,
}

/// Files are synced at most this often (acknowledgement waits for the sync).
const FILE_SYNC_INTERVAL: Duration = Duration::from_millis(500);

struct AckState {
    /// The newest boundary written but not yet acknowledged.
    pending: Option<AckHandle>,
    last_sync: Instant,
}

impl AckState {
    /// Makes the output durable and acknowledges what it holds (`force`: regardless of the
    /// sync interval).
    fn settle(&mut self, out: &mut Output, force: bool) -> Result<(), CliError> {
        if self.pending.is_none() {
            return Ok(());
        }
        if out.is_file() {
            out.flush()
                .map_err(|e| CliError::io("writing the output file", &e))?;
            if !force && self.last_sync.elapsed() < FILE_SYNC_INTERVAL {
                return Ok(());
            }
            out.sync()
                .map_err(|e| CliError::io("syncing the output file", &e))?;
            self.last_sync = Instant::now();
        } else {
            out.flush()
                .map_err(|e| CliError::io("writing output", &e))?;
        }
        if let Some(h) = self.pending.take() {
            h.ack();
        }
        Ok(())
    }
}

fn lsns(feedback: &LsnFeedback) -> FeedbackLsns {
    let p = feedback.positions();
    FeedbackLsns {
        write: p.write,
        flush: p.flush,
        apply: p.apply,
    }
}

async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // A closed channel means nobody can ask for a stop any more.
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Streams until a limit, a shutdown request or the end of the server's stream, then sends the
/// final feedback and ends the stream cleanly.
pub(crate) async fn run(
    opened: Opened,
    mut sink: Sink,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Summary, CliError> {
    let Opened {
        mut stream,
        mut decoder,
        feedback,
        mut resolver,
    } = opened;
    let mut acks = AckState {
        pending: None,
        last_sync: Instant::now(),
    };
    let mut events = 0u64;
    let mut assembler = match &sink {
        Sink::Render {
            assembly: Some(options),
            ..
        } => Some(TransactionAssembler::new(*options, feedback.clone())),
        _ => None,
    };
    let mut frame = bytes::BytesMut::with_capacity(256);
    let reason = loop {
        // The stop conditions are checked cheaply on every message, and the message is
        // polled first: a busy stream then registers no signal or timer waiter per message.
        if *shutdown.borrow() {
            break StopReason::Signal;
        }
        if limits.deadline.is_some_and(|d| Instant::now() >= d) {
            break StopReason::Deadline;
        }
        let msg = tokio::select! {
            biased;
            m = stream.next_message() => m?,
            () = shutdown_requested(&mut shutdown) => break StopReason::Signal,
            () = sleep_until_opt(limits.deadline) => break StopReason::Deadline,
        };
        let mut stop = None;
        let Some(msg) = msg else {
            break StopReason::ServerEnded;
        };
        if let Sink::Capture { writer } = &mut sink {
            frame.clear();
            msg.encode(&mut frame);
            writer
                .write_frame(&frame)
                .map_err(|e| CliError::io("writing the capture", &e))?;
        }
        match msg {
            ReplicationMessage::XLogData(x) => {
                if limits
                    .endpos
                    .is_some_and(|end| decoder.is_idle() && x.wal_start > end)
                {
                    break StopReason::Endpos;
                }
                if let Sink::Render { renderer, out, .. } = &mut sink {
                    renderer.raw(x.wal_start, &x.data, out)?;
                }
                decoder.handle_xlog_data(x.wal_start, x.wal_end, x.data)?;
                // Before the message's events are written: their rows decode with the types.
                if decoder.has_unresolved_types() {
                    if let Some(r) = resolver.as_mut() {
                        resolve_types(r, &mut decoder).await;
                    }
                }
                if let (Some(asm), Sink::Render { renderer, out, .. }) = (&mut assembler, &mut sink)
                {
                    while let Some(ev) = decoder.poll_event() {
                        asm.push(ev)?;
                    }
                    while let Some(item) = asm.poll() {
                        let handle = match item {
                            Assembled::Transaction(mut t) => {
                                renderer.transaction_begin(&t, out)?;
                                while let Some(ev) = t.next_change() {
                                    renderer.event(&ev?, out)?;
                                    events += 1;
                                }
                                renderer.transaction_end(&t, out)?;
                                Some(t.ack_handle().clone())
                            }
                            Assembled::Event(ev) => {
                                renderer.event(&ev, out)?;
                                events += 1;
                                ev.ack_handle().cloned()
                            }
                            _ => None,
                        };
                        // Acknowledged only once the whole transaction is written out.
                        if let Some(h) = handle {
                            acks.pending = Some(h.clone());
                            acks.settle(out, false)?;
                            if limits.endpos.is_some_and(|end| h.lsn() >= end) {
                                stop = Some(StopReason::Endpos);
                            }
                        }
                    }
                }
                while let Some(ev) = decoder.poll_event() {
                    if limits.max_events.is_some_and(|n| events >= n) {
                        break;
                    }
                    events += 1;
                    if let Sink::Render { renderer, out, .. } = &mut sink {
                        renderer.event(&ev, out)?;
                    }
                    if let Some(h) = ev.ack_handle() {
                        acks.pending = Some(h.clone());
                        acks.settle(sink.output(), false)?;
                        if limits.endpos.is_some_and(|end| h.lsn() >= end) {
                            stop = Some(StopReason::Endpos);
                        }
                    }
                    if limits.max_events.is_some_and(|n| events >= n) {
                        stop = Some(StopReason::Events);
                    }
                    if let (Some(prefix), EventKind::Message(m)) =
                        (&limits.stop_message_prefix, ev.kind())
                    {
                        if !m.is_transactional() && &m.prefix == prefix {
                            stop = Some(StopReason::StopMessage);
                        }
                    }
                }
            }
            ReplicationMessage::PrimaryKeepalive(k) => {
                // Idle: make everything written durable and acknowledged.
                acks.settle(sink.output(), true)?;
                decoder.handle_keepalive(k.wal_end);
                if limits
                    .endpos
                    .is_some_and(|end| decoder.is_idle() && k.wal_end >= end)
                {
                    stop = Some(StopReason::Endpos);
                }
            }
            _ => {}
        }
        // Reported positions matter only for a status update, sent only when the next message
        // has to be read: refresh them once per read, not per message (a lock each).
        if !stream.has_buffered_message() {
            stream.set_lsns(lsns(&feedback));
        }
        if let Some(r) = stop {
            break r;
        }
    };
    acks.settle(sink.output(), true)?;
    if let Some(r) = resolver.as_mut() {
        r.close().await;
    }
    if let Sink::Render { renderer, out, .. } = &mut sink {
        renderer.finish(out)?;
    }
    sink.output()
        .sync()
        .map_err(|e| CliError::io("flushing output", &e))?;
    stream.set_lsns(lsns(&feedback));
    let flushed = stream.lsns().flush;
    if reason != StopReason::ServerEnded {
        // Sends the final status update, then CopyDone, and waits for the server's end.
        match tokio::time::timeout(Duration::from_secs(10), stream.finish()).await {
            Ok(Ok((client, _))) => client.close().await,
            Ok(Err(e)) => tracing::warn!("ending the stream: {e}"),
            Err(_) => tracing::warn!("the server did not end the stream within 10 s"),
        }
    }
    tracing::info!(?reason, events, %flushed, "stream stopped");
    Ok(Summary {
        reason,
        events,
        flushed,
    })
}

/// Looks up the types the decoder met and does not know; a failed lookup is logged (the
/// values are written as their text, the stream goes on).
async fn resolve_types(resolver: &mut TypeResolver, decoder: &mut LogicalDecoder) {
    if !decoder.has_unresolved_types() {
        return;
    }
    let before = resolver.failures().last().cloned();
    resolver.resolve_pending(decoder).await;
    if let Some(f) = resolver
        .failures()
        .last()
        .filter(|f| Some(*f) != before.as_ref())
    {
        tracing::warn!(
            oids = ?f.oids,
            "looking up user-defined types failed ({}); their values are written as text",
            f.message
        );
    }
}

/// A receiver that turns true on Ctrl-C (SIGINT) or SIGTERM.
pub(crate) fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if r.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            () = sigterm => {}
        }
        tracing::info!("stop requested by a signal");
        let _ = tx.send(true);
    });
    rx
}

/// An error unless the stream stopped for an expected reason.
pub(crate) fn check_stop(summary: &Summary) -> Result<(), CliError> {
    if summary.reason == StopReason::ServerEnded {
        return Err(CliError::new(
            Category::Server,
            "the server ended the replication stream",
        )
        .hint("the server may be shutting down or the walsender was terminated; run again to resume from the slot"));
    }
    Ok(())
}
