//! The WAL receiver against real servers, checked against the same major's `pg_receivewal`
//! (byte-identical completed segments) and `pg_waldump`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use walstream_backup::{
    ReceiveError, ReceiveErrorKind, ReceiveOutcome, ReceiverHandle, StandbyXmin, StopReason,
    WalReceiver, WalReceiverOptions,
};
use walstream_conn::Config;
use walstream_proto::{Lsn, TimelineId, Xid};
use walstream_test_support::{
    Cluster, ClusterOptions, PgInstall, Role, for_each_server, skip_unless, wait_for,
};

pub(crate) const SEG: u64 = 1 << 20;

/// A cluster with 1 MB segments that keeps enough WAL for a test without a slot.
fn cluster(install: &PgInstall, extra: &[(&str, &str)]) -> Cluster {
    let mut options = ClusterOptions::new()
        .initdb_arg("--wal-segsize=1")
        .setting("wal_keep_size", "64MB");
    for (k, v) in extra {
        options = options.setting(*k, *v);
    }
    Cluster::start(install, options).unwrap()
}

fn conninfo(cluster: &Cluster, app: &str) -> String {
    format!(
        "{} sslmode=disable application_name={app}",
        cluster.conninfo(Role::Trust)
    )
}

fn config(cluster: &Cluster, app: &str) -> Config {
    conninfo(cluster, app).parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run_once(receiver: &mut WalReceiver) -> Result<ReceiveOutcome, ReceiveError> {
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), receiver.run())
            .await
            .expect("the receiver must finish within 60 s")
    })
}

/// Runs a receiver on its own thread until it stops.
pub(crate) fn spawn(mut receiver: WalReceiver) -> (ReceiverHandle, JoinHandle<ReceiveOutcome>) {
    let handle = receiver.handle();
    let join = std::thread::spawn(move || run_once(&mut receiver).unwrap());
    (handle, join)
}

/// `pg_receivewal` of the same major streaming into `dir`.
fn pg_receivewal(install: &PgInstall, conninfo: &str, dir: &Path) -> Child {
    Command::new(install.bin("pg_receivewal"))
        .arg("-d")
        .arg(conninfo)
        .arg("-D")
        .arg(dir)
        .args(["--no-loop", "--status-interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops `pg_receivewal` like Ctrl-C does.
fn interrupt(mut child: Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait().unwrap();
    assert!(out.success() || out.code().is_some(), "{out:?}");
}

/// Waits until `n` walsenders stream (and returns their application names).
fn wait_streaming(cluster: &Cluster, apps: &[&str]) {
    wait_for("the receivers to stream", Duration::from_secs(30), || {
        let rows = cluster.stat_replication().ok()?;
        apps.iter()
            .all(|a| {
                rows.iter()
                    .any(|r| r.application_name == *a && r.state == "streaming")
            })
            .then_some(())
    })
    .unwrap();
}

/// Completed segment files (`name` → bytes) of `dir`.
fn completed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit()) {
            out.insert(name, fs::read(entry.path()).unwrap());
        }
    }
    out
}

pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn lsn(cluster: &Cluster) -> Lsn {
    Lsn(cluster.current_wal_lsn().unwrap())
}

/// `pg_switch_wal()` and the start of the next segment (where the switched one ends).
fn switch_wal(cluster: &Cluster) -> Lsn {
    let text = cluster.psql("SELECT pg_switch_wal()").unwrap();
    let end = walstream_test_support::parse_lsn(&text).unwrap();
    Lsn(end.div_ceil(SEG) * SEG)
}

pub(crate) fn seg_name(tli: u32, at: Lsn) -> String {
    at.wal_file_name(TimelineId(tli), SEG).unwrap()
}

/// `pg_waldump` of the same major reads `dir` from `start` to `end` on `tli`.
pub(crate) fn waldump(install: &PgInstall, dir: &Path, tli: u32, start: Lsn, end: Lsn) -> String {
    let out = Command::new(install.bin("pg_waldump"))
        .arg("-p")
        .arg(dir)
        .args([
            "-t",
            &tli.to_string(),
            "-s",
            &start.to_string(),
            "-e",
            &end.to_string(),
            "--stats=record",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pg_waldump failed: {text}");
    text
}

/// Waits for the walsender of `app` to report `at` as flushed.
fn wait_flushed(cluster: &Cluster, app: &str, at: Lsn) {
    wait_for(
        "the receiver to report the flush",
        Duration::from_secs(30),
        || {
            cluster
                .stat_replication()
                .ok()?
                .into_iter()
                .find(|r| r.application_name == app && r.write_lsn.is_some_and(|w| w >= at.0))
        },
    )
    .unwrap();
}

fn insert_rows(cluster: &Cluster, table: &str, rows: u32) {
    cluster
        .execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id int, pad text); \
             INSERT INTO {table} SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {rows}) g"
        ))
        .unwrap();
}

#[test]
fn segments_match_pg_receivewal_across_a_resume() {
    for_each_server(|install| {
        let cluster = cluster(install, &[]);
        let work = tempfile::tempdir().unwrap();
        let (ours, theirs) = (work.path().join("ours"), work.path().join("theirs"));
        fs::create_dir(&theirs).unwrap();
        let pg = pg_receivewal(install, &conninfo(&cluster, "pg_rw"), &theirs);
        let options = WalReceiverOptions::new(&ours)
            .status_interval(Duration::from_millis(200))
            .fsync_interval(Duration::from_millis(100));
        let (handle, join) = spawn(WalReceiver::new(config(&cluster, "ws_rw"), options.clone()));
        wait_streaming(&cluster, &["pg_rw", "ws_rw"]);

        // First run: stopped in the middle of a segment.
        insert_rows(&cluster, "a", 1500);
        let mid = lsn(&cluster);
        wait_flushed(&cluster, "ws_rw", mid);
        handle.stop();
        let first = join.join().unwrap();
        assert_eq!(first.reason, StopReason::Stopped);
        let stopped_at = first.flushed.expect("something was written");
        assert!(stopped_at >= mid, "{stopped_at} < {mid}");
        assert_ne!(stopped_at.segment_offset(SEG), Some(0));
        let partial = format!("{}.partial", seg_name(1, stopped_at));
        assert!(names(&ours).contains(&partial), "{:?}", names(&ours));

        // More WAL while ours is down, then a second run resumes from the files.
        insert_rows(&cluster, "b", 8000);
        let end = switch_wal(&cluster);
        let mut again = WalReceiver::new(config(&cluster, "ws_rw2"), options.endpos(end));
        let second = run_once(&mut again).unwrap();
        assert_eq!(second.reason, StopReason::EndPos);
        assert_eq!(second.flushed, Some(end));
        assert_eq!(second.timeline, Some(TimelineId(1)));
        assert!(second.segments_completed >= 2, "{second:?}");

        let last = seg_name(1, Lsn(end.0 - 1));
        wait_for(
            "pg_receivewal to complete the segment",
            Duration::from_secs(30),
            || theirs.join(&last).exists().then_some(()),
        )
        .unwrap();
        interrupt(pg);

        let (a, b) = (completed(&ours), completed(&theirs));
        assert!(a.len() >= 3, "{:?}", a.keys());
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "the same completed segments"
        );
        for (name, bytes) in &a {
            assert!(
                bytes == &b[name],
                "segment {name} differs from pg_receivewal's"
            );
        }
        assert!(
            names(&ours).iter().all(|n| !n.ends_with(".partial")),
            "the resumed partial segment was completed: {:?}",
            names(&ours)
        );
        let first_seg = Lsn::from_wal_file_name(a.keys().next().unwrap(), SEG)
            .unwrap()
            .1;
        let dump = waldump(install, &ours, 1, first_seg, end);
        assert!(dump.contains("SWITCH"), "{dump}");
    });
}

#[test]
fn slots_endpos_and_typed_errors() {
    for_each_server(|install| {
        let cluster = cluster(install, &[]);
        let work = tempfile::tempdir().unwrap();

        // A missing slot is a typed error on every major.
        let mut missing = WalReceiver::new(
            config(&cluster, "ws_missing"),
            WalReceiverOptions::new(work.path().join("missing")).slot("nope"),
        );
        let e = run_once(&mut missing).unwrap_err();
        assert_eq!(e.kind(), ReceiveErrorKind::SlotMissing, "{e}");
        assert!(!e.is_transient());

        // Created on demand; stops exactly at a position inside a segment.
        let dir = work.path().join("slot");
        let (handle, join) = spawn(WalReceiver::new(
            config(&cluster, "ws_slot"),
            WalReceiverOptions::new(&dir)
                .slot("arch")
                .create_slot(true)
                .synchronous(true),
        ));
        wait_streaming(&cluster, &["ws_slot"]);
        insert_rows(&cluster, "a", 3000);
        let endpos = lsn(&cluster);
        assert_ne!(endpos.segment_offset(SEG), Some(0));
        handle.stop_at(endpos);
        let out = join.join().unwrap();
        assert_eq!(out.reason, StopReason::EndPos);
        assert_eq!(out.flushed, Some(endpos));
        let partial = fs::read(dir.join(format!("{}.partial", seg_name(1, endpos)))).unwrap();
        assert_eq!(partial.len() as u64, SEG);
        let offset = usize::try_from(endpos.segment_offset(SEG).unwrap()).unwrap();
        assert!(
            partial[offset..].iter().all(|&b| b == 0),
            "nothing after endpos is written"
        );
        assert!(partial[..offset].iter().any(|&b| b != 0));
        // The final status update moved the slot.
        let slot = wait_for("the slot to advance", Duration::from_secs(10), || {
            cluster
                .replication_slots()
                .ok()?
                .into_iter()
                .find(|s| s.slot_name == "arch" && !s.active && s.restart_lsn == Some(endpos.0))
        })
        .unwrap();
        assert_eq!(slot.slot_type, "physical");
        // Running again with an end position already reached does nothing.
        let mut r = WalReceiver::new(
            config(&cluster, "ws_slot"),
            WalReceiverOptions::new(&dir).slot("arch").endpos(endpos),
        );
        let again = run_once(&mut r).unwrap();
        assert_eq!(again.reason, StopReason::EndPos);
        assert_eq!(again.segments_completed, 0);

        if skip_unless(
            cluster.major() >= 15,
            "starting from the slot's restart_lsn needs READ_REPLICATION_SLOT (PostgreSQL 15)",
        ) {
            // A fresh directory starts at the slot's restart_lsn.
            insert_rows(&cluster, "b", 3000);
            let end = switch_wal(&cluster);
            let fresh = work.path().join("fresh");
            let mut r = WalReceiver::new(
                config(&cluster, "ws_fresh"),
                WalReceiverOptions::new(&fresh).slot("arch").endpos(end),
            );
            let out = run_once(&mut r).unwrap();
            assert_eq!(out.flushed, Some(end));
            let got = completed(&fresh);
            assert_eq!(
                got.keys().next().map(String::as_str),
                Some(seg_name(1, endpos).as_str()),
                "starts at the segment of the slot's restart_lsn"
            );
            // The segment both directories hold is identical.
            let name = seg_name(1, endpos);
            assert_eq!(got[&name][..offset], partial[..offset]);
        }

        // Hot standby feedback (off by default) sets the slot's xmin.
        let xid: u64 = cluster
            .psql("SELECT txid_current()")
            .unwrap()
            .parse()
            .unwrap();
        let feedback = StandbyXmin {
            xmin: Xid(u32::try_from(xid & 0xFFFF_FFFF).unwrap()),
            xmin_epoch: u32::try_from(xid >> 32).unwrap(),
            ..StandbyXmin::default()
        };
        let slot_xmin = || {
            cluster
                .psql("SELECT coalesce(xmin::text, '') FROM pg_replication_slots WHERE slot_name = 'arch'")
                .unwrap()
        };
        assert_eq!(slot_xmin(), "");
        let (handle, join) = spawn(WalReceiver::new(
            config(&cluster, "ws_hsf"),
            WalReceiverOptions::new(&dir)
                .slot("arch")
                .hot_standby_feedback(feedback),
        ));
        wait_for("the slot's xmin", Duration::from_secs(10), || {
            (slot_xmin() == (xid & 0xFFFF_FFFF).to_string()).then_some(())
        })
        .unwrap();
        handle.stop();
        assert_eq!(join.join().unwrap().reason, StopReason::Stopped);
    });
}

#[test]
fn synchronous_mode_reports_flushes_at_once() {
    for_each_server(|install| {
        let cluster = cluster(install, &[]);
        // Set after start-up: the harness's own set-up commits must not wait.
        cluster
            .execute("ALTER SYSTEM SET synchronous_standby_names = 'ws_sync'")
            .unwrap();
        cluster.execute("SELECT pg_reload_conf()").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Periodic status updates off: only synchronous mode reports flushes promptly.
        let options = WalReceiverOptions::new(dir.path())
            .synchronous(true)
            .status_interval(Duration::ZERO);
        let (handle, join) = spawn(WalReceiver::new(config(&cluster, "ws_sync"), options));
        wait_streaming(&cluster, &["ws_sync"]);
        // The commit itself does not wait (a broken receiver must fail the test, not hang
        // it); the flush report must arrive without any periodic status update.
        cluster
            .execute("SET synchronous_commit = local; CREATE TABLE s AS SELECT 1 AS x")
            .unwrap();
        let written = lsn(&cluster);
        let t0 = Instant::now();
        wait_for("the flush report", Duration::from_secs(5), || {
            cluster
                .stat_replication()
                .ok()?
                .into_iter()
                .find(|r| r.flush_lsn.is_some_and(|f| f >= written.0))
        })
        .unwrap_or_else(|e| panic!("{e} after {:?}", t0.elapsed()));
        let row = cluster
            .query_rows("SELECT sync_state FROM pg_stat_replication")
            .unwrap();
        assert_eq!(row, [["sync"]]);
        handle.stop();
        let out = join.join().unwrap();
        assert_eq!(out.reason, StopReason::Stopped);
    });
}

#[test]
fn a_promoted_standby_timeline_switch_is_followed() {
    for_each_server(|install| {
        let primary = cluster(install, &[]);
        let standby = primary
            .start_standby(
                ClusterOptions::new()
                    .initdb_arg("--wal-segsize=1")
                    .setting("wal_keep_size", "64MB"),
            )
            .unwrap();
        insert_rows(&primary, "a", 2000);
        let on_primary = lsn(&primary);
        wait_for("the standby to replay", Duration::from_secs(30), || {
            let text = standby.psql("SELECT pg_last_wal_replay_lsn()").ok()?;
            (walstream_test_support::parse_lsn(&text)? >= on_primary.0).then_some(())
        })
        .unwrap();

        let work = tempfile::tempdir().unwrap();
        let (ours, theirs) = (work.path().join("ours"), work.path().join("theirs"));
        fs::create_dir(&theirs).unwrap();
        let pg = pg_receivewal(install, &conninfo(&standby, "pg_rw"), &theirs);
        let options = WalReceiverOptions::new(&ours).status_interval(Duration::from_millis(200));
        let (handle, join) = spawn(WalReceiver::new(config(&standby, "ws_rw"), options));
        wait_streaming(&standby, &["pg_rw", "ws_rw"]);

        assert_eq!(standby.psql("SELECT pg_promote()").unwrap(), "t");
        insert_rows(&standby, "b", 4000);
        let end = switch_wal(&standby);
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
        // Timeline 1 up to the switch (its last segment stays partial), timeline 2 from the
        // segment of the switch point on.
        assert!(
            files.contains(&format!("{}.partial", seg_name(1, switch))),
            "{files:?}"
        );
        let tl2_first = seg_name(2, switch);
        assert!(files.contains(&tl2_first), "{files:?}");
        assert!(files.contains(&seg_name(2, Lsn(end.0 - 1))), "{files:?}");

        let last = seg_name(2, Lsn(end.0 - 1));
        wait_for(
            "pg_receivewal to complete the segment",
            Duration::from_secs(30),
            || theirs.join(&last).exists().then_some(()),
        )
        .unwrap();
        interrupt(pg);
        assert_eq!(
            fs::read(theirs.join("00000002.history")).unwrap(),
            history.as_bytes()
        );
        let (a, b) = (completed(&ours), completed(&theirs));
        for (name, bytes) in &a {
            if let Some(other) = b.get(name) {
                assert!(
                    bytes == other,
                    "segment {name} differs from pg_receivewal's"
                );
            }
        }
        assert!(b.contains_key(&tl2_first) && b.contains_key(&last));

        // pg_waldump reads timeline 1's WAL up to the switch and timeline 2's from there.
        let switch_seg = switch.segment_start(SEG).unwrap();
        let dump = waldump(install, &ours, 2, switch_seg, end);
        assert!(dump.contains("SWITCH"), "{dump}");
        assert!(
            dump.contains("END_OF_RECOVERY") || dump.contains("CHECKPOINT"),
            "{dump}"
        );
    });
}

#[test]
fn setup_problems_and_lost_connections_are_typed() {
    for_each_server(|install| {
        let cluster = cluster(install, &[]);
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("wal");

        // A lost connection is transient; running again resumes from the files.
        let mut receiver = WalReceiver::new(
            config(&cluster, "ws_lost"),
            WalReceiverOptions::new(&dir).status_interval(Duration::from_millis(200)),
        );
        let join = std::thread::spawn(move || run_once(&mut receiver));
        wait_streaming(&cluster, &["ws_lost"]);
        insert_rows(&cluster, "a", 1000);
        assert_eq!(cluster.terminate_walsenders().unwrap(), 1);
        let e = join.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ReceiveErrorKind::Connection, "{e}");
        assert!(e.is_transient());
        insert_rows(&cluster, "b", 1000);
        let end = switch_wal(&cluster);
        let mut again = WalReceiver::new(
            config(&cluster, "ws_lost"),
            WalReceiverOptions::new(&dir).endpos(end),
        );
        assert_eq!(run_once(&mut again).unwrap().flushed, Some(end));
        let first = completed(&dir);
        let first_seg = Lsn::from_wal_file_name(first.keys().next().unwrap(), SEG)
            .unwrap()
            .1;
        waldump(install, &dir, 1, first_seg, end);

        // A role without REPLICATION.
        cluster
            .execute("ALTER ROLE ws_trust NOSUPERUSER NOREPLICATION")
            .unwrap();
        let mut denied = WalReceiver::new(
            config(&cluster, "ws_denied"),
            WalReceiverOptions::new(work.path().join("denied")),
        );
        let e = run_once(&mut denied).unwrap_err();
        assert_eq!(e.kind(), ReceiveErrorKind::Permission, "{e}");
        assert_eq!(
            e.db_error().map(|d| d.code().code().to_owned()).as_deref(),
            Some("42501")
        );
        assert!(!e.is_transient());
    });
}

#[test]
fn a_server_without_wal_senders_is_a_setup_error() {
    for_each_server(|install| {
        let cluster = cluster(
            install,
            &[("wal_level", "minimal"), ("max_wal_senders", "0")],
        );
        let dir = tempfile::tempdir().unwrap();
        let mut r = WalReceiver::new(
            config(&cluster, "ws_min"),
            WalReceiverOptions::new(dir.path()),
        );
        let e = run_once(&mut r).unwrap_err();
        assert_eq!(e.kind(), ReceiveErrorKind::ServerConfig, "{e}");
        assert!(!e.is_transient());
    });
}
