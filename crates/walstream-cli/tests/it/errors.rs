//! Failures: one line, the SQLSTATE and a hint, and the documented exit code.
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{run, stderr};

fn one_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["tail", "--slot", "s"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["tail", "-d", "host=", "-S", "s", "-P", "p", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["slot", "list", "-d", "nosuchkey=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(one_line(&out).contains("hint:"));
}

#[test]
fn connection_refused_exits_3() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ci = format!("host=127.0.0.1 port={port} user=x dbname=x connect_timeout=5");
    let out = run(&["slot", "list", "-d", &ci]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(one_line(&out).contains("is the server running"));
}

#[test]
fn server_errors_name_the_sqlstate_and_the_next_step() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("CREATE PUBLICATION ws_pub FOR ALL TABLES")
            .unwrap();
        let ci = format!("{} sslmode=disable", c.conninfo(Role::Postgres));

        // A missing slot: exit 5, SQLSTATE 42704, "use --create-slot".
        let out = run(&["tail", "-d", &ci, "-S", "missing", "-P", "ws_pub"]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        let err = one_line(&out);
        assert!(
            err.contains("SQLSTATE 42704") && err.contains("--create-slot"),
            "{err}"
        );

        // A wrong password: exit 4.
        let bad = format!(
            "host={} port={} user={} password=wrong dbname=postgres sslmode=disable",
            c.host(),
            c.port(),
            Role::Scram.name()
        );
        let out = run(&["slot", "list", "-d", &bad]);
        assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
        assert!(
            one_line(&out).contains("SQLSTATE 28P01"),
            "{}",
            stderr(&out)
        );
    });
}

#[test]
fn wal_level_replica_gets_the_wal_level_hint() {
    for_each_server(|install| {
        let c = Cluster::start(
            install,
            ClusterOptions::new().setting("wal_level", "replica"),
        )
        .unwrap();
        let ci = format!("{} sslmode=disable", c.conninfo(Role::Postgres));
        let out = run(&["slot", "create", "-d", &ci, "s"]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        let err = one_line(&out);
        assert!(err.contains("wal_level = logical"), "{err}");
    });
}
