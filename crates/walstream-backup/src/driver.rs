//! The async driver of `BASE_BACKUP`: sends the command in the server's syntax, feeds the
//! answer through [`BackupStreamDecoder`] into a [`BackupTarget`] as it arrives, and
//! streams the backup's WAL over a second connection when asked (`-X stream`).
//!
//! Memory stays flat: every CopyData message goes straight to the target (extraction,
//! decompression or a file) and is dropped; nothing is accumulated.
//!
//! The target writes with ordinary (blocking) file I/O on the task that runs the backup,
//! like `pg_basebackup` does in its single thread; the WAL stream of [`WalMethod::Stream`]
//! is a task of its own (`tokio::spawn`), so a multi-threaded runtime lets both progress
//! in parallel (a current-thread runtime works too: the stream advances whenever the
//! backup waits for the network).
//!
//! # Interruption
//!
//! Any failure — the connection dropping, the server reporting an error, the target
//! failing, the WAL stream failing — ends [`BaseBackup::run`] with a typed [`Error`]
//! ([`Error::Conn`] for the connection and the server, with the SQLSTATE when the server
//! sent one). Dropping the future cancels the backup. Either way a [`DirectoryTarget`]
//! keeps its [`INCOMPLETE_MARKER`](crate::INCOMPLETE_MARKER) and has neither
//! `backup_label` nor `backup_manifest`. The [`Client`] is broken after an interruption
//! (see [`walstream_conn::CopyOutStream`]) unless the server itself reported the error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;
use walstream_conn::{Client, Config, CopyOutItem, ResultSet};
use walstream_proto::{Lsn, TimelineId};

use crate::basebackup::{
    BackupStreamDecoder, BackupTarget, BackupTargetKind, BaseBackupOptions, DirectoryTarget,
    Format, ManifestMode, PriorManifest, Progress, ProgressFn, TablespaceInfo,
};
use crate::error::Error;
use crate::manifest::VerifyOptions;
use crate::receiver::{ReceiveError, StopReason, WalReceiver, WalReceiverOptions};
use crate::wal::PARTIAL_SUFFIX;

/// How the WAL needed to restore the backup is obtained (`pg_basebackup -X`).
#[derive(Debug, Clone, Default)]
pub enum WalMethod {
    /// No WAL: the backup needs a WAL archive to be restored.
    None,
    /// The server adds the WAL to the main archive at the end of the backup (`WAL`
    /// option); the server must keep it until then (`wal_keep_size` or a slot).
    #[default]
    Fetch,
    /// A second connection streams the WAL into `pg_wal` while the backup runs.
    Stream(Box<WalStream>),
}

/// Settings of the second, WAL-streaming connection of [`WalMethod::Stream`].
#[derive(Debug, Clone)]
pub struct WalStream {
    config: Config,
    slot: Option<String>,
    temporary_slot: bool,
    dir: Option<PathBuf>,
    status_interval: Duration,
}

impl WalStream {
    /// Streams over a connection made with `config`, switched to a physical replication
    /// connection (`replication=true`). Without [`WalStream::slot`], a temporary physical
    /// slot keeps the WAL on the server while the backup runs, like `pg_basebackup`.
    pub fn new(mut config: Config) -> Self {
        config.set_replication(walstream_conn::ReplicationMode::Physical);
        Self {
            config,
            slot: None,
            temporary_slot: true,
            dir: None,
            status_interval: Duration::from_secs(1),
        }
    }

    /// Streams from this existing physical slot instead of a temporary one.
    #[must_use]
    pub fn slot(mut self, name: impl Into<String>) -> Self {
        self.slot = Some(name.into());
        self
    }

    /// Streams without any slot (the server may remove WAL the backup needs).
    #[must_use]
    pub fn without_slot(mut self) -> Self {
        self.slot = None;
        self.temporary_slot = false;
        self
    }

    /// Writes the segments into `dir` (by default `pg_wal` of the
    /// [`DirectoryTarget`]; required with other targets).
    #[must_use]
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
}

/// What a finished backup reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupResult {
    /// The server's major version.
    pub server_major: u32,
    /// Where the backup's WAL starts (the checkpoint's redo position).
    pub start_lsn: Lsn,
    /// The timeline at the start.
    pub start_timeline: TimelineId,
    /// Where the WAL needed for consistency ends.
    pub end_lsn: Lsn,
    /// The timeline at the end.
    pub end_timeline: TimelineId,
    /// The tablespaces, as the server announced them (the main directory last).
    pub tablespaces: Vec<TablespaceInfo>,
    /// How many archives were received.
    pub archives: usize,
    /// With [`WalMethod::Stream`]: the end of the WAL written to `pg_wal`.
    pub wal_streamed_to: Option<Lsn>,
    /// The last progress report.
    pub last_progress: Option<Progress>,
}

/// A `BASE_BACKUP` run; see the module docs.
///
/// ```no_run
/// use walstream_backup::{BaseBackup, BaseBackupOptions, CheckpointMode, DirectoryTarget, Format};
/// use walstream_conn::{Client, Config};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config: Config = "host=db user=repl replication=true".parse()?;
/// let mut client = Client::connect(&config).await?;
/// let options = BaseBackupOptions {
///     checkpoint: CheckpointMode::Fast,
///     progress: true,
///     ..BaseBackupOptions::default()
/// };
/// let target = DirectoryTarget::create("/backups/today", Format::Plain)?;
/// let (result, dir) = BaseBackup::new(options)
///     .on_progress(|p| eprintln!("{} of {:?} bytes", p.bytes_done, p.bytes_total))
///     .run_to_directory(&mut client, target)
///     .await?;
/// println!("backup in {} ends at {}", dir.display(), result.end_lsn);
/// # Ok(()) }
/// ```
pub struct BaseBackup {
    options: BaseBackupOptions,
    wal: WalMethod,
    idle_timeout: Option<Duration>,
    on_progress: Option<ProgressFn>,
}

impl std::fmt::Debug for BaseBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseBackup")
            .field("options", &self.options)
            .field("wal", &self.wal)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// Forwards to the caller's target and taps the progress reports. With `TARGET server`
/// or `blackhole` the server still announces archives and the manifest, without data:
/// `progress_only` keeps those empty announcements away from the target.
struct Tap<'a> {
    inner: &'a mut (dyn BackupTarget + Send),
    on_progress: Option<&'a mut ProgressFn>,
    last: Option<Progress>,
    progress_only: bool,
}

impl Tap<'_> {
    fn forward(&mut self) -> Option<&mut (dyn BackupTarget + Send)> {
        (!self.progress_only).then_some(&mut *self.inner)
    }
}

impl BackupTarget for Tap<'_> {
    fn begin_archive(&mut self, name: &str, location: Option<&str>) -> Result<(), Error> {
        self.forward()
            .map_or(Ok(()), |t| t.begin_archive(name, location))
    }
    fn archive_data(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.forward() {
            Some(t) => t.archive_data(data),
            None => Err(Error::Protocol(
                "archive data although the backup goes to another target".into(),
            )),
        }
    }
    fn end_archive(&mut self) -> Result<(), Error> {
        self.forward().map_or(Ok(()), |t| t.end_archive())
    }
    fn begin_manifest(&mut self) -> Result<(), Error> {
        self.forward().map_or(Ok(()), |t| t.begin_manifest())
    }
    fn manifest_data(&mut self, data: &[u8]) -> Result<(), Error> {
        match self.forward() {
            Some(t) => t.manifest_data(data),
            None => Err(Error::Protocol(
                "manifest data although the backup goes to another target".into(),
            )),
        }
    }
    fn end_manifest(&mut self) -> Result<(), Error> {
        self.forward().map_or(Ok(()), |t| t.end_manifest())
    }
    fn tablespaces(&mut self, tablespaces: &[TablespaceInfo]) -> Result<(), Error> {
        self.forward()
            .map_or(Ok(()), |t| t.tablespaces(tablespaces))
    }
    fn progress(&mut self, progress: Progress) {
        self.last = Some(progress);
        if let Some(f) = &mut self.on_progress {
            f(&progress);
        }
        self.inner.progress(progress);
    }
}

/// A position result set (`recptr`, `tli`).
fn position(set: &ResultSet, what: &str) -> Result<(Lsn, TimelineId), Error> {
    let bad = || Error::Protocol(format!("BASE_BACKUP {what} position: malformed result"));
    let [row] = set.rows() else {
        return Err(bad());
    };
    let lsn = row
        .get(0)
        .and_then(|s| s.parse::<Lsn>().ok())
        .ok_or_else(bad)?;
    let tli = row
        .get(1)
        .and_then(|s| s.parse::<u32>().ok())
        .map(TimelineId)
        .ok_or_else(bad)?;
    Ok((lsn, tli))
}

impl BaseBackup {
    /// A backup with these options; the WAL method defaults to [`WalMethod::Fetch`] (which
    /// overrides [`BaseBackupOptions::wal`]).
    pub fn new(options: BaseBackupOptions) -> Self {
        Self {
            options,
            wal: WalMethod::Fetch,
            idle_timeout: Some(Duration::from_secs(600)),
            on_progress: None,
        }
    }

    /// Chooses how the WAL is obtained.
    #[must_use]
    pub fn wal_method(mut self, wal: WalMethod) -> Self {
        self.wal = wal;
        self
    }

    /// Makes this an incremental backup (PostgreSQL 17+, like `pg_basebackup --incremental`)
    /// on top of the backup whose manifest is `prior` (a path such as
    /// `<prior backup>/backup_manifest`, or its bytes): the manifest is sent with
    /// `UPLOAD_MANIFEST` on the backup's connection, then `BASE_BACKUP` runs with
    /// `INCREMENTAL`. Sets [`BaseBackupOptions::incremental`].
    ///
    /// The server must run with `summarize_wal = on`, and have had it on since before the
    /// prior backup started (it needs the WAL summaries from there on). Relation files
    /// come as `INCREMENTAL.<name>` files holding the changed blocks; `pg_combinebackup`
    /// turns the chain of backups into a full one that a server can start on.
    ///
    /// On a server older than 17 the backup fails with [`Error::Unsupported`] before
    /// anything is sent; when the server refuses the manifest (another cluster's, or not
    /// a manifest) or the incremental backup (no WAL summaries), with [`Error::Conn`]
    /// holding the server's error and saying which step failed.
    #[must_use]
    pub fn incremental_from(mut self, prior: impl Into<PriorManifest>) -> Self {
        self.options.incremental = Some(prior.into());
        self
    }

    /// Calls `f` on every progress report (bytes done and the estimated total, overall
    /// and per tablespace; totals need [`BaseBackupOptions::progress`]).
    #[must_use]
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Fails when the server sends nothing for this long (default 10 minutes; `None`
    /// waits forever). A spread checkpoint can take minutes before the first byte.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// The options as they will be sent (the WAL method applied).
    pub fn options(&self) -> BaseBackupOptions {
        let mut o = self.options.clone();
        o.wal = matches!(self.wal, WalMethod::Fetch);
        o
    }

    /// Takes the backup into a [`DirectoryTarget`], then completes it: for plain format
    /// the backup is verified against its manifest first (WAL presence included unless
    /// [`WalMethod::None`]); the directory is then fsynced and its incomplete marker
    /// removed. With [`WalMethod::Stream`] the WAL goes to `pg_wal` below the directory
    /// unless [`WalStream::dir`] says otherwise. Returns the result and the directory.
    ///
    /// On any error the directory stays marked incomplete (see the module docs).
    pub async fn run_to_directory(
        &mut self,
        client: &mut Client,
        target: DirectoryTarget,
    ) -> Result<(BackupResult, PathBuf), Error> {
        let mut target = target;
        if target.format() == Format::Plain
            && self.options.tablespace_map
            && !target.tablespace_mappings().is_empty()
        {
            return Err(Error::Unsupported(
                "TABLESPACE_MAP with tablespace mapping in plain format: the map file would \
                 point at the old locations"
                    .into(),
            ));
        }
        // Streamed WAL goes to pg_wal of the target unless told otherwise; tar format gets
        // it as pg_wal.tar, like pg_basebackup.
        let mut wal_dir = None;
        let mut pack_wal = None;
        if let WalMethod::Stream(s) = &self.wal {
            if s.dir.is_none() {
                let dir = target.root().join("pg_wal");
                if target.format() == Format::Tar {
                    pack_wal = Some(dir.clone());
                }
                wal_dir = Some(dir);
            }
        }
        // With TARGET server or blackhole nothing but progress reaches this client.
        let to_client = self.options.target == BackupTargetKind::Client;
        if to_client
            && target.format() == Format::Plain
            && self.options.manifest != ManifestMode::No
        {
            let options = VerifyOptions {
                check_wal: !matches!(self.wal, WalMethod::None),
                ..VerifyOptions::default()
            };
            target = target.verify(options);
        }
        let result = self.run_inner(client, &mut target, wal_dir).await?;
        // Verification and fsync read and sync the whole tree: off the async threads.
        let dir = tokio::task::spawn_blocking(move || {
            if let Some(wal) = pack_wal {
                let tar = wal.with_file_name("pg_wal.tar");
                crate::tar::pack_directory(&wal, &tar)?;
                std::fs::remove_dir_all(&wal)
                    .map_err(|e| Error::io("removing the packed WAL directory", &wal, e))?;
            }
            target.complete()
        })
        .await
        .map_err(|e| Error::Protocol(format!("completing the backup failed: {e}")))??;
        Ok((result, dir))
    }

    /// Takes the backup into any [`BackupTarget`]. With [`WalMethod::Stream`] the WAL
    /// directory must be set with [`WalStream::dir`].
    pub async fn run(
        &mut self,
        client: &mut Client,
        target: &mut (dyn BackupTarget + Send),
    ) -> Result<BackupResult, Error> {
        self.run_inner(client, target, None).await
    }

    /// [`BaseBackup::run`] with the WAL directory of [`WalMethod::Stream`] defaulting to
    /// `wal_dir`.
    async fn run_inner(
        &mut self,
        client: &mut Client,
        target: &mut (dyn BackupTarget + Send),
        wal_dir: Option<PathBuf>,
    ) -> Result<BackupResult, Error> {
        let major = client
            .server_major_version()
            .ok_or_else(|| Error::Unsupported("the server did not report its version".into()))?;
        if self.options.incremental.is_some() && major < 17 {
            return Err(Error::Unsupported(format!(
                "incremental backups (UPLOAD_MANIFEST, BASE_BACKUP INCREMENTAL) need \
                 PostgreSQL 17 or later; the server is PostgreSQL {major}"
            )));
        }
        let options = self.options();
        let command = options.command(major)?;
        let stream_setup = match &self.wal {
            WalMethod::Stream(s) => {
                let dir = s.dir.clone().or(wal_dir).ok_or_else(|| {
                    Error::Unsupported("streaming WAL needs a directory (WalStream::dir)".into())
                })?;
                Some(((**s).clone(), dir))
            }
            _ => None,
        };
        if let Some(prior) = &options.incremental {
            upload_manifest(client, prior).await?;
        }
        tracing::debug!(%command, "starting base backup");

        let mut decoder = BackupStreamDecoder::new(major, options.manifest != ManifestMode::No);
        let mut tap = Tap {
            inner: target,
            on_progress: self.on_progress.as_mut(),
            last: None,
            progress_only: options.target != BackupTargetKind::Client,
        };
        let (end_tx, end_rx) = watch::channel(None::<Lsn>);
        let mut streamer: Option<tokio::task::JoinHandle<Result<Lsn, Error>>> = None;
        let outcome = async {
            let mut stream = client.base_backup(&command).await?;
            stream.set_idle_timeout(self.idle_timeout);
            let mut start = None;
            let mut end = None;
            let mut sets = 0usize;
            while let Some(item) = stream.next().await? {
                // A WAL stream that failed fails the backup now, not at its end.
                if streamer
                    .as_ref()
                    .is_some_and(tokio::task::JoinHandle::is_finished)
                {
                    if let Some(h) = streamer.take() {
                        return Err(stream_outcome(h.await).err().unwrap_or_else(|| {
                            Error::WalStream(Box::new(Error::Protocol(
                                "the WAL stream ended before the backup".into(),
                            )))
                        }));
                    }
                }
                match item {
                    CopyOutItem::ResultSet(set) => {
                        if set.columns().is_empty() {
                            // A bare command tag.
                            continue;
                        }
                        sets += 1;
                        match sets {
                            1 => {
                                let (lsn, tli) = position(&set, "start")?;
                                start = Some((lsn, tli));
                                if let Some((s, dir)) = &stream_setup {
                                    let job = StreamJob {
                                        settings: s.clone(),
                                        dir: dir.clone(),
                                        start: lsn,
                                        timeline: tli,
                                    };
                                    streamer = Some(tokio::spawn(stream_wal(job, end_rx.clone())));
                                }
                            }
                            2 => {
                                for row in set.rows() {
                                    let cols: Vec<Option<&str>> =
                                        (0..row.len()).map(|i| row.get(i)).collect();
                                    decoder.tablespace_row(&cols)?;
                                }
                                tap.tablespaces(decoder.tablespaces())?;
                            }
                            3 => end = Some(position(&set, "end")?),
                            _ => {
                                return Err(Error::Protocol(
                                    "unexpected result set after BASE_BACKUP".into(),
                                ));
                            }
                        }
                    }
                    CopyOutItem::CopyStart(_) => decoder.copy_start(&mut tap)?,
                    CopyOutItem::CopyData(data) => decoder.copy_data(&data, &mut tap)?,
                    CopyOutItem::CopyEnd => decoder.copy_done(&mut tap)?,
                    _ => {
                        return Err(Error::Protocol("unexpected item in BASE_BACKUP".into()));
                    }
                }
            }
            let (Some(start), Some(end)) = (start, end) else {
                return Err(Error::Protocol(
                    "BASE_BACKUP ended without its start and end positions".into(),
                ));
            };
            Ok((start, end))
        }
        .await;
        let ((start_lsn, start_timeline), (end_lsn, end_timeline)) = match outcome {
            Ok(v) => v,
            Err(e) => {
                if let Some(h) = streamer {
                    h.abort();
                }
                return Err(match e {
                    Error::Conn(e)
                        if options.incremental.is_some()
                            && e.kind() == walstream_conn::ErrorKind::Db =>
                    {
                        Error::Conn(e.context("the server refused the incremental BASE_BACKUP"))
                    }
                    e => e,
                });
            }
        };
        let wal_streamed_to = match streamer {
            Some(h) => {
                // The streamer stops once it has written everything up to the end.
                let _ = end_tx.send(Some(end_lsn));
                Some(stream_outcome(h.await)?)
            }
            None => None,
        };
        tracing::debug!(%start_lsn, %end_lsn, "base backup received");
        Ok(BackupResult {
            server_major: major,
            start_lsn,
            start_timeline,
            end_lsn,
            end_timeline,
            tablespaces: decoder.tablespaces().to_vec(),
            archives: decoder.archives(),
            wal_streamed_to,
            last_progress: tap.last,
        })
    }
}

/// Where the prior backup's manifest is read from.
enum ManifestSource<'a> {
    File(std::fs::File, &'a Path),
    Bytes(&'a [u8]),
}

/// Sends the prior backup's manifest with `UPLOAD_MANIFEST` (COPY IN), in chunks. The
/// server's errors get a context saying which step failed.
async fn upload_manifest(client: &mut Client, prior: &PriorManifest) -> Result<(), Error> {
    const CHUNK: usize = 64 * 1024;
    let conn = |e: walstream_conn::Error| {
        Error::Conn(if e.kind() == walstream_conn::ErrorKind::Db {
            e.context("the server refused the prior backup's manifest (UPLOAD_MANIFEST)")
        } else {
            e
        })
    };
    // Open the file before anything is sent.
    let mut source = match prior {
        PriorManifest::File(path) => ManifestSource::File(
            std::fs::File::open(path)
                .map_err(|e| Error::io("opening the prior backup's manifest", path, e))?,
            path,
        ),
        PriorManifest::Bytes(bytes) => ManifestSource::Bytes(bytes),
    };
    tracing::debug!(manifest = ?prior, "uploading the prior backup's manifest");
    let mut copy = client.copy_in("UPLOAD_MANIFEST").await.map_err(conn)?;
    match &mut source {
        ManifestSource::Bytes(bytes) => copy.send(bytes).await.map_err(conn)?,
        ManifestSource::File(file, path) => {
            use std::io::Read as _;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // Leave the connection usable: the server discards what it got.
                        let _ = copy.abort("the client could not read the manifest").await;
                        return Err(Error::io("reading the prior backup's manifest", *path, e));
                    }
                };
                let Some(data) = buf.get(..n).filter(|d| !d.is_empty()) else {
                    break;
                };
                copy.send(data).await.map_err(conn)?;
            }
        }
    }
    copy.finish().await.map_err(conn)?;
    Ok(())
}

/// The WAL streaming task's outcome, its errors wrapped in [`Error::WalStream`].
fn stream_outcome(
    joined: Result<Result<Lsn, Error>, tokio::task::JoinError>,
) -> Result<Lsn, Error> {
    match joined {
        Ok(Ok(lsn)) => Ok(lsn),
        Ok(Err(e)) => Err(Error::WalStream(Box::new(e))),
        Err(e) => Err(Error::WalStream(Box::new(Error::Protocol(format!(
            "the WAL streaming task failed: {e}"
        ))))),
    }
}

/// What the WAL streaming task needs.
#[derive(Debug)]
struct StreamJob {
    settings: WalStream,
    dir: PathBuf,
    start: Lsn,
    timeline: TimelineId,
}

/// A temporary slot name unique on the server for this process and moment.
fn temporary_slot_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("walstream_bb_{}_{nanos}", std::process::id())
}

/// Streams WAL from the start of `job.start`'s segment into `job.dir` with a
/// [`WalReceiver`] until the end position arrives through `end` and has been written and
/// flushed; returns the end of what was written. The last segment is renamed from
/// `.partial` to its final name (zero-padded, as `pg_basebackup -X stream` leaves it).
async fn stream_wal(job: StreamJob, mut end: watch::Receiver<Option<Lsn>>) -> Result<Lsn, Error> {
    let settings = &job.settings;
    let mut options = WalReceiverOptions::new(&job.dir)
        .start(job.start)
        .timeline(job.timeline)
        .status_interval(settings.status_interval)
        // Flushed positions advance within a segment too (what a slot keeps WAL for).
        .fsync_interval(settings.status_interval);
    match (&settings.slot, settings.temporary_slot) {
        (Some(s), _) => options = options.slot(s.clone()),
        (None, true) => {
            options = options
                .slot(temporary_slot_name())
                .create_slot(true)
                .temporary_slot(true);
        }
        (None, false) => {}
    }
    let mut receiver = WalReceiver::new(settings.config.clone(), options);
    let handle = receiver.handle();
    let run = receiver.run();
    tokio::pin!(run);
    let mut told = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut run => break outcome,
            changed = end.changed(), if !told => {
                told = true;
                match changed {
                    Ok(()) => match *end.borrow() {
                        Some(lsn) => handle.stop_at(lsn),
                        None => told = false,
                    },
                    // The backup was abandoned.
                    Err(_) => handle.stop(),
                }
            }
        }
    };
    let outcome = outcome.map_err(receive_error)?;
    let target = *end.borrow();
    let written = match (outcome.reason, outcome.flushed, target) {
        (StopReason::EndPos, Some(flushed), Some(target)) if flushed >= target => flushed,
        _ => {
            return Err(Error::Protocol(format!(
                "the WAL stream stopped at {:?} before the backup's end {target:?}",
                outcome.flushed
            )));
        }
    };
    finalize_partial(&job.dir)?;
    Ok(written)
}

/// A receiver error: the connection's error when it came from there, else the
/// receiver's own.
fn receive_error(e: ReceiveError) -> Error {
    match e.into_conn_error() {
        Ok(conn) => Error::Conn(conn),
        Err(e) => Error::Receive(Box::new(e)),
    }
}

/// Renames the `.partial` segments of `dir` to their final names.
fn finalize_partial(dir: &Path) -> Result<(), Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io("reading the WAL directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading the WAL directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = name.strip_suffix(PARTIAL_SUFFIX) {
            let to = dir.join(base);
            std::fs::rename(entry.path(), &to)
                .map_err(|e| Error::io("renaming the last WAL segment", &to, e))?;
        }
    }
    crate::wal::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_method_sets_the_wal_option() {
        let b = BaseBackup::new(BaseBackupOptions::default());
        assert!(b.options().wal);
        let b = b.wal_method(WalMethod::None);
        assert!(!b.options().wal);
        let b = b.wal_method(WalMethod::Stream(Box::new(WalStream::new(
            Config::default(),
        ))));
        assert!(!b.options().wal);
    }

    #[test]
    fn partial_segments_are_renamed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("000000010000000000000002.partial"), b"x").unwrap();
        std::fs::write(dir.path().join("000000010000000000000001"), b"y").unwrap();
        finalize_partial(dir.path()).unwrap();
        assert!(dir.path().join("000000010000000000000002").exists());
        assert!(!dir.path().join("000000010000000000000002.partial").exists());
        assert!(dir.path().join("000000010000000000000001").exists());
    }
}
