//! `walstream receivewal` against real servers: stopped with SIGINT, resumed with --endpos,
//! its completed segments byte-identical to the same major's `pg_receivewal`'s.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use walstream_test_support::{
    Cluster, ClusterOptions, PgInstall, Role, for_each_server, parse_lsn, wait_for,
};

use crate::{assert_ok, bin, path_arg, run, stderr, stdout};

const SEG: u64 = 1 << 20;

fn conninfo(cluster: &Cluster, app: &str) -> String {
    format!(
        "{} sslmode=disable application_name={app}",
        cluster.conninfo(Role::Trust)
    )
}

fn sigint(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn wait_streaming(cluster: &Cluster, apps: &[&str]) {
    wait_for("the receivers to stream", Duration::from_secs(30), || {
        let rows = cluster.stat_replication().ok()?;
        apps.iter()
            .all(|a| {
                rows.iter()
                    .any(|r| r.application_name == *a && r.state == "streaming")
            })
            .then_some(())
    })
    .unwrap();
}

fn completed(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.len() == 24 && name.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| (name, fs::read(e.path()).unwrap()))
        })
        .collect()
}

fn segment_name(lsn: u64) -> String {
    let per_id = 0x1_0000_0000 / SEG;
    format!(
        "00000001{:08X}{:08X}",
        lsn / SEG / per_id,
        lsn / SEG % per_id
    )
}

fn insert(cluster: &Cluster, table: &str, rows: u32) {
    cluster
        .execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id int, pad text); \
             INSERT INTO {table} SELECT g, repeat(md5(g::text), 6) FROM generate_series(1, {rows}) g"
        ))
        .unwrap();
}

fn pg_receivewal(install: &PgInstall, conninfo: &str, dir: &Path) -> Child {
    Command::new(install.bin("pg_receivewal"))
        .arg("-d")
        .arg(conninfo)
        .arg("-D")
        .arg(dir)
        .args(["--no-loop", "--status-interval", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn receivewal_stops_on_sigint_resumes_to_endpos_and_matches_pg_receivewal() {
    for_each_server(|install| {
        let cluster = Cluster::start(
            install,
            ClusterOptions::new()
                .initdb_arg("--wal-segsize=1")
                .setting("wal_keep_size", "64MB"),
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let (ours, theirs) = (work.path().join("ours"), work.path().join("theirs"));
        fs::create_dir(&theirs).unwrap();
        let mut pg = pg_receivewal(install, &conninfo(&cluster, "pg_rw"), &theirs);
        let ours_arg = path_arg(&ours);
        let child = bin()
            .args(["receivewal", "-d", &conninfo(&cluster, "ws_cli"), "-D"])
            .arg(&ours_arg)
            .args(["--status-interval", "1", "--retry-interval", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_streaming(&cluster, &["pg_rw", "ws_cli"]);

        insert(&cluster, "a", 1500);
        let mid = cluster.current_wal_lsn().unwrap();
        wait_for("walstream to write", Duration::from_secs(30), || {
            cluster
                .stat_replication()
                .ok()?
                .into_iter()
                .find(|r| r.application_name == "ws_cli" && r.write_lsn.is_some_and(|w| w >= mid))
        })
        .unwrap();
        // A lost connection is retried (after --retry-interval) and streaming continues.
        let first = cluster
            .stat_replication()
            .unwrap()
            .into_iter()
            .find(|r| r.application_name == "ws_cli")
            .unwrap();
        assert!(cluster.kill_backend(first.pid).unwrap());
        wait_for("walstream to reconnect", Duration::from_secs(30), || {
            cluster.stat_replication().ok()?.into_iter().find(|r| {
                r.application_name == "ws_cli"
                    && r.pid != first.pid
                    && r.write_lsn.is_some_and(|w| w >= mid)
            })
        })
        .unwrap();
        sigint(&child);
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, Some(&cluster));
        assert!(stderr(&out).contains("retrying in 1 s"), "{}", stderr(&out));
        assert!(fs::read_dir(&ours).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }));

        insert(&cluster, "b", 6000);
        let switched = parse_lsn(&cluster.psql("SELECT pg_switch_wal()").unwrap()).unwrap();
        let end = switched.div_ceil(SEG) * SEG;
        let end_text = format!("{:X}/{:X}", end >> 32, end & 0xFFFF_FFFF);
        let out = run(&[
            "receivewal",
            "-d",
            &conninfo(&cluster, "ws_cli2"),
            "-D",
            &ours_arg,
            "--endpos",
            &end_text,
            "--no-loop",
        ]);
        assert_ok(&out, Some(&cluster));

        let last = segment_name(end - 1);
        wait_for(
            "pg_receivewal's last segment",
            Duration::from_secs(30),
            || theirs.join(&last).exists().then_some(()),
        )
        .unwrap();
        sigint(&pg);
        let _ = pg.wait();
        let (a, b) = (completed(&ours), completed(&theirs));
        assert!(a.len() >= 3, "{:?}", a.keys());
        assert!(a.contains_key(&last));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        for (name, bytes) in &a {
            assert!(
                bytes == &b[name],
                "segment {name} differs from pg_receivewal's"
            );
        }
    });
}

#[test]
fn receivewal_errors_and_help() {
    let help = run(&["receivewal", "--help"]);
    assert!(help.status.success());
    let text = stdout(&help);
    assert!(
        text.contains("Examples:") && text.contains("--endpos"),
        "{text}"
    );

    // A server that cannot be reached is a connection error (exit 3) with --no-loop.
    let out = run(&[
        "receivewal",
        "-d",
        "host=127.0.0.1 port=1 user=x connect_timeout=2",
        "-D",
        &path_arg(&std::env::temp_dir().join("ws-receivewal-unreachable")),
        "--no-loop",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = run(&[
            "receivewal",
            "-d",
            &conninfo(&cluster, "ws_err"),
            "-D",
            &path_arg(dir.path()),
            "-S",
            "nope",
            "--no-loop",
        ]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("\"nope\""), "{err}");
        assert!(err.contains("--create-slot"), "{err}");

        // --create-slot without --if-not-exists refuses an existing slot, with the hint.
        cluster
            .execute("SELECT pg_create_physical_replication_slot('taken')")
            .unwrap();
        let out = run(&[
            "receivewal",
            "-d",
            &conninfo(&cluster, "ws_err"),
            "-D",
            &path_arg(dir.path()),
            "-S",
            "taken",
            "--create-slot",
            "--no-loop",
        ]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert!(stderr(&out).contains("--if-not-exists"), "{}", stderr(&out));
    });
}
