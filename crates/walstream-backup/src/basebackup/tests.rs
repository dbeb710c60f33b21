use super::*;
use crate::tar::tests::archive;

#[test]
fn command_syntax_by_version() {
    let mut o = BaseBackupOptions {
        label: Some("it's".into()),
        progress: true,
        checkpoint: CheckpointMode::Fast,
        wal: true,
        no_wait: true,
        max_rate: Some(1024),
        tablespace_map: true,
        no_verify_checksums: true,
        manifest_checksums: Some(ChecksumAlgorithm::Sha256),
        ..BaseBackupOptions::default()
    };
    assert_eq!(
        o.command(14).unwrap(),
        "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT MAX_RATE 1024 TABLESPACE_MAP NOVERIFY_CHECKSUMS \
         MANIFEST 'yes' MANIFEST_CHECKSUMS 'SHA256'"
    );
    assert_eq!(
        o.command(15).unwrap(),
        "BASE_BACKUP ( LABEL 'it''s', PROGRESS, CHECKPOINT 'fast', WAL, WAIT false, MAX_RATE 1024, TABLESPACE_MAP, \
         VERIFY_CHECKSUMS false, MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256' )"
    );
    o = BaseBackupOptions {
        compression: Some("gzip".into()),
        compression_detail: Some("level=1".into()),
        manifest: ManifestMode::ForceEncode,
        target: BackupTargetKind::Server("/srv/bk".into()),
        ..BaseBackupOptions::default()
    };
    assert_eq!(
        o.command(16).unwrap(),
        "BASE_BACKUP ( COMPRESSION 'gzip', COMPRESSION_DETAIL 'level=1', MANIFEST 'force-encode', TARGET 'server', \
         TARGET_DETAIL '/srv/bk' )"
    );
    assert!(matches!(o.command(14), Err(Error::Unsupported(_))));
    let inc = BaseBackupOptions {
        incremental: Some(PriorManifest::bytes(b"{}".to_vec())),
        manifest: ManifestMode::No,
        ..BaseBackupOptions::default()
    };
    assert!(matches!(inc.command(16), Err(Error::Unsupported(_))));
    assert_eq!(
        inc.command(17).unwrap(),
        "BASE_BACKUP ( MANIFEST 'no', INCREMENTAL )"
    );
    assert!(BaseBackupOptions::default().command(13).is_err());
}

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(body);
    v
}

const MANIFEST: &[u8] = b"{ \"manifest\": true }\n";

#[test]
fn modern_stream_extracts_archives_and_writes_manifest() {
    let root = tempfile::tempdir().unwrap();
    let ts_loc = tempfile::tempdir().unwrap();
    let ts_new = tempfile::tempdir().unwrap();
    let dir = root.path().join("bk");
    let mut target = DirectoryTarget::create(&dir, Format::Plain)
        .unwrap()
        .map_tablespace(ts_loc.path().to_str().unwrap(), ts_new.path());
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    let mut dec = BackupStreamDecoder::new(15, true);
    let loc = ts_loc.path().to_str().unwrap();
    dec.tablespace_row(&[Some("16384"), Some(loc), Some("1")])
        .unwrap();
    dec.tablespace_row(&[None, None, Some("2")]).unwrap();
    let base = archive(&[
        ("PG_VERSION", b'0', b"15\n"),
        ("pg_tblspc/16384", b'2', loc.as_bytes()),
    ]);
    let ts = archive(&[("PG_15_202209061/5/16385", b'0', b"rel")]);
    dec.copy_start(&mut target).unwrap();
    dec.copy_data(
        &msg(b'n', format!("16384.tar\0{loc}\0").as_bytes()),
        &mut target,
    )
    .unwrap();
    for c in ts.chunks(700) {
        dec.copy_data(&msg(b'd', c), &mut target).unwrap();
    }
    dec.copy_data(&msg(b'p', &1024i64.to_be_bytes()), &mut target)
        .unwrap();
    assert_eq!(
        target.last_progress(),
        Some(Progress {
            bytes_done: 1024,
            bytes_total: Some(3072),
            archive: 0,
            tablespace: Some(16384),
            archive_bytes_done: 1024,
            archive_bytes_total: Some(1024),
        })
    );
    dec.copy_data(&msg(b'n', b"base.tar\0\0"), &mut target)
        .unwrap();
    for c in base.chunks(333) {
        dec.copy_data(&msg(b'd', c), &mut target).unwrap();
    }
    dec.copy_data(b"m", &mut target).unwrap();
    dec.copy_data(&msg(b'd', MANIFEST), &mut target).unwrap();
    dec.copy_done(&mut target).unwrap();
    assert_eq!(dec.archives(), 2);
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    let done = target.complete().unwrap();
    assert!(!done.join(INCOMPLETE_MARKER).exists());
    assert_eq!(fs::read(done.join("PG_VERSION")).unwrap(), b"15\n");
    assert_eq!(fs::read(done.join(MANIFEST_FILE)).unwrap(), MANIFEST);
    assert_eq!(
        fs::read(ts_new.path().join("PG_15_202209061/5/16385")).unwrap(),
        b"rel"
    );
    assert_eq!(
        fs::read_link(done.join("pg_tblspc/16384")).unwrap(),
        ts_new.path()
    );
    assert!(fs::read_dir(ts_loc.path()).unwrap().next().is_none());
}

#[test]
fn legacy_stream_one_copy_per_tablespace_then_manifest() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bk");
    let mut target = DirectoryTarget::create(&dir, Format::Tar).unwrap();
    let mut dec = BackupStreamDecoder::new(14, true);
    dec.tablespace_row(&[None, None, None]).unwrap();
    let mut base = archive(&[("PG_VERSION", b'0', b"14\n")]);
    base.truncate(base.len() - 1024); // 14 sends no end-of-archive marker
    dec.copy_start(&mut target).unwrap();
    dec.copy_data(&base, &mut target).unwrap();
    assert_eq!(target.last_progress().unwrap().bytes_total, None);
    dec.copy_done(&mut target).unwrap();
    dec.copy_start(&mut target).unwrap();
    dec.copy_data(MANIFEST, &mut target).unwrap();
    dec.copy_done(&mut target).unwrap();
    assert!(dec.copy_start(&mut target).is_err());
    let done = target.complete().unwrap();
    assert_eq!(
        fs::read(done.join("base.tar")).unwrap(),
        archive(&[("PG_VERSION", b'0', b"14\n")])
    );
    assert_eq!(fs::read(done.join(MANIFEST_FILE)).unwrap(), MANIFEST);
}

#[test]
fn interrupted_backup_stays_marked_and_bad_streams_fail() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bk");
    let mut target = DirectoryTarget::create(&dir, Format::Plain).unwrap();
    let mut dec = BackupStreamDecoder::new(16, true);
    dec.copy_start(&mut target).unwrap();
    dec.copy_data(&msg(b'n', b"base.tar\0\0"), &mut target)
        .unwrap();
    let base = archive(&[("PG_VERSION", b'0', &[1u8; 5000])]);
    dec.copy_data(&msg(b'd', &base[..2000]), &mut target)
        .unwrap();
    // The connection drops here: the directory keeps its marker.
    drop(target);
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    assert!(!dir.join(MANIFEST_FILE).exists());
    // A non-empty directory is refused.
    assert!(DirectoryTarget::create(&dir, Format::Plain).is_err());

    let dir2 = root.path().join("bk2");
    let mut target = DirectoryTarget::create(&dir2, Format::Plain).unwrap();
    let mut dec = BackupStreamDecoder::new(15, true);
    dec.copy_start(&mut target).unwrap();
    for bad in [
        &b""[..],
        b"x",
        b"d",
        b"nbase.tar",
        b"n../x.tar\0\0",
        b"p\0\0",
        b"mjunk",
    ] {
        assert!(dec.copy_data(bad, &mut target).is_err(), "{bad:?}");
    }
    dec.copy_data(&msg(b'n', b"base.tar.bz2\0\0"), &mut target)
        .unwrap_err();
    assert!(dec.copy_start(&mut target).is_err());
    let mut d14 = BackupStreamDecoder::new(14, false);
    assert!(d14.tablespace_row(&[Some("x"), None, None]).is_err());
    assert!(d14.copy_data(b"abc", &mut target).is_err());
}

const PG15_MANIFEST: &[u8] = include_bytes!("../../tests/golden/pg15_crc32c.manifest");

/// Feeds a 15+ stream with one base archive and the given manifest.
fn feed_base(target: &mut DirectoryTarget, manifest: &[u8]) {
    let mut dec = BackupStreamDecoder::new(15, true);
    dec.tablespace_row(&[None, None, None]).unwrap();
    let base = archive(&[
        ("PG_VERSION", b'0', b"15\n"),
        ("backup_label", b'0', b"START WAL LOCATION: 0/2000028\n"),
    ]);
    dec.copy_start(target).unwrap();
    dec.copy_data(&msg(b'n', b"base.tar\0\0"), target).unwrap();
    dec.copy_data(&msg(b'd', &base), target).unwrap();
    dec.copy_data(b"m", target).unwrap();
    dec.copy_data(&msg(b'd', manifest), target).unwrap();
    dec.copy_done(target).unwrap();
}

#[test]
fn backup_label_and_manifest_appear_only_on_completion() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bk");
    let mut target = DirectoryTarget::create(&dir, Format::Plain).unwrap();
    feed_base(&mut target, MANIFEST);
    // Everything arrived, but the backup is not complete yet.
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    assert!(dir.join(PENDING_LABEL).exists());
    assert!(!dir.join("backup_label").exists());
    assert!(!dir.join(MANIFEST_FILE).exists());
    let done = target.complete().unwrap();
    assert!(!done.join(INCOMPLETE_MARKER).exists());
    assert!(!done.join(PENDING_LABEL).exists());
    assert_eq!(
        fs::read(done.join("backup_label")).unwrap(),
        b"START WAL LOCATION: 0/2000028\n"
    );
    assert_eq!(fs::read(done.join(MANIFEST_FILE)).unwrap(), MANIFEST);
}

#[test]
fn failed_verification_leaves_the_backup_marked_and_hidden() {
    let root = tempfile::tempdir().unwrap();
    // A manifest that does not describe these files: verification problems.
    let dir = root.path().join("mismatch");
    let mut target = DirectoryTarget::create(&dir, Format::Plain)
        .unwrap()
        .verify(VerifyOptions::default());
    feed_base(&mut target, PG15_MANIFEST);
    let err = target.complete().unwrap_err();
    match &err {
        Error::Verification { problems } => assert!(!problems.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    assert!(!dir.join("backup_label").exists());
    assert!(!dir.join(MANIFEST_FILE).exists());
    assert!(dir.join(PENDING_LABEL).exists());

    // A manifest that cannot be parsed: the error, and the same hidden state.
    let dir = root.path().join("garbage");
    let mut target = DirectoryTarget::create(&dir, Format::Plain)
        .unwrap()
        .verify(VerifyOptions::default());
    feed_base(&mut target, b"not json");
    assert!(target.complete().is_err());
    assert!(dir.join(INCOMPLETE_MARKER).exists());
    assert!(!dir.join("backup_label").exists());
    assert!(!dir.join(MANIFEST_FILE).exists());
}

#[test]
fn plain_target_refuses_non_empty_tablespace_directories() {
    let dir = tempfile::tempdir().unwrap();
    let used = dir.path().join("used");
    fs::create_dir(&used).unwrap();
    fs::write(used.join("PG_17_x"), b"live").unwrap();
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let ts = |loc: &Path| TablespaceInfo {
        oid: Some(16384),
        location: Some(loc.to_str().unwrap().to_owned()),
        size_kb: None,
    };
    let main = TablespaceInfo {
        oid: None,
        location: None,
        size_kb: None,
    };

    let mut plain = DirectoryTarget::create(dir.path().join("p1"), Format::Plain).unwrap();
    // Unmapped: the location itself, here not empty.
    let e = plain.tablespaces(&[ts(&used), main.clone()]).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path == &used),
        "{e:?}"
    );
    assert!(e.to_string().contains("not empty"), "{e}");
    // begin_archive checks too (a decoder driven without the tablespace list).
    let e = plain
        .begin_archive("16384.tar", Some(used.to_str().unwrap()))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path == &used),
        "{e:?}"
    );
    assert_eq!(fs::read(used.join("PG_17_x")).unwrap(), b"live");
    // A file where the directory should be.
    assert!(plain.tablespaces(&[ts(&file)]).is_err());
    // Missing or empty destinations are fine, mapped or not.
    let missing = dir.path().join("missing");
    assert!(
        plain
            .tablespaces(&[ts(&missing), ts(&empty), main.clone()])
            .is_ok()
    );
    let mut mapped = DirectoryTarget::create(dir.path().join("p2"), Format::Plain)
        .unwrap()
        .map_tablespace(used.to_str().unwrap(), &empty);
    assert!(mapped.tablespaces(&[ts(&used), main.clone()]).is_ok());
    // Tar format writes nothing into tablespace directories.
    let mut tar = DirectoryTarget::create(dir.path().join("t"), Format::Tar).unwrap();
    assert!(tar.tablespaces(&[ts(&used), main]).is_ok());
}

#[test]
fn relative_tablespace_mappings_become_absolute() {
    let dir = tempfile::tempdir().unwrap();
    let target = DirectoryTarget::create(dir.path().join("b"), Format::Plain)
        .unwrap()
        .map_tablespace("/srv/ts", "restored/ts")
        .map_tablespace("/srv/ts2", "/abs/ts2");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        target.tablespace_mappings(),
        [
            ("/srv/ts".to_owned(), cwd.join("restored/ts")),
            ("/srv/ts2".to_owned(), PathBuf::from("/abs/ts2")),
        ]
    );
}
