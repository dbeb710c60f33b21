//! `walstream verifybackup` on a backup taken by the server's own pg_basebackup.
use std::process::Command;

use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{assert_ok, run, stderr, stdout};

#[test]
fn verifies_a_pg_basebackup_and_finds_damage() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("b");
        let status = Command::new(install.bin("pg_basebackup"))
            .arg("-d")
            .arg(format!("{} sslmode=disable", c.conninfo(Role::Postgres)))
            .arg("-D")
            .arg(&backup)
            .args(["-X", "fetch", "-c", "fast", "--no-sync"])
            .status()
            .unwrap();
        assert!(status.success());
        let b = backup.display().to_string();
        let out = run(&["verifybackup", &b]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("successfully verified"),
            "{}",
            stdout(&out)
        );

        // Damage one file: same size, other bytes.
        let victim = backup.join("PG_VERSION");
        let mut bytes = std::fs::read(&victim).unwrap();
        bytes[0] ^= 0x01;
        std::fs::write(&victim, bytes).unwrap();
        std::fs::write(backup.join("stray"), b"x").unwrap();
        let out = run(&["verifybackup", &b]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("checksum mismatch for file \"PG_VERSION\""),
            "{text}"
        );
        assert!(
            text.contains("\"stray\" is present on disk but not in the manifest"),
            "{text}"
        );
        // With checksums skipped only the extra file remains.
        let out = run(&["verifybackup", &b, "--skip-checksums"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
        // Not a backup directory: a clear error.
        let out = run(&["verifybackup", &dir.path().display().to_string()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    });
}
