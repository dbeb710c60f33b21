//! Spilled changes read back from the assembler's temporary file equal the in-memory ones:
//! every change kind (insert, update with an unchanged TOAST value and a full old row,
//! delete, truncate, transactional message), in text and in binary mode.

use walstream::{Assembled, AssemblyOptions, Event, EventKind};
use walstream_test_support::for_each_server;

use crate::util::{assemble, block_on, builder, cluster, until};

/// Everything observable about a change.
fn describe(ev: &Event) -> String {
    let mut s = format!(
        "{} lsn={} xid={:?} commit_lsn={:?} time={:?} ack={:?}",
        ev.kind_name(),
        ev.lsn(),
        ev.xid(),
        ev.commit_lsn(),
        ev.commit_time(),
        ev.ack_lsn()
    );
    match ev.kind() {
        EventKind::Insert(c) | EventKind::Update(c) | EventKind::Delete(c) => {
            s += &format!(
                " rel={}.{} sub={:?} new={:?} old={:?} old_key={:?}",
                c.schema(),
                c.table(),
                c.sub_xid,
                c.new.as_ref().map(|r| r.tuple().raw().clone()),
                c.old.as_ref().map(|o| o.row().tuple().raw().clone()),
                c.old.as_ref().map(|o| o.is_key()),
            );
        }
        EventKind::Truncate(t) => {
            let names: Vec<&str> = t.relations.iter().map(|r| r.name.as_str()).collect();
            s += &format!(" rels={names:?} opts={:?}", t.options);
        }
        EventKind::Message(m) => s += &format!(" {m:?}"),
        EventKind::Relation(r) => s += &format!(" {:?}", r.relation),
        _ => {}
    }
    s += " json=";
    s += &ev.to_json_line().unwrap();
    s
}

fn changes(items: Vec<Assembled>) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        match item {
            Assembled::Transaction(mut t) => {
                out.push(format!("txn {} {} {}", t.xid(), t.end_lsn(), t.len()));
                while let Some(ev) = t.next_change() {
                    out.push(describe(&ev.unwrap()));
                }
            }
            Assembled::Event(e) => out.push(describe(&e)),
            _ => panic!("unexpected item"),
        }
    }
    out
}

#[test]
fn spilled_changes_equal_in_memory_changes() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TABLE doc (id int PRIMARY KEY, big text, n int); \
             ALTER TABLE doc REPLICA IDENTITY FULL; \
             CREATE TABLE t2 (id int PRIMARY KEY, v numeric, at timestamptz); \
             CREATE PUBLICATION p FOR TABLE doc, t2; \
             CREATE TABLE src AS SELECT string_agg(md5(random()::text), '') AS big \
                 FROM generate_series(1, 100); \
             INSERT INTO doc SELECT 1, big, 0 FROM src; \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput'); \
             BEGIN; \
             INSERT INTO t2 VALUES (1, 1.5, '2024-01-01 00:00+00'), (2, NULL, NULL); \
             UPDATE doc SET n = 1 WHERE id = 1; \
             INSERT INTO doc VALUES (2, 'small', NULL); \
             DELETE FROM t2 WHERE id = 2; \
             SELECT pg_logical_emit_message(true, 'pfx', 'content'); \
             TRUNCATE t2; \
             DELETE FROM doc WHERE id = 2; \
             COMMIT;",
        )
        .unwrap();
        for (slot, binary) in [("s_text", false), ("s_bin", true)] {
            block_on(async {
                let mut stream = builder(&c, slot, "p")
                    .binary(binary)
                    .messages(true)
                    .start()
                    .await
                    .unwrap();
                let events = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
                let feedback = stream.feedback().clone();
                let (mem, _) = assemble(&events, AssemblyOptions::default(), &feedback);
                let all_spilled = AssemblyOptions {
                    memory_limit: 0,
                    ..AssemblyOptions::default()
                };
                let (spilled, peak) = assemble(&events, all_spilled, &feedback);
                assert!(peak < 4096, "peak {peak} with a zero limit");
                let (mem, spilled) = (changes(mem), changes(spilled));
                // The transaction header, relations, 8 changes.
                let kinds: Vec<&str> = mem
                    .iter()
                    .filter_map(|l| l.split(' ').next())
                    .filter(|k| *k != "relation")
                    .collect();
                assert_eq!(
                    kinds,
                    [
                        "txn", "insert", "insert", "update", "insert", "delete", "message",
                        "truncate", "delete"
                    ],
                    "binary={binary}"
                );
                for (m, s) in mem.iter().zip(&spilled) {
                    assert_eq!(m, s, "binary={binary}");
                }
                assert_eq!(mem.len(), spilled.len());
                stream.shutdown().await.unwrap();
            });
        }
    });
}
