//! `TARGET 'server'` (the server writes the backup into a directory of its own, the client
//! gets progress only) and force-encoded manifests (every path as `Encoded-Path`).

use std::fs;

use walstream_backup::{
    ArchiveSink, BackupTargetKind, BaseBackup, BaseBackupOptions, DirectoryTarget, Error, Format,
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

/// Every regular file below `dir` with its length and modification time.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn plain_backup_refuses_a_non_empty_tablespace_directory() {
    for_each_server(|install| {
        let work = scratch();
        let ts = work.path().join("ts-live");
        fs::create_dir(&ts).unwrap();
        chown_to_server(&ts);
        let cluster = Cluster::start(install, small()).unwrap();
        cluster
            .execute(&format!(
                "CREATE TABLESPACE ts1 LOCATION '{}';
                 CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g FROM generate_series(1, 1000) g;
                 CHECKPOINT;",
                ts.display()
            ))
            .unwrap();
        let before = snapshot(&ts);
        assert!(!before.is_empty());

        // Without a mapping, plain format would extract the tablespace into its location:
        // here the live server's own directory. Refused, like pg_basebackup does.
        let dest = work.path().join("unmapped");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let err = rt()
            .block_on(backup_into(
                &cluster,
                &mut BaseBackup::new(fast()).wal_method(WalMethod::Fetch),
                target,
            ))
            .unwrap_err();
        let Error::Io { path, .. } = &err else {
            panic!("expected Error::Io, got {err:?}")
        };
        assert_eq!(path, &ts, "{err}");
        assert!(err.to_string().contains("not empty"), "{err}");
        assert_eq!(snapshot(&ts), before, "the live tablespace was written to");
        assert!(dest.join(INCOMPLETE_MARKER).exists());
        assert_eq!(
            cluster.psql("SELECT count(*) FROM in_ts").unwrap().trim(),
            "1000"
        );

        // A mapping to a non-empty directory is refused too; to an empty one it works.
        let used = work.path().join("used");
        fs::create_dir(&used).unwrap();
        fs::write(used.join("something"), "x").unwrap();
        let target = DirectoryTarget::create(work.path().join("mapped-used"), Format::Plain)
            .unwrap()
            .no_sync()
            .map_tablespace(ts.to_str().unwrap(), &used);
        let err = rt()
            .block_on(backup_into(
                &cluster,
                &mut BaseBackup::new(fast()).wal_method(WalMethod::Fetch),
                target,
            ))
            .unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if path == &used),
            "{err:?}"
        );
        let empty = work.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let target = DirectoryTarget::create(work.path().join("mapped-empty"), Format::Plain)
            .unwrap()
            .no_sync()
            .map_tablespace(ts.to_str().unwrap(), &empty);
        rt().block_on(backup_into(
            &cluster,
            &mut BaseBackup::new(fast()).wal_method(WalMethod::Fetch),
            target,
        ))
        .unwrap();
        assert!(fs::read_dir(&empty).unwrap().next().is_some());
    });
}
