//! Protocol versions 1-4: plain changes over v1, streamed in-progress transactions over v2
//! and v4 (with a rolled-back savepoint and a rolled-back streamed transaction), two-phase
//! over v3; in event mode and through the transaction assembler.

use std::collections::BTreeSet;

use walstream::{
    Assembled, AssemblyOptions, Event, EventKind, PgTimestamp, Streaming, TransactionKind,
    TwoPhaseDelivery, Xid,
};
use walstream_test_support::{for_each_server, skip_unless};

use crate::util::{
    assemble, block_on, builder, cluster, inserted_id, int, kinds, transaction_ids, until,
};

#[test]
fn protocol_v1_insert_update_delete() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY, name text); \
             CREATE PUBLICATION p FOR TABLE t; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput'); \
             INSERT INTO t VALUES (1, 'one'), (2, 'two'); \
             UPDATE t SET name = 'uno' WHERE id = 1; \
             DELETE FROM t WHERE id = 2;",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p")
                .proto_version(1)
                .start()
                .await
                .unwrap();
            assert_eq!(stream.proto_version(), Some(1));
            let mut commits = 0;
            let events = until(&mut stream, |e| {
                if matches!(e.kind(), EventKind::Commit(_)) {
                    commits += 1;
                }
                commits == 3
            })
            .await;
            assert_eq!(
                kinds(&events),
                [
                    "begin", "insert", "insert", "commit", "begin", "update", "commit", "begin",
                    "delete", "commit"
                ]
            );
            let rows: Vec<String> = events
                .iter()
                .filter_map(|e| e.kind().row_change())
                .map(|ch| {
                    let new = ch.new.as_ref().map(|r| {
                        format!(
                            "{}:{}",
                            int(r, "id"),
                            r.get("name").unwrap().value().unwrap()
                        )
                    });
                    let old = ch.old.as_ref().map(|o| {
                        assert!(o.is_key(), "default replica identity sends the key");
                        int(o.row(), "id").to_string()
                    });
                    format!("{}/{new:?}/{old:?}", ch.table())
                })
                .collect();
            assert_eq!(
                rows,
                [
                    "t/Some(\"1:one\")/None",
                    "t/Some(\"2:two\")/None",
                    "t/Some(\"1:uno\")/None",
                    "t/None/Some(\"2\")",
                ]
            );
            // Every event of a transaction carries its xid and commit LSN from Begin.
            let begin = events.iter().find_map(|e| match e.kind() {
                EventKind::Begin(b) => Some(*b),
                _ => None,
            });
            let begin = begin.unwrap();
            let insert = events.iter().find(|e| inserted_id(e).is_some()).unwrap();
            assert_eq!(insert.xid(), Some(begin.xid));
            assert_eq!(insert.commit_lsn(), Some(begin.final_lsn));
            assert_eq!(insert.commit_time(), Some(begin.commit_time));
            stream.shutdown().await.unwrap();
        });
    });
}

/// What the streamed-transaction workload did, read back from the server.
struct Workload {
    main_xid: Xid,
    committed: Vec<i64>,
}

const STREAMED_SETUP: &str = "CREATE TABLE big (id int PRIMARY KEY, pad text); \
     ALTER TABLE big ALTER pad SET STORAGE PLAIN; \
     CREATE TABLE xids (name text, x bigint); \
     CREATE PUBLICATION p FOR TABLE big; \
     SELECT pg_create_logical_replication_slot('s', 'pgoutput');";

/// A transaction larger than `logical_decoding_work_mem` (64kB) with a rolled-back savepoint
/// that itself exceeds the limit.
fn streamed_workload(c: &walstream_test_support::Cluster) -> Workload {
    c.execute(
        "BEGIN; \
         INSERT INTO xids SELECT 'main', txid_current(); \
         INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 1000) g; \
         SAVEPOINT s1; \
         INSERT INTO big SELECT g, repeat('y', 200) FROM generate_series(100001, 101000) g; \
         ROLLBACK TO s1; \
         INSERT INTO big SELECT g, 'after' FROM generate_series(2001, 2010) g; \
         COMMIT;",
    )
    .unwrap();
    let main_xid: u64 = c
        .psql("SELECT x FROM xids WHERE name = 'main'")
        .unwrap()
        .parse()
        .unwrap();
    Workload {
        main_xid: Xid(u32::try_from(main_xid & 0xffff_ffff).unwrap()),
        committed: (1..=1000).chain(2001..=2010).collect(),
    }
}

/// Checks the event-mode view of [`streamed_workload`]; returns the aborted subtransaction.
fn check_streamed_events(events: &[Event], w: &Workload, parallel: bool) {
    let starts: Vec<(Xid, bool)> = events
        .iter()
        .filter_map(|e| match e.kind() {
            EventKind::StreamStart(s) => Some((s.xid, s.first_segment)),
            _ => None,
        })
        .collect();
    let main_blocks: Vec<bool> = starts
        .iter()
        .filter(|s| s.0 == w.main_xid)
        .map(|s| s.1)
        .collect();
    assert!(
        main_blocks.len() >= 2,
        "main transaction not streamed in blocks: {starts:?}"
    );
    assert!(
        main_blocks[0] && main_blocks[1..].iter().all(|f| !f),
        "{main_blocks:?}"
    );
    let other: BTreeSet<Xid> = starts
        .iter()
        .map(|s| s.0)
        .filter(|x| *x != w.main_xid)
        .collect();
    assert_eq!(other.len(), 1, "one other streamed transaction: {starts:?}");
    let aborted_xid = *other.first().unwrap();
    let n_starts = starts.len();
    let n_stops = events
        .iter()
        .filter(|e| matches!(e.kind(), EventKind::StreamStop))
        .count();
    assert_eq!(n_starts, n_stops);

    let aborts: Vec<_> = events
        .iter()
        .filter_map(|e| match e.kind() {
            EventKind::StreamAbort(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(aborts.len(), 2, "{aborts:?}");
    let sub = &aborts[0];
    assert_eq!(sub.xid, w.main_xid);
    assert_ne!(sub.subxid, w.main_xid, "subtransaction abort");
    let top = &aborts[1];
    assert_eq!(
        (top.xid, top.subxid),
        (aborted_xid, aborted_xid),
        "top-level abort"
    );
    for a in [sub, top] {
        match (&a.abort_info, parallel) {
            (Some(info), true) => {
                assert!(info.abort_lsn.0 > 0);
                let now = PgTimestamp::from_system_time(std::time::SystemTime::now()).unwrap();
                let age = now.0 - info.abort_time.0;
                assert!(
                    (0..600_000_000).contains(&age),
                    "abort time {} now {now}",
                    info.abort_time
                );
            }
            (None, false) => {}
            (info, _) => panic!("abort info {info:?} with parallel={parallel}"),
        }
    }

    // Rows: the committed ones with sub_xid != the aborted subtransaction; some rows of the
    // rolled-back savepoint were streamed before it rolled back; the aborted transaction's
    // streamed rows carry its xid.
    let mut kept = Vec::new();
    let mut rolled_back_sub = Vec::new();
    let mut rolled_back_top = Vec::new();
    let mut in_block = None;
    for e in events {
        match e.kind() {
            EventKind::StreamStart(s) => in_block = Some(s.xid),
            EventKind::StreamStop => in_block = None,
            EventKind::Insert(ch) if in_block.is_some() => {
                let id = int(ch.new.as_ref().unwrap(), "id");
                assert_eq!(e.xid(), in_block);
                let sub_xid = ch.sub_xid.expect("streamed change carries its xid");
                if in_block == Some(aborted_xid) {
                    assert_eq!(sub_xid, aborted_xid);
                    rolled_back_top.push(id);
                } else if sub_xid == sub.subxid {
                    rolled_back_sub.push(id);
                } else {
                    kept.push(id);
                }
            }
            _ => {}
        }
    }
    assert_eq!(kept, w.committed);
    assert!(
        !rolled_back_sub.is_empty(),
        "the savepoint was streamed before its rollback"
    );
    assert!(
        rolled_back_sub
            .iter()
            .all(|id| (100_001..=101_000).contains(id))
    );
    assert!(!rolled_back_top.is_empty());
    assert!(
        rolled_back_top
            .iter()
            .all(|id| (200_001..=201_000).contains(id))
    );

    let commits: Vec<_> = events
        .iter()
        .filter_map(|e| match e.kind() {
            EventKind::StreamCommit(sc) => Some(*sc),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].xid, w.main_xid);
    assert!(commits[0].commit_lsn < commits[0].end_lsn);
    let sc_event = events
        .iter()
        .find(|e| matches!(e.kind(), EventKind::StreamCommit(_)))
        .unwrap();
    assert_eq!(sc_event.ack_lsn(), Some(commits[0].end_lsn));

    // The small transaction afterwards is an ordinary one.
    let tail: Vec<&str> = kinds(events).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["commit", "insert", "begin"]);
    assert_eq!(inserted_id(&events[events.len() - 2]), Some(3000));
}

/// Checks the assembled view: the committed streamed transaction once, whole, in commit
/// order, without the rolled-back savepoint; nothing of the rolled-back transaction.
fn check_streamed_assembled(items: Vec<Assembled>, w: &Workload) {
    let mut txns = Vec::new();
    for item in items {
        match item {
            Assembled::Transaction(t) => txns.push(t),
            Assembled::Event(e) => panic!("unexpected standalone event {e:?}"),
            _ => panic!("unexpected item"),
        }
    }
    assert_eq!(txns.len(), 2);
    let (first, rest) = txns.split_at_mut(1);
    let (main, last) = (&mut first[0], &mut rest[0]);
    assert_eq!(main.xid(), w.main_xid);
    assert!(main.was_streamed());
    assert_eq!(main.kind(), &TransactionKind::Committed);
    assert_eq!(transaction_ids(main), w.committed);
    assert!(!last.was_streamed());
    assert!(main.end_lsn() < last.commit_lsn(), "commit order");
    assert_eq!(transaction_ids(last), [3000]);
}

fn streamed(parallel: bool) {
    for_each_server(|install| {
        let c = cluster(install, &[("logical_decoding_work_mem", "64kB")]);
        if parallel
            && !skip_unless(
                c.major() >= 16,
                "protocol 4 (parallel streaming) needs PostgreSQL 16",
            )
        {
            return;
        }
        c.execute(STREAMED_SETUP).unwrap();
        let w = streamed_workload(&c);
        // A large transaction that rolls back while the stream is decoding it (PostgreSQL
        // 18 does not stream a transaction already known to be aborted), then a small one.
        let rolled_back = "BEGIN; \
             INSERT INTO big SELECT g, repeat('z', 200) FROM generate_series(200001, 201000) g; \
             SELECT pg_sleep(2); \
             ROLLBACK; \
             INSERT INTO big VALUES (3000, 'last');";
        std::thread::scope(|scope| {
            let writer = scope.spawn(|| c.execute(rolled_back));
            block_on(async {
                let (version, mode) = if parallel {
                    (4, Streaming::Parallel)
                } else {
                    (2, Streaming::On)
                };
                let mut stream = builder(&c, "s", "p")
                    .proto_version(version)
                    .streaming(mode)
                    .start()
                    .await
                    .unwrap();
                let events = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
                check_streamed_events(&events, &w, parallel);
                let feedback = stream.feedback().clone();
                let (items, _) = assemble(&events, AssemblyOptions::default(), &feedback);
                check_streamed_assembled(items, &w);
                // Again with a memory limit that spills most of the streamed transaction,
                // including rows of the savepoint rolled back afterwards.
                let small = AssemblyOptions {
                    memory_limit: 16 << 10,
                    ..AssemblyOptions::default()
                };
                let (items, peak) = assemble(&events, small, &feedback);
                assert!(peak <= (16 << 10) + 1024, "peak {peak}");
                check_streamed_assembled(items, &w);
                stream.shutdown().await.unwrap();
            });
            writer.join().unwrap().unwrap();
        });
    });
}

#[test]
fn protocol_v2_streamed_transactions() {
    streamed(false);
}

#[test]
fn protocol_v4_parallel_streamed_transactions() {
    streamed(true);
}

#[test]
fn protocol_v3_two_phase() {
    for_each_server(|install| {
        let c = cluster(install, &[("max_prepared_transactions", "5")]);
        if !skip_unless(
            c.major() >= 15,
            "two-phase decoding in pgoutput (protocol 3) needs PostgreSQL 15",
        ) {
            return;
        }
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY); \
             CREATE PUBLICATION p FOR TABLE t; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput', false, true); \
             BEGIN; INSERT INTO t VALUES (1), (2); PREPARE TRANSACTION 'g1'; \
             BEGIN; INSERT INTO t VALUES (3); PREPARE TRANSACTION 'g2';",
        )
        .unwrap();
        let xid = |gid: &str| {
            let x: u32 = c
                .psql(&format!(
                    "SELECT transaction FROM pg_prepared_xacts WHERE gid = '{gid}'"
                ))
                .unwrap()
                .parse()
                .unwrap();
            Xid(x)
        };
        let (g1, g2) = (xid("g1"), xid("g2"));
        c.execute("COMMIT PREPARED 'g1'; ROLLBACK PREPARED 'g2'; INSERT INTO t VALUES (4);")
            .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p")
                .proto_version(3)
                .two_phase(true)
                .start()
                .await
                .unwrap();
            let events = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
            assert_eq!(
                kinds(&events),
                [
                    "begin_prepare",
                    "insert",
                    "insert",
                    "prepare",
                    "begin_prepare",
                    "insert",
                    "prepare",
                    "commit_prepared",
                    "rollback_prepared",
                    "begin",
                    "insert",
                    "commit"
                ]
            );
            let ids: Vec<(Option<Xid>, i64)> = events
                .iter()
                .filter_map(|e| inserted_id(e).map(|id| (e.xid(), id)))
                .collect();
            assert_eq!(ids[..3], [(Some(g1), 1), (Some(g1), 2), (Some(g2), 3)]);
            assert_eq!(ids[3].1, 4);
            let mut prepares = Vec::new();
            for e in &events {
                match e.kind() {
                    EventKind::Prepare(p) => {
                        assert_eq!(e.ack_lsn(), Some(p.end_lsn));
                        prepares.push((p.xid, p.gid.clone()));
                    }
                    EventKind::CommitPrepared(cp) => {
                        assert_eq!((cp.xid, cp.gid.as_str()), (g1, "g1"));
                        assert_eq!(e.ack_lsn(), Some(cp.end_lsn));
                    }
                    EventKind::RollbackPrepared(rp) => {
                        assert_eq!((rp.xid, rp.gid.as_str()), (g2, "g2"));
                        assert_eq!(e.ack_lsn(), Some(rp.rollback_end_lsn));
                    }
                    _ => {}
                }
            }
            assert_eq!(prepares, [(g1, "g1".to_owned()), (g2, "g2".to_owned())]);

            let feedback = stream.feedback().clone();
            // Delivered at PREPARE: both prepared transactions, then the outcomes.
            let at_prepare = AssemblyOptions {
                two_phase: TwoPhaseDelivery::AtPrepare,
                ..AssemblyOptions::default()
            };
            let (items, _) = assemble(&events, at_prepare, &feedback);
            let mut seen = Vec::new();
            for item in items {
                match item {
                    Assembled::Transaction(mut t) => {
                        let kind = match t.kind() {
                            TransactionKind::Prepared { gid } => format!("prepared {gid}"),
                            TransactionKind::Committed => "committed".to_owned(),
                            _ => panic!("unexpected kind"),
                        };
                        seen.push(format!("{kind} {:?}", transaction_ids(&mut t)));
                    }
                    Assembled::Event(e) => seen.push(e.kind_name().to_owned()),
                    _ => panic!("unexpected item"),
                }
            }
            assert_eq!(
                seen,
                [
                    "prepared g1 [1, 2]",
                    "prepared g2 [3]",
                    "commit_prepared",
                    "rollback_prepared",
                    "committed [4]"
                ]
            );

            // Delivered at COMMIT PREPARED: g1 as a committed transaction at its commit,
            // g2 dropped (its ROLLBACK PREPARED still handed out for acknowledgement).
            let at_commit = AssemblyOptions {
                two_phase: TwoPhaseDelivery::AtCommitPrepared,
                ..AssemblyOptions::default()
            };
            let (items, _) = assemble(&events, at_commit, &feedback);
            let mut seen = Vec::new();
            for item in items {
                match item {
                    Assembled::Transaction(mut t) => {
                        assert_eq!(t.kind(), &TransactionKind::Committed);
                        seen.push(format!("{} {:?}", t.xid() == g1, transaction_ids(&mut t)));
                    }
                    Assembled::Event(e) => seen.push(e.kind_name().to_owned()),
                    _ => panic!("unexpected item"),
                }
            }
            assert_eq!(seen, ["true [1, 2]", "rollback_prepared", "false [4]"]);
            stream.shutdown().await.unwrap();
        });
    });
}

#[test]
fn protocol_v3_streamed_prepare() {
    for_each_server(|install| {
        let c = cluster(
            install,
            &[
                ("max_prepared_transactions", "5"),
                ("logical_decoding_work_mem", "64kB"),
            ],
        );
        if !skip_unless(
            c.major() >= 15,
            "two-phase decoding in pgoutput (protocol 3) needs PostgreSQL 15",
        ) {
            return;
        }
        c.execute(
            "CREATE TABLE big (id int PRIMARY KEY, pad text); \
             ALTER TABLE big ALTER pad SET STORAGE PLAIN; \
             CREATE PUBLICATION p FOR TABLE big; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput', false, true); \
             BEGIN; \
             INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 1000) g; \
             PREPARE TRANSACTION 'big1';",
        )
        .unwrap();
        let xid = Xid(c
            .psql("SELECT transaction FROM pg_prepared_xacts WHERE gid = 'big1'")
            .unwrap()
            .parse()
            .unwrap());
        c.execute("COMMIT PREPARED 'big1'; INSERT INTO big VALUES (3000, 'last');")
            .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p")
                .proto_version(3)
                .streaming(Streaming::On)
                .two_phase(true)
                .start()
                .await
                .unwrap();
            let events = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
            let summary: Vec<&str> = kinds(&events)
                .into_iter()
                .filter(|k| *k != "insert")
                .collect();
            // Blocks (start/stop pairs), the stream prepare, the commit, the small txn.
            let (blocks, tail) = summary.split_at(summary.len() - 4);
            assert_eq!(
                tail,
                ["stream_prepare", "commit_prepared", "begin", "commit"]
            );
            assert!(blocks.len() >= 4, "streamed in several blocks: {summary:?}");
            assert!(
                blocks
                    .chunks(2)
                    .all(|pair| pair == ["stream_start", "stream_stop"]),
                "{summary:?}"
            );
            let streamed_ids: Vec<i64> = events
                .iter()
                .filter(|e| e.xid() == Some(xid))
                .filter_map(inserted_id)
                .collect();
            assert_eq!(streamed_ids, (1..=1000).collect::<Vec<_>>());
            let sp = events
                .iter()
                .find_map(|e| match e.kind() {
                    EventKind::StreamPrepare(p) => {
                        Some((p.xid, p.gid.clone(), e.ack_lsn(), p.end_lsn))
                    }
                    _ => None,
                })
                .unwrap();
            assert_eq!((sp.0, sp.1.as_str(), sp.2), (xid, "big1", Some(sp.3)));

            let feedback = stream.feedback().clone();
            for (delivery, want) in [
                (
                    TwoPhaseDelivery::AtPrepare,
                    &["prepared big1 1000", "commit_prepared", "committed 1"][..],
                ),
                (
                    TwoPhaseDelivery::AtCommitPrepared,
                    &["committed 1000", "committed 1"][..],
                ),
            ] {
                let options = AssemblyOptions {
                    two_phase: delivery,
                    memory_limit: 32 << 10,
                };
                let (items, _) = assemble(&events, options, &feedback);
                let mut seen = Vec::new();
                for item in items {
                    match item {
                        Assembled::Transaction(mut t) => {
                            let kind = match t.kind() {
                                TransactionKind::Prepared { gid } => format!("prepared {gid}"),
                                TransactionKind::Committed => "committed".to_owned(),
                                _ => panic!("unexpected kind"),
                            };
                            let ids = transaction_ids(&mut t);
                            if ids.len() == 1000 {
                                assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
                                assert_eq!(t.xid(), xid);
                                assert!(t.was_streamed());
                            } else {
                                assert_eq!(ids, [3000]);
                            }
                            seen.push(format!("{kind} {}", ids.len()));
                        }
                        Assembled::Event(e) => seen.push(e.kind_name().to_owned()),
                        _ => panic!("unexpected item"),
                    }
                }
                assert_eq!(seen, want, "{delivery:?}");
            }
            stream.shutdown().await.unwrap();
        });
    });
}
