//! Every role logs in with its method, over normal and replication connections; wrong
//! credentials fail.

use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

fn with_password(conninfo: &str, password: &str) -> String {
    // A later keyword overrides an earlier one in libpq conninfo strings.
    format!("{conninfo} password='{password}'")
}

fn login(c: &Cluster, conninfo: &str) -> Result<String, String> {
    c.psql_with(conninfo, "SELECT current_user")
        .map_err(|e| e.to_string())
}

/// `IDENTIFY_SYSTEM` over a replication connection (`true`: physical, `database`: logical).
fn identify(c: &Cluster, conninfo: &str, replication: &str) -> Result<String, String> {
    c.psql_with(
        &format!("{conninfo} replication={replication}"),
        "IDENTIFY_SYSTEM",
    )
    .map_err(|e| e.to_string())
}

#[test]
fn password_roles_log_in_only_with_the_right_password() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        for role in [
            Role::Postgres,
            Role::Trust,
            Role::Password,
            Role::Md5,
            Role::Scram,
            Role::ScramUtf8,
        ] {
            for tls in ["disable", "require"] {
                let ci = format!("{} sslmode={tls}", c.conninfo(role));
                assert_eq!(login(&c, &ci).unwrap(), role.name(), "{role:?} {tls}");
                for replication in ["true", "database"] {
                    let out = identify(&c, &ci, replication).unwrap();
                    assert!(out.contains('|'), "{role:?} {replication}: {out}");
                }
                if role.password().is_some() {
                    let wrong = with_password(&ci, "not-the-password");
                    let err = login(&c, &wrong).unwrap_err();
                    assert!(err.contains("authentication failed"), "{role:?}: {err}");
                    let err = identify(&c, &wrong, "true").unwrap_err();
                    assert!(err.contains("authentication failed"), "{role:?}: {err}");
                }
            }
            // The unix socket has lines of its own.
            assert_eq!(login(&c, &c.socket_conninfo(role)).unwrap(), role.name());
        }
        // ws_md5's password really is stored as MD5, the others as SCRAM.
        let stored = c
            .psql("SELECT rolname || ':' || left(rolpassword, 6) FROM pg_authid WHERE rolname LIKE 'ws\\_%' AND rolpassword IS NOT NULL ORDER BY 1")
            .unwrap();
        assert!(stored.contains("ws_md5:md5"), "{stored}");
        assert!(stored.contains("ws_scram:SCRAM-"), "{stored}");
        assert!(stored.contains("ws_scram_utf8:SCRAM-"), "{stored}");
        // SCRAM with channel binding over TLS.
        let ci = format!(
            "{} sslmode=require channel_binding=require",
            c.conninfo(Role::Scram)
        );
        assert_eq!(login(&c, &ci).unwrap(), "ws_scram");
    });
}

#[test]
fn tls_only_roles() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        let tls = c.tls();
        // libpq before 15 matches only DNS names, so verify by name (`localhost`) while
        // connecting to the address; later keywords override earlier ones.
        let verify = format!(
            "host=localhost hostaddr=127.0.0.1 sslmode=verify-full sslrootcert='{}'",
            tls.ca_cert.display()
        );

        // ws_ssl: password over TLS only.
        let ssl = c.conninfo(Role::Ssl);
        assert_eq!(login(&c, &format!("{ssl} {verify}")).unwrap(), "ws_ssl");
        identify(&c, &format!("{ssl} {verify}"), "true").unwrap();
        let err = login(&c, &format!("{ssl} sslmode=disable")).unwrap_err();
        assert!(err.contains("pg_hba.conf rejects"), "{err}");
        let err = login(&c, &with_password(&format!("{ssl} {verify}"), "wrong")).unwrap_err();
        assert!(err.contains("authentication failed"), "{err}");

        // ws_cert: client certificate with CN ws_cert, from the suite CA.
        let cert = c.conninfo(Role::Cert);
        let with_cert = |crt: &std::path::Path, key: &std::path::Path| {
            format!(
                "{cert} {verify} sslcert='{}' sslkey='{}'",
                crt.display(),
                key.display()
            )
        };
        let good = with_cert(&tls.client_cert, &tls.client_key);
        assert_eq!(login(&c, &good).unwrap(), "ws_cert");
        for replication in ["true", "database"] {
            identify(&c, &good, replication).unwrap();
        }
        let err = login(
            &c,
            &with_cert(&tls.wrong_cn_client_cert, &tls.wrong_cn_client_key),
        )
        .unwrap_err();
        assert!(err.contains("certificate authentication failed"), "{err}");
        assert!(
            login(
                &c,
                &with_cert(&tls.other_client_cert, &tls.other_client_key)
            )
            .is_err()
        );
        let no_cert = format!("{cert} {verify} sslcert=/nonexistent sslkey=/nonexistent");
        assert!(login(&c, &no_cert).is_err());
        let err = login(&c, &format!("{cert} sslmode=disable")).unwrap_err();
        assert!(err.contains("pg_hba.conf rejects"), "{err}");

        // A client trusting only the unrelated CA must reject the server.
        let other = format!(
            "{} sslmode=verify-ca sslrootcert='{}'",
            c.conninfo(Role::Trust),
            tls.other_ca.display()
        );
        let err = login(&c, &other).unwrap_err();
        assert!(err.contains("certificate verify failed"), "{err}");
        // The server's certificate names 127.0.0.1 too (libpq 15+ checks IP SANs).
        if c.major() >= 15 {
            let by_ip = format!(
                "{} sslmode=verify-full sslrootcert='{}'",
                c.conninfo(Role::Trust),
                tls.ca_cert.display()
            );
            assert_eq!(login(&c, &by_ip).unwrap(), "ws_trust");
        }
    });
}

#[test]
fn url_form_logs_in() {
    let c = Cluster::start_default().unwrap();
    for role in [Role::Scram, Role::ScramUtf8, Role::Md5] {
        let url = format!("{}?sslmode=disable", c.url(role));
        assert_eq!(login(&c, &url).unwrap(), role.name(), "{url}");
    }
}
