use super::*;

const PG15: &[u8] = include_bytes!("../../tests/golden/pg15_crc32c.manifest");

fn sum(alg: ChecksumAlgorithm, data: &[u8]) -> String {
    let mut c = Checksum::new(alg);
    for piece in data.chunks(2) {
        c.update(piece);
    }
    c.finish_hex()
}

#[test]
fn checksums_match_postgresql_output() {
    // Golden values from a PostgreSQL 15 manifest for PG_VERSION ("15\n").
    assert_eq!(sum(ChecksumAlgorithm::Crc32c, b"15\n"), "8a744722");
    assert_eq!(
        sum(ChecksumAlgorithm::Sha256, b"15\n"),
        "238903180cc104ec2c5d8b3f20c5bc61b389ec0a967df8cc208cdc7cd454174f"
    );
    assert_eq!(sum(ChecksumAlgorithm::Crc32c, b""), "00000000");
    assert_eq!(
        sum(ChecksumAlgorithm::Sha224, b"abc"),
        "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
    );
    assert_eq!(sum(ChecksumAlgorithm::Sha384, b"abc").len(), 96);
    assert_eq!(sum(ChecksumAlgorithm::Sha512, b"abc").len(), 128);
    assert_eq!(sum(ChecksumAlgorithm::None, b"abc"), "");
    for a in ["none", "crc32c", "SHA224", "sha256", "sha384", "sha512"] {
        assert_eq!(
            ChecksumAlgorithm::from_name(a).unwrap().name(),
            a.to_ascii_uppercase()
        );
    }
    assert!(ChecksumAlgorithm::from_name("md5").is_none());
}

#[test]
fn real_manifest_parses_and_its_checksum_holds() {
    let m = Manifest::parse(PG15).unwrap();
    assert_eq!(m.version, 1);
    assert!(m.checksum_ok);
    assert!(m.system_identifier.is_none());
    let pgv = m.files.iter().find(|f| f.path == "PG_VERSION").unwrap();
    assert_eq!(
        (pgv.size, pgv.algorithm, pgv.checksum.as_str()),
        (3, ChecksumAlgorithm::Crc32c, "8a744722")
    );
    assert_eq!(m.wal_ranges.len(), 1);
    assert_eq!(m.wal_ranges[0].timeline, TimelineId(1));
    assert_eq!(m.wal_ranges[0].start, "0/2000028".parse().unwrap());
    // One flipped byte in the body breaks the checksum.
    let mut bad = PG15.to_vec();
    let at = bad.windows(10).position(|w| w == b"PG_VERSION").unwrap();
    bad[at] = b'Q';
    assert!(!Manifest::parse(&bad).unwrap().checksum_ok);
}

/// Writes a manifest the way the server does.
pub(crate) fn write_manifest(
    files: &[(&str, &[u8])],
    alg: ChecksumAlgorithm,
    version2: bool,
) -> Vec<u8> {
    let mut s = format!(
        "{{ \"PostgreSQL-Backup-Manifest-Version\": {},\n",
        if version2 { 2 } else { 1 }
    );
    if version2 {
        s.push_str("\"System-Identifier\": 7312345678901234567,\n");
    }
    s.push_str("\"Files\": [");
    for (i, (path, data)) in files.iter().enumerate() {
        s.push_str(if i == 0 { "\n" } else { ",\n" });
        let pathkey = if path.contains('\u{e9}') {
            format!("\"Encoded-Path\": \"{}\"", hex(path.as_bytes()))
        } else {
            format!("\"Path\": \"{path}\"")
        };
        s.push_str(&format!(
            "{{ {pathkey}, \"Size\": {}, \"Last-Modified\": \"2026-01-01 00:00:00 GMT\"",
            data.len()
        ));
        if alg != ChecksumAlgorithm::None {
            s.push_str(&format!(
                ", \"Checksum-Algorithm\": \"{}\", \"Checksum\": \"{}\"",
                alg.name(),
                sum(alg, data)
            ));
        }
        s.push_str(" }");
    }
    s.push_str("\n],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/1000028\", \"End-LSN\": \"0/1000100\" }\n],\n");
    let checksum = {
        let mut h = sha2::Sha256::new();
        h.update(s.as_bytes());
        hex(&h.finalize())
    };
    s.push_str(&format!("\"Manifest-Checksum\": \"{checksum}\"}}\n"));
    s.into_bytes()
}

fn segment(dir: &Path, name: &str) {
    File::create(dir.join("pg_wal").join(name))
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
}

fn backup_dir(files: &[(&str, &[u8])], alg: ChecksumAlgorithm) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, data) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    fs::write(
        dir.path().join(MANIFEST_FILE),
        write_manifest(files, alg, alg == ChecksumAlgorithm::Sha512),
    )
    .unwrap();
    // The 16 MiB segment holding the WAL range 0/1000028..0/1000100 (sparse).
    fs::create_dir_all(dir.path().join("pg_wal")).unwrap();
    segment(dir.path(), "000000010000000000000001");
    dir
}

const FILES: &[(&str, &[u8])] = &[
    ("PG_VERSION", b"15\n"),
    ("base/1/1259", &[1u8; 9000]),
    ("global/pg_control", b"ctl"),
    ("caf\u{e9}", b"e"),
];

#[test]
fn valid_backups_verify_with_every_algorithm() {
    for alg in [
        ChecksumAlgorithm::None,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Sha224,
        ChecksumAlgorithm::Sha256,
        ChecksumAlgorithm::Sha384,
        ChecksumAlgorithm::Sha512,
    ] {
        let dir = backup_dir(FILES, alg);
        // Ignored files do not count as extra.
        fs::write(dir.path().join("postgresql.auto.conf"), b"x").unwrap();
        fs::write(dir.path().join("standby.signal"), b"").unwrap();
        let report = verify_backup(dir.path()).unwrap();
        assert!(report.is_ok(), "{alg}: {:?}", report.problems);
        let expect = if alg == ChecksumAlgorithm::None { 0 } else { 4 };
        assert_eq!(report.files_checksummed, expect);
        if alg == ChecksumAlgorithm::Sha512 {
            assert_eq!(report.manifest.version, 2);
            assert_eq!(
                report.manifest.system_identifier,
                Some(7_312_345_678_901_234_567)
            );
        }
    }
}

#[test]
fn every_kind_of_damage_is_reported() {
    let dir = backup_dir(FILES, ChecksumAlgorithm::Crc32c);
    fs::remove_file(dir.path().join("global/pg_control")).unwrap();
    fs::write(dir.path().join("base/1/1259"), [1u8; 10]).unwrap();
    fs::write(dir.path().join("PG_VERSION"), b"16\n").unwrap();
    fs::write(dir.path().join("base/1/extra"), b"?").unwrap();
    fs::remove_file(dir.path().join("pg_wal/000000010000000000000001")).unwrap();
    segment(dir.path(), "000000010000000000000002");
    let report = verify_backup(dir.path()).unwrap();
    let mut got: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "\"base/1/1259\" has size 10 on disk but size 9000 in the manifest",
            "\"base/1/extra\" is present on disk but not in the manifest",
            "\"global/pg_control\" is present in the manifest but not on disk",
            "WAL segment \"000000010000000000000001\" needed by the backup is missing",
            "checksum mismatch for file \"PG_VERSION\" (CRC32C)",
        ]
    );
    // A damaged manifest checksum is reported too.
    let mut text = fs::read(dir.path().join(MANIFEST_FILE)).unwrap();
    let at = text.windows(6).position(|w| w == b"\"Size\"").unwrap();
    text[at + 8] = b'4';
    fs::write(dir.path().join(MANIFEST_FILE), &text).unwrap();
    let report = verify_backup(dir.path()).unwrap();
    assert!(report.problems.contains(&Problem::ManifestChecksum));
}

#[test]
fn malformed_manifests_are_errors_not_panics() {
    for text in [
        &b""[..],
        b"{}",
        b"[1,2]",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 3, \"Files\": [], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 2, \"Files\": [], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Size\": 1, \"Last-Modified\": \"x\"}], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"a\", \"Size\": 1, \"Last-Modified\": \"x\", \"Checksum-Algorithm\": \"MD5\", \"Checksum\": \"00\"}], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Encoded-Path\": \"zz\", \"Size\": 1, \"Last-Modified\": \"x\"}], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [], \"WAL-Ranges\": [{\"Timeline\": 1, \"Start-LSN\": \"nope\", \"End-LSN\": \"0/1\"}], \"Manifest-Checksum\": \"\"}\n",
        b"{ \"PostgreSQL-Backup-Manifest-Version\": 1, \"Files\": [{\"Path\": \"a\", \"Size\": -1, \"Last-Modified\": \"x\"}], \"WAL-Ranges\": [], \"Manifest-Checksum\": \"\"}\n",
    ] {
        assert!(Manifest::parse(text).is_err(), "{}", String::from_utf8_lossy(text));
    }
    assert_eq!(manifest_checksum(b"no newline"), None);
    assert_eq!(manifest_checksum(b"one line\n"), None);
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(verify_backup(dir.path()), Err(Error::Io { .. })));
}
