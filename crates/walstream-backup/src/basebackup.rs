//! `BASE_BACKUP`, sans-IO: the command text for the server's major version, and the decoder
//! of its COPY stream that routes archives, progress and the manifest to a
//! [`BackupTarget`].
//!
//! The wire format depends on the version
//! (<https://www.postgresql.org/docs/current/protocol-replication.html>):
//!
//! - 15 and later: after the start-position and tablespace result sets, one COPY OUT
//!   whose CopyData messages start with a kind byte: `n` (new archive: name and tablespace
//!   location as C strings), `d` (archive or manifest data), `p` (progress: bytes done as
//!   int64), `m` (the manifest follows);
//! - 14: one COPY OUT per tablespace carrying the raw tar, in the order of the tablespace
//!   result set, then one more for the manifest when one was requested.
//!
//! The driver feeds rows with [`BackupStreamDecoder::tablespace_row`] and COPY events with
//! [`BackupStreamDecoder::copy_start`], [`BackupStreamDecoder::copy_data`] and
//! [`BackupStreamDecoder::copy_done`].

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::compress::Codec;
use crate::error::{Error, TarError};
use crate::manifest::{ChecksumAlgorithm, MANIFEST_FILE, VerifyOptions, verify_backup_with};
use crate::tar::{ArchiveSink, DirExtractor, RawArchiveWriter, TarExtractor};

/// The marker file present in a backup directory from its creation until the backup is
/// complete; a directory holding it must never be used as a backup.
pub const INCOMPLETE_MARKER: &str = "walstream_backup_incomplete";

/// `CHECKPOINT` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointMode {
    /// Spread the checkpoint (the server default).
    #[default]
    Spread,
    /// Request an immediate checkpoint.
    Fast,
}

/// The `MANIFEST` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestMode {
    /// Ask for a manifest (the default since 13).
    #[default]
    Yes,
    /// No manifest.
    No,
    /// A manifest with every path hex-encoded.
    ForceEncode,
}

/// Where the server sends the backup (15+).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackupTargetKind {
    /// To this client (the default).
    #[default]
    Client,
    /// Into a directory on the server.
    Server(String),
    /// Nowhere (for testing the server side).
    Blackhole,
}

/// Options of `BASE_BACKUP`; [`BaseBackupOptions::command`] renders them for a server
/// version.
#[derive(Debug, Clone, Default)]
pub struct BaseBackupOptions {
    /// `LABEL`.
    pub label: Option<String>,
    /// `PROGRESS`: the server computes sizes first, so progress has a total.
    pub progress: bool,
    /// `CHECKPOINT`.
    pub checkpoint: CheckpointMode,
    /// `WAL`: include the needed WAL in the main archive (`-X fetch`).
    pub wal: bool,
    /// `WAIT false` (`NOWAIT` on 14): do not wait for the WAL to be archived.
    pub no_wait: bool,
    /// `COMPRESSION` method (`gzip`, `lz4`, `zstd`; 15+).
    pub compression: Option<String>,
    /// `COMPRESSION_DETAIL` (e.g. `level=5`, `workers=2`; 15+).
    pub compression_detail: Option<String>,
    /// `MAX_RATE` in kB/s.
    pub max_rate: Option<u32>,
    /// `TABLESPACE_MAP`: a `tablespace_map` file instead of symlinks.
    pub tablespace_map: bool,
    /// `VERIFY_CHECKSUMS false` (`NOVERIFY_CHECKSUMS` on 14).
    pub no_verify_checksums: bool,
    /// `MANIFEST`.
    pub manifest: ManifestMode,
    /// `MANIFEST_CHECKSUMS`.
    pub manifest_checksums: Option<ChecksumAlgorithm>,
    /// `TARGET` (15+).
    pub target: BackupTargetKind,
    /// `INCREMENTAL` (17+): the manifest of the backup this one builds on, which the
    /// driver sends with `UPLOAD_MANIFEST` on the same connection before `BASE_BACKUP`
    /// (see [`BaseBackup::incremental_from`](crate::BaseBackup::incremental_from)). The
    /// server must run with `summarize_wal = on` since before the prior backup started.
    pub incremental: Option<PriorManifest>,
}

/// The manifest of the backup an incremental backup builds on (`pg_basebackup
/// --incremental`): a file, usually `<prior backup>/backup_manifest`, or its bytes.
#[derive(Clone, PartialEq, Eq)]
pub enum PriorManifest {
    /// Read from this file when the backup starts.
    File(PathBuf),
    /// These bytes.
    Bytes(std::sync::Arc<[u8]>),
}

impl PriorManifest {
    /// The manifest in `path`.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// A manifest held in memory.
    pub fn bytes(bytes: impl Into<std::sync::Arc<[u8]>>) -> Self {
        Self::Bytes(bytes.into())
    }
}

impl std::fmt::Debug for PriorManifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

impl From<PathBuf> for PriorManifest {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Path> for PriorManifest {
    fn from(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

impl From<Vec<u8>> for PriorManifest {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes.into())
    }
}

/// An option the server's version does not have.
fn unsupported(what: &str, major: u32) -> Error {
    Error::Unsupported(format!(
        "{what} needs a newer server than PostgreSQL {major}"
    ))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl BaseBackupOptions {
    /// The `BASE_BACKUP` command for a server of major version `major` (14 and later):
    /// the parenthesized option list on 15+, the legacy keyword syntax on 14.
    pub fn command(&self, major: u32) -> Result<String, Error> {
        if major < 14 {
            return Err(unsupported("BASE_BACKUP as implemented here", major));
        }
        if let Some(l) = &self.label {
            if l.contains('\0') {
                return Err(Error::Unsupported("a label cannot contain NUL".into()));
            }
        }
        let manifest = match self.manifest {
            ManifestMode::Yes => "yes",
            ManifestMode::No => "no",
            ManifestMode::ForceEncode => "force-encode",
        };
        if major >= 15 {
            let mut o: Vec<String> = Vec::new();
            if let Some(l) = &self.label {
                o.push(format!("LABEL {}", quote(l)));
            }
            if self.progress {
                o.push("PROGRESS".into());
            }
            if self.checkpoint == CheckpointMode::Fast {
                o.push("CHECKPOINT 'fast'".into());
            }
            if self.wal {
                o.push("WAL".into());
            }
            if self.no_wait {
                o.push("WAIT false".into());
            }
            if let Some(c) = &self.compression {
                o.push(format!("COMPRESSION {}", quote(c)));
            }
            if let Some(d) = &self.compression_detail {
                o.push(format!("COMPRESSION_DETAIL {}", quote(d)));
            }
            if let Some(r) = self.max_rate {
                o.push(format!("MAX_RATE {r}"));
            }
            if self.tablespace_map {
                o.push("TABLESPACE_MAP".into());
            }
            if self.no_verify_checksums {
                o.push("VERIFY_CHECKSUMS false".into());
            }
            o.push(format!("MANIFEST {}", quote(manifest)));
            if let Some(a) = self.manifest_checksums {
                o.push(format!("MANIFEST_CHECKSUMS {}", quote(a.name())));
            }
            match &self.target {
                BackupTargetKind::Client => {}
                BackupTargetKind::Server(dir) => {
                    o.push("TARGET 'server'".into());
                    o.push(format!("TARGET_DETAIL {}", quote(dir)));
                }
                BackupTargetKind::Blackhole => o.push("TARGET 'blackhole'".into()),
            }
            if self.incremental.is_some() {
                if major < 17 {
                    return Err(unsupported("INCREMENTAL (PostgreSQL 17+)", major));
                }
                o.push("INCREMENTAL".into());
            }
            return Ok(format!("BASE_BACKUP ( {} )", o.join(", ")));
        }
        if self.compression.is_some() || self.compression_detail.is_some() {
            return Err(unsupported("server-side COMPRESSION", major));
        }
        if self.target != BackupTargetKind::Client {
            return Err(unsupported("TARGET", major));
        }
        if self.incremental.is_some() {
            return Err(unsupported("INCREMENTAL (PostgreSQL 17+)", major));
        }
        let mut s = String::from("BASE_BACKUP");
        if let Some(l) = &self.label {
            s.push_str(&format!(" LABEL {}", quote(l)));
        }
        if self.progress {
            s.push_str(" PROGRESS");
        }
        if self.checkpoint == CheckpointMode::Fast {
            s.push_str(" FAST");
        }
        if self.wal {
            s.push_str(" WAL");
        }
        if self.no_wait {
            s.push_str(" NOWAIT");
        }
        if let Some(r) = self.max_rate {
            s.push_str(&format!(" MAX_RATE {r}"));
        }
        if self.tablespace_map {
            s.push_str(" TABLESPACE_MAP");
        }
        if self.no_verify_checksums {
            s.push_str(" NOVERIFY_CHECKSUMS");
        }
        s.push_str(&format!(" MANIFEST {}", quote(manifest)));
        if let Some(a) = self.manifest_checksums {
            s.push_str(&format!(" MANIFEST_CHECKSUMS {}", quote(a.name())));
        }
        Ok(s)
    }
}

/// A row of the tablespace result set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceInfo {
    /// OID, `None` for the main data directory.
    pub oid: Option<u32>,
    /// Location on the server, `None` for the main data directory.
    pub location: Option<String>,
    /// Estimated size in kB (with `PROGRESS`).
    pub size_kb: Option<u64>,
}

/// Progress of a running backup.
///
/// On PostgreSQL 15 and later the byte counts are the server's (uncompressed archive data,
/// also with server-side compression); on 14 they count the tar bytes received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Archive bytes done so far, all tablespaces.
    pub bytes_done: u64,
    /// The estimated total of all tablespaces, with `PROGRESS`.
    pub bytes_total: Option<u64>,
    /// Index of the archive being received, in the order the server sends them (the
    /// main data directory comes last).
    pub archive: usize,
    /// The tablespace of that archive: its OID, `None` for the main data directory.
    pub tablespace: Option<u32>,
    /// Bytes done in this archive.
    pub archive_bytes_done: u64,
    /// The estimated size of this tablespace, with `PROGRESS`.
    pub archive_bytes_total: Option<u64>,
}

/// What receives a backup: archives, the manifest and progress.
pub trait BackupTarget {
    /// An archive starts: `name` as the server calls it (`base.tar`, `16384.tar.gz`, ...),
    /// `location` the tablespace's location (`None` for the main directory).
    fn begin_archive(&mut self, name: &str, location: Option<&str>) -> Result<(), Error>;
    /// Archive bytes.
    fn archive_data(&mut self, data: &[u8]) -> Result<(), Error>;
    /// The current archive is complete.
    fn end_archive(&mut self) -> Result<(), Error>;
    /// The manifest starts.
    fn begin_manifest(&mut self) -> Result<(), Error>;
    /// Manifest bytes.
    fn manifest_data(&mut self, data: &[u8]) -> Result<(), Error>;
    /// The manifest is complete.
    fn end_manifest(&mut self) -> Result<(), Error>;
    /// A progress report.
    fn progress(&mut self, progress: Progress);
    /// The tablespaces of the backup as the server lists them, before any archive
    /// arrives (the main directory has no location). A target may refuse them here,
    /// before anything is written; the default accepts them.
    fn tablespaces(&mut self, tablespaces: &[TablespaceInfo]) -> Result<(), Error> {
        let _ = tablespaces;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    None,
    Archive,
    Manifest,
}

/// Routes the COPY stream of `BASE_BACKUP` to a [`BackupTarget`]; see the module docs.
#[derive(Debug)]
pub struct BackupStreamDecoder {
    modern: bool,
    tablespaces: Vec<TablespaceInfo>,
    copies: usize,
    part: Part,
    archives: usize,
    bytes_done: u64,
    /// `bytes_done` when the current archive began.
    archive_start: u64,
    /// The tablespace row of the current archive.
    current_ts: Option<usize>,
    manifest_expected: bool,
}

impl BackupStreamDecoder {
    /// A decoder for a server of major version `major`; `manifest` tells whether a
    /// manifest was requested (14 sends it as an extra COPY).
    pub fn new(major: u32, manifest: bool) -> Self {
        Self {
            modern: major >= 15,
            tablespaces: Vec::new(),
            copies: 0,
            part: Part::None,
            archives: 0,
            bytes_done: 0,
            archive_start: 0,
            current_ts: None,
            manifest_expected: manifest,
        }
    }

    /// A row of the tablespace result set (`spcoid`, `spclocation`, `size`), as text.
    pub fn tablespace_row(&mut self, cols: &[Option<&str>]) -> Result<(), Error> {
        let col = |i: usize| cols.get(i).copied().flatten();
        let bad = |what: &str| Error::Protocol(format!("tablespace row: invalid {what}"));
        let oid = col(0)
            .map(|s| s.parse::<u32>().map_err(|_| bad("oid")))
            .transpose()?;
        let size_kb = col(2)
            .map(|s| s.parse::<u64>().map_err(|_| bad("size")))
            .transpose()?;
        self.tablespaces.push(TablespaceInfo {
            oid,
            location: col(1).map(str::to_owned),
            size_kb,
        });
        Ok(())
    }

    /// The tablespaces announced by the server.
    pub fn tablespaces(&self) -> &[TablespaceInfo] {
        &self.tablespaces
    }

    fn total(&self) -> Option<u64> {
        let mut sum = 0u64;
        for t in &self.tablespaces {
            sum = sum.checked_add(t.size_kb?.checked_mul(1024)?)?;
        }
        Some(sum)
    }

    fn report(&self, target: &mut dyn BackupTarget) {
        let ts = self.current_ts.and_then(|i| self.tablespaces.get(i));
        target.progress(Progress {
            bytes_done: self.bytes_done,
            bytes_total: self.total(),
            archive: self.archives.saturating_sub(1),
            tablespace: ts.and_then(|t| t.oid),
            archive_bytes_done: self.bytes_done.saturating_sub(self.archive_start),
            archive_bytes_total: ts
                .and_then(|t| t.size_kb)
                .and_then(|kb| kb.checked_mul(1024)),
        });
    }

    /// An archive begins: remember where, for per-archive progress.
    fn start_archive(&mut self, ts: Option<usize>) {
        self.archives += 1;
        self.archive_start = self.bytes_done;
        self.current_ts = ts;
    }

    /// A CopyOutResponse arrived.
    pub fn copy_start(&mut self, target: &mut dyn BackupTarget) -> Result<(), Error> {
        self.copies += 1;
        if self.modern {
            if self.copies > 1 {
                return Err(Error::Protocol(
                    "more than one COPY in a BASE_BACKUP of 15+".into(),
                ));
            }
            return Ok(());
        }
        let index = self.copies - 1;
        if let Some(ts) = self.tablespaces.get(index) {
            let name = ts
                .oid
                .map_or_else(|| "base.tar".to_owned(), |o| format!("{o}.tar"));
            let location = ts.location.clone();
            self.start_archive(Some(index));
            self.part = Part::Archive;
            target.begin_archive(&name, location.as_deref())?;
            self.report(target);
            Ok(())
        } else if index == self.tablespaces.len() && self.manifest_expected {
            self.part = Part::Manifest;
            target.begin_manifest()
        } else {
            Err(Error::Protocol("unexpected COPY in BASE_BACKUP".into()))
        }
    }

    fn end_part(&mut self, target: &mut dyn BackupTarget) -> Result<(), Error> {
        match std::mem::replace(&mut self.part, Part::None) {
            Part::None => Ok(()),
            Part::Archive => target.end_archive(),
            Part::Manifest => target.end_manifest(),
        }
    }

    /// A CopyData message.
    pub fn copy_data(
        &mut self,
        payload: &[u8],
        target: &mut dyn BackupTarget,
    ) -> Result<(), Error> {
        if !self.modern {
            self.bytes_done = self
                .bytes_done
                .saturating_add(u64::try_from(payload.len()).unwrap_or(u64::MAX));
            return match self.part {
                Part::Archive => {
                    target.archive_data(payload)?;
                    self.report(target);
                    Ok(())
                }
                Part::Manifest => target.manifest_data(payload),
                Part::None => Err(Error::Protocol("CopyData outside a COPY".into())),
            };
        }
        let (&kind, body) = payload
            .split_first()
            .ok_or_else(|| Error::Protocol("empty BASE_BACKUP CopyData".into()))?;
        match kind {
            b'n' => {
                self.end_part(target)?;
                let mut parts = body.split(|&b| b == 0);
                let name = parts.next().and_then(|n| std::str::from_utf8(n).ok());
                let loc = parts.next().and_then(|n| std::str::from_utf8(n).ok());
                let (Some(name), Some(loc)) = (name, loc) else {
                    return Err(Error::Protocol("malformed new-archive message".into()));
                };
                if body.last() != Some(&0) || parts.count() != 1 {
                    return Err(Error::Protocol("malformed new-archive message".into()));
                }
                let location = (!loc.is_empty()).then_some(loc);
                let ts = self
                    .tablespaces
                    .iter()
                    .position(|t| t.location.as_deref() == location);
                self.start_archive(ts);
                self.part = Part::Archive;
                target.begin_archive(name, location)?;
                self.report(target);
                Ok(())
            }
            b'm' => {
                self.end_part(target)?;
                if !body.is_empty() {
                    return Err(Error::Protocol("manifest message with a body".into()));
                }
                self.part = Part::Manifest;
                target.begin_manifest()
            }
            b'd' => match self.part {
                Part::Archive => target.archive_data(body),
                Part::Manifest => target.manifest_data(body),
                Part::None => Err(Error::Protocol("backup data before any archive".into())),
            },
            b'p' => {
                let raw: [u8; 8] = body
                    .try_into()
                    .map_err(|_| Error::Protocol("progress message of wrong length".into()))?;
                self.bytes_done = u64::try_from(i64::from_be_bytes(raw))
                    .map_err(|_| Error::Protocol("negative progress".into()))?;
                self.report(target);
                Ok(())
            }
            other => Err(Error::Protocol(format!(
                "unknown BASE_BACKUP CopyData kind {other:#04x}"
            ))),
        }
    }

    /// CopyDone arrived.
    pub fn copy_done(&mut self, target: &mut dyn BackupTarget) -> Result<(), Error> {
        self.end_part(target)
    }

    /// Archives begun so far.
    pub fn archives(&self) -> usize {
        self.archives
    }
}

/// How archives are stored by a [`DirectoryTarget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Extract (`-Fp`).
    Plain,
    /// Keep the tar files as sent (`-Ft`).
    Tar,
}

/// The name `backup_label` is extracted under until the backup is complete, so that an
/// interrupted plain-format backup never looks like a valid one.
pub const PENDING_LABEL: &str = "backup_label.walstream-pending";

/// The name the manifest is written under until the backup is complete.
const PENDING_MANIFEST: &str = "backup_manifest.walstream-pending";

/// A progress callback.
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// A [`BackupTarget`] writing into a local directory, plain or tar format.
///
/// The directory must be missing or empty. [`INCOMPLETE_MARKER`] is written into it before
/// anything else and removed only by [`DirectoryTarget::complete`], after every archive
/// and the manifest were written, verified (when asked) and fsynced: a directory that still
/// holds the marker is an interrupted backup. Until then `backup_label` is extracted as
/// [`PENDING_LABEL`] and the manifest kept under a temporary name, so an interrupted
/// directory never looks like a valid backup to PostgreSQL or `pg_verifybackup` either.
pub struct DirectoryTarget {
    root: PathBuf,
    format: Format,
    mapping: Vec<(String, PathBuf)>,
    current: Option<Box<dyn ArchiveSink>>,
    manifest: Option<File>,
    manifest_written: bool,
    progress: Option<Progress>,
    on_progress: Option<ProgressFn>,
    verify: Option<VerifyOptions>,
    sync: bool,
}

impl std::fmt::Debug for DirectoryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryTarget")
            .field("root", &self.root)
            .field("format", &self.format)
            .field("mapping", &self.mapping)
            .field("current", &self.current)
            .field("manifest_written", &self.manifest_written)
            .field("progress", &self.progress)
            .field("verify", &self.verify)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl DirectoryTarget {
    /// Prepares `root` and writes the incomplete marker.
    pub fn create(root: impl Into<PathBuf>, format: Format) -> Result<Self, Error> {
        let root = root.into();
        fs::create_dir_all(&root)
            .map_err(|e| Error::io("creating the backup directory", &root, e))?;
        let non_empty = fs::read_dir(&root)
            .map_err(|e| Error::io("reading the backup directory", &root, e))?
            .next()
            .is_some();
        if non_empty {
            return Err(Error::io(
                "the backup directory is not empty",
                &root,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("setting permissions", &root, e))?;
        }
        let marker = root.join(INCOMPLETE_MARKER);
        let mut f = File::create(&marker)
            .map_err(|e| Error::io("writing the incomplete marker", &marker, e))?;
        f.write_all(b"this backup is incomplete; do not use it\n")
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("writing the incomplete marker", &marker, e))?;
        crate::wal::sync_dir(&root)?;
        Ok(Self {
            root,
            format,
            mapping: Vec::new(),
            current: None,
            manifest: None,
            manifest_written: false,
            progress: None,
            on_progress: None,
            verify: None,
            sync: true,
        })
    }

    /// Relocates a tablespace (`--tablespace-mapping=old=new`): the tablespace whose
    /// location on the server is `old` is extracted into `new` (plain format), and its
    /// `pg_tblspc/<oid>` link points there. A relative `new` is made absolute against the
    /// current directory now (PostgreSQL and `pg_combinebackup` resolve a relative link
    /// from `pg_tblspc`, which is not where the files are).
    #[must_use]
    pub fn map_tablespace(mut self, old: impl Into<String>, new: impl Into<PathBuf>) -> Self {
        let new = new.into();
        let new = std::path::absolute(&new).unwrap_or(new);
        self.mapping.push((old.into(), new));
        self
    }

    /// Calls `f` on every progress report.
    #[must_use]
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    /// Verifies a plain-format backup against its manifest in
    /// [`DirectoryTarget::complete`] (like `pg_verifybackup`, see [`verify_backup_with`]);
    /// a backup with problems stays marked incomplete and `complete` fails with
    /// [`Error::Verification`].
    #[must_use]
    pub fn verify(mut self, options: VerifyOptions) -> Self {
        self.verify = Some(options);
        self
    }

    /// Skips fsyncing the finished backup (`pg_basebackup --no-sync`): faster, but a crash
    /// of this machine soon after may leave a damaged backup without its marker. For tests.
    #[must_use]
    pub fn no_sync(mut self) -> Self {
        self.sync = false;
        self
    }

    /// The last progress report.
    pub fn last_progress(&self) -> Option<Progress> {
        self.progress
    }

    /// The backup directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The tablespace mappings (old location, new location).
    pub fn tablespace_mappings(&self) -> &[(String, PathBuf)] {
        &self.mapping
    }

    fn mapped(&self, location: &str) -> PathBuf {
        self.mapping
            .iter()
            .find(|(o, _)| o == location)
            .map_or_else(|| PathBuf::from(location), |(_, n)| n.clone())
    }

    /// Finishes the backup: puts `backup_label` and `backup_manifest` in place, verifies
    /// the backup when [`DirectoryTarget::verify`] was called, fsyncs every file (following
    /// tablespace links) and removes the incomplete marker, last.
    ///
    /// On failure the directory stays marked incomplete, without `backup_label` and
    /// `backup_manifest`.
    pub fn complete(self) -> Result<PathBuf, Error> {
        if self.current.is_some() || self.manifest.is_some() {
            return Err(Error::Protocol(
                "backup completed with an archive still open".into(),
            ));
        }
        let label = self.root.join("backup_label");
        let pending_label = self.root.join(PENDING_LABEL);
        let has_label = pending_label.exists();
        let manifest = self.root.join(MANIFEST_FILE);
        let pending_manifest = self.root.join(PENDING_MANIFEST);
        let undo = || {
            // Best effort: the marker stays in any case.
            if has_label {
                let _ = fs::rename(&label, &pending_label);
            }
            let _ = fs::rename(&manifest, &pending_manifest);
        };
        if has_label {
            fs::rename(&pending_label, &label)
                .map_err(|e| Error::io("renaming backup_label", &label, e))?;
        }
        if self.manifest_written {
            if let Err(e) = fs::rename(&pending_manifest, &manifest) {
                undo();
                return Err(Error::io("renaming the manifest", &manifest, e));
            }
        }
        if let (Some(options), Format::Plain) = (&self.verify, self.format) {
            if !self.manifest_written {
                undo();
                return Err(Error::Protocol(
                    "verification requested but the server sent no manifest".into(),
                ));
            }
            let mut options = options.clone();
            options.ignore.push(INCOMPLETE_MARKER.to_owned());
            let report = match verify_backup_with(&self.root, &options) {
                Ok(r) => r,
                Err(e) => {
                    undo();
                    return Err(e);
                }
            };
            if !report.is_ok() {
                undo();
                return Err(Error::Verification {
                    problems: report.problems,
                });
            }
        }
        if self.sync {
            if let Err(e) = sync_tree(&self.root) {
                undo();
                return Err(e);
            }
        }
        let marker = self.root.join(INCOMPLETE_MARKER);
        fs::remove_file(&marker)
            .map_err(|e| Error::io("removing the incomplete marker", &marker, e))?;
        crate::wal::sync_dir(&self.root)?;
        Ok(self.root)
    }
}

/// Fsyncs every regular file and directory below `dir`, following symbolic links to
/// directories once (tablespaces).
pub fn sync_tree(dir: &Path) -> Result<(), Error> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).map_err(|e| Error::io("reading a directory", &d, e))? {
            let entry = entry.map_err(|e| Error::io("reading a directory", &d, e))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| Error::io("reading a directory", &path, e))?;
            if ft.is_dir() || (ft.is_symlink() && path.is_dir() && d.ends_with("pg_tblspc")) {
                stack.push(path);
            } else if ft.is_file() {
                File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("syncing a file", &path, e))?;
            }
        }
        crate::wal::sync_dir(&d)?;
    }
    Ok(())
}

/// A tablespace is extracted only into a missing or empty directory (like
/// `pg_basebackup`): without a mapping, its location is the server's own tablespace
/// directory, which a backup taken on the server's machine would otherwise overwrite.
fn check_tablespace_dir(dir: &Path) -> Result<(), Error> {
    const CONTEXT: &str =
        "the tablespace directory is not empty (map the tablespace to a missing or empty one)";
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::io(
                CONTEXT,
                dir,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::io(CONTEXT, dir, e)),
        Err(e) => Err(Error::io("reading a tablespace directory", dir, e)),
    }
}

fn codec(name: &str) -> Result<Option<Codec>, Error> {
    if name.ends_with(".tar") {
        return Ok(None);
    }
    match Codec::from_archive_name(name) {
        Some(c) if name.contains(".tar.") => Ok(Some(c)),
        _ => Err(Error::Protocol(format!("unexpected archive name {name:?}"))),
    }
}

impl BackupTarget for DirectoryTarget {
    fn begin_archive(&mut self, name: &str, location: Option<&str>) -> Result<(), Error> {
        if name.contains('/') || name.starts_with('.') {
            return Err(TarError::UnsafePath {
                path: name.to_owned(),
            }
            .into());
        }
        if self.current.is_some() {
            return Err(Error::Protocol("an archive began inside another".into()));
        }
        let sink: Box<dyn ArchiveSink> = match self.format {
            Format::Tar => {
                let is_plain = name.ends_with(".tar");
                Box::new(RawArchiveWriter::create(self.root.join(name), is_plain)?)
            }
            Format::Plain => {
                let dest = location.map_or_else(|| self.root.clone(), |l| self.mapped(l));
                if location.is_some() {
                    check_tablespace_dir(&dest)?;
                }
                let mut ex = DirExtractor::new(dest)?;
                if location.is_none() {
                    for (o, n) in &self.mapping {
                        ex.map_tablespace(o.clone(), n.clone());
                    }
                    ex.rename_member("backup_label", PENDING_LABEL)?;
                }
                let tar: Box<dyn ArchiveSink> = Box::new(TarExtractor::with_extractor(ex));
                match codec(name)? {
                    None => tar,
                    Some(c) => c.decoder(tar),
                }
            }
        };
        self.current = Some(sink);
        Ok(())
    }

    fn archive_data(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.current {
            Some(s) => s.write(data),
            None => Err(Error::Protocol("archive data without an archive".into())),
        }
    }

    fn end_archive(&mut self) -> Result<(), Error> {
        match self.current.take() {
            Some(mut s) => s.finish(),
            None => Ok(()),
        }
    }

    fn begin_manifest(&mut self) -> Result<(), Error> {
        let path = self.root.join(PENDING_MANIFEST);
        self.manifest =
            Some(File::create(&path).map_err(|e| Error::io("creating the manifest", &path, e))?);
        Ok(())
    }

    fn manifest_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let path = self.root.join(PENDING_MANIFEST);
        match &mut self.manifest {
            Some(f) => f
                .write_all(data)
                .map_err(|e| Error::io("writing the manifest", &path, e)),
            None => Err(Error::Protocol("manifest data without a manifest".into())),
        }
    }

    fn end_manifest(&mut self) -> Result<(), Error> {
        let path = self.root.join(PENDING_MANIFEST);
        if let Some(f) = self.manifest.take() {
            f.sync_all()
                .map_err(|e| Error::io("syncing the manifest", &path, e))?;
            self.manifest_written = true;
        }
        Ok(())
    }

    fn progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
        if let Some(f) = &mut self.on_progress {
            f(&progress);
        }
    }

    /// In plain format, refuses a tablespace whose destination (its location, or where
    /// [`DirectoryTarget::map_tablespace`] maps it) exists and is not empty, before any
    /// archive is written.
    fn tablespaces(&mut self, tablespaces: &[TablespaceInfo]) -> Result<(), Error> {
        if self.format == Format::Plain {
            for location in tablespaces.iter().filter_map(|t| t.location.as_deref()) {
                check_tablespace_dir(&self.mapped(location))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests;
