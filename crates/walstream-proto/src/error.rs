//! Decode and encode errors.

/// An error found while decoding bytes received from a peer.
///
/// Every variant carries a static `context` naming what was being decoded and, where it
/// applies, the byte `offset` inside the message body at which the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended before a field could be read.
    #[error("{context}: unexpected end of message at offset {offset} (needed {needed} more bytes)")]
    UnexpectedEof {
        /// What was being decoded.
        context: &'static str,
        /// Offset in the body where the read started.
        offset: usize,
        /// How many more bytes the read needed.
        needed: usize,
    },
    /// A tag or code byte had a value this codec does not know.
    #[error("{context}: unknown tag 0x{tag:02x} at offset {offset}")]
    UnknownTag {
        /// What was being decoded.
        context: &'static str,
        /// The tag byte.
        tag: u8,
        /// Offset of the tag.
        offset: usize,
    },
    /// A message decoded completely but bytes were left over.
    #[error("{context}: {remaining} trailing bytes at offset {offset}")]
    TrailingBytes {
        /// What was being decoded.
        context: &'static str,
        /// Offset of the first unexpected byte.
        offset: usize,
        /// How many bytes were left.
        remaining: usize,
    },
    /// A length field was negative or otherwise impossible.
    #[error("{context}: invalid length {length} at offset {offset}")]
    InvalidLength {
        /// What was being decoded.
        context: &'static str,
        /// The length as sent.
        length: i64,
        /// Offset of the length field.
        offset: usize,
    },
    /// A frame announced a size above the configured maximum.
    #[error("{context}: message of {length} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// What was being decoded.
        context: &'static str,
        /// The announced length.
        length: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A NUL-terminated string had no terminator.
    #[error("{context}: unterminated string at offset {offset}")]
    UnterminatedString {
        /// What was being decoded.
        context: &'static str,
        /// Offset where the string started.
        offset: usize,
    },
    /// Text that must be UTF-8 was not.
    #[error("{context}: invalid UTF-8 at offset {offset}")]
    InvalidUtf8 {
        /// What was being decoded.
        context: &'static str,
        /// Offset where the string started.
        offset: usize,
    },
    /// A field had a value outside its domain.
    #[error("{context}: invalid value at offset {offset}: {reason}")]
    InvalidValue {
        /// What was being decoded.
        context: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Why the value is invalid.
        reason: &'static str,
    },
    /// A message referenced a relation that no Relation message described.
    #[error("{context}: unknown relation oid {oid}")]
    UnknownRelation {
        /// What was being decoded.
        context: &'static str,
        /// The relation OID.
        oid: u32,
    },
}

/// An error found while encoding a message to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded message would not fit in the protocol's 32-bit length field.
    #[error("{context}: message too large ({length} bytes)")]
    TooLarge {
        /// What was being encoded.
        context: &'static str,
        /// The length that did not fit.
        length: usize,
    },
    /// A string that is sent NUL-terminated contained a NUL byte.
    #[error("{context}: string contains a NUL byte")]
    EmbeddedNul {
        /// What was being encoded.
        context: &'static str,
    },
    /// A field value cannot be represented on the wire.
    #[error("{context}: {reason}")]
    InvalidValue {
        /// What was being encoded.
        context: &'static str,
        /// Why.
        reason: &'static str,
    },
}
