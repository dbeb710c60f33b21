//! Incremental backups (PostgreSQL 17+): a full backup with walstream, more writes, an
//! incremental backup from the full backup's manifest (`UPLOAD_MANIFEST` then
//! `BASE_BACKUP ( INCREMENTAL )`), combined by the same major's `pg_combinebackup`,
//! verified by `pg_verifybackup` and started as a server. Older servers get a typed
//! `Unsupported` error before anything is sent.

use std::fs;
use std::path::Path;
use std::process::Command;

use walstream_backup::{
    BaseBackup, DirectoryTarget, Error, Format, INCOMPLETE_MARKER, MANIFEST_FILE, Manifest,
    PriorManifest, WalMethod,
};
use walstream_conn::ErrorKind;
use walstream_test_support::{Cluster, for_each_server, skip_unless};

use crate::backup::{Restored, backup_into, fast, pg_verifybackup, rt, run, scratch, small};

/// Every `INCREMENTAL.*` file below `dir`, relative paths.
fn incremental_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else if e.file_name().to_string_lossy().starts_with("INCREMENTAL.") {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

/// A digest of the test tables' contents, identical on the source and a restored copy.
const STATE: &str = "SELECT (SELECT count(*) || ':' || sum(id) FROM w) || ' ' ||
        (SELECT count(*) || ':' || md5(string_agg(pad, ',' ORDER BY id)) FROM big) || ' ' ||
        (SELECT count(*) || ':' || sum(n) FROM added)";

fn take(
    cluster: &Cluster,
    dest: &Path,
    backup: &mut BaseBackup,
) -> Result<(walstream_backup::BackupResult, std::path::PathBuf), Error> {
    let target = DirectoryTarget::create(dest, Format::Plain)
        .unwrap()
        .no_sync();
    rt().block_on(backup_into(cluster, backup, target))
}

#[test]
fn incremental_backup_is_combined_verified_and_started() {
    for_each_server(|install| {
        let work = scratch();
        if install.major < 17 {
            // No UPLOAD_MANIFEST before 17: refused before anything is sent.
            let cluster = Cluster::start(install, small()).unwrap();
            let mut backup =
                BaseBackup::new(fast()).incremental_from(PriorManifest::bytes(b"{}\n".to_vec()));
            let e = take(&cluster, &work.path().join("incr"), &mut backup).unwrap_err();
            let Error::Unsupported(msg) = &e else {
                panic!("expected Unsupported, got {e:?}")
            };
            assert!(msg.contains("PostgreSQL 17"), "{msg}");
            assert!(work.path().join("incr").join(INCOMPLETE_MARKER).exists());
            skip_unless(
                false,
                "incremental backups need PostgreSQL 17 (the typed Unsupported error was checked)",
            );
            return;
        }
        let cluster = Cluster::start(install, small().setting("summarize_wal", "on")).unwrap();
        cluster
            .execute(
                "CREATE TABLE w (id int PRIMARY KEY);
                 INSERT INTO w SELECT g FROM generate_series(1, 100) g;
                 CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad
                     FROM generate_series(1, 3000) g;",
            )
            .unwrap();

        // The full backup.
        let full = work.path().join("full");
        let (full_result, _) = take(
            &cluster,
            &full,
            &mut BaseBackup::new(fast()).wal_method(WalMethod::Fetch),
        )
        .unwrap();
        assert!(incremental_files(&full).is_empty());

        // More writes: a new table, updates and inserts in existing ones.
        cluster
            .execute(
                "CREATE TABLE added AS SELECT g AS n FROM generate_series(1, 500) g;
                 UPDATE big SET pad = repeat('y', 150) WHERE id % 3 = 0;
                 INSERT INTO w SELECT g FROM generate_series(101, 250) g;
                 DELETE FROM w WHERE id % 10 = 0;",
            )
            .unwrap();
        let expected = cluster.psql(STATE).unwrap().trim().to_owned();

        // The incremental backup, from the full backup's manifest file.
        let incr = work.path().join("incr");
        let (result, dir) = take(
            &cluster,
            &incr,
            &mut BaseBackup::new(fast()).incremental_from(full.join(MANIFEST_FILE)),
        )
        .unwrap();
        assert!(result.start_lsn > full_result.end_lsn);
        assert!(!dir.join(INCOMPLETE_MARKER).exists());
        let label = fs::read_to_string(dir.join("backup_label")).unwrap();
        assert!(label.contains("INCREMENTAL FROM LSN"), "{label}");
        // Relation files come as INCREMENTAL.* files, listed (and verified) in the manifest.
        let inc_files = incremental_files(&dir);
        assert!(!inc_files.is_empty());
        let manifest = Manifest::load(&dir).unwrap();
        for f in &inc_files {
            assert!(
                manifest.files.iter().any(|m| m.path == *f),
                "{f} is not in the manifest"
            );
        }
        pg_verifybackup(install, &dir, &[]);

        // Written after the backup ended: must not be in the restored server.
        cluster
            .execute("INSERT INTO w SELECT g FROM generate_series(10001, 10100) g;")
            .unwrap();

        let combined = work.path().join("combined");
        run(Command::new(install.bin("pg_combinebackup"))
            .arg("--no-sync")
            .arg(&full)
            .arg(&dir)
            .arg("-o")
            .arg(&combined));
        assert!(incremental_files(&combined).is_empty());
        pg_verifybackup(install, &combined, &[]);
        {
            let restored = Restored::start(install, &combined, work.path(), &[]);
            assert_eq!(restored.query(STATE), expected);
            assert_eq!(
                restored.query("SELECT count(*) FROM w WHERE id > 10000"),
                "0"
            );
        }

        // A chain: a second incremental backup on top of the first, its manifest given as
        // bytes this time; the three combine into the state after the later rows.
        let expected2 = cluster.psql(STATE).unwrap().trim().to_owned();
        assert_ne!(expected2, expected);
        let incr2 = work.path().join("incr2");
        let prior = fs::read(dir.join(MANIFEST_FILE)).unwrap();
        let (result2, dir2) = take(
            &cluster,
            &incr2,
            &mut BaseBackup::new(fast()).incremental_from(prior),
        )
        .unwrap();
        assert!(result2.start_lsn > result.end_lsn);
        assert!(!incremental_files(&dir2).is_empty());
        let combined2 = work.path().join("combined2");
        run(Command::new(install.bin("pg_combinebackup"))
            .arg("--no-sync")
            .arg(&full)
            .arg(&dir)
            .arg(&dir2)
            .arg("-o")
            .arg(&combined2));
        pg_verifybackup(install, &combined2, &[]);
        let restored = Restored::start(install, &combined2, work.path(), &[]);
        assert_eq!(restored.query(STATE), expected2);
        assert_eq!(
            restored.query("SELECT count(*) FROM w WHERE id > 10000"),
            "100"
        );
    });
}

#[test]
fn incremental_backup_errors_carry_the_server_message() {
    for_each_server(|install| {
        if !skip_unless(
            install.major >= 17,
            "incremental backups need PostgreSQL 17",
        ) {
            return;
        }
        let work = scratch();
        let one = Cluster::start(install, small().setting("summarize_wal", "on")).unwrap();
        let other = Cluster::start(install, small()).unwrap();
        let full = work.path().join("full-one");
        take(&one, &full, &mut BaseBackup::new(fast())).unwrap();

        // A manifest of another cluster: the server refuses it.
        let dest = work.path().join("from-other");
        let e = take(
            &other,
            &dest,
            &mut BaseBackup::new(fast()).incremental_from(full.join(MANIFEST_FILE)),
        )
        .unwrap_err();
        let Error::Conn(conn) = &e else {
            panic!("expected Error::Conn, got {e:?}")
        };
        assert_eq!(conn.kind(), ErrorKind::Db, "{e}");
        let db = conn.db_error().unwrap();
        assert!(db.message().contains("system identifier"), "{e}");
        assert!(e.to_string().contains("manifest"), "{e}");
        assert!(dest.join(INCOMPLETE_MARKER).exists());
        assert!(!dest.join("backup_label").exists());

        // Without WAL summarization the server refuses the incremental backup itself.
        let own = work.path().join("full-other");
        take(&other, &own, &mut BaseBackup::new(fast())).unwrap();
        let dest = work.path().join("no-summaries");
        let e = take(
            &other,
            &dest,
            &mut BaseBackup::new(fast())
                .incremental_from(fs::read(own.join(MANIFEST_FILE)).unwrap()),
        )
        .unwrap_err();
        let Error::Conn(conn) = &e else {
            panic!("expected Error::Conn, got {e:?}")
        };
        assert_eq!(conn.kind(), ErrorKind::Db, "{e}");
        assert!(conn.db_error().unwrap().message().contains("summar"), "{e}");
        assert!(dest.join(INCOMPLETE_MARKER).exists());
    });
}
