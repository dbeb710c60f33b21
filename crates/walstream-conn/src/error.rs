//! The connection layer's error type.
//!
//! One opaque [`Error`] (a boxed inner value, cheap to move) with a public [`ErrorKind`] to
//! match on, the server's [`DbError`] when the server reported the failure, and a
//! [`source`](std::error::Error::source) chain down to the I/O, TLS, authentication or decode
//! error that caused it. Messages never contain passwords or other secrets.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use walstream_proto::{ErrorFields, SqlState};

/// What went wrong, broadly. Match on this; the exact set grows over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid or cannot be satisfied (e.g. `sslmode=require` with
    /// `sslnegotiation=direct` missing support, an unsupported `gssencmode`).
    Config,
    /// No connection could be established to any target (refused, unreachable, DNS).
    Connect,
    /// An I/O error on an established connection.
    Io,
    /// TLS negotiation or handshake failed, or the server refused TLS when it was required.
    Tls,
    /// Authentication failed on the client side: a method forbidden by `require_auth`,
    /// channel binding required but unavailable, a missing password, a server that failed
    /// to prove it knows the password. (A wrong password is reported by the server and is
    /// [`ErrorKind::Db`] with SQLSTATE `28P01`.)
    Auth,
    /// The server broke the protocol (malformed or unexpected message).
    Protocol,
    /// A deadline passed (connect timeout or a command's deadline).
    Timeout,
    /// The operation was cancelled by the caller.
    Cancelled,
    /// The server reported an error; see [`Error::db_error`].
    Db,
    /// The connection is closed or broken (e.g. an earlier command was abandoned midway).
    Closed,
    /// The server does not support the requested feature (version too old).
    Unsupported,
    /// The server does not satisfy `target_session_attrs`.
    TargetSessionAttrs,
    /// The caller used the API in a way the connection's state does not allow.
    InvalidState,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Config => "invalid configuration",
            Self::Connect => "could not connect",
            Self::Io => "I/O error",
            Self::Tls => "TLS error",
            Self::Auth => "authentication failed",
            Self::Protocol => "protocol violation",
            Self::Timeout => "timed out",
            Self::Cancelled => "cancelled",
            Self::Db => "server error",
            Self::Closed => "connection closed",
            Self::Unsupported => "not supported by the server",
            Self::TargetSessionAttrs => "server does not match target_session_attrs",
            Self::InvalidState => "invalid use of the connection",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// An error from the connection layer.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    context: Option<Cow<'static, str>>,
    db: Option<DbError>,
    source: Option<Source>,
}

impl Error {
    /// An error of `kind` with a one-line description (must not contain secrets).
    pub(crate) fn new(kind: ErrorKind, context: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            kind,
            context: Some(context.into()),
            db: None,
            source: None,
        }))
    }

    /// An error of `kind` caused by `source`.
    pub(crate) fn with_source(
        kind: ErrorKind,
        context: impl Into<Cow<'static, str>>,
        source: impl Into<Source>,
    ) -> Self {
        Self(Box::new(Inner {
            kind,
            context: Some(context.into()),
            db: None,
            source: Some(source.into()),
        }))
    }

    /// An error reported by the server.
    pub(crate) fn db(db: DbError) -> Self {
        Self(Box::new(Inner {
            kind: ErrorKind::Db,
            context: None,
            db: Some(db),
            source: None,
        }))
    }

    /// A protocol violation by the server.
    pub(crate) fn protocol(context: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Protocol, context)
    }

    /// The broad category of the error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The server's error report, when the server reported the failure.
    pub fn db_error(&self) -> Option<&DbError> {
        self.0.db.as_ref()
    }

    /// The SQLSTATE of the server's error report, if any.
    pub fn code(&self) -> Option<SqlState> {
        self.db_error().map(DbError::code)
    }

    /// Adds (replaces) the one-line context, keeping kind, server error and source: e.g.
    /// what the caller was doing when the server reported its error.
    #[must_use]
    pub fn context(mut self, context: impl Into<Cow<'static, str>>) -> Self {
        self.0.context = Some(context.into());
        self
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind);
        if let Some(c) = &self.0.context {
            d.field("context", c);
        }
        if let Some(db) = &self.0.db {
            d.field("db", db);
        }
        if let Some(s) = &self.0.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0.context, &self.0.db) {
            (Some(c), Some(db)) => write!(f, "{c}: {db}"),
            (None, Some(db)) => write!(f, "{db}"),
            (Some(c), None) => write!(f, "{}: {c}", self.0.kind),
            (None, None) => write!(f, "{}", self.0.kind),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        if let Some(s) = &self.0.source {
            return Some(&**s as &(dyn StdError + 'static));
        }
        self.0.db.as_ref().map(|d| d as &(dyn StdError + 'static))
    }
}

impl From<DbError> for Error {
    fn from(db: DbError) -> Self {
        Self::db(db)
    }
}

/// An error or notice reported by the server (ErrorResponse / NoticeResponse), with every
/// field of the
/// [message](https://www.postgresql.org/docs/current/protocol-error-fields.html).
#[derive(Clone, PartialEq, Eq)]
pub struct DbError {
    severity: String,
    severity_nonlocalized: Option<String>,
    code: SqlState,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
    position: Option<u32>,
    internal_position: Option<u32>,
    internal_query: Option<String>,
    where_: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    column: Option<String>,
    data_type: Option<String>,
    constraint: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    routine: Option<String>,
}

/// SQLSTATE `XX000` (internal_error), used when the server omits the code.
const INTERNAL_ERROR: &[u8; 5] = b"XX000";

impl DbError {
    /// Builds the error from the decoded fields. Missing mandatory fields get neutral values
    /// (severity `ERROR`, code `XX000`, empty message).
    pub fn from_fields(fields: &ErrorFields) -> Self {
        let s = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned);
        Self {
            severity: s(fields.severity())
                .or_else(|| s(fields.severity_nonlocalized()))
                .unwrap_or_else(|| "ERROR".to_owned()),
            severity_nonlocalized: s(fields.severity_nonlocalized()),
            code: fields.sqlstate().unwrap_or_else(|| {
                SqlState::from_code(INTERNAL_ERROR).unwrap_or(SqlState::PROTOCOL_VIOLATION)
            }),
            message: s(fields.message()).unwrap_or_default(),
            detail: s(fields.detail()),
            hint: s(fields.hint()),
            position: fields.position(),
            internal_position: fields.internal_position(),
            internal_query: s(fields.internal_query()),
            where_: s(fields.where_()),
            schema: s(fields.schema()),
            table: s(fields.table()),
            column: s(fields.column()),
            data_type: s(fields.data_type()),
            constraint: s(fields.constraint()),
            file: s(fields.file()),
            line: fields.line(),
            routine: s(fields.routine()),
        }
    }

    /// Severity (`ERROR`, `FATAL`, `PANIC`, or for notices `WARNING`, `NOTICE`, ...), possibly
    /// localized.
    pub fn severity(&self) -> &str {
        &self.severity
    }
    /// Severity, never localized (PostgreSQL 9.6+).
    pub fn severity_nonlocalized(&self) -> Option<&str> {
        self.severity_nonlocalized.as_deref()
    }
    /// The SQLSTATE code.
    pub fn code(&self) -> SqlState {
        self.code
    }
    /// The primary message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Optional detail.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Optional hint.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    /// 1-based character position of the error in the query.
    pub fn position(&self) -> Option<u32> {
        self.position
    }
    /// Position in the internally generated query.
    pub fn internal_position(&self) -> Option<u32> {
        self.internal_position
    }
    /// The internally generated query.
    pub fn internal_query(&self) -> Option<&str> {
        self.internal_query.as_deref()
    }
    /// Context (call-stack traceback).
    pub fn where_(&self) -> Option<&str> {
        self.where_.as_deref()
    }
    /// Schema name.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }
    /// Table name.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }
    /// Column name.
    pub fn column(&self) -> Option<&str> {
        self.column.as_deref()
    }
    /// Data type name.
    pub fn data_type(&self) -> Option<&str> {
        self.data_type.as_deref()
    }
    /// Constraint name.
    pub fn constraint(&self) -> Option<&str> {
        self.constraint.as_deref()
    }
    /// Server source file.
    pub fn file(&self) -> Option<&str> {
        self.file.as_deref()
    }
    /// Server source line.
    pub fn line(&self) -> Option<u32> {
        self.line
    }
    /// Server source routine.
    pub fn routine(&self) -> Option<&str> {
        self.routine.as_deref()
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DbError");
        d.field("severity", &self.severity)
            .field("code", &self.code)
            .field("message", &self.message);
        let opt = [
            ("detail", &self.detail),
            ("hint", &self.hint),
            ("internal_query", &self.internal_query),
            ("where", &self.where_),
            ("schema", &self.schema),
            ("table", &self.table),
            ("column", &self.column),
            ("data_type", &self.data_type),
            ("constraint", &self.constraint),
            ("file", &self.file),
            ("routine", &self.routine),
        ];
        for (name, v) in opt {
            if let Some(v) = v {
                d.field(name, v);
            }
        }
        for (name, v) in [
            ("position", self.position),
            ("internal_position", self.internal_position),
            ("line", self.line),
        ] {
            if let Some(v) = v {
                d.field(name, &v);
            }
        }
        d.finish()
    }
}

impl fmt::Display for DbError {
    /// One line: `SEVERITY SQLSTATE: message` plus detail and hint when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.severity,
            self.code,
            one_line(&self.message)
        )?;
        if let Some(d) = &self.detail {
            write!(f, " (DETAIL: {})", one_line(d))?;
        }
        if let Some(h) = &self.hint {
            write!(f, " (HINT: {})", one_line(h))?;
        }
        Ok(())
    }
}

fn one_line(s: &str) -> Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        Cow::Owned(s.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

impl StdError for DbError {}

#[cfg(test)]
mod tests {
    use super::*;
    use walstream_proto::ErrorFieldCode as C;

    fn full_fields() -> ErrorFields {
        ErrorFields::new()
            .with(C::SEVERITY, "ERREUR")
            .with(C::SEVERITY_NONLOCALIZED, "ERROR")
            .with(C::CODE, "23505")
            .with(
                C::MESSAGE,
                "duplicate key value\nviolates unique constraint",
            )
            .with(C::DETAIL, "Key (id)=(1) already exists.")
            .with(C::HINT, "pick another")
            .with(C::POSITION, "17")
            .with(C::INTERNAL_POSITION, "3")
            .with(C::INTERNAL_QUERY, "select 1")
            .with(C::WHERE, "PL/pgSQL function f()")
            .with(C::SCHEMA, "public")
            .with(C::TABLE, "t")
            .with(C::COLUMN, "id")
            .with(C::DATA_TYPE, "int4")
            .with(C::CONSTRAINT, "t_pkey")
            .with(C::FILE, "nbtinsert.c")
            .with(C::LINE, "666")
            .with(C::ROUTINE, "_bt_check_unique")
    }

    #[test]
    fn every_field_is_carried() {
        let e = DbError::from_fields(&full_fields());
        assert_eq!(e.severity(), "ERREUR");
        assert_eq!(e.severity_nonlocalized(), Some("ERROR"));
        assert_eq!(e.code().code(), "23505");
        assert_eq!(
            e.message(),
            "duplicate key value\nviolates unique constraint"
        );
        assert_eq!(e.detail(), Some("Key (id)=(1) already exists."));
        assert_eq!(e.hint(), Some("pick another"));
        assert_eq!(e.position(), Some(17));
        assert_eq!(e.internal_position(), Some(3));
        assert_eq!(e.internal_query(), Some("select 1"));
        assert_eq!(e.where_(), Some("PL/pgSQL function f()"));
        assert_eq!(e.schema(), Some("public"));
        assert_eq!(e.table(), Some("t"));
        assert_eq!(e.column(), Some("id"));
        assert_eq!(e.data_type(), Some("int4"));
        assert_eq!(e.constraint(), Some("t_pkey"));
        assert_eq!(e.file(), Some("nbtinsert.c"));
        assert_eq!(e.line(), Some(666));
        assert_eq!(e.routine(), Some("_bt_check_unique"));
    }

    #[test]
    fn display_is_one_line_with_sqlstate() {
        let err = Error::db(DbError::from_fields(&full_fields()));
        let s = err.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("23505"), "{s}");
        assert!(s.contains("Key (id)=(1)"), "{s}");
        assert_eq!(err.kind(), ErrorKind::Db);
        assert_eq!(
            err.code().map(|c| c.code().to_owned()).as_deref(),
            Some("23505")
        );
        assert!(err.source().is_some());
    }

    #[test]
    fn missing_fields_get_neutral_values() {
        let e = DbError::from_fields(&ErrorFields::new());
        assert_eq!(e.severity(), "ERROR");
        assert_eq!(e.code().code(), "XX000");
        assert_eq!(e.message(), "");
    }

    #[test]
    fn source_chain_and_context() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::with_source(ErrorKind::Connect, "connecting to 127.0.0.1:1", io);
        assert_eq!(e.kind(), ErrorKind::Connect);
        assert_eq!(
            e.to_string(),
            "could not connect: connecting to 127.0.0.1:1"
        );
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
        let e = e.context("other");
        assert_eq!(e.to_string(), "could not connect: other");
    }
}
