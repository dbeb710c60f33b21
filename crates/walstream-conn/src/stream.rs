//! The streaming phase: after `START_REPLICATION`, a [`ReplicationStream`] yields WAL data
//! and keepalives and sends standby status updates.
//!
//! Feedback scheduling is sans-IO ([`FeedbackSchedule`]): the stream sends a status update
//! every `status_interval` (default 10 s, like `wal_receiver_status_interval`) and at once
//! when a keepalive asks for a reply.

use std::time::{Duration, SystemTime};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::time::Instant;
use walstream_proto::{Lsn, PgTimestamp, TimelineId, Xid};

use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::machine::Event;
use crate::replication::{start_logical_command, start_physical_command};

/// A message received during streaming replication
/// ([protocol-replication](https://www.postgresql.org/docs/current/protocol-replication.html)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamMessage {
    /// `w` XLogData: WAL bytes (physical) or one output-plugin message (logical).
    XLogData {
        /// Start of the WAL data in this message.
        wal_start: Lsn,
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// The server's clock when sending.
        send_time: PgTimestamp,
        /// The payload, sharing the receive buffer's memory.
        data: Bytes,
    },
    /// `k` primary keepalive.
    Keepalive {
        /// The server's current end of WAL.
        wal_end: Lsn,
        /// The server's clock when sending.
        send_time: PgTimestamp,
        /// The server asks for an immediate status update (already sent by the stream).
        reply_requested: bool,
    },
}

impl StreamMessage {
    /// Decodes one CopyData payload.
    pub fn decode(mut payload: Bytes) -> Result<Self, Error> {
        let bad =
            |what: &'static str| Error::protocol(format!("malformed replication message: {what}"));
        let Some(&tag) = payload.first() else {
            return Err(bad("empty CopyData"));
        };
        payload.advance(1);
        match tag {
            b'w' => {
                if payload.len() < 24 {
                    return Err(bad("XLogData header truncated"));
                }
                let wal_start = Lsn(payload.get_u64());
                let wal_end = Lsn(payload.get_u64());
                let send_time = PgTimestamp(payload.get_i64());
                Ok(Self::XLogData {
                    wal_start,
                    wal_end,
                    send_time,
                    data: payload,
                })
            }
            b'k' => {
                if payload.len() != 17 {
                    return Err(bad("keepalive has the wrong length"));
                }
                let wal_end = Lsn(payload.get_u64());
                let send_time = PgTimestamp(payload.get_i64());
                let reply_requested = match payload.get_u8() {
                    0 => false,
                    1 => true,
                    _ => return Err(bad("keepalive reply flag is not 0 or 1")),
                };
                Ok(Self::Keepalive {
                    wal_end,
                    send_time,
                    reply_requested,
                })
            }
            other => Err(Error::protocol(format!(
                "unknown replication message tag 0x{other:02x}"
            ))),
        }
    }
}

/// Encodes a standby status update (`r`).
pub fn encode_status_update(
    buf: &mut BytesMut,
    lsns: &FeedbackLsns,
    now: PgTimestamp,
    reply_requested: bool,
) {
    buf.put_u8(b'r');
    buf.put_u64(lsns.write.0);
    buf.put_u64(lsns.flush.0);
    buf.put_u64(lsns.apply.0);
    buf.put_i64(now.0);
    buf.put_u8(u8::from(reply_requested));
}

/// Encodes a hot standby feedback message (`h`).
pub fn encode_hot_standby_feedback(
    buf: &mut BytesMut,
    now: PgTimestamp,
    feedback: &HotStandbyFeedback,
) {
    buf.put_u8(b'h');
    buf.put_i64(now.0);
    buf.put_u32(feedback.xmin.0);
    buf.put_u32(feedback.xmin_epoch);
    buf.put_u32(feedback.catalog_xmin.0);
    buf.put_u32(feedback.catalog_xmin_epoch);
}

/// The positions reported in standby status updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedbackLsns {
    /// Last WAL byte + 1 received and written.
    pub write: Lsn,
    /// Last WAL byte + 1 flushed (durably processed); the server may discard WAL before it
    /// and, for logical slots, advances `confirmed_flush_lsn` to it.
    pub flush: Lsn,
    /// Last WAL byte + 1 applied.
    pub apply: Lsn,
}

/// Hot standby feedback values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HotStandbyFeedback {
    /// The standby's xmin (0 to stop holding back).
    pub xmin: Xid,
    /// Epoch of `xmin`.
    pub xmin_epoch: u32,
    /// The standby's catalog xmin.
    pub catalog_xmin: Xid,
    /// Epoch of `catalog_xmin`.
    pub catalog_xmin_epoch: u32,
}

/// When to send the next status update (sans-IO: time is passed in).
#[derive(Debug, Clone)]
pub struct FeedbackSchedule {
    interval: Duration,
    next: Option<std::time::Instant>,
}

impl FeedbackSchedule {
    /// Sends every `interval` (zero disables periodic updates).
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: None,
        }
    }

    /// Records that an update was sent at `now`.
    pub fn sent(&mut self, now: std::time::Instant) {
        self.next = (!self.interval.is_zero()).then(|| now + self.interval);
    }

    /// When the next periodic update is due (`None`: never, or not started).
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.next
    }

    /// Whether an update is due at `now`.
    pub fn is_due(&self, now: std::time::Instant) -> bool {
        self.next.is_some_and(|n| now >= n)
    }
}

/// The next timeline announced by the server after a physical stream reached the end of
/// its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextTimeline {
    /// The next timeline.
    pub timeline: TimelineId,
    /// Where the next timeline starts.
    pub start: Lsn,
}

/// A running `START_REPLICATION` (COPY BOTH). Owns the [`Client`]; get it back with
/// [`ReplicationStream::finish`].
#[derive(Debug)]
pub struct ReplicationStream {
    client: Client,
    lsns: FeedbackLsns,
    schedule: FeedbackSchedule,
    server_done: bool,
    out: BytesMut,
}

fn now_pg() -> PgTimestamp {
    PgTimestamp::from_system_time(SystemTime::now()).unwrap_or(PgTimestamp::PG_EPOCH)
}

impl Client {
    /// `START_REPLICATION SLOT slot LOGICAL start (options)`; the option names are quoted
    /// as identifiers and values as string literals. On error the client is dropped.
    pub async fn start_logical_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, Error> {
        let sql = start_logical_command(slot, start, options, self.standard_conforming_strings())?;
        self.start_copy_both(&sql).await?;
        Ok(ReplicationStream::new(self))
    }

    /// `START_REPLICATION [SLOT slot] PHYSICAL start [TIMELINE t]`. On error the client is
    /// dropped.
    pub async fn start_physical_replication(
        mut self,
        slot: Option<&str>,
        start: Lsn,
        timeline: Option<TimelineId>,
    ) -> Result<ReplicationStream, Error> {
        let sql = start_physical_command(slot, start, timeline)?;
        self.start_copy_both(&sql).await?;
        Ok(ReplicationStream::new(self))
    }
}

impl ReplicationStream {
    /// The default interval between status updates.
    pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

    fn new(client: Client) -> Self {
        let mut schedule = FeedbackSchedule::new(Self::DEFAULT_STATUS_INTERVAL);
        schedule.sent(Instant::now().into_std());
        Self {
            client,
            lsns: FeedbackLsns::default(),
            schedule,
            server_done: false,
            out: BytesMut::with_capacity(64),
        }
    }

    /// Changes the status update interval (zero: only on request and explicit calls).
    pub fn set_status_interval(&mut self, interval: Duration) {
        self.schedule = FeedbackSchedule::new(interval);
        self.schedule.sent(Instant::now().into_std());
    }

    /// Sets the positions reported by the following status updates. Positions never move
    /// backwards.
    pub fn set_lsns(&mut self, lsns: FeedbackLsns) {
        self.lsns.write = self.lsns.write.max(lsns.write);
        self.lsns.flush = self.lsns.flush.max(lsns.flush);
        self.lsns.apply = self.lsns.apply.max(lsns.apply);
    }

    /// Reports everything up to `lsn` as written, flushed and applied.
    pub fn set_flushed(&mut self, lsn: Lsn) {
        self.set_lsns(FeedbackLsns {
            write: lsn,
            flush: lsn,
            apply: lsn,
        });
    }

    /// The positions the next status update reports.
    pub fn lsns(&self) -> FeedbackLsns {
        self.lsns
    }

    /// The client's server parameters (e.g. `server_version`).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a standby status update now.
    pub async fn send_status_update(&mut self, reply_requested: bool) -> Result<(), Error> {
        if self.server_done {
            return Ok(());
        }
        self.out.clear();
        encode_status_update(&mut self.out, &self.lsns, now_pg(), reply_requested);
        self.client.core().send_copy_data(&self.out)?;
        self.client.flush().await?;
        self.schedule.sent(Instant::now().into_std());
        Ok(())
    }

    /// Sends hot standby feedback (physical replication).
    pub async fn send_hot_standby_feedback(
        &mut self,
        feedback: &HotStandbyFeedback,
    ) -> Result<(), Error> {
        self.out.clear();
        encode_hot_standby_feedback(&mut self.out, now_pg(), feedback);
        self.client.core().send_copy_data(&self.out)?;
        self.client.flush().await
    }

    /// The next message; `Ok(None)` when the server ended the stream (CopyDone, e.g. at the
    /// end of a timeline) — then call [`ReplicationStream::finish`].
    pub async fn next_message(&mut self) -> Result<Option<StreamMessage>, Error> {
        loop {
            if self.server_done {
                return Ok(None);
            }
            let now = Instant::now();
            if self.schedule.is_due(now.into_std()) {
                self.send_status_update(false).await?;
            }
            let wake = self.schedule.poll_timeout().map(Instant::from_std);
            let Some(ev) = self.client.next_event(wake).await? else {
                continue;
            };
            match ev {
                Event::CopyData(payload) => {
                    let msg = StreamMessage::decode(payload)?;
                    if let StreamMessage::Keepalive {
                        reply_requested: true,
                        ..
                    } = msg
                    {
                        self.send_status_update(false).await?;
                    }
                    return Ok(Some(msg));
                }
                Event::CopyDone => {
                    self.server_done = true;
                    return Ok(None);
                }
                Event::QueryError(db) => {
                    // The server left COPY mode; drain to ReadyForQuery so the error is
                    // reported with the connection in a known state.
                    self.drain_to_ready().await?;
                    return Err(Error::db(db).context("replication stream failed"));
                }
                _ => {}
            }
        }
    }

    async fn drain_to_ready(&mut self) -> Result<Option<NextTimeline>, Error> {
        let mut next = None;
        loop {
            let Some(ev) = self.client.next_event(None).await? else {
                continue;
            };
            match ev {
                Event::DataRow(row) => {
                    let cols: Vec<_> = row.columns().collect();
                    let text = |i: usize| {
                        cols.get(i)
                            .and_then(Option::as_ref)
                            .and_then(|b| std::str::from_utf8(b).ok())
                    };
                    if let (Some(t), Some(l)) = (text(0), text(1)) {
                        let timeline = t.parse::<u32>().map(TimelineId).map_err(|e| {
                            Error::with_source(ErrorKind::Protocol, "invalid next timeline", e)
                        })?;
                        let start = l.parse().map_err(|e| {
                            Error::with_source(
                                ErrorKind::Protocol,
                                "invalid next timeline start",
                                e,
                            )
                        })?;
                        next = Some(NextTimeline { timeline, start });
                    }
                }
                Event::ReadyForQuery(_) => {
                    self.client.end();
                    return Ok(next);
                }
                _ => {}
            }
        }
    }

    /// Ends the stream: sends CopyDone (after a last status update), drains the server's
    /// remaining data up to its CopyDone and the command's result, and returns the client
    /// with, for a physical stream that reached the end of its timeline, the next timeline.
    pub async fn finish(mut self) -> Result<(Client, Option<NextTimeline>), Error> {
        if !self.server_done {
            self.send_status_update(false).await?;
        }
        self.client.core().send_copy_done()?;
        self.client.flush().await?;
        let next = self.drain_to_ready().await?;
        Ok((self.client, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_xlogdata_and_keepalive() {
        let mut b = BytesMut::new();
        b.put_u8(b'w');
        b.put_u64(0x100);
        b.put_u64(0x200);
        b.put_i64(7);
        b.put_slice(b"payload");
        let m = StreamMessage::decode(b.freeze()).unwrap();
        assert_eq!(
            m,
            StreamMessage::XLogData {
                wal_start: Lsn(0x100),
                wal_end: Lsn(0x200),
                send_time: PgTimestamp(7),
                data: Bytes::from_static(b"payload")
            }
        );
        let mut b = BytesMut::new();
        b.put_u8(b'k');
        b.put_u64(0x300);
        b.put_i64(9);
        b.put_u8(1);
        let bytes = b.freeze();
        assert_eq!(
            StreamMessage::decode(bytes.clone()).unwrap(),
            StreamMessage::Keepalive {
                wal_end: Lsn(0x300),
                send_time: PgTimestamp(9),
                reply_requested: true
            }
        );
        // Every truncation and a trailing byte are errors, never panics.
        for n in 0..bytes.len() {
            assert!(StreamMessage::decode(bytes.slice(..n)).is_err());
        }
        let mut long = BytesMut::from(&bytes[..]);
        long.put_u8(0);
        assert!(StreamMessage::decode(long.freeze()).is_err());
        assert!(StreamMessage::decode(Bytes::from_static(b"z")).is_err());
    }

    #[test]
    fn encode_feedback_messages() {
        let mut b = BytesMut::new();
        let lsns = FeedbackLsns {
            write: Lsn(1),
            flush: Lsn(2),
            apply: Lsn(3),
        };
        encode_status_update(&mut b, &lsns, PgTimestamp(4), true);
        let mut want = vec![b'r'];
        for v in [1u64, 2, 3, 4] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.push(1);
        assert_eq!(&b[..], &want[..]);
        let mut b = BytesMut::new();
        let fb = HotStandbyFeedback {
            xmin: Xid(5),
            xmin_epoch: 6,
            catalog_xmin: Xid(7),
            catalog_xmin_epoch: 8,
        };
        encode_hot_standby_feedback(&mut b, PgTimestamp(4), &fb);
        assert_eq!(b.len(), 1 + 8 + 16);
        assert_eq!(b[0], b'h');
    }

    #[test]
    fn schedule() {
        let t0 = std::time::Instant::now();
        let mut s = FeedbackSchedule::new(Duration::from_secs(10));
        assert!(!s.is_due(t0));
        s.sent(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert!(!s.is_due(t0 + Duration::from_secs(9)));
        assert!(s.is_due(t0 + Duration::from_secs(10)));
        let mut off = FeedbackSchedule::new(Duration::ZERO);
        off.sent(t0);
        assert_eq!(off.poll_timeout(), None);
    }
}
