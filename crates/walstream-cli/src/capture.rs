//! Reading capture files (walstream-proto's format, see `walstream_proto::CaptureDecoder`)
//! from any `Read`, in chunks, as decoded frames.
//!
//! `walstream record` writes **replication** captures (every `CopyData` payload of the
//! stream: XLogData with its LSNs, keepalives); the golden files in walstream-proto are
//! **pgoutput** captures (bare pgoutput messages, no LSNs — they decode as `0/0`).
use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use walstream::Lsn;
use walstream_proto::{CaptureDecoder, CaptureKind, ReplicationMessage};

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// An output-plugin message with its WAL positions (0/0 in pgoutput captures).
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    },
    /// A keepalive (replication captures only).
    Keepalive { wal_end: Lsn },
}

/// Read chunk size.
const CHUNK: usize = 1 << 16;

/// Reads frames from a byte source.
#[derive(Debug)]
pub(crate) struct CaptureFile<R> {
    src: R,
    buf: BytesMut,
    decoder: CaptureDecoder,
    eof: bool,
}

impl<R: Read> CaptureFile<R> {
    pub(crate) fn new(src: R) -> Self {
        Self {
            src,
            buf: BytesMut::with_capacity(CHUNK),
            decoder: CaptureDecoder::new(),
            eof: false,
        }
    }

    /// The kind, known after the first frame.
    pub(crate) fn kind(&self) -> Option<CaptureKind> {
        self.decoder.kind()
    }

    /// The next frame; `Ok(None)` at a clean end of file.
    pub(crate) fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(payload) = self.decoder.decode(&mut self.buf).map_err(corrupt)? {
                return self.frame(payload).map(Some);
            }
            if self.eof {
                self.decoder.finish(&self.buf).map_err(corrupt)?;
                return Ok(None);
            }
            let start = self.buf.len();
            self.buf.resize(start + CHUNK, 0);
            let n = loop {
                let Some(space) = self.buf.get_mut(start..) else {
                    break 0;
                };
                match self.src.read(space) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(start);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(start + n);
            self.eof = n == 0;
        }
    }

    fn frame(&self, payload: Bytes) -> io::Result<Frame> {
        match self.decoder.kind() {
            Some(CaptureKind::Replication) => match ReplicationMessage::decode(payload) {
                Ok(ReplicationMessage::XLogData(x)) => Ok(Frame::XLogData {
                    wal_start: x.wal_start,
                    wal_end: x.wal_end,
                    data: x.data,
                }),
                Ok(ReplicationMessage::PrimaryKeepalive(k)) => {
                    Ok(Frame::Keepalive { wal_end: k.wal_end })
                }
                Ok(_) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt capture: an unexpected replication message",
                )),
                Err(e) => Err(corrupt(e)),
            },
            _ => Ok(Frame::XLogData {
                wal_start: Lsn(0),
                wal_end: Lsn(0),
                data: payload,
            }),
        }
    }
}

fn corrupt(e: walstream_proto::DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt capture: {e}"))
}

#[cfg(test)]
mod tests {
    use walstream_proto::{CaptureWriter, PgTimestamp, PrimaryKeepalive, XLogData};

    use super::*;

    /// A reader that hands out one byte per read, to cross every frame boundary.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn replication_round_trip_byte_by_byte() {
        let mut w = CaptureWriter::new(Vec::new());
        let mut buf = BytesMut::new();
        ReplicationMessage::XLogData(XLogData {
            wal_start: Lsn(0x10),
            wal_end: Lsn(0x20),
            send_time: PgTimestamp(5),
            data: Bytes::from_static(b"B123"),
        })
        .encode(&mut buf);
        w.write_frame(&buf).unwrap();
        buf.clear();
        ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
            wal_end: Lsn(0x30),
            send_time: PgTimestamp(6),
            reply_requested: true,
        })
        .encode(&mut buf);
        w.write_frame(&buf).unwrap();
        let bytes = w.into_inner();
        let mut r = CaptureFile::new(Trickle(&bytes));
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::XLogData {
                wal_start: Lsn(0x10),
                wal_end: Lsn(0x20),
                data: Bytes::from_static(b"B123")
            })
        );
        assert_eq!(r.kind(), Some(CaptureKind::Replication));
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::Keepalive { wal_end: Lsn(0x30) })
        );
        assert_eq!(r.next_frame().unwrap(), None);
    }

    #[test]
    fn pgoutput_kind_and_corruption() {
        let mut bytes = vec![0, 0, 0, 2, b'B', 1];
        let mut r = CaptureFile::new(bytes.as_slice());
        assert!(matches!(
            r.next_frame().unwrap(),
            Some(Frame::XLogData { .. })
        ));
        assert_eq!(r.kind(), Some(CaptureKind::Pgoutput));
        // A truncated frame and an absurd length are errors, not panics or huge allocations.
        bytes.extend_from_slice(&[0, 0, 0, 9, b'I']);
        let mut r = CaptureFile::new(bytes.as_slice());
        r.next_frame().unwrap();
        assert!(r.next_frame().is_err());
        let mut r = CaptureFile::new(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert!(r.next_frame().is_err());
        let mut r = CaptureFile::new(&[0, 0][..]);
        assert!(r.next_frame().is_err());
        // A replication capture with a malformed XLogData.
        let mut r = CaptureFile::new(&[0, 0, 0, 2, b'w', 0][..]);
        assert!(r.next_frame().is_err());
    }
}
