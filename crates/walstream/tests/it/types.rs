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
                    // This hand-made registry (replacing the stream's own) has no attributes
                    // for the composite: its values are kept as received.
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
/// values), the user types (resolved by the stream) included, apart from `money` (its text
/// form depends on `lc_monetary`).
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
                    if let Some(after) = v["payload"]["after"].as_object_mut() {
                        after.remove("m");
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
                        assert!(new.remove("m").is_some(), "m missing");
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

// ---------------------------------------------------------------------------------------------
// User-defined types resolved by the stream itself (automatic type resolution).

/// User-type columns: (column, type, first row, second row).
const USER_COLUMNS: &[Col] = &[
    ("e", "mood", "'happy'", "NULL"),
    ("ea", "mood[]", "'{sad,NULL,happy}'", "'{}'"),
    ("p", "price", "12.5", "0"),
    ("pa", "price[]", "'{1.25,20}'", "NULL"),
    ("md", "mood_d", "'ok'", "'sad'"),
    ("pd", "price_d", "99999999.99", "NULL"),
    ("mr", "moodrange", "'[sad,happy)'", "'empty'"),
    ("mra", "moodrange[]", "ARRAY['[sad,ok]'::moodrange]", "NULL"),
    (
        "mmr",
        "moodmultirange",
        "'{[sad,ok), [happy,happy]}'",
        "'{}'",
    ),
    ("pr", "pricerange", "'[1.5,20)'", "'(,3]'"),
    ("comp", "pair", "ROW(1, 'x y')", "NULL"),
    (
        "oc",
        "outer_c",
        "ROW('y', ARRAY['a b', NULL], ROW(2, 'z')::pair)",
        "ROW(NULL, NULL, NULL)",
    ),
];

const USER_TYPES_SQL: &str = "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy'); \
     CREATE DOMAIN price AS numeric(10,2) CHECK (VALUE >= 0); \
     CREATE DOMAIN mood_d AS mood; \
     CREATE DOMAIN price_d AS price; \
     CREATE TYPE moodrange AS RANGE (subtype = mood); \
     CREATE TYPE pricerange AS RANGE (subtype = price); \
     CREATE TYPE pair AS (a int, b text); \
     CREATE TYPE inner_e AS ENUM ('x', 'y'); \
     CREATE TYPE outer_c AS (e inner_e, tags text[], p pair);";

/// The server's text of `columns` of `table`, rows ordered by id (None for NULL).
fn server_texts(c: &Cluster, table: &str, columns: &[&str]) -> Vec<Vec<Option<String>>> {
    let cols: Vec<String> = columns
        .iter()
        .map(|n| format!("CASE WHEN num_nulls({n}) = 0 THEN format('%s', {n}) END AS {n}"))
        .collect();
    let out = c
        .psql(&format!(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres'; \
             SET extra_float_digits = 1; SET bytea_output = 'hex'; \
             SELECT json_agg(row_to_json(q) ORDER BY id) FROM (SELECT id, {} FROM {table}) q;",
            cols.join(", ")
        ))
        .unwrap();
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&out).unwrap();
    rows.iter()
        .map(|r| {
            columns
                .iter()
                .map(|n| r[*n].as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn inserted_rows(events: &[Event]) -> Vec<Row> {
    events
        .iter()
        .filter_map(|e| match e.kind() {
            EventKind::Insert(ch) => ch.new.clone(),
            _ => None,
        })
        .collect()
}

fn value(row: &Row, column: &str) -> Option<Value> {
    match row.get(column).unwrap_or_else(|e| panic!("{column}: {e}")) {
        Field::Value(v) => Some(v),
        Field::Null => None,
        Field::UnchangedToast => panic!("{column}: unchanged TOAST"),
    }
}

/// Checks every column of `rows` against the server's text: decoded (not `Unknown`),
/// displayed as the server prints it.
fn check_user_rows(rows: &[Row], expected: &[Vec<Option<String>>], columns: &[&str], mode: &str) {
    assert_eq!(rows.len(), expected.len(), "{mode}: rows");
    let mut bad = Vec::new();
    for (r, (row, want)) in rows.iter().zip(expected).enumerate() {
        for (name, want) in columns.iter().zip(want) {
            let got = value(row, name);
            match (&got, want) {
                (None, None) => {}
                (Some(v), Some(w)) => {
                    let unknown = matches!(v, Value::Unknown { .. });
                    if unknown || v.to_string() != *w {
                        bad.push(format!("{mode} row {r} {name}: {v:?} = {v}, server {w:?}"));
                    }
                }
                _ => bad.push(format!("{mode} row {r} {name}: {got:?}, server {want:?}")),
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The stream resolves enums, domains (over built-in types, enums and domains), arrays of
/// them, ranges over an enum and a domain, a multirange, and composites (one nesting an enum
/// only it uses, an array and another composite), in text and binary mode, equal to the
/// server's text. JSON lines and Debezium records carry the typed values.
#[test]
fn stream_resolves_user_types() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        let cols: Vec<String> = USER_COLUMNS
            .iter()
            .map(|(n, t, _, _)| format!("{n} {t}"))
            .collect();
        let row = |id: u32, pick: fn(&Col) -> &'static str| {
            let vals: Vec<String> = USER_COLUMNS
                .iter()
                .map(|c| format!("({})::{}", pick(c), c.1))
                .collect();
            format!("({id}, {})", vals.join(", "))
        };
        c.execute(&format!(
            "{USER_TYPES_SQL} \
             CREATE TABLE ut (id int PRIMARY KEY, {}); \
             CREATE PUBLICATION p FOR TABLE ut; \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput'); \
             INSERT INTO ut VALUES {}, {};",
            cols.join(", "),
            row(1, |c| c.2),
            row(2, |c| c.3),
        ))
        .unwrap();
        let names: Vec<&str> = USER_COLUMNS.iter().map(|c| c.0).collect();
        let expected = server_texts(&c, "ut", &names);

        let (text_events, bin_events) = block_on(async {
            (
                events(&c, "s_text", false).await,
                events(&c, "s_bin", true).await,
            )
        });
        let (text_rows, bin_rows) = (inserted_rows(&text_events), inserted_rows(&bin_events));
        check_user_rows(&text_rows, &expected, &names, "text");
        check_user_rows(&bin_rows, &expected, &names, "binary");
        for (t, b) in text_rows.iter().zip(&bin_rows) {
            for name in &names {
                assert_eq!(value(t, name), value(b, name), "{name}: text vs binary");
            }
        }
        let first = &text_rows[0];
        assert!(matches!(value(first, "e"), Some(Value::Enum(_))));
        assert!(matches!(value(first, "md"), Some(Value::Enum(_))));
        assert!(matches!(value(first, "p"), Some(Value::Numeric(_))));
        assert!(matches!(value(first, "pd"), Some(Value::Numeric(_))));
        assert!(matches!(value(first, "ea"), Some(Value::Array(_))));
        assert!(matches!(value(first, "mr"), Some(Value::Range(_))));
        assert!(matches!(value(first, "mmr"), Some(Value::Multirange(_))));
        let Some(Value::Composite(oc)) = value(first, "oc") else {
            panic!("oc: {:?}", value(first, "oc"))
        };
        assert!(matches!(oc.get("e"), Some(Value::Enum(_))), "{oc:?}");
        assert!(matches!(oc.get("p"), Some(Value::Composite(_))), "{oc:?}");

        // JSON lines: typed values, not the raw text.
        let line = |events: &[Event]| {
            let ins = events
                .iter()
                .find(|e| matches!(e.kind(), EventKind::Insert(_)))
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&ins.to_json_line().unwrap()).unwrap()
        };
        let (text_line, bin_line) = (line(&text_events), line(&bin_events));
        assert_eq!(text_line, bin_line, "JSON lines in text and binary mode");
        for v in [text_line, bin_line] {
            let new = &v["new"];
            assert_eq!(new["e"], serde_json::json!("happy"));
            assert_eq!(new["ea"], serde_json::json!(["sad", null, "happy"]));
            assert_eq!(new["p"], serde_json::json!("12.50"));
            assert_eq!(new["pa"], serde_json::json!(["1.25", "20.00"]));
            assert_eq!(new["pd"], serde_json::json!("99999999.99"));
            assert_eq!(
                new["mr"],
                serde_json::json!({"lower": "sad", "upper": "happy", "lower_inc": true, "upper_inc": false})
            );
            assert_eq!(new["comp"], serde_json::json!({"a": 1, "b": "x y"}));
            assert_eq!(
                new["oc"],
                serde_json::json!({"e": "y", "tags": ["a b", null], "p": {"a": 2, "b": "z"}})
            );
        }

        // Spilled by the transaction assembler and read back: still typed.
        for events in [&text_events, &bin_events] {
            let feedback = walstream::LsnFeedback::new(walstream::Lsn(0));
            let json = |items: Vec<walstream::Assembled>| {
                let mut lines = Vec::new();
                for item in items {
                    if let walstream::Assembled::Transaction(mut t) = item {
                        while let Some(ev) = t.next_change() {
                            let ev = ev.unwrap();
                            if matches!(ev.kind(), EventKind::Insert(_)) {
                                lines.push(ev.to_json_line().unwrap());
                            }
                        }
                    }
                }
                lines
            };
            let (mem, _) =
                crate::util::assemble(events, walstream::AssemblyOptions::default(), &feedback);
            let spilled_options = walstream::AssemblyOptions {
                memory_limit: 0,
                ..walstream::AssemblyOptions::default()
            };
            let (spilled, _) = crate::util::assemble(events, spilled_options, &feedback);
            let (mem, spilled) = (json(mem), json(spilled));
            assert_eq!(mem.len(), 2, "{mem:?}");
            assert!(mem[0].contains("\"e\":\"happy\""), "{}", mem[0]);
            assert_eq!(mem, spilled, "spilled rows decode like in-memory ones");
        }

        // Debezium: domains have their base type's schema (numeric domains variable-scale:
        // the domain's own scale is not sent), arrays of user types are arrays, enums and
        // ranges and composites strings; text and binary mode give the same records.
        let debezium = |events: &[Event], mode: walstream::DecimalMode| {
            let mut options = DebeziumOptions::new("srv", "postgres");
            options.include_schema = true;
            options.decimal_mode = mode;
            let mut enc = DebeziumEncoder::new(options);
            let ins = events
                .iter()
                .find(|e| matches!(e.kind(), EventKind::Insert(_)))
                .unwrap();
            let rec = enc.encode_at(ins, 0).unwrap().remove(0);
            serde_json::from_str::<serde_json::Value>(&rec.value).unwrap()
        };
        let field_schema = |v: &serde_json::Value, name: &str| {
            v["schema"]["fields"][1]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["field"] == name)
                .unwrap_or_else(|| panic!("no schema for {name}"))
                .clone()
        };
        for mode in [
            walstream::DecimalMode::String,
            walstream::DecimalMode::Precise,
        ] {
            let (t, b) = (debezium(&text_events, mode), debezium(&bin_events, mode));
            assert_eq!(t, b, "text and binary Debezium records");
            let after = &t["payload"]["after"];
            assert_eq!(after["e"], serde_json::json!("happy"));
            assert_eq!(after["md"], serde_json::json!("ok"));
            assert_eq!(after["ea"], serde_json::json!(["sad", null, "happy"]));
            assert_eq!(after["mr"], serde_json::json!("[sad,happy)"));
            assert_eq!(after["mmr"], serde_json::json!("{[sad,ok),[happy,happy]}"));
            assert_eq!(after["comp"], serde_json::json!("(1,\"x y\")"));
            assert_eq!(field_schema(&t, "comp")["type"], "string");
            assert_eq!(after["pr"], serde_json::json!("[1.50,20.00)"));
            for (name, ty) in [("e", "string"), ("md", "string"), ("mr", "string")] {
                assert_eq!(field_schema(&t, name)["type"], ty, "{name}");
            }
            let ea = field_schema(&t, "ea");
            assert_eq!(ea["type"], "array");
            assert_eq!(ea["items"]["type"], "string");
            let pa = field_schema(&t, "pa");
            assert_eq!(pa["type"], "array");
            if mode == walstream::DecimalMode::String {
                assert_eq!(after["p"], serde_json::json!("12.50"));
                assert_eq!(after["pd"], serde_json::json!("99999999.99"));
                assert_eq!(after["pa"], serde_json::json!(["1.25", "20.00"]));
                assert_eq!(field_schema(&t, "p")["type"], "string");
                assert_eq!(pa["items"]["type"], "string");
            } else {
                // As a numeric column without a declared scale.
                for name in ["p", "pd"] {
                    let f = field_schema(&t, name);
                    assert_eq!(f["name"], "io.debezium.data.VariableScaleDecimal", "{name}");
                }
                assert_eq!(after["p"]["scale"], 2);
                assert_eq!(pa["items"]["name"], "io.debezium.data.VariableScaleDecimal");
            }
        }
    });
}

/// Waits for the insert with `id` (skipping every other event) and returns its row.
async fn insert_with_id(stream: &mut walstream::LogicalStream, id: i64) -> Row {
    loop {
        let ev = crate::util::next(stream).await;
        if crate::util::inserted_id(&ev) == Some(id) {
            let EventKind::Insert(ch) = ev.kind() else {
                unreachable!()
            };
            ev.ack();
            return ch.new.clone().unwrap();
        }
        ev.ack();
    }
}

/// Client backends (not walsenders) of the stream's role: the lookup connection.
fn lookup_backends(c: &Cluster) -> usize {
    c.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
         AND usename = '{}'",
        walstream_test_support::Role::Scram.name()
    ))
    .unwrap()
    .parse()
    .unwrap()
}

/// Types created and altered while the stream runs: a new enum label, a new enum, a new
/// domain and an array of the new enum added to the table; then after a reconnect (walsender
/// terminated) and with the lookup connection killed, a type created meanwhile. The lookup
/// connection is closed by shutdown. Text and binary mode.
#[test]
fn stream_resolves_types_created_mid_stream() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE TABLE mid (id int PRIMARY KEY, e mood); \
             CREATE PUBLICATION p FOR TABLE mid; \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_bin', 'pgoutput');",
        )
        .unwrap();
        for (slot, binary) in [("s_text", false), ("s_bin", true)] {
            let mode = if binary { "binary" } else { "text" };
            let id = |n: i64| if binary { n + 100 } else { n };
            block_on(async {
                let mut stream = builder(&c, slot, "p").binary(binary).start().await.unwrap();
                c.execute(&format!("INSERT INTO mid VALUES ({}, 'happy')", id(1)))
                    .unwrap();
                let r = insert_with_id(&mut stream, id(1)).await;
                assert_eq!(value(&r, "e").unwrap().to_string(), "happy", "{mode}");
                assert_eq!(lookup_backends(&c), 1, "{mode}: one lookup connection");

                // A new label of a known enum, a new enum, a new domain, an array of the enum.
                if !binary {
                    c.execute(
                        "ALTER TYPE mood ADD VALUE 'ecstatic'; \
                         CREATE TYPE color AS ENUM ('red', 'green'); \
                         CREATE DOMAIN short AS varchar(8) CHECK (length(VALUE) > 1); \
                         ALTER TABLE mid ADD COLUMN c color, ADD COLUMN s short, \
                             ADD COLUMN ca color[];",
                    )
                    .unwrap();
                }
                c.execute(&format!(
                    "INSERT INTO mid VALUES ({}, 'ecstatic', 'green', 'abc', '{{red,NULL}}')",
                    id(2)
                ))
                .unwrap();
                let r = insert_with_id(&mut stream, id(2)).await;
                assert!(matches!(value(&r, "e"), Some(Value::Enum(_))), "{mode}");
                assert_eq!(value(&r, "e").unwrap().to_string(), "ecstatic", "{mode}");
                assert!(matches!(value(&r, "c"), Some(Value::Enum(_))), "{mode}");
                assert_eq!(value(&r, "c").unwrap().to_string(), "green", "{mode}");
                assert!(matches!(value(&r, "s"), Some(Value::Text(_))), "{mode}");
                assert_eq!(value(&r, "s").unwrap().to_string(), "abc", "{mode}");
                assert_eq!(value(&r, "ca").unwrap().to_string(), "{red,NULL}", "{mode}");

                // A composite column, then an attribute added to the composite type.
                if !binary {
                    c.execute(
                        "CREATE TYPE pt AS (x int); ALTER TABLE mid ADD COLUMN pt pt; \
                         INSERT INTO mid (id, pt) VALUES (5, ROW(1));",
                    )
                    .unwrap();
                    let r = insert_with_id(&mut stream, 5).await;
                    assert_eq!(value(&r, "pt").unwrap().to_string(), "(1)");
                    c.execute("ALTER TYPE pt ADD ATTRIBUTE y text").unwrap();
                }
                c.execute(&format!(
                    "INSERT INTO mid (id, pt) VALUES ({}, ROW(2, 'b c'))",
                    id(4)
                ))
                .unwrap();
                let r = insert_with_id(&mut stream, id(4)).await;
                let pt = value(&r, "pt").unwrap();
                assert!(matches!(pt, Value::Composite(_)), "{mode}: {pt:?}");
                assert_eq!(pt.to_string(), "(2,\"b c\")", "{mode}");

                // The walsender and the lookup connection are killed; a type appears meanwhile.
                assert!(c.terminate_walsenders().unwrap() >= 1);
                c.execute(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE backend_type = 'client backend' AND usename = '{}'",
                    walstream_test_support::Role::Scram.name()
                ))
                .unwrap();
                let size = if binary { "size_b" } else { "size_t" };
                c.execute(&format!(
                    "CREATE TYPE {size} AS ENUM ('s', 'm', 'l'); \
                     ALTER TABLE mid ADD COLUMN {size} {size}; \
                     INSERT INTO mid (id, e, {size}) VALUES ({}, 'sad', 'm');",
                    id(3)
                ))
                .unwrap();
                let r = insert_with_id(&mut stream, id(3)).await;
                assert!(
                    matches!(value(&r, size), Some(Value::Enum(_))),
                    "{mode}: {r:?}"
                );
                assert_eq!(value(&r, size).unwrap().to_string(), "m", "{mode}");
                assert_eq!(value(&r, "e").unwrap().to_string(), "sad", "{mode}");
                assert!(
                    stream.type_lookup_failures().is_empty(),
                    "{mode}: {:?}",
                    stream.type_lookup_failures()
                );
                stream.shutdown().await.unwrap();
            });
            walstream_test_support::wait_for(
                "the lookup connection to close",
                std::time::Duration::from_secs(30),
                || (lookup_backends(&c) == 0).then_some(()),
            )
            .unwrap();
        }
    });
}

/// A failed lookup does not stop the stream: the values stay `Unknown`, the failure is listed
/// (typed), and a later Relation message naming the type resolves it once lookups work again.
/// With resolution off the values stay `Unknown`; a registry given to the builder decodes them.
#[test]
fn type_lookup_failure_keeps_the_stream_going() {
    use walstream_test_support::{ConnectionPlan, FaultProxy};
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE TABLE f (id int PRIMARY KEY, e mood); \
             CREATE PUBLICATION p FOR TABLE f; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_off', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_reg', 'pgoutput'); \
             INSERT INTO f VALUES (1, 'happy');",
        )
        .unwrap();
        let mood = Oid(c
            .psql("SELECT 'mood'::regtype::oid")
            .unwrap()
            .parse()
            .unwrap());
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).unwrap();
        // The replication connection passes; the lookup connections are refused.
        proxy.script([ConnectionPlan::new()]);
        proxy.set_default_plan(ConnectionPlan::refuse());
        let config: walstream::Config = format!(
            "host=127.0.0.1 port={} user={} password='{}' dbname=postgres sslmode=disable \
             connect_timeout=5",
            proxy.port(),
            walstream_test_support::Role::Scram.name(),
            walstream_test_support::Role::Scram.password().unwrap()
        )
        .parse()
        .unwrap();
        block_on(async {
            let mut stream = walstream::LogicalStream::builder(config, "s")
                .publication("p")
                .retry(walstream::RetryPolicy::never())
                .start()
                .await
                .unwrap();
            let r = insert_with_id(&mut stream, 1).await;
            assert!(
                matches!(value(&r, "e"), Some(Value::Unknown { .. })),
                "{r:?}"
            );
            let failures = stream.type_lookup_failures().to_vec();
            assert!(!failures.is_empty());
            assert_eq!(failures[0].kind, walstream::ErrorKind::Connection);
            assert!(failures[0].oids.contains(&mood), "{failures:?}");
            // The stream goes on.
            c.execute("INSERT INTO f VALUES (2, 'sad')").unwrap();
            let r = insert_with_id(&mut stream, 2).await;
            assert!(matches!(value(&r, "e"), Some(Value::Unknown { .. })));
            // Lookups work again; a new Relation message names the type again.
            proxy.set_default_plan(ConnectionPlan::new());
            c.execute("ALTER TABLE f ADD COLUMN n int; INSERT INTO f VALUES (3, 'happy', 3)")
                .unwrap();
            let r = insert_with_id(&mut stream, 3).await;
            assert!(matches!(value(&r, "e"), Some(Value::Enum(_))), "{r:?}");
            assert_eq!(value(&r, "e").unwrap().to_string(), "happy");
            assert_eq!(stream.types().unwrap().get(mood), Some(TypeKind::Enum));
            stream.shutdown().await.unwrap();

            // Resolution off: Unknown, and no lookup connection.
            let mut stream = builder(&c, "s_off", "p")
                .resolve_types(false)
                .start()
                .await
                .unwrap();
            let r = insert_with_id(&mut stream, 1).await;
            assert!(matches!(value(&r, "e"), Some(Value::Unknown { .. })));
            assert_eq!(lookup_backends(&c), 0);
            stream.shutdown().await.unwrap();

            // A registry given to the builder, resolution off.
            let mut types = TypeRegistry::new();
            types.register(mood, TypeKind::Enum);
            let mut stream = builder(&c, "s_reg", "p")
                .resolve_types(false)
                .types(types)
                .start()
                .await
                .unwrap();
            let r = insert_with_id(&mut stream, 1).await;
            assert!(matches!(value(&r, "e"), Some(Value::Enum(_))));
            stream.shutdown().await.unwrap();
        });
    });
}

/// The initial snapshot's rows are typed like the streamed ones: user types of the snapshot
/// tables are looked up before their first row is handed out, and the registry carries over
/// to streaming.
#[test]
fn snapshot_rows_resolve_user_types() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(&format!(
            "{USER_TYPES_SQL} \
             CREATE TABLE sn (id int PRIMARY KEY, e mood, ea mood[], p price, comp pair); \
             CREATE PUBLICATION p FOR TABLE sn; \
             INSERT INTO sn VALUES (1, 'happy', '{{sad,NULL}}', 3.5, ROW(1, 'x y')), \
                                   (2, NULL, NULL, NULL, NULL);"
        ))
        .unwrap();
        block_on(async {
            let mut stream = builder(&c, "s_snap", "p")
                .initial_snapshot(true)
                .start()
                .await
                .unwrap();
            let mut reads = Vec::new();
            loop {
                let ev = crate::util::next(&mut stream).await;
                match ev.kind() {
                    EventKind::Read(r) => reads.push(r.row().unwrap().clone()),
                    EventKind::SnapshotComplete(_) => break,
                    _ => {}
                }
            }
            reads.sort_by_key(|r| crate::util::int(r, "id"));
            assert_eq!(reads.len(), 2);
            let r = &reads[0];
            assert!(matches!(value(r, "e"), Some(Value::Enum(_))), "{r:?}");
            assert_eq!(value(r, "ea").unwrap().to_string(), "{sad,NULL}");
            assert!(matches!(value(r, "p"), Some(Value::Numeric(_))));
            assert_eq!(value(r, "p").unwrap().to_string(), "3.50");
            let Some(Value::Composite(comp)) = value(r, "comp") else {
                panic!("{r:?}")
            };
            assert_eq!(comp.get("b").and_then(Value::as_str), Some("x y"));
            assert_eq!(value(&reads[1], "e"), None);
            // Streaming after the snapshot decodes them too.
            c.execute("INSERT INTO sn VALUES (3, 'sad', '{happy}', 1, ROW(2, 'z'))")
                .unwrap();
            let r = insert_with_id(&mut stream, 3).await;
            assert!(matches!(value(&r, "e"), Some(Value::Enum(_))), "{r:?}");
            assert!(matches!(value(&r, "comp"), Some(Value::Composite(_))));
            assert!(stream.type_lookup_failures().is_empty());
            stream.shutdown().await.unwrap();
        });
    });
}
