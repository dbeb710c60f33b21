//! `tail` with user-defined types: typed JSON values by default (jsonl and debezium), the
//! server's text with `--no-resolve-types`, and `record` + `decode` (no server to ask) like
//! `--no-resolve-types`.
use walstream::Lsn;
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{assert_ok, run, stdout};

/// The first line of `out` whose `field` is `value`, parsed.
fn line_with(out: &str, field: &str, value: &str) -> serde_json::Value {
    out.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v[field] == value)
        .unwrap_or_else(|| panic!("no line with {field} = {value} in:\n{out}"))
}

#[test]
fn tail_writes_user_types_typed_unless_told_not_to() {
    for_each_server(|install| {
        let c = Cluster::start(
            install,
            ClusterOptions::new().setting("wal_sender_timeout", "2s"),
        )
        .unwrap();
        c.execute(
            "CREATE TYPE mood AS ENUM ('sad', 'happy'); \
             CREATE DOMAIN price AS numeric(10,2); \
             CREATE TYPE pair AS (a int, b text); \
             CREATE TABLE ut (id int PRIMARY KEY, e mood, ea mood[], p price, comp pair, \
                              comps pair[]); \
             CREATE PUBLICATION ws_pub FOR TABLE ut; \
             SELECT pg_create_logical_replication_slot('s_jsonl', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_deb', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_text', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_rec', 'pgoutput'); \
             INSERT INTO ut VALUES (1, 'happy', '{sad,happy}', 12.5, ROW(1, 'x y'), \
                                    ARRAY[ROW(2, NULL)]::pair[]);",
        )
        .unwrap();
        let endpos = Lsn(c.current_wal_lsn().unwrap()).to_string();
        let ci = format!("{} sslmode=disable", c.conninfo(Role::Postgres));
        let tail = |slot: &str, extra: &[&str]| {
            let mut args = vec![
                "tail", "-d", &ci, "-S", slot, "-P", "ws_pub", "--endpos", &endpos,
            ];
            args.extend_from_slice(extra);
            let out = run(&args);
            assert_ok(&out, Some(&c));
            stdout(&out)
        };

        // JSON lines: typed values.
        let out = tail("s_jsonl", &[]);
        let new = &line_with(&out, "kind", "insert")["new"];
        assert_eq!(new["e"], "happy");
        assert_eq!(new["ea"], serde_json::json!(["sad", "happy"]));
        assert_eq!(new["p"], "12.50");
        assert_eq!(new["comp"], serde_json::json!({"a": 1, "b": "x y"}));
        assert_eq!(new["comps"], serde_json::json!([{"a": 2, "b": null}]));

        // Debezium: enum arrays are arrays, a numeric domain a decimal (variable scale),
        // composites their text.
        let out = tail("s_deb", &["--format", "debezium"]);
        let after = &line_with(&out, "op", "c")["after"];
        assert_eq!(after["e"], "happy");
        assert_eq!(after["ea"], serde_json::json!(["sad", "happy"]));
        assert_eq!(after["p"]["scale"], 2, "{after}");
        assert_eq!(after["comp"], "(1,\"x y\")");
        assert_eq!(after["comps"], serde_json::json!(["(2,)"]));

        // --no-resolve-types: the server's text.
        let text = tail("s_text", &["--no-resolve-types"]);
        let new = &line_with(&text, "kind", "insert")["new"];
        assert_eq!(new["e"], "happy");
        assert_eq!(new["ea"], "{sad,happy}");
        assert_eq!(new["p"], "12.50");
        assert_eq!(new["comp"], "(1,\"x y\")");
        assert_eq!(new["comps"], "{\"(2,)\"}");

        // record + decode: no server to ask, the same as --no-resolve-types.
        let dir = tempfile::tempdir().unwrap();
        let cap = dir.path().join("ut.cap").display().to_string();
        let out = run(&[
            "record", "-d", &ci, "-S", "s_rec", "-P", "ws_pub", "--endpos", &endpos, "-o", &cap,
        ]);
        assert_ok(&out, Some(&c));
        let out = run(&["decode", &cap]);
        assert_ok(&out, None);
        assert_eq!(stdout(&out), text);
    });
}
