//! Unchanged TOAST values: an UPDATE that does not touch a large out-of-line column yields an
//! unchanged-TOAST field (never NULL, never dropped) under REPLICA IDENTITY DEFAULT, and under
//! FULL the old row carries the whole value; serde reports `Toasted::Unchanged` and JSON lines
//! list the column in `unchanged`.

use walstream::{
    DebeziumEncoder, DebeziumOptions, EventKind, Field, Toasted, UNAVAILABLE_VALUE_PLACEHOLDER,
    Value,
};
use walstream_test_support::for_each_server;

use crate::util::{block_on, builder, cluster, int, until};

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Doc {
    id: i32,
    big: Toasted<String>,
    n: i32,
}

#[test]
fn unchanged_toast_under_replica_identity_default_and_full() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        // 6400 hex digits of md5 output: not compressible below the 2 kB TOAST threshold.
        c.execute(
            "CREATE TABLE doc_default (id int PRIMARY KEY, big text, n int); \
             CREATE TABLE doc_full (id int PRIMARY KEY, big text, n int); \
             ALTER TABLE doc_full REPLICA IDENTITY FULL; \
             CREATE PUBLICATION p FOR TABLE doc_default, doc_full; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput'); \
             CREATE TABLE src AS SELECT string_agg(md5(random()::text), '') AS big \
                 FROM generate_series(1, 200); \
             INSERT INTO doc_default SELECT 1, big, 0 FROM src; \
             INSERT INTO doc_full SELECT 1, big, 0 FROM src; \
             UPDATE doc_default SET n = 1 WHERE id = 1; \
             UPDATE doc_full SET n = 1 WHERE id = 1;",
        )
        .unwrap();
        let big = c.psql("SELECT big FROM src").unwrap();
        assert_eq!(big.len(), 6400);
        let external: String = c
            .psql("SELECT pg_column_size(big) FROM doc_default")
            .unwrap();
        assert!(
            external.parse::<u32>().unwrap() > 2048,
            "stored size {external}"
        );
        block_on(async {
            let mut stream = builder(&c, "s", "p").start().await.unwrap();
            // Up to the fourth row change (PostgreSQL 14 also sends empty transactions).
            let mut changes = 0;
            let events = until(&mut stream, |e| {
                changes += usize::from(e.kind().row_change().is_some());
                changes == 4
            })
            .await;
            let changes: Vec<_> = events
                .iter()
                .filter(|e| e.kind().row_change().is_some())
                .collect();
            assert_eq!(
                changes.iter().map(|e| e.kind_name()).collect::<Vec<_>>(),
                ["insert", "insert", "update", "update"]
            );

            // The inserts carry the whole value.
            for e in &changes[..2] {
                let row = e.kind().row_change().unwrap().new.as_ref().unwrap();
                let v = row.get("big").unwrap();
                assert_eq!(v.value().and_then(Value::as_str), Some(big.as_str()));
                let doc: Doc = row.deserialize().unwrap();
                assert_eq!(doc.big, Toasted::Value(big.clone()));
            }

            for (e, table, full) in [
                (changes[2], "doc_default", false),
                (changes[3], "doc_full", true),
            ] {
                let EventKind::Update(ch) = e.kind() else {
                    panic!("not an update: {e:?}");
                };
                assert_eq!(ch.table(), table);
                let new = ch.new.as_ref().unwrap();
                assert_eq!(new.len(), 3, "no column dropped");
                let field = new.get("big").unwrap();
                assert_eq!(field, Field::UnchangedToast);
                assert!(!field.is_null());
                assert!(new.is_unchanged_toast(1));
                assert_eq!(new.unchanged_columns().collect::<Vec<_>>(), ["big"]);
                assert_eq!((int(new, "id"), int(new, "n")), (1, 1));
                let doc: Doc = new.deserialize().unwrap();
                assert_eq!(
                    doc,
                    Doc {
                        id: 1,
                        big: Toasted::Unchanged,
                        n: 1
                    }
                );
                // A plain String cannot hold "unchanged": an error naming the column, never
                // an empty or null value.
                #[derive(serde::Deserialize, Debug)]
                #[allow(dead_code)]
                struct Plain {
                    id: i32,
                    big: Option<String>,
                    n: i32,
                }
                let err = new.deserialize::<Plain>().unwrap_err();
                assert_eq!(err.column(), Some("big"), "{err}");

                let line = e.to_json_line().unwrap();
                let json: serde_json::Value = serde_json::from_str(&line).unwrap();
                assert_eq!(json["unchanged"], serde_json::json!(["big"]), "{line}");
                assert_eq!(json["new"], serde_json::json!({"id": 1, "n": 1}), "{line}");

                // Debezium: the placeholder for the unavailable value, the whole old row
                // under FULL (nothing before under DEFAULT: the key did not change).
                let mut enc = DebeziumEncoder::new(DebeziumOptions::new("srv", "postgres"));
                let records = enc.encode_at(e, 0).unwrap();
                assert_eq!(records.len(), 1);
                let dbz: serde_json::Value = serde_json::from_str(&records[0].value).unwrap();
                assert_eq!(dbz["op"], "u");
                assert_eq!(
                    dbz["after"],
                    serde_json::json!({"id": 1, "big": UNAVAILABLE_VALUE_PLACEHOLDER, "n": 1})
                );
                if full {
                    assert_eq!(
                        dbz["before"],
                        serde_json::json!({"id": 1, "big": big, "n": 0})
                    );
                } else {
                    assert!(dbz["before"].is_null(), "{dbz}");
                }

                if full {
                    let old = ch
                        .old
                        .as_ref()
                        .expect("REPLICA IDENTITY FULL sends the old row");
                    assert!(!old.is_key());
                    let old = old.row();
                    assert_eq!(
                        old.get("big").unwrap().value().and_then(Value::as_str),
                        Some(big.as_str()),
                        "the old row holds the whole value"
                    );
                    assert_eq!(int(old, "n"), 0);
                    assert_eq!(json["old"]["big"], serde_json::json!(big), "{line}");
                } else {
                    assert!(ch.old.is_none(), "key unchanged: no old row under DEFAULT");
                }
            }
            stream.shutdown().await.unwrap();
        });
    });
}
