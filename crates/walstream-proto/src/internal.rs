//! Test and fuzzing hooks. Not part of the public API: no stability guarantees.
//!
//! Each `fuzz_*` function takes arbitrary bytes and panics only when an oracle fails, which is
//! how a fuzzer reports a finding: decoding must never panic, and whatever decodes must encode
//! back to exactly the bytes it came from.

/// Fuzz entry points, one per target in `fuzz/fuzz_targets/`.
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    use crate::backend::{BackendMessage, Framer};
    use crate::capture::{CaptureDecoder, CaptureKind, CaptureReader, encode_frame};
    use crate::frontend::{FrontendFramer, PasswordKind, StartupPacket};
    use crate::replication::{BaseBackupMessage, ReplicationMessage, StandbyMessage};

    /// Frames and messages larger than this are rejected in the fuzz targets (keeps runs fast).
    const MAX: usize = 1 << 16;

    /// Decodes everything in `buf` with `framer`; the messages and whether it stopped on an
    /// error. Asserts that each message re-encodes to the bytes it was cut from.
    fn drain_backend(framer: &Framer, input: &[u8], split: usize) -> (Vec<BackendMessage>, bool) {
        let split = split.min(input.len());
        let mut buf = BytesMut::from(input.get(..split).unwrap_or_default());
        let mut out = Vec::new();
        let mut offset = 0;
        let mut fed_rest = false;
        loop {
            let before = buf.len();
            match framer.decode(&mut buf) {
                Ok(Some(m)) => {
                    let used = before - buf.len();
                    let mut re = BytesMut::new();
                    m.encode(&mut re).expect("a decoded message must encode");
                    assert_eq!(
                        &re[..],
                        input.get(offset..offset + used).unwrap_or_default(),
                        "{} does not re-encode to its bytes",
                        m.name()
                    );
                    offset += used;
                    touch_backend(&m);
                    out.push(m);
                }
                Ok(None) if !fed_rest => {
                    buf.extend_from_slice(input.get(split..).unwrap_or_default());
                    fed_rest = true;
                }
                Ok(None) => return (out, false),
                Err(_) => return (out, true),
            }
        }
    }

    /// Exercises the lazy accessors that run on decoded data.
    fn touch_backend(m: &BackendMessage) {
        match m {
            BackendMessage::DataRow(row) => {
                assert_eq!(
                    row.columns().count(),
                    row.len(),
                    "DataRow iteration lost columns"
                );
            }
            BackendMessage::ErrorResponse(f) | BackendMessage::NoticeResponse(f) => {
                let _ = (f.sqlstate(), f.position(), f.line(), f.to_string());
            }
            _ => {}
        }
    }

    /// Backend framer: the first byte picks a split point; the rest is a server byte stream.
    /// Oracles: no panic, exact re-encoding, and the same messages whether the input arrives
    /// whole or in two reads.
    pub fn fuzz_backend_framer(data: &[u8]) {
        let Some((&split, input)) = data.split_first() else {
            return;
        };
        let framer = Framer::new(MAX);
        let whole = drain_backend(&framer, input, input.len());
        let parts = drain_backend(&framer, input, usize::from(split));
        assert_eq!(whole, parts, "split reads changed the decoded messages");
    }

    /// Replication payloads: the input is one `CopyData` body tried as a server message, a
    /// client message and a base backup message. Oracles: whatever decodes re-encodes exactly;
    /// the XLogData fast path agrees with the cursor path.
    pub fn fuzz_replication(data: &[u8]) {
        let bytes = Bytes::copy_from_slice(data);
        assert_eq!(
            ReplicationMessage::decode(bytes.clone()),
            ReplicationMessage::decode_general(bytes.clone()),
            "XLogData fast path and cursor path disagree"
        );
        if let Ok(m) = ReplicationMessage::decode(bytes.clone()) {
            let mut re = BytesMut::new();
            m.encode(&mut re);
            assert_eq!(&re[..], data, "ReplicationMessage does not re-encode");
        }
        if let Ok(m) = StandbyMessage::decode(bytes.clone()) {
            let mut re = BytesMut::new();
            m.encode(&mut re);
            assert_eq!(&re[..], data, "StandbyMessage does not re-encode");
        }
        if let Ok(m) = BaseBackupMessage::decode(bytes) {
            let mut re = BytesMut::new();
            m.encode(&mut re)
                .expect("a decoded base backup message must encode");
            assert_eq!(&re[..], data, "BaseBackupMessage does not re-encode");
        }
    }

    /// Capture files: the input is a capture. Oracles: the reader and the incremental decoder
    /// (fed in two halves) agree; frames re-encode to the consumed bytes; replication payloads
    /// that decode re-encode exactly.
    pub fn fuzz_capture(data: &[u8]) {
        let mut reader = CaptureReader::with_max_frame_size(Bytes::copy_from_slice(data), MAX);
        let kind = reader.kind();
        let mut frames = Vec::new();
        let mut reader_failed = false;
        for item in reader.by_ref() {
            match item {
                Ok(p) => frames.push(p),
                Err(_) => reader_failed = true,
            }
        }
        let mut re = BytesMut::new();
        for f in &frames {
            encode_frame(&mut re, f).expect("a decoded frame must encode");
            assert_eq!(
                CaptureKind::of_payload(f),
                kind,
                "frame of another kind accepted"
            );
            if kind == Some(CaptureKind::Replication) {
                fuzz_replication(f);
            }
        }
        assert_eq!(
            &re[..],
            data.get(..re.len()).unwrap_or_default(),
            "frames do not re-encode"
        );
        assert_eq!(re.len(), reader.position());

        let half = data.len() / 2;
        let mut decoder = CaptureDecoder::with_max_frame_size(MAX);
        let mut buf = BytesMut::from(data.get(..half).unwrap_or_default());
        let mut got = Vec::new();
        let mut decoder_failed = false;
        for chunk in [None, Some(data.get(half..).unwrap_or_default())] {
            if let Some(rest) = chunk {
                buf.extend_from_slice(rest);
            }
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(p)) => got.push(p),
                    Ok(None) => break,
                    Err(_) => {
                        decoder_failed = true;
                        break;
                    }
                }
            }
            if decoder_failed {
                break;
            }
        }
        if !decoder_failed {
            decoder_failed = decoder.finish(&buf).is_err();
        }
        assert_eq!(got, frames, "reader and decoder disagree");
        assert_eq!(
            reader_failed, decoder_failed,
            "reader and decoder disagree on errors"
        );
    }

    /// Frontend messages: the first byte picks how `p` messages are read; the rest is tried
    /// as a startup packet and as a stream of tagged messages. Oracle: exact re-encoding.
    pub fn fuzz_frontend(data: &[u8]) {
        let Some((&mode, input)) = data.split_first() else {
            return;
        };
        let mut buf = BytesMut::from(input);
        let before = buf.len();
        if let Ok(Some(p)) = StartupPacket::decode(&mut buf) {
            let mut re = BytesMut::new();
            p.encode(&mut re)
                .expect("a decoded startup packet must encode");
            assert_eq!(&re[..], input.get(..before - buf.len()).unwrap_or_default());
        }
        let password_kind = match mode & 3 {
            0 => PasswordKind::Password,
            1 => PasswordKind::SaslInitial,
            2 => PasswordKind::Sasl,
            _ => PasswordKind::Gss,
        };
        let framer = FrontendFramer {
            password_kind,
            ..FrontendFramer::new(MAX)
        };
        let mut buf = BytesMut::from(input);
        let mut offset = 0;
        while let Ok(Some(m)) = framer.decode(&mut buf) {
            let used = input.len() - offset - buf.len();
            let mut re = BytesMut::new();
            m.encode(&mut re)
                .expect("a decoded frontend message must encode");
            assert_eq!(
                &re[..],
                input.get(offset..offset + used).unwrap_or_default()
            );
            offset += used;
        }
    }

    /// `pgoutput` messages; see the pgoutput module's fuzz hook for the input layout.
    pub fn fuzz_pgoutput(data: &[u8]) {
        crate::pgoutput::fuzz::fuzz(data);
    }

    /// Text-format values; see the value module's fuzz hook for the input layout.
    pub fn fuzz_value_text(data: &[u8]) {
        crate::value::fuzz::fuzz_text(data);
    }

    /// Binary-format values; see the value module's fuzz hook for the input layout.
    pub fn fuzz_value_binary(data: &[u8]) {
        crate::value::fuzz::fuzz_binary(data);
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A deterministic smoke run of every wire hook over handcrafted and pseudo-random inputs.
        #[test]
        fn hooks_accept_seeds_and_noise() {
            let seeds: &[&[u8]] = &[
                b"",
                b"\x03Z\0\0\0\x05IR\0\0\0\x08\0\0\0\0",
                b"\x07D\0\0\0\x0c\0\x02\xff\xff\xff\xff\0\0\0\0",
                b"\x00E\0\0\0\x0bSERROR\0\0\0",
                b"k\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02\x01",
                b"nbase.tar\0\0",
                b"\0\0\0\x02k\x01\0\0\0\x01w",
                b"\x00\0\0\0\x08\x04\xd2\x16\x2fQ\0\0\0\x05\0",
            ];
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut noise = Vec::new();
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                noise.push(state.to_le_bytes()[0] & 0x7f);
            }
            let mut inputs: Vec<&[u8]> = seeds.to_vec();
            inputs.extend(noise.chunks(37));
            for input in inputs {
                fuzz_backend_framer(input);
                fuzz_replication(input);
                fuzz_capture(input);
                fuzz_frontend(input);
            }
        }
    }
}
