//! SASL mechanism names, channel-binding choices and the negotiation helper.

use std::fmt;
use std::str::FromStr;

use crate::AuthError;

/// A SASL mechanism this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// `SCRAM-SHA-256` (RFC 7677), without channel binding.
    ScramSha256,
    /// `SCRAM-SHA-256-PLUS`, with `tls-server-end-point` channel binding (RFC 5929).
    ScramSha256Plus,
}

impl Mechanism {
    /// The mechanism name as sent in `SASLInitialResponse`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }

    /// Parses a mechanism name as listed in `AuthenticationSASL`; `None` for mechanisms this
    /// crate does not implement.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-256-PLUS" => Some(Self::ScramSha256Plus),
            _ => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The client's channel-binding policy, libpq's `channel_binding` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChannelBindingPolicy {
    /// Never use channel binding (`disable`).
    Disable,
    /// Use channel binding when both sides can (`prefer`, the default).
    #[default]
    Prefer,
    /// Fail unless channel binding is used (`require`).
    Require,
}

/// Error returned when parsing a [`ChannelBindingPolicy`] fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel_binding value {0:?}: expected disable, prefer or require")]
pub struct ParseChannelBindingPolicyError(String);

impl FromStr for ChannelBindingPolicy {
    type Err = ParseChannelBindingPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            other => Err(ParseChannelBindingPolicyError(other.to_owned())),
        }
    }
}

impl fmt::Display for ChannelBindingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
        })
    }
}

/// The channel-binding flag of the GS2 header (RFC 5802 §7) and its data.
#[derive(Clone, PartialEq, Eq)]
pub enum ChannelBinding {
    /// `n,,`: the client does not support (or does not want) channel binding.
    NotSupported,
    /// `y,,`: the client supports channel binding but the server did not offer it. A server
    /// that does support it treats this as a downgrade attack and fails the exchange.
    NotOfferedByServer,
    /// `p=tls-server-end-point,,`: bind to the TLS connection with this hash of the server's
    /// leaf certificate (RFC 5929 §4; computed by `walstream-tls`). Selects
    /// `SCRAM-SHA-256-PLUS`.
    TlsServerEndPoint(Vec<u8>),
}

impl ChannelBinding {
    /// The GS2 header this choice produces.
    #[must_use]
    pub const fn gs2_header(&self) -> &'static str {
        match self {
            Self::NotSupported => "n,,",
            Self::NotOfferedByServer => "y,,",
            Self::TlsServerEndPoint(_) => "p=tls-server-end-point,,",
        }
    }

    /// The mechanism that goes with this choice.
    #[must_use]
    pub const fn mechanism(&self) -> Mechanism {
        match self {
            Self::TlsServerEndPoint(_) => Mechanism::ScramSha256Plus,
            Self::NotSupported | Self::NotOfferedByServer => Mechanism::ScramSha256,
        }
    }

    /// The bytes whose base64 form is the `c=` attribute of the client-final-message: the GS2
    /// header followed by the channel-binding data, if any.
    #[must_use]
    pub fn cbind_input(&self) -> Vec<u8> {
        let header = self.gs2_header().as_bytes();
        match self {
            Self::TlsServerEndPoint(hash) => {
                let mut v = Vec::with_capacity(header.len() + hash.len());
                v.extend_from_slice(header);
                v.extend_from_slice(hash);
                v
            }
            Self::NotSupported | Self::NotOfferedByServer => header.to_vec(),
        }
    }
}

impl fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSupported => f.write_str("NotSupported"),
            Self::NotOfferedByServer => f.write_str("NotOfferedByServer"),
            Self::TlsServerEndPoint(h) => write!(f, "TlsServerEndPoint({} bytes)", h.len()),
        }
    }
}

/// Picks the SASL mechanism to use from the server's `AuthenticationSASL` list.
///
/// `binding_available` is true when the connection uses TLS *and* the
/// `tls-server-end-point` hash of the server certificate could be computed. Unknown
/// mechanism names are ignored.
///
/// * `SCRAM-SHA-256-PLUS` is chosen when offered, available and not disabled;
/// * otherwise `SCRAM-SHA-256` when offered, unless the policy is
///   [`Require`](ChannelBindingPolicy::Require);
/// * otherwise an error.
///
/// # Errors
///
/// [`AuthError::ChannelBindingRequired`] when the policy requires channel binding and it is
/// not possible, [`AuthError::NoSupportedMechanism`] when nothing usable is offered.
pub fn select_mechanism(
    offered: &[&str],
    binding_available: bool,
    policy: ChannelBindingPolicy,
) -> Result<Mechanism, AuthError> {
    let has = |m: Mechanism| offered.iter().any(|o| Mechanism::from_name(o) == Some(m));
    let plus = has(Mechanism::ScramSha256Plus);
    if plus && binding_available && policy != ChannelBindingPolicy::Disable {
        return Ok(Mechanism::ScramSha256Plus);
    }
    if policy == ChannelBindingPolicy::Require {
        return Err(AuthError::ChannelBindingRequired {
            reason: if !binding_available {
                "the connection has no TLS server certificate hash to bind to"
            } else {
                "the server did not offer SCRAM-SHA-256-PLUS"
            },
        });
    }
    if has(Mechanism::ScramSha256) {
        return Ok(Mechanism::ScramSha256);
    }
    Err(AuthError::NoSupportedMechanism {
        offered: offered.iter().map(|s| (*s).to_owned()).collect(),
    })
}

/// Picks the mechanism (see [`select_mechanism`]) and the matching [`ChannelBinding`].
///
/// `server_end_point` is the `tls-server-end-point` hash of the server certificate when the
/// connection uses TLS and the hash could be computed. When the client could bind but the
/// server offered only `SCRAM-SHA-256`, the GS2 flag is `y` (as libpq does), which lets a
/// server that really supports channel binding detect a downgrade.
///
/// # Errors
///
/// As [`select_mechanism`].
pub fn negotiate(
    offered: &[&str],
    server_end_point: Option<&[u8]>,
    policy: ChannelBindingPolicy,
) -> Result<ChannelBinding, AuthError> {
    let hash = server_end_point.filter(|h| !h.is_empty());
    match select_mechanism(offered, hash.is_some(), policy)? {
        Mechanism::ScramSha256Plus => match hash {
            Some(h) => Ok(ChannelBinding::TlsServerEndPoint(h.to_vec())),
            // select_mechanism only returns PLUS when a hash is available.
            None => Err(AuthError::InvalidChannelBinding),
        },
        Mechanism::ScramSha256 => {
            if hash.is_some() && policy != ChannelBindingPolicy::Disable {
                Ok(ChannelBinding::NotOfferedByServer)
            } else {
                Ok(ChannelBinding::NotSupported)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[&str] = &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"];
    const PLAIN: &[&str] = &["SCRAM-SHA-256"];

    #[test]
    fn selection_table() {
        use ChannelBindingPolicy::*;
        use Mechanism::*;
        type Case<'a> = (
            &'a [&'a str],
            bool,
            ChannelBindingPolicy,
            Result<Mechanism, ()>,
        );
        let cases: &[Case<'_>] = &[
            (BOTH, true, Prefer, Ok(ScramSha256Plus)),
            (BOTH, true, Require, Ok(ScramSha256Plus)),
            (BOTH, true, Disable, Ok(ScramSha256)),
            (BOTH, false, Prefer, Ok(ScramSha256)),
            (BOTH, false, Require, Err(())),
            (PLAIN, true, Prefer, Ok(ScramSha256)),
            (PLAIN, true, Require, Err(())),
            (PLAIN, false, Disable, Ok(ScramSha256)),
            (&["SCRAM-SHA-256-PLUS"], false, Prefer, Err(())),
            (&["OAUTHBEARER"], true, Prefer, Err(())),
            (&[], false, Prefer, Err(())),
        ];
        for (offered, avail, policy, want) in cases {
            let got = select_mechanism(offered, *avail, *policy).map_err(|_| ());
            assert_eq!(&got, want, "{offered:?} avail={avail} {policy:?}");
        }
    }

    #[test]
    fn selection_errors_are_typed() {
        let e = select_mechanism(PLAIN, true, ChannelBindingPolicy::Require).unwrap_err();
        assert!(matches!(e, AuthError::ChannelBindingRequired { .. }));
        assert!(!e.is_server_misbehaviour());
        let e = select_mechanism(&["GSSAPI"], false, ChannelBindingPolicy::Prefer).unwrap_err();
        assert_eq!(
            e,
            AuthError::NoSupportedMechanism {
                offered: vec!["GSSAPI".into()]
            }
        );
    }

    #[test]
    fn negotiate_picks_gs2_flag() {
        let hash = [7u8; 32];
        let p = ChannelBindingPolicy::Prefer;
        assert_eq!(
            negotiate(BOTH, Some(&hash), p).unwrap(),
            ChannelBinding::TlsServerEndPoint(hash.to_vec())
        );
        assert_eq!(
            negotiate(PLAIN, Some(&hash), p).unwrap(),
            ChannelBinding::NotOfferedByServer
        );
        assert_eq!(
            negotiate(PLAIN, None, p).unwrap(),
            ChannelBinding::NotSupported
        );
        assert_eq!(
            negotiate(BOTH, None, p).unwrap(),
            ChannelBinding::NotSupported
        );
        assert_eq!(
            negotiate(BOTH, Some(&hash), ChannelBindingPolicy::Disable).unwrap(),
            ChannelBinding::NotSupported
        );
        // An empty hash counts as "not available".
        assert_eq!(
            negotiate(BOTH, Some(&[]), p).unwrap(),
            ChannelBinding::NotSupported
        );
    }

    #[test]
    fn policy_from_str_round_trip() {
        for p in [
            ChannelBindingPolicy::Disable,
            ChannelBindingPolicy::Prefer,
            ChannelBindingPolicy::Require,
        ] {
            assert_eq!(p.to_string().parse::<ChannelBindingPolicy>().unwrap(), p);
        }
        assert!("Require".parse::<ChannelBindingPolicy>().is_err());
    }

    #[test]
    fn cbind_input_layout() {
        assert_eq!(ChannelBinding::NotSupported.cbind_input(), b"n,,");
        assert_eq!(ChannelBinding::NotOfferedByServer.cbind_input(), b"y,,");
        let mut want = b"p=tls-server-end-point,,".to_vec();
        want.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            ChannelBinding::TlsServerEndPoint(vec![1, 2, 3]).cbind_input(),
            want
        );
        assert_eq!(
            ChannelBinding::NotSupported.mechanism(),
            Mechanism::ScramSha256
        );
        assert_eq!(
            ChannelBinding::TlsServerEndPoint(vec![1])
                .mechanism()
                .as_str(),
            "SCRAM-SHA-256-PLUS"
        );
    }
}
