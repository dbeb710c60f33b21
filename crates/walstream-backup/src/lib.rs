//! Physical backups and WAL receiving for walstream, as a library: what `pg_basebackup`,
//! `pg_receivewal` and `pg_verifybackup` do.
//!
//! # Design
//!
//! Every format handled here is parsed by a sans-IO, incremental core fed with chunks of
//! any size, so memory stays flat whatever the size of the database:
//!
//! - [`TarReader`] parses the tar stream of `BASE_BACKUP` and reports members to a
//!   [`TarVisitor`]; [`TarExtractor`] writes them below a directory (refusing `..`, absolute
//!   names and writes through links), [`RawArchiveWriter`] keeps the archive as it is
//!   (`-Ft`), [`GzipSink`] decompresses server-compressed archives on the fly in front of
//!   either. All of them are [`ArchiveSink`]s.
//! - [`Manifest`] parses PostgreSQL's `backup_manifest` (versions 1 and 2) and
//!   [`verify_backup`] checks a directory against it like `pg_verifybackup`.
//! - [`WalWriter`] writes streamed WAL into segment files like `pg_receivewal`.
//!
//! [`BaseBackup`] is the async driver on top: it sends `BASE_BACKUP` in the syntax of the
//! server's version over a walstream-conn [`Client`](walstream_conn::Client), routes the
//! answer through [`BackupStreamDecoder`] into a [`BackupTarget`] (usually a
//! [`DirectoryTarget`], plain or tar format; [`Codec`] decodes gzip, LZ4 and Zstandard
//! server compression on the fly), reports [`Progress`] to a closure, and streams the WAL
//! over a second connection with [`WalMethod::Stream`]. An interrupted backup keeps
//! [`INCOMPLETE_MARKER`] and never gets a `backup_label` or `backup_manifest`.
//!
//! ```no_run
//! use walstream_backup::{BaseBackup, BaseBackupOptions, CheckpointMode, DirectoryTarget, Format};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: walstream_conn::Config = "host=db user=repl replication=true".parse()?;
//! let mut client = walstream_conn::Client::connect(&config).await?;
//! let options = BaseBackupOptions { checkpoint: CheckpointMode::Fast, ..Default::default() };
//! let target = DirectoryTarget::create("/backups/b1", Format::Plain)?;
//! let (result, _dir) = BaseBackup::new(options).run_to_directory(&mut client, target).await?;
//! println!("consistent at {}", result.end_lsn);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod basebackup;
mod compress;
mod driver;
mod error;
mod manifest;
mod receiver;
mod tar;
mod wal;

pub use basebackup::{
    BackupStreamDecoder, BackupTarget, BackupTargetKind, BaseBackupOptions, CheckpointMode,
    DirectoryTarget, Format, INCOMPLETE_MARKER, ManifestMode, PENDING_LABEL, PriorManifest,
    Progress, ProgressFn, TablespaceInfo, sync_tree,
};
pub use compress::{Codec, GzipSink};
pub use driver::{BackupResult, BaseBackup, WalMethod, WalStream};
pub use error::{Error, ManifestError, TarError, WalError};
pub use manifest::{
    Checksum, ChecksumAlgorithm, DEFAULT_IGNORED, MANIFEST_FILE, Manifest, ManifestFile, Problem,
    Report, VerifyOptions, WalRange, manifest_checksum, verify_backup, verify_backup_with,
};
pub use receiver::{
    ReceiveError, ReceiveErrorKind, ReceiveOutcome, ReceiverHandle, StandbyXmin, StopReason,
    WalReceiver, WalReceiverOptions,
};
pub use tar::{
    ArchiveSink, DirExtractor, EntryKind, NullVisitor, RawArchiveWriter, TarEntry, TarExtractor,
    TarReader, TarVisitor, safe_relative_path,
};
pub use wal::{PARTIAL_SUFFIX, WalWriter, resume_position};
