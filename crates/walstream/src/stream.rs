//! The live logical replication stream: connection, `START_REPLICATION`, decoding, feedback,
//! retry and resume, shutdown.
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use walstream_conn::{Client, Config, FeedbackLsns, ReplicationMode, ReplicationStream};
use walstream_proto::pgoutput::DecodeOptions;
use walstream_proto::{Lsn, PgTimestamp, ReplicationMessage};

use crate::decoder::LogicalDecoder;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::feedback::LsnFeedback;
use crate::snapshot::{self, SnapshotJob};
use crate::types::{TypeLookupFailure, TypeResolver};

/// Whether the server streams large in-progress transactions (`streaming` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Streaming {
    /// Transactions are sent after they commit (default).
    #[default]
    Off,
    /// In-progress transactions beyond `logical_decoding_work_mem` are streamed in blocks
    /// (protocol 2+).
    On,
    /// Like `On`, with the parallel-apply extras of protocol 4 (PostgreSQL 16+).
    Parallel,
}

/// Which changes to send by their origin (`origin` option, PostgreSQL 16+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OriginFilter {
    /// All changes (the server's default).
    Any,
    /// Only changes without an origin (made locally, not replicated in).
    None,
}

/// Reconnection behaviour after a lost connection or a server restart.
///
/// The wait before attempt `n` (from 1) is `initial_backoff * 2^(n-1)`, capped at
/// `max_backoff`, then with jitter drawn uniformly from its upper half (`[w/2, w]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Consecutive failed attempts before giving up (`None`: retry forever). Zero disables
    /// reconnection.
    pub max_retries: Option<u32>,
    /// The first wait.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// Randomise waits so that many clients do not reconnect in lockstep.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: Some(10),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Never reconnect: a lost connection is an error.
    pub fn never() -> Self {
        Self {
            max_retries: Some(0),
            ..Self::default()
        }
    }

    /// The wait before attempt `attempt` (1-based), before jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    fn wait(&self, attempt: u32) -> Duration {
        let w = self.backoff(attempt);
        if !self.jitter || w.is_zero() {
            return w;
        }
        use rand::Rng as _;
        let half = w / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=w - half)
    }
}

/// Drops `slot` (waiting while its old connection goes away, at most 10 s), ignoring
/// failures: used when the initial snapshot of a new slot cannot complete.
async fn drop_slot_best_effort(config: &Config, slot: &str) {
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        crate::slots::drop_slot(config, slot, true),
    )
    .await;
}

/// One undecoded XLogData message (raw mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawXLogData {
    /// Start of the WAL data of this message.
    pub wal_start: Lsn,
    /// The server's end of WAL when sending.
    pub wal_end: Lsn,
    /// The server's clock when sending.
    pub send_time: PgTimestamp,
    /// The output plugin's message (a `pgoutput` message).
    pub data: Bytes,
}

/// Settings of a [`LogicalStream`]; build with [`LogicalStream::builder`].
#[derive(Clone)]
#[must_use]
pub struct LogicalStreamBuilder {
    config: Config,
    slot: String,
    publications: Vec<String>,
    proto_version: Option<u32>,
    streaming: Streaming,
    two_phase: bool,
    binary: bool,
    messages: bool,
    origin: Option<OriginFilter>,
    start_lsn: Option<Lsn>,
    status_interval: Duration,
    retry: RetryPolicy,
    auto_ack: bool,
    raw: bool,
    initial_snapshot: bool,
    types: Option<walstream_proto::TypeRegistry>,
    resolve_types: bool,
    cancel: CancellationToken,
}

impl fmt::Debug for LogicalStreamBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalStreamBuilder")
            .field("slot", &self.slot)
            .field("publications", &self.publications)
            .field("proto_version", &self.proto_version)
            .field("streaming", &self.streaming)
            .field("two_phase", &self.two_phase)
            .field("binary", &self.binary)
            .field("messages", &self.messages)
            .field("origin", &self.origin)
            .field("start_lsn", &self.start_lsn)
            .field("status_interval", &self.status_interval)
            .field("retry", &self.retry)
            .field("auto_ack", &self.auto_ack)
            .field("raw", &self.raw)
            .field("initial_snapshot", &self.initial_snapshot)
            .field("resolve_types", &self.resolve_types)
            .finish_non_exhaustive()
    }
}

impl LogicalStreamBuilder {
    /// Adds a publication (at least one is required).
    pub fn publication(mut self, name: impl Into<String>) -> Self {
        self.publications.push(name.into());
        self
    }

    /// Adds publications.
    pub fn publications<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.publications.extend(names.into_iter().map(Into::into));
        self
    }

    /// The `pgoutput` protocol version; by default chosen from the server version
    /// (14 → 2, 15 → 3, 16+ → 4, older → 1).
    pub fn proto_version(mut self, version: u32) -> Self {
        self.proto_version = Some(version);
        self
    }

    /// Streaming of in-progress transactions.
    pub fn streaming(mut self, streaming: Streaming) -> Self {
        self.streaming = streaming;
        self
    }

    /// Decode two-phase transactions at PREPARE (needs a slot created with two_phase and
    /// protocol 3+).
    pub fn two_phase(mut self, on: bool) -> Self {
        self.two_phase = on;
        self
    }

    /// Binary column values instead of text.
    pub fn binary(mut self, on: bool) -> Self {
        self.binary = on;
        self
    }

    /// Logical decoding messages (`pg_logical_emit_message`).
    pub fn messages(mut self, on: bool) -> Self {
        self.messages = on;
        self
    }

    /// Origin filter (PostgreSQL 16+).
    pub fn origin(mut self, origin: OriginFilter) -> Self {
        self.origin = Some(origin);
        self
    }

    /// Where to start. By default the stream asks for `0/0`, which makes the server start at
    /// the slot's `confirmed_flush_lsn`. Give the slot's `confirmed_flush_lsn` (or a later
    /// acknowledged position you stored) — never that position plus one.
    pub fn start_lsn(mut self, lsn: Lsn) -> Self {
        self.start_lsn = Some(lsn);
        self
    }

    /// How often a standby status update is sent (default 10 s).
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// The latency budget of batched reads (default 1 ms; zero reads every message as it
    /// arrives): while messages arrive faster than one per budget, the socket is read once
    /// per budget instead of once per message, which saves most of the CPU a fast stream
    /// costs; a message waits at most the budget (plus the timer's 1 ms granularity). See
    /// [`Config::set_stream_batch_latency`].
    pub fn batch_latency(mut self, budget: Duration) -> Self {
        self.config.set_stream_batch_latency(budget);
        self
    }

    /// Reconnection behaviour.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Acknowledge every event as soon as it is delivered (at-most-once processing).
    pub fn auto_ack(mut self, on: bool) -> Self {
        self.auto_ack = on;
        self
    }

    /// Raw mode: hand out undecoded XLogData with [`LogicalStream::next_raw`].
    pub fn raw(mut self, on: bool) -> Self {
        self.raw = on;
        self
    }

    /// Managed initial snapshot: [`start`](Self::start) creates the slot (which must not
    /// exist yet) with an exported snapshot, then the stream first hands out every row of
    /// the publications' tables as [`EventKind::Read`](crate::EventKind::Read) events (read
    /// in that snapshot on a second, ordinary connection), then an
    /// [`EventKind::SnapshotComplete`](crate::EventKind::SnapshotComplete), then the changes
    /// committed after the slot's consistent point: no row is missed or seen twice.
    ///
    /// The slot is permanent (created with `two_phase` when [`two_phase`](Self::two_phase)
    /// is on, PostgreSQL 15+). If the snapshot fails or is cancelled, the slot is dropped
    /// again (best effort), so that starting over takes a new snapshot (a stream dropped
    /// during the copy leaves the slot: drop it before starting over). Rows are read as the
    /// consumer asks for them (a small bounded queue), so memory stays bounded. Not with
    /// [`raw`](Self::raw) mode or a [`start_lsn`](Self::start_lsn). See the
    /// [manual](crate::manual#initial-snapshot).
    pub fn initial_snapshot(mut self, on: bool) -> Self {
        self.initial_snapshot = on;
        self
    }

    /// Decodes values of user-defined types with `types` (enums, domains, arrays, ranges and
    /// multiranges of them), in addition to what automatic resolution finds.
    pub fn types(mut self, types: walstream_proto::TypeRegistry) -> Self {
        self.types = Some(types);
        self
    }

    /// Automatic type resolution (on by default): when a Type or Relation message names a type
    /// that is neither built in nor registered, the stream looks it up in `pg_type`,
    /// `pg_range` and `pg_attribute` over an ordinary connection made from the same
    /// [`Config`] (opened when first needed, reused, closed on shutdown), registers it (enums,
    /// domains, composites, ranges, multiranges), its array type, and the types it is built
    /// on, and decodes its values. A failed lookup does not stop the stream: the values stay
    /// [`Value::Unknown`](crate::Value::Unknown) and the failure is listed by
    /// [`LogicalStream::type_lookup_failures`]. Base types of extensions stay `Unknown`. See
    /// the [manual](crate::manual#user-defined-types).
    pub fn resolve_types(mut self, on: bool) -> Self {
        self.resolve_types = on;
        self
    }

    /// A token that stops the stream gracefully when cancelled (`next_event` then returns
    /// `Ok(None)`).
    pub fn cancellation_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Connects and starts streaming.
    pub async fn start(self) -> Result<LogicalStream, Error> {
        if self.publications.is_empty() {
            return Err(Error::new(
                ErrorKind::Usage,
                "a logical stream needs at least one publication",
            ));
        }
        let start = self.start_lsn.unwrap_or(Lsn(0));
        let feedback = if self.raw {
            LsnFeedback::new_raw(start)
        } else {
            LsnFeedback::new(start)
        };
        feedback.set_auto_ack(self.auto_ack);
        let initial_snapshot = self.initial_snapshot;
        if initial_snapshot && self.raw {
            return Err(Error::new(
                ErrorKind::Usage,
                "the initial snapshot hands out events: it cannot be used in raw mode",
            ));
        }
        if initial_snapshot && self.start_lsn.is_some() {
            return Err(Error::new(
                ErrorKind::Usage,
                "the initial snapshot streams from the new slot's consistent point: \
                 do not set a start LSN",
            ));
        }
        let mut stream = LogicalStream {
            decoder: None,
            feedback,
            conn: None,
            done: false,
            settings: self,
            server_major: None,
            snapshot: None,
            pending_client: None,
            resolver: None,
            snapshot_types: None,
        };
        if initial_snapshot {
            stream.start_snapshot().await?;
        } else {
            stream.connect().await?;
        }
        Ok(stream)
    }
}

/// A logical replication stream: `next_event().await` in a loop, acknowledge what you have
/// durably processed, [`shutdown`](Self::shutdown) when done.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use walstream::LogicalStream;
/// let config = "host=localhost user=repl dbname=app".parse()?;
/// let mut stream = LogicalStream::builder(config, "my_slot")
///     .publication("my_pub")
///     .start()
///     .await?;
/// while let Some(event) = stream.next_event().await? {
///     println!("{}", event.to_json_line()?);
///     event.ack(); // after the event's effects are durable
/// }
/// # Ok(()) }
/// ```
///
/// The connection is opened with `replication=database`. Connection losses are retried per
/// the [`RetryPolicy`]: the stream reconnects, restarts at the acknowledged position, and
/// skips transactions the server sends again that end at or before it, so an acknowledging
/// consumer sees each committed transaction once. Events delivered but not acknowledged
/// before a connection loss are delivered again; an
/// [`EventKind::Resumed`](crate::EventKind::Resumed) before the new connection's first event
/// says so (see the [manual](crate::manual#the-resume-signal)).
pub struct LogicalStream {
    settings: LogicalStreamBuilder,
    decoder: Option<LogicalDecoder>,
    feedback: LsnFeedback,
    conn: Option<ReplicationStream>,
    done: bool,
    server_major: Option<u32>,
    /// The running initial snapshot.
    snapshot: Option<SnapshotTask>,
    /// The replication connection that created the slot, idle until streaming starts.
    pending_client: Option<Client>,
    /// Looks up user-defined types (automatic type resolution).
    resolver: Option<TypeResolver>,
    /// The type registry of the initial snapshot's rows (handed to the decoder afterwards),
    /// and the relations whose column types were checked.
    snapshot_types: Option<(
        std::sync::Arc<walstream_proto::TypeRegistry>,
        std::collections::HashSet<walstream_proto::Oid>,
    )>,
}

/// The initial snapshot running in its own task, feeding a bounded queue.
struct SnapshotTask {
    rx: tokio::sync::mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Drop for SnapshotTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for LogicalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogicalStream")
            .field("slot", &self.settings.slot)
            .field("feedback", &self.feedback)
            .field("connected", &self.conn.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Whether an error from the connection layer is worth reconnecting for.
fn is_transient(e: &walstream_conn::Error) -> bool {
    use walstream_conn::ErrorKind as K;
    match e.kind() {
        K::Connect | K::Io | K::Closed | K::Timeout => true,
        K::Db => e.code().is_some_and(|c| {
            // 57: operator intervention (terminated backend, shutdown, starting up);
            // 08: connection exceptions; 55006: slot still held by the old walsender;
            // 53300: too many connections.
            matches!(c.class(), "57" | "08") || matches!(c.code(), "55006" | "53300")
        }),
        _ => false,
    }
}

impl LogicalStream {
    /// A builder for a stream over `slot` with connection settings `config` (the
    /// `replication=database` mode is set for you).
    pub fn builder(config: Config, slot: impl Into<String>) -> LogicalStreamBuilder {
        LogicalStreamBuilder {
            config,
            slot: slot.into(),
            publications: Vec::new(),
            proto_version: None,
            streaming: Streaming::Off,
            two_phase: false,
            binary: false,
            messages: false,
            origin: None,
            start_lsn: None,
            status_interval: ReplicationStream::DEFAULT_STATUS_INTERVAL,
            retry: RetryPolicy::default(),
            auto_ack: false,
            raw: false,
            initial_snapshot: false,
            types: None,
            resolve_types: true,
            cancel: CancellationToken::new(),
        }
    }

    /// The shared acknowledgement state: clone it into the task that persists events.
    pub fn feedback(&self) -> &LsnFeedback {
        &self.feedback
    }

    /// The cancellation token: cancelling it stops the stream gracefully.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.settings.cancel.clone()
    }

    /// The server's major version (known once connected).
    pub fn server_major_version(&self) -> Option<u32> {
        self.server_major
    }

    /// Type lookups that failed (automatic type resolution), the most recent last; the values
    /// of those types were decoded as [`Value::Unknown`](crate::Value::Unknown).
    pub fn type_lookup_failures(&self) -> &[TypeLookupFailure] {
        self.resolver.as_ref().map_or(&[], TypeResolver::failures)
    }

    /// The registry the stream decodes user-defined types with (the one given to
    /// [`LogicalStreamBuilder::types`] plus what automatic resolution found).
    pub fn types(&self) -> Option<&walstream_proto::TypeRegistry> {
        self.decoder.as_ref().and_then(LogicalDecoder::types)
    }

    /// Gives a snapshot row the type registry, looking up the user-defined types of its
    /// relation's columns first (once per relation) when resolution is on.
    async fn type_snapshot_row(&mut self, ev: &mut Event) {
        use std::sync::Arc;
        let crate::EventKind::Read(read) = &mut ev.kind else {
            return;
        };
        if !self.settings.resolve_types && self.settings.types.is_none() {
            return;
        }
        let (types, checked) = self.snapshot_types.get_or_insert_with(|| {
            let types = self.settings.types.clone().unwrap_or_default();
            (Arc::new(types), std::collections::HashSet::new())
        });
        let relation = &read.change.relation;
        if self.settings.resolve_types && checked.insert(relation.oid) {
            let wanted: std::collections::BTreeSet<_> = relation
                .columns
                .iter()
                .map(|c| c.type_oid)
                .filter(|o| !crate::types::is_builtin(*o) && types.get(*o).is_none())
                .collect();
            if !wanted.is_empty() {
                let resolver = self
                    .resolver
                    .get_or_insert_with(|| TypeResolver::new(&self.settings.config));
                let found = resolver.resolve(wanted, Some(types)).await;
                found.register_into(Arc::make_mut(types));
            }
        }
        read.change.refresh_types(&Some(Arc::clone(types)));
    }

    /// Looks up the types the decoder met but does not know, and registers them.
    async fn resolve_types(&mut self) {
        let Some(decoder) = self.decoder.as_mut() else {
            return;
        };
        if !decoder.has_unresolved_types() {
            return;
        }
        self.resolver
            .get_or_insert_with(|| TypeResolver::new(&self.settings.config))
            .resolve_pending(decoder)
            .await;
    }

    /// The `pgoutput` protocol version in use (known once connected).
    pub fn proto_version(&self) -> Option<u32> {
        self.decoder
            .as_ref()
            .map(|d| d.options().protocol_version())
    }

    /// The `START_REPLICATION` options for protocol `version`.
    fn plugin_options(&self, version: u32) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        let pubs = s
            .publications
            .iter()
            .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
            .collect::<Vec<_>>()
            .join(",");
        let mut opts = vec![
            ("proto_version", version.to_string()),
            ("publication_names", pubs),
        ];
        match s.streaming {
            Streaming::Off => {}
            Streaming::On => opts.push(("streaming", "on".into())),
            Streaming::Parallel => opts.push(("streaming", "parallel".into())),
        }
        if s.two_phase {
            opts.push(("two_phase", "on".into()));
        }
        if s.binary {
            opts.push(("binary", "on".into()));
        }
        if s.messages {
            opts.push(("messages", "on".into()));
        }
        match s.origin {
            Some(OriginFilter::Any) => opts.push(("origin", "any".into())),
            Some(OriginFilter::None) => opts.push(("origin", "none".into())),
            None => {}
        }
        opts
    }

    /// One connection attempt: connect, pick the protocol version, START_REPLICATION.
    async fn connect_once(&mut self) -> Result<(), walstream_conn::Error> {
        let mut config = self.settings.config.clone();
        config.set_replication(ReplicationMode::Logical);
        let client = match self.pending_client.take() {
            Some(c) => c,
            None => Client::connect(&config).await?,
        };
        let major = client.server_major_version();
        self.server_major = major;
        let version = self.settings.proto_version.unwrap_or(match major {
            Some(m) if m >= 16 => 4,
            Some(15) => 3,
            Some(14) => 2,
            _ => 1,
        });
        let opts = self.plugin_options(version);
        let borrowed: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // Resume at the reported flush position: the server starts at the later of it and
        // the slot's confirmed_flush_lsn (0/0 = the slot's position).
        let start = self.feedback.flushed();
        let mut stream = client
            .start_logical_replication(&self.settings.slot, start, &borrowed)
            .await?;
        stream.set_status_interval(self.settings.status_interval);
        match &mut self.decoder {
            Some(d) => d.reset_for_resume(),
            None => {
                let opts = DecodeOptions::new(version)
                    .with_parallel_streaming(self.settings.streaming == Streaming::Parallel);
                let mut decoder = LogicalDecoder::new(opts, self.feedback.clone())
                    .with_unresolved_type_collection(self.settings.resolve_types);
                if let Some((types, _)) = &self.snapshot_types {
                    decoder = decoder.with_types(types.as_ref().clone());
                } else if let Some(types) = &self.settings.types {
                    decoder = decoder.with_types(types.clone());
                }
                self.decoder = Some(decoder);
            }
        }
        self.conn = Some(stream);
        Ok(())
    }

    /// Connects, retrying transient failures per the retry policy.
    async fn connect(&mut self) -> Result<(), Error> {
        let mut attempt = 0u32;
        loop {
            let err = match self.connect_once().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            attempt += 1;
            let allowed = self
                .settings
                .retry
                .max_retries
                .is_none_or(|max| attempt <= max);
            if !is_transient(&err) || !allowed {
                return Err(Error::from(err));
            }
            let wait = self.settings.retry.wait(attempt);
            tokio::select! {
                () = self.settings.cancel.cancelled() => {
                    self.done = true;
                    return Ok(());
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Creates the slot with an exported snapshot and starts copying in a task.
    async fn start_snapshot(&mut self) -> Result<(), Error> {
        use walstream_conn::{CreateSlotOptions, SnapshotAction};
        let mut config = self.settings.config.clone();
        config.set_replication(ReplicationMode::Logical);
        let mut client = Client::connect(&config).await?;
        self.server_major = client.server_major_version();
        let opts = CreateSlotOptions::logical("pgoutput")
            .snapshot(SnapshotAction::Export)
            .two_phase(self.settings.two_phase);
        let created = client
            .create_replication_slot(&self.settings.slot, &opts)
            .await
            .map_err(|e| {
                if e.code().is_some_and(|c| c.code() == "42710") {
                    Error::with_source(
                        ErrorKind::Usage,
                        format!(
                            "slot {:?} already exists: an initial snapshot needs a new slot \
                             (stream from the existing slot without it, or drop the slot)",
                            self.settings.slot
                        ),
                        e,
                    )
                } else {
                    Error::from(e)
                }
            })?;
        let (Some(consistent_point), Some(snapshot_name)) =
            (created.consistent_point, created.snapshot_name)
        else {
            client.close().await;
            drop_slot_best_effort(&self.settings.config, &self.settings.slot).await;
            return Err(Error::protocol(
                "CREATE_REPLICATION_SLOT did not export a snapshot",
            ));
        };
        // The snapshot lives while this connection stays idle: keep it for START_REPLICATION.
        self.pending_client = Some(client);
        let job = SnapshotJob {
            config: self.settings.config.clone(),
            slot: self.settings.slot.clone(),
            publications: self.settings.publications.clone(),
            snapshot_name,
            consistent_point,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(snapshot::CHANNEL_ROWS);
        let task = tokio::spawn(snapshot::run(job, tx));
        self.snapshot = Some(SnapshotTask { rx, task });
        Ok(())
    }

    /// The next snapshot event; `None` once the snapshot is complete (streaming follows).
    /// On failure or cancellation the slot is dropped.
    async fn next_snapshot_event(&mut self) -> Result<Option<Event>, Error> {
        let Some(snap) = self.snapshot.as_mut() else {
            return Ok(None);
        };
        let cancel = self.settings.cancel.clone();
        let got = tokio::select! {
            biased;
            () = cancel.cancelled() => {
                self.abandon_snapshot().await;
                self.done = true;
                return Ok(None);
            }
            ev = snap.rx.recv() => ev,
        };
        if let Some(ev) = got {
            return Ok(Some(ev));
        }
        // The queue closed: the task finished (or failed).
        let result = match (&mut snap.task).await {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                ErrorKind::Connection,
                format!("the snapshot task failed: {e}"),
            )),
        };
        self.snapshot = None;
        if let Err(e) = result {
            self.abandon_snapshot().await;
            self.done = true;
            return Err(e);
        }
        Ok(None)
    }

    /// Stops a running snapshot and drops its slot (the snapshot cannot be resumed).
    async fn abandon_snapshot(&mut self) {
        self.snapshot = None;
        if let Some(c) = self.pending_client.take() {
            c.close().await;
        }
        drop_slot_best_effort(&self.settings.config, &self.settings.slot).await;
    }

    /// After a lost connection: drop it and reconnect (the decoder resumes on connect).
    async fn reconnect(&mut self, cause: Error, transient: bool) -> Result<(), Error> {
        self.conn = None;
        if self.settings.retry.max_retries == Some(0) || !transient {
            return Err(cause);
        }
        if let Some(d) = &mut self.decoder {
            d.reset_for_resume();
        }
        let wait = self.settings.retry.wait(1);
        tokio::select! {
            () = self.settings.cancel.cancelled() => {
                self.done = true;
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
        self.connect().await
    }

    /// Waits for the next message from the server (reconnecting when needed); `None` when
    /// the stream was cancelled.
    async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.settings.cancel.is_cancelled() {
                self.shutdown().await?;
                return Ok(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                self.connect().await?;
                continue;
            };
            // The positions matter only for a status update, which is sent only when the
            // next message has to be read: refresh them then (once per read, not per message:
            // taking the feedback lock per message costs more than the rest of the call).
            if !conn.has_buffered_message() {
                let p = self.feedback.positions();
                conn.set_lsns(FeedbackLsns {
                    write: p.write,
                    flush: p.flush,
                    apply: p.apply,
                });
            }
            // The message first: when one is already buffered (the common case on a busy
            // stream) the cancellation future is never polled, so no waiter is registered
            // per message. Cancellation is still seen: checked above on every call, and
            // awaited whenever the connection has to wait.
            let res = tokio::select! {
                biased;
                r = conn.next_message() => r,
                () = self.settings.cancel.cancelled() => continue,
            };
            match res {
                Ok(Some(m)) => return Ok(Some(m)),
                // The server ended the stream (e.g. it is shutting down): resume.
                Ok(None) => {
                    let cause = Error::new(
                        ErrorKind::Connection,
                        "the server ended the replication stream",
                    );
                    self.reconnect(cause, true).await?;
                }
                Err(e) => {
                    let transient = is_transient(&e);
                    self.reconnect(Error::from(e), transient).await?;
                }
            }
        }
    }

    /// The next event; `Ok(None)` once the stream was shut down or cancelled.
    ///
    /// Dropping the future loses no event that was already decoded (it stays queued for the
    /// next call). To stop the stream, prefer the cancellation token over dropping this
    /// future in a `select!`: cancellation ends with a graceful shutdown.
    pub async fn next_event(&mut self) -> Result<Option<Event>, Error> {
        if self.settings.raw {
            return Err(Error::new(
                ErrorKind::Usage,
                "the stream is in raw mode: use next_raw",
            ));
        }
        if self.snapshot.is_some() {
            if let Some(mut ev) = self.next_snapshot_event().await? {
                self.type_snapshot_row(&mut ev).await;
                return Ok(Some(ev));
            }
            if self.done {
                return Ok(None);
            }
        }
        loop {
            if let Some(ev) = self.decoder.as_mut().and_then(LogicalDecoder::poll_event) {
                return Ok(Some(ev));
            }
            let Some(msg) = self.next_message().await? else {
                return Ok(None);
            };
            let Some(decoder) = self.decoder.as_mut() else {
                return Err(Error::protocol(
                    "a message arrived before the stream started",
                ));
            };
            match msg {
                ReplicationMessage::XLogData(x) => {
                    decoder.handle_xlog_data(x.wal_start, x.wal_end, x.data)?;
                    // Before the next message: its rows decode with the types found.
                    self.resolve_types().await;
                }
                ReplicationMessage::PrimaryKeepalive(k) => decoder.handle_keepalive(k.wal_end),
                _ => {}
            }
        }
    }

    /// The next undecoded XLogData (raw mode); `Ok(None)` once shut down or cancelled.
    /// Acknowledge with [`LsnFeedback::ack`] on [`feedback`](Self::feedback), passing commit
    /// end LSNs your decoder found.
    pub async fn next_raw(&mut self) -> Result<Option<RawXLogData>, Error> {
        if !self.settings.raw {
            return Err(Error::new(
                ErrorKind::Usage,
                "the stream is not in raw mode: use next_event",
            ));
        }
        loop {
            let Some(msg) = self.next_message().await? else {
                return Ok(None);
            };
            if let ReplicationMessage::XLogData(x) = msg {
                return Ok(Some(RawXLogData {
                    wal_start: x.wal_start,
                    wal_end: x.wal_end,
                    send_time: x.send_time,
                    data: x.data,
                }));
            }
        }
    }

    /// Sends a standby status update with the current positions now (they are also sent
    /// every status interval and when the server asks).
    pub async fn send_feedback(&mut self) -> Result<(), Error> {
        let p = self.feedback.positions();
        if let Some(conn) = self.conn.as_mut() {
            conn.set_lsns(FeedbackLsns {
                write: p.write,
                flush: p.flush,
                apply: p.apply,
            });
            conn.send_status_update(false).await?;
        }
        Ok(())
    }

    /// Stops gracefully: a final status update with the acknowledged position, CopyDone,
    /// the server's end of the stream, and a clean close. Later calls to `next_event`
    /// return `Ok(None)`.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        self.done = true;
        if self.snapshot.is_some() {
            self.abandon_snapshot().await;
        }
        if let Some(c) = self.pending_client.take() {
            c.close().await;
        }
        if let Some(r) = self.resolver.as_mut() {
            r.close().await;
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let p = self.feedback.positions();
        conn.set_lsns(FeedbackLsns {
            write: p.write,
            flush: p.flush,
            apply: p.apply,
        });
        // The final status update carries the acknowledged position; it must get through.
        conn.send_status_update(false).await?;
        // Then CopyDone and a clean close. A logical walsender may still send CopyData after
        // its CopyDone (a server quirk the connection layer rejects); the session is over
        // either way and the position was reported above, so a failure here is not an error.
        if let Ok((client, _)) = conn.finish().await {
            client.close().await;
        }
        Ok(())
    }

    /// Turns the stream into a [`futures_core::Stream`] of events (use `futures` combinators
    /// on it). Acknowledge through the events or [`LsnFeedback`]; the stream ends when
    /// cancelled through the token.
    pub fn into_stream(self) -> EventStream {
        let s = futures_util::stream::unfold(self, |mut s| async move {
            match s.next_event().await {
                Ok(Some(ev)) => Some((Ok(ev), s)),
                Ok(None) => None,
                Err(e) => {
                    s.done = true;
                    Some((Err(e), s))
                }
            }
        });
        EventStream { inner: Box::pin(s) }
    }
}

/// A [`futures_core::Stream`] of events from [`LogicalStream::into_stream`]; `Send`, so it
/// can move into `tokio::spawn`.
pub struct EventStream {
    inner: Pin<Box<dyn futures_core::Stream<Item = Result<Event, Error>> + Send>>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Result<Event, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: None,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            jitter: false,
        };
        let waits: Vec<u128> = (1..=6).map(|a| p.wait(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff(100), Duration::from_secs(1));
        let j = RetryPolicy { jitter: true, ..p };
        for a in 1..=5 {
            let w = j.wait(a);
            assert!(w >= p.backoff(a) / 2 && w <= p.backoff(a), "{w:?}");
        }
    }

    fn builder() -> LogicalStreamBuilder {
        LogicalStream::builder("host=localhost".parse().unwrap(), "s")
    }

    #[test]
    fn plugin_options_follow_settings() {
        let s = LogicalStream {
            settings: builder()
                .publication("a")
                .publication("we\"ird")
                .streaming(Streaming::Parallel)
                .two_phase(true)
                .binary(true)
                .messages(true)
                .origin(OriginFilter::None),
            decoder: None,
            feedback: LsnFeedback::new(Lsn(0)),
            conn: None,
            done: false,
            server_major: None,
            snapshot: None,
            pending_client: None,
            resolver: None,
            snapshot_types: None,
        };
        let opts = s.plugin_options(4);
        let opts: Vec<(&str, &str)> = opts.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            opts,
            [
                ("proto_version", "4"),
                ("publication_names", "\"a\",\"we\"\"ird\""),
                ("streaming", "parallel"),
                ("two_phase", "on"),
                ("binary", "on"),
                ("messages", "on"),
                ("origin", "none"),
            ]
        );
    }

    #[test]
    fn streams_are_send() {
        fn send<T: Send>() {}
        send::<LogicalStream>();
        send::<EventStream>();
    }

    #[tokio::test]
    async fn start_needs_a_publication() {
        let e = builder().start().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    }

    #[tokio::test]
    async fn initial_snapshot_refuses_raw_mode_and_a_start_lsn() {
        let b = builder().publication("p").initial_snapshot(true);
        let e = b.clone().raw(true).start().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        let e = b.start_lsn(Lsn(0x10)).start().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
    }
}
