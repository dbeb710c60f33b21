//! `TARGET 'server'` (the server writes the backup into a directory of its own, the client
//! gets progress only) and force-encoded manifests (every path as `Encoded-Path`).

use std::fs;

use walstream_backup::{
    ArchiveSink, BackupTargetKind, BaseBackup, BaseBackupOptions, DirectoryTarget, Format,
    INCOMPLETE_MARKER, MANIFEST_FILE, Manifest, ManifestMode, TarExtractor, WalMethod,
    verify_backup,
};
use walstream_test_support::{Cluster, for_each_server, skip_unless};

use crate::backup::{
    Restored, backup_into, chown_to_server, fast, pg_verifybackup, rt, scratch, small,
};

#[test]
fn server_target_writes_a_backup_on_the_server() {
    for_each_server(|install| {
        if !skip_unless(install.major >= 15, "TARGET needs PostgreSQL 15") {
            return;
        }
        let work = scratch();
        let cluster = Cluster::start(install, small()).unwrap();
        cluster
            .execute(
                "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
            )
            .unwrap();
        // The server creates the target directory: its parent must be the server's.
        let parent = work.path().join("server-side");
        fs::create_dir(&parent).unwrap();
        chown_to_server(&parent);
        let on_server = parent.join("bk");

        let local = work.path().join("local");
        let target = DirectoryTarget::create(&local, Format::Tar)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(BaseBackupOptions {
            target: BackupTargetKind::Server(on_server.to_str().unwrap().to_owned()),
            progress: true,
            ..fast()
        })
        .wal_method(WalMethod::Fetch);
        let (result, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        assert_eq!(result.archives, 1);
        assert!(result.end_lsn > result.start_lsn);
        assert!(
            result.last_progress.is_some_and(|p| p.bytes_done > 0),
            "{:?}",
            result.last_progress
        );
        // Nothing but progress reached the client.
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "files written locally"
        );
        assert!(!dir.join(INCOMPLETE_MARKER).exists());

        // The server wrote base.tar (with the WAL) and the manifest.
        let mut names: Vec<String> = fs::read_dir(&on_server)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["backup_manifest", "base.tar"]);
        let restored_dir = work.path().join("extracted");
        let mut ex = TarExtractor::new(&restored_dir).unwrap();
        for chunk in fs::read(on_server.join("base.tar")).unwrap().chunks(50_000) {
            ex.write(chunk).unwrap();
        }
        ex.finish().unwrap();
        fs::copy(
            on_server.join(MANIFEST_FILE),
            restored_dir.join(MANIFEST_FILE),
        )
        .unwrap();
        let report = verify_backup(&restored_dir).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        pg_verifybackup(install, &restored_dir, &[]);
        // A data directory must not be readable by others (TarExtractor creates the root
        // with the default mode; the archive has no entry for it).
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&restored_dir, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let restored = Restored::start(install, &restored_dir, work.path(), &[]);
        assert_eq!(
            restored.query("SELECT count(*) || ':' || sum(id) FROM t"),
            "5000:12502500"
        );
    });
}

#[test]
fn force_encoded_manifest_verifies() {
    for_each_server(|install| {
        let work = scratch();
        let cluster = Cluster::start(install, small()).unwrap();
        let dest = work.path().join("encoded");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(BaseBackupOptions {
            manifest: ManifestMode::ForceEncode,
            ..fast()
        })
        .wal_method(WalMethod::Fetch);
        // run_to_directory verifies the plain backup against the manifest it got.
        let (_, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        let text = fs::read_to_string(dir.join(MANIFEST_FILE)).unwrap();
        assert!(text.contains("\"Encoded-Path\""), "paths not encoded");
        assert!(!text.contains("\"Path\""), "a path not encoded");
        let manifest = Manifest::load(&dir).unwrap();
        assert!(manifest.files.iter().any(|f| f.path == "global/pg_control"));
        pg_verifybackup(install, &dir, &[]);
    });
}
