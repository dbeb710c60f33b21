//! The roles every cluster has, one per authentication method, and the `pg_hba.conf` for them.

use std::fmt::Write as _;

/// Passwords of the suite's roles.
pub mod passwords {
    /// Password of `ws_password` (cleartext `password` authentication).
    pub const PASSWORD: &str = "ws-cleartext-pw";
    /// Password of `ws_md5` (stored as an MD5 hash, `md5` authentication).
    pub const MD5: &str = "ws-md5-pw";
    /// Password of `ws_scram` (`scram-sha-256` authentication).
    pub const SCRAM: &str = "ws-scram-pw";
    /// Password of `ws_scram_utf8`: non-ASCII, so clients must apply SASLprep (U+2168 ROMAN
    /// NUMERAL NINE normalizes to `IX`; the server stores the SASLprepped form).
    pub const SCRAM_UTF8: &str = "p\u{e4}ssw\u{f6}rd-\u{2168}";
    /// Password of `ws_ssl` (`scram-sha-256`, but only over TLS).
    pub const SSL: &str = "ws-ssl-pw";
}

/// A role of the suite's clusters.
///
/// Every role may log in, may open replication connections and is a superuser (so tests can
/// create publications and slots with any of them). `pg_hba.conf` has lines for the normal
/// databases (`all`) *and* for the `replication` keyword (physical replication connections
/// match only `replication` lines; a `replication=database` connection matches the database
/// lines), for TCP on `127.0.0.1` and for the unix socket:
///
/// | role | `local` | `host` (TCP, TLS or not) | `hostssl` | `hostnossl` |
/// |---|---|---|---|---|
/// | `postgres` (bootstrap) | trust | trust | | |
/// | `ws_trust` | trust | trust | | |
/// | `ws_password` | password | password | | |
/// | `ws_md5` | md5 (hash stored as MD5) | md5 | | |
/// | `ws_scram` | scram-sha-256 | scram-sha-256 | | |
/// | `ws_scram_utf8` | scram-sha-256 | scram-sha-256 | | |
/// | `ws_ssl` | reject | | scram-sha-256 | reject |
/// | `ws_cert` | reject | | cert (CN must be `ws_cert`) | reject |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The bootstrap superuser `postgres`, trusted on every connection type.
    Postgres,
    /// `ws_trust`: no authentication.
    Trust,
    /// `ws_password`: cleartext password.
    Password,
    /// `ws_md5`: MD5 challenge-response with an MD5-hashed stored password.
    Md5,
    /// `ws_scram`: SCRAM-SHA-256 (with channel binding available over TLS).
    Scram,
    /// `ws_scram_utf8`: SCRAM-SHA-256 with a non-ASCII password that needs SASLprep.
    ScramUtf8,
    /// `ws_ssl`: SCRAM-SHA-256, accepted only over TLS.
    Ssl,
    /// `ws_cert`: TLS client-certificate authentication, certificate CN `ws_cert`.
    Cert,
}

impl Role {
    /// Every role, bootstrap superuser first.
    pub const ALL: [Self; 8] = [
        Self::Postgres,
        Self::Trust,
        Self::Password,
        Self::Md5,
        Self::Scram,
        Self::ScramUtf8,
        Self::Ssl,
        Self::Cert,
    ];

    /// The role's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Trust => "ws_trust",
            Self::Password => "ws_password",
            Self::Md5 => "ws_md5",
            Self::Scram => "ws_scram",
            Self::ScramUtf8 => "ws_scram_utf8",
            Self::Ssl => "ws_ssl",
            Self::Cert => "ws_cert",
        }
    }

    /// The role's password, for roles that authenticate with one.
    pub fn password(self) -> Option<&'static str> {
        match self {
            Self::Password => Some(passwords::PASSWORD),
            Self::Md5 => Some(passwords::MD5),
            Self::Scram => Some(passwords::SCRAM),
            Self::ScramUtf8 => Some(passwords::SCRAM_UTF8),
            Self::Ssl => Some(passwords::SSL),
            Self::Postgres | Self::Trust | Self::Cert => None,
        }
    }

    /// The `pg_hba.conf` method for TCP connections (`trust`, `md5`, `cert`, ...).
    pub fn method(self) -> &'static str {
        match self {
            Self::Postgres | Self::Trust => "trust",
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::Scram | Self::ScramUtf8 | Self::Ssl => "scram-sha-256",
            Self::Cert => "cert",
        }
    }

    /// Whether the role may only connect over TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::Cert)
    }
}

/// The complete `pg_hba.conf` of a suite cluster.
pub(crate) fn pg_hba_conf() -> String {
    let mut out = String::from(
        "# Written by walstream-test-support; see Role's documentation for the table.\n\
         # TYPE     DATABASE     USER            ADDRESS         METHOD\n",
    );
    for role in Role::ALL {
        for database in ["all", "replication"] {
            let user = role.name();
            let method = role.method();
            if role.requires_tls() {
                let _ = writeln!(
                    out,
                    "local      {database:<12} {user:<15}                 reject"
                );
                let _ = writeln!(
                    out,
                    "hostssl    {database:<12} {user:<15} 127.0.0.1/32    {method}"
                );
                let _ = writeln!(
                    out,
                    "hostnossl  {database:<12} {user:<15} 127.0.0.1/32    reject"
                );
            } else {
                let _ = writeln!(
                    out,
                    "local      {database:<12} {user:<15}                 {method}"
                );
                let _ = writeln!(
                    out,
                    "host       {database:<12} {user:<15} 127.0.0.1/32    {method}"
                );
            }
        }
    }
    out
}

/// SQL creating the suite's roles (run as `postgres` right after `initdb`).
pub(crate) fn create_roles_sql() -> String {
    let mut sql = String::new();
    for role in Role::ALL {
        if role == Role::Postgres {
            continue;
        }
        let name = role.name();
        let _ = writeln!(sql, "CREATE ROLE {name} LOGIN REPLICATION SUPERUSER;");
        if let Some(password) = role.password() {
            let encryption = if role == Role::Md5 {
                "md5"
            } else {
                "scram-sha-256"
            };
            let _ = writeln!(sql, "SET password_encryption = '{encryption}';");
            let _ = writeln!(
                sql,
                "ALTER ROLE {name} PASSWORD '{}';",
                password.replace('\'', "''")
            );
        }
    }
    sql.push_str("RESET password_encryption;\n");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_has_replication_and_database_lines_for_every_role() {
        let hba = pg_hba_conf();
        for role in Role::ALL {
            for database in ["all", "replication"] {
                let lines: Vec<&str> = hba
                    .lines()
                    .filter(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        f.get(1) == Some(&database) && f.get(2) == Some(&role.name())
                    })
                    .collect();
                assert!(!lines.is_empty(), "{role:?} {database}");
                if role.requires_tls() {
                    assert!(lines.iter().any(|l| l.starts_with("hostssl")));
                    assert!(
                        lines
                            .iter()
                            .any(|l| l.starts_with("hostnossl") && l.ends_with("reject"))
                    );
                } else {
                    assert!(lines.iter().any(|l| l.starts_with("host ")));
                }
            }
        }
    }

    #[test]
    fn md5_role_is_stored_as_md5() {
        let sql = create_roles_sql();
        let md5_set = sql.find("SET password_encryption = 'md5'").unwrap();
        let md5_alter = sql.find("ALTER ROLE ws_md5 PASSWORD").unwrap();
        assert!(md5_set < md5_alter);
        assert!(!sql[md5_set..md5_alter].contains("scram"));
    }
}
