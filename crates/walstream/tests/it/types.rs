//! Binary mode equals text mode: one table with a column per built-in type walstream-proto
//! decodes (plus arrays, ranges, multiranges, an enum, a domain and a composite), the same
//! rows streamed through a text slot and a binary slot; the typed values must be equal, and
//! their text equal to the server's own output function's text.

use std::sync::Arc;

use walstream::{
    DebeziumEncoder, DebeziumOptions, Event, EventKind, Field, Oid, Row, TypeRegistry, Value,
    ValueFormat,
};
use walstream_proto::TypeKind;
use walstream_proto::pgoutput::ColumnValue;
use walstream_test_support::{Cluster, for_each_server};

use crate::util::{block_on, builder, cluster, until};

type Col = (&'static str, &'static str, &'static str, &'static str);

/// (column, type, first row's literal, second row's literal).
const COLUMNS: &[Col] = &[
    ("b", "bool", "true", "false"),
    ("ch", "\"char\"", "'z'", "NULL"),
    ("i2", "int2", "-32768", "32767"),
    ("i4", "int4", "2147483647", "0"),
    ("i8", "int8", "-9223372036854775808", "1"),
    ("o", "oid", "4294967295", "0"),
    ("x", "xid", "'12345'", "NULL"),
    ("x8", "xid8", "'9876543210'", "NULL"),
    ("f4", "float4", "1.1", "'-Infinity'"),
    ("f8", "float8", "-2.5e-300", "'Infinity'"),
    ("num", "numeric", "12345678901234567890.000123", "'NaN'"),
    ("num2", "numeric(10,3)", "-0.5", "0"),
    ("m", "money", "1234.5", "-0.01"),
    ("t", "text", "'héllo \"world\" | x'", "''"),
    ("vc", "varchar(10)", "'abc'", "NULL"),
    ("bp", "char(5)", "'ab'", "NULL"),
    ("nm", "name", "'a_name'", "NULL"),
    ("xm", "xml", "'<a>x</a>'", "NULL"),
    ("js", "json", "'{\"a\": [1, 2.5]}'", "'null'"),
    ("jb", "jsonb", "'{\"b\": null, \"a\": 1}'", "'[]'"),
    ("by", "bytea", "'\\x00ff10'", "'\\x'"),
    (
        "u",
        "uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        "NULL",
    ),
    ("d", "date", "'2024-02-29'", "'infinity'"),
    ("tm", "time", "'23:59:59.999999'", "'00:00'"),
    ("ttz", "timetz", "'12:34:56.5+05:30'", "'00:00-01'"),
    (
        "ts",
        "timestamp",
        "'2024-01-02 03:04:05.123456'",
        "'-infinity'",
    ),
    (
        "tstz",
        "timestamptz",
        "'2024-01-02 03:04:05+02'",
        "'infinity'",
    ),
    (
        "iv",
        "interval",
        "'1 year 2 mons -3 days 04:05:06.5'",
        "'-1 days -00:00:01'",
    ),
    ("ine", "inet", "'192.168.1.5/24'", "'::1'"),
    ("ci", "cidr", "'10.0.0.0/8'", "'2001:db8::/32'"),
    ("mac", "macaddr", "'08:00:2b:01:02:03'", "NULL"),
    ("mac8", "macaddr8", "'08:00:2b:01:02:03:04:05'", "NULL"),
    ("bt", "bit(4)", "B'1010'", "B'0000'"),
    ("vb", "varbit", "B'10110'", "B''"),
    ("lsn", "pg_lsn", "'16/B374D848'", "'0/0'"),
    ("ia", "int4[]", "'{1,NULL,3}'", "'{}'"),
    (
        "ta",
        "text[]",
        "'{\"a b\",\"c,d\",NULL,\"\\\"q\\\"\"}'",
        "'{\"\"}'",
    ),
    ("ma", "int4[][]", "'{{1,2},{3,4}}'", "'[0:1]={5,6}'"),
    ("na", "numeric[]", "'{1.5,-2}'", "NULL"),
    (
        "tsa",
        "timestamptz[]",
        "'{\"2024-01-01 00:00:00+00\"}'",
        "NULL",
    ),
    ("ba", "bool[]", "'{t,f}'", "NULL"),
    ("r4", "int4range", "'[1,10)'", "'empty'"),
    ("r8", "int8range", "'(,5]'", "NULL"),
    ("rn", "numrange", "'[1.5,2.5]'", "'(,)'"),
    ("rts", "tsrange", "'[2024-01-01,2024-02-01)'", "NULL"),
    ("rtstz", "tstzrange", "'[2024-01-01 00:00+00,)'", "NULL"),
    ("rd", "daterange", "'[2024-01-01,2024-01-10]'", "NULL"),
    ("mr", "int4multirange", "'{[1,3),[5,7)}'", "'{}'"),
    (
        "mrd",
        "datemultirange",
        "'{[2024-01-01,2024-01-05)}'",
        "NULL",
    ),
    ("e", "mood", "'happy'", "'sad'"),
    ("ea", "mood[]", "'{sad,happy}'", "'{}'"),
    ("dom", "posint", "42", "1"),
    ("comp", "pair", "ROW(1, 'x y')", "ROW(NULL, 'only b')"),
];

fn setup(c: &Cluster) {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(n, t, _, _)| format!("{n} {t}"))
        .collect();
    let row = |pick: fn(&Col) -> &'static str| {
        COLUMNS
            .iter()
            .map(|c| format!("({})::{}", pick(c), c.1))
            .collect::<Vec<_>>()
            .join(", ")
    };
    c.execute(&format!(
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
         CREATE DOMAIN posint AS int4 CHECK (VALUE > 0); \
         CREATE TYPE pair AS (a int, b text); \
         CREATE TABLE types (id int PRIMARY KEY, {}); \
         CREATE PUBLICATION p FOR TABLE types; \
         SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
         SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput'); \
         INSERT INTO types VALUES (1, {}), (2, {});",
        cols.join(", "),
        row(|c| c.2),
        row(|c| c.3),
    ))
    .unwrap();
}

/// The server's text output of every column of both rows (None for NULL), in the settings
/// walstream-proto's `Display` follows.
fn server_text(c: &Cluster) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = COLUMNS
        .iter()
        // The output function (`::text` casts differ for bool, char(n) and inet).
        .map(|(n, _, _, _)| {
            format!("CASE WHEN num_nulls({n}) = 0 THEN format('%s', {n}) END AS {n}")
        })
        .collect();
    let out = c
        .psql(&format!(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 1; SET bytea_output = 'hex'; \
             SELECT json_agg(row_to_json(q) ORDER BY id) FROM (SELECT id, {} FROM types) q;",
            cols.join(", ")
        ))
        .unwrap();
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .map(|r| {
            COLUMNS
                .iter()
                .map(|(n, _, _, _)| r[*n].as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The registry for the user types: enum, enum array, domain.
fn registry(c: &Cluster) -> TypeRegistry {
    let oid = |sql: &str| Oid(c.psql(sql).unwrap().parse().unwrap());
    let mood = oid("SELECT 'mood'::regtype::oid");
    let moods = oid("SELECT typarray FROM pg_type WHERE oid = 'mood'::regtype");
    let posint = oid("SELECT 'posint'::regtype::oid");
    let mut types = TypeRegistry::new();
    types.register(mood, TypeKind::Enum);
    types.register(moods, TypeKind::Array { element: mood });
    types.register(posint, TypeKind::Domain { base: Oid(23) });
    types
}

async fn events(c: &Cluster, slot: &str, binary: bool) -> Vec<Event> {
    let mut stream = builder(c, slot, "p").binary(binary).start().await.unwrap();
    let events = until(&mut stream, |e| matches!(e.kind(), EventKind::Commit(_))).await;
    stream.shutdown().await.unwrap();
    events
}

async fn rows(c: &Cluster, slot: &str, binary: bool) -> Vec<Row> {
    events(c, slot, binary)
        .await
        .into_iter()
        .filter_map(|e| match e.into_kind() {
            EventKind::Insert(ch) => ch.new,
            _ => None,
        })
        .collect()
}

#[test]
fn binary_mode_equals_text_mode_for_every_type() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        setup(&c);
        let expected = server_text(&c);
        let types = Arc::new(registry(&c));
        let (text, binary) = block_on(async {
            (
                rows(&c, "s_text", false).await,
                rows(&c, "s_bin", true).await,
            )
        });
        assert_eq!((text.len(), binary.len()), (2, 2));
        let mut mismatches = Vec::new();
        for (r, ((t, b), want)) in text.into_iter().zip(binary).zip(&expected).enumerate() {
            let t = t.with_types(Some(Arc::clone(&types)));
            let b = b.with_types(Some(Arc::clone(&types)));
            for (i, (name, ty, _, _)) in COLUMNS.iter().enumerate() {
                let idx = t.index_of(name).unwrap();
                assert_eq!(idx, i + 1);
                let want = want[i].as_deref();
                match (t.raw(idx).unwrap(), b.raw(idx).unwrap(), want) {
                    (ColumnValue::Null, ColumnValue::Null, None) => continue,
                    (ColumnValue::Text(_), ColumnValue::Binary(_), Some(_)) => {}
                    (tr, br, w) => panic!("row {r} {name}: raw {tr:?} / {br:?}, server {w:?}"),
                }
                let tv = t.value(idx).unwrap_or_else(|e| panic!("text {name}: {e}"));
                let bv = b
                    .value(idx)
                    .unwrap_or_else(|e| panic!("binary {name}: {e}"));
                let (Field::Value(tv), Field::Value(bv)) = (tv, bv) else {
                    panic!("row {r} {name}: not values");
                };
                if *ty == "pair" {
                    // Composite values are not decoded by walstream-proto: kept as received.
                    assert!(matches!(
                        &tv,
                        Value::Unknown {
                            format: ValueFormat::Text,
                            ..
                        }
                    ));
                    assert!(matches!(
                        &bv,
                        Value::Unknown {
                            format: ValueFormat::Binary,
                            ..
                        }
                    ));
                    assert_eq!(Some(tv.to_string().as_str()), want, "row {r} {name}");
                    continue;
                }
                assert!(
                    !matches!(tv, Value::Unknown { .. }),
                    "row {r} {name}: text not decoded: {tv:?}"
                );
                // `money` text is kept as the server wrote it (its format depends on
                // lc_monetary), binary as cents: equal as text only.
                let typed_differs = *ty != "money" && tv != bv;
                if typed_differs
                    || tv.to_string() != bv.to_string()
                    || Some(tv.to_string().as_str()) != want
                {
                    mismatches.push(format!(
                        "row {r} {name} ({ty}): text {tv:?} = {tv}, binary {bv:?} = {bv}, server {want:?}"
                    ));
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    });
}

/// Debezium records and JSON lines of the same rows are the same in binary and text mode (schema and
/// values), apart from the columns whose binary form needs knowledge the stream does not
/// have: user types (no type registry on the stream) and `money` (its text form depends on
/// `lc_monetary`).
#[test]
fn debezium_records_equal_in_binary_and_text_mode() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        setup(&c);
        let (text, binary) = block_on(async {
            (
                events(&c, "s_text", false).await,
                events(&c, "s_bin", true).await,
            )
        });
        let encode = |events: &[Event]| {
            let mut options = DebeziumOptions::new("srv", "postgres");
            options.include_schema = true;
            let mut enc = DebeziumEncoder::new(options);
            let mut out = Vec::new();
            for e in events {
                for r in enc.encode_at(e, 0).unwrap() {
                    let mut v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
                    for col in ["m", "e", "ea", "dom", "comp"] {
                        if let Some(after) = v["payload"]["after"].as_object_mut() {
                            after.remove(col);
                        }
                    }
                    out.push((r.topic, r.key, v));
                }
            }
            out
        };
        let (t, b) = (encode(&text), encode(&binary));
        assert_eq!(t.len(), 2, "{t:?}");
        for (t, b) in t.iter().zip(&b) {
            assert_eq!(t.0, b.0);
            assert_eq!(t.1, b.1);
            assert_eq!(t.2["schema"], b.2["schema"]);
            let (ta, ba) = (&t.2["payload"]["after"], &b.2["payload"]["after"]);
            for (k, tv) in ta.as_object().unwrap() {
                assert_eq!(Some(tv), ba.get(k), "column {k}");
            }
            assert_eq!(ta, ba);
        }
        assert_eq!(t.len(), b.len());

        // JSON lines likewise.
        let lines = |events: &[Event]| {
            events
                .iter()
                .map(|e| {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&e.to_json_line().unwrap()).unwrap();
                    if let Some(new) = v["new"].as_object_mut() {
                        for col in ["m", "e", "ea", "dom", "comp"] {
                            assert!(new.remove(col).is_some(), "{col} missing");
                        }
                    }
                    v
                })
                .collect::<Vec<_>>()
        };
        let (t, b) = (lines(&text), lines(&binary));
        assert_eq!(t.len(), b.len());
        for (t, b) in t.iter().zip(&b) {
            assert_eq!(t, b);
        }
    });
}
