//! Messages sent by the client (frontend): encoders, and decoders for tests and fake servers.
//!
//! The first packet of a connection has no tag byte: an Int32 length followed by an Int32
//! code that tells a [`StartupMessage`] (a protocol version) from an `SSLRequest`, a
//! `GSSENCRequest` or a [`CancelRequest`]. Every later message is a tag byte, an Int32 length
//! that counts itself, and the body
//! ([protocol-message-formats](https://www.postgresql.org/docs/current/protocol-message-formats.html)).
//!
//! Encoders append to a caller-owned [`BytesMut`], fill the length with a checked conversion,
//! reject NUL bytes inside C strings ([`EncodeError::EmbeddedNul`]) and leave the buffer
//! untouched on error.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::backend::{MAX_SECRET_KEY_LEN, frame_header, put_cstr, put_i32_len, write_message};
use crate::cursor::Cursor;
use crate::error::{DecodeError, EncodeError};

/// A protocol version as sent in the startup packet: major in the high 16 bits, minor in the
/// low 16 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolVersion(pub u32);

impl ProtocolVersion {
    /// Protocol 3.0 (every server since PostgreSQL 7.4).
    pub const V3_0: Self = Self(0x0003_0000);
    /// Protocol 3.2 (PostgreSQL 18+: variable-length cancel keys).
    pub const V3_2: Self = Self(0x0003_0002);

    /// Builds a version from its parts.
    pub fn new(major: u16, minor: u16) -> Self {
        Self((u32::from(major) << 16) | u32::from(minor))
    }

    /// The major version.
    pub fn major(self) -> u16 {
        self.0
            .to_be_bytes()
            .first_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b))
    }

    /// The minor version.
    pub fn minor(self) -> u16 {
        self.0
            .to_be_bytes()
            .last_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b))
    }
}

/// The request code of an `SSLRequest` (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 0x04D2_162F;
/// The request code of a `GSSENCRequest` (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 0x04D2_1630;
/// The request code of a `CancelRequest` (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 0x04D2_162E;

/// The largest startup packet servers accept (PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;

/// A `StartupMessage`: the protocol version and connection parameters (`user`, `database`,
/// `replication`, `application_name`, `options`, `_pq_.*` protocol options, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Requested protocol version.
    pub version: ProtocolVersion,
    /// Parameter name/value pairs in the order sent.
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// A startup message for `version` with no parameters yet.
    pub fn new(version: ProtocolVersion) -> Self {
        Self {
            version,
            params: Vec::new(),
        }
    }

    /// Adds a parameter (builder style).
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The value of parameter `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A `CancelRequest`, sent on a new connection to cancel a running query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// Process id from `BackendKeyData`.
    pub process_id: i32,
    /// Secret key from `BackendKeyData` (4 bytes in 3.0, up to 256 in 3.2).
    pub secret_key: Bytes,
}

/// The first packet a client sends on a connection (no tag byte).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartupPacket {
    /// A `StartupMessage`.
    Startup(StartupMessage),
    /// An `SSLRequest`; the server answers with one byte, `S` or `N`.
    SslRequest,
    /// A `GSSENCRequest`; the server answers with one byte, `G` or `N`.
    GssEncRequest,
    /// A `CancelRequest`.
    Cancel(CancelRequest),
}

impl StartupPacket {
    /// Appends the packet to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Self::Startup(m) => {
                const CTX: &str = "StartupMessage";
                if matches!(
                    m.version.0,
                    SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE
                ) {
                    return Err(EncodeError::InvalidValue {
                        context: CTX,
                        reason: "protocol version collides with a request code",
                    });
                }
                write_message(buf, None, CTX, |buf| {
                    buf.put_u32(m.version.0);
                    for (name, value) in &m.params {
                        if name.is_empty() {
                            return Err(EncodeError::InvalidValue {
                                context: CTX,
                                reason: "empty parameter name",
                            });
                        }
                        put_cstr(buf, name.as_bytes(), CTX)?;
                        put_cstr(buf, value.as_bytes(), CTX)?;
                    }
                    buf.put_u8(0);
                    Ok(())
                })
            }
            Self::SslRequest => write_message(buf, None, "SSLRequest", |buf| {
                buf.put_u32(SSL_REQUEST_CODE);
                Ok(())
            }),
            Self::GssEncRequest => write_message(buf, None, "GSSENCRequest", |buf| {
                buf.put_u32(GSSENC_REQUEST_CODE);
                Ok(())
            }),
            Self::Cancel(c) => write_message(buf, None, "CancelRequest", |buf| {
                if c.secret_key.len() > MAX_SECRET_KEY_LEN {
                    return Err(EncodeError::InvalidValue {
                        context: "CancelRequest",
                        reason: "secret key longer than 256 bytes",
                    });
                }
                buf.put_u32(CANCEL_REQUEST_CODE);
                buf.put_i32(c.process_id);
                buf.put_slice(&c.secret_key);
                Ok(())
            }),
        }
    }

    /// Decodes the first packet of a connection from the front of `buf` (server side).
    ///
    /// `Ok(None)` means more bytes are needed. Packets longer than
    /// [`MAX_STARTUP_PACKET_LEN`] are rejected before buffering.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, DecodeError> {
        const CTX: &str = "startup packet";
        let Some(&[a, b, c, d]) = buf.get(..4) else {
            return Ok(None);
        };
        let len = i32::from_be_bytes([a, b, c, d]);
        let total =
            usize::try_from(len)
                .ok()
                .filter(|&l| l >= 8)
                .ok_or(DecodeError::InvalidLength {
                    context: CTX,
                    length: i64::from(len),
                    offset: 0,
                })?;
        if total > MAX_STARTUP_PACKET_LEN {
            return Err(DecodeError::MessageTooLarge {
                context: CTX,
                length: total,
                max: MAX_STARTUP_PACKET_LEN,
            });
        }
        if buf.len() < total {
            return Ok(None);
        }
        let mut body = buf.split_to(total).freeze();
        body.advance(4);
        Self::decode_body(body).map(Some)
    }

    /// Decodes a startup packet body (the bytes after the length field).
    pub fn decode_body(body: Bytes) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body, "startup packet");
        let packet = match c.u32()? {
            SSL_REQUEST_CODE => {
                c.set_context("SSLRequest");
                Self::SslRequest
            }
            GSSENC_REQUEST_CODE => {
                c.set_context("GSSENCRequest");
                Self::GssEncRequest
            }
            CANCEL_REQUEST_CODE => {
                c.set_context("CancelRequest");
                let process_id = c.i32()?;
                let at = c.offset();
                let secret_key = c.rest();
                if secret_key.len() > MAX_SECRET_KEY_LEN {
                    return Err(c.invalid(at, "secret key longer than 256 bytes"));
                }
                Self::Cancel(CancelRequest {
                    process_id,
                    secret_key,
                })
            }
            version => {
                c.set_context("StartupMessage");
                let mut params = Vec::new();
                loop {
                    if c.peek_u8() == Some(0) {
                        c.u8()?;
                        break;
                    }
                    let name = c.cstr()?;
                    let value = c.cstr()?;
                    params.push((name, value));
                }
                Self::Startup(StartupMessage {
                    version: ProtocolVersion(version),
                    params,
                })
            }
        };
        c.finish()?;
        Ok(packet)
    }
}

/// How to read a `p` message, whose meaning depends on the authentication exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PasswordKind {
    /// A `PasswordMessage` (cleartext or MD5).
    #[default]
    Password,
    /// A `SASLInitialResponse`.
    SaslInitial,
    /// A `SASLResponse`.
    Sasl,
    /// A `GSSResponse`.
    Gss,
}

/// A tagged message sent by the client after the startup packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrontendMessage {
    /// `p` PasswordMessage: a cleartext or MD5-hashed (`md5...`) password.
    Password(String),
    /// `p` SASLInitialResponse.
    SaslInitialResponse {
        /// Selected mechanism, e.g. `SCRAM-SHA-256`.
        mechanism: String,
        /// Initial client response (`None` is sent as length -1).
        data: Option<Bytes>,
    },
    /// `p` SASLResponse.
    SaslResponse(Bytes),
    /// `p` GSSResponse.
    GssResponse(Bytes),
    /// `Q` a simple query.
    Query(String),
    /// `d` COPY data.
    CopyData(Bytes),
    /// `c` end of COPY data.
    CopyDone,
    /// `f` abort COPY with an error message.
    CopyFail(String),
    /// `S` Sync.
    Sync,
    /// `H` Flush.
    Flush,
    /// `X` close the connection.
    Terminate,
}

impl FrontendMessage {
    /// The tag byte.
    pub fn tag(&self) -> u8 {
        match self {
            Self::Password(_)
            | Self::SaslInitialResponse { .. }
            | Self::SaslResponse(_)
            | Self::GssResponse(_) => b'p',
            Self::Query(_) => b'Q',
            Self::CopyData(_) => b'd',
            Self::CopyDone => b'c',
            Self::CopyFail(_) => b'f',
            Self::Sync => b'S',
            Self::Flush => b'H',
            Self::Terminate => b'X',
        }
    }

    /// A static name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Password(_) => "PasswordMessage",
            Self::SaslInitialResponse { .. } => "SASLInitialResponse",
            Self::SaslResponse(_) => "SASLResponse",
            Self::GssResponse(_) => "GSSResponse",
            Self::Query(_) => "Query",
            Self::CopyData(_) => "CopyData",
            Self::CopyDone => "CopyDone",
            Self::CopyFail(_) => "CopyFail",
            Self::Sync => "Sync",
            Self::Flush => "Flush",
            Self::Terminate => "Terminate",
        }
    }

    /// Appends the message (tag, length, body) to `buf`. On error nothing is appended.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let context = self.name();
        write_message(buf, Some(self.tag()), context, |buf| {
            match self {
                Self::Password(p) => put_cstr(buf, p.as_bytes(), context)?,
                Self::SaslInitialResponse { mechanism, data } => {
                    put_cstr(buf, mechanism.as_bytes(), context)?;
                    match data {
                        None => buf.put_i32(-1),
                        Some(d) => {
                            put_i32_len(buf, d.len(), context)?;
                            buf.put_slice(d);
                        }
                    }
                }
                Self::SaslResponse(d) | Self::GssResponse(d) | Self::CopyData(d) => {
                    buf.put_slice(d)
                }
                Self::Query(q) => put_cstr(buf, q.as_bytes(), context)?,
                Self::CopyFail(m) => put_cstr(buf, m.as_bytes(), context)?,
                Self::CopyDone | Self::Sync | Self::Flush | Self::Terminate => {}
            }
            Ok(())
        })
    }

    /// Decodes the body of a message with tag `tag`; `p` messages are read as `password`.
    pub fn decode(tag: u8, body: Bytes, password: PasswordKind) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body, "frontend message");
        let msg = match tag {
            b'p' => match password {
                PasswordKind::Password => {
                    c.set_context("PasswordMessage");
                    Self::Password(c.cstr()?)
                }
                PasswordKind::SaslInitial => {
                    c.set_context("SASLInitialResponse");
                    let mechanism = c.cstr()?;
                    let at = c.offset();
                    let len = c.i32()?;
                    let data = if len == -1 {
                        None
                    } else {
                        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
                            context: "SASLInitialResponse",
                            length: i64::from(len),
                            offset: at,
                        })?;
                        Some(c.bytes(len)?)
                    };
                    Self::SaslInitialResponse { mechanism, data }
                }
                PasswordKind::Sasl => Self::SaslResponse(c.rest()),
                PasswordKind::Gss => Self::GssResponse(c.rest()),
            },
            b'Q' => {
                c.set_context("Query");
                Self::Query(c.cstr()?)
            }
            b'd' => Self::CopyData(c.rest()),
            b'c' => Self::CopyDone,
            b'f' => {
                c.set_context("CopyFail");
                Self::CopyFail(c.cstr()?)
            }
            b'S' => Self::Sync,
            b'H' => Self::Flush,
            b'X' => Self::Terminate,
            other => return Err(c.unknown_tag(other, 0)),
        };
        c.finish()?;
        Ok(msg)
    }
}

/// Cuts tagged frontend messages out of a buffer (for fake servers and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrontendFramer {
    /// Largest body accepted.
    pub max_message_size: usize,
    /// How the next `p` messages are read.
    pub password_kind: PasswordKind,
}

impl FrontendFramer {
    /// A framer with the given body limit, reading `p` as `PasswordMessage`.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            password_kind: PasswordKind::Password,
        }
    }

    /// Decodes the next message; `Ok(None)` means more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<FrontendMessage>, DecodeError> {
        let Some((tag, body_len)) = frame_header(buf, self.max_message_size, "frontend message")?
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
        FrontendMessage::decode(tag, frame, self.password_kind).map(Some)
    }
}

impl Default for FrontendFramer {
    fn default() -> Self {
        Self::new(crate::backend::Framer::DEFAULT_MAX_MESSAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn enc(m: &FrontendMessage) -> Vec<u8> {
        let mut b = BytesMut::new();
        m.encode(&mut b).unwrap();
        b.to_vec()
    }

    fn enc_startup(p: &StartupPacket) -> Vec<u8> {
        let mut b = BytesMut::new();
        p.encode(&mut b).unwrap();
        b.to_vec()
    }

    #[test]
    fn golden_startup_packets() {
        let s = StartupMessage::new(ProtocolVersion::V3_0)
            .param("user", "postgres")
            .param("replication", "database");
        assert_eq!(
            enc_startup(&StartupPacket::Startup(s.clone())),
            b"\0\0\0\x2c\0\x03\0\0user\0postgres\0replication\0database\0\0"
        );
        assert_eq!(s.get("replication"), Some("database"));
        assert_eq!(
            enc_startup(&StartupPacket::SslRequest),
            b"\0\0\0\x08\x04\xd2\x16\x2f"
        );
        assert_eq!(
            enc_startup(&StartupPacket::GssEncRequest),
            b"\0\0\0\x08\x04\xd2\x16\x30"
        );
        let cancel = CancelRequest {
            process_id: 0x34ea,
            secret_key: Bytes::from_static(b"\x58\x95\xb9\xd8"),
        };
        assert_eq!(
            enc_startup(&StartupPacket::Cancel(cancel)),
            b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\x34\xea\x58\x95\xb9\xd8"
        );
        // Protocol 3.2: a 32-byte key.
        let cancel = CancelRequest {
            process_id: 1,
            secret_key: Bytes::from(vec![9u8; 32]),
        };
        let bytes = enc_startup(&StartupPacket::Cancel(cancel.clone()));
        assert_eq!(bytes.len(), 12 + 32);
        assert_eq!(
            StartupPacket::decode(&mut BytesMut::from(&bytes[..])).unwrap(),
            Some(StartupPacket::Cancel(cancel))
        );
        assert_eq!(ProtocolVersion::V3_2.major(), 3);
        assert_eq!(ProtocolVersion::V3_2.minor(), 2);
        assert_eq!(ProtocolVersion::new(3, 2), ProtocolVersion::V3_2);
    }

    #[test]
    fn golden_tagged_messages() {
        assert_eq!(
            enc(&FrontendMessage::Query("IDENTIFY_SYSTEM".into())),
            b"Q\0\0\0\x14IDENTIFY_SYSTEM\0"
        );
        assert_eq!(enc(&FrontendMessage::Terminate), b"X\0\0\0\x04");
        assert_eq!(enc(&FrontendMessage::CopyDone), b"c\0\0\0\x04");
        assert_eq!(
            enc(&FrontendMessage::CopyFail("no".into())),
            b"f\0\0\0\x07no\0"
        );
        assert_eq!(
            enc(&FrontendMessage::CopyData(Bytes::from_static(b"r1"))),
            b"d\0\0\0\x06r1"
        );
        assert_eq!(
            enc(&FrontendMessage::Password("pw".into())),
            b"p\0\0\0\x07pw\0"
        );
        assert_eq!(
            enc(&FrontendMessage::SaslInitialResponse {
                mechanism: "SCRAM-SHA-256".into(),
                data: Some(Bytes::from_static(b"n,,n=,r=abc"))
            }),
            b"p\0\0\0\x21SCRAM-SHA-256\0\0\0\0\x0bn,,n=,r=abc"
        );
        assert_eq!(
            enc(&FrontendMessage::SaslInitialResponse {
                mechanism: "X".into(),
                data: None
            }),
            b"p\0\0\0\x0aX\0\xff\xff\xff\xff"
        );
        assert_eq!(
            enc(&FrontendMessage::SaslResponse(Bytes::from_static(
                b"c=biws"
            ))),
            b"p\0\0\0\x0ac=biws"
        );
    }

    #[test]
    fn embedded_nul_is_rejected_and_buffer_untouched() {
        let mut b = BytesMut::from(&b"x"[..]);
        assert_eq!(
            FrontendMessage::Query("SELECT\0 1".into()).encode(&mut b),
            Err(EncodeError::EmbeddedNul { context: "Query" })
        );
        let s = StartupMessage::new(ProtocolVersion::V3_0).param("user", "a\0b");
        assert!(matches!(
            StartupPacket::Startup(s).encode(&mut b),
            Err(EncodeError::EmbeddedNul { .. })
        ));
        let s = StartupMessage::new(ProtocolVersion::V3_0).param("", "b");
        assert!(StartupPacket::Startup(s).encode(&mut b).is_err());
        let s = StartupMessage::new(ProtocolVersion(SSL_REQUEST_CODE));
        assert!(StartupPacket::Startup(s).encode(&mut b).is_err());
        let c = CancelRequest {
            process_id: 1,
            secret_key: vec![0; 257].into(),
        };
        assert!(StartupPacket::Cancel(c).encode(&mut b).is_err());
        assert_eq!(&b[..], b"x");
    }

    #[test]
    fn startup_decode_errors_and_prefixes() {
        let good = enc_startup(&StartupPacket::Startup(
            StartupMessage::new(ProtocolVersion::V3_2).param("user", "u"),
        ));
        for cut in 0..good.len() {
            assert_eq!(
                StartupPacket::decode(&mut BytesMut::from(&good[..cut])),
                Ok(None),
                "prefix {cut}"
            );
        }
        let bad: &[&[u8]] = &[
            b"\0\0\0\x07\0\x03\0",               // length below 8
            b"\0\0\x27\x11",                     // above MAX_STARTUP_PACKET_LEN
            b"\0\0\0\x09\x04\xd2\x16\x2f\0",     // SSLRequest with a trailing byte
            b"\0\0\0\x0e\0\x03\0\0user\0u",      // unterminated value
            b"\0\0\0\x11\0\x03\0\0user\0u\0\0x", // trailing bytes after the terminator
            b"\0\0\0\x0b\x04\xd2\x16\x2e\0\0\0", // short CancelRequest
        ];
        for b in bad {
            assert!(
                StartupPacket::decode(&mut BytesMut::from(*b)).is_err(),
                "{b:?}"
            );
        }
    }

    #[test]
    fn tagged_decode_errors() {
        let f = FrontendFramer::default();
        assert!(matches!(
            f.decode(&mut BytesMut::from(&b"?\0\0\0\x04"[..])),
            Err(DecodeError::UnknownTag { tag: b'?', .. })
        ));
        assert!(matches!(
            f.decode(&mut BytesMut::from(&b"X\0\0\0\x05x"[..])),
            Err(DecodeError::TrailingBytes { .. })
        ));
        assert!(matches!(
            f.decode(&mut BytesMut::from(&b"Q\0\0\0\x02"[..])),
            Err(DecodeError::InvalidLength { .. })
        ));
        let sasl = FrontendFramer {
            password_kind: PasswordKind::SaslInitial,
            ..f
        };
        assert!(
            sasl.decode(&mut BytesMut::from(&b"p\0\0\0\x0aX\0\xff\xff\xff\xfe"[..]))
                .is_err()
        );
        assert!(
            sasl.decode(&mut BytesMut::from(&b"p\0\0\0\x0aX\0\0\0\0\x09"[..]))
                .is_err()
        );
        let small = FrontendFramer::new(4);
        assert!(matches!(
            small.decode(&mut BytesMut::from(&b"d\0\0\0\x09"[..])),
            Err(DecodeError::MessageTooLarge { .. })
        ));
    }

    fn arb_text() -> impl Strategy<Value = String> {
        "[^\u{0}]{0,16}"
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from)
    }

    fn arb_message() -> impl Strategy<Value = (FrontendMessage, PasswordKind)> {
        prop_oneof![
            arb_text().prop_map(|p| (FrontendMessage::Password(p), PasswordKind::Password)),
            (arb_text(), proptest::option::of(arb_bytes())).prop_map(|(mechanism, data)| {
                (
                    FrontendMessage::SaslInitialResponse { mechanism, data },
                    PasswordKind::SaslInitial,
                )
            }),
            arb_bytes().prop_map(|d| (FrontendMessage::SaslResponse(d), PasswordKind::Sasl)),
            arb_bytes().prop_map(|d| (FrontendMessage::GssResponse(d), PasswordKind::Gss)),
            arb_text().prop_map(|q| (FrontendMessage::Query(q), PasswordKind::Password)),
            arb_bytes().prop_map(|d| (FrontendMessage::CopyData(d), PasswordKind::Password)),
            Just((FrontendMessage::CopyDone, PasswordKind::Password)),
            arb_text().prop_map(|m| (FrontendMessage::CopyFail(m), PasswordKind::Password)),
            Just((FrontendMessage::Sync, PasswordKind::Password)),
            Just((FrontendMessage::Flush, PasswordKind::Password)),
            Just((FrontendMessage::Terminate, PasswordKind::Password)),
        ]
    }

    fn arb_startup() -> impl Strategy<Value = StartupPacket> {
        prop_oneof![
            (
                any::<u16>(),
                any::<u16>(),
                proptest::collection::vec(("[^\u{0}]{1,8}", arb_text()), 0..4)
            )
                .prop_map(|(maj, min, params)| {
                    // Avoid the request codes' major number 1234.
                    let version = ProtocolVersion::new(if maj == 1234 { 3 } else { maj }, min);
                    StartupPacket::Startup(StartupMessage { version, params })
                }),
            Just(StartupPacket::SslRequest),
            Just(StartupPacket::GssEncRequest),
            (any::<i32>(), proptest::collection::vec(any::<u8>(), 0..257)).prop_map(
                |(process_id, k)| StartupPacket::Cancel(CancelRequest {
                    process_id,
                    secret_key: k.into()
                })
            ),
        ]
    }

    proptest! {
        #[test]
        fn tagged_round_trip((msg, kind) in arb_message()) {
            let bytes = enc(&msg);
            let framer = FrontendFramer { password_kind: kind, ..FrontendFramer::default() };
            for cut in 0..bytes.len() {
                prop_assert_eq!(framer.decode(&mut BytesMut::from(&bytes[..cut])), Ok(None));
            }
            let mut buf = BytesMut::from(&bytes[..]);
            prop_assert_eq!(framer.decode(&mut buf), Ok(Some(msg)));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn startup_round_trip(p in arb_startup()) {
            let bytes = enc_startup(&p);
            let mut buf = BytesMut::from(&bytes[..]);
            prop_assert_eq!(StartupPacket::decode(&mut buf), Ok(Some(p)));
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn arbitrary_startup_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            if let Ok(Some(p)) = StartupPacket::decode(&mut BytesMut::from(&bytes[..])) {
                let mut re = BytesMut::new();
                if p.encode(&mut re).is_ok() {
                    prop_assert_eq!(&re[..], &bytes[..re.len()]);
                }
            }
        }
    }
}
