//! `walstream demo` runs to completion without a terminal.
use walstream_test_support::for_each_server;

use crate::{assert_ok, path_arg, run, stderr, stdout};

#[test]
fn demo_runs_the_workload_to_completion() {
    for_each_server(|install| {
        let bindir = path_arg(&install.bindir);
        let out = run(&[
            "demo",
            "--pg-bin",
            &bindir,
            "--format",
            "jsonl",
            "--pace-ms",
            "0",
            "--large-rows",
            "300",
        ]);
        assert_ok(&out, None);
        let lines: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let count = |kind: &str| lines.iter().filter(|v| v["kind"] == kind).count();
        // 1 + 2 account inserts and the large transaction's rows.
        assert_eq!(count("insert"), 3 + 300);
        assert_eq!(count("update"), 2);
        assert_eq!(count("delete"), 1);
        assert_eq!(count("truncate"), 1);
        // Transactional transfer note, non-transactional note, and the final message.
        assert_eq!(count("message"), 3);
        assert_eq!(count("begin"), count("commit"));
        let last = lines.last().unwrap();
        assert_eq!(last["prefix"], "walstream-demo-done");
        let err = stderr(&out);
        assert!(err.contains("the workload finished"), "{err}");
        assert!(err.contains("server stopped and removed"), "{err}");
    });
}

#[test]
fn demo_stops_after_n_events_in_pretty_format() {
    for_each_server(|install| {
        let bindir = path_arg(&install.bindir);
        let out = run(&[
            "demo",
            "--pg-bin",
            &bindir,
            "--events",
            "4",
            "--pace-ms",
            "0",
        ]);
        assert_ok(&out, None);
        let text = stdout(&out);
        // begin, relation (a new table), insert, commit.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("BEGIN"), "{text}");
        assert!(lines[1].starts_with("RELATION  public.accounts"), "{text}");
        assert!(lines[2].starts_with("INSERT    public.accounts"), "{text}");
        assert!(lines[3].starts_with("COMMIT"), "{text}");
        assert!(
            stderr(&out).contains("--events reached"),
            "{}",
            stderr(&out)
        );
    });
}

#[test]
fn demo_without_server_programs_says_how_to_install_them() {
    let empty = tempfile::tempdir().unwrap();
    let out = run(&["demo", "--pg-bin", &path_arg(empty.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("does not hold initdb"), "{err}");
    assert!(err.contains("apt-get install"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
