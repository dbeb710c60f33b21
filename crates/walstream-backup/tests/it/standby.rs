//! A standby made from walstream's own backup (issue #6: "a timeline switch (promote a
//! standby made from our own backup) is followed"): a `-X stream` backup of a primary,
//! turned into a standby (`standby.signal`, `primary_conninfo`), replicates the primary's
//! later writes; the WAL receiver streams from that standby while it is promoted and follows
//! it onto timeline 2 (history file, timeline 1's last segment partial, `pg_waldump` reads
//! timeline 2 from the switch). A backup of that standby, WAL streamed from it, held while
//! the standby is promoted under it, fails with the server's typed error and stays marked
//! incomplete.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use walstream_backup::{
    BackupTarget, BaseBackup, DirectoryTarget, Error, Format, INCOMPLETE_MARKER, MANIFEST_FILE,
    Progress, StopReason, TablespaceInfo, WalMethod, WalReceiver, WalReceiverOptions, WalStream,
};
use walstream_conn::{Client, Config};
use walstream_proto::{Lsn, TimelineId};
use walstream_test_support::{Cluster, PgInstall, Role, for_each_server, parse_lsn, wait_for};

use crate::backup::{Restored, backup_into, fast, physical, rt, scratch, small};
use crate::receiver::{SEG, names, seg_name, spawn, waldump};

fn replay_lsn(standby: &Restored) -> Option<u64> {
    parse_lsn(&standby.query("SELECT pg_last_wal_replay_lsn()"))
}

/// Our backup of `primary` (WAL streamed), turned into a standby of it and started.
fn standby_from_our_backup(install: &PgInstall, primary: &Cluster, work: &Path) -> Restored {
    let dest = work.join("standby");
    let target = DirectoryTarget::create(&dest, Format::Plain)
        .unwrap()
        .no_sync();
    let mut backup = BaseBackup::new(fast()).wal_method(WalMethod::Stream(Box::new(
        WalStream::new(physical(primary)),
    )));
    let (_, dir) = rt()
        .block_on(backup_into(primary, &mut backup, target))
        .unwrap();
    fs::write(dir.join("standby.signal"), "").unwrap();
    let mut auto = fs::OpenOptions::new()
        .append(true)
        .open(dir.join("postgresql.auto.conf"))
        .unwrap();
    writeln!(
        auto,
        "primary_conninfo = 'host=''{}'' port={} user=postgres application_name=from_ours'",
        primary.socket_dir().display(),
        primary.port()
    )
    .unwrap();
    drop(auto);
    let standby = Restored::start(install, &dir, work, &[]);
    assert_eq!(standby.query("SELECT pg_is_in_recovery()"), "t");
    standby
}

/// A physical replication connection to a restored server (trust over its socket).
fn replication_config(server: &Restored, app: &str) -> Config {
    format!(
        "host={} port={} user={} dbname=postgres sslmode=disable replication=true \
         application_name={app}",
        server.socket_dir().display(),
        server.port(),
        Role::Trust.name()
    )
    .parse()
    .unwrap()
}

#[test]
fn a_standby_made_from_our_backup_replicates_and_its_promotion_is_followed() {
    for_each_server(|install| {
        let work = scratch();
        let primary = Cluster::start(install, small().setting("wal_keep_size", "64MB")).unwrap();
        primary
            .execute(
                "CREATE TABLE a (id int, pad text);
                 INSERT INTO a SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
            )
            .unwrap();

        let standby = standby_from_our_backup(install, &primary, work.path());

        // It replicates what the primary writes after the backup.
        primary
            .execute("INSERT INTO a SELECT g, 'later' FROM generate_series(2001, 3000) g")
            .unwrap();
        let on_primary = primary.current_wal_lsn().unwrap();
        wait_for("the standby to replay", Duration::from_secs(60), || {
            (replay_lsn(&standby)? >= on_primary).then_some(())
        })
        .unwrap();
        assert_eq!(standby.query("SELECT count(*) FROM a"), "3000");

        // The WAL receiver streams from the standby (cascading) ...
        let ours = work.path().join("wal");
        let config = replication_config(&standby, "ws_rw");
        let options = WalReceiverOptions::new(&ours).status_interval(Duration::from_millis(200));
        let (handle, join) = spawn(WalReceiver::new(config, options));
        wait_for("the receiver to stream", Duration::from_secs(60), || {
            (standby.query(
                "SELECT count(*) FROM pg_stat_replication
                 WHERE application_name = 'ws_rw' AND state = 'streaming'",
            ) == "1")
                .then_some(())
        })
        .unwrap();

        // ... and follows it onto timeline 2 when it is promoted.
        assert_eq!(standby.query("SELECT pg_promote()"), "t");
        assert_eq!(standby.query("SELECT pg_is_in_recovery()"), "f");
        standby.query(
            "CREATE TABLE b (id int, pad text);
             INSERT INTO b SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, 4000) g",
        );
        let switched = parse_lsn(&standby.query("SELECT pg_switch_wal()")).unwrap();
        let end = Lsn(switched.div_ceil(SEG) * SEG);
        handle.stop_at(end);
        let out = join.join().unwrap();
        assert_eq!(out.reason, StopReason::EndPos);
        assert_eq!(out.timeline, Some(TimelineId(2)));
        assert_eq!(out.timeline_switches, 1);
        assert_eq!(out.flushed, Some(end));

        let history = fs::read_to_string(ours.join("00000002.history")).unwrap();
        let switch: Lsn = history
            .lines()
            .next()
            .and_then(|l| l.split('\t').nth(1))
            .unwrap()
            .parse()
            .unwrap();
        let files = names(&ours);
        assert!(
            files.contains(&format!("{}.partial", seg_name(1, switch))),
            "{files:?}"
        );
        assert!(files.contains(&seg_name(2, switch)), "{files:?}");
        assert!(files.contains(&seg_name(2, Lsn(end.0 - 1))), "{files:?}");
        let dump = waldump(install, &ours, 2, switch.segment_start(SEG).unwrap(), end);
        assert!(dump.contains("SWITCH"), "{dump}");
    });
}

/// Pauses the backup at its first archive data until told to go on.
struct PauseAtFirstData<'a> {
    inner: &'a mut DirectoryTarget,
    started: Option<mpsc::Sender<()>>,
    go: mpsc::Receiver<()>,
}

impl BackupTarget for PauseAtFirstData<'_> {
    fn begin_archive(&mut self, name: &str, location: Option<&str>) -> Result<(), Error> {
        self.inner.begin_archive(name, location)
    }
    fn archive_data(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(started) = self.started.take() {
            started.send(()).unwrap();
            self.go.recv().unwrap();
        }
        self.inner.archive_data(data)
    }
    fn end_archive(&mut self) -> Result<(), Error> {
        self.inner.end_archive()
    }
    fn begin_manifest(&mut self) -> Result<(), Error> {
        self.inner.begin_manifest()
    }
    fn manifest_data(&mut self, data: &[u8]) -> Result<(), Error> {
        self.inner.manifest_data(data)
    }
    fn end_manifest(&mut self) -> Result<(), Error> {
        self.inner.end_manifest()
    }
    fn progress(&mut self, progress: Progress) {
        self.inner.progress(progress);
    }
    fn tablespaces(&mut self, tablespaces: &[TablespaceInfo]) -> Result<(), Error> {
        self.inner.tablespaces(tablespaces)
    }
}

#[test]
fn a_backup_of_a_standby_promoted_midway_fails_typed_and_stays_incomplete() {
    for_each_server(|install| {
        let work = scratch();
        let primary = Cluster::start(install, small().setting("wal_keep_size", "64MB")).unwrap();
        primary
            .execute("CREATE TABLE a AS SELECT g AS id FROM generate_series(1, 1000) g")
            .unwrap();
        let standby = standby_from_our_backup(install, &primary, work.path());

        // A backup of the standby, WAL streamed from it too, held at its first archive
        // data while the standby is promoted (the timeline switches under the backup and
        // its WAL stream).
        let dest = work.path().join("of-standby");
        let config = replication_config(&standby, "bb");
        let (started_tx, started_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel();
        let worker = {
            let dest = dest.clone();
            std::thread::spawn(move || {
                rt().block_on(async {
                    let mut client = Client::connect(&config).await?;
                    let mut target = DirectoryTarget::create(&dest, Format::Plain)?.no_sync();
                    let mut paused = PauseAtFirstData {
                        inner: &mut target,
                        started: Some(started_tx),
                        go: go_rx,
                    };
                    BaseBackup::new(fast())
                        .wal_method(WalMethod::Stream(Box::new(
                            WalStream::new(config.clone()).dir(dest.join("pg_wal")),
                        )))
                        .run(&mut client, &mut paused)
                        .await
                })
            })
        };
        if started_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            panic!("the backup sent no data: {:?}", worker.join());
        }
        assert_eq!(standby.query("SELECT pg_promote()"), "t");
        assert_eq!(standby.query("SELECT pg_is_in_recovery()"), "f");
        go_tx.send(()).unwrap();
        let err = worker.join().unwrap().unwrap_err();

        // The server refuses to finish it: "the standby was promoted during online backup".
        let Error::Conn(conn) = &err else {
            panic!("expected Error::Conn, got {err:?}")
        };
        let db = conn.db_error().unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(db.code().to_string(), "55000", "{err}");
        assert!(db.message().contains("promoted"), "{err}");
        assert!(dest.join(INCOMPLETE_MARKER).exists());
        assert!(!dest.join("backup_label").exists());
        assert!(!dest.join(MANIFEST_FILE).exists());
    });
}
