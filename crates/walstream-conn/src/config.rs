//! Connection configuration: see [`Config`].

mod parse;
mod session;
mod target;
#[cfg(test)]
mod tests;
mod values;

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use walstream_auth::{ChannelBindingPolicy, Password};
use walstream_proto::ProtocolVersion;

use crate::pgpass::{PassFile, PassFileWarning};

pub use session::{
    ServerStatus, SessionQuery, SessionQueryError, SessionRejection, SessionVerdict,
};
pub use target::{DEFAULT_PORT, DEFAULT_SOCKET_DIRS, Target, TargetAddr};
pub use values::{
    AuthMethod, GssEncMode, KeepaliveConfig, LoadBalanceHosts, ReplicationMode, RequireAuth,
    TargetSessionAttrs,
};
pub use walstream_tls::{SslMode, SslNegotiation};

/// An error in a connection string, a parameter value or a combination of parameters.
///
/// No variant ever contains a password: values of `password` and `sslpassword` are replaced
/// by `***`, and syntax errors report an offset or a component name instead of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A keyword libpq does not know either.
    #[error("invalid connection option \"{key}\"")]
    UnknownKey {
        /// The keyword.
        key: String,
    },
    /// A keyword (or value) libpq knows but walstream does not implement.
    #[error("connection option \"{key}\" is not supported: {reason}")]
    Unsupported {
        /// The keyword.
        key: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// A value that is not valid for its keyword.
    #[error("invalid value \"{value}\" for connection option \"{key}\": {reason}")]
    InvalidValue {
        /// The keyword.
        key: String,
        /// The value, or `***` for a password.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed `key=value` connection string.
    #[error("invalid connection string at byte {offset}: {reason}")]
    InvalidSyntax {
        /// Byte offset of the problem in the string.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A malformed `postgresql://` URI.
    #[error("invalid connection URI: {reason}")]
    InvalidUrl {
        /// What is wrong (naming the component, never quoting user information).
        reason: String,
    },
    /// Parameters that are each valid but do not go together.
    #[error("{reason}")]
    Conflict {
        /// What conflicts.
        reason: String,
    },
    /// An invalid value in a `PG*` environment variable.
    #[error("environment variable {var}: {error}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with its value.
        error: Box<Self>,
    },
}

impl ConfigError {
    fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Self {
        let value = if is_secret(key) {
            "***".to_owned()
        } else {
            value.to_owned()
        };
        Self::InvalidValue {
            key: key.to_owned(),
            value,
            reason: reason.into(),
        }
    }
}

fn is_secret(key: &str) -> bool {
    matches!(key, "password" | "sslpassword")
}

/// Every keyword [`Config::param`] accepts, with the environment variable that supplies its
/// default (libpq's `PQconninfoOptions`).
const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("replication", None),
    ("options", Some("PGOPTIONS")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslpassword", None),
    ("sslsni", Some("PGSSLSNI")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("min_protocol_version", Some("PGMINPROTOCOLVERSION")),
    ("max_protocol_version", Some("PGMAXPROTOCOLVERSION")),
];

/// libpq keywords walstream refuses, with the reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "service",
        "connection service files are not read; give the parameters directly",
    ),
    ("sslcrl", "certificate revocation lists are not supported"),
    (
        "sslcrldir",
        "certificate revocation lists are not supported",
    ),
    (
        "sslcertmode",
        "the client certificate is sent whenever sslcert is configured",
    ),
    (
        "ssl_min_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    (
        "ssl_max_protocol_version",
        "TLS 1.2 and 1.3 are always allowed",
    ),
    ("sslkeylogfile", "TLS key logging is not supported"),
    (
        "requirepeer",
        "peer credential checks on Unix sockets are not supported",
    ),
    ("gsslib", "GSSAPI is not supported"),
    ("gssdelegation", "GSSAPI is not supported"),
];

/// Where the server's root certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of trusted certificates.
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`); implies
    /// `sslmode=verify-full` by default and forbids weaker modes.
    System,
}

/// The TLS-related parameters, with libpq's defaults applied by the accessors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SslSettings {
    mode: Option<SslMode>,
    root_cert: Option<RootCert>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    key_password: Option<Password>,
    sni: Option<bool>,
    negotiation: Option<SslNegotiation>,
}

impl SslSettings {
    /// `sslmode`; default `prefer`, or `verify-full` when `sslrootcert=system`.
    #[must_use]
    pub fn mode(&self) -> SslMode {
        self.mode
            .unwrap_or(if self.root_cert == Some(RootCert::System) {
                SslMode::VerifyFull
            } else {
                SslMode::Prefer
            })
    }

    /// `sslrootcert` as configured.
    #[must_use]
    pub const fn root_cert(&self) -> Option<&RootCert> {
        self.root_cert.as_ref()
    }

    /// The root certificates libpq would use: `sslrootcert` if set, else
    /// `~/.postgresql/root.crt` if that file exists. When this is `Some`, libpq verifies the
    /// certificate chain even under `sslmode=require` (and `allow`/`prefer`).
    #[must_use]
    pub fn effective_root_cert(&self) -> Option<RootCert> {
        self.root_cert.clone().or_else(|| {
            let path = target::home_dir()?.join(".postgresql/root.crt");
            path.is_file().then_some(RootCert::File(path))
        })
    }

    /// `sslcert` as configured.
    #[must_use]
    pub fn cert(&self) -> Option<&std::path::Path> {
        self.cert.as_deref()
    }

    /// `sslkey` as configured.
    #[must_use]
    pub fn key(&self) -> Option<&std::path::Path> {
        self.key.as_deref()
    }

    /// The client certificate and key libpq would send: `sslcert`/`sslkey`, defaulting to
    /// `~/.postgresql/postgresql.crt` and `.key`; `None` if the certificate file does not
    /// exist (then no client certificate is sent).
    #[must_use]
    pub fn effective_client_cert(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = || target::home_dir().map(|h| h.join(".postgresql"));
        let cert = match &self.cert {
            Some(c) => c.clone(),
            None => dir()?.join("postgresql.crt"),
        };
        if !cert.is_file() {
            return None;
        }
        let key = match &self.key {
            Some(k) => k.clone(),
            None => dir()?.join("postgresql.key"),
        };
        Some((cert, key))
    }

    /// `sslpassword`: the passphrase of an encrypted client key.
    #[must_use]
    pub const fn key_password(&self) -> Option<&Password> {
        self.key_password.as_ref()
    }

    /// `sslsni`; default on: send the host name in the TLS Server Name Indication (never for
    /// IP addresses).
    #[must_use]
    pub fn sni(&self) -> bool {
        self.sni.unwrap_or(true)
    }

    /// `sslnegotiation`; default `postgres`.
    #[must_use]
    pub fn negotiation(&self) -> SslNegotiation {
        self.negotiation.unwrap_or_default()
    }
}

/// Where a password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The `password` parameter (or `PGPASSWORD`).
    Explicit,
    /// A line of this password file. libpq mentions the file in authentication errors.
    PassFile(PathBuf),
}

/// The outcome of [`Config::lookup_password`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PasswordLookup {
    /// The password and where it came from, if one was found.
    pub password: Option<(Password, PasswordSource)>,
    /// Why the password file was ignored, for the caller to log.
    pub warning: Option<PassFileWarning>,
}

/// Connection configuration, compatible with libpq's connection strings, environment variables
/// and password file.
///
/// A [`Config`] is built from either form of libpq connection string — a
/// `postgresql://user:password@host:port,host2:port2/dbname?key=value` URI or a
/// `host=h port=5432 dbname='my db'` list of keywords — through [`str::parse`], from builder
/// setters, or from both. Every textual value goes through one setter, [`Config::param`], which
/// knows every keyword, checks every value and rejects unknown keywords by name. Later values
/// replace earlier ones, as in libpq.
///
/// [`Config::with_env_defaults`] then fills what is still unset from the `PG*` environment
/// variables (explicit values always win); [`Config::with_env_from`] does the same with an
/// injected lookup, for tests. Unset values take libpq's defaults: the Unix socket in
/// `/var/run/postgresql` (or `/tmp`), port 5432, the operating-system user, a database named
/// like the user.
///
/// At connect time, [`Config::targets`] expands the host, hostaddr and port lists into the
/// servers to try, [`Config::password_for`] finds the password for one of them (explicit, else
/// from `.pgpass`), [`Config::startup_params`] gives the StartupMessage parameters, and
/// [`TargetSessionAttrs::verdict`] decides whether a server is acceptable.
///
/// Neither `Debug` nor any [`ConfigError`] ever shows a password.
///
/// # Differences from libpq
///
/// * No GSSAPI: `gssencmode=require` is refused, `krbsrvname` is accepted and ignored.
/// * Only UTF-8: `client_encoding` accepts `UTF8` (and its aliases, and `auto`), nothing else.
/// * Not supported (refused with [`ConfigError::Unsupported`] rather than silently ignored):
///   `service`, `sslcrl`, `sslcrldir`, `sslcertmode`, `ssl_min_protocol_version`,
///   `ssl_max_protocol_version`, `sslkeylogfile`, `requirepeer`, `gsslib`, `gssdelegation`.
/// * `sslcompression` is accepted and ignored, as libpq does since PostgreSQL 14.
/// * `PGSERVICE`, `PGSERVICEFILE`, `PGSYSCONFDIR`, `PGDATESTYLE`, `PGTZ`, `PGGEQO` and
///   `PGREQUIRESSL` are not read.
/// * The default socket directory is the first existing of `/var/run/postgresql` and `/tmp`
///   (a libpq build has exactly one, chosen at compile time); both count as "the default
///   directory" for `.pgpass` matching.
/// * In a URI, an `@` after the first `/` or `?` never ends user information (libpq looks
///   for it up to the first `/` only, so `?application_name=a@b` confused it).
/// * `.pgpass` ports are matched as numbers written in decimal (libpq compares the text).
///
/// # Example
///
/// ```
/// use walstream_conn::{Config, ReplicationMode};
///
/// let config: Config =
///     "postgresql://replicator@db1:5432,db2:5433/app?replication=database&sslmode=verify-full"
///         .parse()?;
/// assert_eq!(config.replication(), ReplicationMode::Logical);
/// let targets = config.targets()?;
/// assert_eq!(targets.len(), 2);
/// assert_eq!(targets[1].server_name(), Some("db2"));
///
/// let same: Config = "host=db1,db2 port=5432,5433 user=replicator dbname=app \
///                     replication=database sslmode=verify-full"
///     .parse()?;
/// assert_eq!(config, same);
/// # Ok::<(), walstream_conn::ConfigError>(())
/// ```
///
/// See the PostgreSQL documentation, "Database Connection Control Functions"
/// (`libpq-connect`), "Environment Variables" (`libpq-envars`) and "The Password File"
/// (`libpq-pgpass`).
///
/// `Debug` shows every parameter except passwords.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    hosts: Option<Vec<String>>,
    hostaddrs: Option<Vec<Option<IpAddr>>>,
    ports: Option<Vec<Option<u16>>>,
    dbname: Option<String>,
    user: Option<String>,
    password: Option<Password>,
    passfile: Option<PathBuf>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    replication: Option<ReplicationMode>,
    options: Option<String>,
    connect_timeout: Option<i32>,
    keepalives: Option<bool>,
    keepalives_idle: Option<i32>,
    keepalives_interval: Option<i32>,
    keepalives_count: Option<i32>,
    tcp_user_timeout: Option<i32>,
    target_session_attrs: Option<TargetSessionAttrs>,
    load_balance_hosts: Option<LoadBalanceHosts>,
    ssl: SslSettings,
    ssl_compression: Option<bool>,
    channel_binding: Option<ChannelBindingPolicy>,
    require_auth: Option<RequireAuth>,
    client_encoding: Option<String>,
    gss_enc_mode: Option<GssEncMode>,
    krbsrvname: Option<String>,
    min_protocol_version: Option<ProtocolVersion>,
    max_protocol_version: Option<ProtocolVersion>,
    /// Not a libpq parameter: see [`Config::set_stream_batch_latency`].
    stream_batch_latency: Option<Duration>,
}

impl FromStr for Config {
    type Err = ConfigError;

    /// Parses a `postgresql://` (or `postgres://`) URI or a `key=value` connection string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let pairs = match parse::strip_uri_prefix(s) {
            Some(rest) => parse::parse_uri(rest)?,
            None => parse::parse_key_value(s)?,
        };
        let mut config = Self::new();
        for (key, value) in pairs {
            config.param(&key, &value)?;
        }
        config.validate_lists()?;
        Ok(config)
    }
}

impl Config {
    /// An empty configuration: every parameter at its default.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A configuration from the `PG*` environment variables alone.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Env`] if a variable holds an invalid value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::new().with_env_defaults()
    }

    /// Fills every parameter that is still unset from its `PG*` environment variable
    /// (`PGHOST`, `PGPORT`, `PGUSER`, `PGSSLMODE`, ...), like libpq.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Env`] if a variable holds an invalid value.
    pub fn with_env_defaults(self) -> Result<Self, ConfigError> {
        self.with_env_from(|var| std::env::var(var).ok())
    }

    /// [`with_env_defaults`](Self::with_env_defaults) with the variables read through
    /// `lookup` instead of the process environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Env`] if a variable holds an invalid value.
    pub fn with_env_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        for &(key, var) in KEYWORDS {
            let Some(var) = var else { continue };
            if self.is_set(key) {
                continue;
            }
            if let Some(value) = lookup(var) {
                self.param(key, &value).map_err(|e| ConfigError::Env {
                    var,
                    error: Box::new(e),
                })?;
            }
        }
        Ok(self)
    }

    /// Sets one parameter from its libpq keyword and textual value, replacing any earlier
    /// value. This is what the string parsers and the environment fallback call.
    ///
    /// `host`, `hostaddr` and `port` take comma-separated lists; an empty entry means the
    /// default for that position.
    ///
    /// # Errors
    ///
    /// [`ConfigError::UnknownKey`] for a keyword libpq does not have,
    /// [`ConfigError::Unsupported`] for one walstream does not implement,
    /// [`ConfigError::InvalidValue`] for a value the keyword does not accept (including any
    /// value containing a NUL character).
    pub fn param(&mut self, key: &str, value: &str) -> Result<&mut Self, ConfigError> {
        if value.contains('\0') {
            return Err(ConfigError::invalid(
                key,
                &value.replace('\0', "\\0"),
                "contains a NUL character",
            ));
        }
        let invalid = |reason: &str| ConfigError::invalid(key, value, reason);
        let string = || Some(value.to_owned());
        match key {
            "host" => self.hosts = Some(split_list(value).map(str::to_owned).collect()),
            "hostaddr" => {
                let addrs = split_list(value)
                    .map(|a| {
                        if a.is_empty() {
                            Ok(None)
                        } else {
                            a.parse::<IpAddr>().map(Some).map_err(|_| {
                                ConfigError::invalid(
                                    key,
                                    a,
                                    "could not parse network address (hostaddr takes numeric \
                                     IPv4 or IPv6 addresses)",
                                )
                            })
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.hostaddrs = Some(addrs);
            }
            "port" => {
                let ports = split_list(value)
                    .map(|p| {
                        if p.is_empty() {
                            return Ok(None);
                        }
                        parse_int(p)
                            .and_then(|n| u16::try_from(n).ok())
                            .filter(|&n| n >= 1)
                            .map(Some)
                            .ok_or_else(|| ConfigError::invalid(key, p, "invalid port number"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.ports = Some(ports);
            }
            "dbname" => self.dbname = string(),
            "user" => self.user = string(),
            "password" => self.password = Some(Password::from(value)),
            "passfile" => self.passfile = Some(PathBuf::from(value)),
            "application_name" => self.application_name = string(),
            "fallback_application_name" => self.fallback_application_name = string(),
            "replication" => {
                self.replication = Some(ReplicationMode::parse(value).ok_or_else(|| {
                    invalid("expected database, or a boolean (true/false, on/off, yes/no, 1/0)")
                })?);
            }
            "options" => self.options = string(),
            "connect_timeout" => self.connect_timeout = Some(int_param(key, value)?),
            "keepalives" => self.keepalives = Some(int_param(key, value)? != 0),
            "keepalives_idle" => self.keepalives_idle = Some(int_param(key, value)?),
            "keepalives_interval" => self.keepalives_interval = Some(int_param(key, value)?),
            "keepalives_count" => self.keepalives_count = Some(int_param(key, value)?),
            "tcp_user_timeout" => self.tcp_user_timeout = Some(int_param(key, value)?),
            "target_session_attrs" => {
                self.target_session_attrs =
                    Some(TargetSessionAttrs::parse(value).ok_or_else(|| {
                        invalid(
                            "expected any, read-write, read-only, primary, standby or \
                             prefer-standby",
                        )
                    })?);
            }
            "load_balance_hosts" => {
                self.load_balance_hosts = Some(
                    LoadBalanceHosts::parse(value)
                        .ok_or_else(|| invalid("expected disable or random"))?,
                );
            }
            "sslmode" => {
                self.ssl.mode = Some(parse_ssl_mode(value).ok_or_else(|| {
                    invalid("expected disable, allow, prefer, require, verify-ca or verify-full")
                })?);
            }
            "sslrootcert" => {
                self.ssl.root_cert = Some(if value == "system" {
                    RootCert::System
                } else {
                    RootCert::File(PathBuf::from(value))
                });
            }
            "sslcert" => self.ssl.cert = Some(PathBuf::from(value)),
            "sslkey" => self.ssl.key = Some(PathBuf::from(value)),
            "sslpassword" => self.ssl.key_password = Some(Password::from(value)),
            "sslsni" => {
                self.ssl.sni = Some(match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(invalid("expected 0 or 1")),
                });
            }
            "sslnegotiation" => {
                self.ssl.negotiation = Some(
                    parse_ssl_negotiation(value)
                        .ok_or_else(|| invalid("expected postgres or direct"))?,
                );
            }
            "sslcompression" => {
                self.ssl_compression = Some(match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(invalid("expected 0 or 1")),
                });
            }
            "channel_binding" => {
                self.channel_binding = Some(
                    value
                        .parse::<ChannelBindingPolicy>()
                        .map_err(|_| invalid("expected disable, prefer or require"))?,
                );
            }
            "require_auth" => {
                self.require_auth = Some(RequireAuth::parse(value).map_err(|r| invalid(&r))?);
            }
            "client_encoding" => {
                let normalized: String = value
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .map(|c| c.to_ascii_lowercase())
                    .collect();
                if !matches!(normalized.as_str(), "utf8" | "unicode" | "auto") {
                    return Err(invalid("only UTF8 is supported"));
                }
                self.client_encoding = Some("UTF8".to_owned());
            }
            "gssencmode" => {
                self.gss_enc_mode = Some(match value {
                    "disable" => GssEncMode::Disable,
                    "prefer" => GssEncMode::Prefer,
                    "require" => {
                        return Err(ConfigError::Unsupported {
                            key: key.to_owned(),
                            reason: "gssencmode=require needs GSSAPI, which walstream does not \
                                     support",
                        });
                    }
                    _ => return Err(invalid("expected disable, prefer or require")),
                });
            }
            "krbsrvname" => self.krbsrvname = string(),
            "min_protocol_version" => {
                self.min_protocol_version = Some(
                    parse_protocol_version(value)
                        .ok_or_else(|| invalid("expected 3.0, 3.2 or latest"))?,
                );
            }
            "max_protocol_version" => {
                self.max_protocol_version = Some(
                    parse_protocol_version(value)
                        .ok_or_else(|| invalid("expected 3.0, 3.2 or latest"))?,
                );
            }
            _ => {
                return Err(match UNSUPPORTED.iter().find(|(k, _)| *k == key) {
                    Some(&(k, reason)) => ConfigError::Unsupported {
                        key: k.to_owned(),
                        reason,
                    },
                    None => ConfigError::UnknownKey {
                        key: key.to_owned(),
                    },
                });
            }
        }
        Ok(self)
    }

    /// Whether `key` has been given a value (so the environment does not supply it).
    fn is_set(&self, key: &str) -> bool {
        match key {
            "host" => self.hosts.is_some(),
            "hostaddr" => self.hostaddrs.is_some(),
            "port" => self.ports.is_some(),
            "dbname" => self.dbname.is_some(),
            "user" => self.user.is_some(),
            "password" => self.password.is_some(),
            "passfile" => self.passfile.is_some(),
            "application_name" => self.application_name.is_some(),
            "fallback_application_name" => self.fallback_application_name.is_some(),
            "replication" => self.replication.is_some(),
            "options" => self.options.is_some(),
            "connect_timeout" => self.connect_timeout.is_some(),
            "keepalives" => self.keepalives.is_some(),
            "keepalives_idle" => self.keepalives_idle.is_some(),
            "keepalives_interval" => self.keepalives_interval.is_some(),
            "keepalives_count" => self.keepalives_count.is_some(),
            "tcp_user_timeout" => self.tcp_user_timeout.is_some(),
            "target_session_attrs" => self.target_session_attrs.is_some(),
            "load_balance_hosts" => self.load_balance_hosts.is_some(),
            "sslmode" => self.ssl.mode.is_some(),
            "sslrootcert" => self.ssl.root_cert.is_some(),
            "sslcert" => self.ssl.cert.is_some(),
            "sslkey" => self.ssl.key.is_some(),
            "sslpassword" => self.ssl.key_password.is_some(),
            "sslsni" => self.ssl.sni.is_some(),
            "sslnegotiation" => self.ssl.negotiation.is_some(),
            "sslcompression" => self.ssl_compression.is_some(),
            "channel_binding" => self.channel_binding.is_some(),
            "require_auth" => self.require_auth.is_some(),
            "client_encoding" => self.client_encoding.is_some(),
            "gssencmode" => self.gss_enc_mode.is_some(),
            "krbsrvname" => self.krbsrvname.is_some(),
            "min_protocol_version" => self.min_protocol_version.is_some(),
            "max_protocol_version" => self.max_protocol_version.is_some(),
            _ => false,
        }
    }

    // ----- builder setters -----

    /// Appends a host name, IP address or Unix-socket directory (starting with `/` or `@`) to
    /// the host list.
    pub fn add_host(&mut self, host: &str) -> &mut Self {
        self.hosts
            .get_or_insert_with(Vec::new)
            .push(host.to_owned());
        self
    }

    /// Appends a numeric address to the `hostaddr` list (one per host, if hosts are given).
    pub fn add_hostaddr(&mut self, addr: IpAddr) -> &mut Self {
        self.hostaddrs.get_or_insert_with(Vec::new).push(Some(addr));
        self
    }

    /// Appends a port to the port list (one for all hosts, or one per host).
    pub fn add_port(&mut self, port: u16) -> &mut Self {
        self.ports.get_or_insert_with(Vec::new).push(Some(port));
        self
    }

    /// Sets the database user name.
    pub fn set_user(&mut self, user: &str) -> &mut Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets the password.
    pub fn set_password(&mut self, password: impl Into<Password>) -> &mut Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the database name.
    pub fn set_dbname(&mut self, dbname: &str) -> &mut Self {
        self.dbname = Some(dbname.to_owned());
        self
    }

    /// Sets the password file (default `~/.pgpass`).
    pub fn set_passfile(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.passfile = Some(path.into());
        self
    }

    /// Sets the replication mode.
    pub fn set_replication(&mut self, mode: ReplicationMode) -> &mut Self {
        self.replication = Some(mode);
        self
    }

    /// Sets `application_name`.
    pub fn set_application_name(&mut self, name: &str) -> &mut Self {
        self.application_name = Some(name.to_owned());
        self
    }

    /// Sets `fallback_application_name`, used when `application_name` is not set.
    pub fn set_fallback_application_name(&mut self, name: &str) -> &mut Self {
        self.fallback_application_name = Some(name.to_owned());
        self
    }

    /// Sets the command-line `options` sent to the server (e.g. `-c wal_sender_timeout=0`).
    pub fn set_options(&mut self, options: &str) -> &mut Self {
        self.options = Some(options.to_owned());
        self
    }

    /// Sets the connect timeout per host (rounded up to whole seconds, at least 2 like libpq).
    pub fn set_connect_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.connect_timeout = Some(duration_secs(timeout));
        self
    }

    /// Turns TCP keepalives on or off.
    pub fn set_keepalives(&mut self, enabled: bool) -> &mut Self {
        self.keepalives = Some(enabled);
        self
    }

    /// Sets the keepalive idle time (whole seconds).
    pub fn set_keepalives_idle(&mut self, idle: Duration) -> &mut Self {
        self.keepalives_idle = Some(duration_secs(idle));
        self
    }

    /// Sets the interval between keepalive probes (whole seconds).
    pub fn set_keepalives_interval(&mut self, interval: Duration) -> &mut Self {
        self.keepalives_interval = Some(duration_secs(interval));
        self
    }

    /// Sets the number of unanswered keepalive probes before the connection is dropped.
    pub fn set_keepalives_count(&mut self, count: u32) -> &mut Self {
        self.keepalives_count = Some(i32::try_from(count).unwrap_or(i32::MAX));
        self
    }

    /// Sets `TCP_USER_TIMEOUT` (whole milliseconds).
    pub fn set_tcp_user_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.tcp_user_timeout = Some(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX));
        self
    }

    /// Sets `target_session_attrs`.
    pub fn set_target_session_attrs(&mut self, attrs: TargetSessionAttrs) -> &mut Self {
        self.target_session_attrs = Some(attrs);
        self
    }

    /// Sets `load_balance_hosts`.
    pub fn set_load_balance_hosts(&mut self, mode: LoadBalanceHosts) -> &mut Self {
        self.load_balance_hosts = Some(mode);
        self
    }

    /// Sets `sslmode`.
    pub fn set_ssl_mode(&mut self, mode: SslMode) -> &mut Self {
        self.ssl.mode = Some(mode);
        self
    }

    /// Sets `sslrootcert`.
    pub fn set_ssl_root_cert(&mut self, root: RootCert) -> &mut Self {
        self.ssl.root_cert = Some(root);
        self
    }

    /// Sets `sslcert` and `sslkey`, the client certificate and its private key.
    pub fn set_ssl_client_cert(
        &mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> &mut Self {
        self.ssl.cert = Some(cert.into());
        self.ssl.key = Some(key.into());
        self
    }

    /// Sets `sslnegotiation`.
    pub fn set_ssl_negotiation(&mut self, negotiation: SslNegotiation) -> &mut Self {
        self.ssl.negotiation = Some(negotiation);
        self
    }

    /// Sets `sslsni`.
    pub fn set_ssl_sni(&mut self, sni: bool) -> &mut Self {
        self.ssl.sni = Some(sni);
        self
    }

    /// Sets `channel_binding`.
    pub fn set_channel_binding(&mut self, policy: ChannelBindingPolicy) -> &mut Self {
        self.channel_binding = Some(policy);
        self
    }

    /// Sets `require_auth`.
    pub fn set_require_auth(&mut self, policy: RequireAuth) -> &mut Self {
        self.require_auth = Some(policy);
        self
    }

    // ----- accessors -----

    /// The host list as given (empty if none was).
    #[must_use]
    pub fn hosts(&self) -> &[String] {
        self.hosts.as_deref().unwrap_or_default()
    }

    /// The user name as configured (explicitly or from `PGUSER`).
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database user: the configured one, else the operating-system user (libpq's
    /// default). `None` only if neither is known.
    #[must_use]
    pub fn effective_user(&self) -> Option<String> {
        self.user.clone().or_else(target::os_user_name)
    }

    /// The database name as configured (explicitly or from `PGDATABASE`).
    #[must_use]
    pub fn dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The database to connect to: the configured one, else one named like the
    /// [effective user](Self::effective_user).
    #[must_use]
    pub fn effective_dbname(&self) -> Option<String> {
        self.dbname.clone().or_else(|| self.effective_user())
    }

    /// Whether a password was configured (explicitly or from `PGPASSWORD`).
    #[must_use]
    pub const fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The explicitly configured password file, if any.
    #[must_use]
    pub fn passfile(&self) -> Option<&std::path::Path> {
        self.passfile.as_deref()
    }

    /// The password file to read: `passfile` (or `PGPASSFILE`), else `~/.pgpass`.
    #[must_use]
    pub fn effective_passfile(&self) -> Option<PathBuf> {
        match &self.passfile {
            Some(p) if !p.as_os_str().is_empty() => Some(p.clone()),
            _ => target::home_dir().map(|h| h.join(".pgpass")),
        }
    }

    /// `application_name`, else `fallback_application_name`.
    #[must_use]
    pub fn application_name(&self) -> Option<&str> {
        self.application_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.fallback_application_name.as_deref())
    }

    /// The replication mode (default [`ReplicationMode::Off`]).
    #[must_use]
    pub fn replication(&self) -> ReplicationMode {
        self.replication.unwrap_or_default()
    }

    /// The `options` string.
    #[must_use]
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// The per-host connect timeout: `None` (wait indefinitely) for an unset, zero or negative
    /// `connect_timeout`; otherwise at least 2 seconds, as libpq rounds 1 up to 2.
    #[must_use]
    pub fn connect_timeout(&self) -> Option<Duration> {
        let secs = u64::try_from(self.connect_timeout?)
            .ok()
            .filter(|&s| s > 0)?;
        Some(Duration::from_secs(secs.max(2)))
    }

    /// The TCP keepalive settings; zero or negative times mean the system default.
    #[must_use]
    pub fn keepalives(&self) -> KeepaliveConfig {
        let secs = |v: Option<i32>| {
            u64::try_from(v?)
                .ok()
                .filter(|&s| s > 0)
                .map(Duration::from_secs)
        };
        KeepaliveConfig {
            enabled: self.keepalives.unwrap_or(true),
            idle: secs(self.keepalives_idle),
            interval: secs(self.keepalives_interval),
            count: self
                .keepalives_count
                .and_then(|c| u32::try_from(c).ok())
                .filter(|&c| c > 0),
        }
    }

    /// `TCP_USER_TIMEOUT`; `None` (system default) when unset, zero or negative.
    #[must_use]
    pub fn tcp_user_timeout(&self) -> Option<Duration> {
        let ms = u64::try_from(self.tcp_user_timeout?)
            .ok()
            .filter(|&m| m > 0)?;
        Some(Duration::from_millis(ms))
    }

    /// `target_session_attrs` (default `any`).
    #[must_use]
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs.unwrap_or_default()
    }

    /// `load_balance_hosts` (default `disable`).
    #[must_use]
    pub fn load_balance_hosts(&self) -> LoadBalanceHosts {
        self.load_balance_hosts.unwrap_or_default()
    }

    /// The TLS settings.
    #[must_use]
    pub const fn ssl(&self) -> &SslSettings {
        &self.ssl
    }

    /// `min_protocol_version`: the oldest protocol version the connection accepts when
    /// the server negotiates down (default 3.0).
    #[must_use]
    pub fn min_protocol_version(&self) -> ProtocolVersion {
        self.min_protocol_version.unwrap_or(ProtocolVersion::V3_0)
    }

    /// `max_protocol_version`: the protocol version requested in the startup message.
    /// Defaults to 3.0 like libpq 18, or to `min_protocol_version` when that is newer.
    /// Protocol 3.2 (PostgreSQL 18) brings longer cancel keys; older servers answer a 3.2
    /// request with `NegotiateProtocolVersion` and the connection continues with 3.0.
    #[must_use]
    pub fn max_protocol_version(&self) -> ProtocolVersion {
        self.max_protocol_version
            .unwrap_or(ProtocolVersion::V3_0)
            .max(self.min_protocol_version())
    }

    /// The latency budget of batched reads during replication streaming (default
    /// [`Config::DEFAULT_STREAM_BATCH_LATENCY`], 1 ms; zero disables batching). See
    /// [`Config::set_stream_batch_latency`].
    #[must_use]
    pub fn stream_batch_latency(&self) -> Duration {
        self.stream_batch_latency
            .unwrap_or(Self::DEFAULT_STREAM_BATCH_LATENCY)
    }

    /// The default of [`Config::stream_batch_latency`].
    pub const DEFAULT_STREAM_BATCH_LATENCY: Duration = Duration::from_millis(1);

    /// Sets the latency budget of batched reads during replication streaming (`START_REPLICATION`;
    /// not a libpq parameter, so it cannot be given in a connection string).
    ///
    /// PostgreSQL flushes the socket after every replication message. A client that keeps
    /// up would wake up, read one message and go back to sleep for every one of them: a
    /// system call and two context switches per message, most of a fast client's CPU. With
    /// a budget, once messages arrive faster than one per budget the client takes its socket
    /// out of the event loop and reads it once per budget (at once again while a read fills
    /// the whole receive buffer), so one wake-up reads hundreds of messages. A message waits
    /// at most the budget (plus the timer's 1 ms granularity) before it is read, and that
    /// includes keepalives asking for a reply; a closed connection is noticed at the next
    /// read, within the budget. A budget without data goes back to waking up per arrival, so
    /// a quiet stream is not polled. Zero disables batching. Over a Unix-domain socket the
    /// server's send buffer holds less than half a millisecond of small messages, so there
    /// the client naps 100 µs (or the budget, if shorter) between reads instead, on a
    /// process-wide sub-millisecond timer thread, and batches only while messages come faster
    /// than one per nap.
    pub fn set_stream_batch_latency(&mut self, budget: Duration) -> &mut Self {
        self.stream_batch_latency = Some(budget);
        self
    }

    /// Sets `min_protocol_version`.
    pub fn set_min_protocol_version(&mut self, version: ProtocolVersion) -> &mut Self {
        self.min_protocol_version = Some(version);
        self
    }

    /// Sets `max_protocol_version`.
    pub fn set_max_protocol_version(&mut self, version: ProtocolVersion) -> &mut Self {
        self.max_protocol_version = Some(version);
        self
    }

    /// `channel_binding` (default `prefer`).
    #[must_use]
    pub fn channel_binding(&self) -> ChannelBindingPolicy {
        self.channel_binding.unwrap_or_default()
    }

    /// `require_auth` (default: anything).
    #[must_use]
    pub fn require_auth(&self) -> &RequireAuth {
        self.require_auth.as_ref().unwrap_or(&RequireAuth::ANY)
    }

    /// `gssencmode` (default `prefer`, which never finds GSSAPI here).
    #[must_use]
    pub fn gss_enc_mode(&self) -> GssEncMode {
        self.gss_enc_mode.unwrap_or_default()
    }

    /// The parameters of the StartupMessage, in libpq's order: `user`, `database`,
    /// `replication`, `options`, `application_name`, `client_encoding` (always `UTF8`).
    /// Empty values are left out; `user` and `database` take their defaults.
    #[must_use]
    pub fn startup_params(&self) -> Vec<(String, String)> {
        let mut params = Vec::with_capacity(6);
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                params.push((k.to_owned(), v));
            }
        };
        push("user", self.effective_user());
        push("database", self.effective_dbname());
        push(
            "replication",
            self.replication().startup_value().map(str::to_owned),
        );
        push("options", self.options.clone());
        push(
            "application_name",
            self.application_name().map(str::to_owned),
        );
        push("client_encoding", Some("UTF8".to_owned()));
        params
    }

    // ----- resolution -----

    /// Checks the combinations libpq checks before connecting: as many `hostaddr` entries as
    /// hosts, one port or one per host, no weak `sslmode` with `sslrootcert=system` or
    /// `sslnegotiation=direct`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Conflict`] describing the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_lists()?;
        if let (Some(min), Some(max)) = (self.min_protocol_version, self.max_protocol_version) {
            if min > max {
                return Err(ConfigError::Conflict {
                    reason: "min_protocol_version is greater than max_protocol_version".into(),
                });
            }
        }
        if self.ssl.negotiation() == SslNegotiation::Direct
            && matches!(
                self.ssl.mode(),
                SslMode::Disable | SslMode::Allow | SslMode::Prefer
            )
        {
            return Err(ConfigError::Conflict {
                reason: format!(
                    "weak sslmode \"{}\" may not be used with sslnegotiation=direct (use \
                     \"require\", \"verify-ca\", or \"verify-full\")",
                    self.ssl.mode()
                ),
            });
        }
        Ok(())
    }

    /// The checks that do not depend on defaults an environment variable could still supply.
    fn validate_lists(&self) -> Result<(), ConfigError> {
        let hosts = self.hosts.as_ref().filter(|h| !h.is_empty()).map(Vec::len);
        let addrs = self
            .hostaddrs
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(Vec::len);
        let count = match (hosts, addrs) {
            (Some(h), Some(a)) if h != a => {
                return Err(ConfigError::Conflict {
                    reason: format!("could not match {h} host names to {a} hostaddr values"),
                });
            }
            (Some(n), _) | (None, Some(n)) => n,
            (None, None) => 1,
        };
        let ports = self.ports.as_ref().map_or(0, Vec::len);
        if ports > 1 && ports != count {
            return Err(ConfigError::Conflict {
                reason: format!("could not match {ports} port numbers to {count} hosts"),
            });
        }
        let system_root = self.ssl.root_cert == Some(RootCert::System);
        if let Some(mode) = self
            .ssl
            .mode
            .filter(|&m| system_root && m != SslMode::VerifyFull)
        {
            return Err(ConfigError::Conflict {
                reason: format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \
                     \"verify-full\")"
                ),
            });
        }
        Ok(())
    }

    /// The servers to try, in order (shuffled if `load_balance_hosts=random`).
    ///
    /// Entry *i* combines host *i*, hostaddr *i* and port *i* (or the single port): a
    /// non-empty hostaddr means TCP to that address; else a host starting with `/` or `@` is
    /// a Unix-socket directory and any other host a TCP host name; an empty entry means the
    /// default Unix socket directory.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub fn targets(&self) -> Result<Vec<Target>, ConfigError> {
        self.validate()?;
        let hosts = self.hosts.as_deref().unwrap_or_default();
        let addrs = self.hostaddrs.as_deref().unwrap_or_default();
        let ports = self.ports.as_deref().unwrap_or_default();
        let count = hosts.len().max(addrs.len()).max(1);
        let mut targets = (0..count)
            .map(|index| {
                let host = hosts.get(index).cloned().unwrap_or_default();
                let addr = addrs.get(index).copied().flatten();
                let port = match ports {
                    [single] => *single,
                    many => many.get(index).copied().flatten(),
                }
                .unwrap_or(DEFAULT_PORT);
                let addr = if let Some(ip) = addr {
                    let name = if host.is_empty() {
                        ip.to_string()
                    } else {
                        host.clone()
                    };
                    TargetAddr::Tcp {
                        host: name,
                        hostaddr: Some(ip),
                        port,
                    }
                } else if host.is_empty() {
                    default_target(port)
                } else if target::is_unix_socket_dir(&host) {
                    TargetAddr::Unix {
                        path: target::socket_path(&host, port),
                        port,
                    }
                } else {
                    TargetAddr::Tcp {
                        host: host.clone(),
                        hostaddr: None,
                        port,
                    }
                };
                Target { addr, host, index }
            })
            .collect::<Vec<_>>();
        if self.load_balance_hosts() == LoadBalanceHosts::Random {
            target::shuffle(&mut targets, rand::random::<u64>);
        }
        Ok(targets)
    }

    /// The password to use for `target`: the explicit one, else the first matching line of
    /// the password file. Any password-file warning is dropped; use
    /// [`lookup_password`](Self::lookup_password) to log it.
    #[must_use]
    pub fn password_for(&self, target: &Target) -> Option<Password> {
        self.lookup_password(target).password.map(|(p, _)| p)
    }

    /// Like [`password_for`](Self::password_for), also telling where the password came from
    /// and why the password file was ignored, if it was.
    #[must_use]
    pub fn lookup_password(&self, target: &Target) -> PasswordLookup {
        if let Some(p) = &self.password {
            return PasswordLookup {
                password: Some((p.clone(), PasswordSource::Explicit)),
                warning: None,
            };
        }
        let Some(path) = self.effective_passfile() else {
            return PasswordLookup::default();
        };
        match PassFile::load(&path) {
            Ok(None) => PasswordLookup::default(),
            Ok(Some(file)) => {
                let user = self.effective_user().unwrap_or_default();
                let dbname = self.effective_dbname().unwrap_or_default();
                let port = target.port().to_string();
                let password = file
                    .find(target.pgpass_host(), &port, &dbname, &user)
                    .map(|p| (p, PasswordSource::PassFile(path)));
                PasswordLookup {
                    password,
                    warning: None,
                }
            }
            Err(warning) => PasswordLookup {
                password: None,
                warning: Some(warning),
            },
        }
    }
}

fn default_target(port: u16) -> TargetAddr {
    if cfg!(unix) {
        TargetAddr::Unix {
            path: target::socket_path(target::default_socket_dir(), port),
            port,
        }
    } else {
        TargetAddr::Tcp {
            host: "localhost".to_owned(),
            hostaddr: None,
            port,
        }
    }
}

/// Splits a comma-separated list; an empty string is an empty list.
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter(move |_| !value.is_empty())
}

/// libpq's `parse_int_param`: an `int`, optionally surrounded by whitespace.
fn parse_int(value: &str) -> Option<i32> {
    let t =
        value.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\u{0b}' | '\u{0c}' | '\r'));
    t.parse().ok()
}

fn int_param(key: &str, value: &str) -> Result<i32, ConfigError> {
    parse_int(value).ok_or_else(|| ConfigError::invalid(key, value, "invalid integer value"))
}

fn duration_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

fn parse_ssl_mode(value: &str) -> Option<SslMode> {
    value.parse().ok()
}

/// `3.0`, `3.2` or `latest` (3.2), as libpq 18 accepts them.
fn parse_protocol_version(value: &str) -> Option<ProtocolVersion> {
    match value {
        "3.0" => Some(ProtocolVersion::V3_0),
        "3.2" | "latest" => Some(ProtocolVersion::V3_2),
        _ => None,
    }
}

fn parse_ssl_negotiation(value: &str) -> Option<SslNegotiation> {
    value.parse().ok()
}
