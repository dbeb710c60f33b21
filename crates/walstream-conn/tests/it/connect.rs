//! Connecting: authentication methods, TLS modes, channel binding, host lists, sockets.

use walstream_conn::{CompletedAuth, ErrorKind};
use walstream_proto::SqlState;
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server, skip_unless};

use crate::{connect, log_tail, run};

fn with_password(cluster: &Cluster, role: Role, password: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={} dbname=postgres password='{}' sslmode=disable",
        cluster.port(),
        role.name(),
        password
    )
}

#[test]
fn every_auth_method_right_and_wrong_password() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let cases = [
            (Role::Trust, CompletedAuth::None),
            (Role::Password, CompletedAuth::Password),
            (Role::Md5, CompletedAuth::Md5),
            (Role::Scram, CompletedAuth::ScramSha256),
            (Role::ScramUtf8, CompletedAuth::ScramSha256),
        ];
        for (role, method) in cases {
            let conninfo = format!("{} sslmode=disable", cluster.conninfo(role));
            let mut client = connect(&conninfo)
                .unwrap_or_else(|e| panic!("{role:?}: {e}\n{}", log_tail(&cluster)));
            assert_eq!(client.auth_method(), Some(method), "{role:?}");
            assert!(!client.is_tls());
            let rows = run(client.simple_query("SELECT current_user, 1 + 1 AS two")).unwrap();
            assert_eq!(rows[0].get(0), Some(role.name()));
            assert_eq!(rows[0].get_named("two"), Some("2"));
            run(client.close());
            if role.password().is_some() {
                let e = connect(&with_password(&cluster, role, "wrong")).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Db, "{role:?}: {e}");
                assert_eq!(e.code(), Some(SqlState::INVALID_PASSWORD), "{role:?}: {e}");
                assert!(!e.to_string().contains("wrong"), "password leaked into {e}");
            }
        }
        // A password method without a password is a client-side error.
        let e = connect(&format!("host=127.0.0.1 port={} user=ws_scram dbname=postgres sslmode=disable passfile=/nonexistent", cluster.port())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    });
}

#[test]
fn query_errors_are_typed_and_connection_survives() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let mut client = connect(&format!(
            "{} sslmode=disable",
            cluster.conninfo(Role::Postgres)
        ))
        .unwrap();
        run(client.simple_query("CREATE TABLE t (id int PRIMARY KEY)")).unwrap();
        run(client.simple_query("INSERT INTO t VALUES (1)")).unwrap();
        let e = run(client.simple_query("INSERT INTO t VALUES (1)")).unwrap_err();
        let db = e.db_error().expect("db error");
        assert_eq!(db.code().code(), "23505");
        assert_eq!(db.table(), Some("t"));
        assert_eq!(db.constraint(), Some("t_pkey"));
        assert!(db.detail().is_some_and(|d| d.contains("(id)=(1)")));
        assert!(db.routine().is_some() && db.file().is_some() && db.line().is_some());
        let e = run(client.simple_query("SELEC 1")).unwrap_err();
        assert_eq!(e.code(), Some(SqlState::SYNTAX_ERROR));
        assert_eq!(e.db_error().and_then(|d| d.position()), Some(1));
        let sets = run(client.simple_query_sets("SELECT 1; SELECT 2, 3; ")).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[1].rows()[0].get(1), Some("3"));
        assert_eq!(sets[1].tag(), Some("SELECT 1"));
    });
}

#[test]
fn tls_modes_and_channel_binding() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let tls = cluster.tls();
        let ca = tls.ca_cert.display().to_string();
        let port = cluster.port();
        let scram = |extra: &str| format!("{} {extra}", cluster.conninfo(Role::Scram));
        // verify-full with the right host name and CA.
        let client = connect(&scram(&format!(
            "host=localhost sslmode=verify-full sslrootcert={ca}"
        )))
        .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        assert!(client.is_tls());
        assert_eq!(client.auth_method(), Some(CompletedAuth::ScramSha256Plus));
        // Wrong host name.
        let e = connect(&scram(&format!(
            "host=wrong.example hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
        )))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        // ... accepted by verify-ca.
        connect(&scram(&format!(
            "host=wrong.example hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert={ca}"
        )))
        .unwrap();
        // Wrong CA.
        let e = connect(&scram(&format!(
            "sslmode=verify-full sslrootcert={}",
            tls.other_ca.display()
        )))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
        // channel_binding=require: works over TLS, fails client-side before any password in plaintext.
        let c = connect(&scram("sslmode=require channel_binding=require")).unwrap();
        assert_eq!(c.auth_method(), Some(CompletedAuth::ScramSha256Plus));
        let e = connect(&scram("sslmode=disable channel_binding=require")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        let e = connect(&format!(
            "{} sslmode=disable channel_binding=require",
            cluster.conninfo(Role::Md5)
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
        // prefer picks TLS when offered; channel_binding=disable uses plain SCRAM.
        let c = connect(&scram("sslmode=prefer channel_binding=disable")).unwrap();
        assert!(c.is_tls());
        assert_eq!(c.auth_method(), Some(CompletedAuth::ScramSha256));
        // The TLS-only role.
        let c = connect(&format!("{} sslmode=require", cluster.conninfo(Role::Ssl))).unwrap();
        assert!(c.is_tls());
        let e = connect(&format!("{} sslmode=disable", cluster.conninfo(Role::Ssl))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        // Client certificate authentication.
        let cert = |c: &std::path::Path, k: &std::path::Path| {
            format!(
                "host=localhost port={port} user=ws_cert dbname=postgres sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
                c.display(),
                k.display()
            )
        };
        let c = connect(&cert(&tls.client_cert, &tls.client_key))
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        assert_eq!(c.auth_method(), Some(CompletedAuth::None));
        let e = connect(&cert(&tls.wrong_cn_client_cert, &tls.wrong_cn_client_key)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        // Direct TLS (PostgreSQL 17+).
        if skip_unless(
            cluster.major() >= 17,
            "sslnegotiation=direct needs PostgreSQL 17",
        ) {
            let c = connect(&scram(&format!(
                "host=localhost sslmode=verify-full sslrootcert={ca} sslnegotiation=direct"
            )))
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
            assert!(c.is_tls());
        }
    });
}

#[test]
fn plaintext_only_server() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new().setting("ssl", "off")).unwrap();
        let c = connect(&format!("{} sslmode=prefer", cluster.conninfo(Role::Scram))).unwrap();
        assert!(!c.is_tls());
        let e = connect(&format!(
            "{} sslmode=require",
            cluster.conninfo(Role::Scram)
        ))
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Tls, "{e}");
    });
}

#[test]
fn host_list_unix_socket_and_cancel() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        // The first host refuses connections; the second is the server.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let conninfo = format!(
            "host=127.0.0.1,127.0.0.1 port={dead_port},{} user=ws_trust dbname=postgres sslmode=disable",
            cluster.port()
        );
        let mut c = connect(&conninfo).unwrap();
        assert_eq!(run(c.show("port")).unwrap(), cluster.port().to_string());
        // target_session_attrs=read-write accepts a primary; standby rejects it.
        connect(&format!("{conninfo} target_session_attrs=read-write")).unwrap();
        let e = connect(&format!("{conninfo} target_session_attrs=standby")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TargetSessionAttrs, "{e}");
        // Unix socket.
        let mut c = connect(&cluster.socket_conninfo(Role::Scram)).unwrap();
        assert!(!c.is_tls());
        let rows = run(c.simple_query("SELECT inet_client_addr() IS NULL")).unwrap();
        assert_eq!(rows[0].get(0), Some("t"));
        // Cancel a running query from another task.
        let cfg = crate::config(&format!(
            "{} sslmode=require",
            cluster.conninfo(Role::Trust)
        ));
        run(async {
            let mut c = walstream_conn::Client::connect(&cfg).await.unwrap();
            let token = c.cancel_token(&cfg).unwrap();
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                token.cancel().await
            });
            let e = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
            assert_eq!(e.code(), Some(SqlState::QUERY_CANCELED), "{e}");
            canceller.await.unwrap().unwrap();
            // Still usable.
            assert_eq!(
                c.simple_query("SELECT 1").await.unwrap()[0].get(0),
                Some("1")
            );
            // A command deadline fails the command and breaks the connection.
            c.set_command_timeout(std::time::Duration::from_millis(200));
            let e = c.simple_query("SELECT pg_sleep(5)").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout);
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed);
        });
        // A dropped command future marks the connection broken.
        run(async {
            let mut c = walstream_conn::Client::connect(&cfg).await.unwrap();
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                c.simple_query("SELECT pg_sleep(5)"),
            )
            .await;
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        });
    });
}

#[test]
fn protocol_version_negotiation() {
    use walstream_proto::ProtocolVersion;
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let major = cluster.major();
        let base = format!("{} sslmode=disable", cluster.conninfo(Role::Scram));
        // The default is 3.0, like libpq 18.
        let c = connect(&base).unwrap();
        assert_eq!(c.protocol_version(), ProtocolVersion::V3_0);
        // Asking for 3.2: servers before 18 answer NegotiateProtocolVersion and the
        // connection continues with 3.0.
        let mut c = connect(&format!("{base} max_protocol_version=latest"))
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        let newest = if major >= 18 {
            ProtocolVersion::V3_2
        } else {
            ProtocolVersion::V3_0
        };
        assert_eq!(c.protocol_version(), newest);
        assert_eq!(
            run(c.simple_query("SELECT 1")).unwrap()[0].get(0),
            Some("1")
        );
        // Requiring 3.2 fails clearly on older servers.
        let required = connect(&format!("{base} min_protocol_version=3.2"));
        if !skip_unless(
            major >= 18,
            "protocol 3.2 (long cancel keys) needs PostgreSQL 18; negotiation down to 3.0 was tested",
        ) {
            let e = required.map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            return;
        }
        let c = required.unwrap();
        assert_eq!(c.protocol_version(), ProtocolVersion::V3_2);
        // Cancel with the long key.
        let cfg = crate::config(&format!("{base} max_protocol_version=3.2"));
        run(async {
            let mut c = walstream_conn::Client::connect(&cfg).await.unwrap();
            let token = c.cancel_token(&cfg).unwrap();
            let canceller = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                token.cancel().await
            });
            let e = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
            assert_eq!(e.code(), Some(SqlState::QUERY_CANCELED), "{e}");
            canceller.await.unwrap().unwrap();
        });
    });
}
