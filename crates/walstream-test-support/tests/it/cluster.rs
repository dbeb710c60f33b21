//! The cluster lifecycle, settings, logical decoding and the inspection helpers.

use std::collections::BTreeMap;
use std::time::Duration;

use walstream_test_support::{
    Cluster, ClusterOptions, Error, Role, for_each_server, servers, wait_for,
};

#[test]
fn servers_are_configured_and_versions_parsed() {
    let list = servers();
    assert!(!list.is_empty());
    for install in list {
        assert!(install.major >= 10, "{install:?}");
        assert!(
            install.version.starts_with(&install.major.to_string()),
            "{install:?}"
        );
        assert!(install.bin("psql").is_file(), "{install:?}");
    }
}

#[test]
fn settings_are_applied() {
    for_each_server(|install| {
        let c = Cluster::start(
            install,
            ClusterOptions::new()
                .setting("logical_decoding_work_mem", "64kB")
                .setting("cluster_name", "it's quoted"),
        )
        .unwrap();
        let show = |name: &str| c.psql(&format!("SHOW {name}")).unwrap();
        assert_eq!(show("wal_level"), "logical");
        assert_eq!(show("max_wal_senders"), "20");
        assert_eq!(show("max_replication_slots"), "20");
        assert_eq!(show("max_prepared_transactions"), "10");
        assert_eq!(show("fsync"), "off");
        assert_eq!(show("ssl"), "on");
        assert_eq!(show("logical_decoding_work_mem"), "64kB");
        assert_eq!(show("cluster_name"), "it's quoted");
        assert_eq!(show("port"), c.port().to_string());
        let major: u32 = c
            .psql("SELECT current_setting('server_version_num')::int / 10000")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(major, c.major());
        assert!(
            c.socket_dir()
                .join(format!(".s.PGSQL.{}", c.port()))
                .exists()
        );
        assert!(
            c.log_contents().contains("database system is ready"),
            "{}",
            c.log_contents()
        );
    });
}

#[test]
fn pgoutput_slot_sees_inserts() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             CREATE PUBLICATION pub FOR TABLE t;
             SELECT pg_create_logical_replication_slot('s1', 'pgoutput');",
        )
        .unwrap();
        let before = c.current_wal_lsn().unwrap();
        c.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 7) g")
            .unwrap();
        c.execute("INSERT INTO t VALUES (100, 'single')").unwrap();
        assert!(c.current_wal_lsn().unwrap() > before);

        let rows = c
            .query_rows(
                "SELECT lsn, xid, encode(data, 'hex') FROM pg_logical_slot_peek_binary_changes(\
                 's1', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')",
            )
            .unwrap();
        assert!(!rows.is_empty());
        let mut tags: BTreeMap<char, usize> = BTreeMap::new();
        for row in &rows {
            assert_eq!(row.len(), 3, "{row:?}");
            let byte = u8::from_str_radix(&row[2][..2], 16).unwrap();
            *tags.entry(char::from(byte)).or_default() += 1;
        }
        assert_eq!(tags.get(&'B'), Some(&2), "{tags:?}");
        assert_eq!(tags.get(&'C'), Some(&2), "{tags:?}");
        assert_eq!(tags.get(&'I'), Some(&8), "{tags:?}");
        assert!(tags.get(&'R').is_some_and(|n| *n >= 1), "{tags:?}");

        let slots = c.replication_slots().unwrap();
        assert_eq!(slots.len(), 1, "{slots:?}");
        let s = &slots[0];
        assert_eq!(s.slot_name, "s1");
        assert_eq!(s.slot_type, "logical");
        assert_eq!(s.plugin.as_deref(), Some("pgoutput"));
        assert_eq!(s.database.as_deref(), Some("postgres"));
        assert!(!s.active && !s.temporary && s.active_pid.is_none());
        assert!(s.confirmed_flush_lsn.is_some_and(|l| l <= before), "{s:?}");
        assert!(s.restart_lsn.is_some());
        assert_eq!(s.wal_status.as_deref(), Some("reserved"));
        assert!(c.stat_replication().unwrap().is_empty());
        assert_eq!(c.terminate_walsenders().unwrap(), 0);
    });
}

#[test]
fn stop_start_restart_and_crash_keep_data_and_port() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        let port = c.port();
        c.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
            .unwrap();
        c.stop_fast().unwrap();
        assert!(c.psql("SELECT 1").is_err(), "server should be down");
        c.start_server().unwrap();
        c.restart().unwrap();
        c.stop_immediate().unwrap();
        c.start_server().unwrap();
        assert_eq!(c.port(), port);
        assert_eq!(c.psql("SELECT x FROM kept").unwrap(), "42");
        assert!(c.log_contents().contains("database system was interrupted"));
    });
}

#[test]
fn psql_reports_sql_errors() {
    let c = Cluster::start_default().unwrap();
    let err = c
        .execute("SELECT 1; SELECT * FROM no_such_table; SELECT 2")
        .unwrap_err();
    let stderr = err.stderr().unwrap_or_default().to_owned();
    assert!(stderr.contains("no_such_table"), "{err}");
    // query_rows keeps empty strings and multi-column rows apart.
    let rows = c
        .query_rows("SELECT 'a|b', '', NULL::text UNION ALL SELECT 'c', 'd', 'e'")
        .unwrap();
    assert_eq!(rows, vec![vec!["a|b", "", ""], vec!["c", "d", "e"]]);
}

#[test]
fn kill_backend_and_wait_for() {
    let c = Cluster::start_default().unwrap();
    let pid: u32 = c.psql("SELECT pg_backend_pid()").unwrap().parse().unwrap();
    // That backend has exited with its psql; there is no such process any more.
    wait_for("psql's backend to exit", Duration::from_secs(10), || {
        let alive = c
            .psql(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
            ))
            .ok()?;
        (alive == "0").then_some(())
    })
    .unwrap();
    assert!(!c.kill_backend(pid).unwrap());
    let err = wait_for("never", Duration::from_millis(120), || None::<()>).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
}

#[test]
fn clusters_are_removed_on_drop() {
    let c = Cluster::start_default().unwrap();
    let data = c.data_dir().to_path_buf();
    assert!(data.join("PG_VERSION").exists());
    drop(c);
    assert!(!data.exists() || std::env::var_os("WALSTREAM_KEEP_CLUSTERS").is_some());
}

/// Stress: several clusters started at once get distinct ports and directories and all work.
/// Long; CI runs it by name (`.ci/ignored-tests`).
#[test]
#[ignore = "stress test: starts 6 clusters at once"]
fn many_clusters_in_parallel() {
    let install = servers().first().unwrap().clone();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let install = install.clone();
            std::thread::spawn(move || {
                let c = Cluster::start(&install, ClusterOptions::new()).unwrap();
                c.execute(&format!(
                    "CREATE TABLE t{i} (x int); INSERT INTO t{i} VALUES ({i})"
                ))
                .unwrap();
                assert_eq!(
                    c.psql(&format!("SELECT x FROM t{i}")).unwrap(),
                    i.to_string()
                );
                (c.port(), c.data_dir().to_path_buf(), c)
            })
        })
        .collect();
    let clusters: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ports: Vec<u16> = clusters.iter().map(|(p, _, _)| *p).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), clusters.len());
    let dirs: std::collections::BTreeSet<_> = clusters.iter().map(|(_, d, _)| d.clone()).collect();
    assert_eq!(dirs.len(), clusters.len());
}

#[test]
fn a_panicking_test_still_stops_and_removes_its_cluster() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let c = Cluster::start_default().unwrap();
        tx.send((c.data_dir().to_path_buf(), c.port())).unwrap();
        panic!("deliberate panic with a live cluster");
    })
    .join();
    assert!(outcome.is_err());
    let (data, port) = rx.recv().unwrap();
    if std::env::var_os("WALSTREAM_KEEP_CLUSTERS").is_none() {
        assert!(!data.exists(), "{} survived the panic", data.display());
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server on port {port} still accepts connections"
    );
}

/// Runs one test of this binary in a child process with `WALSTREAM_PG_BINDIRS` set to `value`.
fn child_with_bindirs(value: &str) -> (bool, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::servers_are_configured_and_versions_parsed",
            "--nocapture",
        ])
        .env("WALSTREAM_PG_BINDIRS", value)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_missing_server_fails_loudly_with_install_instructions() {
    let (ok, text) = child_with_bindirs("/nonexistent/bin");
    assert!(!ok, "{text}");
    assert!(
        text.contains("WALSTREAM_PG_BINDIRS entry `/nonexistent/bin` is unusable"),
        "{text}"
    );
    let (ok, text) = child_with_bindirs(" , ");
    assert!(!ok, "{text}");
    assert!(text.contains("set but empty"), "{text}");
    assert!(text.contains("apt-get install postgresql-15"), "{text}");
    assert!(text.contains("bash .ci/run"), "{text}");
}

#[test]
fn physical_walsender_shows_up_and_can_be_terminated() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("SELECT pg_create_physical_replication_slot('phys', true)")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut receiver = std::process::Command::new(install.bin("pg_receivewal"))
            .arg("-d")
            .arg(format!(
                "{} application_name=ws_receiver",
                c.socket_conninfo(Role::Trust)
            ))
            .arg("-D")
            .arg(dir.path())
            .args(["--slot", "phys", "--no-loop", "--status-interval", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let sender = wait_for("pg_receivewal to stream", Duration::from_secs(30), || {
            c.stat_replication()
                .ok()?
                .into_iter()
                .find(|r| r.state == "streaming")
        })
        .unwrap();
        assert_eq!(sender.application_name, "ws_receiver");
        assert!(sender.sent_lsn.is_some());
        let slot = wait_for("slot phys to be active", Duration::from_secs(10), || {
            c.replication_slots()
                .ok()?
                .into_iter()
                .find(|s| s.slot_name == "phys" && s.active)
        })
        .unwrap();
        assert_eq!(slot.slot_type, "physical");
        assert_eq!(slot.active_pid, Some(sender.pid));
        assert!(slot.plugin.is_none() && slot.database.is_none());
        assert!(slot.restart_lsn.is_some());

        assert_eq!(c.terminate_walsenders().unwrap(), 1);
        let status = receiver.wait().unwrap();
        assert!(
            !status.success(),
            "pg_receivewal --no-loop exits with an error when cut off"
        );
        wait_for("the walsender to go away", Duration::from_secs(10), || {
            c.stat_replication().ok()?.is_empty().then_some(())
        })
        .unwrap();
    });
}
