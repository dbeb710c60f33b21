//! Commands that read data from the client: `COPY ... FROM STDIN`, and on a physical
//! replication connection `UPLOAD_MANIFEST` (PostgreSQL 17+, before an incremental
//! `BASE_BACKUP`).
//!
//! [`Client::copy_in`] sends the command and waits for the server's `CopyInResponse`; the
//! returned [`CopyIn`] writer sends the data as CopyData messages of at most
//! [`CopyIn::MAX_MESSAGE`] bytes and writes them to the socket whenever
//! [`CopyIn::FLUSH_THRESHOLD`] bytes are queued, so memory stays bounded whatever the amount
//! of data. [`CopyIn::finish`] sends CopyDone and returns the command tag once the server
//! is ready again; [`CopyIn::abort`] sends CopyFail and returns the server's answering
//! error.
//!
//! The server may fail the COPY while data is still being sent (a malformed row, a manifest
//! of another cluster): the writer looks for the server's messages each time it writes to
//! the socket, and the next [`CopyIn::send`] (or `finish`) returns that error as
//! [`ErrorKind::Db`] once the server is ready again; the client stays usable.

use tokio::time::Instant;
use walstream_proto::CopyResponse;

use crate::client::Client;
use crate::error::{DbError, Error, ErrorKind};
use crate::machine::{Event, Phase};

/// A running `COPY ... FROM STDIN` (or `UPLOAD_MANIFEST`), created by [`Client::copy_in`]:
/// send the data with [`CopyIn::send`], then end it with [`CopyIn::finish`] or
/// [`CopyIn::abort`].
///
/// Sending has no overall deadline (a COPY may be long), but each write to the socket must
/// make progress within the client's command timeout
/// ([`Client::set_command_timeout`]), and `finish`/`abort` wait at most that long for the
/// server's answer.
///
/// Dropping the writer (or a `send`/`finish`/`abort` future) before the server's answer
/// leaves the [`Client`] marked broken: every later command fails with
/// [`ErrorKind::Closed`] (the server would otherwise still be waiting for COPY data), so
/// close or discard it then.
#[derive(Debug)]
pub struct CopyIn<'a> {
    client: &'a mut Client,
    response: CopyResponse,
    /// Bytes queued in the core since the last write to the socket.
    queued: usize,
    /// The server's error, once seen (it left COPY IN).
    error: Option<Box<DbError>>,
    /// The server is ready again (after its error): the command is over.
    done: bool,
}

impl Client {
    /// Sends `sql`, a command that reads data from the client (`COPY t FROM STDIN`, or
    /// `UPLOAD_MANIFEST` on a physical replication connection), and returns the writer for
    /// that data once the server answered with `CopyInResponse`.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Db`]: the server refused the command (its error; the client stays
    ///   usable);
    /// - [`ErrorKind::InvalidState`]: `sql` cannot be sent (an embedded NUL; the client
    ///   stays usable), or the command completed without starting COPY IN (its results are
    ///   discarded; the client stays usable);
    /// - [`ErrorKind::Unsupported`]: the command started COPY OUT or COPY BOTH (the
    ///   connection is broken);
    /// - [`ErrorKind::Timeout`], [`ErrorKind::Io`], [`ErrorKind::Closed`],
    ///   [`ErrorKind::Protocol`]: connection failures.
    pub async fn copy_in(&mut self, sql: &str) -> Result<CopyIn<'_>, Error> {
        self.begin()?;
        if let Err(e) = self.core().send_copy_in_query(sql) {
            if self.core().phase() == Phase::Idle {
                // Nothing was queued: the connection is as it was.
                self.end();
            }
            return Err(e);
        }
        let mut error: Option<Box<DbError>> = None;
        let mut completed = false;
        loop {
            let Some(ev) = self.next_event(None).await? else {
                continue;
            };
            match ev {
                Event::CopyIn(response) => {
                    // No overall deadline while the caller sends.
                    self.core().set_deadline(None);
                    return Ok(CopyIn {
                        client: self,
                        response,
                        queued: 0,
                        error: None,
                        done: false,
                    });
                }
                Event::QueryError(db) => error = Some(db),
                Event::CommandComplete(_) | Event::EmptyQuery => completed = true,
                Event::CopyOut(_) | Event::CopyBoth(_) => {
                    self.core().fail();
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        "the command started COPY OUT or COPY BOTH, not COPY IN",
                    ));
                }
                Event::ReadyForQuery(_) => {
                    self.end();
                    return Err(match error {
                        Some(db) => Error::db(*db),
                        None => Error::new(
                            ErrorKind::InvalidState,
                            if completed {
                                "the command completed without starting COPY IN"
                            } else {
                                "the command did not start COPY IN"
                            },
                        ),
                    });
                }
                _ => {}
            }
        }
    }
}

impl CopyIn<'_> {
    /// The largest CopyData message sent; larger [`CopyIn::send`] calls are split.
    pub const MAX_MESSAGE: usize = 64 * 1024;

    /// Queued data is written to the socket once this many bytes are waiting (and by
    /// [`CopyIn::flush`], [`CopyIn::finish`] and [`CopyIn::abort`]).
    pub const FLUSH_THRESHOLD: usize = 256 * 1024;

    /// The server's `CopyInResponse`: the overall format and the column formats.
    pub fn response(&self) -> &CopyResponse {
        &self.response
    }

    /// Queues `data` (split into CopyData messages of at most [`CopyIn::MAX_MESSAGE`]
    /// bytes), writing to the socket whenever [`CopyIn::FLUSH_THRESHOLD`] bytes are
    /// waiting. The data need not be aligned to rows or anything else.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Db`] when the server has failed the COPY (the client stays usable; the
    /// writer is finished), [`ErrorKind::InvalidState`] after the COPY ended, and the
    /// connection failures of [`CopyIn::flush`].
    pub async fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_open().await?;
        for chunk in data.chunks(Self::MAX_MESSAGE) {
            self.client.core().send_copy_data(chunk)?;
            self.queued = self.queued.saturating_add(chunk.len() + 5);
            if self.queued >= Self::FLUSH_THRESHOLD {
                self.flush().await?;
                self.check_open().await?;
            }
        }
        Ok(())
    }

    /// Writes everything queued to the socket, then takes in whatever the server has sent
    /// meanwhile (without waiting for more): an error of the server is returned by the next
    /// [`CopyIn::send`] or [`CopyIn::finish`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] when a write makes no progress for the command timeout;
    /// [`ErrorKind::Io`], [`ErrorKind::Closed`], [`ErrorKind::Protocol`]. After any of
    /// these the connection is broken.
    pub async fn flush(&mut self) -> Result<(), Error> {
        let timeout = self.client.command_timeout();
        match tokio::time::timeout(timeout, self.client.flush()).await {
            Ok(r) => r?,
            Err(_) => {
                self.client.core().fail();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "writing COPY data made no progress for {}s",
                        timeout.as_secs_f64()
                    ),
                ));
            }
        }
        self.queued = 0;
        self.poll_server().await
    }

    /// Sends CopyDone and waits for the server's answer: returns the command tag
    /// (`COPY 3`, `UPLOAD_MANIFEST`, ...) once the server is ready again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Db`] when the server failed the COPY (now or earlier; the client stays
    /// usable); [`ErrorKind::Timeout`] when the answer does not come within the command
    /// timeout, and connection failures (the connection is broken then).
    pub async fn finish(mut self) -> Result<Option<String>, Error> {
        self.check_open().await?;
        self.client.core().send_copy_done()?;
        self.arm_deadline();
        let mut tag = None;
        loop {
            let Some(ev) = self.client.next_event(None).await? else {
                continue;
            };
            match ev {
                Event::CommandComplete(t) => tag = Some(t),
                Event::QueryError(db) => self.error = Some(db),
                Event::ReadyForQuery(_) => {
                    self.client.end();
                    return match self.error.take() {
                        Some(db) => Err(Error::db(*db)),
                        None => Ok(tag),
                    };
                }
                _ => {}
            }
        }
    }

    /// Aborts the COPY with CopyFail carrying `message` and returns the error the server
    /// answers with (for `COPY`, SQLSTATE 57014 `COPY from stdin failed: <message>`), or
    /// the error it had already failed the COPY with. The client stays usable.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if `message` cannot be sent (an embedded NUL; the COPY
    /// stays open); [`ErrorKind::Protocol`] if the server completed the command anyway;
    /// timeouts and connection failures as for [`CopyIn::finish`].
    pub async fn abort(mut self, message: &str) -> Result<DbError, Error> {
        if !self.done {
            self.client.core().send_copy_fail(message)?;
            self.arm_deadline();
        }
        while !self.done {
            self.next_answer().await?;
        }
        self.error.take().map(|db| *db).ok_or_else(|| {
            Error::protocol("the server completed the COPY although the client aborted it")
        })
    }

    /// The server's answer is due within the command timeout.
    fn arm_deadline(&mut self) {
        let deadline = Instant::now() + self.client.command_timeout();
        self.client.core().set_deadline(Some(deadline.into_std()));
    }

    /// Ok while the COPY is open; the server's error once it failed the COPY (after waiting
    /// for its ReadyForQuery, so that the client is usable again).
    async fn check_open(&mut self) -> Result<(), Error> {
        if self.error.is_none() {
            return if self.done {
                Err(Error::new(ErrorKind::InvalidState, "the COPY has ended"))
            } else {
                Ok(())
            };
        }
        if !self.done {
            self.arm_deadline();
        }
        while !self.done {
            self.next_answer().await?;
        }
        match self.error.take() {
            Some(db) => Err(Error::db(*db)),
            None => Err(Error::new(ErrorKind::InvalidState, "the COPY has ended")),
        }
    }

    /// Takes in what the server has sent, without waiting.
    async fn poll_server(&mut self) -> Result<(), Error> {
        while !self.done {
            let now = Instant::now();
            match self.client.next_event(Some(now)).await? {
                Some(ev) => self.observe(ev)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Waits for the next event of the server's answer.
    async fn next_answer(&mut self) -> Result<(), Error> {
        if let Some(ev) = self.client.next_event(None).await? {
            self.observe(ev)?;
        }
        Ok(())
    }

    fn observe(&mut self, ev: Event) -> Result<(), Error> {
        match ev {
            Event::QueryError(db) => {
                self.error.get_or_insert(db);
            }
            Event::ReadyForQuery(_) => {
                self.done = true;
                self.client.end();
            }
            Event::CommandComplete(_) if self.error.is_none() => {
                self.client.core().fail();
                return Err(Error::protocol(
                    "the server completed the COPY before the client ended it",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! A scripted server on a loopback socket: answers that a real server gives only under
    //! rare timing (an error right after `CopyInResponse`) or never (protocol violations).

    use walstream_proto::{
        BackendMessage, DataRow, ErrorFieldCode as C, ErrorFields, FieldDescription, FormatCode,
        Oid,
    };

    use super::*;
    use crate::test_server::{ready, scripted};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn copy_in_response() -> BackendMessage {
        BackendMessage::CopyInResponse(CopyResponse {
            format: FormatCode::TEXT,
            column_formats: vec![FormatCode::TEXT; 2],
        })
    }

    fn error(code: &str, message: &str) -> BackendMessage {
        BackendMessage::ErrorResponse(
            ErrorFields::new()
                .with(C::SEVERITY, "ERROR")
                .with(C::SEVERITY_NONLOCALIZED, "ERROR")
                .with(C::CODE, code.to_owned())
                .with(C::MESSAGE, message.to_owned()),
        )
    }

    #[test]
    fn an_error_right_after_copy_in_response_surfaces_and_the_client_survives() {
        let script = vec![
            copy_in_response(),
            error("22P02", "invalid input syntax"),
            ready(),
        ];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            assert_eq!(copy.response().column_formats.len(), 2);
            // Larger than the flush threshold: the writer looks at the server's messages.
            let data = vec![b'x'; 3 * CopyIn::FLUSH_THRESHOLD];
            let e = match copy.send(&data).await {
                Err(e) => e,
                Ok(()) => copy.finish().await.unwrap_err(),
            };
            assert_eq!(e.kind(), ErrorKind::Db, "{e}");
            assert_eq!(
                e.code().map(|c| c.code().to_owned()).as_deref(),
                Some("22P02")
            );
            assert!(c.is_usable());
        });
    }

    #[test]
    fn commands_that_do_not_start_copy_in() {
        let field = FieldDescription {
            name: "x".into(),
            table_oid: Oid(0),
            column_id: 0,
            type_oid: Oid(23),
            type_size: 4,
            type_modifier: -1,
            format: FormatCode::TEXT,
        };
        let rows = vec![
            BackendMessage::RowDescription(vec![field]),
            BackendMessage::DataRow(DataRow::from_columns([Some("1")]).unwrap()),
            BackendMessage::CommandComplete("SELECT 1".into()),
            ready(),
        ];
        let refused = vec![error("42P01", "relation \"t\" does not exist"), ready()];
        let copy_out = vec![BackendMessage::CopyOutResponse(CopyResponse::default())];
        rt().block_on(async {
            let mut c = scripted(vec![rows, refused, copy_out]).await;
            let e = c.copy_in("SELECT 1").await.map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
            assert!(c.is_usable());
            let e = c
                .copy_in("COPY t FROM STDIN")
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Db, "{e}");
            assert!(c.is_usable());
            // Not even sent: the query cannot be encoded.
            let e = c
                .copy_in("COPY t FROM STDIN\0")
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
            assert!(c.is_usable());
            let e = c.copy_in("COPY t TO STDOUT").await.map(|_| ()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(!c.is_usable());
        });
    }

    #[test]
    fn a_server_completing_the_copy_on_its_own_breaks_the_connection() {
        let script = vec![
            copy_in_response(),
            BackendMessage::CommandComplete("COPY 0".into()),
            ready(),
        ];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            // Found while starting (the whole answer came in one read) or while sending.
            let data = vec![b'x'; 2 * CopyIn::FLUSH_THRESHOLD];
            let r = async {
                let mut copy = c.copy_in("COPY t FROM STDIN").await?;
                copy.send(&data).await?;
                copy.finish().await
            }
            .await;
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
            assert!(!c.is_usable());
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        });
    }

    #[test]
    fn abort_without_an_answer_times_out_and_breaks_the_connection() {
        // The server starts COPY IN, then says nothing more.
        let script = vec![copy_in_response()];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            c.set_command_timeout(std::time::Duration::from_millis(300));
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            copy.send(b"1\tone\n").await.unwrap();
            copy.flush().await.unwrap();
            let e = copy.abort("stop").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(!c.is_usable());
        });
    }
}
