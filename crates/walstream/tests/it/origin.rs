//! Replication origins: `origin any` delivers changes replicated in with an Origin event
//! naming the origin; `origin none` (PostgreSQL 16+) filters them out.

use walstream::{Event, EventKind, Lsn, OriginFilter};
use walstream_test_support::{Cluster, for_each_server, skip_unless};

use crate::util::{block_on, builder, cluster, inserted_id, until};

fn setup(c: &Cluster) {
    c.execute(
        "CREATE TABLE t (id int PRIMARY KEY); \
         CREATE PUBLICATION p FOR TABLE t; \
         SELECT pg_create_logical_replication_slot('s_any', 'pgoutput'); \
         SELECT pg_create_logical_replication_slot('s_none', 'pgoutput'); \
         SELECT pg_replication_origin_create('node_a'); \
         INSERT INTO t VALUES (1); \
         SELECT pg_replication_origin_session_setup('node_a'); \
         BEGIN; \
         SELECT pg_replication_origin_xact_setup('0/ABCDEF', now()); \
         INSERT INTO t VALUES (2), (3); \
         COMMIT; \
         SELECT pg_replication_origin_session_reset(); \
         INSERT INTO t VALUES (4);",
    )
    .unwrap();
}

/// (kind, inserted id or origin name) pairs.
fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter(|e| !matches!(e.kind(), EventKind::Relation(_) | EventKind::Type(_)))
        .map(|e| match e.kind() {
            EventKind::Origin(o) => format!("origin {} {}", o.name, o.commit_lsn),
            _ => match inserted_id(e) {
                Some(id) => format!("insert {id}"),
                None => e.kind_name().to_owned(),
            },
        })
        .collect::<Vec<_>>()
        .chunk_by(|a, b| a == "begin" && b == "commit")
        // PostgreSQL 14 sends empty transactions (the origin's creation): leave them out.
        .filter(|pair| pair.len() == 1)
        .flatten()
        .cloned()
        .collect()
}

fn is_insert_4(e: &Event) -> bool {
    inserted_id(e) == Some(4)
}

#[test]
fn origin_any_names_the_origin_and_none_filters() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        setup(&c);
        block_on(async {
            let mut any = builder(&c, "s_any", "p");
            if c.major() >= 16 {
                any = any.origin(OriginFilter::Any);
            }
            let mut stream = any.start().await.unwrap();
            let mut events = until(&mut stream, is_insert_4).await;
            events.extend(until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await);
            assert_eq!(
                summary(&events),
                [
                    "begin",
                    "insert 1",
                    "commit",
                    "begin",
                    &format!("origin node_a {}", Lsn(0x00AB_CDEF)),
                    "insert 2",
                    "insert 3",
                    "commit",
                    "begin",
                    "insert 4",
                    "commit"
                ]
            );
            // The Origin event belongs to the transaction it describes.
            let origin = events
                .iter()
                .find(|e| matches!(e.kind(), EventKind::Origin(_)))
                .unwrap();
            let insert2 = events.iter().find(|e| inserted_id(e) == Some(2)).unwrap();
            assert_eq!(origin.xid(), insert2.xid());
            assert!(origin.xid().is_some());
            stream.shutdown().await.unwrap();
        });
        if !skip_unless(
            c.major() >= 16,
            "the origin option of pgoutput needs PostgreSQL 16",
        ) {
            return;
        }
        block_on(async {
            let mut stream = builder(&c, "s_none", "p")
                .origin(OriginFilter::None)
                .start()
                .await
                .unwrap();
            let events = until(&mut stream, is_insert_4).await;
            let mut rest = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
            let mut all = events;
            all.append(&mut rest);
            // The replicated-in transaction is filtered out whole (PostgreSQL 16+ does not
            // send empty transactions).
            assert_eq!(
                summary(&all),
                ["begin", "insert 1", "commit", "begin", "insert 4", "commit"]
            );
            stream.shutdown().await.unwrap();
        });
    });
}
