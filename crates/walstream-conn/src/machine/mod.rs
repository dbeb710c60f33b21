//! The sans-IO connection core.
//!
//! [`Connection`] holds the whole protocol state of one PostgreSQL connection — TLS
//! negotiation (`SSLRequest`), startup, authentication, the simple-query cycle, COPY OUT,
//! COPY IN (only for a query sent with [`Connection::send_copy_in_query`]; any other COPY IN
//! is refused with CopyFail) and COPY BOTH — without touching a socket or a clock. A driver (the tokio [`Client`](crate::Client)
//! or a test) moves bytes and time in and out of it:
//!
//! 1. Read bytes from the transport and pass them to [`Connection::handle_input`] (or read
//!    straight into [`Connection::recv_buffer`] and call [`Connection::process_input`]).
//! 2. Drain [`Connection::poll_event`] until it returns `None` and act on the events; in
//!    particular [`Event::StartTls`] asks the driver to run the TLS handshake now and report
//!    the outcome with [`Connection::tls_established`].
//! 3. Drain [`Connection::poll_transmit`] into the transport whenever it returns `true`.
//! 4. Sleep until [`Connection::poll_timeout`] at most, then call
//!    [`Connection::handle_timeout`] with the current time.
//!
//! Errors are sticky: after any method returns an error the connection is failed and every
//! later call returns an error of kind [`ErrorKind::Closed`].

mod auth;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use walstream_auth::{ChannelBindingPolicy, Password};
use walstream_proto::{
    BackendMessage, CopyResponse, DataRow, FieldDescription, Framer, FrontendMessage,
    ProtocolVersion, StartupMessage, StartupPacket, TransactionStatus,
};
use zeroize::Zeroize;

use crate::config::RequireAuth;
use crate::error::{DbError, Error, ErrorKind};
use auth::AuthState;
pub use auth::CompletedAuth;

/// How the connection asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRequest {
    /// No TLS: the startup message is the first thing sent.
    Disable,
    /// Send `SSLRequest` first; if the server answers `N`, continue in plaintext unless
    /// `required`.
    Negotiate {
        /// Fail when the server declines TLS.
        required: bool,
    },
    /// Start the TLS handshake immediately (`sslnegotiation=direct`, PostgreSQL 17+).
    Direct,
}

/// Everything the core needs to start a connection.
#[derive(Debug, Clone)]
pub struct StartupSettings {
    /// The `StartupMessage` parameters (`user`, `database`, `replication`, ...), in order.
    pub params: Vec<(String, String)>,
    /// The password, if one is known (explicit or from the password file).
    pub password: Option<Password>,
    /// How to ask for TLS.
    pub tls: TlsRequest,
    /// The `channel_binding` policy.
    pub channel_binding: ChannelBindingPolicy,
    /// The authentication methods `require_auth` allows.
    pub require_auth: RequireAuth,
    /// The largest backend message body accepted.
    pub max_message_size: usize,
    /// The protocol version requested in the startup message (`max_protocol_version`).
    pub protocol_version: ProtocolVersion,
    /// The oldest version accepted when the server negotiates down
    /// (`min_protocol_version`).
    pub min_protocol_version: ProtocolVersion,
}

impl StartupSettings {
    /// Settings with the given startup parameters, no password, no TLS, channel binding
    /// `prefer`, every authentication method allowed, the default message size limit and
    /// protocol 3.0.
    pub fn new(params: Vec<(String, String)>) -> Self {
        Self {
            params,
            password: None,
            tls: TlsRequest::Disable,
            channel_binding: ChannelBindingPolicy::Prefer,
            require_auth: RequireAuth::ANY,
            max_message_size: Framer::DEFAULT_MAX_MESSAGE_SIZE,
            protocol_version: ProtocolVersion::V3_0,
            min_protocol_version: ProtocolVersion::V3_0,
        }
    }

    fn user(&self) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == "user")
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The process id and secret key a cancel request needs (4 bytes of key in protocol 3.0,
/// up to 256 in 3.2).
#[derive(Clone, PartialEq, Eq)]
pub struct BackendKey {
    /// Backend process id.
    pub process_id: i32,
    /// Secret key (never printed).
    pub secret_key: Bytes,
}

impl std::fmt::Debug for BackendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKey")
            .field("process_id", &self.process_id)
            .finish_non_exhaustive()
    }
}

/// Something the driver must know about or act on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Run the TLS handshake on the transport now, then call
    /// [`Connection::tls_established`]. Nothing may be read before the handshake.
    StartTls,
    /// The server answered `N` to `SSLRequest` and TLS was optional: continuing in
    /// plaintext.
    TlsDeclined,
    /// Authentication succeeded with this method.
    Authenticated(CompletedAuth),
    /// Startup finished: the connection is idle and ready for queries.
    Connected,
    /// A run-time parameter's value was reported.
    ParameterStatus {
        /// Name.
        name: String,
        /// Value.
        value: String,
    },
    /// A notice (warning, info) from the server (boxed: the error fields are large and
    /// rare, and every event is moved several times per message).
    Notice(Box<DbError>),
    /// The columns of the rows that follow.
    RowDescription(Arc<[FieldDescription]>),
    /// One row of the current result set.
    DataRow(DataRow),
    /// A statement finished with this command tag.
    CommandComplete(String),
    /// The query string was empty.
    EmptyQuery,
    /// The current query failed; a [`Event::ReadyForQuery`] follows (boxed, like
    /// [`Event::Notice`]).
    QueryError(Box<DbError>),
    /// The query cycle ended; the connection is idle again.
    ReadyForQuery(TransactionStatus),
    /// COPY BOTH started (streaming replication).
    CopyBoth(CopyResponse),
    /// COPY OUT started (e.g. `BASE_BACKUP`).
    CopyOut(CopyResponse),
    /// COPY IN started (`COPY ... FROM STDIN`, `UPLOAD_MANIFEST`) for a query sent with
    /// [`Connection::send_copy_in_query`]: send [`Connection::send_copy_data`], then
    /// [`Connection::send_copy_done`] or [`Connection::send_copy_fail`].
    CopyIn(CopyResponse),
    /// A COPY data message from the server.
    CopyData(Bytes),
    /// The server ended its COPY data.
    CopyDone,
}

// Events are moved through a queue and a `Result` on every message: keep them small (the
// large, rare error fields are boxed).
const _: () = assert!(size_of::<Event>() <= 64);

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// `SSLRequest` sent, waiting for the one-byte answer.
    SslRequested,
    /// The driver is running the TLS handshake.
    TlsHandshake,
    /// Startup message sent, authenticating.
    Authenticating,
    /// Authenticated; waiting for the first `ReadyForQuery`.
    AwaitingReady,
    /// Idle: a query may be sent.
    Idle,
    /// A simple query is running.
    Query,
    /// In COPY BOTH mode.
    CopyBoth,
    /// In COPY OUT mode.
    CopyOut,
    /// In COPY IN mode: the client sends data.
    CopyIn,
    /// Terminated by the client.
    Closed,
    /// Failed after an error.
    Failed,
}

/// The sans-IO state machine of one connection. See the [module docs](self) for the call
/// order.
#[derive(Debug)]
pub struct Connection {
    settings: StartupSettings,
    phase: Phase,
    framer: Framer,
    recv: BytesMut,
    send: BytesMut,
    events: VecDeque<Event>,
    params: Vec<(String, String)>,
    backend_key: Option<BackendKey>,
    auth: AuthState,
    tls_active: bool,
    server_end_point: Option<Vec<u8>>,
    deadline: Option<Instant>,
    /// In COPY BOTH/OUT: the server has sent CopyDone.
    server_copy_done: bool,
    /// In COPY BOTH: the client has sent CopyDone.
    client_copy_done: bool,
    /// The server left COPY BOTH with CommandComplete and no CopyDone (a walsender shutting
    /// down) or with an ErrorResponse (e.g. a logical walsender's output plugin failing), or
    /// left COPY IN with an ErrorResponse. The caller may not have seen that yet (the events
    /// are still queued), so the CopyData, CopyDone and CopyFail it sends until its next
    /// query are dropped, not errors.
    server_left_copy: bool,
    /// The running query was sent with [`Connection::send_copy_in_query`] and has not
    /// started COPY IN yet: its first `CopyInResponse` starts COPY IN instead of being
    /// refused with CopyFail.
    copy_in_wanted: bool,
    /// The protocol version in use: the requested one until the server negotiates down.
    protocol: ProtocolVersion,
    /// The server sent `NegotiateProtocolVersion` (it may do so once).
    negotiated: bool,
}

impl Connection {
    /// Starts a connection: queues the first packet (`SSLRequest` or `StartupMessage`), or for
    /// direct TLS, queues [`Event::StartTls`].
    pub fn new(settings: StartupSettings) -> Result<Self, Error> {
        let framer = Framer::new(settings.max_message_size);
        let mut conn = Self {
            phase: Phase::SslRequested,
            framer,
            recv: BytesMut::with_capacity(8 * 1024),
            send: BytesMut::with_capacity(1024),
            events: VecDeque::new(),
            params: Vec::new(),
            backend_key: None,
            auth: AuthState::new(),
            tls_active: false,
            server_end_point: None,
            deadline: None,
            server_copy_done: false,
            client_copy_done: false,
            server_left_copy: false,
            copy_in_wanted: false,
            protocol: settings.protocol_version,
            negotiated: false,
            settings,
        };
        match conn.settings.tls {
            TlsRequest::Disable => conn.send_startup()?,
            TlsRequest::Negotiate { .. } => {
                StartupPacket::SslRequest
                    .encode(&mut conn.send)
                    .map_err(encode_err)?;
                conn.phase = Phase::SslRequested;
            }
            TlsRequest::Direct => {
                conn.phase = Phase::TlsHandshake;
                conn.events.push_back(Event::StartTls);
            }
        }
        Ok(conn)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True once TLS is established on the transport.
    pub fn is_tls(&self) -> bool {
        self.tls_active
    }

    /// A parameter reported by the server (`server_version`, `standard_conforming_strings`,
    /// `integer_datetimes`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every parameter reported by the server, in first-reported order.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.params
    }

    /// The cancellation key, once the server sent it.
    pub fn backend_key(&self) -> Option<&BackendKey> {
        self.backend_key.as_ref()
    }

    /// The protocol version in use: the one requested
    /// ([`StartupSettings::protocol_version`]) unless the server negotiated down.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.protocol
    }

    /// The authentication method the server used, once authenticated.
    pub fn auth_method(&self) -> Option<CompletedAuth> {
        self.auth.completed()
    }

    /// The buffer incoming bytes may be read into directly; call
    /// [`Connection::process_input`] afterwards.
    pub fn recv_buffer(&mut self) -> &mut BytesMut {
        &mut self.recv
    }

    /// Appends `data` to the receive buffer and processes it.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), Error> {
        self.recv.extend_from_slice(data);
        self.process_input()
    }

    /// Processes everything in the receive buffer.
    pub fn process_input(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        let r = self.process_inner();
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    /// Moves the bytes waiting to be sent into `buf`. Returns `false` when nothing was
    /// waiting.
    #[must_use]
    pub fn poll_transmit(&mut self, buf: &mut BytesMut) -> bool {
        if self.send.is_empty() {
            return false;
        }
        if buf.is_empty() {
            std::mem::swap(buf, &mut self.send);
        } else {
            buf.extend_from_slice(&self.send);
            self.send.clear();
        }
        true
    }

    /// Whether an event is queued ([`Connection::poll_event`] would return one).
    #[must_use]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] must be called next, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Failed | Phase::Closed => None,
            _ => self.deadline,
        }
    }

    /// Sets (or clears) the deadline of the current operation (startup or a command).
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Tells the core the time is `now`; fails the connection if the deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.check_usable()?;
        match self.deadline {
            Some(d) if now >= d => {
                self.phase = Phase::Failed;
                Err(Error::new(
                    ErrorKind::Timeout,
                    "the operation's deadline passed",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Reports the outcome of the TLS handshake requested by [`Event::StartTls`]:
    /// `server_end_point` is the `tls-server-end-point` hash of the server certificate for
    /// SCRAM channel binding (or `None` if it could not be computed). Queues the startup
    /// message.
    pub fn tls_established(&mut self, server_end_point: Option<Vec<u8>>) -> Result<(), Error> {
        self.check_usable()?;
        if self.phase != Phase::TlsHandshake {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "tls_established without a pending TLS handshake",
            ));
        }
        self.tls_active = true;
        self.server_end_point = server_end_point.filter(|h| !h.is_empty());
        self.send_startup()
    }

    /// Sends a simple query. Allowed only when idle.
    pub fn send_query(&mut self, sql: &str) -> Result<(), Error> {
        self.check_usable()?;
        if self.phase != Phase::Idle {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "a query can only be sent while the connection is idle",
            ));
        }
        FrontendMessage::Query(sql.to_owned())
            .encode(&mut self.send)
            .map_err(|e| {
                Error::with_source(ErrorKind::InvalidState, "query cannot be encoded", e)
            })?;
        self.phase = Phase::Query;
        self.server_left_copy = false;
        self.copy_in_wanted = false;
        Ok(())
    }

    /// Sends a simple query that is expected to start COPY IN (`COPY ... FROM STDIN`,
    /// `UPLOAD_MANIFEST`). Its first `CopyInResponse` is reported as [`Event::CopyIn`] and
    /// the connection enters [`Phase::CopyIn`]; any further COPY IN of the same query string
    /// is refused with CopyFail, as for [`Connection::send_query`], which refuses every
    /// COPY IN. Allowed only when idle.
    pub fn send_copy_in_query(&mut self, sql: &str) -> Result<(), Error> {
        self.send_query(sql)?;
        self.copy_in_wanted = true;
        Ok(())
    }

    /// Sends one COPY data message (in COPY IN, or in COPY BOTH before the client's
    /// CopyDone). Dropped without error when the server has already left COPY mode with
    /// CommandComplete (a walsender shutting down) or an ErrorResponse, whose events the
    /// caller may not have polled yet.
    pub fn send_copy_data(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_usable()?;
        if self.server_left_copy {
            return Ok(());
        }
        let open = match self.phase {
            Phase::CopyBoth => !self.client_copy_done,
            Phase::CopyIn => true,
            _ => false,
        };
        if !open {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "COPY data can only be sent in COPY IN or COPY BOTH mode",
            ));
        }
        let len = data
            .len()
            .checked_add(4)
            .and_then(|l| i32::try_from(l).ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidState, "COPY data message too large"))?;
        self.send.reserve(data.len() + 5);
        self.send.extend_from_slice(b"d");
        self.send.extend_from_slice(&len.to_be_bytes());
        self.send.extend_from_slice(data);
        Ok(())
    }

    /// Ends the client's side of COPY BOTH or COPY IN (nothing to send when the server
    /// already left COPY mode). After a COPY IN the server answers with CommandComplete (or
    /// an error) and ReadyForQuery.
    pub fn send_copy_done(&mut self) -> Result<(), Error> {
        self.check_usable()?;
        if self.server_left_copy {
            return Ok(());
        }
        if self.phase == Phase::CopyIn {
            FrontendMessage::CopyDone
                .encode(&mut self.send)
                .map_err(encode_err)?;
            self.phase = Phase::Query;
            return Ok(());
        }
        if self.phase != Phase::CopyBoth || self.client_copy_done {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "CopyDone can only be sent once in COPY BOTH mode",
            ));
        }
        FrontendMessage::CopyDone
            .encode(&mut self.send)
            .map_err(encode_err)?;
        self.client_copy_done = true;
        if self.server_copy_done {
            self.phase = Phase::Query;
        }
        Ok(())
    }

    /// Aborts a COPY IN with CopyFail carrying `message`; the server answers with an
    /// ErrorResponse (which quotes the message) and ReadyForQuery. Nothing is sent when the
    /// server already left COPY IN with an error of its own.
    pub fn send_copy_fail(&mut self, message: &str) -> Result<(), Error> {
        self.check_usable()?;
        if self.server_left_copy {
            return Ok(());
        }
        if self.phase != Phase::CopyIn {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "CopyFail can only be sent in COPY IN mode",
            ));
        }
        // A message with a NUL cannot be encoded: fail before anything is queued, leaving
        // the COPY open.
        FrontendMessage::CopyFail(message.to_owned())
            .encode(&mut self.send)
            .map_err(encode_err)?;
        self.phase = Phase::Query;
        Ok(())
    }

    /// True in COPY BOTH mode once the server has sent CopyDone.
    pub fn server_copy_done(&self) -> bool {
        self.server_copy_done
    }

    /// Queues `Terminate` and closes the connection.
    pub fn close(&mut self) {
        if !matches!(self.phase, Phase::Closed | Phase::Failed) {
            // Terminate has no body; encoding cannot fail.
            let _ = FrontendMessage::Terminate.encode(&mut self.send);
        }
        self.phase = Phase::Closed;
    }

    /// Marks the connection failed (e.g. the driver abandoned a command midway).
    pub fn fail(&mut self) {
        self.phase = Phase::Failed;
    }

    fn check_usable(&self) -> Result<(), Error> {
        match self.phase {
            Phase::Failed => Err(Error::new(
                ErrorKind::Closed,
                "the connection failed earlier and cannot be used",
            )),
            Phase::Closed => Err(Error::new(ErrorKind::Closed, "the connection is closed")),
            _ => Ok(()),
        }
    }

    fn send_startup(&mut self) -> Result<(), Error> {
        let mut msg = StartupMessage::new(self.settings.protocol_version);
        for (k, v) in &self.settings.params {
            msg = msg.param(k.clone(), v.clone());
        }
        StartupPacket::Startup(msg)
            .encode(&mut self.send)
            .map_err(|e| {
                Error::with_source(ErrorKind::Config, "startup parameters cannot be encoded", e)
            })?;
        self.phase = Phase::Authenticating;
        Ok(())
    }

    fn process_inner(&mut self) -> Result<(), Error> {
        loop {
            match self.phase {
                Phase::SslRequested => {
                    if !self.handle_ssl_answer()? {
                        return Ok(());
                    }
                }
                Phase::TlsHandshake => {
                    if self.recv.is_empty() {
                        return Ok(());
                    }
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        "server sent data before the TLS handshake (possible injection attack)",
                    ));
                }
                Phase::Failed | Phase::Closed => return Ok(()),
                _ => {
                    let msg = self.framer.decode(&mut self.recv).map_err(|e| {
                        Error::with_source(ErrorKind::Protocol, "malformed server message", e)
                    })?;
                    let Some(msg) = msg else { return Ok(()) };
                    self.handle_message(msg)?;
                }
            }
        }
    }

    /// Handles the one-byte answer to `SSLRequest`. Returns false if more bytes are needed.
    fn handle_ssl_answer(&mut self) -> Result<bool, Error> {
        let Some(&answer) = self.recv.first() else {
            return Ok(false);
        };
        match answer {
            b'S' => {
                self.recv.advance(1);
                if !self.recv.is_empty() {
                    // CVE-2021-23222: bytes after 'S' were not protected by TLS.
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        "server sent unencrypted data after accepting TLS (possible injection attack)",
                    ));
                }
                self.phase = Phase::TlsHandshake;
                self.events.push_back(Event::StartTls);
            }
            b'N' => {
                self.recv.advance(1);
                if matches!(self.settings.tls, TlsRequest::Negotiate { required: true }) {
                    return Err(Error::new(
                        ErrorKind::Tls,
                        "server does not support TLS, but TLS was required",
                    ));
                }
                if !self.recv.is_empty() {
                    return Err(Error::new(
                        ErrorKind::Protocol,
                        "server sent data after declining TLS",
                    ));
                }
                self.events.push_back(Event::TlsDeclined);
                self.send_startup()?;
            }
            b'E' => {
                // An old server, or one that failed before negotiation: an ErrorResponse
                // follows in the normal framing. Read it in the authentication phase, where
                // an ErrorResponse is fatal.
                self.phase = Phase::Authenticating;
            }
            other => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("unexpected answer 0x{other:02x} to SSLRequest"),
                ));
            }
        }
        Ok(true)
    }

    fn handle_message(&mut self, msg: BackendMessage) -> Result<(), Error> {
        // Messages that may come at any time.
        match msg {
            BackendMessage::ParameterStatus { name, value } => {
                match self.params.iter_mut().find(|(k, _)| *k == name) {
                    Some(slot) => slot.1.clone_from(&value),
                    None => self.params.push((name.clone(), value.clone())),
                }
                self.events
                    .push_back(Event::ParameterStatus { name, value });
                return Ok(());
            }
            BackendMessage::NoticeResponse(fields) => {
                self.events
                    .push_back(Event::Notice(Box::new(DbError::from_fields(&fields))));
                return Ok(());
            }
            BackendMessage::NotificationResponse { .. } => return Ok(()),
            _ => {}
        }
        match self.phase {
            Phase::Authenticating => self.handle_auth_phase(msg),
            Phase::AwaitingReady => self.handle_awaiting_ready(msg),
            Phase::Query => self.handle_query(msg),
            Phase::CopyBoth | Phase::CopyOut => self.handle_copy(msg),
            Phase::CopyIn => self.handle_copy_in(msg),
            Phase::Idle => match msg {
                BackendMessage::ErrorResponse(f) => Err(Error::db(DbError::from_fields(&f))),
                other => Err(unexpected(&other, "while idle")),
            },
            Phase::SslRequested | Phase::TlsHandshake | Phase::Closed | Phase::Failed => {
                Err(unexpected(&msg, "before startup"))
            }
        }
    }

    fn handle_auth_phase(&mut self, msg: BackendMessage) -> Result<(), Error> {
        match msg {
            BackendMessage::Authentication(a) => {
                let ctx = auth::AuthContext {
                    password: self.settings.password.as_ref(),
                    user: self.settings.user(),
                    allowed: &self.settings.require_auth,
                    policy: self.settings.channel_binding,
                    server_end_point: self.server_end_point.as_deref(),
                };
                let out = self.auth.handle(a, &ctx)?;
                if let Some(reply) = out.reply {
                    let encoded = reply.encode(&mut self.send);
                    if let FrontendMessage::Password(mut secret) = reply {
                        secret.zeroize();
                    }
                    encoded.map_err(encode_err)?;
                }
                if let Some(method) = out.done {
                    self.events.push_back(Event::Authenticated(method));
                    self.phase = Phase::AwaitingReady;
                }
                Ok(())
            }
            BackendMessage::NegotiateProtocolVersion {
                newest_minor,
                unrecognized_options,
            } => self.negotiate(newest_minor, &unrecognized_options),
            BackendMessage::ErrorResponse(f) => {
                Err(Error::db(DbError::from_fields(&f)).context("server rejected the connection"))
            }
            other => Err(unexpected(&other, "during authentication")),
        }
    }

    /// The server does not support the requested version: it names the newest version it
    /// supports for major 3.
    fn negotiate(&mut self, newest_minor: u32, unrecognized: &[String]) -> Result<(), Error> {
        if self.negotiated {
            return Err(Error::protocol("NegotiateProtocolVersion was sent twice"));
        }
        self.negotiated = true;
        if let Some(option) = unrecognized.first() {
            return Err(Error::protocol(format!(
                "NegotiateProtocolVersion names protocol option {option:?}, which was not sent"
            )));
        }
        let requested = self.settings.protocol_version;
        // The documentation calls the field the newest minor version, but servers send the
        // whole version number (`PG_PROTOCOL_LATEST`, 0x0003_0000 for 3.0) and libpq reads
        // it so; accept both spellings, they cannot be confused.
        let minor = match newest_minor >> 16 {
            0 | 3 => u16::try_from(newest_minor & 0xffff).ok(),
            _ => None,
        };
        let offered = minor
            .map(|minor| ProtocolVersion(0x0003_0000 | u32::from(minor)))
            .filter(|v| *v < requested)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "NegotiateProtocolVersion offered version 0x{newest_minor:08x}, not older \
                     than the requested {}.{}",
                    requested.major(),
                    requested.minor()
                ))
            })?;
        if offered.minor() == 1 {
            return Err(Error::protocol(
                "NegotiateProtocolVersion offered protocol 3.1, which does not exist",
            ));
        }
        let min = self.settings.min_protocol_version;
        if offered < min {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "server only supports protocol version {}.{}, but min_protocol_version is \
                     {}.{}",
                    offered.major(),
                    offered.minor(),
                    min.major(),
                    min.minor()
                ),
            ));
        }
        self.protocol = offered;
        Ok(())
    }

    fn handle_awaiting_ready(&mut self, msg: BackendMessage) -> Result<(), Error> {
        match msg {
            BackendMessage::BackendKeyData {
                process_id,
                secret_key,
            } => {
                // 3.0 keys are 4 bytes; 3.2 allows 4 to 256 (the framer enforces the top).
                let len = secret_key.len();
                let ok = if self.protocol >= ProtocolVersion::V3_2 {
                    (4..=walstream_proto::MAX_SECRET_KEY_LEN).contains(&len)
                } else {
                    len == 4
                };
                if !ok {
                    return Err(Error::protocol(format!(
                        "BackendKeyData with a {len}-byte cancel key is invalid in protocol {}.{}",
                        self.protocol.major(),
                        self.protocol.minor()
                    )));
                }
                self.backend_key = Some(BackendKey {
                    process_id,
                    secret_key,
                });
                Ok(())
            }
            BackendMessage::ReadyForQuery(_) => {
                self.phase = Phase::Idle;
                self.deadline = None;
                self.events.push_back(Event::Connected);
                Ok(())
            }
            BackendMessage::ErrorResponse(f) => Err(Error::db(DbError::from_fields(&f))
                .context("server failed the connection after authentication")),
            other => Err(unexpected(&other, "after authentication")),
        }
    }

    fn handle_query(&mut self, msg: BackendMessage) -> Result<(), Error> {
        match msg {
            BackendMessage::RowDescription(fields) => {
                self.events.push_back(Event::RowDescription(fields.into()))
            }
            BackendMessage::DataRow(row) => self.events.push_back(Event::DataRow(row)),
            BackendMessage::CommandComplete(tag) => {
                self.events.push_back(Event::CommandComplete(tag))
            }
            BackendMessage::EmptyQueryResponse => self.events.push_back(Event::EmptyQuery),
            BackendMessage::ErrorResponse(f) => {
                let db = DbError::from_fields(&f);
                if is_fatal(&db) {
                    return Err(Error::db(db).context("server terminated the session"));
                }
                self.events.push_back(Event::QueryError(Box::new(db)));
            }
            BackendMessage::ReadyForQuery(status) => {
                self.phase = Phase::Idle;
                self.events.push_back(Event::ReadyForQuery(status));
            }
            BackendMessage::CopyBothResponse(r) => {
                self.phase = Phase::CopyBoth;
                self.server_copy_done = false;
                self.client_copy_done = false;
                self.events.push_back(Event::CopyBoth(r));
            }
            BackendMessage::CopyOutResponse(r) => {
                self.phase = Phase::CopyOut;
                self.server_copy_done = false;
                self.client_copy_done = true;
                self.events.push_back(Event::CopyOut(r));
            }
            BackendMessage::CopyInResponse(r) if self.copy_in_wanted => {
                self.copy_in_wanted = false;
                self.phase = Phase::CopyIn;
                self.events.push_back(Event::CopyIn(r));
            }
            BackendMessage::CopyInResponse(_) => {
                // A COPY IN the caller did not ask for (`send_query`): abort it; the server
                // answers with an ErrorResponse and ReadyForQuery.
                FrontendMessage::CopyFail(
                    "COPY FROM STDIN was not expected by this walstream command".to_owned(),
                )
                .encode(&mut self.send)
                .map_err(encode_err)?;
            }
            other => return Err(unexpected(&other, "during a query")),
        }
        Ok(())
    }

    fn handle_copy(&mut self, msg: BackendMessage) -> Result<(), Error> {
        match msg {
            BackendMessage::CopyData(data) if !self.server_copy_done => {
                self.events.push_back(Event::CopyData(data));
            }
            BackendMessage::CopyDone if !self.server_copy_done => {
                self.server_copy_done = true;
                self.events.push_back(Event::CopyDone);
                if self.client_copy_done {
                    self.phase = Phase::Query;
                }
            }
            BackendMessage::ErrorResponse(f) => {
                let db = DbError::from_fields(&f);
                if is_fatal(&db) {
                    return Err(Error::db(db).context("server terminated the session during COPY"));
                }
                // The server left COPY mode; ReadyForQuery follows. Status updates the caller
                // sends before polling the error are dropped (see `server_left_copy`).
                self.server_left_copy = self.phase == Phase::CopyBoth;
                self.phase = Phase::Query;
                self.events.push_back(Event::QueryError(Box::new(db)));
            }
            // A walsender that is shutting down (`pg_ctl stop -m fast`) ends COPY BOTH with
            // CommandComplete and no CopyDone: the server has left COPY mode, so the stream
            // ended; report it as the server's CopyDone followed by the command's result.
            BackendMessage::CommandComplete(tag) if !self.server_copy_done => {
                self.server_copy_done = true;
                self.server_left_copy = self.phase == Phase::CopyBoth;
                self.events.push_back(Event::CopyDone);
                self.phase = Phase::Query;
                self.handle_query(BackendMessage::CommandComplete(tag))?;
            }
            // After CopyDone, the result of the command follows (e.g. the next timeline
            // for physical replication). The server may send it before our CopyDone.
            other @ (BackendMessage::RowDescription(_)
            | BackendMessage::DataRow(_)
            | BackendMessage::CommandComplete(_))
                if self.server_copy_done =>
            {
                self.handle_query(other)?;
            }
            other => return Err(unexpected(&other, "during COPY")),
        }
        Ok(())
    }
}

impl Connection {
    /// While the client sends COPY IN data, the server only speaks to report an error.
    fn handle_copy_in(&mut self, msg: BackendMessage) -> Result<(), Error> {
        match msg {
            BackendMessage::ErrorResponse(f) => {
                let db = DbError::from_fields(&f);
                if is_fatal(&db) {
                    return Err(
                        Error::db(db).context("server terminated the session during COPY IN")
                    );
                }
                // The server left COPY IN and ignores what the client still sends until
                // ReadyForQuery; data sent before the caller polls the error is dropped.
                self.server_left_copy = true;
                self.phase = Phase::Query;
                self.events.push_back(Event::QueryError(Box::new(db)));
                Ok(())
            }
            other => Err(unexpected(&other, "during COPY IN")),
        }
    }
}

fn is_fatal(db: &DbError) -> bool {
    let sev = db.severity_nonlocalized().unwrap_or(db.severity());
    sev == "FATAL" || sev == "PANIC"
}

fn unexpected(msg: &BackendMessage, when: &'static str) -> Error {
    Error::protocol(format!("unexpected {} message {when}", msg.name()))
}

fn encode_err(e: walstream_proto::EncodeError) -> Error {
    Error::with_source(ErrorKind::InvalidState, "message cannot be encoded", e)
}

#[cfg(test)]
mod tests;
