//! PostgreSQL's backup manifest (`backup_manifest`, versions 1 and 2) and a verifier that
//! checks a plain-format backup directory against it, like `pg_verifybackup` does.
//!
//! See <https://www.postgresql.org/docs/current/backup-manifest-format.html>.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;
use walstream_proto::{Lsn, TimelineId};

use crate::error::{Error, ManifestError};

/// The name of the manifest file in a backup directory.
pub const MANIFEST_FILE: &str = "backup_manifest";

/// Paths `pg_verifybackup` ignores by default (files or whole directories, relative to the
/// backup root). `pg_wal` is checked separately (see [`VerifyOptions::check_wal`]).
pub const DEFAULT_IGNORED: &[&str] = &[
    "backup_manifest",
    "pg_wal",
    "postgresql.auto.conf",
    "recovery.signal",
    "standby.signal",
];

/// A checksum algorithm of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// No checksum (`NONE`).
    None,
    /// CRC-32C (Castagnoli), PostgreSQL's default.
    Crc32c,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl ChecksumAlgorithm {
    /// Parses the name used in manifests and in `MANIFEST_CHECKSUMS` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "NONE" => Self::None,
            "CRC32C" => Self::Crc32c,
            "SHA224" => Self::Sha224,
            "SHA256" => Self::Sha256,
            "SHA384" => Self::Sha384,
            "SHA512" => Self::Sha512,
            _ => return None,
        })
    }

    /// The name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Crc32c => "CRC32C",
            Self::Sha224 => "SHA224",
            Self::Sha256 => "SHA256",
            Self::Sha384 => "SHA384",
            Self::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An incremental checksum, computed the way PostgreSQL writes it in manifests.
#[derive(Debug, Clone)]
pub enum Checksum {
    /// `NONE`.
    None,
    /// CRC-32C state.
    Crc32c(u32),
    /// SHA-224 state.
    Sha224(sha2::Sha224),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-384 state.
    Sha384(sha2::Sha384),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Checksum {
    /// A fresh state for `algorithm`.
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::None => Self::None,
            ChecksumAlgorithm::Crc32c => Self::Crc32c(0),
            ChecksumAlgorithm::Sha224 => Self::Sha224(sha2::Sha224::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            ChecksumAlgorithm::Sha384 => Self::Sha384(sha2::Sha384::new()),
            ChecksumAlgorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::None => {}
            Self::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// The checksum as lowercase hex, as in the manifest. PostgreSQL stores the CRC-32C
    /// value's bytes in little-endian order (its in-memory order on the platforms it
    /// supports for this).
    pub fn finish_hex(self) -> String {
        match self {
            Self::None => String::new(),
            Self::Crc32c(c) => hex(&c.to_le_bytes()),
            Self::Sha224(h) => hex(&h.finalize()),
            Self::Sha256(h) => hex(&h.finalize()),
            Self::Sha384(h) => hex(&h.finalize()),
            Self::Sha512(h) => hex(&h.finalize()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|p| u8::from_str_radix(p, 16).ok()))
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(rename = "PostgreSQL-Backup-Manifest-Version")]
    version: u64,
    #[serde(rename = "System-Identifier")]
    system_identifier: Option<u64>,
    #[serde(rename = "Files")]
    files: Vec<RawFile>,
    #[serde(rename = "WAL-Ranges")]
    wal_ranges: Vec<RawWalRange>,
    #[serde(rename = "Manifest-Checksum")]
    manifest_checksum: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(rename = "Path")]
    path: Option<String>,
    #[serde(rename = "Encoded-Path")]
    encoded_path: Option<String>,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Last-Modified")]
    last_modified: String,
    #[serde(rename = "Checksum-Algorithm")]
    checksum_algorithm: Option<String>,
    #[serde(rename = "Checksum")]
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWalRange {
    #[serde(rename = "Timeline")]
    timeline: u32,
    #[serde(rename = "Start-LSN")]
    start_lsn: String,
    #[serde(rename = "End-LSN")]
    end_lsn: String,
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Path relative to the backup root, `/`-separated (decoded from `Encoded-Path` when
    /// that was used).
    pub path: String,
    /// Expected size.
    pub size: u64,
    /// The server's modification time, informational only.
    pub last_modified: String,
    /// The checksum algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The expected checksum, lowercase hex (empty for [`ChecksumAlgorithm::None`]).
    pub checksum: String,
}

/// A range of WAL needed to restore the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    /// Timeline.
    pub timeline: TimelineId,
    /// First LSN.
    pub start: Lsn,
    /// End LSN.
    pub end: Lsn,
}

/// A parsed backup manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// 1 (PostgreSQL 13–16) or 2 (17+, with the system identifier).
    pub version: u64,
    /// The cluster's system identifier (version 2).
    pub system_identifier: Option<u64>,
    /// The files, in manifest order.
    pub files: Vec<ManifestFile>,
    /// The WAL ranges.
    pub wal_ranges: Vec<WalRange>,
    /// The manifest's own SHA-256 checksum as written in it.
    pub manifest_checksum: String,
    /// True when the manifest's checksum matches its contents.
    pub checksum_ok: bool,
}

impl Manifest {
    /// Parses a manifest and checks its own checksum (recorded in
    /// [`Manifest::checksum_ok`], not an error, so that a verifier can report it along with
    /// everything else).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let raw: RawManifest = serde_json::from_slice(bytes)?;
        if raw.version != 1 && raw.version != 2 {
            return Err(ManifestError::UnsupportedVersion(raw.version));
        }
        if raw.version == 2 && raw.system_identifier.is_none() {
            return Err(ManifestError::Invalid(
                "version 2 manifest without System-Identifier".into(),
            ));
        }
        let mut files = Vec::with_capacity(raw.files.len());
        for f in raw.files {
            let path = match (f.path, f.encoded_path) {
                (Some(p), None) => p,
                (None, Some(enc)) => unhex(&enc)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        ManifestError::Invalid(format!("undecodable Encoded-Path {enc:?}"))
                    })?,
                _ => {
                    return Err(ManifestError::Invalid(
                        "a file needs exactly one of Path and Encoded-Path".into(),
                    ));
                }
            };
            let algorithm = match f.checksum_algorithm.as_deref() {
                None => ChecksumAlgorithm::None,
                Some(name) => ChecksumAlgorithm::from_name(name).ok_or_else(|| {
                    ManifestError::Invalid(format!("unknown checksum algorithm {name:?}"))
                })?,
            };
            let checksum = f.checksum.unwrap_or_default().to_ascii_lowercase();
            if algorithm != ChecksumAlgorithm::None && unhex(&checksum).is_none() {
                return Err(ManifestError::Invalid(format!(
                    "checksum of {path:?} is not hex"
                )));
            }
            files.push(ManifestFile {
                path,
                size: f.size,
                last_modified: f.last_modified,
                algorithm,
                checksum,
            });
        }
        let lsn = |s: &str| {
            s.parse::<Lsn>()
                .map_err(|_| ManifestError::Invalid(format!("invalid LSN {s:?}")))
        };
        let wal_ranges = raw
            .wal_ranges
            .iter()
            .map(|r| {
                Ok(WalRange {
                    timeline: TimelineId(r.timeline),
                    start: lsn(&r.start_lsn)?,
                    end: lsn(&r.end_lsn)?,
                })
            })
            .collect::<Result<Vec<_>, ManifestError>>()?;
        let checksum_ok = manifest_checksum(bytes)
            .is_some_and(|c| c == raw.manifest_checksum.to_ascii_lowercase());
        Ok(Self {
            version: raw.version,
            system_identifier: raw.system_identifier,
            files,
            wal_ranges,
            manifest_checksum: raw.manifest_checksum,
            checksum_ok,
        })
    }

    /// Reads and parses `dir/backup_manifest`.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(MANIFEST_FILE);
        let bytes =
            fs::read(&path).map_err(|e| Error::io("reading the backup manifest", &path, e))?;
        Ok(Self::parse(&bytes)?)
    }
}

/// The SHA-256 of everything up to and including the second-to-last newline, which is what
/// the `Manifest-Checksum` covers; `None` when the manifest does not end with a newline or
/// has fewer than two lines.
pub fn manifest_checksum(bytes: &[u8]) -> Option<String> {
    if bytes.last() != Some(&b'\n') {
        return None;
    }
    let body = bytes.get(..bytes.len() - 1)?;
    let cut = body.iter().rposition(|&b| b == b'\n')?;
    let mut h = sha2::Sha256::new();
    h.update(body.get(..=cut)?);
    Some(hex(&h.finalize()))
}

/// A discrepancy found by [`verify_backup`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The manifest's own checksum does not match.
    ManifestChecksum,
    /// A file in the manifest is not in the directory.
    Missing {
        /// Relative path.
        path: String,
    },
    /// A file in the directory is not in the manifest.
    Extra {
        /// Relative path.
        path: String,
    },
    /// Something that is neither a regular file nor a directory.
    NotAFile {
        /// Relative path.
        path: String,
    },
    /// The size differs.
    SizeMismatch {
        /// Relative path.
        path: String,
        /// From the manifest.
        expected: u64,
        /// On disk.
        actual: u64,
    },
    /// The checksum differs.
    ChecksumMismatch {
        /// Relative path.
        path: String,
        /// The algorithm.
        algorithm: ChecksumAlgorithm,
    },
    /// A file or directory could not be read.
    Unreadable {
        /// Relative path.
        path: String,
        /// The error.
        error: String,
    },
    /// A WAL segment needed by a WAL range is not in `pg_wal`.
    MissingWal {
        /// The segment's file name.
        segment: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ManifestChecksum => f.write_str("manifest checksum mismatch"),
            Self::Missing { path } => {
                write!(f, "\"{path}\" is present in the manifest but not on disk")
            }
            Self::Extra { path } => {
                write!(f, "\"{path}\" is present on disk but not in the manifest")
            }
            Self::NotAFile { path } => write!(f, "\"{path}\" is not a file or directory"),
            Self::SizeMismatch {
                path,
                expected,
                actual,
            } => {
                write!(
                    f,
                    "\"{path}\" has size {actual} on disk but size {expected} in the manifest"
                )
            }
            Self::ChecksumMismatch { path, algorithm } => {
                write!(f, "checksum mismatch for file \"{path}\" ({algorithm})")
            }
            Self::Unreadable { path, error } => write!(f, "could not read \"{path}\": {error}"),
            Self::MissingWal { segment } => write!(
                f,
                "WAL segment \"{segment}\" needed by the backup is missing"
            ),
        }
    }
}

/// What [`verify_backup`] checks.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Paths skipped entirely (default [`DEFAULT_IGNORED`]).
    pub ignore: Vec<String>,
    /// Skip reading files for checksums (sizes and presence are still checked).
    pub skip_checksums: bool,
    /// Check that every WAL segment of the manifest's WAL ranges is in `pg_wal` (the
    /// segment size is taken from the WAL files found there). `pg_verifybackup` parses the
    /// WAL with `pg_waldump` instead; this only checks presence and size.
    pub check_wal: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            ignore: DEFAULT_IGNORED.iter().map(|s| (*s).to_owned()).collect(),
            skip_checksums: false,
            check_wal: true,
        }
    }
}

/// The outcome of [`verify_backup`].
#[derive(Debug, Clone)]
pub struct Report {
    /// The manifest that was checked against.
    pub manifest: Manifest,
    /// Files whose checksum was verified.
    pub files_checksummed: u64,
    /// Bytes read for checksums.
    pub bytes_checksummed: u64,
    /// Everything found wrong, empty for a valid backup.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the plain-format backup in `dir` against its `backup_manifest` with the default
/// options.
pub fn verify_backup(dir: &Path) -> Result<Report, Error> {
    verify_backup_with(dir, &VerifyOptions::default())
}

/// Verifies the plain-format backup in `dir` against its `backup_manifest`: the manifest's
/// checksum, missing and extra files, every file's size and checksum, and (optionally) the
/// presence of the WAL segments. Symbolic links (tablespaces) are followed.
///
/// Fails only when the manifest cannot be read or parsed; every discrepancy is a
/// [`Problem`] in the report.
pub fn verify_backup_with(dir: &Path, options: &VerifyOptions) -> Result<Report, Error> {
    let manifest = Manifest::load(dir)?;
    let mut problems = Vec::new();
    if !manifest.checksum_ok {
        problems.push(Problem::ManifestChecksum);
    }
    let ignored = |rel: &str| {
        options
            .ignore
            .iter()
            .any(|i| rel == i || rel.starts_with(&format!("{i}/")))
    };
    let mut expected: HashMap<&str, (&ManifestFile, bool)> = manifest
        .files
        .iter()
        .map(|f| (f.path.as_str(), (f, false)))
        .collect();

    // Walk the directory: extra files and sizes.
    let mut stack: Vec<String> = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let abs = if rel_dir.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(&rel_dir)
        };
        let entries = match fs::read_dir(&abs) {
            Ok(e) => e,
            Err(e) => {
                problems.push(Problem::Unreadable {
                    path: rel_dir.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let mut names: Vec<String> = Vec::new();
        for entry in entries {
            match entry {
                Ok(e) => match e.file_name().into_string() {
                    Ok(n) => names.push(n),
                    Err(n) => problems.push(Problem::Unreadable {
                        path: format!("{rel_dir}/{}", n.to_string_lossy()),
                        error: "file name is not UTF-8".into(),
                    }),
                },
                Err(e) => problems.push(Problem::Unreadable {
                    path: rel_dir.clone(),
                    error: e.to_string(),
                }),
            }
        }
        names.sort();
        for name in names {
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            if ignored(&rel) {
                continue;
            }
            let meta = match fs::metadata(abs.join(&name)) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(Problem::Unreadable {
                        path: rel,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            if meta.is_dir() {
                stack.push(rel);
            } else if !meta.is_file() {
                problems.push(Problem::NotAFile { path: rel });
            } else {
                match expected.get_mut(rel.as_str()) {
                    None => problems.push(Problem::Extra { path: rel }),
                    Some((f, seen)) => {
                        *seen = true;
                        if f.size != meta.len() {
                            problems.push(Problem::SizeMismatch {
                                path: rel,
                                expected: f.size,
                                actual: meta.len(),
                            });
                        }
                    }
                }
            }
        }
    }

    let mut files_checksummed = 0;
    let mut bytes_checksummed = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for f in &manifest.files {
        if ignored(&f.path) {
            continue;
        }
        let seen = expected.get(f.path.as_str()).is_some_and(|(_, s)| *s);
        if !seen {
            problems.push(Problem::Missing {
                path: f.path.clone(),
            });
            continue;
        }
        if options.skip_checksums || f.algorithm == ChecksumAlgorithm::None {
            continue;
        }
        if problems
            .iter()
            .any(|p| matches!(p, Problem::SizeMismatch { path, .. } if *path == f.path))
        {
            continue;
        }
        match checksum_file(&dir.join(&f.path), f.algorithm, &mut buf) {
            Ok((sum, n)) => {
                files_checksummed += 1;
                bytes_checksummed += n;
                if sum != f.checksum {
                    problems.push(Problem::ChecksumMismatch {
                        path: f.path.clone(),
                        algorithm: f.algorithm,
                    });
                }
            }
            Err(e) => problems.push(Problem::Unreadable {
                path: f.path.clone(),
                error: e.to_string(),
            }),
        }
    }

    if options.check_wal {
        check_wal(dir, &manifest, &mut problems);
    }
    Ok(Report {
        manifest,
        files_checksummed,
        bytes_checksummed,
        problems,
    })
}

fn checksum_file(
    path: &Path,
    algorithm: ChecksumAlgorithm,
    buf: &mut [u8],
) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut sum = Checksum::new(algorithm);
    let mut total = 0u64;
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        sum.update(buf.get(..n).unwrap_or_default());
        total += u64::try_from(n).unwrap_or(0);
    }
    Ok((sum.finish_hex(), total))
}

fn check_wal(dir: &Path, manifest: &Manifest, problems: &mut Vec<Problem>) {
    let wal_dir: PathBuf = dir.join("pg_wal");
    // The segment size: the size of any complete segment file present.
    let seg_size = fs::read_dir(&wal_dir).ok().and_then(|entries| {
        entries.filter_map(Result::ok).find_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())).then_some(())?;
            e.metadata()
                .ok()
                .map(|m| m.len())
                .filter(|l| l.is_power_of_two())
        })
    });
    for range in &manifest.wal_ranges {
        let Some(size) = seg_size else {
            if let Some(name) = range.start.wal_file_name(range.timeline, 16 * 1024 * 1024) {
                problems.push(Problem::MissingWal { segment: name });
            }
            return;
        };
        let (Some(first), Some(last)) = (
            range.start.segment_number(size),
            range.end.segment_number(size),
        ) else {
            continue;
        };
        // An end exactly at a segment boundary does not need the next segment.
        let last = if range.end.segment_offset(size) == Some(0) && last > first {
            last - 1
        } else {
            last
        };
        for seg in first..=last {
            let Some(lsn) = seg.checked_mul(size).map(Lsn) else {
                break;
            };
            let Some(name) = lsn.wal_file_name(range.timeline, size) else {
                break;
            };
            let ok = fs::metadata(wal_dir.join(&name)).is_ok_and(|m| m.len() == size);
            if !ok {
                problems.push(Problem::MissingWal { segment: name });
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests;
