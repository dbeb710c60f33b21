//! `walstream basebackup` then `walstream verifybackup`, against every configured major.
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{assert_ok, run, stderr, stdout};

#[test]
fn basebackup_then_verifybackup() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 2000) g")
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let dir = work.path().join("b");
        let d = dir.display().to_string();
        let mut args = vec![
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &d,
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--manifest-checksums",
            "SHA256",
            "-P",
            "--no-sync",
        ];
        if c.major() >= 15 {
            args.extend(["--compress", "server-gzip:1"]);
        }
        let out = run(&args);
        assert_ok(&out, Some(&c));
        assert!(stdout(&out).contains("backup complete"), "{}", stdout(&out));
        assert!(
            stderr(&out).contains(" kB"),
            "no progress: {}",
            stderr(&out)
        );
        let manifest = std::fs::read_to_string(dir.join("backup_manifest")).unwrap();
        assert!(manifest.contains("\"Checksum-Algorithm\": \"SHA256\""));
        assert!(!dir.join("walstream_backup_incomplete").exists());

        let out = run(&["verifybackup", &d]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("successfully verified"),
            "{}",
            stdout(&out)
        );

        // Tar format with the WAL streamed through an existing slot: base.tar, pg_wal.tar
        // and the manifest.
        c.execute("SELECT pg_create_physical_replication_slot('bk_slot')")
            .unwrap();
        let tar = work.path().join("t").display().to_string();
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &tar,
            "-F",
            "tar",
            "-X",
            "stream",
            "-S",
            "bk_slot",
            "-c",
            "fast",
        ]);
        assert_ok(&out, Some(&c));
        let mut names: Vec<String> = std::fs::read_dir(&tar)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["backup_manifest", "base.tar", "pg_wal.tar"]);
        // The slot was used: it now has a restart position.
        let slots = c.replication_slots().unwrap();
        let slot = slots.iter().find(|s| s.slot_name == "bk_slot").unwrap();
        assert!(slot.restart_lsn.is_some(), "{slot:?}");

        // A non-empty directory is refused with a hint; usage errors exit 2.
        let out = run(&["basebackup", "-d", &conninfo, "-D", &d, "-c", "fast"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
        let other = work.path().join("x").display().to_string();
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &other,
            "--compress",
            "bzip2",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    });
}
