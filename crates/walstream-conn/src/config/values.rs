//! Typed values of the connection parameters that take a keyword from a fixed set.

use std::fmt;

/// The `replication` parameter: which kind of walsender the server starts.
///
/// See the PostgreSQL documentation, "Streaming Replication Protocol" (`protocol-replication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReplicationMode {
    /// An ordinary backend (`replication=false`, the default).
    #[default]
    Off,
    /// A physical walsender (`replication=true`, `on`, `yes`, `1`): `IDENTIFY_SYSTEM`,
    /// `START_REPLICATION [PHYSICAL]`, `BASE_BACKUP`; no SQL.
    Physical,
    /// A logical walsender connected to `dbname` (`replication=database`): replication commands
    /// and SQL.
    Logical,
}

impl ReplicationMode {
    /// Parses a `replication` value the way the server does: `database`, or a boolean in any of
    /// the spellings `parse_bool` accepts (`true`/`false`, `on`/`off`, `yes`/`no`, `1`/`0` and
    /// their unambiguous prefixes), case-insensitively.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("database") {
            return Some(Self::Logical);
        }
        parse_pg_bool(value).map(|on| if on { Self::Physical } else { Self::Off })
    }

    /// The value sent in the StartupMessage, `None` for [`Off`](Self::Off) (the parameter is
    /// then left out).
    #[must_use]
    pub const fn startup_value(self) -> Option<&'static str> {
        match self {
            Self::Off => None,
            Self::Physical => Some("true"),
            Self::Logical => Some("database"),
        }
    }
}

/// The server's `parse_bool`: `true`/`false`, `yes`/`no` and unique prefixes of them, `on`/`off`
/// (`of` and `off` needed to be told from `on`), `1`/`0`; case-insensitive.
fn parse_pg_bool(value: &str) -> Option<bool> {
    let v = value.to_ascii_lowercase();
    let prefix_of = |word: &str, min: usize| v.len() >= min && word.starts_with(v.as_str());
    if prefix_of("true", 1) || prefix_of("yes", 1) || v == "on" || v == "1" {
        Some(true)
    } else if prefix_of("false", 1) || prefix_of("no", 1) || prefix_of("off", 2) || v == "0" {
        Some(false)
    } else {
        None
    }
}

/// The `target_session_attrs` parameter: which servers of a host list are acceptable.
///
/// See the PostgreSQL documentation, "Parameter Key Words" (`libpq-connect`). Use
/// [`TargetSessionAttrs::verdict`] to apply it to a freshly authenticated connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetSessionAttrs {
    /// Any server (`any`, the default).
    #[default]
    Any,
    /// A server accepting read-write transactions by default (`read-write`).
    ReadWrite,
    /// A server not accepting read-write transactions by default (`read-only`).
    ReadOnly,
    /// A server not in hot standby mode (`primary`).
    Primary,
    /// A server in hot standby mode (`standby`).
    Standby,
    /// A standby if any host in the list is one, else any server (`prefer-standby`).
    PreferStandby,
}

impl TargetSessionAttrs {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            _ => return None,
        })
    }

    /// The libpq keyword.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `load_balance_hosts` parameter (PostgreSQL 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalanceHosts {
    /// Try hosts (and the addresses each resolves to) in order (the default).
    #[default]
    Disable,
    /// Try hosts in a random order, and the addresses of each host in a random order too.
    Random,
}

impl LoadBalanceHosts {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        match value {
            "disable" => Some(Self::Disable),
            "random" => Some(Self::Random),
            _ => None,
        }
    }

    /// The libpq keyword.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Random => "random",
        }
    }
}

/// The `gssencmode` parameter. walstream has no GSSAPI support, so the only accepted values
/// are `disable` and `prefer` (which then never finds GSSAPI and goes on without it);
/// `require` is rejected when the configuration is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GssEncMode {
    /// Never try GSSAPI encryption.
    Disable,
    /// Try GSSAPI encryption if available (it never is here), libpq's default.
    #[default]
    Prefer,
}

impl GssEncMode {
    /// The libpq keyword.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
        }
    }
}

/// An authentication method a server may ask for, as named by `require_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// `AuthenticationCleartextPassword` (`password`).
    Password,
    /// `AuthenticationMD5Password` (`md5`).
    Md5,
    /// GSSAPI (`gss`); walstream never completes it but the policy can name it.
    Gss,
    /// SSPI (`sspi`); walstream never completes it but the policy can name it.
    Sspi,
    /// SASL `SCRAM-SHA-256` or `SCRAM-SHA-256-PLUS` (`scram-sha-256`).
    ScramSha256,
}

impl AuthMethod {
    pub(crate) const ALL: [Self; 5] = [
        Self::Password,
        Self::Md5,
        Self::Gss,
        Self::Sspi,
        Self::ScramSha256,
    ];

    /// The `require_auth` keyword.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::Gss => "gss",
            Self::Sspi => "sspi",
            Self::ScramSha256 => "scram-sha-256",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Password => 0x01,
            Self::Md5 => 0x02,
            Self::Gss => 0x04,
            Self::Sspi => 0x08,
            Self::ScramSha256 => 0x10,
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `require_auth` parameter (PostgreSQL 16): which authentication requests from the server
/// the client answers.
///
/// A list of methods (`password`, `md5`, `gss`, `sspi`, `scram-sha-256`, `none`) allows only
/// those; a list of negated methods (`!md5,!password`) allows all others. `none` is about a
/// server that lets the client in without asking for any authentication: allowed by default
/// and by a positive list naming `none`, refused by a positive list without it or by `!none`.
/// Positive and negative entries cannot be mixed, and an entry cannot repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequireAuth {
    allowed: u8,
    allow_none: bool,
}

impl Default for RequireAuth {
    fn default() -> Self {
        Self::ANY
    }
}

impl RequireAuth {
    /// The default: every method, and no authentication at all, is accepted.
    pub const ANY: Self = Self {
        allowed: 0x1f,
        allow_none: true,
    };

    /// Parses a `require_auth` list; the error is the reason, for
    /// [`ConfigError::InvalidValue`](crate::config::ConfigError::InvalidValue).
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Ok(Self::ANY);
        }
        let mut negated: Option<bool> = None;
        let mut seen: u8 = 0;
        let mut none_seen = false;
        for raw in value.split(',') {
            let (neg, name) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw),
            };
            match negated {
                None => negated = Some(neg),
                Some(prev) if prev != neg => {
                    return Err(if neg {
                        format!(
                            "negative require_auth method \"{raw}\" cannot be mixed with \
                             non-negative methods"
                        )
                    } else {
                        format!(
                            "require_auth method \"{raw}\" cannot be mixed with negative methods"
                        )
                    });
                }
                Some(_) => {}
            }
            if name == "none" {
                if none_seen {
                    return Err(format!(
                        "require_auth method \"{name}\" is specified more than once"
                    ));
                }
                none_seen = true;
                continue;
            }
            let Some(method) = AuthMethod::ALL.into_iter().find(|m| m.as_str() == name) else {
                return Err(format!("invalid require_auth method: \"{name}\""));
            };
            if seen & method.bit() != 0 {
                return Err(format!(
                    "require_auth method \"{name}\" is specified more than once"
                ));
            }
            seen |= method.bit();
        }
        Ok(if negated == Some(true) {
            Self {
                allowed: Self::ANY.allowed & !seen,
                allow_none: !none_seen,
            }
        } else {
            Self {
                allowed: seen,
                allow_none: none_seen,
            }
        })
    }

    /// Whether the client may answer a request for `method`.
    #[must_use]
    pub const fn allows(&self, method: AuthMethod) -> bool {
        self.allowed & method.bit() != 0
    }

    /// Whether the server may let the client in (`AuthenticationOk`) without having asked for
    /// any authentication.
    #[must_use]
    pub const fn allows_none(&self) -> bool {
        self.allow_none
    }

    /// Whether this is the default policy (everything allowed).
    #[must_use]
    pub const fn is_any(&self) -> bool {
        self.allowed == Self::ANY.allowed && self.allow_none
    }
}

impl fmt::Display for RequireAuth {
    /// A positive list equivalent to this policy (e.g. `scram-sha-256,none`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut item = |f: &mut fmt::Formatter<'_>, s: &str| {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(s)
        };
        for m in AuthMethod::ALL {
            if self.allows(m) {
                item(f, m.as_str())?;
            }
        }
        if self.allow_none {
            item(f, "none")?;
        }
        Ok(())
    }
}

/// TCP keepalive settings (`keepalives`, `keepalives_idle`, `keepalives_interval`,
/// `keepalives_count`). `None` leaves the operating system's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeepaliveConfig {
    /// Whether `SO_KEEPALIVE` is set (`keepalives`, default on).
    pub enabled: bool,
    /// Idle time before the first probe (`keepalives_idle`, seconds).
    pub idle: Option<std::time::Duration>,
    /// Time between probes (`keepalives_interval`, seconds).
    pub interval: Option<std::time::Duration>,
    /// Unanswered probes before the connection is dropped (`keepalives_count`).
    pub count: Option<u32>,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle: None,
            interval: None,
            count: None,
        }
    }
}
