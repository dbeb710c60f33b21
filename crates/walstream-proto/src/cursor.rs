//! A bounds-checked reader over a message body.
//!
//! Every read checks the remaining length first and reports a [`DecodeError`] carrying the
//! decoder's context and the byte offset inside the body. Byte ranges are cut from the
//! underlying [`Bytes`] without copying.

use bytes::Bytes;

use crate::error::DecodeError;

/// A cursor over one message body.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    buf: Bytes,
    pos: usize,
    context: &'static str,
}

impl Cursor {
    /// A cursor at the start of `buf`; `context` names the message in errors.
    pub(crate) fn new(buf: Bytes, context: &'static str) -> Self {
        Self {
            buf,
            pos: 0,
            context,
        }
    }

    /// Changes the context reported by later errors.
    pub(crate) fn set_context(&mut self, context: &'static str) {
        self.context = context;
    }

    /// The context string errors carry.
    pub(crate) fn context(&self) -> &'static str {
        self.context
    }

    /// Offset of the next byte to be read.
    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.remaining() < n {
            Err(DecodeError::UnexpectedEof {
                context: self.context,
                offset: self.pos,
                needed: n - self.remaining(),
            })
        } else {
            Ok(())
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// Looks at the next byte without consuming it.
    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    /// Reads a big-endian i16.
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    /// Reads a big-endian u16.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    /// Reads a big-endian i32.
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// Reads a big-endian u32.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    /// Reads a big-endian i64.
    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    /// Reads a big-endian u64.
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    /// Cuts the next `n` bytes without copying.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    /// Reads an Int32 length that must be non-negative, then that many bytes.
    pub(crate) fn len_prefixed(&mut self) -> Result<Bytes, DecodeError> {
        let at = self.pos;
        let len = self.i32()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
            context: self.context,
            length: i64::from(len),
            offset: at,
        })?;
        self.bytes(len)
    }

    /// Cuts everything that is left.
    pub(crate) fn rest(&mut self) -> Bytes {
        let out = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        out
    }

    /// Reads a NUL-terminated string's bytes (without the NUL), without copying.
    pub(crate) fn cstr_bytes(&mut self) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        let tail = self.buf.get(start..).unwrap_or_default();
        let Some(nul) = memchr::memchr(0, tail) else {
            return Err(DecodeError::UnterminatedString {
                context: self.context,
                offset: start,
            });
        };
        let out = self.buf.slice(start..start + nul);
        self.pos = start + nul + 1;
        Ok(out)
    }

    /// Reads a NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let raw = self.cstr_bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 {
            context: self.context,
            offset: start,
        })
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                context: self.context,
                offset: self.pos,
                remaining: self.remaining(),
            })
        }
    }

    /// An [`DecodeError::UnknownTag`] for `tag` read at `offset`.
    pub(crate) fn unknown_tag(&self, tag: u8, offset: usize) -> DecodeError {
        DecodeError::UnknownTag {
            context: self.context,
            tag,
            offset,
        }
    }

    /// An [`DecodeError::InvalidValue`] at `offset`.
    pub(crate) fn invalid(&self, offset: usize, reason: &'static str) -> DecodeError {
        DecodeError::InvalidValue {
            context: self.context,
            offset,
            reason,
        }
    }

    /// Converts a wire count (Int16/Int32) into `usize`, rejecting negatives, and checks that
    /// at least `min_each * count` bytes remain so no allocation is sized by an unchecked field.
    pub(crate) fn count(&self, raw: i64, min_each: usize, at: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(raw).map_err(|_| DecodeError::InvalidLength {
            context: self.context,
            length: raw,
            offset: at,
        })?;
        if n.saturating_mul(min_each) > self.remaining() {
            return Err(DecodeError::UnexpectedEof {
                context: self.context,
                offset: self.pos,
                needed: n.saturating_mul(min_each) - self.remaining(),
            });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_reports_offsets() {
        let mut c = Cursor::new(Bytes::from_static(b"\x00\x01abc\0\xff"), "test");
        assert_eq!(c.u16().unwrap(), 1);
        assert_eq!(c.cstr().unwrap(), "abc");
        assert_eq!(c.offset(), 6);
        assert!(matches!(
            c.finish(),
            Err(DecodeError::TrailingBytes {
                offset: 6,
                remaining: 1,
                ..
            })
        ));
        assert!(matches!(
            c.u32(),
            Err(DecodeError::UnexpectedEof {
                offset: 6,
                needed: 3,
                ..
            })
        ));
        assert_eq!(c.u8().unwrap(), 0xff);
        c.finish().unwrap();
    }

    #[test]
    fn unterminated_and_negative_lengths() {
        let mut c = Cursor::new(Bytes::from_static(b"abc"), "s");
        assert!(matches!(
            c.cstr(),
            Err(DecodeError::UnterminatedString { offset: 0, .. })
        ));
        let mut c = Cursor::new(Bytes::from_static(b"\xff\xff\xff\xfe"), "l");
        assert!(matches!(
            c.len_prefixed(),
            Err(DecodeError::InvalidLength { length: -2, .. })
        ));
        let c = Cursor::new(Bytes::from_static(b"\0\0"), "n");
        assert!(c.count(1_000_000, 1, 0).is_err());
        assert_eq!(c.count(2, 1, 0).unwrap(), 2);
    }
}
