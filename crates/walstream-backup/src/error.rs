//! The errors of this crate: one [`Error`] whose variants keep the layers apart (archive
//! format, manifest, WAL stream, local I/O).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while receiving, writing or verifying a backup or WAL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive sent by the server is malformed or unsafe.
    #[error(transparent)]
    Tar(#[from] TarError),
    /// The backup manifest cannot be parsed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The WAL data does not fit the receiver's position or layout.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A compressed archive cannot be decompressed.
    #[error("cannot decompress the {codec} archive")]
    Decompress {
        /// `gzip`, `lz4` or `zstd`.
        codec: &'static str,
        /// What the decoder reported.
        #[source]
        source: io::Error,
    },
    /// The server's stream does not follow the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The request cannot be made to this server or is not implemented.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The connection to the server failed, or the server reported an error (its SQLSTATE
    /// and message are in the [`walstream_conn::Error`]).
    #[error(transparent)]
    Conn(#[from] walstream_conn::Error),
    /// The finished backup does not match its manifest.
    #[error("the backup does not match its manifest: {}", problems.first().map_or_else(String::new, ToString::to_string))]
    Verification {
        /// Everything found wrong.
        problems: Vec<crate::manifest::Problem>,
    },
    /// The WAL receiver failed for another reason than its connection (see
    /// [`ReceiveError::kind`](crate::ReceiveError::kind)).
    #[error(transparent)]
    Receive(Box<crate::receiver::ReceiveError>),
    /// The WAL streamed for the backup (`-X stream`) failed.
    #[error("streaming the WAL of the backup failed: {0}")]
    WalStream(Box<Self>),
    /// A local file-system operation failed.
    #[error("{context}: {path}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// Converts this error into an `io::Error` (to travel through `io::Write` adapters);
    /// [`Error::from_io`] gets it back.
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::other(self)
    }

    /// Recovers an [`Error`] that travelled through an `io::Write` adapter, or wraps a
    /// genuine I/O error from a decoder as a decompression failure.
    pub(crate) fn from_io(e: io::Error, codec: &'static str) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(err) = inner.downcast::<Self>() {
                    return *err;
                }
            }
            // Unreachable in practice: `is::<Self>()` was checked above.
            return Self::Decompress {
                codec,
                source: io::Error::other("lost inner error"),
            };
        }
        Self::Decompress { codec, source: e }
    }
}

/// A malformed or unsafe tar archive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A header block's checksum does not match its contents.
    #[error("tar header at offset {offset} has a bad checksum")]
    BadChecksum {
        /// Byte offset of the header in the archive.
        offset: u64,
    },
    /// A header field cannot be parsed.
    #[error("invalid tar header at offset {offset}: {reason}")]
    InvalidHeader {
        /// Byte offset of the header in the archive.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A member name is absolute, contains `..` or goes through a symbolic link made by the
    /// same archive.
    #[error("tar member {path:?} would be written outside the target directory")]
    UnsafePath {
        /// The member name as found in the archive.
        path: String,
    },
    /// A member type this extractor does not create (hard links, devices, FIFOs, ...).
    #[error("tar member {path:?} has unsupported type {typeflag:#04x}")]
    UnsupportedEntry {
        /// The member name.
        path: String,
        /// The header's type flag.
        typeflag: u8,
    },
    /// A long-name or pax extended header is larger than the configured maximum.
    #[error("tar metadata member of {len} bytes exceeds the maximum of {max}")]
    MetadataTooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The archive ended in the middle of a member.
    #[error("tar archive truncated at offset {offset}")]
    Truncated {
        /// Bytes received in total.
        offset: u64,
    },
}

/// A backup manifest that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The JSON is malformed or misses required keys.
    #[error("backup manifest is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A key holds a value PostgreSQL never writes.
    #[error("backup manifest: {0}")]
    Invalid(String),
    /// The manifest version is not 1 or 2.
    #[error("unsupported backup manifest version {0}")]
    UnsupportedVersion(u64),
}

/// WAL data that does not fit the receiver's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// Data arrived for another position than the one expected next.
    #[error("WAL data at {got} but {expected} was expected next")]
    Gap {
        /// The next byte the writer expects.
        expected: walstream_proto::Lsn,
        /// Where the received data starts.
        got: walstream_proto::Lsn,
    },
    /// A segment's first data did not start at the segment's beginning.
    #[error("WAL data at {got} does not start a segment and no segment file is open")]
    NotAtSegmentStart {
        /// Where the received data starts.
        got: walstream_proto::Lsn,
    },
    /// The segment size is not a power of two between 1 MiB and 1 GiB.
    #[error("invalid WAL segment size {0}")]
    InvalidSegmentSize(u64),
    /// An LSN computation overflowed.
    #[error("WAL position overflow")]
    Overflow,
}
