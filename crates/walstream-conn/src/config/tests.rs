//! Table-driven tests of the connection-string parsers, every keyword, the environment
//! fallback, host resolution, redaction and the `target_session_attrs` decision.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use walstream_auth::ChannelBindingPolicy;

use super::parse::{parse_key_value, parse_uri, strip_uri_prefix};
use super::*;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn cfg(s: &str) -> Config {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn err(s: &str) -> ConfigError {
    s.parse::<Config>().expect_err(s)
}

fn tcp(host: &str, hostaddr: Option<IpAddr>, port: u16) -> TargetAddr {
    TargetAddr::Tcp {
        host: host.to_owned(),
        hostaddr,
        port,
    }
}

fn unix(path: &str, port: u16) -> TargetAddr {
    TargetAddr::Unix {
        path: PathBuf::from(path),
        port,
    }
}

fn addrs(c: &Config) -> Vec<TargetAddr> {
    c.targets().unwrap().into_iter().map(|t| t.addr).collect()
}

// ----- key=value -----

#[test]
fn key_value_syntax() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("", &[]),
        ("   \t\n ", &[]),
        ("host=localhost", &[("host", "localhost")]),
        (
            "host = localhost   port=5432",
            &[("host", "localhost"), ("port", "5432")],
        ),
        ("dbname='my db'", &[("dbname", "my db")]),
        ("password='it\\'s'", &[("password", "it's")]),
        ("password='back\\\\slash'", &[("password", "back\\slash")]),
        ("password=''", &[("password", "")]),
        ("password=a\\ b", &[("password", "a b")]),
        ("password=a\\'b", &[("password", "a'b")]),
        ("password=trail\\", &[("password", "trail")]),
        (
            "options='-c a=b'dbname=x",
            &[("options", "-c a=b"), ("dbname", "x")],
        ),
        ("a=b=c", &[("a", "b=c")]),
        // libpq skips whitespace after '=', so the next pair becomes the value.
        ("host= port=5", &[("host", "port=5")]),
        ("host=\u{0b}x", &[("host", "x")]),
        ("dbname='été'", &[("dbname", "été")]),
    ];
    for (input, want) in cases {
        assert_eq!(parse_key_value(input).unwrap(), pairs(want), "{input:?}");
    }
}

#[test]
fn key_value_syntax_errors() {
    let cases: &[(&str, usize, &str)] = &[
        ("host", 0, "missing \"=\""),
        ("host=a port", 7, "missing \"=\""),
        ("password='unterminated", 9, "unterminated quoted string"),
        (
            "password='ends with escape\\'",
            9,
            "unterminated quoted string",
        ),
    ];
    for &(input, offset, reason) in cases {
        match parse_key_value(input) {
            Err(ConfigError::InvalidSyntax {
                offset: o,
                reason: r,
            }) => {
                assert_eq!(o, offset, "{input:?}");
                assert!(r.contains(reason), "{input:?}: {r}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
}

// ----- URIs -----

#[test]
fn uri_syntax() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("postgresql://", &[]),
        ("postgres://", &[]),
        ("postgresql://localhost", &[("host", "localhost")]),
        (
            "postgresql://localhost:5433",
            &[("host", "localhost"), ("port", "5433")],
        ),
        (
            "postgresql://localhost/mydb",
            &[("host", "localhost"), ("dbname", "mydb")],
        ),
        (
            "postgresql://user@localhost",
            &[("user", "user"), ("host", "localhost")],
        ),
        (
            "postgresql://user:secret@localhost",
            &[
                ("user", "user"),
                ("password", "secret"),
                ("host", "localhost"),
            ],
        ),
        ("postgresql://:pw@h", &[("password", "pw"), ("host", "h")]),
        (
            "postgresql://u:@h",
            &[("user", "u"), ("password", ""), ("host", "h")],
        ),
        (
            "postgresql://us%40er:p%3Aw%2F%25@h",
            &[("user", "us@er"), ("password", "p:w/%"), ("host", "h")],
        ),
        (
            "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
            &[
                ("user", "other"),
                ("host", "localhost"),
                ("dbname", "otherdb"),
                ("connect_timeout", "10"),
                ("application_name", "myapp"),
            ],
        ),
        (
            "postgresql://host1:123,host2:456/somedb?target_session_attrs=any",
            &[
                ("host", "host1,host2"),
                ("port", "123,456"),
                ("dbname", "somedb"),
                ("target_session_attrs", "any"),
            ],
        ),
        (
            "postgresql://h1,h2:5433",
            &[("host", "h1,h2"), ("port", ",5433")],
        ),
        ("postgresql://h1,h2", &[("host", "h1,h2")]),
        (
            "postgresql://[::1]:5433/db",
            &[("host", "::1"), ("port", "5433"), ("dbname", "db")],
        ),
        (
            "postgresql://[2001:db8::1234]",
            &[("host", "2001:db8::1234")],
        ),
        (
            "postgresql://[::1],[fe80::1]:1",
            &[("host", "::1,fe80::1"), ("port", ",1")],
        ),
        (
            "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
            &[("host", "/var/run/postgresql"), ("dbname", "db")],
        ),
        (
            "postgresql:///db?host=/tmp",
            &[("dbname", "db"), ("host", "/tmp")],
        ),
        (
            "postgresql:///db?host=%2Ftmp&port=5433",
            &[("dbname", "db"), ("host", "/tmp"), ("port", "5433")],
        ),
        (
            "postgresql://h?ssl=true",
            &[("host", "h"), ("sslmode", "require")],
        ),
        (
            "postgresql://h/my%20db",
            &[("host", "h"), ("dbname", "my db")],
        ),
        (
            "postgresql://h/db?options=-c%20x%3Dy",
            &[("host", "h"), ("dbname", "db"), ("options", "-c x=y")],
        ),
        ("postgresql://h/?", &[("host", "h")]),
        (
            "postgresql://h/db?application_name=a+b",
            &[("host", "h"), ("dbname", "db"), ("application_name", "a+b")],
        ),
        // An '@' after the path or in the query is not user information.
        ("postgresql://h/d@b", &[("host", "h"), ("dbname", "d@b")]),
        (
            "postgresql://h?application_name=a@b",
            &[("host", "h"), ("application_name", "a@b")],
        ),
    ];
    for (input, want) in cases {
        let rest = strip_uri_prefix(input).unwrap();
        assert_eq!(parse_uri(rest).unwrap(), pairs(want), "{input:?}");
    }
}

#[test]
fn uri_syntax_errors() {
    let cases: &[(&str, &str)] = &[
        ("postgresql://[::1", "matching \"]\""),
        ("postgresql://[]:5432", "may not be empty"),
        ("postgresql://[::1]x", "unexpected character"),
        ("postgresql://h/db?sslmode", "missing key/value separator"),
        ("postgresql://h/db?a=b=c", "extra key/value separator"),
        ("postgresql://h/db?a=b&&c=d", "missing key/value separator"),
        (
            "postgresql://h/%zz",
            "invalid percent-encoded token in database name",
        ),
        ("postgresql://h/%4", "invalid percent-encoded token"),
        ("postgresql://h/a%00b", "forbidden value %00"),
        (
            "postgresql://u:se%ZZcret@h",
            "invalid percent-encoded token in password",
        ),
        ("postgresql://h/%ff%fe", "not valid UTF-8"),
    ];
    for &(input, reason) in cases {
        match input.parse::<Config>() {
            Err(ConfigError::InvalidUrl { reason: r }) => {
                assert!(r.contains(reason), "{input:?}: {r}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    // Query keys go through the same keyword check as key=value strings.
    assert_eq!(
        err("postgresql://h?foo=bar"),
        ConfigError::UnknownKey { key: "foo".into() }
    );
    assert_eq!(
        err("postgresql://h?ssl=false"),
        ConfigError::UnknownKey { key: "ssl".into() }
    );
    // Only the two exact, lower-case schemes are URIs; anything else is a key=value string.
    assert!(matches!(
        err("postgresql:/h"),
        ConfigError::InvalidSyntax { .. }
    ));
    assert!(matches!(
        err("POSTGRESQL://h"),
        ConfigError::InvalidSyntax { .. }
    ));
}

#[test]
fn uri_and_key_value_agree() {
    let cases: &[(&str, &str)] = &[
        (
            "postgresql://alice:s3cr%3At@db.example.com:6432/app?sslmode=verify-full&application_name=x",
            "user=alice password='s3cr:t' host=db.example.com port=6432 dbname=app \
             sslmode=verify-full application_name=x",
        ),
        ("postgresql://h1:1,h2:2,h3:3", "host=h1,h2,h3 port=1,2,3"),
        ("postgresql://[::1]:5433/db", "host=::1 port=5433 dbname=db"),
        ("postgresql:///db?host=/tmp", "dbname=db host=/tmp"),
        (
            "postgresql://h/d?replication=database",
            "host=h dbname=d replication=database",
        ),
        ("postgresql://h?ssl=true", "host=h sslmode=require"),
    ];
    for &(uri, kv) in cases {
        assert_eq!(cfg(uri), cfg(kv), "{uri} vs {kv}");
    }
    // Later values win, in both forms.
    assert_eq!(cfg("port=1 port=2").targets().unwrap()[0].port(), 2);
    assert_eq!(
        cfg("postgresql://h:1?port=2").targets().unwrap()[0].port(),
        2
    );
}

// ----- every keyword -----

#[test]
fn every_keyword_valid_and_invalid_values() {
    // (key, accepted values, rejected values)
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "host",
            &["localhost", "h1,h2", "/tmp", "@abstract", "", "a,"],
            &[],
        ),
        (
            "hostaddr",
            &["127.0.0.1", "::1", "10.0.0.1,::1", "", "1.2.3.4,"],
            &["localhost", "1.2.3", "1.2.3.4,x", "[::1]"],
        ),
        (
            "port",
            &["5432", "1", "65535", " 5433 ", "1,2", "", ",5433"],
            &["0", "65536", "-1", "x", "54 32", "5432x", "1,x"],
        ),
        ("dbname", &["db", "", "with space"], &[]),
        ("user", &["postgres", ""], &[]),
        ("password", &["", "secret", "with 'quotes'"], &[]),
        ("passfile", &["/nonexistent/pgpass"], &[]),
        ("application_name", &["app", ""], &[]),
        ("fallback_application_name", &["app"], &[]),
        (
            "replication",
            &[
                "database", "DATABASE", "true", "false", "on", "off", "yes", "no", "1", "0", "t",
                "f", "y", "n", "tru", "of", "TRUE", "On",
            ],
            &["o", "2", "maybe", "", "physical", "logical"],
        ),
        ("options", &["-c geqo=off", ""], &[]),
        (
            "connect_timeout",
            &["10", "0", "-1", " 3 ", "+5"],
            &["", "x", "1.5", "99999999999"],
        ),
        ("keepalives", &["0", "1", "2"], &["", "on", "yes"]),
        ("keepalives_idle", &["30", "0"], &["", "x"]),
        ("keepalives_interval", &["5"], &["5s"]),
        ("keepalives_count", &["3"], &["three"]),
        ("tcp_user_timeout", &["1000", "0"], &["1s"]),
        (
            "target_session_attrs",
            &[
                "any",
                "read-write",
                "read-only",
                "primary",
                "standby",
                "prefer-standby",
            ],
            &["", "Any", "master", "read_write"],
        ),
        (
            "load_balance_hosts",
            &["disable", "random"],
            &["", "on", "Random"],
        ),
        (
            "sslmode",
            &[
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ],
            &["", "Require", "verify_full", "on"],
        ),
        ("sslrootcert", &["/etc/ssl/root.crt", "system"], &[]),
        ("sslcert", &["/c.crt"], &[]),
        ("sslkey", &["/c.key"], &[]),
        ("sslpassword", &["pass"], &[]),
        ("sslsni", &["0", "1"], &["", "on", "2"]),
        (
            "sslnegotiation",
            &["postgres", "direct"],
            &["", "tls", "requiredirect"],
        ),
        ("sslcompression", &["0", "1"], &["yes"]),
        (
            "channel_binding",
            &["disable", "prefer", "require"],
            &["", "Require", "on"],
        ),
        (
            "require_auth",
            &[
                "",
                "password",
                "md5",
                "scram-sha-256",
                "none",
                "gss",
                "sspi",
                "scram-sha-256,none",
                "!password,!md5",
                "!none",
            ],
            &[
                "scram",
                "md5,!password",
                "!md5,password",
                "md5,md5",
                "none,none",
                "!md5,!md5",
                "md5,",
                "!",
            ],
        ),
        (
            "client_encoding",
            &["UTF8", "utf8", "UTF-8", "unicode", "auto"],
            &["LATIN1", "SQL_ASCII", ""],
        ),
        ("gssencmode", &["disable", "prefer"], &["", "allow"]),
        ("krbsrvname", &["postgres"], &[]),
        (
            "min_protocol_version",
            &["3.0", "3.2", "latest"],
            &["", "3", "3.1", "3.3", "2.0", "Latest"],
        ),
        (
            "max_protocol_version",
            &["3.0", "3.2", "latest"],
            &["", "3", "3.1", "3.3", "2.0", "Latest"],
        ),
    ];
    for &(key, good, bad) in table {
        assert!(
            KEYWORDS.iter().any(|(k, _)| *k == key),
            "{key} not in KEYWORDS"
        );
        for v in good {
            let mut c = Config::new();
            c.param(key, v)
                .unwrap_or_else(|e| panic!("{key}={v:?}: {e}"));
            assert!(c.is_set(key), "{key}");
        }
        for v in bad {
            match Config::new().param(key, v) {
                Err(ConfigError::InvalidValue { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}={v:?}: {other:?}"),
            }
        }
    }
    // Every keyword is covered by the table.
    for (key, _) in KEYWORDS {
        assert!(table.iter().any(|(k, _, _)| k == key), "{key} not tested");
    }
}

#[test]
fn unknown_unsupported_and_nul() {
    assert_eq!(
        Config::new().param("hots", "x").unwrap_err(),
        ConfigError::UnknownKey { key: "hots".into() }
    );
    let e = err("host=h pasword=secret");
    assert_eq!(
        e,
        ConfigError::UnknownKey {
            key: "pasword".into()
        }
    );
    assert!(e.to_string().contains("\"pasword\""), "{e}");
    for key in [
        "service",
        "sslcrl",
        "sslcrldir",
        "ssl_min_protocol_version",
        "requirepeer",
    ] {
        assert!(
            matches!(
                Config::new().param(key, "x"),
                Err(ConfigError::Unsupported { .. })
            ),
            "{key}"
        );
    }
    let e = Config::new().param("gssencmode", "require").unwrap_err();
    assert!(matches!(e, ConfigError::Unsupported { .. }), "{e:?}");
    assert!(e.to_string().contains("GSSAPI"), "{e}");
    let e = Config::new().param("dbname", "a\0b").unwrap_err();
    assert!(matches!(e, ConfigError::InvalidValue { .. }), "{e:?}");
}

#[test]
fn typed_values() {
    let c = cfg("replication=database");
    assert_eq!(c.replication(), ReplicationMode::Logical);
    assert_eq!(
        cfg("replication=yes").replication(),
        ReplicationMode::Physical
    );
    assert_eq!(cfg("replication=off").replication(), ReplicationMode::Off);
    assert_eq!(Config::new().replication(), ReplicationMode::Off);

    let timeouts: &[(&str, Option<u64>)] = &[
        ("", None),
        ("connect_timeout=0", None),
        ("connect_timeout=-5", None),
        ("connect_timeout=1", Some(2)),
        ("connect_timeout=2", Some(2)),
        ("connect_timeout=10", Some(10)),
    ];
    for &(s, want) in timeouts {
        assert_eq!(
            cfg(s).connect_timeout(),
            want.map(Duration::from_secs),
            "{s}"
        );
    }

    assert_eq!(Config::new().keepalives(), KeepaliveConfig::default());
    let ka = cfg("keepalives=1 keepalives_idle=30 keepalives_interval=5 keepalives_count=3")
        .keepalives();
    assert!(ka.enabled);
    assert_eq!(ka.idle, Some(Duration::from_secs(30)));
    assert_eq!(ka.interval, Some(Duration::from_secs(5)));
    assert_eq!(ka.count, Some(3));
    let ka = cfg("keepalives=0 keepalives_idle=0 keepalives_count=-1").keepalives();
    assert!(!ka.enabled);
    assert_eq!((ka.idle, ka.count), (None, None));
    assert_eq!(
        cfg("tcp_user_timeout=1500").tcp_user_timeout(),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(cfg("tcp_user_timeout=0").tcp_user_timeout(), None);

    assert_eq!(
        Config::new().target_session_attrs(),
        TargetSessionAttrs::Any
    );
    assert_eq!(
        cfg("target_session_attrs=prefer-standby").target_session_attrs(),
        TargetSessionAttrs::PreferStandby
    );

    let c = Config::new();
    assert_eq!(c.ssl().mode(), SslMode::Prefer);
    assert!(c.ssl().sni());
    assert_eq!(c.ssl().negotiation(), SslNegotiation::Postgres);
    assert_eq!(c.channel_binding(), ChannelBindingPolicy::Prefer);
    assert!(c.require_auth().is_any());
    assert_eq!(c.gss_enc_mode(), GssEncMode::Prefer);
    assert_eq!(c.load_balance_hosts(), LoadBalanceHosts::Disable);

    let c = cfg(
        "sslmode=verify-ca sslrootcert=/r.crt sslcert=/c.crt sslkey=/c.key sslsni=0 \
         sslnegotiation=direct channel_binding=require gssencmode=disable",
    );
    assert_eq!(c.ssl().mode(), SslMode::VerifyCa);
    assert_eq!(c.ssl().root_cert(), Some(&RootCert::File("/r.crt".into())));
    assert_eq!(
        c.ssl().effective_root_cert(),
        Some(RootCert::File("/r.crt".into()))
    );
    assert_eq!(c.ssl().cert(), Some(std::path::Path::new("/c.crt")));
    assert_eq!(c.ssl().key(), Some(std::path::Path::new("/c.key")));
    assert!(!c.ssl().sni());
    assert_eq!(c.ssl().negotiation(), SslNegotiation::Direct);
    assert_eq!(c.channel_binding(), ChannelBindingPolicy::Require);
    assert_eq!(c.gss_enc_mode(), GssEncMode::Disable);
    // sslrootcert=system makes verify-full the default.
    assert_eq!(cfg("sslrootcert=system").ssl().mode(), SslMode::VerifyFull);
    assert_eq!(
        cfg("sslrootcert=system").ssl().root_cert(),
        Some(&RootCert::System)
    );
}

#[test]
fn require_auth_semantics() {
    use AuthMethod::{Gss, Md5, Password, ScramSha256, Sspi};
    // (value, allowed methods, allows_none)
    let cases: &[(&str, &[AuthMethod], bool)] = &[
        ("", &[Password, Md5, Gss, Sspi, ScramSha256], true),
        ("scram-sha-256", &[ScramSha256], false),
        ("scram-sha-256,none", &[ScramSha256], true),
        ("none", &[], true),
        ("password,md5", &[Password, Md5], false),
        ("!password", &[Md5, Gss, Sspi, ScramSha256], true),
        ("!password,!md5,!none", &[Gss, Sspi, ScramSha256], false),
        ("!none", &[Password, Md5, Gss, Sspi, ScramSha256], false),
    ];
    for &(value, allowed, none) in cases {
        let r = RequireAuth::parse(value).unwrap();
        for m in AuthMethod::ALL {
            assert_eq!(r.allows(m), allowed.contains(&m), "{value:?} {m}");
        }
        assert_eq!(r.allows_none(), none, "{value:?}");
    }
    assert_eq!(
        RequireAuth::parse("md5,none").unwrap().to_string(),
        "md5,none"
    );
    let reasons: &[(&str, &str)] = &[
        (
            "md5,!password",
            "negative require_auth method \"!password\" cannot be mixed",
        ),
        (
            "!md5,password",
            "require_auth method \"password\" cannot be mixed with negative",
        ),
        ("md5,md5", "specified more than once"),
        ("cert", "invalid require_auth method: \"cert\""),
    ];
    for &(value, reason) in reasons {
        let r = RequireAuth::parse(value).unwrap_err();
        assert!(r.contains(reason), "{value}: {r}");
    }
}

// ----- environment -----

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn env_fills_only_unset_values() {
    let vars = env(&[
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGDATABASE", "envdb"),
        ("PGPASSWORD", "envpw"),
        ("PGAPPNAME", "envapp"),
        ("PGSSLMODE", "require"),
        ("PGOPTIONS", "-c x=y"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGTARGETSESSIONATTRS", "read-write"),
        ("PGCHANNELBINDING", "disable"),
        ("PGREQUIREAUTH", "scram-sha-256"),
        ("PGSSLNEGOTIATION", "postgres"),
        ("PGSSLSNI", "0"),
        ("PGCLIENTENCODING", "UTF8"),
        ("PGPASSFILE", "/env/pgpass"),
        ("PGSSLROOTCERT", "/env/root.crt"),
    ]);
    let c = cfg("host=explicit user=me sslmode=disable")
        .with_env_from(&vars)
        .unwrap();
    let t = c.targets().unwrap();
    assert_eq!(t[0].addr, tcp("explicit", None, 6000));
    assert_eq!(c.user(), Some("me"));
    assert_eq!(c.dbname(), Some("envdb"));
    assert!(c.has_password());
    assert_eq!(c.application_name(), Some("envapp"));
    assert_eq!(c.ssl().mode(), SslMode::Disable);
    assert_eq!(c.options(), Some("-c x=y"));
    assert_eq!(c.connect_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(c.target_session_attrs(), TargetSessionAttrs::ReadWrite);
    assert_eq!(c.channel_binding(), ChannelBindingPolicy::Disable);
    assert!(!c.require_auth().allows(AuthMethod::Md5));
    assert!(!c.ssl().sni());
    assert_eq!(c.passfile(), Some(std::path::Path::new("/env/pgpass")));
    assert_eq!(
        c.ssl().root_cert(),
        Some(&RootCert::File("/env/root.crt".into()))
    );

    // Explicitly empty values still count as set, as in libpq.
    let c = cfg("host='' port=''").with_env_from(&vars).unwrap();
    assert!(c.hosts().is_empty());
    assert_eq!(c.targets().unwrap()[0].port(), DEFAULT_PORT);

    // The explicit password wins over PGPASSWORD.
    let c = cfg("password=explicit").with_env_from(&vars).unwrap();
    let target = &c.targets().unwrap()[0];
    assert_eq!(c.password_for(target).unwrap().as_bytes(), b"explicit");

    // Variables not in the list (and params without a variable) are never read.
    let c = Config::new()
        .with_env_from(env(&[("PGREPLICATION", "database"), ("PGKEEPALIVES", "0")]))
        .unwrap();
    assert_eq!(c.replication(), ReplicationMode::Off);
    assert!(c.keepalives().enabled);
}

#[test]
fn env_errors_name_the_variable() {
    let e = Config::new()
        .with_env_from(env(&[("PGSSLMODE", "bogus")]))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Env {
                var: "PGSSLMODE",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("PGSSLMODE"), "{e}");
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = Config::new()
        .with_env_from(env(&[("PGGSSENCMODE", "require")]))
        .unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Env {
                var: "PGGSSENCMODE",
                ..
            }
        ),
        "{e:?}"
    );
}

// ----- targets -----

#[test]
fn target_resolution() {
    let v4 = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let cases: Vec<(&str, Vec<TargetAddr>)> = vec![
        ("host=db", vec![tcp("db", None, 5432)]),
        ("host=db port=6000", vec![tcp("db", None, 6000)]),
        (
            "host=a,b,c port=1",
            vec![tcp("a", None, 1), tcp("b", None, 1), tcp("c", None, 1)],
        ),
        (
            "host=a,b port=1,2",
            vec![tcp("a", None, 1), tcp("b", None, 2)],
        ),
        (
            "host=a,b port=,2",
            vec![tcp("a", None, 5432), tcp("b", None, 2)],
        ),
        ("host=/tmp", vec![unix("/tmp/.s.PGSQL.5432", 5432)]),
        (
            "host=/tmp port=5433",
            vec![unix("/tmp/.s.PGSQL.5433", 5433)],
        ),
        (
            "host=@abstract",
            vec![unix("@abstract/.s.PGSQL.5432", 5432)],
        ),
        (
            "host=/tmp,db port=7,8",
            vec![unix("/tmp/.s.PGSQL.7", 7), tcp("db", None, 8)],
        ),
        ("hostaddr=10.0.0.1", vec![tcp("10.0.0.1", Some(v4), 5432)]),
        (
            "host=db.example hostaddr=10.0.0.1",
            vec![tcp("db.example", Some(v4), 5432)],
        ),
        (
            "host=a,b hostaddr=10.0.0.1,",
            vec![tcp("a", Some(v4), 5432), tcp("b", None, 5432)],
        ),
        ("hostaddr=::1 port=1", vec![tcp("::1", Some(v6), 1)]),
        // hostaddr takes precedence over a socket directory in host.
        ("host=/tmp hostaddr=::1", vec![tcp("/tmp", Some(v6), 5432)]),
        ("postgresql://[::1]:5433", vec![tcp("::1", None, 5433)]),
        (
            "postgresql:///db?host=/tmp",
            vec![unix("/tmp/.s.PGSQL.5432", 5432)],
        ),
        (
            "postgresql://%2Ftmp:5439/db",
            vec![unix("/tmp/.s.PGSQL.5439", 5439)],
        ),
    ];
    for (s, want) in cases {
        assert_eq!(addrs(&cfg(s)), want, "{s}");
    }
    // No host at all: the default socket directory.
    let t = cfg("port=5433").targets().unwrap();
    assert_eq!(t.len(), 1);
    let TargetAddr::Unix { path, port: 5433 } = &t[0].addr else {
        panic!("{t:?}")
    };
    let dir = target::default_socket_dir();
    assert_eq!(path, &PathBuf::from(format!("{dir}/.s.PGSQL.5433")));
    assert_eq!(t[0].pgpass_host(), "localhost");
    assert_eq!(t[0].server_name(), None);
    // Empty entries in a host list are the default too.
    let t = cfg("host=,db").targets().unwrap();
    assert!(matches!(t[0].addr, TargetAddr::Unix { .. }));
    assert_eq!(t[1].index, 1);
}

#[test]
fn target_list_mismatches() {
    let cases: &[(&str, &str)] = &[
        (
            "host=a,b port=1,2,3",
            "could not match 3 port numbers to 2 hosts",
        ),
        (
            "host=a port=1,2",
            "could not match 2 port numbers to 1 hosts",
        ),
        (
            "host=a,b hostaddr=10.0.0.1",
            "could not match 2 host names to 1 hostaddr values",
        ),
        (
            "hostaddr=::1,::2 port=1,2,3",
            "could not match 3 port numbers to 2 hosts",
        ),
        (
            "sslrootcert=system sslmode=require",
            "weak sslmode \"require\" may not be used with \
                                               sslrootcert=system",
        ),
    ];
    for &(s, reason) in cases {
        match err(s) {
            ConfigError::Conflict { reason: r } => assert!(r.contains(reason), "{s}: {r}"),
            other => panic!("{s}: {other:?}"),
        }
    }
    // Builder-made mismatches are caught by targets().
    let mut c = Config::new();
    c.add_host("a").add_port(1).add_port(2).add_port(3);
    assert!(matches!(c.targets(), Err(ConfigError::Conflict { .. })));
    // sslnegotiation=direct depends on the final sslmode (which PGSSLMODE could supply), so
    // it is checked by validate()/targets(), not by parsing.
    let c = cfg("sslnegotiation=direct");
    assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
    let c = c.with_env_from(env(&[("PGSSLMODE", "require")])).unwrap();
    assert!(c.validate().is_ok());
    assert!(
        cfg("sslnegotiation=direct sslmode=verify-full")
            .targets()
            .is_ok()
    );
}

#[test]
fn load_balancing() {
    let c = cfg("host=a,b,c,d,e,f,g,h load_balance_hosts=disable");
    let order: Vec<usize> = c.targets().unwrap().iter().map(|t| t.index).collect();
    assert_eq!(order, (0..8).collect::<Vec<_>>());
    // Random: always a permutation, and over many draws not always the identity.
    let c = cfg("host=a,b,c,d,e,f,g,h load_balance_hosts=random");
    let mut saw_other_order = false;
    for _ in 0..50 {
        let mut order: Vec<usize> = c.targets().unwrap().iter().map(|t| t.index).collect();
        saw_other_order |= order != (0..8).collect::<Vec<_>>();
        order.sort_unstable();
        assert_eq!(order, (0..8).collect::<Vec<_>>());
    }
    assert!(saw_other_order);
    // The shuffle itself, with a scripted source: always picking 0 rotates.
    let mut v = [1, 2, 3, 4];
    target::shuffle(&mut v, || 0);
    assert_eq!(v, [2, 3, 4, 1]);
}

#[test]
fn passwd_parsing() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  broken line\n\
                  postgres:x:105:110:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
    assert_eq!(
        target::passwd_lookup(passwd, 105),
        Some(("postgres".into(), "/var/lib/postgresql".into()))
    );
    assert_eq!(
        target::passwd_lookup(passwd, 0),
        Some(("root".into(), "/root".into()))
    );
    assert_eq!(target::passwd_lookup(passwd, 7), None);
}

// ----- startup parameters -----

#[test]
fn startup_params_order_and_defaults() {
    let c = cfg(
        "user=repl dbname=app replication=database options='-c wal_sender_timeout=0' \
         application_name=walstream client_encoding=utf8",
    );
    assert_eq!(
        c.startup_params(),
        pairs(&[
            ("user", "repl"),
            ("database", "app"),
            ("replication", "database"),
            ("options", "-c wal_sender_timeout=0"),
            ("application_name", "walstream"),
            ("client_encoding", "UTF8"),
        ])
    );
    // dbname defaults to the user; physical replication is "true"; fallback app name.
    let c = cfg("user=repl replication=on fallback_application_name=fb");
    assert_eq!(
        c.startup_params(),
        pairs(&[
            ("user", "repl"),
            ("database", "repl"),
            ("replication", "true"),
            ("application_name", "fb"),
            ("client_encoding", "UTF8"),
        ])
    );
    let c = cfg("user=u application_name=app fallback_application_name=fb replication=off");
    assert_eq!(c.application_name(), Some("app"));
    assert!(!c.startup_params().iter().any(|(k, _)| k == "replication"));
    // Without a user, the operating-system user (which this test process has).
    let c = Config::new();
    assert!(c.effective_user().is_some());
    assert_eq!(c.effective_dbname(), c.effective_user());
    assert_eq!(c.startup_params()[0].0, "user");
}

// ----- redaction -----

#[test]
fn passwords_never_printed() {
    const SECRET: &str = "Sup3rS3cretValue";
    let sources = [
        format!("host=h password={SECRET} sslpassword={SECRET}"),
        format!("postgresql://u:{SECRET}@h/db?sslpassword={SECRET}"),
    ];
    for s in &sources {
        let c = cfg(s);
        let debug = format!("{c:?} {:?} {:#?}", c.ssl(), c);
        assert!(!debug.contains(SECRET), "{debug}");
        let target = &c.targets().unwrap()[0];
        let lookup = c.lookup_password(target);
        assert!(!format!("{lookup:?}").contains(SECRET));
        assert_eq!(lookup.password.unwrap().0.as_bytes(), SECRET.as_bytes());
    }
    // Errors about password values, password syntax or URI user information never quote it.
    let failing = [
        format!("password='{SECRET}"),
        format!("postgresql://u:{SECRET}%zz@h"),
        format!("postgresql://u:{SECRET}%00@h"),
        format!("postgresql://u:{SECRET}%ff@h"),
    ];
    for s in &failing {
        let e = err(s);
        assert!(!e.to_string().contains(SECRET), "{e}");
        assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
    }
    for key in ["password", "sslpassword"] {
        let e = Config::new()
            .param(key, &format!("{SECRET}\0"))
            .unwrap_err();
        assert!(!e.to_string().contains(SECRET), "{e}");
        assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
        let e = Config::new()
            .with_env_from(env(&[("PGPASSWORD", &format!("{SECRET}\0"))]))
            .unwrap_err();
        assert!(!e.to_string().contains(SECRET), "{e}");
    }
}

// ----- password file through the config -----

#[cfg(unix)]
#[test]
fn password_from_passfile() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgpass");
    std::fs::write(
        &path,
        "localhost:5432:app:alice:local-pw\n\
         /custom/dir:5432:*:alice:socket-pw\n\
         db.example:*:app:alice:tcp-pw\n\
         10.0.0.1:5432:*:*:addr-pw\n\
         *:*:alice:alice:default-db-pw\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let base = format!("user=alice passfile={}", path.display());
    let cases: &[(&str, Option<&str>)] = &[
        ("dbname=app", Some("local-pw")),
        ("dbname=app host=/var/run/postgresql", Some("local-pw")),
        ("dbname=app host=/tmp", Some("local-pw")),
        ("dbname=app host=localhost", Some("local-pw")),
        ("dbname=app host=/custom/dir", Some("socket-pw")),
        ("dbname=app host=db.example port=9999", Some("tcp-pw")),
        ("dbname=other host=db.example", None),
        ("dbname=x hostaddr=10.0.0.1", Some("addr-pw")),
        ("dbname=x host=named hostaddr=10.0.0.1", None),
        ("host=anything", Some("default-db-pw")),
        ("dbname=app password=explicit", Some("explicit")),
    ];
    for &(extra, want) in cases {
        let c = cfg(&format!("{base} {extra}"));
        let target = &c.targets().unwrap()[0];
        let got = c.password_for(target);
        assert_eq!(
            got.as_ref().map(|p| p.as_bytes()),
            want.map(str::as_bytes),
            "{extra}"
        );
    }
    let c = cfg(&format!("{base} dbname=app host=db.example"));
    let lookup = c.lookup_password(&c.targets().unwrap()[0]);
    assert_eq!(
        lookup.password.unwrap().1,
        PasswordSource::PassFile(path.clone())
    );

    // Group- or world-accessible: ignored, with a warning.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let c = cfg(&format!("{base} dbname=app"));
    let lookup = c.lookup_password(&c.targets().unwrap()[0]);
    assert!(lookup.password.is_none());
    assert!(matches!(
        lookup.warning,
        Some(PassFileWarning::InsecurePermissions { .. })
    ));
    assert!(c.password_for(&c.targets().unwrap()[0]).is_none());

    // A missing file is silently nothing.
    let c = cfg(&format!(
        "user=alice passfile={}/none",
        dir.path().display()
    ));
    assert_eq!(
        c.lookup_password(&c.targets().unwrap()[0]),
        PasswordLookup::default()
    );
}

// ----- target_session_attrs -----

#[test]
fn session_attrs_verdicts_from_parameters() {
    use SessionRejection::{HotStandby, NotHotStandby, NotReadOnly, ReadOnly};
    use SessionVerdict::{Accept, Query, Reject};
    use TargetSessionAttrs as T;
    let primary = ServerStatus {
        default_transaction_read_only: Some(false),
        in_hot_standby: Some(false),
    };
    let standby = ServerStatus {
        default_transaction_read_only: Some(false),
        in_hot_standby: Some(true),
    };
    let ro_primary = ServerStatus {
        default_transaction_read_only: Some(true),
        in_hot_standby: Some(false),
    };
    let unknown = ServerStatus::default();
    let only_hs = ServerStatus {
        default_transaction_read_only: None,
        in_hot_standby: Some(false),
    };
    let ro = Query(SessionQuery::TransactionReadOnly);
    let rec = Query(SessionQuery::InRecovery);
    let cases: &[(T, ServerStatus, SessionVerdict)] = &[
        (T::Any, primary, Accept),
        (T::Any, unknown, Accept),
        (T::ReadWrite, primary, Accept),
        (T::ReadWrite, standby, Reject(ReadOnly)),
        (T::ReadWrite, ro_primary, Reject(ReadOnly)),
        (T::ReadWrite, unknown, ro),
        (T::ReadWrite, only_hs, ro),
        (T::ReadOnly, primary, Reject(NotReadOnly)),
        (T::ReadOnly, standby, Accept),
        (T::ReadOnly, ro_primary, Accept),
        (T::ReadOnly, unknown, ro),
        (T::Primary, primary, Accept),
        (T::Primary, ro_primary, Accept),
        (T::Primary, standby, Reject(HotStandby)),
        (T::Primary, unknown, rec),
        (T::Primary, only_hs, Accept),
        (T::Standby, standby, Accept),
        (T::Standby, primary, Reject(NotHotStandby)),
        (T::Standby, unknown, rec),
        (T::PreferStandby, primary, Reject(NotHotStandby)),
        (T::PreferStandby, standby, Accept),
    ];
    for &(attrs, status, want) in cases {
        assert_eq!(attrs.verdict(&status), want, "{attrs} {status:?}");
    }
    // Second pass of prefer-standby accepts anything.
    assert!(T::PreferStandby.has_fallback_pass());
    assert!(!T::Standby.has_fallback_pass());
    assert_eq!(T::PreferStandby.for_pass(1), T::Standby);
    assert_eq!(T::PreferStandby.for_pass(2), T::Any);
    assert_eq!(T::PreferStandby.for_pass(2).verdict(&primary), Accept);
    assert_eq!(T::ReadWrite.for_pass(2), T::ReadWrite);
}

#[test]
fn session_attrs_verdicts_from_queries_and_parameter_status() {
    use SessionQuery::{InRecovery, TransactionReadOnly};
    use SessionVerdict::{Accept, Reject};
    use TargetSessionAttrs as T;
    let cases: &[(T, SessionQuery, &str, SessionVerdict)] = &[
        (T::ReadWrite, TransactionReadOnly, "off", Accept),
        (
            T::ReadWrite,
            TransactionReadOnly,
            "on",
            Reject(SessionRejection::ReadOnly),
        ),
        (T::ReadOnly, TransactionReadOnly, "on", Accept),
        (
            T::ReadOnly,
            TransactionReadOnly,
            "off",
            Reject(SessionRejection::NotReadOnly),
        ),
        (T::Primary, InRecovery, "f", Accept),
        (
            T::Primary,
            InRecovery,
            "t",
            Reject(SessionRejection::HotStandby),
        ),
        (T::Standby, InRecovery, "t", Accept),
        (
            T::PreferStandby,
            InRecovery,
            "f",
            Reject(SessionRejection::NotHotStandby),
        ),
    ];
    for &(attrs, q, value, want) in cases {
        assert_eq!(
            attrs.verdict_from_query(q, value).unwrap(),
            want,
            "{attrs} {q:?} {value}"
        );
    }
    let e = T::Primary.verdict_from_query(InRecovery, "on").unwrap_err();
    assert_eq!(e.query, InRecovery);
    assert!(e.to_string().contains("pg_is_in_recovery"), "{e}");
    assert!(
        T::ReadWrite
            .verdict_from_query(TransactionReadOnly, "t")
            .is_err()
    );
    assert_eq!(TransactionReadOnly.sql(), "SHOW transaction_read_only");
    assert_eq!(InRecovery.sql(), "SELECT pg_catalog.pg_is_in_recovery()");

    let mut status = ServerStatus::default();
    status.observe("server_version", "15.4");
    status.observe("in_hot_standby", "on");
    status.observe("default_transaction_read_only", "off");
    assert_eq!(status.in_hot_standby, Some(true));
    assert_eq!(status.default_transaction_read_only, Some(false));
    status.observe("in_hot_standby", "garbage");
    assert_eq!(status.in_hot_standby, None);
    assert_eq!(
        SessionRejection::ReadOnly.to_string(),
        "session is read-only"
    );
}

#[test]
fn protocol_version_defaults_and_conflicts() {
    use walstream_proto::ProtocolVersion as V;
    let c = Config::new();
    assert_eq!(
        (c.min_protocol_version(), c.max_protocol_version()),
        (V::V3_0, V::V3_0)
    );
    let c: Config = "max_protocol_version=latest".parse().unwrap();
    assert_eq!(
        (c.min_protocol_version(), c.max_protocol_version()),
        (V::V3_0, V::V3_2)
    );
    // A newer minimum raises the requested version, like libpq 18.
    let c: Config = "min_protocol_version=3.2".parse().unwrap();
    assert_eq!(c.max_protocol_version(), V::V3_2);
    c.validate().unwrap();
    let c: Config = "min_protocol_version=3.2 max_protocol_version=3.0"
        .parse()
        .unwrap();
    assert!(matches!(c.validate(), Err(ConfigError::Conflict { .. })));
    // From the environment.
    let c =
        Config::new().with_env_from(|k| (k == "PGMAXPROTOCOLVERSION").then(|| "3.2".to_owned()));
    assert_eq!(c.unwrap().max_protocol_version(), V::V3_2);
}
