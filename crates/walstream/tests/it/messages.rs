//! Logical decoding messages (transactional and not) and TRUNCATE of several relations with
//! CASCADE / RESTART IDENTITY.

use walstream::{Assembled, AssemblyOptions, EventKind};
use walstream_test_support::for_each_server;

use crate::util::{assemble, block_on, builder, cluster, inserted_id, kinds, until};

#[test]
fn transactional_and_non_transactional_messages() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY); \
             CREATE PUBLICATION p FOR TABLE t; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput'); \
             BEGIN; \
             INSERT INTO t VALUES (1); \
             SELECT pg_logical_emit_message(true, 'txn/prefix', 'in the transaction'); \
             SELECT pg_logical_emit_message(false, 'now', '\\x00ff01'::bytea); \
             COMMIT; \
             BEGIN; \
             SELECT pg_logical_emit_message(true, 'lost', 'rolled back'); \
             SELECT pg_logical_emit_message(false, 'kept', 'outlives the rollback'); \
             ROLLBACK; \
             INSERT INTO t VALUES (2);",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p").messages(true).start().await.unwrap();
            let mut commits = 0;
            let events = until(&mut stream, |e| {
                commits += usize::from(matches!(e.kind(), EventKind::Commit(_)));
                commits == 2
            })
            .await;
            // Non-transactional messages are sent when decoded, before the transaction they
            // were emitted in commits.
            assert_eq!(
                kinds(&events),
                [
                    "message", "begin", "insert", "message", "commit", "message", "begin",
                    "insert", "commit"
                ]
            );
            let msgs: Vec<(bool, String, Vec<u8>, bool)> = events
                .iter()
                .filter_map(|e| match e.kind() {
                    EventKind::Message(m) => Some((
                        m.flags & 1 == 1,
                        m.prefix.clone(),
                        m.content.to_vec(),
                        e.ack_lsn().is_some(),
                    )),
                    _ => None,
                })
                .collect();
            assert_eq!(
                msgs,
                [
                    (false, "now".to_owned(), vec![0, 0xff, 1], true),
                    (
                        true,
                        "txn/prefix".to_owned(),
                        b"in the transaction".to_vec(),
                        false
                    ),
                    (
                        false,
                        "kept".to_owned(),
                        b"outlives the rollback".to_vec(),
                        true
                    ),
                ]
            );
            // A transactional message carries its transaction's xid; a non-transactional
            // one is a boundary of its own, acknowledged at its LSN.
            let begin_xid = events
                .iter()
                .find_map(|e| match e.kind() {
                    EventKind::Begin(b) => Some(b.xid),
                    _ => None,
                })
                .unwrap();
            let txn_msg = events
                .iter()
                .find(|e| matches!(e.kind(), EventKind::Message(m) if m.prefix == "txn/prefix"))
                .unwrap();
            assert_eq!(txn_msg.xid(), Some(begin_xid));
            if let EventKind::Message(m) = txn_msg.kind() {
                assert_eq!(m.xid, None, "xid only sent inside streamed blocks");
            }
            let now_msg = &events[0];
            if let EventKind::Message(m) = now_msg.kind() {
                assert_eq!(now_msg.ack_lsn(), Some(m.lsn));
            }

            // Assembled: the non-transactional messages stand alone, the transactional one
            // is part of its transaction.
            let (items, _) = assemble(&events, AssemblyOptions::default(), stream.feedback());
            let seen: Vec<String> = items
                .into_iter()
                .map(|item| match item {
                    Assembled::Transaction(mut t) => {
                        let mut parts = Vec::new();
                        while let Some(ev) = t.next_change() {
                            let ev = ev.unwrap();
                            match ev.kind() {
                                EventKind::Message(m) => parts.push(m.prefix.clone()),
                                _ => {
                                    if let Some(id) = inserted_id(&ev) {
                                        parts.push(id.to_string());
                                    }
                                }
                            }
                        }
                        format!("txn {}", parts.join(","))
                    }
                    Assembled::Event(e) => match e.kind() {
                        EventKind::Message(m) => format!("message {}", m.prefix),
                        _ => e.kind_name().to_owned(),
                    },
                    _ => panic!("unexpected item"),
                })
                .filter(|s| s != "relation")
                .collect();
            assert_eq!(
                seen,
                ["message now", "txn 1,txn/prefix", "message kept", "txn 2"]
            );
            stream.shutdown().await.unwrap();
        });
    });
}

#[test]
fn truncate_several_relations_with_options() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TABLE a (id int PRIMARY KEY); \
             CREATE TABLE b (id serial PRIMARY KEY, a_id int REFERENCES a); \
             CREATE TABLE c (id int); \
             CREATE PUBLICATION p FOR TABLE a, b, c; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput'); \
             INSERT INTO a VALUES (1); INSERT INTO b (a_id) VALUES (1); INSERT INTO c VALUES (1); \
             TRUNCATE a CASCADE; \
             TRUNCATE c, b RESTART IDENTITY; \
             TRUNCATE c;",
        )
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s", "p").start().await.unwrap();
            let mut commits = 0;
            let events = until(&mut stream, |e| {
                commits += usize::from(matches!(e.kind(), EventKind::Commit(_)));
                commits == 6
            })
            .await;
            let truncates: Vec<(Vec<String>, bool, bool)> = events
                .iter()
                .filter_map(|e| match e.kind() {
                    EventKind::Truncate(t) => {
                        let mut names: Vec<String> = t
                            .relations
                            .iter()
                            .map(|r| format!("{}.{}", r.namespace, r.name))
                            .collect();
                        names.sort();
                        Some((names, t.options.cascade(), t.options.restart_identity()))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                truncates,
                [
                    (
                        vec!["public.a".to_owned(), "public.b".to_owned()],
                        true,
                        false
                    ),
                    (
                        vec!["public.b".to_owned(), "public.c".to_owned()],
                        false,
                        true
                    ),
                    (vec!["public.c".to_owned()], false, false),
                ]
            );
            let trunc = events
                .iter()
                .find(|e| matches!(e.kind(), EventKind::Truncate(_)))
                .unwrap();
            assert!(trunc.xid().is_some());
            assert!(trunc.relation().is_some());
            stream.shutdown().await.unwrap();
        });
    });
}
