//! The error type of the authentication layer.

/// Why an authentication exchange failed.
///
/// The variants fall into two groups, told apart by [`AuthError::is_server_misbehaviour`]:
///
/// * the server broke the protocol or failed to prove it knows the password
///   ([`Protocol`](Self::Protocol), [`ServerError`](Self::ServerError),
///   [`BadServerSignature`](Self::BadServerSignature), [`NonceMismatch`](Self::NonceMismatch),
///   [`IterationsTooHigh`](Self::IterationsTooHigh));
/// * the client's configuration cannot be satisfied, or the caller misused the API
///   ([`NoSupportedMechanism`](Self::NoSupportedMechanism),
///   [`ChannelBindingRequired`](Self::ChannelBindingRequired),
///   [`InvalidNonce`](Self::InvalidNonce), [`InvalidChannelBinding`](Self::InvalidChannelBinding)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A server message could not be parsed or violates RFC 5802.
    #[error("malformed {context} from server: {reason}")]
    Protocol {
        /// Which message was being parsed, e.g. `"SCRAM server-first-message"`.
        context: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The server sent a SCRAM `e=` error attribute.
    #[error("server rejected SCRAM authentication: {code}")]
    ServerError {
        /// The value of the `e=` attribute, e.g. `invalid-proof`.
        code: String,
    },
    /// The server's signature did not match: the server does not know the password (or a
    /// man in the middle is relaying the exchange).
    #[error(
        "SCRAM server signature does not match; the server could not prove it knows the password"
    )]
    BadServerSignature,
    /// The combined nonce sent by the server does not start with the client's nonce, or adds
    /// nothing to it.
    #[error("SCRAM server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The server asked for more PBKDF2 iterations than [`ScramLimits`](crate::ScramLimits)
    /// allows.
    #[error("SCRAM iteration count {requested} exceeds the configured maximum {max}")]
    IterationsTooHigh {
        /// The iteration count the server asked for (saturated at `u64::MAX`).
        requested: u64,
        /// The configured maximum.
        max: u32,
    },
    /// None of the SASL mechanisms offered by the server is supported (or allowed by the
    /// channel-binding policy).
    #[error("server offered no usable SASL mechanism (offered: {offered:?})")]
    NoSupportedMechanism {
        /// The mechanisms the server offered.
        offered: Vec<String>,
    },
    /// The policy requires channel binding but it cannot be used.
    #[error("channel binding is required but {reason}")]
    ChannelBindingRequired {
        /// Why channel binding is not possible.
        reason: &'static str,
    },
    /// A nonce passed to [`ScramClient::with_nonce`](crate::ScramClient::with_nonce) is empty
    /// or contains characters outside printable ASCII or a comma.
    #[error("invalid SCRAM client nonce: must be non-empty printable ASCII without ','")]
    InvalidNonce,
    /// Channel-binding data passed by the caller is empty.
    #[error("channel binding data must not be empty")]
    InvalidChannelBinding,
}

impl AuthError {
    /// Returns `true` when the error was caused by the server (protocol violation, failed
    /// proof, hostile parameters), `false` when it stems from the client's configuration or
    /// from API misuse.
    #[must_use]
    pub fn is_server_misbehaviour(&self) -> bool {
        matches!(
            self,
            Self::Protocol { .. }
                | Self::ServerError { .. }
                | Self::BadServerSignature
                | Self::NonceMismatch
                | Self::IterationsTooHigh { .. }
        )
    }

    pub(crate) const fn protocol(context: &'static str, reason: &'static str) -> Self {
        Self::Protocol { context, reason }
    }
}
