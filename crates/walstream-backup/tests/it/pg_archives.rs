//! Archives written by PostgreSQL's own `pg_basebackup` go through our tar extractor and
//! our verifier, and the same major's `pg_verifybackup` accepts what we extracted.

use std::fs;
use std::process::Command;

use walstream_backup::{ArchiveSink, TarExtractor, verify_backup};
use walstream_test_support::{Cluster, ClusterOptions, for_each_server};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pg_basebackup_tar_extracts_and_verifies() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster.execute("CREATE TABLE t AS SELECT g AS id, repeat('x', 500) AS pad FROM generate_series(1, 5000) g").unwrap();
        let work = tempfile::tempdir().unwrap();
        let tar_dir = work.path().join("tar");
        run(Command::new(install.bin("pg_basebackup"))
            .arg("-h")
            .arg(cluster.socket_dir())
            .arg("-p")
            .arg(cluster.port().to_string())
            .args([
                "-U",
                "postgres",
                "-Ft",
                "-X",
                "fetch",
                "--no-sync",
                "-c",
                "fast",
                "-D",
            ])
            .arg(&tar_dir));
        let data = fs::read(tar_dir.join("base.tar")).unwrap();
        let dest = work.path().join("plain");
        let mut sink = TarExtractor::new(&dest).unwrap();
        // Feed in uneven network-sized chunks.
        for chunk in data.chunks(8191) {
            sink.write(chunk).unwrap();
        }
        sink.finish().unwrap();
        fs::copy(
            tar_dir.join("backup_manifest"),
            dest.join("backup_manifest"),
        )
        .unwrap();

        let report = verify_backup(&dest).unwrap();
        assert!(
            report.is_ok(),
            "PostgreSQL {}: {:?}",
            cluster.major(),
            report.problems
        );
        assert!(report.files_checksummed > 100);
        assert_eq!(report.manifest.version >= 2, cluster.major() >= 17);

        let out = run(Command::new(install.bin("pg_verifybackup")).arg(&dest));
        assert!(out.contains("successfully verified"), "{out}");

        // Damage one relation file: both verifiers notice.
        let victim = report
            .manifest
            .files
            .iter()
            .find(|f| f.path.starts_with("base/") && f.size > 0)
            .unwrap();
        let mut bytes = fs::read(dest.join(&victim.path)).unwrap();
        bytes[0] ^= 0xff;
        fs::write(dest.join(&victim.path), bytes).unwrap();
        let report = verify_backup(&dest).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        let status = Command::new(install.bin("pg_verifybackup"))
            .arg(&dest)
            .output()
            .unwrap()
            .status;
        assert!(!status.success());
    });
}
