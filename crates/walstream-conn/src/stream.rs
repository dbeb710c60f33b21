//! The streaming phase: after `START_REPLICATION`, a [`ReplicationStream`] yields WAL data
//! and keepalives and sends standby status updates.
//!
//! The messages themselves are walstream-proto's ([`ReplicationMessage`] in,
//! [`StandbyMessage`] out); this module adds the I/O and the feedback bookkeeping.
//!
//! Feedback scheduling is sans-IO ([`FeedbackSchedule`]): the stream sends a status update
//! every `status_interval` (default 10 s, like `wal_receiver_status_interval`) and at once
//! when a keepalive asks for a reply.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use walstream_proto::{
    HotStandbyFeedback, Lsn, PgTimestamp, PrimaryKeepalive, ReplicationMessage, StandbyMessage,
    StandbyStatusUpdate, TimelineId, Xid,
};

use crate::client::Client;
use crate::error::{Error, ErrorKind};
use crate::machine::Event;
use crate::replication::{start_logical_command, start_physical_command};

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

/// Decodes a `CopyData` payload of the stream with walstream-proto's codec.
fn decode_message(payload: Bytes) -> Result<ReplicationMessage, Error> {
    ReplicationMessage::decode(payload)
        .map_err(|e| Error::with_source(ErrorKind::Protocol, "malformed replication message", e))
}

fn io_error(e: std::io::Error) -> Error {
    Error::with_source(ErrorKind::Io, "I/O error on the connection", e)
}

/// The status update reporting `lsns`.
fn status_update(lsns: &FeedbackLsns, now: PgTimestamp, reply_requested: bool) -> StandbyMessage {
    StandbyMessage::StatusUpdate(StandbyStatusUpdate {
        write: lsns.write,
        flush: lsns.flush,
        apply: lsns.apply,
        send_time: now,
        reply_requested,
    })
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

    fn new(mut client: Client) -> Self {
        let mut schedule = FeedbackSchedule::new(Self::DEFAULT_STATUS_INTERVAL);
        schedule.sent(Instant::now().into_std());
        client.transport().enable_batching();
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

    /// Changes the latency budget of batched reads for this stream (see
    /// [`Config::set_stream_batch_latency`](crate::Config::set_stream_batch_latency), where
    /// the default comes from); zero disables batching.
    pub fn set_batch_latency(&mut self, budget: Duration) -> Result<(), Error> {
        let t = self.client.transport();
        t.set_batch_window(budget).map_err(io_error)?;
        t.enable_batching();
        Ok(())
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

    /// Whether the next message is already received (then [`ReplicationStream::next_message`]
    /// returns it without I/O or a status update). A caller that updates the positions per
    /// message ([`ReplicationStream::set_lsns`]) can do so only when this is false, i.e. once
    /// per read from the socket instead of per message.
    pub fn has_buffered_message(&mut self) -> bool {
        self.client.core().has_events()
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
        let msg = status_update(&self.lsns, now_pg(), reply_requested);
        self.send_standby_message(&msg).await?;
        self.schedule.sent(Instant::now().into_std());
        Ok(())
    }

    /// Sends hot standby feedback (physical replication) stamped with the current time:
    /// the standby's `xmin` and `catalog_xmin` with their epochs (zeros stop holding rows
    /// back).
    pub async fn send_hot_standby_feedback(
        &mut self,
        xmin: Xid,
        xmin_epoch: u32,
        catalog_xmin: Xid,
        catalog_xmin_epoch: u32,
    ) -> Result<(), Error> {
        let msg = StandbyMessage::HotStandbyFeedback(HotStandbyFeedback {
            send_time: now_pg(),
            xmin,
            xmin_epoch,
            catalog_xmin,
            catalog_xmin_epoch,
        });
        self.send_standby_message(&msg).await
    }

    /// Sends `msg` as it is (no bookkeeping: a status update sent this way neither moves
    /// [`ReplicationStream::lsns`] nor resets the periodic schedule).
    pub async fn send_standby_message(&mut self, msg: &StandbyMessage) -> Result<(), Error> {
        self.out.clear();
        msg.encode(&mut self.out);
        self.client.core().send_copy_data(&self.out)?;
        self.client.flush().await
    }

    /// The next message; `Ok(None)` when the server ended the stream (CopyDone, e.g. at the
    /// end of a timeline) — then call [`ReplicationStream::finish`].
    pub async fn next_message(&mut self) -> Result<Option<ReplicationMessage>, Error> {
        // The clock is read only when the next message is not buffered yet: a read from the
        // socket (or a wake-up at the status interval) comes first anyway, and the messages
        // of one read are handed out without a system clock call each.
        let mut check_clock = !self.client.core().has_events();
        loop {
            if self.server_done {
                return Ok(None);
            }
            if check_clock && self.schedule.is_due(Instant::now().into_std()) {
                self.send_status_update(false).await?;
            }
            let wake = self.schedule.poll_timeout().map(Instant::from_std);
            let Some(ev) = self.client.next_event(wake).await? else {
                check_clock = true;
                continue;
            };
            match ev {
                Event::CopyData(payload) => {
                    let msg = decode_message(payload)?;
                    if let ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                        reply_requested: true,
                        ..
                    }) = msg
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
                    return Err(Error::db(*db).context("replication stream failed"));
                }
                _ => {}
            }
        }
    }

    async fn drain_to_ready(&mut self) -> Result<Option<NextTimeline>, Error> {
        // The end of the stream and the command's result are read without delay, and the
        // client leaves with its socket back in the reactor.
        self.client
            .transport()
            .disable_batching()
            .map_err(io_error)?;
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
    fn decodes_with_proto_and_maps_errors() {
        // XLogData with a pgoutput Begin, captured from PostgreSQL 15.
        let xlog: &[u8] = b"w\x00\x00\x00\x00\x01Y8\xc8\x00\x00\x00\x00\x01Y8\xc8\x00\x03\x03\xd5\x1fY\x1c\xdaB\x00\x00\x00\
          \x00\x01Y:(\x00\x03\x03\xd5\x1fW\xe7c\x00\x00\x02\xe2";
        let bytes = Bytes::from_static(xlog);
        let ReplicationMessage::XLogData(x) = decode_message(bytes.clone()).unwrap() else {
            panic!("not XLogData");
        };
        assert_eq!(x.wal_start, Lsn(0x0159_38c8));
        assert_eq!(x.wal_end, Lsn(0x0159_38c8));
        assert_eq!(x.data.first(), Some(&b'B'));
        // The payload shares the received buffer: no copy.
        assert_eq!(x.data.as_ptr(), bytes[25..].as_ptr());
        // A keepalive asking for a reply.
        let ka = Bytes::from_static(b"k\x00\x00\x00\x00\x01Y8\x90\x00\x03\x03\xd5\x1fX\x94E\x01");
        assert!(matches!(
            decode_message(ka.clone()).unwrap(),
            ReplicationMessage::PrimaryKeepalive(PrimaryKeepalive {
                reply_requested: true,
                wal_end: Lsn(0x0159_3890),
                ..
            })
        ));
        // Truncations, a trailing byte and unknown kinds are protocol errors with the
        // decoder's error as the source, never panics.
        for n in 0..ka.len() {
            let e = decode_message(ka.slice(..n)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol);
            assert!(std::error::Error::source(&e).is_some());
        }
        let mut long = BytesMut::from(&ka[..]);
        long.extend_from_slice(b"\x00");
        assert_eq!(
            decode_message(long.freeze()).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            decode_message(Bytes::from_static(b"z")).unwrap_err().kind(),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn status_update_reports_lsns() {
        let lsns = FeedbackLsns {
            write: Lsn(1),
            flush: Lsn(2),
            apply: Lsn(3),
        };
        let mut b = BytesMut::new();
        status_update(&lsns, PgTimestamp(4), true).encode(&mut b);
        let mut want = vec![b'r'];
        for v in [1u64, 2, 3, 4] {
            want.extend_from_slice(&v.to_be_bytes());
        }
        want.push(1);
        assert_eq!(&b[..], &want[..]);
        assert_eq!(
            StandbyMessage::decode(b.freeze()).unwrap(),
            StandbyMessage::StatusUpdate(StandbyStatusUpdate {
                write: Lsn(1),
                flush: Lsn(2),
                apply: Lsn(3),
                send_time: PgTimestamp(4),
                reply_requested: true,
            })
        );
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
