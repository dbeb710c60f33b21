//! The managed initial snapshot: snapshot rows plus the stream equal the table's final
//! contents under concurrent writes; no key twice in the snapshot; the hand-off event order;
//! an existing slot refused; cancellation during the copy drops the slot; row filters and
//! column lists (15+).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use walstream::{
    CancellationToken, Config, DebeziumEncoder, DebeziumOptions, ErrorKind, Event, EventKind,
    LogicalStream, OldRow, Row,
};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server, skip_unless};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn config(c: &Cluster) -> Config {
    format!("{} sslmode=disable", c.conninfo(Role::Scram))
        .parse()
        .unwrap()
}

async fn next(stream: &mut LogicalStream) -> Event {
    tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("no event within 30 s")
        .expect("stream error")
        .expect("stream ended")
}

/// Column `name` of `row` as PostgreSQL's text output.
fn text(row: &Row, name: &str) -> String {
    row.get(name)
        .unwrap()
        .value()
        .map(ToString::to_string)
        .expect("a value")
}

fn slot_exists(c: &Cluster, name: &str) -> bool {
    c.replication_slots()
        .unwrap()
        .iter()
        .any(|s| s.slot_name == name)
}

/// A tiny deterministic generator for the writer's choices.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

const INITIAL: u64 = 3000;

#[test]
fn snapshot_plus_stream_equals_final_contents_under_concurrent_writes() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute(&format!(
            "CREATE TABLE snap (id int PRIMARY KEY, v text NOT NULL); \
             INSERT INTO snap SELECT g, 'init' || g FROM generate_series(1, {INITIAL}) g; \
             CREATE TABLE snap_done (id int PRIMARY KEY); \
             CREATE TABLE unpublished (x int); INSERT INTO unpublished VALUES (1); \
             CREATE PUBLICATION snap_pub FOR TABLE snap, snap_done;"
        ))
        .unwrap();
        let done_before = AtomicUsize::new(0);
        let started = AtomicBool::new(false);
        let after_start = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            // The writer: small transactions (insert + update + delete) before, during and
            // after the slot creation and the copy, then a sentinel row.
            scope.spawn(|| {
                let mut rng = 7u64;
                for i in 1u64.. {
                    if started.load(Ordering::SeqCst) {
                        if after_start.fetch_add(1, Ordering::SeqCst) >= 12 {
                            break;
                        }
                    } else if i > 400 {
                        panic!("the stream never started");
                    }
                    let id = INITIAL + i;
                    let upd = 1 + lcg(&mut rng) % (INITIAL + i);
                    let del = 1 + lcg(&mut rng) % (INITIAL + i);
                    c.execute(&format!(
                        "BEGIN; INSERT INTO snap VALUES ({id}, 'new{i}'); \
                         UPDATE snap SET v = 'upd{i}' WHERE id = {upd}; \
                         DELETE FROM snap WHERE id = {del}; \
                         INSERT INTO unpublished VALUES ({i}); COMMIT;"
                    ))
                    .unwrap();
                    done_before.fetch_add(1, Ordering::SeqCst);
                }
                c.execute("INSERT INTO snap_done VALUES (1)").unwrap();
            });

            while done_before.load(Ordering::SeqCst) < 15 {
                std::thread::sleep(Duration::from_millis(10));
            }
            block_on(async {
                let mut stream = LogicalStream::builder(config(&c), "snap_slot")
                    .publication("snap_pub")
                    .initial_snapshot(true)
                    .start()
                    .await
                    .unwrap();
                started.store(true, Ordering::SeqCst);
                let mut model: BTreeMap<i64, String> = BTreeMap::new();
                let mut snapshot_keys = HashSet::new();
                let mut encoder = DebeziumEncoder::new(DebeziumOptions::new("srv", "postgres"));
                let (mut reads, mut last_flags, mut complete) = (0u64, 0, None);
                let (mut stream_changes, mut sentinel, mut new_in_snapshot) = (0, false, 0);
                let key = |r: &Row| text(r, "id").parse::<i64>().unwrap();
                loop {
                    let ev = next(&mut stream).await;
                    match ev.kind() {
                        EventKind::Read(r) => {
                            assert!(complete.is_none(), "a read after the snapshot's end");
                            let row = r.row().unwrap();
                            if row.relation().name == "snap_done" {
                                sentinel = true;
                            } else {
                                let k = key(row);
                                assert!(snapshot_keys.insert(k), "key {k} twice in the snapshot");
                                if k > i64::try_from(INITIAL).unwrap() {
                                    new_in_snapshot += 1;
                                }
                                model.insert(k, text(row, "v"));
                            }
                            let rec = encoder
                                .encode_read(row, ev.lsn(), r.last, 1_700_000_000_000)
                                .unwrap();
                            assert!(rec.value.contains("\"op\":\"r\""), "{}", rec.value);
                            if r.last {
                                last_flags += 1;
                                assert!(rec.value.contains("\"snapshot\":\"last\""));
                            }
                            reads += 1;
                            // A slow consumer: the copy waits for it (bounded queue) while
                            // the writer goes on.
                            if reads % 500 == 0 {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                        EventKind::SnapshotComplete(s) => {
                            assert_eq!(s.rows, reads);
                            assert_eq!(s.tables, 2, "snap and snap_done, not unpublished");
                            assert_eq!(s.slot, "snap_slot");
                            assert_eq!(ev.lsn(), s.consistent_point);
                            complete = Some(s.consistent_point);
                            if sentinel {
                                break;
                            }
                        }
                        EventKind::Insert(ch) | EventKind::Update(ch) => {
                            assert!(complete.is_some(), "a change before the snapshot's end");
                            let row = ch.new.as_ref().unwrap();
                            if row.relation().name == "snap_done" {
                                sentinel = true;
                            } else {
                                stream_changes += 1;
                                model.insert(key(row), text(row, "v"));
                            }
                        }
                        EventKind::Delete(ch) => {
                            assert!(complete.is_some(), "a change before the snapshot's end");
                            stream_changes += 1;
                            let old = ch.old.as_ref().map(OldRow::row).unwrap();
                            model.remove(&key(old));
                        }
                        EventKind::Commit(cm) => {
                            let consistent = complete.expect("a commit before the snapshot's end");
                            assert!(
                                cm.commit_lsn >= consistent,
                                "a commit before the consistent point"
                            );
                            if sentinel {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                assert_eq!(last_flags, 1, "exactly one row marked last");
                assert!(
                    new_in_snapshot > 0,
                    "writes before the slot are in the snapshot"
                );
                assert!(
                    stream_changes > 0,
                    "writes after the slot come from the stream"
                );
                let table: BTreeMap<i64, String> = c
                    .query_rows("SELECT id, v FROM snap")
                    .unwrap()
                    .into_iter()
                    .map(|r| (r[0].parse().unwrap(), r[1].clone()))
                    .collect();
                assert_eq!(model.len(), table.len());
                assert!(model == table, "snapshot + stream differ from the table");
                stream.shutdown().await.unwrap();

                // The slot now exists: a second initial snapshot on it is refused.
                let e = LogicalStream::builder(config(&c), "snap_slot")
                    .publication("snap_pub")
                    .initial_snapshot(true)
                    .start()
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Usage, "{e}");
                assert!(slot_exists(&c, "snap_slot"), "the existing slot is kept");

                // Cancelling during the copy ends the stream and drops the half-used slot.
                let token = CancellationToken::new();
                let mut s = LogicalStream::builder(config(&c), "snap_cancel")
                    .publication("snap_pub")
                    .initial_snapshot(true)
                    .cancellation_token(token.clone())
                    .start()
                    .await
                    .unwrap();
                for _ in 0..5 {
                    assert_eq!(next(&mut s).await.kind_name(), "read");
                }
                token.cancel();
                let end = tokio::time::timeout(Duration::from_secs(20), s.next_event())
                    .await
                    .unwrap()
                    .unwrap();
                assert!(end.is_none());
                assert!(
                    !slot_exists(&c, "snap_cancel"),
                    "cancelled snapshot's slot dropped"
                );
            });
        });
    });
}

#[test]
fn snapshot_applies_row_filters_and_column_lists() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        if !skip_unless(
            c.major() >= 15,
            "publication row filters and column lists need PostgreSQL 15",
        ) {
            return;
        }
        c.execute(
            "CREATE TABLE f (id int PRIMARY KEY, a text, secret text); \
             INSERT INTO f SELECT g, 'a' || g, 's' || g FROM generate_series(1, 20) g; \
             CREATE TABLE g (id int PRIMARY KEY, b text); \
             INSERT INTO g SELECT x, E'tab\\there\\nnl ' || x FROM generate_series(1, 3) x; \
             CREATE PUBLICATION f_even FOR TABLE f (id, a) WHERE (id % 2 = 0); \
             CREATE PUBLICATION f_small FOR TABLE f (id, a) WHERE (id < 4), g;",
        )
        .unwrap();
        block_on(async {
            let mut stream = LogicalStream::builder(config(&c), "filter_slot")
                .publications(["f_even", "f_small"])
                .initial_snapshot(true)
                .start()
                .await
                .unwrap();
            let (mut f_ids, mut g_rows) = (Vec::new(), Vec::new());
            loop {
                let ev = next(&mut stream).await;
                match ev.kind() {
                    EventKind::Read(r) => {
                        let row = r.row().unwrap();
                        if row.relation().name == "f" {
                            let names: Vec<&str> =
                                row.columns().iter().map(|c| c.name.as_str()).collect();
                            assert_eq!(names, ["id", "a"], "column list applied");
                            assert!(row.columns()[0].is_key());
                            f_ids.push(text(row, "id").parse::<i32>().unwrap());
                        } else {
                            g_rows.push(text(row, "b"));
                        }
                    }
                    EventKind::SnapshotComplete(_) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            f_ids.sort_unstable();
            let expected: Vec<i32> = (1..=20).filter(|i| i % 2 == 0 || *i < 4).collect();
            assert_eq!(f_ids, expected, "row filters ORed across publications");
            g_rows.sort();
            assert_eq!(g_rows[0], "tab\there\nnl 1", "COPY escapes undone");
            // The stream afterwards describes f with the same columns.
            c.execute("INSERT INTO f VALUES (100, 'x', 'y')").unwrap();
            loop {
                let ev = next(&mut stream).await;
                if let EventKind::Insert(ch) = ev.kind() {
                    let row = ch.new.as_ref().unwrap();
                    assert_eq!(row.len(), 2);
                    assert_eq!(text(row, "id"), "100");
                    break;
                }
            }
            stream.shutdown().await.unwrap();
        });
    });
}

/// Slot management on every major: create (permanent, temporary, if-not-exists, snapshot
/// export/use/nothing, two-phase 15+, failover 17+), read (15+), alter (17+/18+), list and
/// info with lag, drop with wait.
#[test]
fn slot_management() {
    use walstream::{AlterSlot, CreateSlotOptions, SlotManager, SnapshotAction};
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("CREATE TABLE s (id int); INSERT INTO s VALUES (1);")
            .unwrap();
        let major = c.major();
        block_on(async {
            let cfg = config(&c);
            let mut m = SlotManager::connect(&cfg).await.unwrap();
            let logical = || CreateSlotOptions::logical("pgoutput");

            // Permanent, no snapshot; if-not-exists on the same name is a no-op.
            let created = m
                .create("perm", &logical().snapshot(SnapshotAction::Nothing))
                .await
                .unwrap();
            assert!(created.consistent_point.is_some());
            assert_eq!(created.snapshot_name, None);
            let again = m.create_if_not_exists("perm", &logical()).await.unwrap();
            assert!(again.is_none());
            assert!(m.create("perm", &logical()).await.is_err());

            // Lag: WAL written after the slot's position.
            c.execute("INSERT INTO s SELECT generate_series(1, 1000)")
                .unwrap();
            let info = m.info("perm").await.unwrap().expect("slot listed");
            assert_eq!(info.plugin.as_deref(), Some("pgoutput"));
            assert_eq!(info.slot_type, "logical");
            assert!(!info.temporary && !info.active && !info.two_phase && !info.failover);
            assert!(info.lag_bytes.unwrap() > 0, "{info:?}");
            assert!(info.restart_lag_bytes.unwrap() >= info.lag_bytes.unwrap());
            assert!(m.info("nope").await.unwrap().is_none());

            // Exported snapshot: named.
            let exp = m
                .create("exp", &logical().snapshot(SnapshotAction::Export))
                .await
                .unwrap();
            assert!(exp.snapshot_name.is_some());

            // Used snapshot: the connection's transaction sees the data as of the slot.
            let mut u = SlotManager::connect(&cfg).await.unwrap();
            u.create("used", &logical().snapshot(SnapshotAction::Use))
                .await
                .unwrap();
            c.execute("INSERT INTO s VALUES (2)").unwrap();
            let n = u
                .client()
                .simple_query("SELECT count(*) FROM s")
                .await
                .unwrap();
            assert_eq!(
                n[0].get(0),
                Some("1001"),
                "the insert after the slot is not seen"
            );
            u.commit().await.unwrap();
            u.close().await;

            // Temporary: lives as long as its connection.
            let mut t = SlotManager::connect(&cfg).await.unwrap();
            t.create(
                "tmp",
                &logical().temporary().snapshot(SnapshotAction::Nothing),
            )
            .await
            .unwrap();
            assert!(m.info("tmp").await.unwrap().unwrap().temporary);
            assert!(
                walstream::create_slot(&cfg, "tmp2", &logical().temporary())
                    .await
                    .is_err(),
                "a one-shot temporary slot is refused"
            );
            t.close().await;
            for _ in 0..100 {
                if m.info("tmp").await.unwrap().is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                m.info("tmp").await.unwrap().is_none(),
                "temporary slot gone"
            );

            // Two-phase at creation (15+; 14's replication grammar has no keyword).
            let tp = m
                .create(
                    "tp",
                    &logical().snapshot(SnapshotAction::Nothing).two_phase(true),
                )
                .await;
            if skip_unless(
                major >= 15,
                "CREATE_REPLICATION_SLOT ... TWO_PHASE needs 15",
            ) {
                tp.unwrap();
                assert!(m.info("tp").await.unwrap().unwrap().two_phase);
            } else {
                assert!(tp.is_err());
            }

            // Failover (17+), altered back and forth; two_phase altered (18+).
            let fo = m
                .create(
                    "fo",
                    &logical().snapshot(SnapshotAction::Nothing).failover(true),
                )
                .await;
            if skip_unless(
                major >= 17,
                "failover slots and ALTER_REPLICATION_SLOT need 17",
            ) {
                fo.unwrap();
                assert!(m.info("fo").await.unwrap().unwrap().failover);
                m.alter("fo", AlterSlot::default().failover(false))
                    .await
                    .unwrap();
                assert!(!m.info("fo").await.unwrap().unwrap().failover);
            } else {
                assert!(fo.is_err());
                assert!(
                    m.alter("perm", AlterSlot::default().failover(true))
                        .await
                        .is_err()
                );
            }
            let alter_tp = m.alter("perm", AlterSlot::default().two_phase(true)).await;
            if skip_unless(major >= 18, "ALTER_REPLICATION_SLOT ... TWO_PHASE needs 18") {
                alter_tp.unwrap();
                assert!(m.info("perm").await.unwrap().unwrap().two_phase);
            } else {
                assert!(alter_tp.is_err());
            }

            // READ_REPLICATION_SLOT (15+) on a physical slot.
            m.create("phys", &CreateSlotOptions::physical(true))
                .await
                .unwrap();
            let read = m.read("phys").await;
            if skip_unless(major >= 15, "READ_REPLICATION_SLOT needs 15") {
                let r = read.unwrap().expect("physical slot read");
                assert_eq!(r.slot_type, "physical");
                assert!(r.restart_lsn.is_some());
                assert!(m.read("missing").await.unwrap().is_none());
            } else {
                assert!(read.is_err());
            }

            // List, then drop everything (waiting).
            let names: Vec<String> = m
                .list()
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect();
            for n in ["exp", "perm", "phys", "used"] {
                assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
            }
            for n in &names {
                m.drop_slot(n, true).await.unwrap();
            }
            assert!(m.list().await.unwrap().is_empty());
            m.close().await;
        });
    });
}
