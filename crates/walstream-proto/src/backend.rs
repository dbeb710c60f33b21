//! Messages sent by the server (backend), and the incremental framer that cuts them out of a
//! byte stream.
//!
//! Every backend message after the startup phase is a tag byte, an Int32 length that counts
//! itself and the body but not the tag, and the body
//! ([protocol-message-formats](https://www.postgresql.org/docs/current/protocol-message-formats.html)).
//! [`Framer::decode`] reads that header, rejects lengths below 4 and above the configured
//! maximum *before* buffering anything, cuts the whole message off the front of the buffer
//! without copying and decodes the body with [`BackendMessage::decode`]. Each body decoder
//! rejects trailing bytes, so a decoded message re-encodes ([`BackendMessage::encode`]) to
//! exactly the bytes it came from.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::borrow::Cow;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::error::{DecodeError, EncodeError};
use crate::types::{Oid, SqlState};

/// The largest secret key a protocol 3.2 server may send in `BackendKeyData`.
pub const MAX_SECRET_KEY_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// Tags and small open newtypes
// ---------------------------------------------------------------------------------------------

/// The tag byte of a backend message (an open set: unknown values are representable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendTag(pub u8);

impl BackendTag {
    /// `R`: Authentication* requests.
    pub const AUTHENTICATION: Self = Self(b'R');
    /// `S`: ParameterStatus.
    pub const PARAMETER_STATUS: Self = Self(b'S');
    /// `K`: BackendKeyData.
    pub const BACKEND_KEY_DATA: Self = Self(b'K');
    /// `v`: NegotiateProtocolVersion.
    pub const NEGOTIATE_PROTOCOL_VERSION: Self = Self(b'v');
    /// `Z`: ReadyForQuery.
    pub const READY_FOR_QUERY: Self = Self(b'Z');
    /// `T`: RowDescription.
    pub const ROW_DESCRIPTION: Self = Self(b'T');
    /// `D`: DataRow.
    pub const DATA_ROW: Self = Self(b'D');
    /// `C`: CommandComplete.
    pub const COMMAND_COMPLETE: Self = Self(b'C');
    /// `I`: EmptyQueryResponse.
    pub const EMPTY_QUERY_RESPONSE: Self = Self(b'I');
    /// `E`: ErrorResponse.
    pub const ERROR_RESPONSE: Self = Self(b'E');
    /// `N`: NoticeResponse.
    pub const NOTICE_RESPONSE: Self = Self(b'N');
    /// `G`: CopyInResponse.
    pub const COPY_IN_RESPONSE: Self = Self(b'G');
    /// `H`: CopyOutResponse.
    pub const COPY_OUT_RESPONSE: Self = Self(b'H');
    /// `W`: CopyBothResponse.
    pub const COPY_BOTH_RESPONSE: Self = Self(b'W');
    /// `d`: CopyData.
    pub const COPY_DATA: Self = Self(b'd');
    /// `c`: CopyDone.
    pub const COPY_DONE: Self = Self(b'c');
    /// `1`: ParseComplete.
    pub const PARSE_COMPLETE: Self = Self(b'1');
    /// `2`: BindComplete.
    pub const BIND_COMPLETE: Self = Self(b'2');
    /// `3`: CloseComplete.
    pub const CLOSE_COMPLETE: Self = Self(b'3');
    /// `n`: NoData.
    pub const NO_DATA: Self = Self(b'n');
    /// `s`: PortalSuspended.
    pub const PORTAL_SUSPENDED: Self = Self(b's');
    /// `t`: ParameterDescription.
    pub const PARAMETER_DESCRIPTION: Self = Self(b't');
    /// `A`: NotificationResponse.
    pub const NOTIFICATION_RESPONSE: Self = Self(b'A');
}

/// The transaction status carried by `ReadyForQuery` (an open set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionStatus(pub u8);

impl TransactionStatus {
    /// `I`: idle, not in a transaction block.
    pub const IDLE: Self = Self(b'I');
    /// `T`: in a transaction block.
    pub const IN_TRANSACTION: Self = Self(b'T');
    /// `E`: in a failed transaction block.
    pub const FAILED: Self = Self(b'E');
}

/// A format code: `0` text, `1` binary (an open set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FormatCode(pub i16);

impl FormatCode {
    /// Text format.
    pub const TEXT: Self = Self(0);
    /// Binary format.
    pub const BINARY: Self = Self(1);
}

// ---------------------------------------------------------------------------------------------
// Framer
// ---------------------------------------------------------------------------------------------

/// Cuts complete backend messages out of a growing receive buffer.
///
/// Feed bytes read from the connection into a [`BytesMut`] and call [`Framer::decode`] until
/// it returns `Ok(None)`. Errors are not recoverable: the stream is out of sync afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framer {
    /// The largest message body (length field minus 4) accepted; longer messages fail with
    /// [`DecodeError::MessageTooLarge`] before any of their bytes are buffered.
    pub max_message_size: usize,
}

impl Framer {
    /// 64 MiB: far above anything the replication protocol sends.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

    /// A framer accepting bodies up to `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size }
    }

    /// Decodes the next message from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a complete message (nothing is consumed;
    /// capacity for the rest of the message may be reserved, bounded by the maximum).
    /// On success the message's bytes are removed from `buf`; the message body shares the
    /// buffer's memory.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<BackendMessage>, DecodeError> {
        let Some((tag, body_len)) = frame_header(buf, self.max_message_size, "backend message")?
        else {
            return Ok(None);
        };
        let total = 5 + body_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total).freeze();
        frame.advance(5);
        BackendMessage::decode(tag, frame).map(Some)
    }
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_MESSAGE_SIZE)
    }
}

/// Reads a `tag + Int32 length` header; `Ok(None)` if fewer than 5 bytes are buffered.
/// Returns the tag and the body length, checked against `max`.
pub(crate) fn frame_header(
    buf: &[u8],
    max: usize,
    context: &'static str,
) -> Result<Option<(u8, usize)>, DecodeError> {
    let Some(&[tag, a, b, c, d]) = buf.get(..5) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    let body_len = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_sub(4))
        .ok_or(DecodeError::InvalidLength {
            context,
            length: i64::from(len),
            offset: 1,
        })?;
    if body_len > max {
        return Err(DecodeError::MessageTooLarge {
            context,
            length: body_len,
            max,
        });
    }
    Ok(Some((tag, body_len)))
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers shared by the codec modules
// ---------------------------------------------------------------------------------------------

/// Appends one message: the optional tag, an Int32 length, and the body written by `body`.
/// The length is filled in afterwards with a checked conversion. On error nothing is left
/// appended to `buf`.
pub(crate) fn write_message(
    buf: &mut BytesMut,
    tag: Option<u8>,
    context: &'static str,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    if let Some(tag) = tag {
        buf.put_u8(tag);
    }
    let len_at = buf.len();
    buf.put_i32(0);
    if let Err(e) = body(buf) {
        buf.truncate(start);
        return Err(e);
    }
    let length = buf.len() - len_at;
    let Ok(len) = i32::try_from(length) else {
        buf.truncate(start);
        return Err(EncodeError::TooLarge { context, length });
    };
    if let Some(slot) = buf.get_mut(len_at..len_at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// Appends `s` and a NUL terminator, rejecting embedded NULs.
pub(crate) fn put_cstr(
    buf: &mut BytesMut,
    s: &[u8],
    context: &'static str,
) -> Result<(), EncodeError> {
    if memchr::memchr(0, s).is_some() {
        return Err(EncodeError::EmbeddedNul { context });
    }
    buf.put_slice(s);
    buf.put_u8(0);
    Ok(())
}

/// Appends an Int16 count, failing if `n` does not fit.
pub(crate) fn put_i16_count(
    buf: &mut BytesMut,
    n: usize,
    context: &'static str,
) -> Result<(), EncodeError> {
    let n = i16::try_from(n).map_err(|_| EncodeError::TooLarge { context, length: n })?;
    buf.put_i16(n);
    Ok(())
}

/// Appends an Int32 length, failing if `n` does not fit.
pub(crate) fn put_i32_len(
    buf: &mut BytesMut,
    n: usize,
    context: &'static str,
) -> Result<(), EncodeError> {
    let n = i32::try_from(n).map_err(|_| EncodeError::TooLarge { context, length: n })?;
    buf.put_i32(n);
    Ok(())
}

/// Reads an Int16 count that must be non-negative and whose `min_each`-byte items must fit.
fn read_i16_count(c: &mut Cursor, min_each: usize) -> Result<usize, DecodeError> {
    let at = c.offset();
    let raw = c.i16()?;
    c.count(i64::from(raw), min_each, at)
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// One message sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendMessage {
    /// `R`: an authentication request or result.
    Authentication(Authentication),
    /// `S`: a run-time parameter's current value.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// Parameter value.
        value: String,
    },
    /// `K`: cancellation key data.
    BackendKeyData {
        /// Process id of the backend.
        process_id: i32,
        /// The secret key: 4 bytes in protocol 3.0, up to 256 bytes in 3.2.
        secret_key: Bytes,
    },
    /// `v`: the server does not support the requested minor version or some options.
    NegotiateProtocolVersion {
        /// Newest minor protocol version the server supports for the requested major.
        newest_minor: u32,
        /// Protocol options (`_pq_.*`) the server did not recognise.
        unrecognized_options: Vec<String>,
    },
    /// `Z`: the server is ready for a new query.
    ReadyForQuery(TransactionStatus),
    /// `T`: the columns of the rows that follow.
    RowDescription(Vec<FieldDescription>),
    /// `D`: one row, decoded lazily.
    DataRow(DataRow),
    /// `C`: a command finished; carries the command tag, e.g. `SELECT 1`.
    CommandComplete(String),
    /// `I`: the query string was empty.
    EmptyQueryResponse,
    /// `E`: an error.
    ErrorResponse(ErrorFields),
    /// `N`: a notice.
    NoticeResponse(ErrorFields),
    /// `G`: the server is ready to receive COPY data.
    CopyInResponse(CopyResponse),
    /// `H`: the server is about to send COPY data.
    CopyOutResponse(CopyResponse),
    /// `W`: COPY in both directions (streaming replication).
    CopyBothResponse(CopyResponse),
    /// `d`: COPY data.
    CopyData(Bytes),
    /// `c`: end of COPY data.
    CopyDone,
    /// `1`: Parse completed.
    ParseComplete,
    /// `2`: Bind completed.
    BindComplete,
    /// `3`: Close completed.
    CloseComplete,
    /// `n`: the statement returns no rows.
    NoData,
    /// `s`: an Execute row limit was reached.
    PortalSuspended,
    /// `t`: parameter types of a prepared statement.
    ParameterDescription(Vec<Oid>),
    /// `A`: a NOTIFY was delivered.
    NotificationResponse {
        /// Process id of the notifying backend.
        process_id: i32,
        /// Channel name.
        channel: String,
        /// Payload string.
        payload: String,
    },
}

/// An `R` (Authentication*) message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Authentication {
    /// Code 0: authentication succeeded.
    Ok,
    /// Code 2: Kerberos V5 (unsupported by modern servers).
    KerberosV5,
    /// Code 3: send the password in clear text.
    CleartextPassword,
    /// Code 5: send an MD5-hashed password using this salt.
    Md5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// Code 7: start GSSAPI negotiation.
    Gss,
    /// Code 8: GSSAPI or SSPI continuation data.
    GssContinue {
        /// Mechanism data.
        data: Bytes,
    },
    /// Code 9: start SSPI negotiation.
    Sspi,
    /// Code 10: start SASL; the mechanisms in the server's order of preference.
    Sasl {
        /// Mechanism names, e.g. `SCRAM-SHA-256-PLUS`, `SCRAM-SHA-256`.
        mechanisms: Vec<String>,
    },
    /// Code 11: a SASL challenge.
    SaslContinue {
        /// Mechanism data (for SCRAM, the server-first-message).
        data: Bytes,
    },
    /// Code 12: SASL outcome data.
    SaslFinal {
        /// Mechanism data (for SCRAM, the server-final-message).
        data: Bytes,
    },
}

impl Authentication {
    /// The request code on the wire.
    pub fn code(&self) -> i32 {
        match self {
            Self::Ok => 0,
            Self::KerberosV5 => 2,
            Self::CleartextPassword => 3,
            Self::Md5Password { .. } => 5,
            Self::Gss => 7,
            Self::GssContinue { .. } => 8,
            Self::Sspi => 9,
            Self::Sasl { .. } => 10,
            Self::SaslContinue { .. } => 11,
            Self::SaslFinal { .. } => 12,
        }
    }

    fn decode(c: &mut Cursor) -> Result<Self, DecodeError> {
        let at = c.offset();
        let code = c.i32()?;
        Ok(match code {
            0 => Self::Ok,
            2 => Self::KerberosV5,
            3 => Self::CleartextPassword,
            5 => {
                let salt = c.bytes(4)?;
                let mut s = [0u8; 4];
                s.copy_from_slice(&salt);
                Self::Md5Password { salt: s }
            }
            7 => Self::Gss,
            8 => Self::GssContinue { data: c.rest() },
            9 => Self::Sspi,
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    if c.peek_u8() == Some(0) {
                        c.u8()?;
                        break;
                    }
                    mechanisms.push(c.cstr()?);
                }
                Self::Sasl { mechanisms }
            }
            11 => Self::SaslContinue { data: c.rest() },
            12 => Self::SaslFinal { data: c.rest() },
            _ => return Err(c.invalid(at, "unknown authentication request code")),
        })
    }

    fn encode_body(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_i32(self.code());
        match self {
            Self::Ok | Self::KerberosV5 | Self::CleartextPassword | Self::Gss | Self::Sspi => {}
            Self::Md5Password { salt } => buf.put_slice(salt),
            Self::GssContinue { data } | Self::SaslContinue { data } | Self::SaslFinal { data } => {
                buf.put_slice(data);
            }
            Self::Sasl { mechanisms } => {
                for m in mechanisms {
                    if m.is_empty() {
                        return Err(EncodeError::InvalidValue {
                            context: "AuthenticationSASL",
                            reason: "empty mechanism name",
                        });
                    }
                    put_cstr(buf, m.as_bytes(), "AuthenticationSASL")?;
                }
                buf.put_u8(0);
            }
        }
        Ok(())
    }
}

/// One column of a `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name.
    pub name: String,
    /// OID of the source table, or 0.
    pub table_oid: Oid,
    /// Attribute number of the source column, or 0.
    pub column_id: i16,
    /// OID of the column's data type.
    pub type_oid: Oid,
    /// `pg_type.typlen` (negative for variable-width types).
    pub type_size: i16,
    /// `pg_attribute.atttypmod`.
    pub type_modifier: i32,
    /// Format code of the column's values.
    pub format: FormatCode,
}

/// The body of a CopyInResponse, CopyOutResponse or CopyBothResponse.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyResponse {
    /// Overall format (sent as Int8): text or binary.
    pub format: FormatCode,
    /// Format of each column.
    pub column_formats: Vec<FormatCode>,
}

impl CopyResponse {
    fn decode(c: &mut Cursor) -> Result<Self, DecodeError> {
        let format = FormatCode(i16::from(i8::from_be_bytes([c.u8()?])));
        let n = read_i16_count(c, 2)?;
        let mut column_formats = Vec::with_capacity(n);
        for _ in 0..n {
            column_formats.push(FormatCode(c.i16()?));
        }
        Ok(Self {
            format,
            column_formats,
        })
    }

    fn encode_body(&self, buf: &mut BytesMut, context: &'static str) -> Result<(), EncodeError> {
        let f = i8::try_from(self.format.0).map_err(|_| EncodeError::InvalidValue {
            context,
            reason: "overall format does not fit in Int8",
        })?;
        buf.put_i8(f);
        put_i16_count(buf, self.column_formats.len(), context)?;
        for f in &self.column_formats {
            buf.put_i16(f.0);
        }
        Ok(())
    }
}

/// A `DataRow`: the column values stay in the message body and are cut out on iteration.
///
/// The body is validated when the message is decoded, so iteration cannot fail.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataRow {
    columns: usize,
    /// The bytes after the Int16 column count: `(Int32 len | -1, bytes)*`.
    body: Bytes,
}

impl DataRow {
    /// Builds a row from column values (`None` is SQL NULL).
    pub fn from_columns<I, T>(columns: I) -> Result<Self, EncodeError>
    where
        I: IntoIterator<Item = Option<T>>,
        T: AsRef<[u8]>,
    {
        let mut body = BytesMut::new();
        let mut n = 0usize;
        for col in columns {
            match col {
                None => body.put_i32(-1),
                Some(v) => {
                    let v = v.as_ref();
                    put_i32_len(&mut body, v.len(), "DataRow")?;
                    body.put_slice(v);
                }
            }
            n += 1;
        }
        i16::try_from(n).map_err(|_| EncodeError::TooLarge {
            context: "DataRow",
            length: n,
        })?;
        Ok(Self {
            columns: n,
            body: body.freeze(),
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.columns
    }

    /// True for a row with no columns.
    pub fn is_empty(&self) -> bool {
        self.columns == 0
    }

    /// The column values in order; `None` is SQL NULL. Values share the message's memory.
    pub fn columns(&self) -> DataRowColumns {
        DataRowColumns {
            body: self.body.clone(),
            left: self.columns,
        }
    }

    fn decode(c: &mut Cursor) -> Result<Self, DecodeError> {
        let n = read_i16_count(c, 4)?;
        let body = c.rest();
        // Validate once so that iteration is infallible.
        let mut v = Cursor::new(body.clone(), "DataRow");
        for _ in 0..n {
            let at = v.offset();
            let len = v.i32()?;
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
                context: "DataRow",
                length: i64::from(len),
                offset: at + 2,
            })?;
            v.bytes(len).map_err(|e| shift(e, 2))?;
        }
        v.finish().map_err(|e| shift(e, 2))?;
        Ok(Self { columns: n, body })
    }
}

/// Shifts a nested cursor's error offset by `by` bytes.
fn shift(e: DecodeError, by: usize) -> DecodeError {
    match e {
        DecodeError::UnexpectedEof {
            context,
            offset,
            needed,
        } => DecodeError::UnexpectedEof {
            context,
            offset: offset + by,
            needed,
        },
        DecodeError::TrailingBytes {
            context,
            offset,
            remaining,
        } => DecodeError::TrailingBytes {
            context,
            offset: offset + by,
            remaining,
        },
        other => other,
    }
}

/// Iterator over a [`DataRow`]'s values.
#[derive(Debug, Clone)]
pub struct DataRowColumns {
    body: Bytes,
    left: usize,
}

impl Iterator for DataRowColumns {
    type Item = Option<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let &[a, b, c, d] = self.body.get(..4)? else {
            return None;
        };
        self.left -= 1;
        self.body.advance(4);
        let len = i32::from_be_bytes([a, b, c, d]);
        match usize::try_from(len) {
            Err(_) => Some(None),
            Ok(len) if len <= self.body.len() => Some(Some(self.body.split_to(len))),
            // Unreachable for decoded rows (validated); stop rather than panic.
            Ok(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// An ErrorResponse/NoticeResponse field code (an open set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorFieldCode(pub u8);

impl ErrorFieldCode {
    /// `S`: severity, localized.
    pub const SEVERITY: Self = Self(b'S');
    /// `V`: severity, never localized (PostgreSQL 9.6+).
    pub const SEVERITY_NONLOCALIZED: Self = Self(b'V');
    /// `C`: SQLSTATE code.
    pub const CODE: Self = Self(b'C');
    /// `M`: primary message.
    pub const MESSAGE: Self = Self(b'M');
    /// `D`: detail.
    pub const DETAIL: Self = Self(b'D');
    /// `H`: hint.
    pub const HINT: Self = Self(b'H');
    /// `P`: cursor position in the query string (1-based characters).
    pub const POSITION: Self = Self(b'P');
    /// `p`: position in an internally generated command.
    pub const INTERNAL_POSITION: Self = Self(b'p');
    /// `q`: the internally generated command.
    pub const INTERNAL_QUERY: Self = Self(b'q');
    /// `W`: context (call stack traceback).
    pub const WHERE: Self = Self(b'W');
    /// `s`: schema name.
    pub const SCHEMA: Self = Self(b's');
    /// `t`: table name.
    pub const TABLE: Self = Self(b't');
    /// `c`: column name.
    pub const COLUMN: Self = Self(b'c');
    /// `d`: data type name.
    pub const DATA_TYPE: Self = Self(b'd');
    /// `n`: constraint name.
    pub const CONSTRAINT: Self = Self(b'n');
    /// `F`: source file name.
    pub const FILE: Self = Self(b'F');
    /// `L`: source line number.
    pub const LINE: Self = Self(b'L');
    /// `R`: source routine name.
    pub const ROUTINE: Self = Self(b'R');
}

/// The fields of an ErrorResponse or NoticeResponse, in the order sent; unknown codes kept.
///
/// Values are kept as bytes (they are in the connection's `client_encoding`); the text
/// accessors decode them as UTF-8, replacing invalid sequences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    fields: Vec<(ErrorFieldCode, Bytes)>,
}

impl ErrorFields {
    /// No fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a field (builder style). Code 0 and values containing NUL are rejected when
    /// the message is encoded.
    #[must_use]
    pub fn with(mut self, code: ErrorFieldCode, value: impl Into<Bytes>) -> Self {
        self.fields.push((code, value.into()));
        self
    }

    /// Every field in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorFieldCode, &Bytes)> + '_ {
        self.fields.iter().map(|(c, v)| (*c, v))
    }

    /// The raw value of the first field with `code`.
    pub fn raw(&self, code: ErrorFieldCode) -> Option<&Bytes> {
        self.fields.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// The first field with `code` as text.
    pub fn text(&self, code: ErrorFieldCode) -> Option<Cow<'_, str>> {
        self.raw(code).map(|v| String::from_utf8_lossy(v))
    }

    /// `S`: localized severity (`ERROR`, `FATAL`, `PANIC`, `WARNING`, `NOTICE`, ...).
    pub fn severity(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::SEVERITY)
    }

    /// `V`: severity, never localized.
    pub fn severity_nonlocalized(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::SEVERITY_NONLOCALIZED)
    }

    /// `C`: the SQLSTATE, if present and well-formed.
    pub fn sqlstate(&self) -> Option<SqlState> {
        self.raw(ErrorFieldCode::CODE)
            .and_then(|v| SqlState::from_code(v))
    }

    /// `M`: the primary message.
    pub fn message(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::MESSAGE)
    }

    /// `D`: detail.
    pub fn detail(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::DETAIL)
    }

    /// `H`: hint.
    pub fn hint(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::HINT)
    }

    /// `P`: 1-based character position in the query.
    pub fn position(&self) -> Option<u32> {
        self.number(ErrorFieldCode::POSITION)
    }

    /// `p`: position in the internal query.
    pub fn internal_position(&self) -> Option<u32> {
        self.number(ErrorFieldCode::INTERNAL_POSITION)
    }

    /// `q`: the internally generated query.
    pub fn internal_query(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::INTERNAL_QUERY)
    }

    /// `W`: where the error happened (context traceback).
    pub fn where_(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::WHERE)
    }

    /// `s`: schema name.
    pub fn schema(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::SCHEMA)
    }

    /// `t`: table name.
    pub fn table(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::TABLE)
    }

    /// `c`: column name.
    pub fn column(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::COLUMN)
    }

    /// `d`: data type name.
    pub fn data_type(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::DATA_TYPE)
    }

    /// `n`: constraint name.
    pub fn constraint(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::CONSTRAINT)
    }

    /// `F`: server source file.
    pub fn file(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::FILE)
    }

    /// `L`: server source line.
    pub fn line(&self) -> Option<u32> {
        self.number(ErrorFieldCode::LINE)
    }

    /// `R`: server source routine.
    pub fn routine(&self) -> Option<Cow<'_, str>> {
        self.text(ErrorFieldCode::ROUTINE)
    }

    fn number(&self, code: ErrorFieldCode) -> Option<u32> {
        std::str::from_utf8(self.raw(code)?).ok()?.parse().ok()
    }

    fn decode(c: &mut Cursor) -> Result<Self, DecodeError> {
        let mut fields = Vec::new();
        loop {
            let code = c.u8()?;
            if code == 0 {
                break;
            }
            fields.push((ErrorFieldCode(code), c.cstr_bytes()?));
        }
        Ok(Self { fields })
    }

    fn encode_body(&self, buf: &mut BytesMut, context: &'static str) -> Result<(), EncodeError> {
        for (code, value) in &self.fields {
            if code.0 == 0 {
                return Err(EncodeError::InvalidValue {
                    context,
                    reason: "field code 0",
                });
            }
            buf.put_u8(code.0);
            put_cstr(buf, value, context)?;
        }
        buf.put_u8(0);
        Ok(())
    }
}

impl fmt::Display for ErrorFields {
    /// `SEVERITY: message (SQLSTATE)`, plus detail and hint when present.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = self.severity().unwrap_or(Cow::Borrowed("ERROR"));
        write!(f, "{sev}: {}", self.message().unwrap_or_default())?;
        if let Some(code) = self.sqlstate() {
            write!(f, " ({code})")?;
        }
        if let Some(d) = self.detail() {
            write!(f, "; DETAIL: {d}")?;
        }
        if let Some(h) = self.hint() {
            write!(f, "; HINT: {h}")?;
        }
        Ok(())
    }
}

impl BackendMessage {
    /// The message's tag byte.
    pub fn tag(&self) -> BackendTag {
        match self {
            Self::Authentication(_) => BackendTag::AUTHENTICATION,
            Self::ParameterStatus { .. } => BackendTag::PARAMETER_STATUS,
            Self::BackendKeyData { .. } => BackendTag::BACKEND_KEY_DATA,
            Self::NegotiateProtocolVersion { .. } => BackendTag::NEGOTIATE_PROTOCOL_VERSION,
            Self::ReadyForQuery(_) => BackendTag::READY_FOR_QUERY,
            Self::RowDescription(_) => BackendTag::ROW_DESCRIPTION,
            Self::DataRow(_) => BackendTag::DATA_ROW,
            Self::CommandComplete(_) => BackendTag::COMMAND_COMPLETE,
            Self::EmptyQueryResponse => BackendTag::EMPTY_QUERY_RESPONSE,
            Self::ErrorResponse(_) => BackendTag::ERROR_RESPONSE,
            Self::NoticeResponse(_) => BackendTag::NOTICE_RESPONSE,
            Self::CopyInResponse(_) => BackendTag::COPY_IN_RESPONSE,
            Self::CopyOutResponse(_) => BackendTag::COPY_OUT_RESPONSE,
            Self::CopyBothResponse(_) => BackendTag::COPY_BOTH_RESPONSE,
            Self::CopyData(_) => BackendTag::COPY_DATA,
            Self::CopyDone => BackendTag::COPY_DONE,
            Self::ParseComplete => BackendTag::PARSE_COMPLETE,
            Self::BindComplete => BackendTag::BIND_COMPLETE,
            Self::CloseComplete => BackendTag::CLOSE_COMPLETE,
            Self::NoData => BackendTag::NO_DATA,
            Self::PortalSuspended => BackendTag::PORTAL_SUSPENDED,
            Self::ParameterDescription(_) => BackendTag::PARAMETER_DESCRIPTION,
            Self::NotificationResponse { .. } => BackendTag::NOTIFICATION_RESPONSE,
        }
    }

    /// A static name for errors and logs, e.g. `"ErrorResponse"`.
    pub fn name(&self) -> &'static str {
        tag_name(self.tag().0).unwrap_or("unknown")
    }

    /// Decodes the body of a message with tag `tag` (the bytes after the length field).
    pub fn decode(tag: u8, body: Bytes) -> Result<Self, DecodeError> {
        let Some(context) = tag_name(tag) else {
            return Err(DecodeError::UnknownTag {
                context: "backend message",
                tag,
                offset: 0,
            });
        };
        let mut c = Cursor::new(body, context);
        let msg = match BackendTag(tag) {
            BackendTag::AUTHENTICATION => Self::Authentication(Authentication::decode(&mut c)?),
            BackendTag::PARAMETER_STATUS => Self::ParameterStatus {
                name: c.cstr()?,
                value: c.cstr()?,
            },
            BackendTag::BACKEND_KEY_DATA => {
                let process_id = c.i32()?;
                let at = c.offset();
                let secret_key = c.rest();
                if secret_key.len() > MAX_SECRET_KEY_LEN {
                    return Err(c.invalid(at, "secret key longer than 256 bytes"));
                }
                Self::BackendKeyData {
                    process_id,
                    secret_key,
                }
            }
            BackendTag::NEGOTIATE_PROTOCOL_VERSION => {
                let newest_minor = c.u32()?;
                let at = c.offset();
                let raw = c.i32()?;
                let n = c.count(i64::from(raw), 1, at)?;
                let mut unrecognized_options = Vec::with_capacity(n);
                for _ in 0..n {
                    unrecognized_options.push(c.cstr()?);
                }
                Self::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized_options,
                }
            }
            BackendTag::READY_FOR_QUERY => Self::ReadyForQuery(TransactionStatus(c.u8()?)),
            BackendTag::ROW_DESCRIPTION => {
                let n = read_i16_count(&mut c, 19)?;
                let mut fields = Vec::with_capacity(n);
                for _ in 0..n {
                    fields.push(FieldDescription {
                        name: c.cstr()?,
                        table_oid: Oid(c.u32()?),
                        column_id: c.i16()?,
                        type_oid: Oid(c.u32()?),
                        type_size: c.i16()?,
                        type_modifier: c.i32()?,
                        format: FormatCode(c.i16()?),
                    });
                }
                Self::RowDescription(fields)
            }
            BackendTag::DATA_ROW => Self::DataRow(DataRow::decode(&mut c)?),
            BackendTag::COMMAND_COMPLETE => Self::CommandComplete(c.cstr()?),
            BackendTag::EMPTY_QUERY_RESPONSE => Self::EmptyQueryResponse,
            BackendTag::ERROR_RESPONSE => Self::ErrorResponse(ErrorFields::decode(&mut c)?),
            BackendTag::NOTICE_RESPONSE => Self::NoticeResponse(ErrorFields::decode(&mut c)?),
            BackendTag::COPY_IN_RESPONSE => Self::CopyInResponse(CopyResponse::decode(&mut c)?),
            BackendTag::COPY_OUT_RESPONSE => Self::CopyOutResponse(CopyResponse::decode(&mut c)?),
            BackendTag::COPY_BOTH_RESPONSE => Self::CopyBothResponse(CopyResponse::decode(&mut c)?),
            BackendTag::COPY_DATA => Self::CopyData(c.rest()),
            BackendTag::COPY_DONE => Self::CopyDone,
            BackendTag::PARSE_COMPLETE => Self::ParseComplete,
            BackendTag::BIND_COMPLETE => Self::BindComplete,
            BackendTag::CLOSE_COMPLETE => Self::CloseComplete,
            BackendTag::NO_DATA => Self::NoData,
            BackendTag::PORTAL_SUSPENDED => Self::PortalSuspended,
            BackendTag::PARAMETER_DESCRIPTION => {
                let n = read_i16_count(&mut c, 4)?;
                let mut oids = Vec::with_capacity(n);
                for _ in 0..n {
                    oids.push(Oid(c.u32()?));
                }
                Self::ParameterDescription(oids)
            }
            BackendTag::NOTIFICATION_RESPONSE => Self::NotificationResponse {
                process_id: c.i32()?,
                channel: c.cstr()?,
                payload: c.cstr()?,
            },
            BackendTag(other) => return Err(c.unknown_tag(other, 0)),
        };
        c.finish()?;
        Ok(msg)
    }

    /// Appends the complete message (tag, length, body) to `buf`. On error nothing is
    /// appended.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let context = self.name();
        write_message(buf, Some(self.tag().0), context, |buf| {
            match self {
                Self::Authentication(a) => a.encode_body(buf)?,
                Self::ParameterStatus { name, value } => {
                    put_cstr(buf, name.as_bytes(), context)?;
                    put_cstr(buf, value.as_bytes(), context)?;
                }
                Self::BackendKeyData {
                    process_id,
                    secret_key,
                } => {
                    if secret_key.len() > MAX_SECRET_KEY_LEN {
                        return Err(EncodeError::InvalidValue {
                            context,
                            reason: "secret key longer than 256 bytes",
                        });
                    }
                    buf.put_i32(*process_id);
                    buf.put_slice(secret_key);
                }
                Self::NegotiateProtocolVersion {
                    newest_minor,
                    unrecognized_options,
                } => {
                    buf.put_u32(*newest_minor);
                    put_i32_len(buf, unrecognized_options.len(), context)?;
                    for o in unrecognized_options {
                        put_cstr(buf, o.as_bytes(), context)?;
                    }
                }
                Self::ReadyForQuery(s) => buf.put_u8(s.0),
                Self::RowDescription(fields) => {
                    put_i16_count(buf, fields.len(), context)?;
                    for f in fields {
                        put_cstr(buf, f.name.as_bytes(), context)?;
                        buf.put_u32(f.table_oid.0);
                        buf.put_i16(f.column_id);
                        buf.put_u32(f.type_oid.0);
                        buf.put_i16(f.type_size);
                        buf.put_i32(f.type_modifier);
                        buf.put_i16(f.format.0);
                    }
                }
                Self::DataRow(row) => {
                    put_i16_count(buf, row.columns, context)?;
                    buf.put_slice(&row.body);
                }
                Self::CommandComplete(tag) => put_cstr(buf, tag.as_bytes(), context)?,
                Self::ErrorResponse(f) | Self::NoticeResponse(f) => f.encode_body(buf, context)?,
                Self::CopyInResponse(r) | Self::CopyOutResponse(r) | Self::CopyBothResponse(r) => {
                    r.encode_body(buf, context)?;
                }
                Self::CopyData(data) => buf.put_slice(data),
                Self::EmptyQueryResponse
                | Self::CopyDone
                | Self::ParseComplete
                | Self::BindComplete
                | Self::CloseComplete
                | Self::NoData
                | Self::PortalSuspended => {}
                Self::ParameterDescription(oids) => {
                    put_i16_count(buf, oids.len(), context)?;
                    for o in oids {
                        buf.put_u32(o.0);
                    }
                }
                Self::NotificationResponse {
                    process_id,
                    channel,
                    payload,
                } => {
                    buf.put_i32(*process_id);
                    put_cstr(buf, channel.as_bytes(), context)?;
                    put_cstr(buf, payload.as_bytes(), context)?;
                }
            }
            Ok(())
        })
    }
}

fn tag_name(tag: u8) -> Option<&'static str> {
    Some(match BackendTag(tag) {
        BackendTag::AUTHENTICATION => "Authentication",
        BackendTag::PARAMETER_STATUS => "ParameterStatus",
        BackendTag::BACKEND_KEY_DATA => "BackendKeyData",
        BackendTag::NEGOTIATE_PROTOCOL_VERSION => "NegotiateProtocolVersion",
        BackendTag::READY_FOR_QUERY => "ReadyForQuery",
        BackendTag::ROW_DESCRIPTION => "RowDescription",
        BackendTag::DATA_ROW => "DataRow",
        BackendTag::COMMAND_COMPLETE => "CommandComplete",
        BackendTag::EMPTY_QUERY_RESPONSE => "EmptyQueryResponse",
        BackendTag::ERROR_RESPONSE => "ErrorResponse",
        BackendTag::NOTICE_RESPONSE => "NoticeResponse",
        BackendTag::COPY_IN_RESPONSE => "CopyInResponse",
        BackendTag::COPY_OUT_RESPONSE => "CopyOutResponse",
        BackendTag::COPY_BOTH_RESPONSE => "CopyBothResponse",
        BackendTag::COPY_DATA => "CopyData",
        BackendTag::COPY_DONE => "CopyDone",
        BackendTag::PARSE_COMPLETE => "ParseComplete",
        BackendTag::BIND_COMPLETE => "BindComplete",
        BackendTag::CLOSE_COMPLETE => "CloseComplete",
        BackendTag::NO_DATA => "NoData",
        BackendTag::PORTAL_SUSPENDED => "PortalSuspended",
        BackendTag::PARAMETER_DESCRIPTION => "ParameterDescription",
        BackendTag::NOTIFICATION_RESPONSE => "NotificationResponse",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Captured from PostgreSQL 15.
    const STARTUP: &[u8] = b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00'application_name\x00walstream-capture\x00S\x00\
      \x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&d\
      efault_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00\x00\x00\
      \x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00S\x00\x00\x00\x14is\
      _superuser\x00on\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S\x00\x00\x002server_version\x00\
      15.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00#session_authorization\x00postgres\x00S\x00\x00\
      \x00#standard_conforming_strings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\
      \x0c\x00\x004\xeaX\x95\xb9\xd8Z\x00\x00\x00\x05I";
    /// Captured from PostgreSQL 15.
    const SELECT: &[u8] = b"T\x00\x00\x00D\x00\x03one\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\
      \x00\x00n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00s\x00\x00\
      \x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x14\x00\x03\
      \x00\x00\x00\x011\xff\xff\xff\xff\x00\x00\x00\x01xC\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05\
      I";
    /// Captured from PostgreSQL 15.
    const ERROR: &[u8] = b"E\x00\x00\x00]SERROR\x00VERROR\x00C42601\x00Msyntax error at or near \x22SELEC\x22\x00P1\x00Fsca\
      n.l\x00L1188\x00Rscanner_yyerror\x00\x00Z\x00\x00\x00\x05I";
    /// Captured from PostgreSQL 15.
    const EMPTY: &[u8] = b"I\x00\x00\x00\x04Z\x00\x00\x00\x05I";
    /// Captured from PostgreSQL 15.
    const IDENTIFY: &[u8] = b"T\x00\x00\x00o\x00\x04systemid\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\
      \xff\x00\x00timeline\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00\
      xlogpos\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00dbname\x00\
      \x00\x00\x00\x00\x00\x00\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00D\x00\x00\x00;\x00\x04\
      \x00\x00\x00\x137710853431696463696\x00\x00\x00\x011\x00\x00\x00\x090/1594848\x00\x00\x00\x08pos\
      tgresC\x00\x00\x00\x14IDENTIFY_SYSTEM\x00Z\x00\x00\x00\x05I";
    /// Captured from PostgreSQL 15.
    const COPY_BOTH: &[u8] = b"W\x00\x00\x00\x07\x00\x00\x00";
    /// Captured from PostgreSQL 15.
    const STREAM: &[u8] = b"d\x00\x00\x00\x16k\x00\x00\x00\x00\x01Y8\x90\x00\x03\x03\xd5\x1fX\x94E\x00d\x00\x00\x002w\x00\
      \x00\x00\x00\x01Y8\xc8\x00\x00\x00\x00\x01Y8\xc8\x00\x03\x03\xd5\x1fY\x1c\xdaB\x00\x00\x00\x00\
      \x01Y:(\x00\x03\x03\xd5\x1fW\xe7c\x00\x00\x02\xe2d\x00\x00\x00Ew\x00\x00\x00\x00\x00\x00\x00\x00\
      \x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x03\xd5\x1fY\x1d\x87R\x00\x00@\x0dpublic\x00t\x00d\x00\
      \x02\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00v\x00\x00\x00\x00\x19\xff\xff\xff\xffd\x00\x00\
      \x001w\x00\x00\x00\x00\x01Y8\xc8\x00\x00\x00\x00\x01Y8\xc8\x00\x03\x03\xd5\x1fY\x1d\xb5I\x00\x00\
      @\x0dN\x00\x02t\x00\x00\x00\x011t\x00\x00\x00\x01ad\x00\x00\x00,w\x00\x00\x00\x00\x01Y9\xa8\x00\
      \x00\x00\x00\x01Y9\xa8\x00\x03\x03\xd5\x1fY\x1d\xc1I\x00\x00@\x0dN\x00\x02t\x00\x00\x00\x012nd\
      \x00\x00\x007w\x00\x00\x00\x00\x01Y:X\x00\x00\x00\x00\x01Y:X\x00\x03\x03\xd5\x1fY\x1d\xc8C\x00\
      \x00\x00\x00\x00\x01Y:(\x00\x00\x00\x00\x01Y:X\x00\x03\x03\xd5\x1fW\xe7cd\x00\x00\x002w\x00\x00\
      \x00\x00\x01Y:X\x00\x00\x00\x00\x01Y:X\x00\x03\x03\xd5\x1fY\x1d\xf2B\x00\x00\x00\x00\x01Y:\xa0\
      \x00\x03\x03\xd5\x1fX\x00\xd4\x00\x00\x02\xe3";

    /// Decodes a whole stream, checking that nothing is left and that re-encoding every
    /// message reproduces the input exactly.
    fn decode_all(bytes: &[u8]) -> Vec<BackendMessage> {
        let framer = Framer::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = framer.decode(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(buf.is_empty(), "{} bytes left over", buf.len());
        let mut re = BytesMut::new();
        for m in &out {
            m.encode(&mut re).unwrap();
        }
        assert_eq!(&re[..], bytes);
        out
    }

    /// Feeds `bytes` split at every point as two reads and checks the same messages result.
    fn assert_split_invariant(bytes: &[u8]) {
        let whole = decode_all(bytes);
        let framer = Framer::default();
        for cut in 0..=bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            let mut got = Vec::new();
            while let Some(m) = framer.decode(&mut buf).unwrap() {
                got.push(m);
            }
            buf.extend_from_slice(&bytes[cut..]);
            while let Some(m) = framer.decode(&mut buf).unwrap() {
                got.push(m);
            }
            assert!(buf.is_empty());
            assert_eq!(got, whole, "split at {cut}");
        }
    }

    fn one(bytes: &[u8]) -> BackendMessage {
        let mut v = decode_all(bytes);
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn golden_startup_sequence() {
        let msgs = decode_all(STARTUP);
        assert_eq!(msgs.len(), 16);
        assert_eq!(msgs[0], BackendMessage::Authentication(Authentication::Ok));
        assert_eq!(
            msgs[1],
            BackendMessage::ParameterStatus {
                name: "application_name".into(),
                value: "walstream-capture".into()
            }
        );
        assert!(msgs.contains(&BackendMessage::ParameterStatus {
            name: "server_encoding".into(),
            value: "UTF8".into()
        }));
        let BackendMessage::BackendKeyData {
            process_id,
            secret_key,
        } = &msgs[14]
        else {
            panic!("expected BackendKeyData, got {:?}", msgs[14]);
        };
        assert_eq!(*process_id, 0x34ea);
        assert_eq!(&secret_key[..], b"\x58\x95\xb9\xd8");
        assert_eq!(
            msgs[15],
            BackendMessage::ReadyForQuery(TransactionStatus::IDLE)
        );
        assert_eq!(msgs[15].name(), "ReadyForQuery");
    }

    #[test]
    fn golden_select_row() {
        let msgs = decode_all(SELECT);
        let BackendMessage::RowDescription(fields) = &msgs[0] else {
            panic!()
        };
        let names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["one", "n", "s"]);
        assert_eq!(fields[0].type_oid, Oid(23));
        assert_eq!(fields[0].type_size, 4);
        assert_eq!(fields[1].type_oid, Oid(25));
        assert_eq!(fields[1].type_size, -1);
        assert_eq!(fields[1].type_modifier, -1);
        assert_eq!(fields[2].format, FormatCode::TEXT);
        let BackendMessage::DataRow(row) = &msgs[1] else {
            panic!()
        };
        assert_eq!(row.len(), 3);
        let cols: Vec<_> = row.columns().collect();
        assert_eq!(
            cols,
            [
                Some(Bytes::from_static(b"1")),
                None,
                Some(Bytes::from_static(b"x"))
            ]
        );
        assert_eq!(msgs[2], BackendMessage::CommandComplete("SELECT 1".into()));
        assert_eq!(
            *row,
            DataRow::from_columns([Some("1"), None, Some("x")]).unwrap()
        );
    }

    #[test]
    fn golden_error_fields() {
        let msgs = decode_all(ERROR);
        let BackendMessage::ErrorResponse(e) = &msgs[0] else {
            panic!()
        };
        assert_eq!(e.sqlstate(), Some(SqlState::SYNTAX_ERROR));
        assert_eq!(e.severity().as_deref(), Some("ERROR"));
        assert_eq!(e.severity_nonlocalized().as_deref(), Some("ERROR"));
        assert_eq!(
            e.message().as_deref(),
            Some("syntax error at or near \"SELEC\"")
        );
        assert_eq!(e.position(), Some(1));
        assert_eq!(e.file().as_deref(), Some("scan.l"));
        assert_eq!(e.line(), Some(1188));
        assert_eq!(e.routine().as_deref(), Some("scanner_yyerror"));
        assert_eq!(e.detail(), None);
        assert_eq!(e.iter().count(), 8);
        assert_eq!(
            e.to_string(),
            "ERROR: syntax error at or near \"SELEC\" (42601)"
        );
    }

    #[test]
    fn golden_replication_stream() {
        assert_eq!(decode_all(EMPTY)[0], BackendMessage::EmptyQueryResponse);
        let ident = decode_all(IDENTIFY);
        let BackendMessage::DataRow(row) = &ident[1] else {
            panic!()
        };
        let cols: Vec<_> = row.columns().map(Option::unwrap).collect();
        assert_eq!(&cols[2][..], b"0/1594848");
        assert_eq!(
            one(COPY_BOTH),
            BackendMessage::CopyBothResponse(CopyResponse {
                format: FormatCode::TEXT,
                column_formats: vec![]
            })
        );
        let stream = decode_all(STREAM);
        assert_eq!(stream.len(), 7);
        for m in &stream {
            let BackendMessage::CopyData(d) = m else {
                panic!()
            };
            assert!(matches!(d.first(), Some(b'w' | b'k')));
        }
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        for g in [STARTUP, SELECT, ERROR, EMPTY, IDENTIFY, COPY_BOTH, STREAM] {
            assert_split_invariant(g);
        }
    }

    #[test]
    fn every_prefix_needs_more_bytes() {
        let framer = Framer::default();
        for g in [ERROR, SELECT, STARTUP] {
            let first_len =
                1 + usize::try_from(u32::from_be_bytes(g[1..5].try_into().unwrap())).unwrap();
            for cut in 0..first_len {
                let mut buf = BytesMut::from(&g[..cut]);
                assert_eq!(framer.decode(&mut buf), Ok(None), "prefix {cut}");
                assert_eq!(buf.len(), cut, "nothing consumed");
            }
        }
    }

    #[test]
    fn handcrafted_authentication_requests() {
        let cases: &[(&[u8], Authentication)] = &[
            (
                b"R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04",
                Authentication::Md5Password { salt: [1, 2, 3, 4] },
            ),
            (b"R\0\0\0\x08\0\0\0\x03", Authentication::CleartextPassword),
            (b"R\0\0\0\x08\0\0\0\x02", Authentication::KerberosV5),
            (b"R\0\0\0\x08\0\0\0\x07", Authentication::Gss),
            (b"R\0\0\0\x08\0\0\0\x09", Authentication::Sspi),
            (
                b"R\0\0\0\x0a\0\0\0\x08ab",
                Authentication::GssContinue {
                    data: Bytes::from_static(b"ab"),
                },
            ),
            (
                b"R\0\0\0\x2a\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0",
                Authentication::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256-PLUS".into(), "SCRAM-SHA-256".into()],
                },
            ),
            (
                b"R\0\0\0\x0b\0\0\0\x0br=x",
                Authentication::SaslContinue {
                    data: Bytes::from_static(b"r=x"),
                },
            ),
            (
                b"R\0\0\0\x0b\0\0\0\x0cv=y",
                Authentication::SaslFinal {
                    data: Bytes::from_static(b"v=y"),
                },
            ),
        ];
        for (bytes, auth) in cases {
            assert_eq!(one(bytes), BackendMessage::Authentication(auth.clone()));
            assert_eq!(
                i32::from_be_bytes(bytes[5..9].try_into().unwrap()),
                auth.code()
            );
        }
    }

    #[test]
    fn protocol_3_2_key_and_negotiation() {
        let mut bytes = b"K\0\0\0\x28\0\0\x30\x39".to_vec();
        bytes.extend_from_slice(&[0xAB; 32]);
        let BackendMessage::BackendKeyData {
            process_id,
            secret_key,
        } = one(&bytes)
        else {
            panic!()
        };
        assert_eq!((process_id, secret_key.len()), (12345, 32));
        let too_long = BackendMessage::BackendKeyData {
            process_id: 1,
            secret_key: vec![0; 257].into(),
        };
        assert!(too_long.encode(&mut BytesMut::new()).is_err());
        let mut long = b"K\0\0\x01\x09\0\0\0\x01".to_vec();
        long.extend_from_slice(&[0; 257]);
        assert!(matches!(
            Framer::default().decode(&mut BytesMut::from(&long[..])),
            Err(DecodeError::InvalidValue { .. })
        ));
        let npv = one(b"v\0\0\0\x19\0\0\0\0\0\0\0\x01_pq_.unknown\0");
        assert_eq!(
            npv,
            BackendMessage::NegotiateProtocolVersion {
                newest_minor: 0,
                unrecognized_options: vec!["_pq_.unknown".into()]
            }
        );
    }

    #[test]
    fn framing_errors() {
        let framer = Framer::new(16);
        // Length below 4.
        for len in [0u8, 3] {
            let mut buf = BytesMut::from(&[b'Z', 0, 0, 0, len][..]);
            assert!(matches!(
                framer.decode(&mut buf),
                Err(DecodeError::InvalidLength { offset: 1, .. })
            ));
        }
        let mut buf = BytesMut::from(&b"Z\xff\xff\xff\xff"[..]);
        assert!(matches!(
            framer.decode(&mut buf),
            Err(DecodeError::InvalidLength { length: -1, .. })
        ));
        // Above the maximum: rejected from the header alone, nothing buffered or reserved.
        let mut buf = BytesMut::from(&b"d\x7f\xff\xff\xff"[..]);
        let cap = buf.capacity();
        assert!(matches!(
            framer.decode(&mut buf),
            Err(DecodeError::MessageTooLarge {
                length: 0x7fff_fffb,
                max: 16,
                ..
            })
        ));
        assert_eq!(buf.capacity(), cap);
        // Exactly at the maximum is fine.
        let mut buf = BytesMut::from(&b"d\0\0\0\x14"[..]);
        buf.extend_from_slice(&[7; 16]);
        assert!(
            matches!(framer.decode(&mut buf), Ok(Some(BackendMessage::CopyData(d))) if d.len() == 16)
        );
        // Unknown tag.
        let mut buf = BytesMut::from(&b"?\0\0\0\x04"[..]);
        assert!(matches!(
            framer.decode(&mut buf),
            Err(DecodeError::UnknownTag { tag: b'?', .. })
        ));
        // Unknown authentication code.
        let mut buf = BytesMut::from(&b"R\0\0\0\x08\0\0\0\x04"[..]);
        assert!(matches!(
            framer.decode(&mut buf),
            Err(DecodeError::InvalidValue { offset: 0, .. })
        ));
    }

    #[test]
    fn trailing_and_truncated_bodies_are_errors() {
        let framer = Framer::default();
        let bad: &[(&[u8], &str)] = &[
            (b"Z\0\0\0\x06II", "trailing ReadyForQuery"),
            (b"R\0\0\0\x09\0\0\0\0\0", "trailing AuthenticationOk"),
            (b"I\0\0\0\x05x", "trailing EmptyQueryResponse"),
            (b"C\0\0\0\x08ab\0x", "trailing CommandComplete"),
            (b"E\0\0\0\x07Mab\0", "ErrorResponse without terminator"),
            (b"E\0\0\0\x08Mab\0\0x", "trailing ErrorResponse"),
            (b"D\0\0\0\x0a\0\x01\0\0\0\x05a", "DataRow column past end"),
            (b"D\0\0\0\x0c\0\x01\0\0\0\x01ab", "trailing DataRow"),
            (
                b"D\0\0\0\x0a\0\x01\xff\xff\xff\xfe",
                "negative DataRow length",
            ),
            (b"D\0\0\0\x06\xff\xff", "negative column count"),
            (b"T\0\0\0\x06\x7f\xff", "RowDescription count beyond body"),
            (b"S\0\0\0\x07a\0b", "unterminated value"),
            (b"S\0\0\0\x08a\0\xff\0", "invalid UTF-8"),
            (b"R\0\0\0\x0a\0\0\0\x05\x01\x02", "short salt"),
            (b"Z\0\0\0\x04", "ReadyForQuery without status"),
        ];
        for (bytes, what) in bad {
            let mut buf = BytesMut::from(*bytes);
            assert!(
                framer.decode(&mut buf).is_err(),
                "{what} should be rejected"
            );
        }
    }

    #[test]
    fn encode_rejects_nul_and_leaves_buffer_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let m = BackendMessage::CommandComplete("a\0b".into());
        assert_eq!(
            m.encode(&mut buf),
            Err(EncodeError::EmbeddedNul {
                context: "CommandComplete"
            })
        );
        assert_eq!(&buf[..], b"keep");
        let e = BackendMessage::ErrorResponse(ErrorFields::new().with(ErrorFieldCode(0), "x"));
        assert!(e.encode(&mut buf).is_err());
        let s = BackendMessage::Authentication(Authentication::Sasl {
            mechanisms: vec![String::new()],
        });
        assert!(s.encode(&mut buf).is_err());
        let c = BackendMessage::CopyOutResponse(CopyResponse {
            format: FormatCode(300),
            column_formats: vec![],
        });
        assert!(c.encode(&mut buf).is_err());
        assert_eq!(&buf[..], b"keep");
    }

    fn arb_string() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,12}"
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn arb_auth() -> impl Strategy<Value = Authentication> {
        prop_oneof![
            Just(Authentication::Ok),
            Just(Authentication::KerberosV5),
            Just(Authentication::CleartextPassword),
            any::<[u8; 4]>().prop_map(|salt| Authentication::Md5Password { salt }),
            Just(Authentication::Gss),
            arb_bytes(16).prop_map(|data| Authentication::GssContinue { data }),
            Just(Authentication::Sspi),
            proptest::collection::vec("[^\u{0}]{1,12}", 0..4)
                .prop_map(|mechanisms| Authentication::Sasl { mechanisms }),
            arb_bytes(16).prop_map(|data| Authentication::SaslContinue { data }),
            arb_bytes(16).prop_map(|data| Authentication::SaslFinal { data }),
        ]
    }

    fn arb_fields() -> impl Strategy<Value = ErrorFields> {
        proptest::collection::vec((1u8.., proptest::collection::vec(1u8.., 0..10)), 0..8).prop_map(
            |v| {
                v.into_iter().fold(ErrorFields::new(), |f, (c, val)| {
                    f.with(ErrorFieldCode(c), val)
                })
            },
        )
    }

    fn arb_copy() -> impl Strategy<Value = CopyResponse> {
        (any::<i8>(), proptest::collection::vec(any::<i16>(), 0..5)).prop_map(|(f, cols)| {
            CopyResponse {
                format: FormatCode(i16::from(f)),
                column_formats: cols.into_iter().map(FormatCode).collect(),
            }
        })
    }

    fn arb_message() -> impl Strategy<Value = BackendMessage> {
        let field = (
            arb_string(),
            any::<u32>(),
            any::<i16>(),
            any::<u32>(),
            any::<i16>(),
            any::<i32>(),
            any::<i16>(),
        )
            .prop_map(|(name, t, c, ty, sz, m, f)| FieldDescription {
                name,
                table_oid: Oid(t),
                column_id: c,
                type_oid: Oid(ty),
                type_size: sz,
                type_modifier: m,
                format: FormatCode(f),
            });
        prop_oneof![
            arb_auth().prop_map(BackendMessage::Authentication),
            (arb_string(), arb_string())
                .prop_map(|(name, value)| BackendMessage::ParameterStatus { name, value }),
            (any::<i32>(), arb_bytes(257)).prop_map(|(process_id, secret_key)| {
                BackendMessage::BackendKeyData {
                    process_id,
                    secret_key,
                }
            }),
            (any::<u32>(), proptest::collection::vec(arb_string(), 0..3)).prop_map(
                |(newest_minor, o)| {
                    BackendMessage::NegotiateProtocolVersion {
                        newest_minor,
                        unrecognized_options: o,
                    }
                }
            ),
            any::<u8>().prop_map(|s| BackendMessage::ReadyForQuery(TransactionStatus(s))),
            proptest::collection::vec(field, 0..4).prop_map(BackendMessage::RowDescription),
            proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
                0..6
            )
            .prop_map(|cols| BackendMessage::DataRow(DataRow::from_columns(cols).unwrap())),
            arb_string().prop_map(BackendMessage::CommandComplete),
            Just(BackendMessage::EmptyQueryResponse),
            arb_fields().prop_map(BackendMessage::ErrorResponse),
            arb_fields().prop_map(BackendMessage::NoticeResponse),
            arb_copy().prop_map(BackendMessage::CopyInResponse),
            arb_copy().prop_map(BackendMessage::CopyOutResponse),
            arb_copy().prop_map(BackendMessage::CopyBothResponse),
            arb_bytes(64).prop_map(BackendMessage::CopyData),
            Just(BackendMessage::CopyDone),
            Just(BackendMessage::ParseComplete),
            Just(BackendMessage::BindComplete),
            Just(BackendMessage::CloseComplete),
            Just(BackendMessage::NoData),
            Just(BackendMessage::PortalSuspended),
            proptest::collection::vec(any::<u32>().prop_map(Oid), 0..5)
                .prop_map(BackendMessage::ParameterDescription),
            (any::<i32>(), arb_string(), arb_string()).prop_map(
                |(process_id, channel, payload)| {
                    BackendMessage::NotificationResponse {
                        process_id,
                        channel,
                        payload,
                    }
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(msgs in proptest::collection::vec(arb_message(), 1..4)) {
            let mut buf = BytesMut::new();
            for m in &msgs {
                m.encode(&mut buf).unwrap();
            }
            let bytes = buf.clone().freeze();
            let got = decode_all(&bytes);
            prop_assert_eq!(&got, &msgs);
            // One split point per case keeps this fast; golden tests cover every split.
            let framer = Framer::default();
            let cut = bytes.len() / 2;
            let mut part = BytesMut::from(&bytes[..cut]);
            let mut again = Vec::new();
            while let Some(m) = framer.decode(&mut part).unwrap() { again.push(m); }
            part.extend_from_slice(&bytes[cut..]);
            while let Some(m) = framer.decode(&mut part).unwrap() { again.push(m); }
            prop_assert_eq!(again, msgs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let framer = Framer::new(1024);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(m)) = framer.decode(&mut buf) {
                let mut re = BytesMut::new();
                m.encode(&mut re).unwrap();
                if let BackendMessage::DataRow(r) = &m { let _ = r.columns().count(); }
            }
        }
    }
}
