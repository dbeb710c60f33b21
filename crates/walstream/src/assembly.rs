//! Transaction assembly: whole transactions, in commit order, with bounded memory.
//!
//! A [`TransactionAssembler`] takes the [`Event`]s of a [`LogicalDecoder`](crate::LogicalDecoder)
//! and hands out [`Assembled`] items: whole [`Transaction`]s (non-streamed, reassembled streamed
//! ones, and two-phase ones at PREPARE or at COMMIT PREPARED as configured) and the few events
//! that stand alone (non-transactional messages, COMMIT/ROLLBACK PREPARED of transactions
//! delivered at PREPARE).
//!
//! Buffered changes count against a per-stream memory limit
//! ([`AssemblyOptions::memory_limit`]); beyond it the largest buffered transaction is written
//! to an anonymous temporary file as encoded `pgoutput` messages and read back when the
//! transaction is consumed, so a transaction of any size needs bounded memory.
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use walstream_proto::pgoutput::{
    self as pgo, DecodeOptions, OldTuple, PgoutputMessage, Relation, RelationChange,
};
use walstream_proto::{Lsn, PgTimestamp, Xid};

use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventKind, OldRow, RelationEvent, RowChange, TruncateEvent};
use crate::feedback::{AckHandle, LsnFeedback};

/// When two-phase transactions are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TwoPhaseDelivery {
    /// At PREPARE, as a [`TransactionKind::Prepared`] transaction; COMMIT PREPARED and
    /// ROLLBACK PREPARED follow as standalone events.
    #[default]
    AtPrepare,
    /// At COMMIT PREPARED, as a committed transaction; a ROLLBACK PREPARED drops it (the
    /// ROLLBACK PREPARED event is still handed out so it can be acknowledged). While held, the
    /// reported flush position stays before the PREPARE so the server re-sends it after a
    /// reconnect.
    AtCommitPrepared,
}

/// Settings of a [`TransactionAssembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AssemblyOptions {
    /// Bytes of buffered changes kept in memory (all open transactions together) before the
    /// largest is spilled to a temporary file. Default 64 MiB.
    pub memory_limit: usize,
    /// When two-phase transactions are delivered.
    pub two_phase: TwoPhaseDelivery,
}

impl Default for AssemblyOptions {
    fn default() -> Self {
        Self {
            memory_limit: 64 << 20,
            two_phase: TwoPhaseDelivery::AtPrepare,
        }
    }
}

/// How a delivered [`Transaction`] ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransactionKind {
    /// Committed (Commit or Stream Commit, or COMMIT PREPARED when delivering at commit).
    Committed,
    /// Prepared for two-phase commit, with its global transaction id; the outcome follows as
    /// a COMMIT PREPARED or ROLLBACK PREPARED event.
    Prepared {
        /// The GID.
        gid: String,
    },
}

/// What a [`TransactionAssembler`] hands out.
#[derive(Debug)]
#[non_exhaustive]
pub enum Assembled {
    /// A whole transaction.
    Transaction(Transaction),
    /// An event outside any transaction (non-transactional message, COMMIT PREPARED or
    /// ROLLBACK PREPARED of a transaction delivered earlier, relation descriptions sent
    /// outside transactions).
    Event(Event),
}

/// A whole transaction: its metadata and its changes in order.
#[derive(Debug)]
pub struct Transaction {
    xid: Xid,
    commit_lsn: Lsn,
    end_lsn: Lsn,
    commit_time: PgTimestamp,
    kind: TransactionKind,
    streamed: bool,
    len: u64,
    changes: Changes,
    ack: AckHandle,
}

impl Transaction {
    /// The top-level transaction id.
    pub fn xid(&self) -> Xid {
        self.xid
    }

    /// The LSN of the commit (or prepare) record.
    pub fn commit_lsn(&self) -> Lsn {
        self.commit_lsn
    }

    /// The end LSN of the commit (or prepare) record: what acknowledging reports.
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }

    /// The commit (or prepare) time.
    pub fn commit_time(&self) -> PgTimestamp {
        self.commit_time
    }

    /// How it ended.
    pub fn kind(&self) -> &TransactionKind {
        &self.kind
    }

    /// True if the server streamed it while in progress.
    pub fn was_streamed(&self) -> bool {
        self.streamed
    }

    /// The number of changes (rows, truncates, messages, relation descriptions, origins); an
    /// upper bound if a subtransaction whose changes were spilled was rolled back.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the transaction has no changes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next change, reading back spilled changes as needed.
    pub fn next_change(&mut self) -> Option<Result<Event, Error>> {
        self.changes.next()
    }

    /// The changes as an iterator.
    pub fn changes(&mut self) -> &mut Changes {
        &mut self.changes
    }

    /// The acknowledgement handle (for the end LSN).
    pub fn ack_handle(&self) -> &AckHandle {
        &self.ack
    }

    /// Acknowledges this transaction and everything delivered before it.
    pub fn ack(&self) {
        self.ack.clone().ack();
    }
}

/// The changes of a [`Transaction`]: spilled ones first (read back from the temporary file),
/// then those still in memory.
#[derive(Debug)]
pub struct Changes {
    spilled: Option<SpillReader>,
    mem: std::vec::IntoIter<Event>,
}

impl Iterator for Changes {
    type Item = Result<Event, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = &mut self.spilled {
            match r.next_event() {
                Ok(Some(ev)) => return Some(Ok(ev)),
                Ok(None) => self.spilled = None,
                Err(e) => {
                    self.spilled = None;
                    return Some(Err(e));
                }
            }
        }
        self.mem.next().map(Ok)
    }
}

/// Assembles whole transactions from events: feed it every event of a
/// [`LogicalDecoder`](crate::LogicalDecoder) with [`push`](Self::push), take [`Assembled`] items
/// with [`poll`](Self::poll). Buffered changes beyond [`AssemblyOptions::memory_limit`] spill to
/// an anonymous temporary file (encoded `pgoutput` messages) and are read back lazily by
/// [`Transaction::next_change`].
#[derive(Debug)]
pub struct TransactionAssembler {
    options: AssemblyOptions,
    feedback: LsnFeedback,
    current: Option<Buf>,
    stream: Option<Xid>,
    streamed: HashMap<Xid, Buf>,
    held: HashMap<Xid, Held>,
    ready: VecDeque<Assembled>,
    mem_total: usize,
    peak: usize,
    skip_through: Lsn,
}

#[derive(Debug)]
struct Held {
    buf: Buf,
    prepare_lsn: Lsn,
}

#[derive(Debug)]
struct Buf {
    xid: Xid,
    commit_lsn: Option<Lsn>,
    commit_time: Option<PgTimestamp>,
    streamed: bool,
    mem: Vec<Event>,
    mem_bytes: usize,
    len: u64,
    spill: Option<SpillWriter>,
    aborted: HashSet<Xid>,
}

impl Buf {
    fn new(
        xid: Xid,
        commit_lsn: Option<Lsn>,
        commit_time: Option<PgTimestamp>,
        streamed: bool,
    ) -> Self {
        Self {
            xid,
            commit_lsn,
            commit_time,
            streamed,
            mem: Vec::new(),
            mem_bytes: 0,
            len: 0,
            spill: None,
            aborted: HashSet::new(),
        }
    }
}

/// Approximate bytes an event holds (its row data plus a fixed overhead).
fn event_size(ev: &Event) -> usize {
    const OVERHEAD: usize = 64;
    let rows = match ev.kind() {
        EventKind::Insert(c) | EventKind::Update(c) | EventKind::Delete(c) => {
            c.new.as_ref().map_or(0, |r| r.tuple().raw().len())
                + c.old.as_ref().map_or(0, |o| o.row().tuple().raw().len())
        }
        EventKind::Message(m) => m.content.len() + m.prefix.len(),
        EventKind::Truncate(t) => t.relations.len() * 8,
        _ => 0,
    };
    OVERHEAD + rows
}

impl TransactionAssembler {
    /// An assembler reporting held prepared transactions to `feedback` (the decoder's).
    pub fn new(options: AssemblyOptions, feedback: LsnFeedback) -> Self {
        let skip_through = feedback.acknowledged();
        Self {
            options,
            feedback,
            current: None,
            stream: None,
            streamed: HashMap::new(),
            held: HashMap::new(),
            ready: VecDeque::new(),
            mem_total: 0,
            peak: 0,
            skip_through,
        }
    }

    /// Bytes of changes buffered in memory now.
    pub fn buffered_bytes(&self) -> usize {
        self.mem_total
    }

    /// The most bytes ever buffered in memory at once, after spilling (a change being added
    /// may briefly exceed the limit by its own size before the spill).
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak
    }

    /// True when nothing is buffered or held.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.streamed.is_empty() && self.held.is_empty()
    }

    /// The next assembled item, if any.
    pub fn poll(&mut self) -> Option<Assembled> {
        let item = self.ready.pop_front()?;
        if self.feedback.auto_ack() {
            match &item {
                Assembled::Transaction(t) => t.ack(),
                Assembled::Event(e) => {
                    e.ack();
                }
            }
        }
        Some(item)
    }

    /// Forgets everything buffered after a lost connection (the server sends it again).
    pub fn reset_for_resume(&mut self) {
        self.current = None;
        self.stream = None;
        self.streamed.clear();
        for (_, h) in self.held.drain() {
            self.feedback.release();
            self.feedback.uncap(h.prepare_lsn);
        }
        self.ready.clear();
        self.mem_total = 0;
        self.skip_through = self.feedback.acknowledged();
    }

    /// Takes the next event from the decoder.
    pub fn push(&mut self, ev: Event) -> Result<(), Error> {
        match ev.kind() {
            EventKind::Begin(b) => {
                if self.current.is_some() {
                    return Err(Error::protocol("Begin inside an assembled transaction"));
                }
                self.current = Some(Buf::new(
                    b.xid,
                    Some(b.final_lsn),
                    Some(b.commit_time),
                    false,
                ));
            }
            EventKind::BeginPrepare(b) => {
                if self.current.is_some() {
                    return Err(Error::protocol(
                        "Begin Prepare inside an assembled transaction",
                    ));
                }
                self.current = Some(Buf::new(
                    b.xid,
                    Some(b.prepare_lsn),
                    Some(b.prepare_time),
                    false,
                ));
            }
            EventKind::Commit(c) => {
                let (end, at, time) = (c.end_lsn, c.commit_lsn, c.commit_time);
                let buf = self.take_current("Commit")?;
                let ack = ack_of(&ev)?;
                self.finish(buf, at, end, time, TransactionKind::Committed, ack)?;
            }
            EventKind::Prepare(p) => {
                let (gid, at, end, time) =
                    (p.gid.clone(), p.prepare_lsn, p.end_lsn, p.prepare_time);
                let buf = self.take_current("Prepare")?;
                self.prepared(buf, gid, at, end, time, &ev)?;
            }
            EventKind::StreamPrepare(p) => {
                let (gid, at, end, time, xid) = (
                    p.gid.clone(),
                    p.prepare_lsn,
                    p.end_lsn,
                    p.prepare_time,
                    p.xid,
                );
                let buf = self.take_streamed(xid)?;
                if end <= self.skip_through && self.options.two_phase == TwoPhaseDelivery::AtPrepare
                {
                    // Re-sent after a resume, already acknowledged.
                    return Ok(());
                }
                // Held until COMMIT PREPARED even if acknowledged: the server sends a held
                // prepared transaction again after a resume (the reported position stopped
                // before it); its outcome decides.
                self.prepared(buf, gid, at, end, time, &ev)?;
            }
            EventKind::CommitPrepared(c) => {
                let end = c.end_lsn;
                let acknowledged = end <= self.skip_through;
                if let Some(h) = self.held.remove(&c.xid) {
                    self.feedback.release();
                    self.feedback.uncap(h.prepare_lsn);
                    self.mem_total = self.mem_total.saturating_sub(h.buf.mem_bytes);
                    if !acknowledged {
                        let (at, time) = (c.commit_lsn, c.commit_time);
                        let ack = ack_of(&ev)?;
                        self.finish(h.buf, at, end, time, TransactionKind::Committed, ack)?;
                    }
                } else if !acknowledged {
                    self.ready.push_back(Assembled::Event(ev));
                }
            }
            EventKind::RollbackPrepared(r) => {
                if let Some(h) = self.held.remove(&r.xid) {
                    self.feedback.release();
                    self.feedback.uncap(h.prepare_lsn);
                    self.mem_total = self.mem_total.saturating_sub(h.buf.mem_bytes);
                }
                if r.rollback_end_lsn > self.skip_through {
                    self.ready.push_back(Assembled::Event(ev));
                }
            }
            EventKind::StreamStart(s) => {
                if self.current.is_some() {
                    return Err(Error::protocol(
                        "Stream Start inside an assembled transaction",
                    ));
                }
                let xid = s.xid;
                self.stream = Some(xid);
                self.streamed
                    .entry(xid)
                    .or_insert_with(|| Buf::new(xid, None, None, true));
            }
            EventKind::StreamStop => self.stream = None,
            EventKind::Resumed(_) => {
                // The lost connection's open transactions come again from their start, and
                // whatever was not acknowledged is re-sent: drop it all, pass the event on.
                self.reset_for_resume();
                self.ready.push_back(Assembled::Event(ev));
            }
            EventKind::StreamCommit(c) => {
                let (xid, at, end, time) = (c.xid, c.commit_lsn, c.end_lsn, c.commit_time);
                let buf = self.take_streamed(xid)?;
                if end <= self.skip_through {
                    // Re-sent after a resume, already acknowledged.
                    return Ok(());
                }
                let ack = ack_of(&ev)?;
                self.finish(buf, at, end, time, TransactionKind::Committed, ack)?;
            }
            EventKind::StreamAbort(a) => {
                if a.is_toplevel() {
                    if let Some(buf) = self.streamed.remove(&a.xid) {
                        self.mem_total = self.mem_total.saturating_sub(buf.mem_bytes);
                    }
                } else if let Some(buf) = self.streamed.get_mut(&a.xid) {
                    let sub = a.subxid;
                    let before = buf.mem_bytes;
                    let count = buf.mem.len();
                    buf.mem.retain(|e| change_xid(e) != Some(sub));
                    buf.mem_bytes = buf.mem.iter().map(event_size).sum();
                    let removed = u64::try_from(count - buf.mem.len()).unwrap_or(u64::MAX);
                    buf.len = buf.len.saturating_sub(removed);
                    // Spilled changes of the subtransaction are skipped when read back (and
                    // not counted in `len` any more: they are unknown in number here, so
                    // `len` is an upper bound once a spilled subtransaction aborted).
                    buf.aborted.insert(sub);
                    self.mem_total = self
                        .mem_total
                        .saturating_sub(before.saturating_sub(buf.mem_bytes));
                }
            }
            _ => {
                let buf = match (self.stream, &mut self.current) {
                    (Some(x), _) => self.streamed.get_mut(&x),
                    (None, Some(b)) => Some(b),
                    (None, None) => None,
                };
                let Some(buf) = buf else {
                    self.ready.push_back(Assembled::Event(ev));
                    return Ok(());
                };
                let size = event_size(&ev);
                buf.mem.push(ev);
                buf.mem_bytes += size;
                buf.len += 1;
                self.mem_total += size;
                self.enforce_limit()?;
                self.peak = self.peak.max(self.mem_total);
            }
        }
        Ok(())
    }

    fn take_current(&mut self, what: &str) -> Result<Buf, Error> {
        let buf = self
            .current
            .take()
            .ok_or_else(|| Error::protocol(format!("{what} without Begin")))?;
        self.mem_total = self.mem_total.saturating_sub(buf.mem_bytes);
        Ok(buf)
    }

    fn take_streamed(&mut self, xid: Xid) -> Result<Buf, Error> {
        let buf = self.streamed.remove(&xid).ok_or_else(|| {
            Error::protocol(format!(
                "end of streamed transaction {xid} that never started"
            ))
        })?;
        self.mem_total = self.mem_total.saturating_sub(buf.mem_bytes);
        Ok(buf)
    }

    fn prepared(
        &mut self,
        mut buf: Buf,
        gid: String,
        at: Lsn,
        end: Lsn,
        time: PgTimestamp,
        ev: &Event,
    ) -> Result<(), Error> {
        match self.options.two_phase {
            TwoPhaseDelivery::AtPrepare => {
                let ack = ack_of(ev)?;
                self.finish(buf, at, end, time, TransactionKind::Prepared { gid }, ack)
            }
            TwoPhaseDelivery::AtCommitPrepared => {
                buf.commit_lsn = Some(at);
                buf.commit_time = Some(time);
                self.mem_total += buf.mem_bytes;
                self.feedback.hold();
                self.feedback.cap(at);
                let xid = buf.xid;
                self.held.insert(
                    xid,
                    Held {
                        buf,
                        prepare_lsn: at,
                    },
                );
                Ok(())
            }
        }
    }

    fn finish(
        &mut self,
        buf: Buf,
        at: Lsn,
        end: Lsn,
        time: PgTimestamp,
        kind: TransactionKind,
        ack: AckHandle,
    ) -> Result<(), Error> {
        let spilled = match buf.spill {
            Some(w) => Some(w.into_reader(buf.aborted)?),
            None => None,
        };
        let t = Transaction {
            xid: buf.xid,
            commit_lsn: at,
            end_lsn: end,
            commit_time: time,
            kind,
            streamed: buf.streamed,
            len: buf.len,
            changes: Changes {
                spilled,
                mem: buf.mem.into_iter(),
            },
            ack,
        };
        self.ready.push_back(Assembled::Transaction(t));
        Ok(())
    }

    fn enforce_limit(&mut self) -> Result<(), Error> {
        while self.mem_total > self.options.memory_limit {
            // Spill the largest in-memory buffer.
            let mut largest: Option<&mut Buf> = self.current.as_mut();
            for b in self
                .streamed
                .values_mut()
                .chain(self.held.values_mut().map(|h| &mut h.buf))
            {
                if largest.as_ref().is_none_or(|l| b.mem_bytes > l.mem_bytes) {
                    largest = Some(b);
                }
            }
            let Some(buf) = largest.filter(|b| b.mem_bytes > 0) else {
                return Ok(());
            };
            let freed = buf.mem_bytes;
            let writer = match &mut buf.spill {
                Some(w) => w,
                None => buf.spill.insert(SpillWriter::new()?),
            };
            for ev in buf.mem.drain(..) {
                writer.write_event(&ev)?;
            }
            buf.mem_bytes = 0;
            self.mem_total = self.mem_total.saturating_sub(freed);
        }
        Ok(())
    }
}

fn ack_of(ev: &Event) -> Result<AckHandle, Error> {
    ev.ack_handle()
        .cloned()
        .ok_or_else(|| Error::protocol("transaction end without an acknowledgement position"))
}

/// The (sub)transaction id a change was streamed with.
fn change_xid(ev: &Event) -> Option<Xid> {
    match ev.kind() {
        EventKind::Insert(c) | EventKind::Update(c) | EventKind::Delete(c) => c.sub_xid,
        EventKind::Truncate(t) => t.sub_xid,
        EventKind::Message(m) => m.xid,
        _ => None,
    }
}

fn spill_err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::with_source(ErrorKind::Spill, "transaction spill file", e)
}

// Spill record: u32 payload length, u64 event lsn, u64 xid+1 (0 = none), u64 commit lsn+1,
// i64 commit time, u8 relation-change code, u16 relation count, u32 relation index each,
// payload (the pgoutput message bytes).
#[derive(Debug)]
struct SpillWriter {
    out: BufWriter<File>,
    rels: Vec<Arc<Relation>>,
    index: HashMap<usize, u32>,
    scratch: BytesMut,
    /// The type registry of the latest spilled row (the stream's registry only grows): rows
    /// read back decode user-defined types with it.
    types: Option<Arc<walstream_proto::TypeRegistry>>,
}

impl SpillWriter {
    fn new() -> Result<Self, Error> {
        let file = tempfile::tempfile().map_err(spill_err)?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 16, file),
            rels: Vec::new(),
            index: HashMap::new(),
            scratch: BytesMut::new(),
            types: None,
        })
    }

    fn rel_index(&mut self, rel: &Arc<Relation>) -> Result<u32, Error> {
        let key = Arc::as_ptr(rel) as usize;
        if let Some(&i) = self.index.get(&key) {
            return Ok(i);
        }
        let i = u32::try_from(self.rels.len())
            .map_err(|_| Error::new(ErrorKind::Spill, "too many relations"))?;
        self.rels.push(Arc::clone(rel));
        self.index.insert(key, i);
        Ok(i)
    }

    fn write_event(&mut self, ev: &Event) -> Result<(), Error> {
        if let Some(types) = ev.kind().row_change().and_then(|c| {
            c.new
                .as_ref()
                .or_else(|| c.old.as_ref().map(OldRow::row))
                .and_then(crate::row::Row::types)
        }) {
            if !self.types.as_ref().is_some_and(|t| Arc::ptr_eq(t, types)) {
                self.types = Some(Arc::clone(types));
            }
        }
        let mut rels = Vec::new();
        let mut change_code = 0u8;
        let msg = match ev.kind() {
            EventKind::Insert(c) => {
                rels.push(self.rel_index(&c.relation)?);
                PgoutputMessage::Insert(pgo::Insert {
                    xid: c.sub_xid,
                    relation_id: c.relation.oid,
                    new: row_tuple(c.new.as_ref())?,
                })
            }
            EventKind::Update(c) => {
                rels.push(self.rel_index(&c.relation)?);
                PgoutputMessage::Update(pgo::Update {
                    xid: c.sub_xid,
                    relation_id: c.relation.oid,
                    old: c.old.as_ref().map(old_tuple),
                    new: row_tuple(c.new.as_ref())?,
                })
            }
            EventKind::Delete(c) => {
                rels.push(self.rel_index(&c.relation)?);
                let old = c
                    .old
                    .as_ref()
                    .map(old_tuple)
                    .ok_or_else(|| Error::new(ErrorKind::Spill, "delete without old row"))?;
                PgoutputMessage::Delete(pgo::Delete {
                    xid: c.sub_xid,
                    relation_id: c.relation.oid,
                    old,
                })
            }
            EventKind::Truncate(t) => {
                for r in &t.relations {
                    rels.push(self.rel_index(r)?);
                }
                PgoutputMessage::Truncate(pgo::Truncate {
                    xid: t.sub_xid,
                    options: t.options,
                    relation_ids: t.relations.iter().map(|r| r.oid).collect(),
                })
            }
            EventKind::Relation(r) => {
                rels.push(self.rel_index(&r.relation)?);
                change_code = match r.change {
                    RelationChange::New => 0,
                    RelationChange::Unchanged => 1,
                    RelationChange::Renamed => 2,
                    _ => 3,
                };
                PgoutputMessage::Relation(pgo::RelationMessage {
                    xid: None,
                    relation: Arc::clone(&r.relation),
                })
            }
            EventKind::Type(t) => PgoutputMessage::Type(pgo::TypeMessage {
                xid: None,
                pg_type: Arc::clone(t),
            }),
            EventKind::Message(m) => PgoutputMessage::Message(m.clone()),
            EventKind::Origin(o) => PgoutputMessage::Origin(o.clone()),
            _ => {
                return Err(Error::new(
                    ErrorKind::Spill,
                    "event kind cannot be part of a transaction body",
                ));
            }
        };
        self.scratch.clear();
        msg.encode(&mut self.scratch).map_err(|e| {
            Error::with_source(ErrorKind::Spill, "cannot encode a change for spilling", e)
        })?;
        let len = u32::try_from(self.scratch.len())
            .map_err(|_| Error::new(ErrorKind::Spill, "change too large"))?;
        let nrels = u16::try_from(rels.len())
            .map_err(|_| Error::new(ErrorKind::Spill, "too many relations"))?;
        let mut head = Vec::with_capacity(40 + rels.len() * 4);
        head.extend_from_slice(&len.to_be_bytes());
        head.extend_from_slice(&ev.lsn.0.to_be_bytes());
        head.extend_from_slice(&ev.xid.map_or(0, |x| u64::from(x.0) + 1).to_be_bytes());
        head.extend_from_slice(
            &ev.commit_lsn
                .map_or(0, |l| l.0.saturating_add(1))
                .to_be_bytes(),
        );
        head.extend_from_slice(&ev.commit_time.map_or(i64::MIN, |t| t.0).to_be_bytes());
        let stream_flag = if msg.stream_xid().is_some() { 0x80 } else { 0 };
        head.push(change_code | stream_flag);
        head.extend_from_slice(&nrels.to_be_bytes());
        for r in rels {
            head.extend_from_slice(&r.to_be_bytes());
        }
        self.out.write_all(&head).map_err(spill_err)?;
        self.out.write_all(&self.scratch).map_err(spill_err)?;
        Ok(())
    }

    fn into_reader(self, aborted: HashSet<Xid>) -> Result<SpillReader, Error> {
        let mut file = self
            .out
            .into_inner()
            .map_err(|e| spill_err(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(spill_err)?;
        Ok(SpillReader {
            input: BufReader::with_capacity(1 << 16, file),
            rels: self.rels,
            aborted,
            types: self.types,
        })
    }
}

fn row_tuple(row: Option<&crate::row::Row>) -> Result<pgo::TupleData, Error> {
    row.map(|r| r.tuple().clone())
        .ok_or_else(|| Error::new(ErrorKind::Spill, "row change without a row"))
}

fn old_tuple(o: &OldRow) -> OldTuple {
    match o {
        OldRow::Key(r) => OldTuple::Key(r.tuple().clone()),
        OldRow::Full(r) => OldTuple::Full(r.tuple().clone()),
    }
}

#[derive(Debug)]
struct SpillReader {
    input: BufReader<File>,
    rels: Vec<Arc<Relation>>,
    aborted: HashSet<Xid>,
    types: Option<Arc<walstream_proto::TypeRegistry>>,
}

impl SpillReader {
    fn next_event(&mut self) -> Result<Option<Event>, Error> {
        loop {
            let mut len = [0u8; 4];
            match self.input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(spill_err(e)),
            }
            let mut fixed = [0u8; 8 * 4 + 1 + 2];
            self.input.read_exact(&mut fixed).map_err(spill_err)?;
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&fixed[i * 8..i * 8 + 8]);
                u64::from_be_bytes(b)
            };
            let lsn = Lsn(word(0));
            let xid = word(1)
                .checked_sub(1)
                .and_then(|x| u32::try_from(x).ok())
                .map(Xid);
            let commit_lsn = word(2).checked_sub(1).map(Lsn);
            let t = i64::from_be_bytes(word(3).to_be_bytes());
            let commit_time = (t != i64::MIN).then_some(PgTimestamp(t));
            let change_code = fixed[32] & 0x7f;
            let in_stream = fixed[32] & 0x80 != 0;
            let nrels = u16::from_be_bytes([fixed[33], fixed[34]]);
            let mut rels = Vec::with_capacity(usize::from(nrels));
            for _ in 0..nrels {
                let mut b = [0u8; 4];
                self.input.read_exact(&mut b).map_err(spill_err)?;
                let i = usize::try_from(u32::from_be_bytes(b)).map_err(spill_err_conv)?;
                let rel = self.rels.get(i).cloned().ok_or_else(|| {
                    Error::new(ErrorKind::Spill, "bad relation index in spill file")
                })?;
                rels.push(rel);
            }
            let n = usize::try_from(u32::from_be_bytes(len)).map_err(spill_err_conv)?;
            let mut payload = vec![0u8; n];
            self.input.read_exact(&mut payload).map_err(spill_err)?;
            let payload = Bytes::from(payload);
            let msg = PgoutputMessage::decode(payload, in_stream, &DecodeOptions::new(4))?;
            if msg.stream_xid().is_some_and(|x| self.aborted.contains(&x)) {
                continue;
            }
            let sub_xid = msg.stream_xid();
            let first = rels.first().cloned();
            let need = || {
                first
                    .clone()
                    .ok_or_else(|| Error::new(ErrorKind::Spill, "spilled change without relation"))
            };
            let kind = match msg {
                PgoutputMessage::Insert(m) => EventKind::Insert(
                    RowChange::new(need()?, sub_xid, Some(m.new), None)
                        .with_types(self.types.clone()),
                ),
                PgoutputMessage::Update(m) => EventKind::Update(
                    RowChange::new(need()?, sub_xid, Some(m.new), m.old.as_ref())
                        .with_types(self.types.clone()),
                ),
                PgoutputMessage::Delete(m) => EventKind::Delete(
                    RowChange::new(need()?, sub_xid, None, Some(&m.old))
                        .with_types(self.types.clone()),
                ),
                PgoutputMessage::Truncate(t) => EventKind::Truncate(TruncateEvent {
                    relations: rels,
                    options: t.options,
                    sub_xid,
                }),
                PgoutputMessage::Relation(_) => EventKind::Relation(RelationEvent {
                    relation: need()?,
                    change: match change_code {
                        0 => RelationChange::New,
                        1 => RelationChange::Unchanged,
                        2 => RelationChange::Renamed,
                        _ => RelationChange::ShapeChanged,
                    },
                }),
                PgoutputMessage::Type(t) => EventKind::Type(t.pg_type),
                PgoutputMessage::Message(m) => EventKind::Message(m),
                PgoutputMessage::Origin(o) => EventKind::Origin(o),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Spill,
                        "unexpected message in spill file",
                    ));
                }
            };
            return Ok(Some(Event {
                lsn,
                xid,
                commit_lsn,
                commit_time,
                kind,
                ack: None,
            }));
        }
    }
}

fn spill_err_conv(e: std::num::TryFromIntError) -> Error {
    spill_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogicalDecoder;
    use crate::decoder::tests::{
        begin, bytes, commit, insert, rel, stream_abort, stream_commit, stream_start,
    };
    use walstream_proto::pgoutput::{BeginPrepare, CommitPrepared, Prepare, RollbackPrepared};

    struct Rig {
        dec: LogicalDecoder,
        asm: TransactionAssembler,
    }

    impl Rig {
        fn new(options: AssemblyOptions) -> Self {
            let fb = LsnFeedback::new(Lsn(0x10));
            Self {
                dec: LogicalDecoder::new(DecodeOptions::new(3), fb.clone()),
                asm: TransactionAssembler::new(options, fb),
            }
        }

        fn feed(&mut self, lsn: u64, m: &PgoutputMessage) -> Vec<Assembled> {
            self.dec
                .handle_xlog_data(Lsn(lsn), Lsn(lsn), bytes(m))
                .unwrap();
            while let Some(e) = self.dec.poll_event() {
                self.asm.push(e).unwrap();
            }
            std::iter::from_fn(|| self.asm.poll()).collect()
        }
    }

    fn txn(a: Assembled) -> Transaction {
        match a {
            Assembled::Transaction(t) => t,
            Assembled::Event(e) => panic!("expected a transaction, got {e:?}"),
        }
    }

    fn ids(t: &mut Transaction) -> Vec<i64> {
        t.changes()
            .filter_map(|e| {
                let e = e.unwrap();
                let c = e.kind().row_change()?.new.clone()?;
                c.get("id")
                    .unwrap()
                    .value()
                    .and_then(walstream_proto::Value::as_i64)
            })
            .collect()
    }

    #[test]
    fn whole_transaction_delivered_at_commit() {
        let mut r = Rig::new(AssemblyOptions::default());
        assert!(r.feed(0x100, &begin(5, 0x180)).is_empty());
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        r.feed(0x120, &insert(None, "2"));
        let mut out = r.feed(0x190, &commit(0x180, 0x1b0));
        let mut t = txn(out.remove(0));
        assert_eq!(
            (t.xid(), t.commit_lsn(), t.end_lsn()),
            (Xid(5), Lsn(0x180), Lsn(0x1b0))
        );
        assert_eq!(t.len(), 3, "relation + two inserts");
        assert_eq!(ids(&mut t), [1, 2]);
        t.ack();
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x1b0));
    }

    #[test]
    fn streamed_transactions_reassembled_per_xid_with_subxact_abort() {
        let mut r = Rig::new(AssemblyOptions::default());
        r.feed(0x100, &stream_start(900, true));
        r.feed(0x100, &rel(Some(900)));
        r.feed(0x110, &insert(Some(900), "1"));
        r.feed(0x118, &insert(Some(901), "2")); // subtransaction 901
        r.feed(0x120, &PgoutputMessage::StreamStop);
        r.feed(0x130, &stream_start(800, true));
        r.feed(0x130, &rel(Some(800)));
        r.feed(0x140, &insert(Some(800), "80"));
        r.feed(0x150, &PgoutputMessage::StreamStop);
        r.feed(0x160, &stream_start(900, false));
        r.feed(0x170, &insert(Some(901), "3"));
        r.feed(0x178, &insert(Some(900), "4"));
        r.feed(0x180, &PgoutputMessage::StreamStop);
        assert!(r.feed(0x190, &stream_abort(900, 901)).is_empty());
        let mut t = txn(r.feed(0x200, &stream_commit(900, 0x200, 0x220)).remove(0));
        assert!(t.was_streamed());
        assert_eq!(ids(&mut t), [1, 4], "subtransaction 901 dropped");
        assert!(r.feed(0x300, &stream_abort(800, 800)).is_empty());
        assert!(r.asm.is_idle());
        assert_eq!(r.asm.buffered_bytes(), 0);
    }

    #[test]
    fn spill_bounds_memory_on_a_million_rows() {
        let limit = 256 * 1024;
        let mut r = Rig::new(AssemblyOptions {
            memory_limit: limit,
            ..AssemblyOptions::default()
        });
        r.feed(0x100, &stream_start(900, true));
        r.feed(0x100, &rel(Some(900)));
        let n: u64 = 1_000_000;
        let mut aborted = 0;
        for i in 0..n {
            // Every 1000th row is in a subtransaction that is rolled back later.
            let xid = if i % 1000 == 7 {
                aborted += 1;
                901
            } else {
                900
            };
            let id = i.to_string();
            r.dec
                .handle_xlog_data(
                    Lsn(0x200 + i),
                    Lsn(0x200 + i),
                    bytes(&insert(Some(xid), &id)),
                )
                .unwrap();
            while let Some(e) = r.dec.poll_event() {
                r.asm.push(e).unwrap();
            }
            assert!(r.asm.buffered_bytes() <= limit);
        }
        r.feed(0x200 + n, &PgoutputMessage::StreamStop);
        r.feed(0x200 + n, &stream_abort(900, 901));
        assert!(
            r.asm.peak_buffered_bytes() <= limit,
            "peak {}",
            r.asm.peak_buffered_bytes()
        );
        let end = 0x300 + n;
        let mut t = txn(r.feed(end, &stream_commit(900, end, end + 0x20)).remove(0));
        let mut count = 0u64;
        let mut last = -1i64;
        while let Some(ev) = t.next_change() {
            let ev = ev.unwrap();
            if let Some(c) = ev.kind().row_change() {
                let id = c
                    .new
                    .as_ref()
                    .unwrap()
                    .get("id")
                    .unwrap()
                    .value()
                    .and_then(walstream_proto::Value::as_i64)
                    .unwrap();
                assert!(id > last, "in order");
                assert_ne!(id % 1000, 7, "aborted subtransaction row");
                last = id;
                count += 1;
            }
        }
        assert_eq!(count, n - aborted);
    }

    fn begin_prepare(xid: u32) -> PgoutputMessage {
        PgoutputMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(0x180),
            end_lsn: Lsn(0x1a0),
            prepare_time: PgTimestamp(0),
            xid: Xid(xid),
            gid: "g1".into(),
        })
    }

    fn prepare(xid: u32) -> PgoutputMessage {
        PgoutputMessage::Prepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(0x180),
            end_lsn: Lsn(0x1a0),
            prepare_time: PgTimestamp(0),
            xid: Xid(xid),
            gid: "g1".into(),
        })
    }

    #[test]
    fn two_phase_at_prepare() {
        let mut r = Rig::new(AssemblyOptions::default());
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        let mut t = txn(r.feed(0x180, &prepare(7)).remove(0));
        assert_eq!(t.kind(), &TransactionKind::Prepared { gid: "g1".into() });
        assert_eq!(ids(&mut t), [1]);
        let cp = PgoutputMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(0x300),
            end_lsn: Lsn(0x320),
            commit_time: PgTimestamp(0),
            xid: Xid(7),
            gid: "g1".into(),
        });
        let out = r.feed(0x300, &cp);
        assert!(matches!(&out[0], Assembled::Event(e) if e.kind_name() == "commit_prepared"));
    }

    #[test]
    fn two_phase_at_commit_prepared_holds_and_caps_flush() {
        let mut r = Rig::new(AssemblyOptions {
            two_phase: TwoPhaseDelivery::AtCommitPrepared,
            ..AssemblyOptions::default()
        });
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        assert!(r.feed(0x180, &prepare(7)).is_empty());
        // A later transaction is delivered and acknowledged; the flush stays before PREPARE.
        r.feed(0x200, &begin(8, 0x280));
        r.feed(0x210, &insert(None, "2"));
        let t = txn(r.feed(0x290, &commit(0x280, 0x2a0)).remove(0));
        t.ack();
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x180));
        r.dec.handle_keepalive(Lsn(0x900));
        assert_eq!(
            r.dec.feedback().flushed(),
            Lsn(0x180),
            "held prepared transaction is in flight"
        );
        let cp = PgoutputMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(0x300),
            end_lsn: Lsn(0x320),
            commit_time: PgTimestamp(0),
            xid: Xid(7),
            gid: "g1".into(),
        });
        let mut t = txn(r.feed(0x300, &cp).remove(0));
        assert_eq!(t.kind(), &TransactionKind::Committed);
        assert_eq!(ids(&mut t), [1]);
        t.ack();
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x320));
        assert!(r.asm.is_idle());
    }

    #[test]
    fn rollback_prepared_drops_held_transaction() {
        let mut r = Rig::new(AssemblyOptions {
            two_phase: TwoPhaseDelivery::AtCommitPrepared,
            ..AssemblyOptions::default()
        });
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        r.feed(0x180, &prepare(7));
        let rp = PgoutputMessage::RollbackPrepared(RollbackPrepared {
            flags: 0,
            prepare_end_lsn: Lsn(0x1a0),
            rollback_end_lsn: Lsn(0x420),
            prepare_time: PgTimestamp(0),
            rollback_time: PgTimestamp(0),
            xid: Xid(7),
            gid: "g1".into(),
        });
        let out = r.feed(0x400, &rp);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Assembled::Event(e) if e.kind_name() == "rollback_prepared"));
        assert!(r.asm.is_idle());
        assert_eq!(r.asm.buffered_bytes(), 0);
    }

    #[test]
    fn resumed_event_drops_a_partly_streamed_transaction() {
        let mut r = Rig::new(AssemblyOptions::default());
        r.feed(0x100, &stream_start(900, true));
        r.feed(0x100, &rel(Some(900)));
        r.feed(0x110, &insert(Some(900), "1"));
        r.feed(0x120, &PgoutputMessage::StreamStop);
        // Connection lost; only the decoder is reset: its Resumed event resets the assembler.
        r.dec.reset_for_resume();
        let out = r.feed(0x100, &stream_start(900, true));
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Assembled::Event(e) if e.kind_name() == "resumed"));
        r.feed(0x100, &rel(Some(900)));
        r.feed(0x110, &insert(Some(900), "1"));
        r.feed(0x120, &PgoutputMessage::StreamStop);
        let t = txn(r.feed(0x200, &stream_commit(900, 0x200, 0x220)).remove(0));
        // Relation + insert once (4 if the partial block had been kept).
        assert_eq!(t.len(), 2, "the re-sent block replaces the partial one");
        assert!(r.asm.is_idle());
    }

    #[test]
    fn resent_streamed_transaction_is_skipped_after_resume() {
        let mut r = Rig::new(AssemblyOptions::default());
        r.feed(0x100, &stream_start(900, true));
        r.feed(0x100, &rel(Some(900)));
        r.feed(0x110, &insert(Some(900), "1"));
        r.feed(0x120, &PgoutputMessage::StreamStop);
        let t = txn(r.feed(0x200, &stream_commit(900, 0x200, 0x220)).remove(0));
        t.ack();
        r.dec.reset_for_resume();
        r.asm.reset_for_resume();
        r.feed(0x100, &stream_start(900, true));
        r.feed(0x100, &rel(Some(900)));
        r.feed(0x110, &insert(Some(900), "1"));
        r.feed(0x120, &PgoutputMessage::StreamStop);
        assert!(r.feed(0x200, &stream_commit(900, 0x200, 0x220)).is_empty());
        assert!(r.asm.is_idle());
    }

    fn commit_prepared(xid: u32, end: u64) -> PgoutputMessage {
        PgoutputMessage::CommitPrepared(CommitPrepared {
            flags: 0,
            commit_lsn: Lsn(end - 0x20),
            end_lsn: Lsn(end),
            commit_time: PgTimestamp(0),
            xid: Xid(xid),
            gid: "g1".into(),
        })
    }

    fn at_commit_prepared() -> Rig {
        Rig::new(AssemblyOptions {
            two_phase: TwoPhaseDelivery::AtCommitPrepared,
            ..AssemblyOptions::default()
        })
    }

    /// Regression: a held prepared transaction, a later transaction acknowledged, then a
    /// reconnect. The server re-sends the prepared transaction (the flush stopped before
    /// it); the decoder skipped it as acknowledged, so COMMIT PREPARED came alone and the
    /// transaction's changes were lost.
    #[test]
    fn held_prepared_transaction_is_delivered_after_a_resume() {
        let mut r = at_commit_prepared();
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        assert!(r.feed(0x180, &prepare(7)).is_empty());
        r.feed(0x200, &begin(8, 0x280));
        r.feed(0x210, &insert(None, "2"));
        txn(r.feed(0x290, &commit(0x280, 0x2a0)).remove(0)).ack();
        assert_eq!(r.dec.feedback().acknowledged(), Lsn(0x2a0));
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x180));
        // Reconnect at the reported 0x180: everything from the PREPARE comes again.
        r.dec.reset_for_resume();
        let out = r.feed(0x100, &begin_prepare(7));
        assert!(matches!(&out[..], [Assembled::Event(e)] if e.kind_name() == "resumed"));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        assert!(r.feed(0x180, &prepare(7)).is_empty(), "held again");
        // The acknowledged transaction is skipped.
        r.feed(0x200, &begin(8, 0x280));
        r.feed(0x210, &insert(None, "2"));
        assert!(r.feed(0x290, &commit(0x280, 0x2a0)).is_empty());
        let mut t = txn(r.feed(0x300, &commit_prepared(7, 0x320)).remove(0));
        assert_eq!(t.kind(), &TransactionKind::Committed);
        assert_eq!(ids(&mut t), [1]);
        t.ack();
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x320));
        assert!(r.asm.is_idle());
        assert_eq!(r.asm.buffered_bytes(), 0);
    }

    /// A prepared transaction committed and acknowledged, re-sent after a resume because an
    /// earlier prepared transaction is still held: it is held again and dropped silently at
    /// its (acknowledged) COMMIT PREPARED, neither delivered twice nor held forever.
    #[test]
    fn acknowledged_prepared_transaction_resent_after_a_resume_is_dropped() {
        let mut r = at_commit_prepared();
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x110, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        r.feed(0x180, &prepare(7));
        // xid 9 prepared later, committed, delivered and acknowledged while 7 is held.
        let bp9 = PgoutputMessage::BeginPrepare(BeginPrepare {
            prepare_lsn: Lsn(0x280),
            end_lsn: Lsn(0x2a0),
            prepare_time: PgTimestamp(0),
            xid: Xid(9),
            gid: "g9".into(),
        });
        let p9 = PgoutputMessage::Prepare(Prepare {
            flags: 0,
            prepare_lsn: Lsn(0x280),
            end_lsn: Lsn(0x2a0),
            prepare_time: PgTimestamp(0),
            xid: Xid(9),
            gid: "g9".into(),
        });
        r.feed(0x200, &bp9);
        r.feed(0x210, &insert(None, "9"));
        assert!(r.feed(0x280, &p9).is_empty());
        let mut t = txn(r.feed(0x300, &commit_prepared(9, 0x320)).remove(0));
        assert_eq!(ids(&mut t), [9]);
        t.ack();
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x180));
        r.dec.reset_for_resume();
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x110, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        r.feed(0x180, &prepare(7));
        r.feed(0x200, &bp9);
        r.feed(0x210, &insert(None, "9"));
        r.feed(0x280, &p9);
        assert!(
            r.feed(0x300, &commit_prepared(9, 0x320)).is_empty(),
            "not twice"
        );
        let mut t = txn(r.feed(0x400, &commit_prepared(7, 0x420)).remove(0));
        assert_eq!(ids(&mut t), [1]);
        t.ack();
        assert!(r.asm.is_idle(), "nothing held forever");
        assert_eq!(r.asm.buffered_bytes(), 0);
        assert_eq!(r.dec.feedback().flushed(), Lsn(0x420));
    }

    /// Regression: a held prepared transaction's bytes were counted again at PREPARE and
    /// never taken off at COMMIT PREPARED.
    #[test]
    fn committed_prepared_transaction_leaves_no_buffered_bytes() {
        let mut r = at_commit_prepared();
        r.feed(0x100, &begin_prepare(7));
        r.feed(0x100, &rel(None));
        r.feed(0x110, &insert(None, "1"));
        r.feed(0x180, &prepare(7));
        assert!(r.asm.buffered_bytes() > 0);
        txn(r.feed(0x300, &commit_prepared(7, 0x320)).remove(0));
        assert_eq!(r.asm.buffered_bytes(), 0);
    }
}
