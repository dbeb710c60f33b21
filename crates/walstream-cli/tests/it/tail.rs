//! `tail`, `record` + `decode`, Ctrl-C, and `slot` against a real server.
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use walstream::{Config, EventKind, LogicalStream, Lsn};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server, wait_for};

use crate::{assert_ok, bin, run, stderr, stdout};

const WORKLOAD: &str = "\
    INSERT INTO items VALUES (1, 'one'), (2, 'two'); \
    UPDATE items SET name = 'uno' WHERE id = 1; \
    BEGIN; \
      INSERT INTO items SELECT g, 'bulk ' || g FROM generate_series(10, 60) g; \
      SELECT pg_logical_emit_message(true, 'tx', 'inside'); \
    COMMIT; \
    SELECT pg_logical_emit_message(false, 'note', 'outside'); \
    DELETE FROM items WHERE id = 2; \
    TRUNCATE other;";

fn cluster(install: &walstream_test_support::PgInstall, slots: &[&str]) -> Cluster {
    // Short sender timeout: idle keepalives every second, so --endpos is noticed quickly.
    let c = Cluster::start(
        install,
        ClusterOptions::new().setting("wal_sender_timeout", "2s"),
    )
    .unwrap();
    c.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         CREATE TABLE other (x int); \
         CREATE PUBLICATION ws_pub FOR ALL TABLES;",
    )
    .unwrap();
    for s in slots {
        c.execute(&format!(
            "SELECT pg_create_logical_replication_slot('{s}', 'pgoutput')"
        ))
        .unwrap();
    }
    c
}

fn conninfo(c: &Cluster) -> String {
    format!("{} sslmode=disable", c.conninfo(Role::Postgres))
}

fn confirmed(c: &Cluster, slot: &str) -> Lsn {
    Lsn(c
        .replication_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.slot_name == slot)
        .and_then(|s| s.confirmed_flush_lsn)
        .unwrap_or(0))
}

/// The JSON lines the library produces for `slot` up to `endpos`.
fn library_lines(c: &Cluster, slot: &str, endpos: Lsn) -> Vec<String> {
    let config: Config = conninfo(c).parse().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut stream = LogicalStream::builder(config, slot)
                .publication("ws_pub")
                .messages(true)
                .start()
                .await
                .unwrap();
            let mut lines = Vec::new();
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(30), stream.next_event())
                    .await
                    .expect("no event within 30 s")
                    .unwrap()
                    .unwrap();
                lines.push(ev.to_json_line().unwrap());
                let end = match ev.kind() {
                    EventKind::Commit(cm) => Some(cm.end_lsn),
                    EventKind::Message(m) if !m.is_transactional() => Some(m.lsn),
                    _ => None,
                };
                ev.ack();
                if end.is_some_and(|e| e >= endpos) {
                    break;
                }
            }
            stream.shutdown().await.unwrap();
            lines
        })
}

fn tail_args<'a>(conninfo: &'a str, slot: &'a str, endpos: &'a str) -> Vec<&'a str> {
    vec![
        "tail",
        "-d",
        conninfo,
        "--slot",
        slot,
        "--publication",
        "ws_pub",
        "--messages",
        "--endpos",
        endpos,
    ]
}

#[test]
fn tail_endpos_equals_library_and_record_decode_equals_tail() {
    for_each_server(|install| {
        let c = cluster(install, &["s_tail", "s_lib", "s_rec", "s_none"]);
        c.execute(WORKLOAD).unwrap();
        // The last transaction's end: stop there.
        let endpos = Lsn(c.current_wal_lsn().unwrap());
        let end_text = endpos.to_string();
        let ci = conninfo(&c);

        let out = run(&tail_args(&ci, "s_tail", &end_text));
        assert_ok(&out, Some(&c));
        let tail_lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        let lib_lines = library_lines(&c, "s_lib", endpos);
        assert_eq!(tail_lines, lib_lines);
        let kinds: Vec<String> = tail_lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
            .collect();
        for k in [
            "insert", "update", "delete", "truncate", "message", "commit",
        ] {
            assert!(
                kinds.contains(&format!("\"{k}\"")),
                "{k} missing: {kinds:?}"
            );
        }
        // The final feedback confirmed everything written.
        let last_commit_end = tail_lines
            .iter()
            .rev()
            .find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["end_lsn"].as_str().map(|s| s.parse::<Lsn>().unwrap())
            })
            .unwrap();
        let confirmed = wait_for("confirmed flush", Duration::from_secs(10), || {
            let l = confirmed(&c, "s_tail");
            (l >= last_commit_end).then_some(l)
        })
        .unwrap();
        assert!(confirmed >= last_commit_end);

        // record, then decode offline: the same lines.
        let dir = tempfile::tempdir().unwrap();
        let cap = dir.path().join("changes.cap");
        let cap_text = cap.display().to_string();
        let mut args = tail_args(&ci, "s_rec", &end_text);
        args[0] = "record";
        args.extend(["--output", &cap_text]);
        let out = run(&args);
        assert_ok(&out, Some(&c));
        let out = run(&["decode", &cap_text]);
        assert_ok(&out, None);
        let decoded: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        assert_eq!(decoded, tail_lines);

        // --format none: every value decoded, nothing written, the count on standard error.
        let mut args = tail_args(&ci, "s_none", &end_text);
        args.extend(["--format", "none"]);
        let out = run(&args);
        assert_ok(&out, Some(&c));
        assert_eq!(stdout(&out), "");
        let counted = format!("events\t{}", tail_lines.len());
        assert!(
            stderr(&out).lines().any(|l| l == counted),
            "expected {counted:?} in: {}",
            stderr(&out)
        );
    });
}

#[test]
fn ctrl_c_leaves_the_slot_at_the_last_written_transaction() {
    for_each_server(|install| {
        let c = cluster(install, &["s_int"]);
        let ci = conninfo(&c);
        let mut child = bin()
            .args([
                "tail",
                "-d",
                &ci,
                "-S",
                "s_int",
                "-P",
                "ws_pub",
                "--format",
                "pretty",
                "--status-interval",
                "100",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.execute("INSERT INTO items VALUES (1, 'a'); INSERT INTO items VALUES (2, 'b');")
            .unwrap();
        let end_of_second = Lsn(c.current_wal_lsn().unwrap());
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut commits = 0;
        let mut line = String::new();
        while commits < 2 {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "tail exited early"
            );
            if line.starts_with("COMMIT") {
                commits += 1;
            }
        }
        // With a 100 s status interval, only the final feedback can move the slot.
        let before = confirmed(&c, "s_int");
        assert!(before < end_of_second, "{before} vs {end_of_second}");
        let pid = child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let after = wait_for("slot released", Duration::from_secs(10), || {
            let s = c
                .replication_slots()
                .ok()?
                .into_iter()
                .find(|s| s.slot_name == "s_int" && !s.active)?;
            s.confirmed_flush_lsn
        })
        .unwrap();
        // The slot stands exactly at the end of the last transaction written.
        let last_end = line
            .split("(end ")
            .nth(1)
            .and_then(|s| s.trim().trim_end_matches(')').parse::<Lsn>().ok())
            .unwrap();
        assert_eq!(Lsn(after), last_end, "line: {line}");
    });
}

#[test]
fn slot_create_list_read_drop() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        let ci = conninfo(&c);
        let out = run(&["slot", "create", "-d", &ci, "s_new", "--json"]);
        assert_ok(&out, Some(&c));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(v["slot_name"], "s_new");
        assert!(v["consistent_point"].is_string());
        // Again: an error with the SQLSTATE and a hint, unless --if-not-exists.
        let out = run(&["slot", "create", "-d", &ci, "s_new"]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(stderr(&out).contains("SQLSTATE 42710"), "{}", stderr(&out));
        assert!(stderr(&out).contains("--if-not-exists"), "{}", stderr(&out));
        let out = run(&["slot", "create", "-d", &ci, "s_new", "--if-not-exists"]);
        assert_ok(&out, Some(&c));

        let out = run(&["slot", "list", "-d", &ci, "--json"]);
        assert_ok(&out, Some(&c));
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        let row = &v.as_array().unwrap()[0];
        assert_eq!(row["slot_name"], "s_new");
        assert_eq!(row["slot_type"], "logical");
        assert_eq!(row["plugin"], "pgoutput");
        assert_eq!(row["active"], false);
        assert!(row["lag_bytes"].as_i64().is_some_and(|l| l >= 0), "{row}");
        let out = run(&["slot", "list", "-d", &ci]);
        assert_ok(&out, Some(&c));
        assert!(stdout(&out).lines().nth(1).unwrap().starts_with("s_new "));

        let out = run(&["slot", "read", "-d", &ci, "s_new"]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("confirmed_flush_lsn: "),
            "{}",
            stdout(&out)
        );

        let out = run(&["slot", "drop", "-d", &ci, "s_new"]);
        assert_ok(&out, Some(&c));
        assert!(c.replication_slots().unwrap().is_empty());
        let out = run(&["slot", "read", "-d", &ci, "s_new"]);
        assert_eq!(out.status.code(), Some(5));
        let out = run(&["slot", "drop", "-d", &ci, "s_new", "--if-exists"]);
        assert_ok(&out, Some(&c));
    });
}

#[test]
fn transactions_prints_a_streamed_transaction_whole_without_rolled_back_rows() {
    for_each_server(|install| {
        // Tiny work memory: the server streams the large transaction in blocks.
        let c = Cluster::start(
            install,
            ClusterOptions::new()
                .setting("wal_sender_timeout", "2s")
                .setting("logical_decoding_work_mem", "64kB"),
        )
        .unwrap();
        c.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text); \
             CREATE PUBLICATION ws_pub FOR ALL TABLES; \
             SELECT pg_create_logical_replication_slot('s_txn', 'pgoutput'); \
             SELECT pg_create_logical_replication_slot('s_plain', 'pgoutput');",
        )
        .unwrap();
        c.execute(
            "BEGIN; \
               INSERT INTO items SELECT g, repeat('k', 200) FROM generate_series(1, 1500) g; \
               SAVEPOINT sp; \
               INSERT INTO items SELECT g, 'rolled back' FROM generate_series(100001, 101000) g; \
               ROLLBACK TO SAVEPOINT sp; \
               INSERT INTO items SELECT g, repeat('m', 200) FROM generate_series(1501, 2000) g; \
             COMMIT; \
             INSERT INTO items VALUES (5000, 'after');",
        )
        .unwrap();
        let endpos = Lsn(c.current_wal_lsn().unwrap()).to_string();
        let ci = conninfo(&c);
        // Without --transactions the server's streamed blocks show: it was streamed.
        let plain = [
            "tail",
            "-d",
            &ci,
            "-S",
            "s_plain",
            "-P",
            "ws_pub",
            "--streaming",
            "on",
            "--endpos",
            &endpos,
        ];
        let out = run(&plain);
        assert_ok(&out, Some(&c));
        assert!(stdout(&out).contains(r#"{"kind":"stream_start""#));
        let out = run(&[
            "tail",
            "-d",
            &ci,
            "-S",
            "s_txn",
            "-P",
            "ws_pub",
            "--streaming",
            "on",
            "--transactions",
            "--memory-limit",
            "64K",
            "--endpos",
            &endpos,
        ]);
        assert_ok(&out, Some(&c));
        // Relation descriptions (sent again in every streamed block) are left aside.
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v: &serde_json::Value| v["kind"] != "relation")
            .collect();
        let kinds: Vec<&str> = lines.iter().map(|v| v["kind"].as_str().unwrap()).collect();
        // Two transactions, each contiguous: begin, its inserts, commit; no stream_* lines.
        let mut expected = vec!["begin"];
        expected.extend(std::iter::repeat_n("insert", 2000));
        expected.extend(["commit", "begin", "insert", "commit"]);
        assert_eq!(kinds, expected);
        let big_xid = &lines[0]["xid"];
        let ids: Vec<i64> = lines[1..=2000]
            .iter()
            .map(|v| {
                assert_eq!(&v["xid"], big_xid, "{v}");
                v["new"]["id"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(ids, (1..=2000).collect::<Vec<i64>>());
        assert_eq!(lines[2003]["new"]["id"], 5000);
        // Acknowledged through the last transaction written.
        let last_end: Lsn = lines[2004]["end_lsn"].as_str().unwrap().parse().unwrap();
        wait_for("confirmed flush", Duration::from_secs(10), || {
            (confirmed(&c, "s_txn") >= last_end).then_some(())
        })
        .unwrap();
    });
}
