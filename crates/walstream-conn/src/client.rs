//! The tokio driver: [`Client`] moves bytes between a socket and the sans-IO
//! [`Connection`](crate::machine::Connection).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use walstream_proto::{CopyResponse, DataRow, FieldDescription};

use crate::config::{
    Config, RootCert, ServerStatus, SessionVerdict, SslMode, SslNegotiation, Target, TargetAddr,
    TargetSessionAttrs,
};
use crate::error::{DbError, Error, ErrorKind};
use crate::machine::{
    BackendKey, CompletedAuth, Connection, Event, Phase, StartupSettings, TlsRequest,
};
use crate::transport::{self, Transport};

/// The default deadline of one control command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How much the receive buffer grows before a read: one read drains what the kernel has.
const READ_CHUNK: usize = 128 * 1024;

/// The most notices kept for [`Client::take_notices`].
const MAX_KEPT_NOTICES: usize = 64;

/// An open connection to a PostgreSQL server.
///
/// Commands (`simple_query` and the replication commands) run one at a time and each has a
/// deadline ([`Client::set_command_timeout`]). They are cancel-safe in the sense that matters:
/// if a command's future is dropped midway, the connection is marked broken and every later
/// command fails with [`ErrorKind::Closed`] instead of reading the abandoned command's
/// leftovers.
#[derive(Debug)]
pub struct Client {
    io: Transport,
    conn: Connection,
    out: BytesMut,
    busy: bool,
    command_timeout: Duration,
    target: Target,
    tls: Option<TlsSetup>,
    notices: Vec<DbError>,
    /// During a streaming command: the deadline moves this far past every read.
    pub(crate) idle_timeout: Option<Duration>,
}

/// What a cancel request needs to reach the same server the same way.
#[derive(Debug, Clone)]
struct TlsSetup {
    config: Arc<walstream_tls::rustls::ClientConfig>,
    server_name: String,
    direct: bool,
}

/// A set of rows returned by one statement of a simple query.
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    columns: Arc<[FieldDescription]>,
    rows: Vec<Row>,
    tag: Option<String>,
}

impl ResultSet {
    pub(crate) fn new(columns: Arc<[FieldDescription]>) -> Self {
        Self {
            columns,
            rows: Vec::new(),
            tag: None,
        }
    }

    pub(crate) fn columns_arc(&self) -> Arc<[FieldDescription]> {
        self.columns.clone()
    }

    pub(crate) fn push_row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub(crate) fn set_tag(&mut self, tag: String) {
        self.tag = Some(tag);
    }

    /// The column descriptions (empty for statements that return no rows).
    pub fn columns(&self) -> &[FieldDescription] {
        &self.columns
    }

    /// The rows.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Consumes the set, returning the rows.
    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }

    /// The command tag (`SELECT 1`, `CREATE_REPLICATION_SLOT`, ...), if the statement
    /// completed with one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
}

/// One row of a simple-query result: text values, by index or by column name.
#[derive(Debug, Clone)]
pub struct Row {
    columns: Arc<[FieldDescription]>,
    values: Vec<Option<Bytes>>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[FieldDescription]>, row: &DataRow) -> Self {
        Self {
            columns,
            values: row.columns().collect(),
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True for a row without columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The column descriptions.
    pub fn columns(&self) -> &[FieldDescription] {
        &self.columns
    }

    /// The raw value of column `idx`; `None` for SQL NULL or an index out of range.
    pub fn raw(&self, idx: usize) -> Option<&Bytes> {
        self.values.get(idx).and_then(Option::as_ref)
    }

    /// The text value of column `idx`; `None` for SQL NULL, an index out of range or a value
    /// that is not UTF-8 (use [`Row::try_get`] to tell these apart).
    pub fn get(&self, idx: usize) -> Option<&str> {
        self.try_get(idx).ok().flatten()
    }

    /// The text value of the column called `name`.
    pub fn get_named(&self, name: &str) -> Option<&str> {
        let idx = self.columns.iter().position(|c| c.name == name)?;
        self.get(idx)
    }

    /// The text value of column `idx`: `Ok(None)` for SQL NULL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] for an index out of range, [`ErrorKind::Protocol`] for a
    /// value that is not UTF-8.
    pub fn try_get(&self, idx: usize) -> Result<Option<&str>, Error> {
        let v = self.values.get(idx).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                format!("column index {idx} out of range"),
            )
        })?;
        v.as_ref()
            .map(|b| {
                std::str::from_utf8(b)
                    .map_err(|_| Error::protocol(format!("column {idx} is not valid UTF-8")))
            })
            .transpose()
    }
}

/// Sends a `CancelRequest` for the query running on a [`Client`], on a new connection.
#[derive(Debug, Clone)]
pub struct CancelToken {
    target: Target,
    key: BackendKey,
    tls: Option<TlsSetup>,
    connect_timeout: Option<Duration>,
    keepalive_config: Config,
}

impl CancelToken {
    /// Asks the server to cancel whatever the connection is running. Success means the
    /// request was delivered, not that anything was cancelled.
    pub async fn cancel(&self) -> Result<(), Error> {
        let io =
            transport::open(&self.keepalive_config, &self.target, self.connect_timeout).await?;
        let mut io = match &self.tls {
            None => io,
            Some(tls) => {
                let mut io = io;
                if !tls.direct {
                    let mut req = BytesMut::new();
                    walstream_proto::StartupPacket::SslRequest
                        .encode(&mut req)
                        .map_err(encode_err)?;
                    io.write_all(&req).await.map_err(io_err)?;
                    let answer = io.read_u8().await.map_err(io_err)?;
                    if answer != b'S' {
                        return Err(Error::new(
                            ErrorKind::Tls,
                            "server declined TLS for the cancel request",
                        ));
                    }
                }
                tls_handshake(io, tls).await?.0
            }
        };
        let mut req = BytesMut::new();
        walstream_proto::StartupPacket::Cancel(walstream_proto::CancelRequest {
            process_id: self.key.process_id,
            secret_key: self.key.secret_key.clone(),
        })
        .encode(&mut req)
        .map_err(encode_err)?;
        io.write_all(&req).await.map_err(io_err)?;
        io.flush().await.map_err(io_err)?;
        // The server closes the connection without answering.
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(5), io.read(&mut sink)).await;
        Ok(())
    }
}

/// Logs a server notice at the level its severity calls for (`WARNING` as a warning,
/// `DEBUG*` as debug, the rest as info).
fn log_notice(n: &DbError) {
    let severity = n.severity_nonlocalized().unwrap_or(n.severity());
    let code = n.code();
    let (detail, hint) = (n.detail(), n.hint());
    let message = n.message();
    if severity == "WARNING" {
        tracing::warn!(%severity, %code, detail, hint, "server notice: {message}");
    } else if severity.starts_with("DEBUG") {
        tracing::debug!(%severity, %code, detail, hint, "server notice: {message}");
    } else {
        tracing::info!(%severity, %code, detail, hint, "server notice: {message}");
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::with_source(ErrorKind::Io, "I/O error on the connection", e)
}

fn encode_err(e: walstream_proto::EncodeError) -> Error {
    Error::with_source(ErrorKind::InvalidState, "message cannot be encoded", e)
}

/// Builds the rustls configuration for `config` (only called when TLS may be used).
fn tls_config(config: &Config) -> Result<Arc<walstream_tls::rustls::ClientConfig>, Error> {
    let ssl = config.ssl();
    let mut opts = walstream_tls::TlsOptions::new(ssl.mode())
        .with_sni(ssl.sni())
        .with_negotiation(ssl.negotiation());
    // The configuration resolves libpq's default files itself.
    opts = opts.with_default_files(walstream_tls::DefaultFiles::Disabled);
    if let Some(root) = ssl.effective_root_cert() {
        opts = opts.with_root_cert(match root {
            RootCert::File(p) => walstream_tls::RootCert::File(p),
            RootCert::System => walstream_tls::RootCert::System,
        });
    }
    if let Some((cert, key)) = ssl.effective_client_cert() {
        opts = opts.with_client_cert(cert, key);
    }
    opts.client_config()
        .map_err(|e| Error::with_source(ErrorKind::Tls, "invalid TLS configuration", e))
}

async fn tls_handshake(
    io: Transport,
    tls: &TlsSetup,
) -> Result<(Transport, Option<Vec<u8>>), Error> {
    let Ok((tcp, batch_window)) = io.into_tcp() else {
        return Err(Error::new(ErrorKind::Tls, "TLS is only used over TCP"));
    };
    let name = walstream_tls::server_name(&tls.server_name)
        .map_err(|e| Error::with_source(ErrorKind::Tls, "invalid TLS server name", e))?;
    let stream = walstream_tls::connect_tls(tcp, name, tls.config.clone())
        .await
        .map_err(|e| Error::with_source(ErrorKind::Tls, "TLS handshake failed", e))?;
    if tls.direct {
        walstream_tls::check_direct_alpn(&stream)
            .map_err(|e| Error::with_source(ErrorKind::Tls, "direct TLS negotiation failed", e))?;
    }
    let hash = walstream_tls::peer_end_point_hash(&stream).ok();
    Ok((Transport::tls(stream, batch_window), hash))
}

/// Whether an error ends the walk over the host list (libpq does not try further hosts
/// once a server rejected the credentials).
fn is_final(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::Auth | ErrorKind::Config => true,
        ErrorKind::Db => e.code().is_some_and(|c| c.class() == "28"),
        _ => false,
    }
}

impl Client {
    /// Connects to the first server of `config`'s host list that accepts the connection
    /// and satisfies `target_session_attrs`.
    ///
    /// Each host is tried in order (with `connect_timeout` per attempt); a host that is down
    /// or refuses TLS as required is skipped, but an authentication failure ends the search,
    /// as in libpq.
    pub async fn connect(config: &Config) -> Result<Self, Error> {
        config.validate().map_err(|e| {
            Error::with_source(ErrorKind::Config, "invalid connection configuration", e)
        })?;
        let targets = config
            .targets()
            .map_err(|e| Error::with_source(ErrorKind::Config, "invalid host list", e))?;
        let attrs = config.target_session_attrs();
        let passes: &[u8] = if attrs.has_fallback_pass() {
            &[1, 2]
        } else {
            &[1]
        };
        let mut last_err = None;
        for &pass in passes {
            for target in &targets {
                match Self::connect_target(config, target, attrs.for_pass(pass)).await {
                    Ok(c) => return Ok(c),
                    Err(e) => {
                        let stop = is_final(&e);
                        tracing::debug!(
                            server = %transport::describe(target),
                            error = %e,
                            gives_up = stop,
                            "connection attempt failed"
                        );
                        last_err = Some(e);
                        if stop {
                            break;
                        }
                    }
                }
            }
            if last_err.as_ref().is_some_and(is_final) {
                break;
            }
        }
        Err(last_err.unwrap_or_else(|| Error::new(ErrorKind::Config, "no host to connect to")))
    }

    async fn connect_target(
        config: &Config,
        target: &Target,
        attrs: TargetSessionAttrs,
    ) -> Result<Self, Error> {
        let mode = config.ssl().mode();
        let is_unix = matches!(target.addr, TargetAddr::Unix { .. });
        let direct = config.ssl().negotiation() == SslNegotiation::Direct;
        // libpq never uses TLS over Unix-domain sockets.
        let requests: Vec<TlsRequest> = if is_unix {
            vec![TlsRequest::Disable]
        } else {
            match mode {
                SslMode::Disable => vec![TlsRequest::Disable],
                SslMode::Allow => vec![
                    TlsRequest::Disable,
                    TlsRequest::Negotiate { required: true },
                ],
                SslMode::Prefer if direct => vec![TlsRequest::Direct],
                SslMode::Prefer => vec![TlsRequest::Negotiate { required: false }],
                _ if direct => vec![TlsRequest::Direct],
                _ => vec![TlsRequest::Negotiate { required: true }],
            }
        };
        let mut last = None;
        for (i, tls) in requests.iter().enumerate() {
            match Self::attempt(config, target, *tls).await {
                Ok(client) => return client.check_session_attrs(attrs).await,
                Err(e) => {
                    // `allow`: a plaintext attempt the server rejected is retried with TLS.
                    let retry = i + 1 < requests.len() && e.kind() == ErrorKind::Db;
                    last = Some(e);
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last
            .unwrap_or_else(|| Error::new(ErrorKind::Connect, "no connection attempt was made")))
    }

    async fn attempt(
        config: &Config,
        target: &Target,
        tls_request: TlsRequest,
    ) -> Result<Self, Error> {
        let timeout = config.connect_timeout();
        let deadline = timeout.map(|t| Instant::now() + t);
        let io = transport::open(config, target, timeout).await?;
        let tls = match tls_request {
            TlsRequest::Disable => None,
            _ => Some(TlsSetup {
                config: tls_config(config)?,
                server_name: target.server_name().unwrap_or_default().to_owned(),
                direct: tls_request == TlsRequest::Direct,
            }),
        };
        let mut settings = StartupSettings::new(config.startup_params());
        let lookup = config.lookup_password(target);
        if let Some(warning) = &lookup.warning {
            // The path and the reason only: the file's contents are never logged.
            tracing::warn!(%warning, "ignoring the password file");
        }
        if let Some((_, source)) = &lookup.password {
            tracing::debug!(?source, "using a password");
        }
        settings.password = lookup.password.map(|(p, _)| p);
        settings.tls = tls_request;
        settings.channel_binding = config.channel_binding();
        settings.require_auth = *config.require_auth();
        settings.protocol_version = config.max_protocol_version();
        settings.min_protocol_version = config.min_protocol_version();
        let mut conn = Connection::new(settings)?;
        conn.set_deadline(deadline.map(Instant::into_std));
        let mut client = Self {
            io,
            conn,
            out: BytesMut::with_capacity(1024),
            busy: true,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            target: target.clone(),
            tls: None,
            notices: Vec::new(),
            idle_timeout: None,
        };
        let where_ = transport::describe(target);
        tracing::debug!(server = %where_, tls = ?tls_request, "connecting");
        loop {
            match client
                .next_event(None)
                .await
                .map_err(|e| e.context(format!("connection to {where_} failed")))?
            {
                Some(Event::StartTls) => {
                    let setup = tls
                        .clone()
                        .ok_or_else(|| Error::protocol("TLS requested without a TLS setup"))?;
                    let io = std::mem::replace(&mut client.io, Transport::taken());
                    let fut = tls_handshake(io, &setup);
                    let (io, hash) = match deadline {
                        Some(d) => tokio::time::timeout_at(d, fut).await.map_err(|_| {
                            Error::new(ErrorKind::Timeout, "TLS handshake timed out")
                        })??,
                        None => fut.await?,
                    };
                    client.io = io;
                    client.tls = Some(setup);
                    client.conn.tls_established(hash)?;
                }
                Some(Event::Connected) => break,
                Some(Event::Authenticated(method)) => {
                    tracing::debug!(server = %where_, ?method, "authenticated");
                }
                Some(Event::TlsDeclined) => {
                    tracing::debug!(server = %where_, "server declined TLS; continuing in plaintext");
                }
                Some(_) | None => {}
            }
        }
        client.busy = false;
        Ok(client)
    }

    async fn check_session_attrs(mut self, attrs: TargetSessionAttrs) -> Result<Self, Error> {
        let mut status = ServerStatus::default();
        for (k, v) in self.conn.parameters() {
            status.observe(k, v);
        }
        let mut verdict = attrs.verdict(&status);
        if let SessionVerdict::Query(q) = verdict {
            let rows = self.simple_query(q.sql()).await?;
            let value = rows
                .first()
                .and_then(|r| r.get(0))
                .unwrap_or_default()
                .to_owned();
            verdict = attrs.verdict_from_query(q, &value).map_err(|e| {
                Error::with_source(ErrorKind::Protocol, "target_session_attrs check failed", e)
            })?;
        }
        match verdict {
            SessionVerdict::Accept => Ok(self),
            SessionVerdict::Reject(why) => {
                self.close().await;
                Err(Error::new(
                    ErrorKind::TargetSessionAttrs,
                    format!("server rejected: {why}"),
                ))
            }
            SessionVerdict::Query(_) => Err(Error::protocol(
                "target_session_attrs check did not converge",
            )),
        }
    }

    /// A parameter reported by the server (`server_version`, ...).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.conn.parameter(name)
    }

    /// The server's major version from `server_version_num`/`server_version`, e.g. `15`.
    pub fn server_major_version(&self) -> Option<u32> {
        if let Some(n) = self
            .parameter("server_version_num")
            .and_then(|v| v.parse::<u32>().ok())
        {
            return Some(n / 10_000);
        }
        let v = self.parameter("server_version")?;
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The protocol version in use: `max_protocol_version` (3.0 by default) unless the
    /// server negotiated down. With 3.2 (PostgreSQL 18) the cancel key is longer.
    pub fn protocol_version(&self) -> walstream_proto::ProtocolVersion {
        self.conn.protocol_version()
    }

    /// True when the connection is encrypted with TLS.
    pub fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    /// How the client authenticated.
    pub fn auth_method(&self) -> Option<CompletedAuth> {
        self.conn.auth_method()
    }

    /// True when the connection can run commands (not broken, closed or busy streaming).
    pub fn is_usable(&self) -> bool {
        !self.busy && self.conn.phase() == Phase::Idle
    }

    /// The deadline of each control command (default 30 s).
    pub fn set_command_timeout(&mut self, timeout: Duration) {
        self.command_timeout = timeout;
    }

    /// The current command deadline.
    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// Notices the server sent since the last call (at most the 64 most recent).
    pub fn take_notices(&mut self) -> Vec<DbError> {
        std::mem::take(&mut self.notices)
    }

    /// A token that cancels the running command from elsewhere.
    pub fn cancel_token(&self, config: &Config) -> Option<CancelToken> {
        Some(CancelToken {
            target: self.target.clone(),
            key: self.conn.backend_key()?.clone(),
            tls: self.tls.clone(),
            connect_timeout: config.connect_timeout(),
            keepalive_config: config.clone(),
        })
    }

    /// Runs a simple query and returns the rows of every statement in it, concatenated.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, Error> {
        Ok(self
            .simple_query_sets(sql)
            .await?
            .into_iter()
            .flat_map(ResultSet::into_rows)
            .collect())
    }

    /// Runs a simple query and returns one [`ResultSet`] per statement.
    pub async fn simple_query_sets(&mut self, sql: &str) -> Result<Vec<ResultSet>, Error> {
        self.start_query(sql)?;
        let mut sets = Vec::new();
        let mut current: Option<ResultSet> = None;
        let mut error = None;
        loop {
            let Some(ev) = self.next_event(None).await? else {
                continue;
            };
            match ev {
                Event::RowDescription(cols) => {
                    current = Some(ResultSet {
                        columns: cols,
                        rows: Vec::new(),
                        tag: None,
                    });
                }
                Event::DataRow(row) => {
                    let set = current.get_or_insert_with(ResultSet::default);
                    set.rows.push(Row::new(set.columns.clone(), &row));
                }
                Event::CommandComplete(tag) => {
                    let mut set = current.take().unwrap_or_default();
                    set.tag = Some(tag);
                    sets.push(set);
                }
                Event::EmptyQuery => sets.push(ResultSet::default()),
                Event::QueryError(db) => error = Some(*db),
                Event::CopyBoth(_) | Event::CopyOut(_) => {
                    self.conn.fail();
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        "the command started COPY; use the replication stream API for it",
                    ));
                }
                Event::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        self.end();
        match error {
            Some(db) => Err(Error::db(db)),
            None => Ok(sets),
        }
    }

    /// Sends `sql`, which must start COPY BOTH (`START_REPLICATION`), and returns once the
    /// server is streaming. The connection stays busy until the stream ends.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<CopyResponse, Error> {
        self.start_query(sql)?;
        let mut error = None;
        loop {
            let Some(ev) = self.next_event(None).await? else {
                continue;
            };
            match ev {
                Event::CopyBoth(r) => {
                    // Streaming has no overall deadline; the stream watches the server.
                    self.conn.set_deadline(None);
                    return Ok(r);
                }
                Event::QueryError(db) => error = Some(*db),
                Event::ReadyForQuery(_) => {
                    self.end();
                    return Err(match error {
                        Some(db) => Error::db(db),
                        None => Error::protocol("the command did not start COPY BOTH"),
                    });
                }
                _ => {}
            }
        }
    }

    /// Waits for the next event, until `wake` at the latest (`Ok(None)` then).
    pub(crate) async fn next_event(
        &mut self,
        wake: Option<Instant>,
    ) -> Result<Option<Event>, Error> {
        loop {
            if let Some(ev) = self.conn.poll_event() {
                if let Event::Notice(n) = &ev {
                    log_notice(n);
                    if self.notices.len() >= MAX_KEPT_NOTICES {
                        self.notices.remove(0);
                    }
                    self.notices.push(DbError::clone(n));
                }
                return Ok(Some(ev));
            }
            self.flush().await?;
            if self.conn.phase() == Phase::TlsHandshake {
                // The driver must run the handshake before reading anything.
                return Ok(None);
            }
            let deadline = self.conn.poll_timeout().map(Instant::from_std);
            let until = match (deadline, wake) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let buf = self.conn.recv_buffer();
            if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                buf.reserve(READ_CHUNK);
            }
            let read = match until {
                Some(t) => tokio::time::timeout_at(t, self.io.read_buf(buf)).await.ok(),
                None => Some(self.io.read_buf(buf).await),
            };
            match read {
                Some(Ok(0)) => {
                    self.conn.fail();
                    return Err(Error::new(
                        ErrorKind::Closed,
                        "server closed the connection unexpectedly",
                    ));
                }
                Some(Ok(_)) => {
                    if let Some(idle) = self.idle_timeout {
                        self.conn
                            .set_deadline(Some((Instant::now() + idle).into_std()));
                    }
                    self.conn.process_input()?;
                }
                Some(Err(e)) => {
                    self.conn.fail();
                    return Err(io_err(e));
                }
                None => {
                    self.conn.handle_timeout(Instant::now().into_std())?;
                    if wake.is_some_and(|w| Instant::now() >= w) {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Writes whatever the core has queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Error> {
        if self.conn.poll_transmit(&mut self.out) {
            let r = async {
                self.io.write_all(&self.out).await?;
                self.io.flush().await
            }
            .await;
            self.out.clear();
            if let Err(e) = r {
                self.conn.fail();
                return Err(io_err(e));
            }
        }
        Ok(())
    }

    /// Marks the start of a command; fails if an earlier one was abandoned.
    pub(crate) fn begin(&mut self) -> Result<(), Error> {
        if self.busy {
            self.conn.fail();
            return Err(Error::new(
                ErrorKind::Closed,
                "connection is broken: an earlier command was abandoned before it finished",
            ));
        }
        self.busy = true;
        self.conn
            .set_deadline(Some((Instant::now() + self.command_timeout).into_std()));
        Ok(())
    }

    /// Starts a command: [`Client::begin`], then queues `sql`. A query that cannot be
    /// encoded (an embedded NUL) fails without breaking the connection.
    pub(crate) fn start_query(&mut self, sql: &str) -> Result<(), Error> {
        self.begin()?;
        let sent = self.conn.send_query(sql);
        if sent.is_err() && self.conn.phase() == Phase::Idle {
            // Nothing was queued: the connection is as it was.
            self.end();
        }
        sent
    }

    /// Marks the end of a command.
    pub(crate) fn end(&mut self) {
        self.busy = false;
        self.conn.set_deadline(None);
    }

    /// The sans-IO core (for the streaming layer).
    pub(crate) fn core(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The transport (for the streaming layer: batched reads).
    pub(crate) fn transport(&mut self) -> &mut Transport {
        &mut self.io
    }

    /// Sends `Terminate` and closes the socket.
    pub async fn close(mut self) {
        self.conn.close();
        let _ = self.flush().await;
        let _ = self.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use walstream_proto::ProtocolVersion;

    use super::*;
    use crate::test_server::{hello, serve};

    #[test]
    fn protocol_3_2_cancel_request_carries_the_long_key() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let key: Bytes = (0u8..32).collect::<Vec<u8>>().into();
            let mut server = serve(hello("18.0", key.clone()), Vec::new()).await;
            let mut config = server.config.clone();
            config.param("max_protocol_version", "3.2").unwrap();
            let client = Client::connect(&config).await.unwrap();
            let startup = (&mut server.startup).await.unwrap();
            assert_eq!(startup.get(4..8), Some(&[0, 3, 0, 2][..]), "3.2 requested");
            assert_eq!(client.protocol_version(), ProtocolVersion::V3_2);

            client
                .cancel_token(&config)
                .unwrap()
                .cancel()
                .await
                .unwrap();
            let request = server.later.recv().await.unwrap();
            // Int32 length, Int32 80877102, Int32 process id, then the whole key.
            assert_eq!(request.len(), 12 + 32);
            assert_eq!(request.get(..4), Some(&44u32.to_be_bytes()[..]));
            assert_eq!(request.get(4..8), Some(&80_877_102u32.to_be_bytes()[..]));
            assert_eq!(request.get(8..12), Some(&7u32.to_be_bytes()[..]));
            assert_eq!(request.get(12..), Some(&key[..]));
        });
    }

    #[test]
    fn a_query_with_a_nul_fails_without_breaking_the_connection() {
        use walstream_proto::BackendMessage;

        use crate::test_server::{ready, scripted};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let answer = vec![BackendMessage::CommandComplete("SELECT 0".into()), ready()];
            let mut c = scripted(vec![answer]).await;
            let e = c.simple_query("SELECT '\0'").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
            let e = c
                .copy_out("COPY t TO STDOUT \0")
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
            assert!(c.is_usable());
            let sets = c.simple_query_sets("SELECT").await.unwrap();
            assert_eq!(sets[0].tag(), Some("SELECT 0"));
        });
    }
}

#[cfg(test)]
mod logging_tests {
    use std::sync::{Arc, Mutex};

    use walstream_proto::{BackendMessage, ErrorFieldCode as C, ErrorFields};

    use super::*;
    use crate::test_server::{hello, ready, serve};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `f` on a fresh runtime with every event of this thread captured as text.
    fn logged(f: impl Future<Output = ()>) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(f);
        });
        captured.text()
    }

    fn notice(severity: &str, message: &str) -> BackendMessage {
        BackendMessage::NoticeResponse(
            ErrorFields::new()
                .with(C::SEVERITY, severity.to_owned())
                .with(C::SEVERITY_NONLOCALIZED, severity.to_owned())
                .with(C::CODE, "01000")
                .with(C::MESSAGE, message.to_owned()),
        )
    }

    #[test]
    fn notices_are_logged_by_severity() {
        let logs = logged(async {
            let script = vec![
                notice("WARNING", "wal_level is too low"),
                notice("NOTICE", "table exists, skipping"),
                BackendMessage::CommandComplete("DO".into()),
                ready(),
            ];
            let server = serve(
                hello("15.6", Bytes::from_static(&[1, 2, 3, 4])),
                vec![script],
            )
            .await;
            let mut config = server.config.clone();
            config.param("password", "hunter2-explicit").unwrap();
            let mut c = Client::connect(&config).await.unwrap();
            c.simple_query("DO $$ $$").await.unwrap();
            assert_eq!(c.take_notices().len(), 2);
        });
        let warn = logs
            .lines()
            .find(|l| l.contains("wal_level is too low"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(warn.contains("WARN") && warn.contains("01000"), "{warn}");
        let info = logs
            .lines()
            .find(|l| l.contains("table exists"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(info.contains("INFO"), "{info}");
        assert!(logs.contains("connecting"), "{logs}");
        assert!(!logs.contains("hunter2"), "{logs}");
    }

    #[cfg(unix)]
    #[test]
    fn insecure_password_file_is_logged_without_its_contents() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:hunter2-file\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let path_text = path.display().to_string();
        let logs = logged(async move {
            let server = serve(hello("15.6", Bytes::from_static(&[1, 2, 3, 4])), Vec::new()).await;
            let mut config = server.config.clone();
            config.param("passfile", &path_text).unwrap();
            Client::connect(&config).await.unwrap();
        });
        let line = logs
            .lines()
            .find(|l| l.contains("ignoring the password file"))
            .unwrap_or_else(|| panic!("{logs}"));
        assert!(
            line.contains("WARN") && line.contains("group or world access"),
            "{line}"
        );
        assert!(line.contains(&path.display().to_string()), "{line}");
        assert!(!logs.contains("hunter2"), "{logs}");
    }
}
