//! The authentication exchange: cleartext, MD5 and SCRAM-SHA-256(-PLUS), with the
//! `require_auth` and `channel_binding` policies enforced before any secret is sent.

use std::fmt;

use bytes::Bytes;
use walstream_auth::{
    AuthError, ChannelBindingPolicy, Mechanism, Password, ScramClient, ScramContinue,
};
use walstream_proto::{Authentication, FrontendMessage};

use crate::config::{AuthMethod, RequireAuth};
use crate::error::{Error, ErrorKind};

/// The authentication a connection completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CompletedAuth {
    /// The server let the client in without authentication (`trust`, `peer`, `cert`).
    None,
    /// Cleartext password.
    Password,
    /// MD5-hashed password.
    Md5,
    /// SCRAM-SHA-256 without channel binding.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS (channel binding to the TLS server certificate).
    ScramSha256Plus,
}

impl CompletedAuth {
    /// The `require_auth` method this corresponds to (`None` for no authentication).
    pub fn method(self) -> Option<AuthMethod> {
        match self {
            Self::None => None,
            Self::Password => Some(AuthMethod::Password),
            Self::Md5 => Some(AuthMethod::Md5),
            Self::ScramSha256 | Self::ScramSha256Plus => Some(AuthMethod::ScramSha256),
        }
    }
}

impl fmt::Display for CompletedAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Password => "password",
            Self::Md5 => "md5",
            Self::ScramSha256 => "scram-sha-256",
            Self::ScramSha256Plus => "scram-sha-256-plus",
        })
    }
}

/// What the authentication step needs from the connection.
pub(super) struct AuthContext<'a> {
    pub(super) password: Option<&'a Password>,
    pub(super) user: &'a str,
    pub(super) allowed: &'a RequireAuth,
    pub(super) policy: ChannelBindingPolicy,
    pub(super) server_end_point: Option<&'a [u8]>,
}

/// The result of handling one Authentication message.
pub(super) struct AuthOutput {
    /// A message to send.
    pub(super) reply: Option<FrontendMessage>,
    /// Authentication finished (AuthenticationOk) with this method.
    pub(super) done: Option<CompletedAuth>,
}

enum Step {
    Start,
    PasswordSent(CompletedAuth),
    ScramStarted { client: ScramClient, plus: bool },
    ScramProved { client: ScramContinue, plus: bool },
    ScramVerified { plus: bool },
    Done(CompletedAuth),
    Poisoned,
}

/// The client side of the authentication exchange.
pub(super) struct AuthState {
    step: Step,
}

impl fmt::Debug for AuthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match &self.step {
            Step::Start => "Start",
            Step::PasswordSent(_) => "PasswordSent",
            Step::ScramStarted { .. } => "ScramStarted",
            Step::ScramProved { .. } => "ScramProved",
            Step::ScramVerified { .. } => "ScramVerified",
            Step::Done(_) => "Done",
            Step::Poisoned => "Poisoned",
        };
        f.debug_tuple("AuthState").field(&s).finish()
    }
}

fn auth_error(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Auth, msg)
}

fn scram_error(e: AuthError) -> Error {
    let kind = if e.is_server_misbehaviour() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Auth
    };
    Error::with_source(kind, "SCRAM authentication failed", e)
}

impl AuthState {
    pub(super) fn new() -> Self {
        Self { step: Step::Start }
    }

    pub(super) fn completed(&self) -> Option<CompletedAuth> {
        match self.step {
            Step::Done(m) => Some(m),
            _ => None,
        }
    }

    pub(super) fn handle(
        &mut self,
        msg: Authentication,
        ctx: &AuthContext<'_>,
    ) -> Result<AuthOutput, Error> {
        let step = std::mem::replace(&mut self.step, Step::Poisoned);
        let (next, out) = Self::step(step, msg, ctx)?;
        self.step = next;
        Ok(out)
    }

    fn step(
        step: Step,
        msg: Authentication,
        ctx: &AuthContext<'_>,
    ) -> Result<(Step, AuthOutput), Error> {
        let none = AuthOutput {
            reply: None,
            done: None,
        };
        match (step, msg) {
            (Step::Start, Authentication::CleartextPassword) => {
                let password = Self::password_request(CompletedAuth::Password, ctx)?;
                let text = std::str::from_utf8(password.as_bytes()).map_err(|_| {
                    auth_error("the password is not valid UTF-8 and cannot be sent in cleartext")
                })?;
                let reply = FrontendMessage::Password(text.to_owned());
                Ok((
                    Step::PasswordSent(CompletedAuth::Password),
                    AuthOutput {
                        reply: Some(reply),
                        done: None,
                    },
                ))
            }
            (Step::Start, Authentication::Md5Password { salt }) => {
                let password = Self::password_request(CompletedAuth::Md5, ctx)?;
                let hashed =
                    walstream_auth::md5_response(ctx.user.as_bytes(), password.as_bytes(), salt);
                let reply = FrontendMessage::Password(hashed);
                Ok((
                    Step::PasswordSent(CompletedAuth::Md5),
                    AuthOutput {
                        reply: Some(reply),
                        done: None,
                    },
                ))
            }
            (Step::Start, Authentication::Sasl { mechanisms }) => {
                if !ctx.allowed.allows(AuthMethod::ScramSha256) {
                    return Err(auth_error(
                        "server requested SCRAM authentication, which require_auth does not allow",
                    ));
                }
                let offered: Vec<&str> = mechanisms.iter().map(String::as_str).collect();
                let endpoint = ctx.server_end_point;
                // Channel-binding policy is checked here, before any proof is computed or sent.
                let binding =
                    walstream_auth::negotiate(&offered, endpoint, ctx.policy).map_err(|e| {
                        Error::with_source(ErrorKind::Auth, "no acceptable SASL mechanism", e)
                    })?;
                let password = ctx.password.ok_or_else(|| {
                    auth_error("server requested SCRAM authentication but no password was provided")
                })?;
                let client = ScramClient::new(password.as_bytes(), binding);
                let plus = client.mechanism() == Mechanism::ScramSha256Plus;
                let reply = FrontendMessage::SaslInitialResponse {
                    mechanism: client.mechanism().as_str().to_owned(),
                    data: Some(Bytes::copy_from_slice(client.initial_message())),
                };
                Ok((
                    Step::ScramStarted { client, plus },
                    AuthOutput {
                        reply: Some(reply),
                        done: None,
                    },
                ))
            }
            (Step::ScramStarted { client, plus }, Authentication::SaslContinue { data }) => {
                let client = client.update(&data).map_err(scram_error)?;
                let reply = FrontendMessage::SaslResponse(Bytes::copy_from_slice(
                    client.client_final_message(),
                ));
                Ok((
                    Step::ScramProved { client, plus },
                    AuthOutput {
                        reply: Some(reply),
                        done: None,
                    },
                ))
            }
            (Step::ScramProved { client, plus }, Authentication::SaslFinal { data }) => {
                client.finish(&data).map_err(scram_error)?;
                Ok((Step::ScramVerified { plus }, none))
            }
            (
                step @ (Step::Start | Step::PasswordSent(_) | Step::ScramVerified { .. }),
                Authentication::Ok,
            ) => {
                let method = match step {
                    Step::PasswordSent(m) => m,
                    Step::ScramVerified { plus: true } => CompletedAuth::ScramSha256Plus,
                    Step::ScramVerified { plus: false } => CompletedAuth::ScramSha256,
                    _ => CompletedAuth::None,
                };
                if method == CompletedAuth::None && !ctx.allowed.allows_none() {
                    return Err(auth_error(
                        "server did not complete authentication, and require_auth does not allow \"none\"",
                    ));
                }
                if ctx.policy == ChannelBindingPolicy::Require
                    && method != CompletedAuth::ScramSha256Plus
                {
                    return Err(auth_error(
                        "channel binding required, but server authenticated the client without channel binding",
                    ));
                }
                Ok((
                    Step::Done(method),
                    AuthOutput {
                        reply: None,
                        done: Some(method),
                    },
                ))
            }
            (Step::ScramStarted { .. } | Step::ScramProved { .. }, Authentication::Ok) => {
                Err(Error::protocol(
                    "server sent AuthenticationOk before completing the SCRAM exchange",
                ))
            }
            (
                Step::Start,
                Authentication::Gss | Authentication::Sspi | Authentication::KerberosV5,
            ) => Err(Error::new(
                ErrorKind::Unsupported,
                "server requested GSSAPI/SSPI/Kerberos authentication, which walstream does not support",
            )),
            (_, other) => Err(Error::protocol(format!(
                "unexpected authentication request (code {}) at this point of the exchange",
                other.code()
            ))),
        }
    }

    /// Checks the policies for a cleartext or MD5 request and returns the password.
    fn password_request<'a>(
        method: CompletedAuth,
        ctx: &AuthContext<'a>,
    ) -> Result<&'a Password, Error> {
        let (required, what) = if method == CompletedAuth::Md5 {
            (AuthMethod::Md5, "MD5 password")
        } else {
            (AuthMethod::Password, "cleartext password")
        };
        if !ctx.allowed.allows(required) {
            return Err(auth_error(format!(
                "server requested {what} authentication, which require_auth does not allow"
            )));
        }
        if ctx.policy == ChannelBindingPolicy::Require {
            return Err(auth_error(
                "channel binding required, but server requested a password authentication without channel binding",
            ));
        }
        ctx.password
            .ok_or_else(|| auth_error("server requested a password but no password was provided"))
    }
}
