//! Server-side compression: decoders placed in front of an [`ArchiveSink`].
//!
//! gzip is decoded on the fly with `flate2` (its default, pure-Rust `miniz_oxide` backend):
//! compressed chunks go in, decompressed bytes are pushed to the inner sink as they come
//! out, so nothing but the decoder's window is held in memory. LZ4 (`lz4_flex`'s frame
//! decoder) and Zstandard (`ruzstd`) have pull-style decoders: they run on a thread of
//! their own fed through a bounded channel, with the same effect. [`Codec::decoder`] picks
//! the right one.

use std::io::{self, Write};

use crate::error::Error;
use crate::tar::ArchiveSink;

/// Adapts an [`ArchiveSink`] to `io::Write` for the decoders; errors travel inside
/// `io::Error` and are recovered by [`Error::from_io`].
#[derive(Debug)]
struct SinkWriter<S>(S);

impl<S: ArchiveSink> Write for SinkWriter<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(Error::into_io)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decompresses a gzip stream (one or more members) into an inner sink.
#[derive(Debug)]
pub struct GzipSink<S: ArchiveSink> {
    decoder: flate2::write::MultiGzDecoder<SinkWriter<S>>,
}

impl<S: ArchiveSink> GzipSink<S> {
    /// Decodes into `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            decoder: flate2::write::MultiGzDecoder::new(SinkWriter(inner)),
        }
    }

    /// The inner sink.
    pub fn inner(&self) -> &S {
        &self.decoder.get_ref().0
    }
}

impl<S: ArchiveSink> ArchiveSink for GzipSink<S> {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.decoder
            .write_all(chunk)
            .map_err(|e| Error::from_io(e, "gzip"))
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.decoder
            .try_finish()
            .map_err(|e| Error::from_io(e, "gzip"))?;
        self.decoder.get_mut().0.finish()
    }
}

/// The server-side compression methods whose archives are decoded here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (`.tar.gz`).
    Gzip,
    /// LZ4 frame format (`.tar.lz4`).
    Lz4,
    /// Zstandard (`.tar.zst`).
    Zstd,
}

impl Codec {
    /// The codec of an archive by the name the server gives it (`base.tar.gz`, ...);
    /// `None` for an uncompressed `.tar` or an unknown suffix.
    pub fn from_archive_name(name: &str) -> Option<Self> {
        if name.ends_with(".gz") {
            Some(Self::Gzip)
        } else if name.ends_with(".lz4") {
            Some(Self::Lz4)
        } else if name.ends_with(".zst") {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    /// `gzip`, `lz4` or `zstd`, as in `COMPRESSION`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// A sink decoding this codec into `inner`.
    pub fn decoder(self, inner: Box<dyn ArchiveSink>) -> Box<dyn ArchiveSink> {
        match self {
            Self::Gzip => Box::new(GzipSink::new(inner)),
            Self::Lz4 => Box::new(ThreadDecoderSink::new(self, inner)),
            Self::Zstd => Box::new(ThreadDecoderSink::new(self, inner)),
        }
    }
}

/// How many compressed chunks may wait for the decoder thread (bounds memory: chunks are
/// CopyData messages, 32 kB on PostgreSQL 15+).
const PENDING_CHUNKS: usize = 16;

/// `io::Read` over the chunks sent to a decoder thread; end of input when the sender is
/// dropped.
#[derive(Debug)]
struct ChunkReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ChunkReader {
    /// Waits for input; false at the end of the stream.
    fn fill(&mut self) -> bool {
        while self.pos >= self.chunk.len() {
            match self.rx.recv() {
                Ok(c) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Err(_) => return false,
            }
        }
        true
    }
}

impl io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || !self.fill() {
            return Ok(0);
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        let (head, _) = rest.split_at(n);
        let (dst, _) = buf.split_at_mut(n);
        dst.copy_from_slice(head);
        self.pos += n;
        Ok(n)
    }
}

/// Runs a pull-style (`io::Read`) decoder on its own thread: chunks are handed over a
/// bounded channel and the decoded bytes are pushed into the inner sink from that thread.
/// Used for LZ4 (`lz4_flex`) and Zstandard (`ruzstd`), whose streaming decoders read.
#[derive(Debug)]
struct ThreadDecoderSink {
    codec: Codec,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    worker: Option<std::thread::JoinHandle<Result<(), Error>>>,
}

impl ThreadDecoderSink {
    fn new(codec: Codec, inner: Box<dyn ArchiveSink>) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(PENDING_CHUNKS);
        let reader = ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let worker = std::thread::Builder::new()
            .name(format!("walstream-{}", codec.name()))
            .spawn(move || decode_all(codec, reader, inner));
        match worker {
            Ok(w) => Self {
                codec,
                tx: Some(tx),
                worker: Some(w),
            },
            // Without a thread every write fails with the spawn error (see `worker_error`).
            Err(_) => Self {
                codec,
                tx: None,
                worker: None,
            },
        }
    }

    /// The decoder thread's outcome (it ended or could not start).
    fn worker_error(&mut self) -> Error {
        self.tx = None;
        let outcome = match self.worker.take() {
            Some(w) => w.join().unwrap_or_else(|_| {
                Err(Error::Decompress {
                    codec: self.codec.name(),
                    source: io::Error::other("the decoder thread panicked"),
                })
            }),
            None => Err(Error::Decompress {
                codec: self.codec.name(),
                source: io::Error::other("the decoder thread could not run"),
            }),
        };
        match outcome {
            Err(e) => e,
            Ok(()) => Error::Decompress {
                codec: self.codec.name(),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the end of the compressed stream",
                ),
            },
        }
    }
}

fn decode_all(
    codec: Codec,
    mut reader: ChunkReader,
    inner: Box<dyn ArchiveSink>,
) -> Result<(), Error> {
    let mut out = SinkWriter(inner);
    let name = codec.name();
    match codec {
        Codec::Lz4 => {
            // One or more frames, one after the other.
            while reader.fill() {
                let mut dec = lz4_flex::frame::FrameDecoder::new(&mut reader);
                io::copy(&mut dec, &mut out).map_err(|e| Error::from_io(e, name))?;
            }
        }
        Codec::Gzip => {
            let mut dec = flate2::read::MultiGzDecoder::new(reader);
            io::copy(&mut dec, &mut out).map_err(|e| Error::from_io(e, name))?;
        }
        Codec::Zstd => {
            // One or more frames, one after the other.
            while reader.fill() {
                let mut dec =
                    ruzstd::decoding::StreamingDecoder::new(&mut reader).map_err(|e| {
                        Error::Decompress {
                            codec: name,
                            source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
                        }
                    })?;
                io::copy(&mut dec, &mut out).map_err(|e| Error::from_io(e, name))?;
                if !dec.decoder.is_finished() {
                    return Err(Error::Decompress {
                        codec: name,
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the zstd stream ends inside a frame",
                        ),
                    });
                }
            }
        }
    }
    out.0.finish()
}

impl ArchiveSink for ThreadDecoderSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk.to_vec()).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.worker_error())
        }
    }

    fn finish(&mut self) -> Result<(), Error> {
        // Closing the channel ends the input; the thread finishes the inner sink.
        self.tx = None;
        match self.worker.take() {
            Some(w) => w.join().unwrap_or_else(|_| {
                Err(Error::Decompress {
                    codec: self.codec.name(),
                    source: io::Error::other("the decoder thread panicked"),
                })
            }),
            None => Err(Error::Decompress {
                codec: self.codec.name(),
                source: io::Error::other("the decoder thread could not run"),
            }),
        }
    }
}

impl ArchiveSink for Box<dyn ArchiveSink> {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        (**self).write(chunk)
    }

    fn finish(&mut self) -> Result<(), Error> {
        (**self).finish()
    }
}

#[cfg(test)]
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
mod tests {
    use super::*;
    use crate::tar::TarExtractor;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_tar_extracts_with_any_chunking() {
        let tar = crate::tar::tests::archive(&[
            ("a/b.txt", b'0', b"hello gzip".as_slice()),
            ("c", b'0', &[7u8; 3000]),
        ]);
        let gz = gzip(&tar);
        for chunk in [1, 7, 512, 100_000] {
            let dir = tempfile::tempdir().unwrap();
            let mut sink = GzipSink::new(TarExtractor::new(dir.path()).unwrap());
            for c in gz.chunks(chunk) {
                sink.write(c).unwrap();
            }
            sink.finish().unwrap();
            assert_eq!(
                std::fs::read(dir.path().join("a/b.txt")).unwrap(),
                b"hello gzip"
            );
            assert_eq!(
                std::fs::read(dir.path().join("c")).unwrap(),
                vec![7u8; 3000]
            );
        }
    }

    #[test]
    fn tar_errors_come_through_the_decoder_typed() {
        let tar = crate::tar::tests::archive(&[("../evil", b'0', b"x".as_slice())]);
        let dir = tempfile::tempdir().unwrap();
        let mut sink = GzipSink::new(TarExtractor::new(dir.path()).unwrap());
        let err = sink
            .write(&gzip(&tar))
            .and_then(|()| sink.finish())
            .unwrap_err();
        assert!(
            matches!(err, Error::Tar(crate::error::TarError::UnsafePath { .. })),
            "{err:?}"
        );
    }

    fn lz4(data: &[u8]) -> Vec<u8> {
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn sample_tar() -> Vec<u8> {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        crate::tar::tests::archive(&[
            ("a/b.txt", b'0', b"hello codec".as_slice()),
            ("big", b'0', &big),
        ])
    }

    fn extract_with(
        codec: Codec,
        compressed: &[u8],
        chunk: usize,
    ) -> Result<tempfile::TempDir, Error> {
        let dir = tempfile::tempdir().unwrap();
        let tar: Box<dyn ArchiveSink> = Box::new(TarExtractor::new(dir.path()).unwrap());
        let mut sink = codec.decoder(tar);
        for c in compressed.chunks(chunk) {
            sink.write(c)?;
        }
        sink.finish()?;
        Ok(dir)
    }

    #[test]
    fn every_codec_extracts_with_any_chunking() {
        let tar = sample_tar();
        let two_zstd_frames = {
            let (a, b) = tar.split_at(70_000);
            let mut v = zstd(a);
            v.extend(zstd(b));
            v
        };
        let two_lz4_frames = {
            let (a, b) = tar.split_at(70_000);
            let mut v = lz4(a);
            v.extend(lz4(b));
            v
        };
        for (codec, data) in [
            (Codec::Gzip, gzip(&tar)),
            (Codec::Lz4, lz4(&tar)),
            (Codec::Lz4, two_lz4_frames),
            (Codec::Zstd, zstd(&tar)),
            (Codec::Zstd, two_zstd_frames),
        ] {
            for chunk in [1, 777, 32 * 1024, 1 << 20] {
                if chunk == 1 && data.len() > 50_000 {
                    continue;
                }
                let dir = extract_with(codec, &data, chunk).unwrap();
                assert_eq!(
                    std::fs::read(dir.path().join("a/b.txt")).unwrap(),
                    b"hello codec",
                    "{codec:?}"
                );
                assert_eq!(
                    std::fs::read(dir.path().join("big")).unwrap().len(),
                    200_000
                );
            }
        }
    }

    #[test]
    fn truncated_or_corrupt_lz4_and_zstd_fail_typed() {
        let tar = sample_tar();
        for (codec, data) in [(Codec::Lz4, lz4(&tar)), (Codec::Zstd, zstd(&tar))] {
            let cut = &data[..data.len() / 2];
            let err = extract_with(codec, cut, 4096).unwrap_err();
            assert!(
                matches!(err, Error::Decompress { .. } | Error::Tar(_)),
                "{codec:?}: {err:?}"
            );
            let err = extract_with(codec, b"definitely not compressed data", 7).unwrap_err();
            assert!(
                matches!(err, Error::Decompress { codec: c, .. } if c == codec.name()),
                "{codec:?}: {err:?}"
            );
        }
        // A tar error inside a thread-decoded stream comes back typed.
        let evil = crate::tar::tests::archive(&[("../evil", b'0', b"x".as_slice())]);
        let err = extract_with(Codec::Zstd, &zstd(&evil), 100).unwrap_err();
        assert!(
            matches!(err, Error::Tar(crate::error::TarError::UnsafePath { .. })),
            "{err:?}"
        );
        let err = extract_with(Codec::Lz4, &lz4(&evil), 100).unwrap_err();
        assert!(
            matches!(err, Error::Tar(crate::error::TarError::UnsafePath { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn codec_names() {
        assert_eq!(Codec::from_archive_name("base.tar.gz"), Some(Codec::Gzip));
        assert_eq!(Codec::from_archive_name("16384.tar.lz4"), Some(Codec::Lz4));
        assert_eq!(Codec::from_archive_name("base.tar.zst"), Some(Codec::Zstd));
        assert_eq!(Codec::from_archive_name("base.tar"), None);
    }

    #[test]
    fn corrupt_gzip_is_a_decompress_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = GzipSink::new(TarExtractor::new(dir.path()).unwrap());
        let err = sink
            .write(b"\x1f\x8b\x08\x00garbage-garbage-garbage")
            .and_then(|()| sink.finish())
            .unwrap_err();
        assert!(
            matches!(err, Error::Decompress { codec: "gzip", .. }),
            "{err:?}"
        );
    }
}
