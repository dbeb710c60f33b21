//! The WAL receiver: `pg_receivewal` as a library.
//!
//! [`WalReceiver`] drives a physical replication connection ([`walstream_conn`]) and the
//! sans-IO [`WalWriter`]: it asks the server who it is (`IDENTIFY_SYSTEM`) and how large its
//! segments are (`SHOW wal_segment_size`), decides where to start, streams
//! (`START_REPLICATION PHYSICAL`) into segment files, answers keepalives and sends standby
//! status updates, follows timeline switches, and stops cleanly at an end position or when
//! asked through its [`ReceiverHandle`].
//!
//! # Where streaming starts
//!
//! 1. From the files already in the directory ([`resume_position`]): after the highest
//!    complete segment, or at the start of the highest `.partial` one, on that file's
//!    timeline. A restart therefore continues without a gap and never rewrites a completed
//!    segment.
//! 2. Else from [`WalReceiverOptions::start`] (on [`WalReceiverOptions::timeline`] or the
//!    server's timeline).
//! 3. Else, with a slot, from the slot's `restart_lsn` and timeline (`READ_REPLICATION_SLOT`,
//!    PostgreSQL 15+; a slot just created by the receiver has nothing to say).
//! 4. Else from the server's current flush position.
//!
//! Whatever the source, the position is rounded down to the start of its segment, like
//! `pg_receivewal`: segment files are always written from their first byte.
//!
//! # Timelines
//!
//! When the server reaches the end of the timeline being streamed, it ends the COPY and names
//! the next timeline and where it starts. The receiver saves that timeline's history file
//! (`TIMELINE_HISTORY`), leaves the old timeline's last segment as `.partial`, and continues
//! on the new timeline from the start of the segment holding the switch point. Before
//! streaming a timeline above 1 whose history file is missing, it fetches that file too.
//!
//! # Feedback and durability
//!
//! Status updates report as written the end of the WAL written to the files, as flushed the
//! end of what was fsynced (completed segments always are; the partial segment on
//! [`WalReceiverOptions::fsync_interval`], at every message in synchronous mode, and on stop),
//! and nothing as applied (like `pg_receivewal`: a WAL archive applies nothing). They are sent
//! every [`WalReceiverOptions::status_interval`], whenever the server asks, after every
//! message in synchronous mode, and once more on a clean stop. With a slot, the flushed
//! position is what the server may recycle WAL up to.
//!
//! # Memory
//!
//! One `XLogData` message (at most 128 kB from PostgreSQL's walsender) is held at a time; the
//! segment files are written in place.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use walstream_backup::{WalReceiver, WalReceiverOptions};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = "host=db user=rep".parse()?;
//! let options = WalReceiverOptions::new("/archive/wal")
//!     .slot("archiver")
//!     .create_slot(true)
//!     .status_interval(Duration::from_secs(5));
//! let mut receiver = WalReceiver::new(config, options);
//! let handle = receiver.handle();
//! tokio::spawn(async move {
//!     let _ = tokio::signal::ctrl_c().await;
//!     handle.stop();
//! });
//! loop {
//!     match receiver.run().await {
//!         Ok(outcome) => {
//!             println!("stopped at {:?}", outcome.flushed);
//!             break;
//!         }
//!         // Resumes from the files: no gap, nothing rewritten.
//!         Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_secs(5)).await,
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use walstream_conn::{
    Client, Config, CreateSlotOptions, DbError, ErrorKind as ConnKind, FeedbackLsns,
    ReplicationMode, ReplicationStream,
};
use walstream_proto::{Lsn, ReplicationMessage, TimelineId, Xid};

use crate::error::{Error as LocalError, WalError};
use crate::wal::{WalWriter, resume_position};

/// How long a clean stop waits for the server to acknowledge the end of the stream.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// `xmin` values sent as hot standby feedback (see
/// [`WalReceiverOptions::hot_standby_feedback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StandbyXmin {
    /// The oldest transaction id the standby still needs (0: none).
    pub xmin: Xid,
    /// Its epoch.
    pub xmin_epoch: u32,
    /// The oldest catalog transaction id needed by logical slots on the standby (0: none).
    pub catalog_xmin: Xid,
    /// Its epoch.
    pub catalog_xmin_epoch: u32,
}

/// What a [`WalReceiver`] does; built with chained setters from [`WalReceiverOptions::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiverOptions {
    dir: PathBuf,
    slot: Option<String>,
    create_slot: bool,
    temporary_slot: bool,
    start: Option<Lsn>,
    timeline: Option<TimelineId>,
    endpos: Option<Lsn>,
    status_interval: Duration,
    synchronous: bool,
    fsync_interval: Option<Duration>,
    hot_standby_feedback: Option<StandbyXmin>,
}

impl WalReceiverOptions {
    /// The default interval between status updates (like `pg_receivewal`'s 10 s).
    pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

    /// Writes into `dir` (created if missing), without a slot, from where the files or the
    /// server say, until stopped, status updates every 10 s, fsync only of completed
    /// segments and on stop.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            slot: None,
            create_slot: false,
            temporary_slot: false,
            start: None,
            timeline: None,
            endpos: None,
            status_interval: Self::DEFAULT_STATUS_INTERVAL,
            synchronous: false,
            fsync_interval: None,
            hot_standby_feedback: None,
        }
    }

    /// Streams through the physical replication slot `name` (which keeps the server from
    /// recycling WAL not yet flushed here).
    #[must_use]
    pub fn slot(mut self, name: impl Into<String>) -> Self {
        self.slot = Some(name.into());
        self
    }

    /// Creates the slot (physical, reserving WAL at once) when it does not exist yet; an
    /// existing slot is used as it is.
    #[must_use]
    pub fn create_slot(mut self, create: bool) -> Self {
        self.create_slot = create;
        self
    }

    /// Creates the slot as a temporary slot of this connection, dropped by the server when
    /// the connection ends (e.g. for the WAL of a base backup).
    #[must_use]
    pub fn temporary_slot(mut self, temporary: bool) -> Self {
        self.temporary_slot = temporary;
        self
    }

    /// Where to start when the directory holds no WAL yet (rounded down to its segment's
    /// start). Ignored when the directory holds WAL: the files decide then.
    #[must_use]
    pub fn start(mut self, lsn: Lsn) -> Self {
        self.start = Some(lsn);
        self
    }

    /// The timeline of [`WalReceiverOptions::start`] (default: the server's current one).
    #[must_use]
    pub fn timeline(mut self, timeline: TimelineId) -> Self {
        self.timeline = Some(timeline);
        self
    }

    /// Stops cleanly once the WAL up to `lsn` is written and flushed (nothing after it is
    /// written), like `pg_receivewal --endpos`.
    #[must_use]
    pub fn endpos(mut self, lsn: Lsn) -> Self {
        self.endpos = Some(lsn);
        self
    }

    /// The interval between periodic status updates (zero: only when the server asks).
    #[must_use]
    pub fn status_interval(mut self, interval: Duration) -> Self {
        self.status_interval = interval;
        self
    }

    /// Fsyncs after every message and reports the flush at once, like
    /// `pg_receivewal --synchronous` (for use as a synchronous standby).
    #[must_use]
    pub fn synchronous(mut self, synchronous: bool) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Fsyncs the partial segment at most this long after a write (default: only completed
    /// segments and on stop).
    #[must_use]
    pub fn fsync_interval(mut self, interval: Duration) -> Self {
        self.fsync_interval = Some(interval);
        self
    }

    /// Sends hot standby feedback with these values when streaming starts and every status
    /// interval (default: none is sent).
    #[must_use]
    pub fn hot_standby_feedback(mut self, xmin: StandbyXmin) -> Self {
        self.hot_standby_feedback = Some(xmin);
        self
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot, if any.
    pub fn slot_name(&self) -> Option<&str> {
        self.slot.as_deref()
    }

    /// The end position, if any.
    pub fn end_position(&self) -> Option<Lsn> {
        self.endpos
    }

    fn validate(&self) -> Result<(), ReceiveError> {
        match &self.slot {
            Some(s) if s.is_empty() || s.contains('\0') => Err(ReceiveError::usage(
                "the slot name must be non-empty and free of NUL bytes",
            )),
            None if self.create_slot || self.temporary_slot => {
                Err(ReceiveError::usage("creating a slot needs a slot name"))
            }
            _ => Ok(()),
        }
    }
}

/// What the [`ReceiverHandle`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Control {
    stop_now: bool,
    stop_at: Option<Lsn>,
}

/// Stops a [`WalReceiver`] from another task; cheap to clone.
#[derive(Debug, Clone)]
pub struct ReceiverHandle {
    tx: Arc<watch::Sender<Control>>,
}

impl ReceiverHandle {
    /// Stops as soon as possible: what was received is written and flushed, a final status
    /// update and CopyDone are sent. Later [`WalReceiver::run`] calls return at once.
    pub fn stop(&self) {
        self.tx.send_modify(|c| c.stop_now = true);
    }

    /// Stops once the WAL up to `lsn` is written and flushed (the earlier of this and
    /// [`WalReceiverOptions::endpos`] wins), e.g. the end of a base backup.
    pub fn stop_at(&self, lsn: Lsn) {
        self.tx
            .send_modify(|c| c.stop_at = Some(c.stop_at.map_or(lsn, |o| o.min(lsn))));
    }
}

/// Why [`WalReceiver::run`] returned normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The end position was reached.
    EndPos,
    /// [`ReceiverHandle::stop`] was called.
    Stopped,
}

/// The result of a clean stop.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiveOutcome {
    /// Why it stopped.
    pub reason: StopReason,
    /// The timeline being written at the end (`None` if it stopped before streaming).
    pub timeline: Option<TimelineId>,
    /// The end of the WAL written and fsynced (`None` if nothing was written).
    pub flushed: Option<Lsn>,
    /// Segment files completed (renamed from `.partial`) during this run.
    pub segments_completed: u64,
    /// Timeline switches followed during this run.
    pub timeline_switches: u32,
}

/// A `pg_receivewal`-style WAL receiver (see the module documentation for the algorithm).
///
/// Call [`WalReceiver::run`] to stream until the end position or a stop through
/// [`WalReceiver::handle`]; it returns a typed [`ReceiveError`] otherwise, after which it
/// can be called again (it resumes from the files). Retrying is the caller's decision,
/// guided by [`ReceiveError::is_transient`].
#[derive(Debug)]
pub struct WalReceiver {
    config: Config,
    options: WalReceiverOptions,
    control: watch::Receiver<Control>,
    tx: Arc<watch::Sender<Control>>,
}

impl WalReceiver {
    /// A receiver connecting with `config` (the physical replication mode is set for you).
    pub fn new(mut config: Config, options: WalReceiverOptions) -> Self {
        config.set_replication(ReplicationMode::Physical);
        let (tx, control) = watch::channel(Control::default());
        Self {
            config,
            options,
            control,
            tx: Arc::new(tx),
        }
    }

    /// The options.
    pub fn options(&self) -> &WalReceiverOptions {
        &self.options
    }

    /// A handle to stop the receiver from elsewhere.
    pub fn handle(&self) -> ReceiverHandle {
        ReceiverHandle {
            tx: Arc::clone(&self.tx),
        }
    }

    /// Connects and streams until the end position is reached or the handle asks to stop.
    pub async fn run(&mut self) -> Result<ReceiveOutcome, ReceiveError> {
        self.options.validate()?;
        let stopped = ReceiveOutcome {
            reason: StopReason::Stopped,
            timeline: None,
            flushed: None,
            segments_completed: 0,
            timeline_switches: 0,
        };
        if self.control.borrow_and_update().stop_now {
            return Ok(stopped);
        }
        let client = tokio::select! {
            biased;
            () = wait_stop(&mut self.control) => return Ok(stopped),
            c = Client::connect(&self.config) => c.map_err(|e| ReceiveError::conn("connecting", e))?,
        };
        let mut session = Session {
            options: &self.options,
            control: &mut self.control,
            segments_completed: 0,
            timeline_switches: 0,
        };
        session.run(client).await
    }
}

/// Resolves when a stop is requested (never if the sender is gone).
async fn wait_stop(control: &mut watch::Receiver<Control>) {
    loop {
        if control.borrow_and_update().stop_now {
            return;
        }
        if control.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// How one `START_REPLICATION` ended.
enum Ended {
    /// A stop was requested or the end position reached.
    Stop(StopReason),
    /// The server ended the COPY (end of timeline, or shutdown).
    ServerEnded,
}

struct Session<'a> {
    options: &'a WalReceiverOptions,
    control: &'a mut watch::Receiver<Control>,
    segments_completed: u64,
    timeline_switches: u32,
}

impl Session<'_> {
    async fn run(&mut self, mut client: Client) -> Result<ReceiveOutcome, ReceiveError> {
        let opts = self.options;
        let sys = client
            .identify_system()
            .await
            .map_err(|e| ReceiveError::conn("IDENTIFY_SYSTEM", e))?;
        let size_text = client
            .show("wal_segment_size")
            .await
            .map_err(|e| ReceiveError::conn("SHOW wal_segment_size", e))?;
        let segment_size = parse_size(&size_text).ok_or_else(|| {
            ReceiveError::new(
                ReceiveErrorKind::Protocol,
                format!("the server reported an unreadable wal_segment_size {size_text:?}"),
            )
        })?;
        let slot_start = self.prepare_slot(&mut client).await?;

        let resumed = resume_position(&opts.dir, segment_size).map_err(ReceiveError::local)?;
        let (mut timeline, start) = match (resumed, opts.start, slot_start) {
            (Some((tli, lsn)), _, _) => (tli, lsn),
            (None, Some(lsn), _) => (opts.timeline.unwrap_or(sys.timeline), lsn),
            (None, None, Some((lsn, tli))) => (tli.unwrap_or(sys.timeline), lsn),
            (None, None, None) => (opts.timeline.unwrap_or(sys.timeline), sys.xlog_pos),
        };
        let mut start = start
            .segment_start(segment_size)
            .ok_or_else(|| ReceiveError::local(WalError::Overflow.into()))?;
        tracing::info!(
            %start, %timeline, segment_size, resumed = resumed.is_some(),
            server_timeline = %sys.timeline, server_position = %sys.xlog_pos,
            "starting WAL receiver"
        );

        let mut writer =
            WalWriter::new(&opts.dir, segment_size, timeline).map_err(ReceiveError::local)?;
        if let Some(interval) = opts.fsync_interval {
            writer = writer.with_sync_interval(interval);
        }
        if timeline.0 > 1 && !history_path(&opts.dir, timeline).exists() {
            client = save_history(client, &writer, timeline).await?;
        }

        loop {
            if let Some(end) = self.stop_at() {
                if start >= end {
                    return Ok(self.outcome(StopReason::EndPos, timeline, Some(start)));
                }
            }
            let mut stream = client
                .start_physical_replication(opts.slot.as_deref(), start, Some(timeline))
                .await
                .map_err(|e| ReceiveError::conn("START_REPLICATION", e))?;
            stream.set_status_interval(opts.status_interval);
            tracing::debug!(%start, %timeline, "streaming");
            let ended = self.stream(&mut stream, &mut writer, start).await;
            let ended = match ended {
                Ok(e) => e,
                Err(e) => {
                    // Keep what was received durable; the error is what matters.
                    let _ = writer.close(std::time::Instant::now());
                    return Err(e);
                }
            };
            writer
                .close(std::time::Instant::now())
                .map_err(ReceiveError::local)?;
            self.count_completed(&mut writer);
            let flushed = writer.flush_position();
            report(&mut stream, &writer);
            match ended {
                Ended::Stop(reason) => {
                    match tokio::time::timeout(FINISH_TIMEOUT, stream.finish()).await {
                        Ok(Ok((client, _))) => client.close().await,
                        Ok(Err(e)) => tracing::warn!("ending the replication stream: {e}"),
                        Err(_) => tracing::warn!(
                            "the server did not end the replication stream within {} s",
                            FINISH_TIMEOUT.as_secs()
                        ),
                    }
                    tracing::info!(?reason, ?flushed, "WAL receiver stopped");
                    return Ok(self.outcome(reason, timeline, flushed));
                }
                Ended::ServerEnded => {
                    let (c, next) = stream
                        .finish()
                        .await
                        .map_err(|e| ReceiveError::conn("ending the replication stream", e))?;
                    let Some(next) = next else {
                        return Err(ReceiveError::new(
                            ReceiveErrorKind::Connection,
                            "the server ended the replication stream (is it shutting down?)",
                        ));
                    };
                    if next.timeline <= timeline {
                        return Err(ReceiveError::new(
                            ReceiveErrorKind::Protocol,
                            format!(
                                "the server switched from timeline {timeline} to the older \
                                 timeline {}",
                                next.timeline
                            ),
                        ));
                    }
                    if flushed.is_some_and(|f| next.start > f) {
                        return Err(ReceiveError::new(
                            ReceiveErrorKind::Protocol,
                            format!(
                                "timeline {timeline} ended at {} but WAL was received only up \
                                 to {}",
                                next.start,
                                flushed.unwrap_or(Lsn::INVALID)
                            ),
                        ));
                    }
                    tracing::info!(
                        from = %timeline, to = %next.timeline, at = %next.start,
                        "following a timeline switch"
                    );
                    writer
                        .switch_timeline(next.timeline, std::time::Instant::now())
                        .map_err(ReceiveError::local)?;
                    client = save_history(c, &writer, next.timeline).await?;
                    timeline = next.timeline;
                    self.timeline_switches += 1;
                    start = next
                        .start
                        .segment_start(segment_size)
                        .ok_or_else(|| ReceiveError::local(WalError::Overflow.into()))?;
                }
            }
        }
    }

    /// Creates or reads the slot; returns where it says streaming should start.
    async fn prepare_slot(
        &self,
        client: &mut Client,
    ) -> Result<Option<(Lsn, Option<TimelineId>)>, ReceiveError> {
        let opts = self.options;
        let Some(slot) = opts.slot.as_deref() else {
            return Ok(None);
        };
        let create = |temporary: bool| {
            let o = CreateSlotOptions::physical(true);
            if temporary { o.temporary() } else { o }
        };
        if opts.temporary_slot {
            client
                .create_replication_slot(slot, &create(true))
                .await
                .map_err(|e| ReceiveError::conn("creating the temporary slot", e))?;
            // A physical slot reports no consistent point: start like without a slot.
            return Ok(None);
        }
        if client.server_major_version().is_some_and(|v| v >= 15) {
            if let Some(read) = client
                .read_replication_slot(slot)
                .await
                .map_err(|e| ReceiveError::conn("READ_REPLICATION_SLOT", e))?
            {
                return Ok(read.restart_lsn.map(|l| (l, read.restart_tli)));
            }
            if !opts.create_slot {
                return Err(ReceiveError::new(
                    ReceiveErrorKind::SlotMissing,
                    format!("replication slot \"{slot}\" does not exist"),
                ));
            }
        } else if !opts.create_slot {
            // Before 15 a missing slot shows up as START_REPLICATION's error.
            return Ok(None);
        }
        match client.create_replication_slot(slot, &create(false)).await {
            Ok(_) => {
                // A physical slot reports no consistent point: start from the server's
                // position (or the requested start) like pg_receivewal; the slot reserved
                // WAL from before it.
                tracing::info!(slot, "created replication slot");
                Ok(None)
            }
            // Created concurrently, or (before 15) already there: use it as it is.
            Err(e) if e.code().is_some_and(|c| c.code() == "42710") => Ok(None),
            Err(e) => Err(ReceiveError::conn("creating the slot", e)),
        }
    }

    fn stop_at(&self) -> Option<Lsn> {
        let asked = self.control.borrow().stop_at;
        match (self.options.endpos, asked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn count_completed(&mut self, writer: &mut WalWriter) {
        for name in writer.take_completed() {
            tracing::info!(segment = %name, "segment complete");
            self.segments_completed += 1;
        }
    }

    fn outcome(
        &self,
        reason: StopReason,
        timeline: TimelineId,
        flushed: Option<Lsn>,
    ) -> ReceiveOutcome {
        ReceiveOutcome {
            reason,
            timeline: Some(timeline),
            flushed,
            segments_completed: self.segments_completed,
            timeline_switches: self.timeline_switches,
        }
    }

    /// Streams one `START_REPLICATION` into the writer.
    async fn stream(
        &mut self,
        stream: &mut ReplicationStream,
        writer: &mut WalWriter,
        start: Lsn,
    ) -> Result<Ended, ReceiveError> {
        let opts = self.options;
        let mut next_feedback = None;
        if let Some(x) = opts.hot_standby_feedback {
            send_hsf(stream, x).await?;
            next_feedback =
                (!opts.status_interval.is_zero()).then(|| Instant::now() + opts.status_interval);
        }
        loop {
            let stop_now = self.control.borrow_and_update().stop_now;
            if stop_now {
                return Ok(Ended::Stop(StopReason::Stopped));
            }
            let stop_at = self.stop_at();
            let position = writer.write_position().unwrap_or(start);
            if stop_at.is_some_and(|end| position >= end) {
                return Ok(Ended::Stop(StopReason::EndPos));
            }
            let sync_at = writer.sync_deadline().map(Instant::from_std);
            let wake = match (sync_at, next_feedback) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let msg = tokio::select! {
                biased;
                changed = self.control.changed() => {
                    if changed.is_err() {
                        // The sender lives in the receiver itself; cannot happen while
                        // streaming, but never spin if it did.
                        return Ok(Ended::Stop(StopReason::Stopped));
                    }
                    continue;
                }
                () = sleep_until(wake), if wake.is_some() => {
                    let now = Instant::now();
                    writer
                        .sync_if_due(now.into_std())
                        .map_err(ReceiveError::local)?;
                    report(stream, writer);
                    if let (Some(x), Some(at)) = (opts.hot_standby_feedback, next_feedback) {
                        if now >= at {
                            send_hsf(stream, x).await?;
                            next_feedback = Some(now + opts.status_interval);
                        }
                    }
                    continue;
                }
                m = stream.next_message() => m.map_err(|e| ReceiveError::conn("streaming", e))?,
            };
            match msg {
                Some(ReplicationMessage::XLogData(x)) => {
                    let mut data = &x.data[..];
                    if let Some(end) = stop_at {
                        let room = end.distance_from(x.wal_start).unwrap_or(0);
                        if let Ok(room) = usize::try_from(room) {
                            data = data.get(..room).unwrap_or(data);
                        }
                    }
                    writer
                        .write(x.wal_start, data)
                        .map_err(ReceiveError::local)?;
                    let now = std::time::Instant::now();
                    if opts.synchronous {
                        writer.sync(now).map_err(ReceiveError::local)?;
                    } else {
                        writer.sync_if_due(now).map_err(ReceiveError::local)?;
                    }
                    self.count_completed(writer);
                    report(stream, writer);
                    if opts.synchronous {
                        stream
                            .send_status_update(false)
                            .await
                            .map_err(|e| ReceiveError::conn("sending a status update", e))?;
                    }
                }
                Some(ReplicationMessage::PrimaryKeepalive(k)) => {
                    tracing::trace!(wal_end = %k.wal_end, "keepalive");
                }
                Some(other) => {
                    tracing::debug!(?other, "ignoring an unexpected replication message");
                }
                None => return Ok(Ended::ServerEnded),
            }
        }
    }
}

/// Sleeps until `at` (forever without one; the select arm is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Sets the positions the stream's status updates report from the writer's state.
fn report(stream: &mut ReplicationStream, writer: &WalWriter) {
    stream.set_lsns(FeedbackLsns {
        write: writer.write_position().unwrap_or(Lsn::INVALID),
        flush: writer.flush_position().unwrap_or(Lsn::INVALID),
        apply: Lsn::INVALID,
    });
}

async fn send_hsf(stream: &mut ReplicationStream, x: StandbyXmin) -> Result<(), ReceiveError> {
    stream
        .send_hot_standby_feedback(x.xmin, x.xmin_epoch, x.catalog_xmin, x.catalog_xmin_epoch)
        .await
        .map_err(|e| ReceiveError::conn("sending hot standby feedback", e))
}

fn history_path(dir: &Path, timeline: TimelineId) -> PathBuf {
    dir.join(format!("{:08X}.history", timeline.0))
}

/// Fetches `TIMELINE_HISTORY timeline` and saves it next to the segments.
async fn save_history(
    mut client: Client,
    writer: &WalWriter,
    timeline: TimelineId,
) -> Result<Client, ReceiveError> {
    let history = client
        .timeline_history(timeline)
        .await
        .map_err(|e| ReceiveError::conn("TIMELINE_HISTORY", e))?;
    let path = writer
        .write_history(timeline, &history.content)
        .map_err(ReceiveError::local)?;
    tracing::info!(file = %path.display(), "saved timeline history");
    Ok(client)
}

/// Parses a `SHOW` value in bytes with PostgreSQL's memory units (`16MB`, `1GB`, `8192`).
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Broadly what went wrong in a [`WalReceiver`]; match on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReceiveErrorKind {
    /// The options are inconsistent (e.g. creating a slot without a name).
    Usage,
    /// The replication slot does not exist (create it, or ask for it to be created).
    SlotMissing,
    /// Another connection is streaming from the slot.
    SlotInUse,
    /// The role may not replicate (no `REPLICATION` attribute, or `pg_hba.conf` has no
    /// `replication` entry for it).
    Permission,
    /// Authentication failed.
    Auth,
    /// The server is not set up for physical replication (`wal_level`, `max_wal_senders`).
    ServerConfig,
    /// The server no longer has the WAL requested (recycled; a slot would have kept it).
    WalRemoved,
    /// The connection could not be made or was lost, or the server ended the stream while
    /// shutting down: worth retrying.
    Connection,
    /// Another error reported by the server.
    Server,
    /// The server broke the protocol or sent WAL that does not fit (a gap).
    Protocol,
    /// The server is too old for what was asked.
    Unsupported,
    /// Writing the files failed (disk full, permissions, ...).
    Local,
}

#[derive(Debug)]
enum Cause {
    None,
    Conn(walstream_conn::Error),
    Local(LocalError),
}

/// An error of a [`WalReceiver`]: a [`ReceiveErrorKind`], what was being done, and the
/// connection or local error that caused it.
#[derive(Debug)]
pub struct ReceiveError {
    kind: ReceiveErrorKind,
    context: Cow<'static, str>,
    cause: Cause,
}

impl ReceiveError {
    fn new(kind: ReceiveErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            context: context.into(),
            cause: Cause::None,
        }
    }

    fn usage(context: &'static str) -> Self {
        Self::new(ReceiveErrorKind::Usage, context)
    }

    fn conn(context: &'static str, e: walstream_conn::Error) -> Self {
        Self {
            kind: classify(&e),
            context: Cow::Borrowed(context),
            cause: Cause::Conn(e),
        }
    }

    fn local(e: LocalError) -> Self {
        let (kind, context) = match &e {
            LocalError::Wal(WalError::Gap { .. } | WalError::NotAtSegmentStart { .. }) => (
                ReceiveErrorKind::Protocol,
                "the server sent WAL that does not continue the files",
            ),
            LocalError::Wal(WalError::InvalidSegmentSize(_)) => (
                ReceiveErrorKind::Protocol,
                "the server's wal_segment_size is not usable",
            ),
            _ => (ReceiveErrorKind::Local, "writing the WAL directory"),
        };
        Self {
            kind,
            context: Cow::Borrowed(context),
            cause: Cause::Local(e),
        }
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> ReceiveErrorKind {
        self.kind
    }

    /// The connection layer's error, when the failure came from the connection or server.
    pub fn conn_error(&self) -> Option<&walstream_conn::Error> {
        match &self.cause {
            Cause::Conn(e) => Some(e),
            _ => None,
        }
    }

    /// The connection layer's error by value (to convert it into another error type), or
    /// this error back when the failure did not come from the connection.
    pub fn into_conn_error(self) -> Result<walstream_conn::Error, Self> {
        match self.cause {
            Cause::Conn(e) => Ok(e),
            _ => Err(self),
        }
    }

    /// What was being done when it failed (`"START_REPLICATION"`, `"streaming"`, ...).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The local (file or WAL layout) error, when the failure came from writing.
    pub fn local_error(&self) -> Option<&LocalError> {
        match &self.cause {
            Cause::Local(e) => Some(e),
            _ => None,
        }
    }

    /// The server's error report, when the server reported the failure.
    pub fn db_error(&self) -> Option<&DbError> {
        self.conn_error().and_then(walstream_conn::Error::db_error)
    }

    /// Whether running again later may succeed (a lost connection, a server restarting, a
    /// slot still held by the previous connection's walsender), like `pg_receivewal`'s
    /// retry loop.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            ReceiveErrorKind::Connection | ReceiveErrorKind::SlotInUse
        )
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        match &self.cause {
            Cause::None => Ok(()),
            Cause::Conn(e) => write!(f, ": {e}"),
            Cause::Local(e) => write!(f, ": {e}"),
        }
    }
}

impl std::error::Error for ReceiveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            Cause::None => None,
            Cause::Conn(e) => Some(e),
            Cause::Local(e) => Some(e),
        }
    }
}

/// Maps a connection-layer error to a receiver error kind.
fn classify(e: &walstream_conn::Error) -> ReceiveErrorKind {
    use ReceiveErrorKind as K;
    if let Some(db) = e.db_error() {
        let code = db.code();
        let msg = db.message().to_ascii_lowercase();
        return match code.code() {
            "42704" if msg.contains("replication slot") => K::SlotMissing,
            "55006" => K::SlotInUse,
            "42501" | "28000" => K::Permission,
            "28P01" => K::Auth,
            "53300" if msg.contains("max_wal_senders") || msg.contains("wal sender") => {
                K::ServerConfig
            }
            _ if msg.contains("wal_level") => K::ServerConfig,
            _ if msg.contains("has already been removed") => K::WalRemoved,
            "53300" => K::Connection,
            _ if matches!(code.class(), "57" | "08") => K::Connection,
            _ => K::Server,
        };
    }
    match e.kind() {
        ConnKind::Auth => K::Auth,
        ConnKind::Config | ConnKind::InvalidState => K::Usage,
        ConnKind::Protocol => K::Protocol,
        ConnKind::Unsupported => K::Unsupported,
        ConnKind::Db => K::Server,
        _ => K::Connection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_postgres_units() {
        assert_eq!(parse_size("16MB"), Some(16 << 20));
        assert_eq!(parse_size("1MB"), Some(1 << 20));
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("8192"), Some(8192));
        assert_eq!(parse_size("64kB"), Some(64 << 10));
        assert_eq!(parse_size("16 MB"), Some(16 << 20));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("16XB"), None);
        assert_eq!(parse_size("99999999999999999999TB"), None);
        assert_eq!(parse_size("99999999TB"), None);
    }

    #[test]
    fn options_are_validated() {
        let no_name = WalReceiverOptions::new("/x").create_slot(true);
        assert_eq!(
            no_name.validate().unwrap_err().kind(),
            ReceiveErrorKind::Usage
        );
        let tmp = WalReceiverOptions::new("/x").temporary_slot(true);
        assert_eq!(tmp.validate().unwrap_err().kind(), ReceiveErrorKind::Usage);
        let nul = WalReceiverOptions::new("/x").slot("a\0b");
        assert_eq!(nul.validate().unwrap_err().kind(), ReceiveErrorKind::Usage);
        assert!(
            WalReceiverOptions::new("/x")
                .slot("s")
                .create_slot(true)
                .validate()
                .is_ok()
        );
        assert!(WalReceiverOptions::new("/x").validate().is_ok());
    }

    #[test]
    fn handle_keeps_the_earliest_stop_position() {
        let r = WalReceiver::new(
            Config::new(),
            WalReceiverOptions::new("/x").endpos(Lsn(500)),
        );
        let h = r.handle();
        h.stop_at(Lsn(900));
        h.stop_at(Lsn(700));
        h.stop_at(Lsn(800));
        assert_eq!(r.control.borrow().stop_at, Some(Lsn(700)));
        assert!(!r.control.borrow().stop_now);
        h.clone().stop();
        assert!(r.control.borrow().stop_now);
    }

    #[test]
    fn stop_before_run_returns_at_once() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Nothing listens on port 1: a connection attempt would fail, so Ok proves none
        // was made.
        let config: Config = "host=127.0.0.1 port=1 user=x".parse().unwrap();
        let mut r = WalReceiver::new(config, WalReceiverOptions::new("/nonexistent"));
        r.handle().stop();
        let out = rt.block_on(r.run()).unwrap();
        assert_eq!(out.reason, StopReason::Stopped);
        assert_eq!(out.flushed, None);
    }

    #[test]
    fn connection_failures_are_transient() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config: Config = "host=127.0.0.1 port=1 user=x connect_timeout=2"
            .parse()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut r = WalReceiver::new(config, WalReceiverOptions::new(dir.path()));
        let e = rt.block_on(r.run()).unwrap_err();
        assert_eq!(e.kind(), ReceiveErrorKind::Connection, "{e}");
        assert!(e.is_transient());
        assert!(e.conn_error().is_some());
        assert!(e.to_string().starts_with("connecting: "), "{e}");
    }

    #[test]
    fn local_errors_keep_their_layer() {
        let gap = ReceiveError::local(LocalError::Wal(WalError::Gap {
            expected: Lsn(1),
            got: Lsn(2),
        }));
        assert_eq!(gap.kind(), ReceiveErrorKind::Protocol);
        assert!(!gap.is_transient());
        assert!(gap.local_error().is_some());
        assert!(gap.to_string().contains("0/2 but 0/1"), "{gap}");
        let io = ReceiveError::local(LocalError::io(
            "writing a WAL segment",
            "/x",
            std::io::Error::other("disk full"),
        ));
        assert_eq!(io.kind(), ReceiveErrorKind::Local);
        assert!(std::error::Error::source(&io).is_some());
    }
}
