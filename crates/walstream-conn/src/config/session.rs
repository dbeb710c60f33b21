//! Deciding whether a connected server satisfies `target_session_attrs`, as libpq does after
//! authentication (PostgreSQL 14+ semantics).
//!
//! The decision uses the `default_transaction_read_only` and `in_hot_standby` values the
//! server reports in `ParameterStatus` (PostgreSQL 14 and later report both). When a needed
//! value was not reported (an older server), the verdict asks for a query, whose single text
//! result then decides:
//!
//! 1. after authentication, fill a [`ServerStatus`] from the `ParameterStatus` messages
//!    ([`ServerStatus::observe`]);
//! 2. call [`TargetSessionAttrs::verdict`] with the attrs for the current pass
//!    ([`TargetSessionAttrs::for_pass`]);
//! 3. on [`SessionVerdict::Query`], run [`SessionQuery::sql`] and feed the value of its only
//!    column to [`TargetSessionAttrs::verdict_from_query`];
//! 4. on [`SessionVerdict::Reject`], close the connection and try the next host; after the
//!    last host, if [`TargetSessionAttrs::has_fallback_pass`], go round the list once more with
//!    pass 2.

use std::fmt;

use super::TargetSessionAttrs;

/// What a server told the client about itself in `ParameterStatus` messages, as far as
/// `target_session_attrs` cares. `None` means "not reported".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerStatus {
    /// `default_transaction_read_only`.
    pub default_transaction_read_only: Option<bool>,
    /// `in_hot_standby`.
    pub in_hot_standby: Option<bool>,
}

impl ServerStatus {
    /// Records a `ParameterStatus` message; parameters other than the two tracked ones are
    /// ignored, and so is a value other than `on`/`off` (the parameter then counts as not
    /// reported, so the verdict falls back to a query).
    pub fn observe(&mut self, name: &str, value: &str) {
        let parsed = match value {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        };
        match name {
            "default_transaction_read_only" => self.default_transaction_read_only = parsed,
            "in_hot_standby" => self.in_hot_standby = parsed,
            _ => {}
        }
    }
}

/// The query to run when the reported parameters do not decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionQuery {
    /// `SHOW transaction_read_only`, answering `on` or `off`.
    TransactionReadOnly,
    /// `SELECT pg_catalog.pg_is_in_recovery()`, answering `t` or `f`.
    InRecovery,
}

impl SessionQuery {
    /// The SQL text, as libpq sends it.
    #[must_use]
    pub const fn sql(self) -> &'static str {
        match self {
            Self::TransactionReadOnly => "SHOW transaction_read_only",
            Self::InRecovery => "SELECT pg_catalog.pg_is_in_recovery()",
        }
    }
}

/// Why a server was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// `read-write` wanted, the session is read-only.
    ReadOnly,
    /// `read-only` wanted, the session is read-write.
    NotReadOnly,
    /// `primary` wanted, the server is a hot standby.
    HotStandby,
    /// `standby` wanted, the server is not a hot standby.
    NotHotStandby,
}

impl fmt::Display for SessionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadOnly => "session is read-only",
            Self::NotReadOnly => "session is not read-only",
            Self::HotStandby => "server is in hot standby mode",
            Self::NotHotStandby => "server is not in hot standby mode",
        })
    }
}

/// The outcome of checking a server against `target_session_attrs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SessionVerdict {
    /// Use this connection.
    Accept,
    /// Close it and try the next host.
    Reject(SessionRejection),
    /// Run this query first and pass its result to
    /// [`TargetSessionAttrs::verdict_from_query`].
    Query(SessionQuery),
}

/// The answer to a [`SessionQuery`] was not one of the values PostgreSQL returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected result {value:?} from \"{}\"", .query.sql())]
pub struct SessionQueryError {
    /// The query that was run.
    pub query: SessionQuery,
    /// What it returned (a server's answer, never a secret).
    pub value: String,
}

impl TargetSessionAttrs {
    /// The attrs to apply on pass `pass` (1 or 2) over the host list: `prefer-standby` means
    /// `standby` on the first pass and `any` on the second; every other value is the same on
    /// both.
    #[must_use]
    pub const fn for_pass(self, pass: u8) -> Self {
        match self {
            Self::PreferStandby if pass <= 1 => Self::Standby,
            Self::PreferStandby => Self::Any,
            other => other,
        }
    }

    /// Whether a second pass over the host list follows a first pass that found no
    /// acceptable server (only `prefer-standby`).
    #[must_use]
    pub const fn has_fallback_pass(self) -> bool {
        matches!(self, Self::PreferStandby)
    }

    /// Decides from the reported parameters. Call on the value returned by
    /// [`for_pass`](Self::for_pass); `prefer-standby` itself is treated as its first pass.
    pub const fn verdict(self, status: &ServerStatus) -> SessionVerdict {
        let (dtro, hs) = (status.default_transaction_read_only, status.in_hot_standby);
        let attrs = self.for_pass(1);
        match attrs {
            Self::Any | Self::PreferStandby => SessionVerdict::Accept,
            Self::ReadWrite | Self::ReadOnly => match (dtro, hs) {
                (Some(d), Some(h)) => attrs.read_only_verdict(d || h),
                _ => SessionVerdict::Query(SessionQuery::TransactionReadOnly),
            },
            Self::Primary | Self::Standby => match hs {
                Some(h) => attrs.standby_verdict(h),
                None => SessionVerdict::Query(SessionQuery::InRecovery),
            },
        }
    }

    /// Decides from the text value of the single column of [`SessionQuery::sql`].
    ///
    /// # Errors
    ///
    /// [`SessionQueryError`] if the value is not `on`/`off` (for `SHOW transaction_read_only`)
    /// or `t`/`f` (for `pg_is_in_recovery()`).
    pub fn verdict_from_query(
        self,
        query: SessionQuery,
        value: &str,
    ) -> Result<SessionVerdict, SessionQueryError> {
        let parsed = match (query, value) {
            (SessionQuery::TransactionReadOnly, "on") | (SessionQuery::InRecovery, "t") => true,
            (SessionQuery::TransactionReadOnly, "off") | (SessionQuery::InRecovery, "f") => false,
            _ => {
                return Err(SessionQueryError {
                    query,
                    value: value.to_owned(),
                });
            }
        };
        let attrs = self.for_pass(1);
        Ok(match (attrs, query) {
            (Self::ReadWrite | Self::ReadOnly, SessionQuery::TransactionReadOnly) => {
                attrs.read_only_verdict(parsed)
            }
            (Self::Primary | Self::Standby, SessionQuery::InRecovery) => {
                attrs.standby_verdict(parsed)
            }
            // A query this setting does not ask for: nothing to object to.
            _ => SessionVerdict::Accept,
        })
    }

    const fn read_only_verdict(self, read_only: bool) -> SessionVerdict {
        match (self, read_only) {
            (Self::ReadWrite, true) => SessionVerdict::Reject(SessionRejection::ReadOnly),
            (Self::ReadOnly, false) => SessionVerdict::Reject(SessionRejection::NotReadOnly),
            _ => SessionVerdict::Accept,
        }
    }

    const fn standby_verdict(self, standby: bool) -> SessionVerdict {
        match (self, standby) {
            (Self::Primary, true) => SessionVerdict::Reject(SessionRejection::HotStandby),
            (Self::Standby, false) => SessionVerdict::Reject(SessionRejection::NotHotStandby),
            _ => SessionVerdict::Accept,
        }
    }
}
