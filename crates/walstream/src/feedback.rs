//! The acknowledgement core: what the stream reports to the server as written, flushed and
//! applied.
//!
//! # Semantics
//!
//! * **write** = the highest WAL position *received* from the server (never less than flush).
//! * **flush** = **apply** = the highest transaction boundary the user has *acknowledged*.
//!
//! A *boundary* is the end LSN of something that completes a unit of work: a Commit's `end_lsn`
//! (the byte after the commit record — never `commit_lsn`), a Stream Commit's `end_lsn`, a
//! Prepare's `end_lsn`, a Commit/Rollback Prepared's `end_lsn`, or a non-transactional logical
//! message's LSN (which pgoutput sets to the end of the message record). The stream registers
//! each boundary when it hands the event to the user ([`AckHandle`] carries it); acknowledging
//! is cumulative: `ack(lsn)` acknowledges every delivered boundary `<= lsn`, and the reported
//! flush becomes the highest of them. An acknowledged LSN that falls between two boundaries is
//! snapped *down* to the last boundary, so a mid-transaction position is never reported.
//!
//! **Idle advancement.** When the server's keepalive says it has read WAL up to `wal_end`, and at
//! that moment nothing is in flight (no open transaction, no open streamed transaction, no
//! prepared transaction held back) and every boundary delivered so far is acknowledged, then
//! `wal_end` itself is a safe flush position: every transaction that committed before it has
//! been delivered and acknowledged, and anything that commits later lies after it. Reporting it
//! lets the slot move on while the published tables are idle, so WAL does not pile up. If the
//! user acknowledges the outstanding boundaries only later, the remembered keepalive position is
//! applied then.
//!
//! This is only valid when every XLogData that arrived before the keepalive has been decoded and
//! its events delivered — the stream decodes synchronously, in arrival order.
//!
//! **Auto-ack** acknowledges each boundary as soon as it is delivered (at-most-once processing
//! for consumers that accept it). **Raw mode** (undecoded XLogData handed to the user) cannot see
//! boundaries: acknowledgements are taken as given, and there is no idle advancement.
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use walstream_proto::Lsn;

/// A shared, thread-safe acknowledgement state for one replication stream.
///
/// Clones share the same state: hand one to the task that persists events and call
/// [`ack`](Self::ack) there once an event's effects are durable; the stream reads
/// [`positions`](Self::positions) whenever it sends a standby status update.
#[derive(Clone)]
pub struct LsnFeedback {
    inner: Arc<Inner>,
}

struct Inner {
    /// Highest WAL position received (XLogData start or end).
    received: AtomicU64,
    /// Reported flush/apply position: only boundaries or safe idle keepalive positions.
    flushed: AtomicU64,
    auto_ack: AtomicBool,
    raw: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Delivered boundaries not yet acknowledged, ascending.
    pending: VecDeque<Lsn>,
    /// Number of boundaries delivered so far.
    delivered_seq: u64,
    /// Number of boundaries acknowledged so far (always `<= delivered_seq`).
    acked_seq: u64,
    /// A keepalive position that becomes safe once `acked_seq` reaches the given count.
    idle_candidate: Option<(Lsn, u64)>,
    /// Units of work in flight (open transactions, open streamed transactions, buffered
    /// transactions). While any is in flight, keepalives do not advance the flush position.
    in_flight: u64,
    /// Positions the reported flush must not pass (held-back prepared transactions: their
    /// PREPARE record start), as a multiset.
    caps: BTreeMap<Lsn, u32>,
}

/// The three positions of a standby status update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeedbackPositions {
    /// Received (written) position.
    pub write: Lsn,
    /// Durably processed position: the highest acknowledged transaction boundary.
    pub flush: Lsn,
    /// Applied position: equal to `flush`.
    pub apply: Lsn,
}

impl LsnFeedback {
    /// A feedback state starting at `start`: the position the stream resumes from (the slot's
    /// `confirmed_flush_lsn`), which is reported as flushed until something newer is
    /// acknowledged. Pass `Lsn(0)` if unknown: the server ignores a zero
    /// flush position.
    pub fn new(start: Lsn) -> Self {
        Self {
            inner: Arc::new(Inner {
                received: AtomicU64::new(start.0),
                flushed: AtomicU64::new(start.0),
                auto_ack: AtomicBool::new(false),
                raw: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Turns auto-acknowledgement on or off. When on, every boundary is acknowledged the
    /// moment it is delivered, before the user processed it: a crash may lose those events.
    pub fn set_auto_ack(&self, on: bool) {
        self.inner.auto_ack.store(on, Ordering::Release);
    }

    /// Whether auto-acknowledgement is on.
    pub fn auto_ack(&self) -> bool {
        self.inner.auto_ack.load(Ordering::Acquire)
    }

    /// Acknowledges everything delivered up to and including `lsn` (cumulative).
    ///
    /// Pass an event's end LSN (as [`AckHandle::lsn`] gives it). In decoded mode the reported
    /// flush moves to the highest delivered boundary `<= lsn`; an LSN beyond what was delivered
    /// acknowledges only what was delivered. In raw mode `lsn` is taken as is.
    pub fn ack(&self, lsn: Lsn) {
        if self.inner.raw.load(Ordering::Acquire) {
            self.inner.flushed.fetch_max(lsn.0, Ordering::AcqRel);
            return;
        }
        let mut state = self.lock();
        let mut highest = None;
        while let Some(&front) = state.pending.front() {
            if front > lsn {
                break;
            }
            state.pending.pop_front();
            state.acked_seq = state.acked_seq.saturating_add(1);
            highest = Some(front);
        }
        if let Some(h) = highest {
            self.inner.flushed.fetch_max(h.0, Ordering::AcqRel);
        }
        self.apply_idle_candidate(&mut state);
    }

    /// The highest WAL position received so far.
    pub fn received(&self) -> Lsn {
        Lsn(self.inner.received.load(Ordering::Acquire))
    }

    /// The highest acknowledged position: the highest acknowledged boundary, or a keepalive
    /// position reached while idle. Transactions ending at or before it are never delivered
    /// again by a stream that shares this feedback.
    pub fn acknowledged(&self) -> Lsn {
        Lsn(self.inner.flushed.load(Ordering::Acquire))
    }

    /// The position reported as flushed and applied: [`acknowledged`](Self::acknowledged),
    /// held back before any prepared transaction that transaction assembly keeps buffered
    /// until COMMIT PREPARED (so the server sends it again after a reconnect).
    pub fn flushed(&self) -> Lsn {
        let acked = self.acknowledged();
        match self.lock().caps.keys().next() {
            Some(&cap) if cap < acked => cap,
            _ => acked,
        }
    }

    /// How many delivered boundaries still wait for an acknowledgement.
    pub fn unacknowledged(&self) -> usize {
        self.lock().pending.len()
    }

    /// The positions for the next standby status update.
    pub fn positions(&self) -> FeedbackPositions {
        let flush = self.flushed();
        let write = self.received().max(self.acknowledged());
        FeedbackPositions {
            write,
            flush,
            apply: flush,
        }
    }

    // ----- driver side (used by the stream and the decoder) -----

    /// A feedback state for **raw mode** (undecoded XLogData handed to the user): the
    /// library cannot see transaction boundaries, so every acknowledged LSN is reported as
    /// is (acknowledge only commit end LSNs your own decoder found), and keepalives never
    /// advance the flush position.
    pub fn new_raw(start: Lsn) -> Self {
        let fb = Self::new(start);
        fb.inner.raw.store(true, Ordering::Release);
        fb
    }

    /// Records that WAL up to `lsn` was received.
    pub(crate) fn record_received(&self, lsn: Lsn) {
        self.inner.received.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// Registers a boundary that is on its way to the user and returns its handle. Call it
    /// when the boundary is decoded (before a later keepalive is processed); the caller
    /// acknowledges it at delivery when auto-ack is on.
    pub(crate) fn register(&self, lsn: Lsn) -> AckHandle {
        let acked = self.acknowledged();
        let mut state = self.lock();
        let already = lsn <= acked || state.pending.back().is_some_and(|&b| lsn <= b);
        if !already {
            state.pending.push_back(lsn);
            state.delivered_seq = state.delivered_seq.saturating_add(1);
        }
        drop(state);
        AckHandle {
            feedback: self.clone(),
            lsn,
        }
    }

    /// Marks one more unit of work in flight.
    pub(crate) fn hold(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_add(1);
    }

    /// Marks one unit of work in flight as finished.
    pub(crate) fn release(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }

    /// Forbids reporting a flush position beyond `lsn` until [`uncap`](Self::uncap).
    pub(crate) fn cap(&self, lsn: Lsn) {
        let mut state = self.lock();
        let n = state.caps.entry(lsn).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Removes one cap at `lsn`.
    pub(crate) fn uncap(&self, lsn: Lsn) {
        let mut state = self.lock();
        if let Some(n) = state.caps.get_mut(&lsn) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.caps.remove(&lsn);
            }
        }
    }

    /// A keepalive: the server read WAL up to `wal_end`. Every XLogData before it must already
    /// have been decoded (its boundaries registered, its holds taken).
    pub(crate) fn keepalive(&self, wal_end: Lsn) {
        if self.inner.raw.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if state.in_flight > 0 {
            return;
        }
        let seq = state.delivered_seq;
        let newer = state.idle_candidate.is_none_or(|(w, _)| wal_end >= w);
        if newer {
            state.idle_candidate = Some((wal_end, seq));
        }
        self.apply_idle_candidate(&mut state);
    }

    fn apply_idle_candidate(&self, state: &mut State) {
        if let Some((w, seq)) = state.idle_candidate {
            if state.acked_seq >= seq {
                self.inner.flushed.fetch_max(w.0, Ordering::AcqRel);
                state.idle_candidate = None;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state holds plain data that every method leaves consistent, so a poisoned lock
        // (a panic in another thread while holding it) can be recovered.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for LsnFeedback {
    fn default() -> Self {
        Self::new(Lsn(0))
    }
}

impl fmt::Debug for LsnFeedback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LsnFeedback")
            .field("received", &self.received())
            .field("flushed", &self.flushed())
            .field("unacknowledged", &self.unacknowledged())
            .field("auto_ack", &self.auto_ack())
            .finish()
    }
}

/// The acknowledgement of one delivered transaction (or other boundary event).
///
/// Call [`ack`](Self::ack) once the event's effects are durable. Dropping the handle without
/// acknowledging does nothing: the transaction stays unacknowledged and the server re-sends it
/// after a reconnect.
#[derive(Clone, Debug)]
#[must_use = "an AckHandle does nothing unless `ack` is called"]
pub struct AckHandle {
    feedback: LsnFeedback,
    lsn: Lsn,
}

impl AckHandle {
    /// The boundary LSN this handle acknowledges (e.g. the commit's end LSN).
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Acknowledges this boundary and everything delivered before it.
    pub fn ack(self) {
        self.feedback.ack(self.lsn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(x: u64) -> Lsn {
        Lsn(x)
    }

    #[test]
    fn starts_at_resume_point() {
        let fb = LsnFeedback::new(l(0x100));
        assert_eq!(
            fb.positions(),
            FeedbackPositions {
                write: l(0x100),
                flush: l(0x100),
                apply: l(0x100)
            }
        );
    }

    #[test]
    fn write_is_received_flush_is_acked() {
        let fb = LsnFeedback::new(l(0x100));
        fb.record_received(l(0x150));
        let h = fb.register(l(0x160));
        fb.record_received(l(0x160));
        assert_eq!(fb.positions().write, l(0x160));
        assert_eq!(fb.positions().flush, l(0x100), "not acked yet");
        assert_eq!(h.lsn(), l(0x160));
        h.ack();
        assert_eq!(
            fb.positions(),
            FeedbackPositions {
                write: l(0x160),
                flush: l(0x160),
                apply: l(0x160)
            }
        );
        assert_eq!(fb.unacknowledged(), 0);
    }

    #[test]
    fn ack_is_cumulative_and_snaps_to_boundaries() {
        let fb = LsnFeedback::new(l(0));
        let _a = fb.register(l(0x200));
        let _b = fb.register(l(0x300));
        let _c = fb.register(l(0x400));
        // An LSN between two boundaries (e.g. an insert inside the second transaction).
        fb.ack(l(0x350));
        assert_eq!(fb.flushed(), l(0x300));
        assert_eq!(fb.unacknowledged(), 1);
        // An LSN beyond everything delivered acknowledges only what was delivered.
        fb.ack(l(0x9999));
        assert_eq!(fb.flushed(), l(0x400));
        let _d = fb.register(l(0x500));
        assert_eq!(fb.flushed(), l(0x400), "later deliveries are not pre-acked");
    }

    #[test]
    fn mid_transaction_ack_reports_nothing() {
        let fb = LsnFeedback::new(l(0x10));
        let _a = fb.register(l(0x200));
        fb.ack(l(0x1ff));
        assert_eq!(fb.flushed(), l(0x10));
    }

    #[test]
    fn acking_older_handle_after_newer_keeps_max() {
        let fb = LsnFeedback::new(l(0));
        let a = fb.register(l(0x200));
        let b = fb.register(l(0x300));
        b.ack();
        a.ack();
        assert_eq!(fb.flushed(), l(0x300));
    }

    #[test]
    fn auto_ack_acknowledges_on_delivery() {
        let fb = LsnFeedback::new(l(0));
        fb.set_auto_ack(true);
        assert!(fb.auto_ack());
        fb.register(l(0x200)).ack();
        assert_eq!(fb.flushed(), l(0x200));
        assert_eq!(fb.unacknowledged(), 0);
    }

    #[test]
    fn idle_keepalive_advances_when_all_acked() {
        let fb = LsnFeedback::new(l(0x100));
        fb.keepalive(l(0x500));
        assert_eq!(fb.flushed(), l(0x500));
        // Never moves backwards.
        fb.keepalive(l(0x400));
        assert_eq!(fb.flushed(), l(0x500));
    }

    #[test]
    fn keepalive_in_flight_does_not_advance() {
        let fb = LsnFeedback::new(l(0x100));
        fb.hold();
        fb.keepalive(l(0x500));
        assert_eq!(fb.flushed(), l(0x100));
        fb.release();
        fb.keepalive(l(0x500));
        assert_eq!(fb.flushed(), l(0x500));
    }

    #[test]
    fn keepalive_waits_for_outstanding_acks_then_applies() {
        let fb = LsnFeedback::new(l(0x100));
        let h = fb.register(l(0x200));
        fb.keepalive(l(0x500));
        assert_eq!(fb.flushed(), l(0x100), "delivered boundary not acked");
        // A transaction delivered after the keepalive does not block the remembered position
        // once the earlier boundary is acked (it commits after wal_end).
        let later = fb.register(l(0x600));
        h.ack();
        assert_eq!(fb.flushed(), l(0x500));
        later.ack();
        assert_eq!(fb.flushed(), l(0x600));
    }

    #[test]
    fn raw_mode_takes_acks_as_given_and_ignores_keepalives() {
        let fb = LsnFeedback::new_raw(l(0));
        fb.ack(l(0x123));
        assert_eq!(fb.flushed(), l(0x123));
        fb.keepalive(l(0x999));
        assert_eq!(fb.flushed(), l(0x123));
        fb.ack(l(0x100));
        assert_eq!(fb.flushed(), l(0x123));
    }

    #[test]
    fn redelivered_boundary_at_or_below_flush_is_not_pending() {
        let fb = LsnFeedback::new(l(0x300));
        let _ = fb.register(l(0x200));
        assert_eq!(fb.unacknowledged(), 0);
        fb.keepalive(l(0x400));
        assert_eq!(fb.flushed(), l(0x400));
    }

    #[test]
    fn cap_holds_back_reported_flush_but_not_acknowledged() {
        let fb = LsnFeedback::new(l(0x100));
        let a = fb.register(l(0x200));
        fb.cap(l(0x250));
        let b = fb.register(l(0x300));
        a.ack();
        b.ack();
        assert_eq!(fb.acknowledged(), l(0x300));
        assert_eq!(fb.flushed(), l(0x250));
        assert_eq!(fb.positions().write, l(0x300));
        fb.uncap(l(0x250));
        assert_eq!(fb.flushed(), l(0x300));
    }

    #[test]
    fn shared_across_threads() {
        let fb = LsnFeedback::new(l(0));
        let handles: Vec<_> = (1..=100u64).map(|i| fb.register(l(i * 0x10))).collect();
        let t = std::thread::spawn(move || {
            for h in handles {
                h.ack();
            }
        });
        t.join().unwrap();
        assert_eq!(fb.flushed(), l(1000 * 0x10 / 10));
        assert_eq!(fb.unacknowledged(), 0);
    }
}
