//! Server-side compression: decoders placed in front of an [`ArchiveSink`].
//!
//! gzip is decoded on the fly with `flate2` (its default, pure-Rust `miniz_oxide` backend):
//! compressed chunks go in, decompressed bytes are pushed to the inner sink as they come
//! out, so nothing but the decoder's window is held in memory.

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
