//! `sslmode` and `sslnegotiation`.

use std::fmt;
use std::str::FromStr;

/// libpq's `sslmode`: whether TLS is used and how the server certificate is verified.
///
/// Ordered from weakest to strongest, so `mode >= SslMode::Require` means "TLS is mandatory".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Try without TLS first, then with TLS (no verification unless a root file exists).
    Allow,
    /// Try TLS first, then without (libpq's default).
    #[default]
    Prefer,
    /// TLS only. Without a root certificate file the server is *not* verified; with one the
    /// chain is verified as in `verify-ca` (libpq's backwards-compatible behaviour).
    Require,
    /// TLS only; the certificate chain must lead to a trusted root, the host name is not
    /// checked.
    VerifyCa,
    /// TLS only; chain and host name are verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is acceptable.
    #[must_use]
    pub const fn allows_plaintext(self) -> bool {
        matches!(self, Self::Disable | Self::Allow | Self::Prefer)
    }

    /// Whether the server certificate must be verified against trusted roots.
    #[must_use]
    pub const fn requires_verification(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a `sslmode` or `sslnegotiation` value is not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {parameter} value {value:?}")]
pub struct ParseModeError {
    parameter: &'static str,
    value: String,
}

impl FromStr for SslMode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(ParseModeError {
                    parameter: "sslmode",
                    value: s.to_owned(),
                });
            }
        })
    }
}

/// libpq's `sslnegotiation` (PostgreSQL 17+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SslNegotiation {
    /// Send `SSLRequest` and start TLS after the server's `S` (all server versions).
    #[default]
    Postgres,
    /// Start the TLS handshake immediately, with ALPN `postgresql` (PostgreSQL 17+ servers).
    /// Requires `sslmode=require` or stronger.
    Direct,
}

impl SslNegotiation {
    /// The libpq spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Direct => "direct",
        }
    }
}

impl fmt::Display for SslNegotiation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslNegotiation {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "postgres" => Ok(Self::Postgres),
            "direct" => Ok(Self::Direct),
            _ => Err(ParseModeError {
                parameter: "sslnegotiation",
                value: s.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_names_round_trip() {
        let all = [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ];
        for m in all {
            assert_eq!(m.as_str().parse::<SslMode>().unwrap(), m);
        }
        for bad in ["", "VERIFY-FULL", "verify_full", "true"] {
            assert!(bad.parse::<SslMode>().is_err(), "{bad}");
        }
        assert!(SslMode::Require > SslMode::Prefer);
        assert!(SslMode::Prefer.allows_plaintext() && !SslMode::Require.allows_plaintext());
        assert!(SslMode::VerifyCa.requires_verification());
        assert!(!SslMode::Require.requires_verification());
        assert_eq!(SslMode::default(), SslMode::Prefer);
    }

    #[test]
    fn negotiation_names() {
        assert_eq!(
            "direct".parse::<SslNegotiation>().unwrap(),
            SslNegotiation::Direct
        );
        assert_eq!(
            "postgres".parse::<SslNegotiation>().unwrap(),
            SslNegotiation::Postgres
        );
        let e = "requiredirect".parse::<SslNegotiation>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid sslnegotiation value \"requiredirect\""
        );
    }
}
