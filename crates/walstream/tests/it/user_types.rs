//! User-defined types end to end: Debezium's enum schema with the labels the stream looked up
//! (and labels added while it runs), and rows with enums, domains and composites deserialized
//! into Rust types with serde, in text and binary mode.

use serde::Deserialize;
use walstream::{DebeziumEncoder, DebeziumOptions, Event, EventKind, LogicalStream, Oid};
use walstream_test_support::for_each_server;

use crate::util::{block_on, builder, cluster};

/// Waits for the insert with `id` (acknowledging every event) and returns it.
async fn insert_event(stream: &mut LogicalStream, id: i64) -> Event {
    loop {
        let ev = crate::util::next(stream).await;
        ev.ack();
        if crate::util::inserted_id(&ev) == Some(id) {
            return ev;
        }
    }
}

/// The Connect schema of column `name` in a Debezium record's `after` struct.
fn after_schema(record: &serde_json::Value, name: &str) -> serde_json::Value {
    record["schema"]["fields"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no schema for {name}: {record}"))
        .clone()
}

fn enum_schema(allowed: &str, optional: bool) -> serde_json::Value {
    serde_json::json!({"type": "string", "optional": optional, "name": "io.debezium.data.Enum",
                       "version": 1, "parameters": {"allowed": allowed}})
}

/// An enum column is `io.debezium.data.Enum` with the labels in sort order, an array of it an
/// array of that (items not optional, as Debezium has them), a domain over it the enum; a
/// label added while the stream runs (`ALTER TYPE ... ADD VALUE`, also `BEFORE` another, also
/// first seen in an array) is in the schema of the record that uses it. Text and binary mode.
#[test]
fn debezium_enum_schema_follows_added_labels() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE DOMAIN mood_d AS mood; \
             CREATE TABLE em (id int PRIMARY KEY, m mood, ms mood[], md mood_d); \
             CREATE PUBLICATION p FOR TABLE em; \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput');",
        )
        .unwrap();
        let mood = Oid(c
            .psql("SELECT 'mood'::regtype::oid")
            .unwrap()
            .parse()
            .unwrap());
        block_on(async {
            let mut text = builder(&c, "s_text", "p").start().await.unwrap();
            let mut bin = builder(&c, "s_bin", "p")
                .binary(true)
                .start()
                .await
                .unwrap();
            let mut encoders: Vec<DebeziumEncoder> = (0..2)
                .map(|_| {
                    let mut options = DebeziumOptions::new("srv", "postgres");
                    options.include_schema = true;
                    DebeziumEncoder::new(options)
                })
                .collect();
            // (statements before the insert, id, the row, allowed labels).
            let steps: [(&str, i64, &str, &str); 4] = [
                ("", 1, "'happy', '{sad}', 'sad'", "sad,happy"),
                // A label used in the enum column, placed before another.
                (
                    "ALTER TYPE mood ADD VALUE 'ok' BEFORE 'happy'",
                    2,
                    "'ok', '{happy}', 'happy'",
                    "sad,ok,happy",
                ),
                // A label first seen in an array element.
                (
                    "ALTER TYPE mood ADD VALUE 'meh'",
                    3,
                    "'sad', '{sad,meh,NULL}', NULL",
                    "sad,ok,happy,meh",
                ),
                // A label first seen through the domain.
                (
                    "ALTER TYPE mood ADD VALUE 'wow' AFTER 'sad'",
                    4,
                    "NULL, NULL, 'wow'",
                    "sad,wow,ok,happy,meh",
                ),
            ];
            for (ddl, id, row, allowed) in steps {
                if !ddl.is_empty() {
                    c.execute(ddl).unwrap();
                }
                c.execute(&format!("INSERT INTO em VALUES ({id}, {row})"))
                    .unwrap();
                let mut records = Vec::new();
                for (stream, enc) in [&mut text, &mut bin].into_iter().zip(&mut encoders) {
                    let ev = insert_event(stream, id).await;
                    let rec = enc.encode_at(&ev, 0).unwrap().remove(0);
                    records.push(serde_json::from_str::<serde_json::Value>(&rec.value).unwrap());
                }
                assert_eq!(
                    records[0], records[1],
                    "text and binary records of row {id}"
                );
                let rec = &records[0];
                let mut m = enum_schema(allowed, true);
                m["field"] = "m".into();
                assert_eq!(after_schema(rec, "m"), m, "row {id}");
                m["field"] = "md".into();
                assert_eq!(after_schema(rec, "md"), m, "row {id}");
                assert_eq!(
                    after_schema(rec, "ms"),
                    serde_json::json!({"type": "array", "items": enum_schema(allowed, false),
                                       "optional": true, "field": "ms"}),
                    "row {id}"
                );
            }
            for stream in [&text, &bin] {
                let labels = stream.types().unwrap().enum_labels(mood).unwrap();
                assert_eq!(labels.join(","), "sad,wow,ok,happy,meh");
                assert!(stream.type_lookup_failures().is_empty());
            }
            text.shutdown().await.unwrap();
            bin.shutdown().await.unwrap();
        });
    });
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mood {
    Sad,
    Ok,
    Happy,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Pair {
    a: Option<i32>,
    b: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Order {
    label: Mood,
    tags: Vec<Option<String>>,
    sub: Pair,
    amount: f64,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Record {
    id: i32,
    mood: Mood,
    moods: Vec<Option<Mood>>,
    price: String,
    pair: Pair,
    pairs: Vec<Pair>,
}

/// Rows streamed from the server deserialize into Rust types: composites into structs by
/// attribute name (nested, with an enum, an array and a domain inside) and into tuples by
/// position, arrays of composites into `Vec<struct>`, enums into Rust enums by label, domains
/// as their base type. Text and binary mode.
#[test]
fn rows_with_user_types_deserialize_with_serde() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); \
             CREATE DOMAIN price AS numeric(10,2) CHECK (VALUE >= 0); \
             CREATE TYPE pair AS (a int, b text); \
             CREATE TYPE ord AS (label mood, tags text[], sub pair, amount price); \
             CREATE TABLE sd (id int PRIMARY KEY, mood mood, moods mood[], price price, \
                              pair pair, pairs pair[], ord ord); \
             CREATE PUBLICATION p FOR TABLE sd; \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput'); \
             INSERT INTO sd VALUES (1, 'ok', '{happy,NULL}', 12.5, ROW(NULL, 'x, \"y\"'), \
                 ARRAY[ROW(1, 'a'), ROW(2, '(b)')]::pair[], \
                 ROW('happy', '{t1,NULL}', ROW(3, 'in'), 7.25)::ord); \
             INSERT INTO sd VALUES (2, 'sad', '{}', 0, ROW(4, ''), '{}', NULL);",
        )
        .unwrap();
        for (slot, binary) in [("s_text", false), ("s_bin", true)] {
            let mode = if binary { "binary" } else { "text" };
            block_on(async {
                let mut stream = builder(&c, slot, "p").binary(binary).start().await.unwrap();
                let mut rows = Vec::new();
                for id in [1, 2] {
                    let ev = insert_event(&mut stream, id).await;
                    let EventKind::Insert(ch) = ev.kind() else {
                        unreachable!()
                    };
                    rows.push(ch.new.clone().unwrap());
                }
                let first: Record = rows[0].deserialize().unwrap();
                assert_eq!(
                    first,
                    Record {
                        id: 1,
                        mood: Mood::Ok,
                        moods: vec![Some(Mood::Happy), None],
                        price: "12.50".into(),
                        pair: Pair {
                            a: None,
                            b: "x, \"y\"".into()
                        },
                        pairs: vec![
                            Pair {
                                a: Some(1),
                                b: "a".into()
                            },
                            Pair {
                                a: Some(2),
                                b: "(b)".into()
                            },
                        ],
                    },
                    "{mode}"
                );
                // `ord` is not a field of Record: by name it was ignored.
                #[derive(Debug, Deserialize)]
                struct WithOrd {
                    ord: Option<Order>,
                }
                let with: WithOrd = rows[0].deserialize().unwrap();
                assert_eq!(
                    with.ord,
                    Some(Order {
                        label: Mood::Happy,
                        tags: vec![Some("t1".into()), None],
                        sub: Pair {
                            a: Some(3),
                            b: "in".into()
                        },
                        amount: 7.25,
                    }),
                    "{mode}"
                );
                // By position.
                type Columns = (i32, Mood, Vec<Mood>, f64, (i32, String), Vec<Pair>);
                let second: (Columns, Option<Order>) = {
                    let (id, m, ms, p, pair, pairs, ord) = rows[1].deserialize().unwrap();
                    ((id, m, ms, p, pair, pairs), ord)
                };
                assert_eq!(
                    second,
                    (
                        (2, Mood::Sad, vec![], 0.0, (4, String::new()), vec![]),
                        None
                    ),
                    "{mode}"
                );
                // A composite attribute that does not fit names the column and the attribute.
                #[derive(Debug, Deserialize)]
                #[allow(dead_code)]
                struct Strict {
                    pair: (i32, String),
                }
                let err = rows[0].deserialize::<Strict>().unwrap_err();
                assert_eq!(err.column(), Some("pair"), "{mode}");
                assert!(
                    err.message().starts_with("attribute \"a\""),
                    "{mode}: {err}"
                );
                stream.shutdown().await.unwrap();
            });
        }
    });
}
