//! Acknowledgement moves `confirmed_flush_lsn` exactly as docs/acknowledgement.md says: to
//! the end LSN of the highest acknowledged commit, never past an unacknowledged transaction
//! (not even with keepalives, not for a mid-transaction LSN), unacknowledged transactions are
//! sent again by the next stream, and WAL of unpublished tables does not hold the slot back
//! once everything delivered is acknowledged.

use std::time::Duration;

use walstream::{
    Assembled, AssemblyOptions, Event, EventKind, Lsn, TransactionAssembler, TransactionKind,
    TwoPhaseDelivery,
};
use walstream_test_support::{Cluster, for_each_server, skip_unless, wait_for};

use crate::util::{block_on, builder, cluster, confirmed, inserted_id, next, until_commits};

fn setup(c: &Cluster) -> u64 {
    c.execute(
        "CREATE TABLE t (id int PRIMARY KEY); \
         CREATE TABLE other (x int); \
         CREATE PUBLICATION p FOR TABLE t; \
         SELECT pg_create_logical_replication_slot('s', 'pgoutput');",
    )
    .unwrap();
    confirmed(c, "s")
}

fn wait_confirmed(c: &Cluster, want: Lsn) {
    wait_for("confirmed_flush_lsn", Duration::from_secs(20), || {
        (confirmed(c, "s") == want.0).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: confirmed {}, want {want}", Lsn(confirmed(c, "s"))));
}

/// Drives the stream (keepalives, status updates) for `d` without expecting row events;
/// `ack_empty` acknowledges the empty transactions PostgreSQL 14 sends.
async fn idle(stream: &mut walstream::LogicalStream, d: Duration, ack_empty: bool) {
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(200), stream.next_event()).await {
            let ev = r.unwrap().unwrap();
            // PostgreSQL 14 sends empty transactions for writes to unpublished tables.
            assert!(
                matches!(ev.kind(), EventKind::Begin(_) | EventKind::Commit(_)),
                "unexpected {ev:?}"
            );
            if ack_empty {
                ev.ack();
            }
        }
        stream.send_feedback().await.unwrap();
    }
}

fn commits(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| matches!(e.kind(), EventKind::Commit(_)))
        .collect()
}

#[test]
fn confirmed_flush_lsn_follows_acknowledgements_exactly() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        let created = setup(&c);
        for i in 1..=3 {
            c.execute(&format!("INSERT INTO t VALUES ({i})")).unwrap();
        }
        block_on(async {
            let mut stream = builder(&c, "s", "p").start().await.unwrap();
            let events = until_commits(&mut stream, 3).await;
            let ids: Vec<i64> = events.iter().filter_map(inserted_id).collect();
            assert_eq!(ids, [1, 2, 3]);
            let cs = commits(&events);
            let ends: Vec<Lsn> = cs
                .iter()
                .map(|e| match e.kind() {
                    EventKind::Commit(c) => {
                        assert_eq!(e.ack_lsn(), Some(c.end_lsn), "ack at the commit's end");
                        assert!(c.commit_lsn < c.end_lsn);
                        c.end_lsn
                    }
                    _ => unreachable!(),
                })
                .collect();

            // Nothing acknowledged: the slot stays where it was created, keepalives or not.
            idle(&mut stream, Duration::from_secs(2), false).await;
            assert_eq!(confirmed(&c, "s"), created);

            // Acknowledging the second commit acknowledges the first too; the slot moves
            // to its end exactly and stays there while the third is unacknowledged.
            assert!(cs[1].ack());
            stream.send_feedback().await.unwrap();
            wait_confirmed(&c, ends[1]);
            idle(&mut stream, Duration::from_secs(2), false).await;
            assert_eq!(
                Lsn(confirmed(&c, "s")),
                ends[1],
                "moved past an unacked txn"
            );
            assert_eq!(stream.feedback().unacknowledged(), 1);

            // An LSN inside the third transaction (its commit record's start) snaps down to
            // the last complete boundary.
            let EventKind::Commit(third) = cs[2].kind() else {
                unreachable!()
            };
            stream.feedback().ack(third.commit_lsn);
            stream.send_feedback().await.unwrap();
            idle(&mut stream, Duration::from_secs(1), false).await;
            assert_eq!(Lsn(confirmed(&c, "s")), ends[1]);

            // A fourth transaction is delivered but not acknowledged: the next stream over
            // the slot sends it again, and nothing before it.
            c.execute("INSERT INTO t VALUES (4)").unwrap();
            let fourth = until_commits(&mut stream, 1).await;
            assert_eq!(
                fourth.iter().filter_map(inserted_id).collect::<Vec<_>>(),
                [4]
            );
            assert!(cs[2].ack());
            stream.shutdown().await.unwrap();
            wait_confirmed(&c, ends[2]);
            let fourth_end = commits(&fourth)[0].ack_lsn().unwrap();

            let mut again = builder(&c, "s", "p").start().await.unwrap();
            let resent = until_commits(&mut again, 1).await;
            assert_eq!(
                resent.iter().filter_map(inserted_id).collect::<Vec<_>>(),
                [4]
            );
            assert_eq!(commits(&resent)[0].ack_lsn(), Some(fourth_end));
            assert!(commits(&resent)[0].ack());

            // Everything acknowledged, then only unpublished writes: keepalives move the
            // slot past the last commit to the server's position.
            c.execute("INSERT INTO other SELECT generate_series(1, 1000)")
                .unwrap();
            c.execute("INSERT INTO other SELECT generate_series(1, 1000)")
                .unwrap();
            let target = c.current_wal_lsn().unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                idle(&mut again, Duration::from_millis(400), true).await;
                let now = confirmed(&c, "s");
                if now >= target {
                    assert!(now > fourth_end.0);
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "idle slot stuck at {}, target {}",
                    Lsn(now),
                    Lsn(target)
                );
            }
            again.shutdown().await.unwrap();
        });
    });
}

#[test]
fn assembled_transaction_ack_moves_the_slot_to_its_end() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        setup(&c);
        c.execute(
            "BEGIN; INSERT INTO t VALUES (1); INSERT INTO t VALUES (2); COMMIT; \
             INSERT INTO t VALUES (3);",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p").start().await.unwrap();
            let mut asm =
                TransactionAssembler::new(AssemblyOptions::default(), stream.feedback().clone());
            let mut txns = Vec::new();
            while txns.len() < 2 {
                asm.push(next(&mut stream).await).unwrap();
                while let Some(item) = asm.poll() {
                    if let Assembled::Transaction(t) = item {
                        txns.push(t);
                    }
                }
            }
            assert!(asm.is_idle());
            assert_eq!(asm.buffered_bytes(), 0);
            assert_eq!(crate::util::transaction_ids(&mut txns[0]), [1, 2]);
            txns[0].ack();
            stream.send_feedback().await.unwrap();
            wait_confirmed(&c, txns[0].end_lsn());
            idle(&mut stream, Duration::from_secs(2), false).await;
            assert_eq!(Lsn(confirmed(&c, "s")), txns[0].end_lsn());
            txns[1].ack();
            stream.send_feedback().await.unwrap();
            wait_confirmed(&c, txns[1].end_lsn());
            stream.shutdown().await.unwrap();
        });
    });
}

#[test]
fn prepared_transaction_held_until_commit_prepared_caps_the_slot() {
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
             BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'g1'; \
             INSERT INTO t VALUES (2);",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p")
                .proto_version(3)
                .two_phase(true)
                .start()
                .await
                .unwrap();
            let options = AssemblyOptions {
                two_phase: TwoPhaseDelivery::AtCommitPrepared,
                ..AssemblyOptions::default()
            };
            let mut asm = TransactionAssembler::new(options, stream.feedback().clone());
            let mut prepare_lsn = None;
            let mut take = async |stream: &mut walstream::LogicalStream,
                                  prepare_lsn: &mut Option<Lsn>| {
                loop {
                    let ev = next(stream).await;
                    if let EventKind::Prepare(p) = ev.kind() {
                        *prepare_lsn = Some(p.prepare_lsn);
                    }
                    asm.push(ev).unwrap();
                    if let Some(Assembled::Transaction(t)) = asm.poll() {
                        return t;
                    }
                }
            };
            // The prepared transaction is held; the later ordinary one is delivered.
            let mut second = take(&mut stream, &mut prepare_lsn).await;
            assert_eq!(crate::util::transaction_ids(&mut second), [2]);
            let prepare_lsn = prepare_lsn.expect("PREPARE seen before the second commit");
            second.ack();
            stream.send_feedback().await.unwrap();
            // Acknowledged past the held PREPARE: the slot stops right before it, so the
            // server would send the prepared transaction again after a reconnect.
            wait_confirmed(&c, prepare_lsn);
            idle(&mut stream, Duration::from_secs(1), false).await;
            assert_eq!(Lsn(confirmed(&c, "s")), prepare_lsn);

            c.execute("COMMIT PREPARED 'g1'").unwrap();
            let mut none = None;
            let mut first = take(&mut stream, &mut none).await;
            assert_eq!(first.kind(), &TransactionKind::Committed);
            assert_eq!(crate::util::transaction_ids(&mut first), [1]);
            first.ack();
            stream.send_feedback().await.unwrap();
            wait_confirmed(&c, first.end_lsn());
            stream.shutdown().await.unwrap();
        });
    });
}

/// A prepared transaction held for COMMIT PREPARED, a later transaction acknowledged, then a
/// reconnect: the server sends the prepared transaction again (the slot stopped before it)
/// and it must be delivered whole at its COMMIT PREPARED, not skipped as acknowledged.
#[test]
fn held_prepared_transaction_survives_a_reconnect() {
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
             BEGIN; INSERT INTO t VALUES (1); PREPARE TRANSACTION 'g1'; \
             INSERT INTO t VALUES (2);",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p")
                .proto_version(3)
                .two_phase(true)
                .retry(walstream::RetryPolicy::default())
                .start()
                .await
                .unwrap();
            let options = AssemblyOptions {
                two_phase: TwoPhaseDelivery::AtCommitPrepared,
                ..AssemblyOptions::default()
            };
            let mut asm = TransactionAssembler::new(options, stream.feedback().clone());
            let mut delivered = Vec::new();
            let mut prepare_lsn = None;
            let mut resumed = false;
            // Until the COMMIT PREPARED of g1 came out, as a transaction or on its own.
            let mut terminated = false;
            loop {
                let ev = next(&mut stream).await;
                if let EventKind::Prepare(p) = ev.kind() {
                    prepare_lsn.get_or_insert(p.prepare_lsn);
                }
                resumed |= matches!(ev.kind(), EventKind::Resumed(_));
                asm.push(ev).unwrap();
                let mut done = false;
                while let Some(item) = asm.poll() {
                    match item {
                        Assembled::Transaction(mut t) => {
                            let ids = crate::util::transaction_ids(&mut t);
                            delivered.push(format!("txn {ids:?}"));
                            t.ack();
                            done |= ids == [1];
                        }
                        Assembled::Event(e) => {
                            if matches!(e.kind(), EventKind::CommitPrepared(_)) {
                                delivered.push("commit_prepared alone".to_owned());
                                done = true;
                            }
                            e.ack();
                        }
                        _ => panic!("unexpected item"),
                    }
                }
                if done {
                    break;
                }
                if delivered == ["txn [2]"] && !terminated {
                    terminated = true;
                    stream.send_feedback().await.unwrap();
                    wait_confirmed(&c, prepare_lsn.unwrap());
                    assert!(c.terminate_walsenders().unwrap() >= 1);
                    c.execute("COMMIT PREPARED 'g1'").unwrap();
                }
            }
            assert!(resumed, "the stream reconnected");
            assert_eq!(delivered, ["txn [2]", "txn [1]"]);
            stream.send_feedback().await.unwrap();
            stream.shutdown().await.unwrap();
        });
    });
}
