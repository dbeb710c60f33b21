//! Base backup under faults: a `BASE_BACKUP` cut by the proxy half-way must end in a typed
//! error within a bound and leave its directory marked incomplete (the marker present, no
//! `backup_label`, no manifest, so `pg_verifybackup` refuses it); the same backup retried
//! after the fault completes and verifies (walstream-backup's own check against the
//! manifest, then the major's `pg_verifybackup`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use walstream_backup::{
    BaseBackup, BaseBackupOptions, CheckpointMode, DirectoryTarget, Error, Format,
    INCOMPLETE_MARKER, MANIFEST_FILE, WalMethod,
};
use walstream_conn::{Client, Config, ErrorKind};
use walstream_test_support::{
    Cluster, ClusterOptions, ConnectionPlan, Direction, Fault, FaultProxy, Trigger, for_each_server,
};

use crate::common::{block_on, proxied_conninfo, report};

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "walstream-faults-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn backup(config: &Config, dest: &Path) -> Result<PathBuf, Error> {
    let target = DirectoryTarget::create(dest, Format::Plain)?;
    let mut client = Client::connect(config).await?;
    let options = BaseBackupOptions {
        checkpoint: CheckpointMode::Fast,
        label: Some("walstream faults".into()),
        ..BaseBackupOptions::default()
    };
    let (_, dir) = BaseBackup::new(options)
        .wal_method(WalMethod::Fetch)
        .run_to_directory(&mut client, target)
        .await?;
    Ok(dir)
}

fn pg_verifybackup(cluster: &Cluster, dir: &Path) -> std::process::Output {
    Command::new(cluster.install().bin("pg_verifybackup"))
        .arg(dir)
        .output()
        .expect("pg_verifybackup runs")
}

#[test]
fn backup_cut_half_way_is_incomplete_and_a_retry_verifies() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new().initdb_arg("--wal-segsize=1"))
            .expect("cluster");
        // Some table data, so that half-way is inside a data file.
        c.execute(
            "CREATE TABLE filler AS SELECT g, repeat('x', 400) AS pad \
             FROM generate_series(1, 8000) g",
        )
        .expect("filler");
        let size: u64 = c
            .psql("SELECT sum(pg_database_size(oid)) FROM pg_database")
            .expect("size")
            .parse()
            .expect("a number");
        let cut = size / 2;
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
        // Connection 1 is reset half-way through the backup; connection 2 passes.
        proxy.script([
            ConnectionPlan::new().at(Trigger::bytes(Direction::ToClient, cut), Fault::Reset),
            ConnectionPlan::new(),
        ]);
        let config: Config = format!("{} replication=true", proxied_conninfo(&c, &proxy))
            .parse()
            .expect("conninfo");
        let scratch = Scratch::new("backup");
        let dest = scratch.0.join("base");

        let started = Instant::now();
        let err = block_on(async {
            tokio::time::timeout(Duration::from_secs(60), backup(&config, &dest)).await
        })
        .expect("the cut backup neither finished nor failed within 60 s")
        .expect_err("the backup was cut half-way");
        let failed_after = started.elapsed();
        assert!(
            proxy.wait_fired_blocking(1, Duration::from_secs(1)),
            "the reset never fired"
        );
        match &err {
            Error::Conn(e) => assert!(
                matches!(e.kind(), ErrorKind::Io | ErrorKind::Closed),
                "cut backup: {e:?}"
            ),
            other => panic!("cut backup: expected a connection error, got {other:?}"),
        }
        assert!(
            dest.join(INCOMPLETE_MARKER).exists(),
            "the cut backup is not marked incomplete"
        );
        assert!(
            !dest.join(MANIFEST_FILE).exists() && !dest.join("backup_label").exists(),
            "the cut backup has a manifest or a backup_label"
        );
        let verify = pg_verifybackup(&c, &dest);
        assert!(
            !verify.status.success(),
            "pg_verifybackup accepted the cut backup"
        );

        // The retry: the incomplete directory is discarded and the backup taken again.
        std::fs::remove_dir_all(&dest).expect("remove the incomplete backup");
        let started = Instant::now();
        let dir = block_on(async {
            tokio::time::timeout(Duration::from_secs(120), backup(&config, &dest)).await
        })
        .expect("the retried backup did not finish within 120 s")
        .unwrap_or_else(|e| panic!("the retried backup failed: {e:?}"));
        let retried_in = started.elapsed();
        assert!(!dir.join(INCOMPLETE_MARKER).exists(), "retry still marked");
        assert!(dir.join(MANIFEST_FILE).exists(), "retry has no manifest");
        let verify = pg_verifybackup(&c, &dir);
        assert!(
            verify.status.success(),
            "pg_verifybackup rejects the retried backup: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert_eq!(proxy.accepted(), 2, "one cut and one retried connection");
        report(&format!(
            "backup cut_half_way pg{} cut_at={cut} error={:?} {}ms; retry verified {}ms",
            c.major(),
            err.to_string().chars().take(60).collect::<String>(),
            failed_after.as_millis(),
            retried_in.as_millis()
        ));
    });
}
