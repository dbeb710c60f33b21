//! The command-line tool's errors: one line with the SQLSTATE and a hint, and an exit code per
//! category.
use std::fmt;
use std::process::ExitCode;

use walstream_conn::{DbError, ErrorKind as ConnKind};

/// What kind of failure ended the program; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// Anything else (I/O on local files, decoding, ...): exit 1.
    Other,
    /// Bad arguments or connection string: exit 2 (clap uses 2 for its own usage errors).
    Usage,
    /// The server could not be reached or the connection broke: exit 3.
    Connection,
    /// Authentication failed: exit 4.
    Auth,
    /// The server reported an error or broke the protocol: exit 5.
    Server,
}

impl Category {
    pub(crate) fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Other => 1,
            Self::Usage => 2,
            Self::Connection => 3,
            Self::Auth => 4,
            Self::Server => 5,
        })
    }
}

/// A failure, ready to print as one line.
#[derive(Debug)]
pub(crate) struct CliError {
    category: Category,
    message: String,
    sqlstate: Option<String>,
    hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(category: Category, message: impl Into<String>) -> Self {
        Self {
            category,
            message: one_line(&message.into()),
            sqlstate: None,
            hint: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Category::Usage, message)
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        Self::new(Category::Other, message)
    }

    /// Adds (replaces) the hint.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(&hint.into()));
        self
    }

    /// Prefixes the message with what was being done.
    #[must_use]
    pub(crate) fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    pub(crate) fn category(&self) -> Category {
        self.category
    }

    /// A local I/O failure on `what` (a file name or a description).
    pub(crate) fn io(what: &str, err: &std::io::Error) -> Self {
        Self::other(format!("{what}: {err}"))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(code) = &self.sqlstate {
            write!(f, " [SQLSTATE {code}]")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl From<walstream_conn::Error> for CliError {
    fn from(err: walstream_conn::Error) -> Self {
        if let Some(db) = err.db_error() {
            return from_db(db);
        }
        let category = match err.kind() {
            ConnKind::Config => Category::Usage,
            ConnKind::Auth => Category::Auth,
            ConnKind::Db | ConnKind::Protocol | ConnKind::Unsupported => Category::Server,
            ConnKind::Connect
            | ConnKind::Io
            | ConnKind::Tls
            | ConnKind::Timeout
            | ConnKind::Closed
            | ConnKind::TargetSessionAttrs => Category::Connection,
            _ => Category::Other,
        };
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        let hint = match err.kind() {
            ConnKind::Connect => Some(
                "is the server running and accepting connections on that host and port? \
                 check listen_addresses and port in postgresql.conf, or the host/port in -d",
            ),
            ConnKind::Tls => Some(
                "check sslmode/sslrootcert in -d, or that the server has ssl = on \
                 (sslmode=disable turns TLS off)",
            ),
            ConnKind::Auth => Some(
                "give the password in -d, PGPASSWORD or ~/.pgpass, or check require_auth \
                 and channel_binding",
            ),
            ConnKind::Timeout => Some("the server did not answer in time; raise connect_timeout"),
            ConnKind::Unsupported => Some("this needs a newer PostgreSQL server"),
            ConnKind::Config => Some(
                "-d takes a key=value string (\"host=db user=me dbname=app\") or a \
                 postgresql:// URI",
            ),
            _ => None,
        };
        let mut e = Self::new(category, message);
        e.hint = hint.map(str::to_owned);
        e
    }
}

impl From<walstream_conn::ConfigError> for CliError {
    fn from(err: walstream_conn::ConfigError) -> Self {
        Self::usage(format!("invalid connection string: {err}")).hint(
            "-d takes a key=value string (\"host=db user=me dbname=app\") or a postgresql:// URI",
        )
    }
}

impl From<walstream::Error> for CliError {
    fn from(err: walstream::Error) -> Self {
        let category = match err.kind() {
            walstream::ErrorKind::Usage => Category::Usage,
            walstream::ErrorKind::Protocol => Category::Server,
            _ => Category::Other,
        };
        Self::new(category, err.to_string())
    }
}

/// A server error: its message, SQLSTATE, and the most useful next step we know.
fn from_db(db: &DbError) -> CliError {
    let code = db.code().to_string();
    let msg = db.message();
    let category = if code.starts_with("28") {
        Category::Auth
    } else {
        Category::Server
    };
    let mut message = msg.to_owned();
    if let Some(detail) = db.detail() {
        message.push_str(" (");
        message.push_str(detail);
        message.push(')');
    }
    let known = hint_for(&code, msg);
    let hint = match (known, db.hint()) {
        (Some(k), Some(h)) => Some(format!("{k} (server: {h})")),
        (Some(k), None) => Some(k.to_owned()),
        (None, Some(h)) => Some(h.to_owned()),
        (None, None) => None,
    };
    let mut e = CliError::new(category, message);
    e.sqlstate = Some(code);
    e.hint = hint.map(|h| one_line(&h));
    e
}

/// The next step for a server error we recognise by SQLSTATE and message.
fn hint_for(code: &str, msg: &str) -> Option<&'static str> {
    let m = msg.to_ascii_lowercase();
    Some(match code {
        _ if m.contains("wal_level") => {
            "wal_level must be logical: set `wal_level = logical` in postgresql.conf and restart \
             the server"
        }
        "42704" if m.contains("replication slot") => {
            "the slot does not exist: add --create-slot, or run `walstream slot create`"
        }
        "42704" if m.contains("publication") => {
            "the publication does not exist: CREATE PUBLICATION <name> FOR ALL TABLES (or FOR \
             TABLE ...), then pass it with --publication"
        }
        "42710" if m.contains("replication slot") => {
            "the slot already exists: add --if-not-exists, use it as it is, or drop it with \
             `walstream slot drop`"
        }
        "42501" if m.contains("replication") || m.contains("wal sender") => {
            "the role lacks REPLICATION: ALTER ROLE <name> REPLICATION (as a superuser)"
        }
        "28000" if m.contains("pg_hba.conf") => {
            "allow the connection in pg_hba.conf and reload: a logical replication connection \
             matches the database name (e.g. `host mydb repuser 10.0.0.0/8 scram-sha-256`), a \
             physical one the keyword `replication`"
        }
        "28P01" => "wrong password: fix it in -d, PGPASSWORD or ~/.pgpass",
        "3D000" => "the database does not exist: check dbname in -d",
        "55006" if m.contains("replication slot") => {
            "another client is streaming from this slot: stop it, or use another slot"
        }
        "53400" if m.contains("replication slot") => {
            "all replication slots are in use: drop unused slots (`walstream slot list`) or \
             raise max_replication_slots"
        }
        "53300" => "too many connections: raise max_connections or max_wal_senders",
        "0A000" if m.contains("two-phase") || m.contains("two_phase") => {
            "this server or slot does not support two-phase decoding; drop --two-phase"
        }
        "08P01" | "0A000" if m.contains("proto_version") || m.contains("protocol version") => {
            "the server does not support this pgoutput protocol version; lower --proto-version"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_sqlstate_and_hint() {
        let mut e = CliError::new(Category::Server, "replication slot \"s\" does not\nexist");
        e.sqlstate = Some("42704".into());
        e.hint = hint_for("42704", "replication slot \"s\" does not exist").map(str::to_owned);
        let text = e.to_string();
        assert!(!text.contains('\n'));
        assert!(text.starts_with("error: replication slot \"s\" does not exist [SQLSTATE 42704]"));
        assert!(text.contains("--create-slot"), "{text}");
    }

    #[test]
    fn hints_for_common_setup_mistakes() {
        assert!(
            hint_for("55000", "logical decoding requires wal_level >= logical")
                .is_some_and(|h| h.contains("wal_level = logical"))
        );
        assert!(
            hint_for(
                "42501",
                "permission denied to start WAL sender; Only roles with the REPLICATION attribute may start a WAL sender process."
            )
            .is_some_and(|h| h.contains("REPLICATION"))
        );
        assert!(
            hint_for(
                "42501",
                "must be superuser or replication role to use replication slots"
            )
            .is_some_and(|h| h.contains("REPLICATION"))
        );
        assert!(
            hint_for("42704", "publication \"p\" does not exist")
                .is_some_and(|h| h.contains("CREATE PUBLICATION"))
        );
        assert!(hint_for("42P01", "relation does not exist").is_none());
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            Category::Other,
            Category::Usage,
            Category::Connection,
            Category::Auth,
            Category::Server,
        ]
        .map(|c| format!("{:?}", c.exit_code()));
        for (i, a) in codes.iter().enumerate() {
            for b in &codes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
