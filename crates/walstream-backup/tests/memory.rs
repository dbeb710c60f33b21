//! "Memory stays flat whatever the size of the database" (issue #6): base backups of a
//! database several times larger than the allowed growth, measured by the process's peak
//! resident set size (`VmHWM`, reset through `/proc/self/clear_refs` before each backup).
//!
//! A test binary of its own, with a single test, so that nothing else runs in the process
//! while the peak is measured.

use std::fs;
use std::path::Path;

use walstream_backup::{
    BaseBackup, BaseBackupOptions, CheckpointMode, DirectoryTarget, Format, WalMethod, WalStream,
};
use walstream_conn::{Client, Config};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server, skip_unless};

/// The most the peak resident set may grow while one backup runs.
const MAX_GROWTH_KB: u64 = 32 * 1024;

/// The database must be larger than this many times the allowed growth, so that holding
/// any archive (or a large part of one) in memory would fail the test.
const SIZE_FACTOR: u64 = 4;

/// A `kB` field of `/proc/self/status`.
fn status_kb(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Runs `backup` into `target` and returns how much the peak resident set grew (kB) over
/// the resident set before it started.
fn peak_growth(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    mut backup: BaseBackup,
    target: DirectoryTarget,
) -> u64 {
    let before = status_kb("VmRSS");
    // Writing 5 resets the peak (VmHWM) to the current resident set.
    fs::write("/proc/self/clear_refs", "5").unwrap();
    rt.block_on(async {
        let mut client = Client::connect(config).await.unwrap();
        backup.run_to_directory(&mut client, target).await.unwrap();
        client.close().await;
    });
    status_kb("VmHWM").saturating_sub(before)
}

fn built_with(bin: &Path, method: &str) -> bool {
    let out = std::process::Command::new(bin.join("pg_config"))
        .arg("--configure")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("with-{method}"))
}

#[test]
fn backup_memory_stays_flat_whatever_the_database_size() {
    if !skip_unless(
        Path::new("/proc/self/clear_refs").exists(),
        "measuring the peak resident set needs Linux's /proc/self/clear_refs",
    ) {
        return;
    }
    for_each_server(|install| {
        let cluster =
            Cluster::start(install, ClusterOptions::new().initdb_arg("--wal-segsize=1")).unwrap();
        // ~240 MB of heap in one relation (1 GB segments: one file, one tar member).
        cluster
            .execute(
                "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 6) AS pad
                     FROM generate_series(1, 1000000) g;
                 CHECKPOINT;",
            )
            .unwrap();
        let size_kb: u64 = cluster
            .psql("SELECT pg_database_size(current_database()) / 1024")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            size_kb > SIZE_FACTOR * MAX_GROWTH_KB,
            "the database ({size_kb} kB) is too small to show anything"
        );
        let config: Config = format!(
            "{} replication=true sslmode=disable",
            cluster.conninfo(Role::Scram)
        )
        .parse()
        .unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let options = || BaseBackupOptions {
            checkpoint: CheckpointMode::Fast,
            ..BaseBackupOptions::default()
        };
        let work = tempfile::tempdir().unwrap();
        let mut runs = vec![
            // Plain: extracted, verified against the manifest (every file read and
            // checksummed), WAL streamed over a second connection.
            (
                "plain, WAL streamed",
                Format::Plain,
                BaseBackup::new(options())
                    .wal_method(WalMethod::Stream(Box::new(WalStream::new(config.clone())))),
            ),
            // Tar: the archives written as they come, WAL fetched at the end.
            (
                "tar, WAL fetched",
                Format::Tar,
                BaseBackup::new(options()).wal_method(WalMethod::Fetch),
            ),
        ];
        let zstd = install.major >= 15 && built_with(&install.bindir, "zstd");
        if install.major >= 15 && !zstd {
            skip_unless(
                false,
                &format!(
                    "this PostgreSQL {} is built without zstd (the zstd run is left out)",
                    install.major
                ),
            );
        }
        if zstd {
            // Server-side Zstandard decoded on the fly (a decoder thread behind a bounded
            // channel) and extracted.
            runs.push((
                "plain, server zstd",
                Format::Plain,
                BaseBackup::new(BaseBackupOptions {
                    compression: Some("zstd".into()),
                    ..options()
                })
                .wal_method(WalMethod::None),
            ));
        }
        for (i, (what, format, backup)) in runs.into_iter().enumerate() {
            let dir = work.path().join(i.to_string());
            let target = DirectoryTarget::create(&dir, format).unwrap().no_sync();
            let growth = peak_growth(&rt, &config, backup, target);
            eprintln!(
                "PostgreSQL {}: {what}: database {size_kb} kB, peak resident set grew by {growth} kB",
                install.major
            );
            assert!(
                growth < MAX_GROWTH_KB,
                "{what}: the peak resident set grew by {growth} kB for a {size_kb} kB database"
            );
            fs::remove_dir_all(&dir).unwrap();
        }
    });
}
