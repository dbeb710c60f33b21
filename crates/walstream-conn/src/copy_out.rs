//! Commands whose answer mixes result sets and COPY OUT phases, streamed item by item:
//! `BASE_BACKUP` above all, and `COPY ... TO STDOUT`.
//!
//! `BASE_BACKUP` answers with ordinary result sets (start position, tablespaces), then COPY
//! OUT data — one COPY per tablespace plus one for the manifest on PostgreSQL 14, a single
//! COPY carrying `n`/`d`/`p`/`m` messages on 15 and later (see
//! [`BaseBackupMessage`](walstream_proto::BaseBackupMessage)) — and a final result set (end
//! position). A [`CopyOutStream`] hands these over in order as [`CopyOutItem`]s without
//! interpreting them, so one API serves every version.
//!
//! Memory stays bounded: COPY data is handed over message by message as it arrives (each
//! chunk a [`Bytes`] sharing the receive buffer, never copied, never accumulated), and only
//! result sets — small for `BASE_BACKUP` — are collected, up to
//! [`CopyOutStream::MAX_RESULT_SET_BYTES`].
//!
//! There is no deadline for the whole command (a backup may run for hours); instead the
//! stream fails with [`ErrorKind::Timeout`] when the server sends nothing for the idle
//! timeout ([`CopyOutStream::set_idle_timeout`]).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use walstream_proto::CopyResponse;

use crate::client::{Client, ResultSet, Row};
use crate::error::{DbError, Error, ErrorKind};
use crate::machine::Event;

/// One step of a command's answer, in the order the server sent it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CopyOutItem {
    /// A complete result set (a statement's rows, or just its command tag).
    ResultSet(ResultSet),
    /// A COPY OUT phase starts (`CopyOutResponse`).
    CopyStart(CopyResponse),
    /// One `CopyData` message, as the server framed it.
    CopyData(Bytes),
    /// The current COPY OUT phase ended (`CopyDone`).
    CopyEnd,
}

/// A running command whose answer mixes result sets and COPY OUT phases, streamed as
/// [`CopyOutItem`]s in the server's order: `BASE_BACKUP` above all, and `COPY ... TO
/// STDOUT`. Created by [`Client::copy_out`] and [`Client::base_backup`].
///
/// Items are handed over without interpretation, so one API serves every server version
/// (PostgreSQL 14 sends one COPY per tablespace plus one for the manifest; 15 and later one
/// COPY carrying [`BaseBackupMessage`](walstream_proto::BaseBackupMessage)s).
///
/// Memory stays bounded: COPY data is handed over message by message as it arrives (each
/// chunk a [`Bytes`] sharing the receive buffer, never copied or accumulated); only result
/// sets are collected, up to [`CopyOutStream::MAX_RESULT_SET_BYTES`]. There is no deadline
/// for the whole command (a backup may run for hours): the stream fails with
/// [`ErrorKind::Timeout`] when the server sends nothing for the idle timeout
/// ([`CopyOutStream::set_idle_timeout`]).
///
/// Call [`CopyOutStream::next`] until it returns `Ok(None)`: the command completed and the
/// client is idle again. Dropping the stream earlier (or dropping a `next` future) leaves
/// the [`Client`] marked broken — every later command fails with [`ErrorKind::Closed`]
/// rather than reading the abandoned command's data — so close or discard it then.
#[derive(Debug)]
pub struct CopyOutStream<'a> {
    client: &'a mut Client,
    /// The result set being collected (rows seen, no `CommandComplete` yet).
    current: Option<ResultSet>,
    /// Row bytes in `current`.
    current_bytes: usize,
    /// An item that follows the flushed result set.
    queued: Option<CopyOutItem>,
    /// The server reported an error; `ReadyForQuery` follows.
    error: Option<DbError>,
    finished: bool,
}

impl Client {
    /// Sends `sql`, a command that answers with result sets and COPY OUT phases (`COPY ...
    /// TO STDOUT`, `BASE_BACKUP`), and returns the stream of its answer. The idle timeout
    /// starts as [`CopyOutStream::DEFAULT_IDLE_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Closed`] if the connection is broken, [`ErrorKind::InvalidState`] if
    /// `sql` cannot be sent, I/O errors while sending. The server's answer (including its
    /// errors) comes through [`CopyOutStream::next`].
    pub async fn copy_out(&mut self, sql: &str) -> Result<CopyOutStream<'_>, Error> {
        self.start_query(sql)?;
        self.set_idle_timeout(Some(CopyOutStream::DEFAULT_IDLE_TIMEOUT));
        self.flush().await?;
        Ok(CopyOutStream {
            client: self,
            current: None,
            current_bytes: 0,
            queued: None,
            error: None,
            finished: false,
        })
    }

    /// Runs `BASE_BACKUP` on a physical replication connection (`replication=true`) and
    /// streams its answer; `command` is the full command text, whose syntax depends on the
    /// server version (`BASE_BACKUP LABEL 'x' NOWAIT` on 14, `BASE_BACKUP (LABEL 'x', WAIT
    /// false)` on 15 and later).
    ///
    /// The items come in the server's order: the start-position result set (one row:
    /// `recptr`, `tli`), the tablespace result set (`spcoid`, `spclocation`, `size`), then
    /// the archives — on 14 one `CopyStart`…`CopyEnd` per tablespace with raw tar data and
    /// one more for the manifest, on 15+ one COPY whose data messages are
    /// [`BaseBackupMessage`](walstream_proto::BaseBackupMessage)s — and the end-position
    /// result set.
    ///
    /// With a spread checkpoint (the default), the server sends nothing until the checkpoint
    /// is done, and with `WAIT` nothing until the WAL is archived: raise the idle timeout
    /// ([`CopyOutStream::set_idle_timeout`]) accordingly, or use `CHECKPOINT 'fast'`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidState`] if `command` is not a `BASE_BACKUP` command; otherwise as
    /// [`Client::copy_out`].
    pub async fn base_backup(&mut self, command: &str) -> Result<CopyOutStream<'_>, Error> {
        let keyword = command.trim_start().get(..11);
        if !keyword.is_some_and(|k| k.eq_ignore_ascii_case("BASE_BACKUP")) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                "base_backup needs a BASE_BACKUP command",
            ));
        }
        self.copy_out(command).await
    }
}

impl CopyOutStream<'_> {
    /// The idle timeout a new stream starts with.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

    /// The most row bytes one result set may hold (result sets are collected whole; the
    /// ones `BASE_BACKUP` sends are tiny).
    pub const MAX_RESULT_SET_BYTES: usize = 16 * 1024 * 1024;

    /// Fails the stream with [`ErrorKind::Timeout`] (and breaks the connection) when the
    /// server sends no bytes for `timeout`; `None` waits forever (TCP keepalives still
    /// notice a dead peer).
    pub fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.client.set_idle_timeout(timeout);
    }

    /// The next item; `Ok(None)` once the command completed and the client is idle again.
    ///
    /// # Errors
    ///
    /// - [`ErrorKind::Db`]: the server failed the command (its error, after the server is
    ///   ready again: the client stays usable);
    /// - [`ErrorKind::Timeout`]: nothing arrived for the idle timeout;
    /// - [`ErrorKind::Unsupported`]: a result set exceeded
    ///   [`CopyOutStream::MAX_RESULT_SET_BYTES`], or the command started COPY BOTH (a
    ///   COPY IN is refused by the client and fails as [`ErrorKind::Db`]);
    /// - [`ErrorKind::Protocol`], [`ErrorKind::Io`], [`ErrorKind::Closed`]: connection
    ///   failures.
    ///
    /// After any error other than [`ErrorKind::Db`] the connection is broken.
    pub async fn next(&mut self) -> Result<Option<CopyOutItem>, Error> {
        loop {
            if let Some(item) = self.queued.take() {
                return Ok(Some(item));
            }
            if self.finished {
                return match self.error.take() {
                    Some(db) => Err(Error::db(db)),
                    None => Ok(None),
                };
            }
            let ev = match self.client.next_event(None).await {
                Ok(Some(ev)) => ev,
                Ok(None) => continue,
                Err(e) if e.kind() == ErrorKind::Timeout => {
                    return Err(e.context("the server sent nothing for the idle timeout"));
                }
                Err(e) => return Err(e),
            };
            if let Some(item) = self.handle(ev)? {
                return Ok(Some(item));
            }
        }
    }

    /// Reads the rest of the answer, discarding it; returns the result sets met on the way.
    /// Useful to end a `COPY` early without breaking the connection (the server still sends
    /// everything).
    pub async fn drain(&mut self) -> Result<Vec<ResultSet>, Error> {
        let mut sets = Vec::new();
        while let Some(item) = self.next().await? {
            if let CopyOutItem::ResultSet(s) = item {
                sets.push(s);
            }
        }
        Ok(sets)
    }

    /// The command's cycle ended: the client is idle again.
    fn finish(&mut self) {
        self.finished = true;
        self.client.set_idle_timeout(None);
        self.client.end();
    }

    /// Completes the result set being collected, if any.
    fn flush_set(&mut self) -> Option<CopyOutItem> {
        self.current_bytes = 0;
        self.current.take().map(CopyOutItem::ResultSet)
    }

    /// Returns the flushed result set first, `then` after it.
    fn after_set(&mut self, then: CopyOutItem) -> CopyOutItem {
        match self.flush_set() {
            Some(set) => {
                self.queued = Some(then);
                set
            }
            None => then,
        }
    }

    fn handle(&mut self, ev: Event) -> Result<Option<CopyOutItem>, Error> {
        if self.error.is_some() {
            // After an error the server only finishes the cycle; drop anything else.
            if let Event::ReadyForQuery(_) = ev {
                self.finish();
            }
            return Ok(None);
        }
        Ok(match ev {
            Event::RowDescription(cols) => {
                let previous = self.flush_set();
                self.current = Some(ResultSet::new(cols));
                previous
            }
            Event::DataRow(row) => {
                let size = row.columns().flatten().map(|c| c.len() + 4).sum::<usize>();
                self.current_bytes = self.current_bytes.saturating_add(size);
                if self.current_bytes > Self::MAX_RESULT_SET_BYTES {
                    self.client.core().fail();
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "a result set exceeded {} bytes; use simple_query for large results",
                            Self::MAX_RESULT_SET_BYTES
                        ),
                    ));
                }
                let set = self.current.get_or_insert_with(ResultSet::default);
                let row = Row::new(set.columns_arc(), &row);
                set.push_row(row);
                None
            }
            Event::CommandComplete(tag) => {
                let mut set = self.current.take().unwrap_or_default();
                self.current_bytes = 0;
                set.set_tag(tag);
                Some(CopyOutItem::ResultSet(set))
            }
            Event::EmptyQuery => Some(self.after_set(CopyOutItem::ResultSet(ResultSet::default()))),
            Event::CopyOut(r) => Some(self.after_set(CopyOutItem::CopyStart(r))),
            Event::CopyData(data) => Some(CopyOutItem::CopyData(data)),
            Event::CopyDone => Some(CopyOutItem::CopyEnd),
            Event::QueryError(db) => {
                self.current = None;
                self.current_bytes = 0;
                self.error = Some(*db);
                None
            }
            Event::ReadyForQuery(_) => {
                self.finish();
                self.flush_set()
            }
            Event::CopyBoth(_) => {
                self.client.core().fail();
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "the command started COPY BOTH; use the replication stream API for it",
                ));
            }
            _ => None,
        })
    }
}

impl Client {
    /// Sets or clears the idle timeout of a streaming command (see [`CopyOutStream`]) and
    /// arms it from now.
    fn set_idle_timeout(&mut self, timeout: Option<Duration>) {
        self.idle_timeout = timeout;
        let deadline = timeout.map(|t| (Instant::now() + t).into_std());
        self.core().set_deadline(deadline);
    }
}

#[cfg(test)]
mod tests {
    //! A scripted server on a loopback socket: server layouts this machine's PostgreSQL
    //! does not produce (PostgreSQL 14's one COPY per tablespace, result sets without
    //! `CommandComplete`), idle timeouts and errors in the middle of a COPY.

    use walstream_proto::{
        BackendMessage, DataRow, ErrorFieldCode as C, ErrorFields, FieldDescription, FormatCode,
        Oid,
    };

    use super::*;
    use crate::test_server::{ready, scripted};

    fn field(name: &str) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid: Oid(0),
            column_id: 0,
            type_oid: Oid(25),
            type_size: -1,
            type_modifier: 0,
            format: FormatCode::TEXT,
        }
    }

    fn row(cols: &[Option<&str>]) -> BackendMessage {
        BackendMessage::DataRow(DataRow::from_columns(cols.iter().copied()).unwrap())
    }

    fn copy_out() -> BackendMessage {
        BackendMessage::CopyOutResponse(CopyResponse {
            format: FormatCode::BINARY,
            column_formats: Vec::new(),
        })
    }

    fn data(d: &'static [u8]) -> BackendMessage {
        BackendMessage::CopyData(Bytes::from_static(d))
    }

    fn complete(tag: &str) -> BackendMessage {
        BackendMessage::CommandComplete(tag.into())
    }

    async fn collect(s: &mut CopyOutStream<'_>) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        while let Some(item) = s.next().await? {
            out.push(match item {
                CopyOutItem::ResultSet(set) => {
                    let rows: Vec<String> = set
                        .rows()
                        .iter()
                        .map(|r| (0..r.len()).map(|i| r.get(i).unwrap_or("-")).collect())
                        .collect();
                    format!("set[{}] {:?} {:?}", set.columns().len(), rows, set.tag())
                }
                CopyOutItem::CopyStart(_) => "start".into(),
                CopyOutItem::CopyData(d) => format!("data {}", String::from_utf8_lossy(&d)),
                CopyOutItem::CopyEnd => "end".into(),
            });
        }
        Ok(out)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn postgres_14_layout_one_copy_per_tablespace() {
        let notice = BackendMessage::NoticeResponse(
            ErrorFields::new()
                .with(C::SEVERITY, "NOTICE")
                .with(C::CODE, "00000")
                .with(C::MESSAGE, "all required WAL segments have been archived"),
        );
        let script = vec![
            BackendMessage::RowDescription(vec![field("recptr"), field("tli")]),
            row(&[Some("0/2000028"), Some("1")]),
            complete("SELECT"),
            BackendMessage::RowDescription(vec![
                field("spcoid"),
                field("spclocation"),
                field("size"),
            ]),
            row(&[Some("16384"), Some("/ts"), None]),
            row(&[None, None, None]),
            complete("SELECT"),
            copy_out(),
            data(b"ts-tar"),
            BackendMessage::CopyDone,
            copy_out(),
            data(b"base-"),
            data(b"tar"),
            BackendMessage::CopyDone,
            copy_out(),
            data(b"{manifest}"),
            BackendMessage::CopyDone,
            notice,
            BackendMessage::RowDescription(vec![field("recptr"), field("tli")]),
            row(&[Some("0/2000100"), Some("1")]),
            complete("SELECT"),
            complete("BASE_BACKUP"),
            ready(),
        ];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            let mut s = c
                .base_backup(" base_backup LABEL 'x' NOWAIT")
                .await
                .unwrap();
            let items = collect(&mut s).await.unwrap();
            assert_eq!(
                items,
                [
                    r#"set[2] ["0/20000281"] Some("SELECT")"#,
                    r#"set[3] ["16384/ts-", "---"] Some("SELECT")"#,
                    "start",
                    "data ts-tar",
                    "end",
                    "start",
                    "data base-",
                    "data tar",
                    "end",
                    "start",
                    "data {manifest}",
                    "end",
                    r#"set[2] ["0/20001001"] Some("SELECT")"#,
                    r#"set[0] [] Some("BASE_BACKUP")"#,
                ]
            );
            // Finished: idle again, and `next` keeps saying so.
            assert!(s.next().await.unwrap().is_none());
            assert!(c.is_usable());
            assert!(c.take_notices()[0].message().contains("archived"));
        });
    }

    #[test]
    fn result_sets_without_command_complete_are_delimited() {
        let script = vec![
            BackendMessage::RowDescription(vec![field("a")]),
            row(&[Some("1")]),
            BackendMessage::RowDescription(vec![field("b")]),
            row(&[Some("2")]),
            copy_out(),
            BackendMessage::CopyDone,
            BackendMessage::RowDescription(vec![field("c")]),
            row(&[Some("3")]),
            BackendMessage::EmptyQueryResponse,
            BackendMessage::RowDescription(vec![field("d")]),
            row(&[Some("4")]),
            ready(),
        ];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            let mut s = c.copy_out("anything").await.unwrap();
            assert_eq!(
                collect(&mut s).await.unwrap(),
                [
                    r#"set[1] ["1"] None"#,
                    r#"set[1] ["2"] None"#,
                    "start",
                    "end",
                    r#"set[1] ["3"] None"#,
                    "set[0] [] None",
                    r#"set[1] ["4"] None"#,
                ]
            );
            assert!(c.is_usable());
        });
    }

    #[test]
    fn error_mid_copy_is_a_db_error_and_the_client_survives() {
        let failing = vec![
            copy_out(),
            data(b"partial"),
            BackendMessage::ErrorResponse(
                ErrorFields::new()
                    .with(C::SEVERITY, "ERROR")
                    .with(C::SEVERITY_NONLOCALIZED, "ERROR")
                    .with(C::CODE, "58P01")
                    .with(C::MESSAGE, "could not open file"),
            ),
            ready(),
        ];
        let after = vec![
            BackendMessage::RowDescription(vec![field("x")]),
            row(&[Some("1")]),
            complete("SELECT 1"),
            ready(),
        ];
        rt().block_on(async {
            let mut c = scripted(vec![failing, after]).await;
            let mut s = c.copy_out("BASE_BACKUP").await.unwrap();
            assert!(matches!(
                s.next().await,
                Ok(Some(CopyOutItem::CopyStart(_)))
            ));
            assert!(matches!(s.next().await, Ok(Some(CopyOutItem::CopyData(_)))));
            let e = s.next().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Db);
            assert_eq!(
                e.code().map(|c| c.code().to_owned()).as_deref(),
                Some("58P01")
            );
            assert!(s.next().await.unwrap().is_none());
            assert!(c.is_usable());
            assert_eq!(
                c.simple_query("SELECT 1").await.unwrap()[0].get(0),
                Some("1")
            );
        });
    }

    #[test]
    fn idle_timeout_breaks_the_connection() {
        // The server starts the COPY, sends one chunk and goes quiet.
        let script = vec![copy_out(), data(b"first")];
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            let mut s = c.copy_out("BASE_BACKUP").await.unwrap();
            s.set_idle_timeout(Some(Duration::from_millis(200)));
            let started = Instant::now();
            assert!(matches!(
                s.next().await,
                Ok(Some(CopyOutItem::CopyStart(_)))
            ));
            assert!(matches!(s.next().await, Ok(Some(CopyOutItem::CopyData(_)))));
            let e = s.next().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
            assert!(started.elapsed() >= Duration::from_millis(200));
            assert!(!c.is_usable());
            let e = c.simple_query("SELECT 1").await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Closed);
        });
    }

    #[test]
    fn oversized_result_set_is_refused() {
        static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
        let big = std::str::from_utf8(&BIG).unwrap();
        let mut script = vec![BackendMessage::RowDescription(vec![field("blob")])];
        for _ in 0..17 {
            script.push(row(&[Some(big)]));
        }
        script.push(complete("SELECT 17"));
        script.push(ready());
        rt().block_on(async {
            let mut c = scripted(vec![script]).await;
            let mut s = c.copy_out("SELECT blob").await.unwrap();
            let e = s.next().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(!c.is_usable());
        });
    }
}
