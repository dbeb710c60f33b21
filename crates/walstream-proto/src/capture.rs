//! Capture files: recorded replication traffic for replay, tests and fuzzing.
//!
//! # Format
//!
//! A capture is a plain sequence of frames with no header:
//!
//! ```text
//! frame   = length payload
//! length  = u32, big-endian: the number of payload bytes (1 or more)
//! payload = one message
//! ```
//!
//! All payloads of one capture are of the same kind, told apart by the first byte of the
//! first frame:
//!
//! * [`CaptureKind::Replication`]: each payload is the body of one `CopyData` message received
//!   during `START_REPLICATION`, i.e. a [`ReplicationMessage`](crate::ReplicationMessage)
//!   starting with `w` (XLogData) or `k` (keepalive);
//! * [`CaptureKind::Pgoutput`]: each payload is one bare `pgoutput` message, as returned in the
//!   `data` column of `pg_logical_slot_get_binary_changes` (starting with `B`, `R`, `I`, ...;
//!   pgoutput never uses `w` or `k`).
//!
//! A frame of the other kind later in the file, an empty frame, a frame longer than the
//! configured maximum ([`DEFAULT_MAX_FRAME_SIZE`] unless changed) or a file that ends inside a
//! frame is an error. A corrupt length is reported, never used to size an allocation.
//!
//! This module does no I/O: [`CaptureReader`] iterates over a byte buffer the caller loaded,
//! [`CaptureDecoder`] consumes frames incrementally from a [`BytesMut`] the caller fills, and
//! [`CaptureWriter`] writes to any [`std::io::Write`] the caller supplies ([`encode_frame`]
//! appends to a buffer instead). Error offsets are byte offsets in the capture.
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// The default largest frame payload accepted: 256 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 256 * 1024 * 1024;

const CONTEXT: &str = "capture frame";

/// What the frames of a capture hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureKind {
    /// Replication `CopyData` payloads (`w` XLogData and `k` keepalives).
    Replication,
    /// Bare `pgoutput` messages.
    Pgoutput,
}

impl CaptureKind {
    /// The kind a payload belongs to, from its first byte; `None` for an empty payload.
    pub fn of_payload(payload: &[u8]) -> Option<Self> {
        match payload.first()? {
            b'w' | b'k' => Some(Self::Replication),
            _ => Some(Self::Pgoutput),
        }
    }
}

/// Appends one frame holding `payload` to `buf`.
pub fn encode_frame(buf: &mut BytesMut, payload: &[u8]) -> Result<(), EncodeError> {
    let len = frame_len(payload).map_err(|length| EncodeError::TooLarge {
        context: CONTEXT,
        length,
    })?;
    buf.reserve(4 + payload.len());
    buf.put_u32(len);
    buf.put_slice(payload);
    Ok(())
}

fn frame_len(payload: &[u8]) -> Result<u32, usize> {
    u32::try_from(payload.len()).map_err(|_| payload.len())
}

/// Writes frames to a caller-supplied writer.
#[derive(Debug)]
pub struct CaptureWriter<W: io::Write> {
    inner: W,
    frames: u64,
}

impl<W: io::Write> CaptureWriter<W> {
    /// A writer appending frames to `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, frames: 0 }
    }

    /// Writes one frame. Payloads longer than `u32::MAX` fail with
    /// [`io::ErrorKind::InvalidInput`] and write nothing.
    pub fn write_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = frame_len(payload).map_err(|length| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                EncodeError::TooLarge {
                    context: CONTEXT,
                    length,
                },
            )
        })?;
        self.inner.write_all(&len.to_be_bytes())?;
        self.inner.write_all(payload)?;
        self.frames += 1;
        Ok(())
    }

    /// Number of frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying writer, mutably.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the underlying writer (not flushed).
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Checks frames against the kind of the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KindCheck {
    kind: Option<CaptureKind>,
}

impl KindCheck {
    fn check(&mut self, payload: &[u8], offset: usize) -> Result<(), DecodeError> {
        let Some(kind) = CaptureKind::of_payload(payload) else {
            return Err(DecodeError::InvalidLength {
                context: CONTEXT,
                length: 0,
                offset,
            });
        };
        match self.kind {
            None => self.kind = Some(kind),
            Some(k) if k == kind => {}
            Some(_) => {
                return Err(DecodeError::InvalidValue {
                    context: CONTEXT,
                    offset: offset + 4,
                    reason: "frame kind differs from the capture's first frame",
                });
            }
        }
        Ok(())
    }
}

/// Reads a frame header at the front of `buf`: `Ok(None)` if fewer than 4 bytes.
fn header(buf: &[u8], max: usize, offset: usize) -> Result<Option<usize>, DecodeError> {
    let Some(&[a, b, c, d]) = buf.get(..4) else {
        return Ok(None);
    };
    let raw = u32::from_be_bytes([a, b, c, d]);
    let len = usize::try_from(raw).map_err(|_| DecodeError::MessageTooLarge {
        context: CONTEXT,
        length: usize::MAX,
        max,
    })?;
    if len > max {
        return Err(DecodeError::MessageTooLarge {
            context: CONTEXT,
            length: len,
            max,
        });
    }
    if len == 0 {
        return Err(DecodeError::InvalidLength {
            context: CONTEXT,
            length: 0,
            offset,
        });
    }
    Ok(Some(len))
}

/// Incrementally cuts frames from a buffer the caller keeps filling.
///
/// Call [`decode`](Self::decode) after each read until it returns `Ok(None)`; at end of input
/// call [`finish`](Self::finish) to detect a truncated last frame. Errors are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureDecoder {
    max_frame_size: usize,
    consumed: usize,
    kinds: KindCheck,
}

impl CaptureDecoder {
    /// A decoder accepting frames up to [`DEFAULT_MAX_FRAME_SIZE`].
    pub fn new() -> Self {
        Self::with_max_frame_size(DEFAULT_MAX_FRAME_SIZE)
    }

    /// A decoder accepting frames up to `max_frame_size` payload bytes.
    pub fn with_max_frame_size(max_frame_size: usize) -> Self {
        Self {
            max_frame_size,
            consumed: 0,
            kinds: KindCheck { kind: None },
        }
    }

    /// The capture's kind, known once the first frame was decoded.
    pub fn kind(&self) -> Option<CaptureKind> {
        self.kinds.kind
    }

    /// Bytes of the capture consumed so far.
    pub fn position(&self) -> usize {
        self.consumed
    }

    /// Cuts the next frame's payload off the front of `buf` (zero-copy); `Ok(None)` means
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(len) = header(buf, self.max_frame_size, self.consumed)? else {
            return Ok(None);
        };
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        let payload = buf.get(4..4 + len).unwrap_or_default();
        self.kinds.check(payload, self.consumed)?;
        let mut frame = buf.split_to(4 + len).freeze();
        frame.advance(4);
        self.consumed += 4 + len;
        Ok(Some(frame))
    }

    /// At end of input: fails if `buf` still holds part of a frame.
    pub fn finish(&self, buf: &BytesMut) -> Result<(), DecodeError> {
        if buf.is_empty() {
            return Ok(());
        }
        let needed = match header(buf, usize::MAX, self.consumed)? {
            None => 4 - buf.len(),
            Some(len) => (4 + len).saturating_sub(buf.len()),
        };
        Err(DecodeError::UnexpectedEof {
            context: CONTEXT,
            offset: self.consumed,
            needed,
        })
    }
}

impl Default for CaptureDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Iterates over the payloads of a capture held in memory.
///
/// Yields `Ok(payload)` per frame (sharing the input's memory), or one `Err` and then stops.
#[derive(Debug, Clone)]
pub struct CaptureReader {
    data: Bytes,
    max_frame_size: usize,
    consumed: usize,
    kinds: KindCheck,
    failed: bool,
}

impl CaptureReader {
    /// A reader over a whole capture, accepting frames up to [`DEFAULT_MAX_FRAME_SIZE`].
    pub fn new(data: Bytes) -> Self {
        Self::with_max_frame_size(data, DEFAULT_MAX_FRAME_SIZE)
    }

    /// A reader accepting frames up to `max_frame_size` payload bytes.
    pub fn with_max_frame_size(data: Bytes, max_frame_size: usize) -> Self {
        Self {
            data,
            max_frame_size,
            consumed: 0,
            kinds: KindCheck { kind: None },
            failed: false,
        }
    }

    /// The capture's kind, from its first frame; `None` for an empty capture or one whose
    /// first frame is unreadable.
    pub fn kind(&self) -> Option<CaptureKind> {
        if let Some(k) = self.kinds.kind {
            return Some(k);
        }
        let len = header(&self.data, self.max_frame_size, 0).ok()??;
        CaptureKind::of_payload(self.data.get(4..4 + len)?)
    }

    /// Bytes of the capture consumed so far.
    pub fn position(&self) -> usize {
        self.consumed
    }

    fn next_frame(&mut self) -> Result<Option<Bytes>, DecodeError> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let eof = |needed| DecodeError::UnexpectedEof {
            context: CONTEXT,
            offset: self.consumed,
            needed,
        };
        let Some(len) = header(&self.data, self.max_frame_size, self.consumed)? else {
            return Err(eof(4 - self.data.len()));
        };
        let Some(payload) = self.data.get(4..4 + len) else {
            return Err(eof(4 + len - self.data.len()));
        };
        self.kinds.check(payload, self.consumed)?;
        self.data.advance(4);
        self.consumed += 4 + len;
        Ok(Some(self.data.split_to(len)))
    }
}

impl Iterator for CaptureReader {
    type Item = Result<Bytes, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_frame() {
            Ok(frame) => frame.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::backend::{BackendMessage, Framer};
    use crate::replication::ReplicationMessage;

    /// A START_REPLICATION stream (seven CopyData messages) captured from PostgreSQL 15.
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

    /// The CopyData payloads of [`STREAM`].
    fn stream_payloads() -> Vec<Bytes> {
        let mut buf = BytesMut::from(STREAM);
        let mut out = Vec::new();
        while let Some(m) = Framer::default().decode(&mut buf).unwrap() {
            let BackendMessage::CopyData(d) = m else {
                panic!()
            };
            out.push(d);
        }
        out
    }

    fn capture_of(payloads: &[impl AsRef<[u8]>]) -> Vec<u8> {
        let mut w = CaptureWriter::new(Vec::new());
        for p in payloads {
            w.write_frame(p.as_ref()).unwrap();
        }
        assert_eq!(w.frames(), payloads.len() as u64);
        w.into_inner()
    }

    #[test]
    fn replication_capture_round_trip() {
        let payloads = stream_payloads();
        assert_eq!(payloads.len(), 7);
        let file = capture_of(&payloads);
        let mut encoded = BytesMut::new();
        for p in &payloads {
            encode_frame(&mut encoded, p).unwrap();
        }
        assert_eq!(&encoded[..], &file[..]);
        assert_eq!(&file[..4], &[0, 0, 0, 18]);
        let reader = CaptureReader::new(Bytes::from(file));
        assert_eq!(reader.kind(), Some(CaptureKind::Replication));
        let got: Vec<Bytes> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(got, payloads);
        for p in got {
            ReplicationMessage::decode(p).unwrap();
        }
    }

    #[test]
    fn pgoutput_capture_is_detected() {
        // The pgoutput messages inside the XLogData payloads, as pg_logical_slot_get_binary_changes
        // returns them.
        let inner: Vec<Bytes> = stream_payloads()
            .into_iter()
            .filter_map(|p| match ReplicationMessage::decode(p).unwrap() {
                ReplicationMessage::XLogData(x) => Some(x.data),
                _ => None,
            })
            .collect();
        assert_eq!(inner.len(), 6);
        let file = Bytes::from(capture_of(&inner));
        let reader = CaptureReader::new(file.clone());
        assert_eq!(reader.kind(), Some(CaptureKind::Pgoutput));
        assert_eq!(reader.collect::<Result<Vec<_>, _>>().unwrap(), inner);
        assert_eq!(CaptureReader::new(Bytes::new()).kind(), None);
        assert_eq!(CaptureReader::new(Bytes::new()).count(), 0);
    }

    #[test]
    fn golden_pgoutput_captures_read_back_exactly() {
        let files: [&[u8]; 6] = [
            include_bytes!("../tests/golden/pgoutput-v1-text.bin"),
            include_bytes!("../tests/golden/pgoutput-v1-binary.bin"),
            include_bytes!("../tests/golden/pgoutput-v1-narrow-inserts.bin"),
            include_bytes!("../tests/golden/pgoutput-v2-stream.bin"),
            include_bytes!("../tests/golden/pgoutput-v3-twophase.bin"),
            include_bytes!("../tests/golden/pgoutput-v3-twophase-binary.bin"),
        ];
        for file in files {
            let reader = CaptureReader::new(Bytes::from_static(file));
            assert_eq!(reader.kind(), Some(CaptureKind::Pgoutput));
            let mut re = BytesMut::new();
            let mut n = 0;
            for p in reader {
                encode_frame(&mut re, &p.unwrap()).unwrap();
                n += 1;
            }
            assert!(n > 10);
            assert_eq!(&re[..], file);
            // The incremental decoder in 4 KiB reads agrees.
            let mut d = CaptureDecoder::new();
            let mut buf = BytesMut::new();
            let mut m = 0;
            for chunk in file.chunks(4096) {
                buf.extend_from_slice(chunk);
                while d.decode(&mut buf).unwrap().is_some() {
                    m += 1;
                }
            }
            d.finish(&buf).unwrap();
            assert_eq!(m, n);
        }
    }

    #[test]
    fn decoder_matches_reader_at_every_split() {
        let file = capture_of(&stream_payloads());
        let whole: Vec<Bytes> = CaptureReader::new(Bytes::from(file.clone()))
            .map(Result::unwrap)
            .collect();
        for cut in 0..=file.len() {
            let mut d = CaptureDecoder::new();
            let mut buf = BytesMut::from(&file[..cut]);
            let mut got = Vec::new();
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
            // Cut on a frame boundary: a clean end; inside a frame: truncated.
            assert_eq!(d.finish(&buf).is_err(), !buf.is_empty(), "cut at {cut}");
            buf.extend_from_slice(&file[cut..]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
            d.finish(&buf).unwrap();
            assert_eq!(got, whole, "split at {cut}");
            assert_eq!(d.kind(), Some(CaptureKind::Replication));
            assert_eq!(d.position(), file.len());
        }
    }

    #[test]
    fn corrupt_captures_are_errors() {
        let file = capture_of(&stream_payloads());
        // Truncated anywhere inside a frame.
        for cut in 1..file.len() {
            let r = CaptureReader::new(Bytes::copy_from_slice(&file[..cut]));
            let results: Vec<_> = r.collect();
            let ends_on_boundary = results.iter().all(Result::is_ok);
            if ends_on_boundary {
                let total: usize = results.iter().map(|p| 4 + p.as_ref().unwrap().len()).sum();
                assert_eq!(total, cut);
            } else {
                assert!(matches!(
                    results.last(),
                    Some(Err(DecodeError::UnexpectedEof { .. }))
                ));
            }
        }
        // A huge length is an error, not an allocation.
        let mut d = CaptureDecoder::with_max_frame_size(1024);
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xffk"[..]);
        let cap = buf.capacity();
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::MessageTooLarge { max: 1024, .. })
        ));
        assert_eq!(buf.capacity(), cap);
        let mut r = CaptureReader::with_max_frame_size(Bytes::from_static(b"\0\0\x04\x01"), 1024);
        assert!(matches!(
            r.next(),
            Some(Err(DecodeError::MessageTooLarge { length: 1025, .. }))
        ));
        assert!(r.next().is_none(), "iteration stops after an error");
        // Empty frame.
        let mut r = CaptureReader::new(Bytes::from_static(b"\0\0\0\0"));
        assert!(matches!(
            r.next(),
            Some(Err(DecodeError::InvalidLength { length: 0, .. }))
        ));
        // Mixed kinds.
        let mixed = capture_of(&[&b"Bxxxxx"[..], &stream_payloads()[0][..]]);
        let r: Vec<_> = CaptureReader::new(Bytes::from(mixed.clone())).collect();
        assert!(matches!(
            r[1],
            Err(DecodeError::InvalidValue { offset: 14, .. })
        ));
        let mut d = CaptureDecoder::new();
        let mut buf = BytesMut::from(&mixed[..]);
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert!(d.decode(&mut buf).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_payloads_round_trip(
            first in prop_oneof![Just(b'w'), Just(b'k')],
            tails in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        ) {
            let payloads: Vec<Vec<u8>> = tails
                .into_iter()
                .map(|mut t| { t.insert(0, first); t })
                .collect();
            let file = capture_of(&payloads);
            let got: Vec<Bytes> = CaptureReader::new(Bytes::from(file)).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), payloads.len());
            for (g, p) in got.iter().zip(&payloads) {
                prop_assert_eq!(&g[..], &p[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut total = 0;
            for p in CaptureReader::with_max_frame_size(Bytes::from(bytes.clone()), 64).flatten() {
                total += 4 + p.len();
            }
            prop_assert!(total <= bytes.len());
        }
    }
}
