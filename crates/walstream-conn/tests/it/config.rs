//! Configuration against a real server: the password file, URIs, Unix sockets, the
//! environment fallback, startup parameters and `target_session_attrs`.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use walstream_conn::{Client, Config, ErrorKind, PassFileWarning, PasswordSource};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{config, connect, log_tail, run};

/// Escapes a `.pgpass` field.
fn pgpass_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn write_passfile(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn current_user(client: &mut Client) -> String {
    let rows = run(client.simple_query("SELECT current_user")).unwrap();
    rows[0].get(0).unwrap().to_owned()
}

#[test]
fn password_file_supplies_passwords() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let passfile = dir.path().join("pgpass");
        let port = cluster.port();
        let line = |role: Role, host: &str, port: &str| {
            format!(
                "{host}:{port}:postgres:{}:{}\n",
                role.name(),
                pgpass_escape(role.password().unwrap())
            )
        };
        let text = format!(
            "# walstream test password file\n{}{}{}{}wrong:{port}:*:ws_scram:not-this-one\n",
            line(Role::Scram, "127.0.0.1", &port.to_string()),
            line(Role::Md5, "*", "*"),
            line(Role::Password, "127.0.0.1", "*"),
            line(Role::ScramUtf8, "*", &port.to_string()),
        );
        write_passfile(&passfile, &text, 0o600);
        for role in [Role::Scram, Role::Md5, Role::Password, Role::ScramUtf8] {
            let conninfo = format!(
                "host=127.0.0.1 port={port} user={} dbname=postgres sslmode=disable passfile='{}'",
                role.name(),
                passfile.display()
            );
            let c = config(&conninfo);
            let target = &c.targets().unwrap()[0];
            let lookup = c.lookup_password(target);
            assert_eq!(
                lookup.password.as_ref().map(|(_, s)| s),
                Some(&PasswordSource::PassFile(passfile.clone())),
                "{role:?}"
            );
            let mut client = connect(&conninfo)
                .unwrap_or_else(|e| panic!("{role:?}: {e}\n{}", log_tail(&cluster)));
            assert_eq!(current_user(&mut client), role.name());
            run(client.close());
        }

        // A group-readable file is ignored (with a warning), so there is no password.
        write_passfile(&passfile, &text, 0o640);
        let conninfo = format!(
            "host=127.0.0.1 port={port} user=ws_scram dbname=postgres sslmode=disable \
             passfile='{}'",
            passfile.display()
        );
        let c = config(&conninfo);
        let lookup = c.lookup_password(&c.targets().unwrap()[0]);
        assert!(
            matches!(
                lookup.warning,
                Some(PassFileWarning::InsecurePermissions { mode: 0o640, .. })
            ),
            "{lookup:?}"
        );
        let e = connect(&conninfo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    });
}

#[test]
fn uris_and_unix_sockets() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let port = cluster.port();
        let socket_dir = cluster.socket_dir().display().to_string();
        let cases = [
            (
                format!("{}?sslmode=disable", cluster.url(Role::Scram)),
                Role::Scram,
            ),
            (
                format!("{}?sslmode=disable", cluster.url(Role::ScramUtf8)),
                Role::ScramUtf8,
            ),
            (
                format!(
                    "postgresql://ws_md5:{}@[::1]:{port},127.0.0.1:{port}/postgres?sslmode=disable\
                     &connect_timeout=5",
                    percent_encode(Role::Md5.password().unwrap())
                ),
                Role::Md5,
            ),
            (
                format!("postgresql:///postgres?host={socket_dir}&port={port}&user=ws_trust"),
                Role::Trust,
            ),
            (
                format!(
                    "postgresql://ws_trust@{}:{port}/postgres",
                    percent_encode(&socket_dir)
                ),
                Role::Trust,
            ),
            (
                format!(
                    "host='{socket_dir}' port={port} user=ws_scram dbname=postgres \
                     password='{}'",
                    Role::Scram.password().unwrap()
                ),
                Role::Scram,
            ),
        ];
        for (conninfo, role) in cases {
            let mut client = connect(&conninfo)
                .unwrap_or_else(|e| panic!("{conninfo}: {e}\n{}", log_tail(&cluster)));
            assert_eq!(current_user(&mut client), role.name(), "{conninfo}");
            run(client.close());
        }
    });
}

#[test]
fn environment_fallback() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let vars: HashMap<&str, String> = [
            ("PGHOST", "127.0.0.1".to_owned()),
            ("PGPORT", cluster.port().to_string()),
            ("PGUSER", "ws_scram".to_owned()),
            ("PGPASSWORD", Role::Scram.password().unwrap().to_owned()),
            ("PGDATABASE", "postgres".to_owned()),
            ("PGSSLMODE", "disable".to_owned()),
            ("PGAPPNAME", "from-env".to_owned()),
        ]
        .into_iter()
        .collect();
        let lookup = |k: &str| vars.get(k).cloned();
        let c = Config::new().with_env_from(lookup).unwrap();
        let mut client =
            run(Client::connect(&c)).unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        let rows =
            run(client.simple_query("SELECT current_user, current_setting('application_name')"))
                .unwrap();
        assert_eq!(rows[0].get(0), Some("ws_scram"));
        assert_eq!(rows[0].get(1), Some("from-env"));
        run(client.close());
        // Explicit values win: the wrong user from the string, not PGUSER's.
        let c = config("user=ws_md5 application_name=explicit")
            .with_env_from(lookup)
            .unwrap();
        let e = run(Client::connect(&c)).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::Db,
            "ws_md5 with ws_scram's password: {e}"
        );
    });
}

#[test]
fn startup_parameters_reach_the_server() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let base = format!("{} sslmode=disable", cluster.conninfo(Role::Postgres));
        let mut client = connect(&format!(
            "{base} application_name=walstream-it options='-c geqo=off -c work_mem=5MB' \
             client_encoding=UTF-8"
        ))
        .unwrap();
        let rows = run(client.simple_query(
            "SELECT current_setting('application_name'), current_setting('geqo'), \
             current_setting('work_mem'), current_setting('client_encoding')",
        ))
        .unwrap();
        assert_eq!(rows[0].get(0), Some("walstream-it"));
        assert_eq!(rows[0].get(1), Some("off"));
        assert_eq!(rows[0].get(2), Some("5MB"));
        assert_eq!(rows[0].get(3), Some("UTF8"));
        run(client.close());
        let mut client = connect(&format!("{base} fallback_application_name=fallback")).unwrap();
        let rows = run(client.simple_query("SELECT current_setting('application_name')")).unwrap();
        assert_eq!(rows[0].get(0), Some("fallback"));
        run(client.close());
    });
}

#[test]
fn target_session_attrs_on_a_primary() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let base = format!(
            "host=127.0.0.1,127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable",
            cluster.port()
        );
        // (target_session_attrs, extra options, accepted)
        let cases = [
            ("any", "", true),
            ("read-write", "", true),
            ("primary", "", true),
            ("prefer-standby", "", true),
            ("read-only", "", false),
            ("standby", "", false),
            // A primary whose sessions default to read-only.
            ("read-only", "-c default_transaction_read_only=on", true),
            ("read-write", "-c default_transaction_read_only=on", false),
            ("primary", "-c default_transaction_read_only=on", true),
        ];
        for (attrs, options, accepted) in cases {
            let conninfo = format!("{base} target_session_attrs={attrs} options='{options}'");
            match connect(&conninfo) {
                Ok(client) => {
                    assert!(accepted, "{attrs} {options}: accepted");
                    run(client.close());
                }
                Err(e) => {
                    assert!(!accepted, "{attrs} {options}: {e}\n{}", log_tail(&cluster));
                    assert_eq!(e.kind(), ErrorKind::TargetSessionAttrs, "{e}");
                }
            }
        }
    });
}
