//! The facade's error type.
use std::fmt;

use walstream_proto::DecodeError;

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A message from the server could not be decoded.
    Decode,
    /// The server sent messages in an order the protocol does not allow (e.g. Commit without
    /// Begin).
    Protocol,
    /// Reading or writing the transaction spill file failed.
    Spill,
    /// A row could not be turned into the requested type.
    Deserialize,
    /// The caller used the API in a way it does not allow.
    Usage,
    /// Connecting to the server or talking to it failed (see [`Error::db_error`] for errors
    /// the server reported, and [`Error::connection_error`] for the details).
    Connection,
}

/// An error of the walstream facade, with a matchable [`kind`](Self::kind).
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The connection layer's error, for [`ErrorKind::Connection`].
    pub fn connection_error(&self) -> Option<&walstream_conn::Error> {
        self.source
            .as_deref()?
            .downcast_ref::<walstream_conn::Error>()
    }

    /// The error the server reported (SQLSTATE, message, detail, hint, ...), if any.
    pub fn db_error(&self) -> Option<&walstream_conn::DbError> {
        self.connection_error()?.db_error()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::with_source(ErrorKind::Decode, "cannot decode a pgoutput message", e)
    }
}

impl From<walstream_conn::Error> for Error {
    fn from(e: walstream_conn::Error) -> Self {
        Self::with_source(ErrorKind::Connection, "replication connection failed", e)
    }
}
