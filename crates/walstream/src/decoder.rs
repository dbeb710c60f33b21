//! The sans-IO event builder: XLogData payloads in, [`Event`]s out.
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use walstream_proto::pgoutput::{
    ColumnValue, DecodeOptions, Observed, PgoutputDecoder, PgoutputMessage, RelationCache,
    TupleData,
};
use walstream_proto::{Lsn, Oid, PgTimestamp, TypeKind, TypeRegistry, Xid};

use crate::error::Error;
use crate::event::{Event, EventKind, RelationEvent, Resumed, RowChange, TruncateEvent};
use crate::feedback::{AckHandle, LsnFeedback};

/// Turns `pgoutput` XLogData payloads into [`Event`]s and keeps the [`LsnFeedback`] informed.
///
/// Legal call order, for each message the server sends in the copy stream, in arrival order:
///
/// * XLogData → [`handle_xlog_data`](Self::handle_xlog_data), then drain
///   [`poll_event`](Self::poll_event) until `None`;
/// * Primary keepalive → [`handle_keepalive`](Self::handle_keepalive) (after every earlier
///   XLogData was handled: that is what makes idle advancement safe);
/// * after the connection was lost and before streaming again →
///   [`reset_for_resume`](Self::reset_for_resume).
///
/// Then send a standby status update with [`LsnFeedback::positions`].
///
/// After a resume, transactions that end at or before the acknowledged position (the server
/// re-sends them when the last acknowledgement did not reach it) are skipped. Streamed
/// transactions cannot be recognised before their end: in event mode their blocks may be
/// delivered again (the final Stream Commit then carries an already-acknowledged LSN); the
/// [`TransactionAssembler`](crate::TransactionAssembler) drops them whole.
#[derive(Debug)]
pub struct LogicalDecoder {
    pgo: PgoutputDecoder,
    cache: RelationCache,
    feedback: LsnFeedback,
    types: Option<Arc<TypeRegistry>>,
    /// Collect the OIDs of types that are neither built in nor registered (see
    /// [`take_unresolved_types`](Self::take_unresolved_types)).
    collect_unresolved: bool,
    unresolved: BTreeSet<Oid>,
    /// (composite, attribute count) pairs that already caused a lookup: rows written before
    /// the type was altered do not cause one each.
    composite_rechecks: HashSet<(Oid, usize)>,
    /// Enum labels not in the registry that caused a lookup (once per type and label).
    enum_rechecks: HashSet<(Oid, String)>,
    txn: Option<TxnState>,
    streams: HashSet<Xid>,
    skip_through: Lsn,
    /// Prepared transactions whose PREPARE ends at or before it are skipped: the reported
    /// flush position when the connection started. It is below `skip_through` while the
    /// transaction assembler holds a prepared transaction back for its COMMIT PREPARED (it
    /// caps the reported position before the PREPARE): the server sends that transaction
    /// again and it must not be skipped although later transactions were acknowledged.
    prepare_skip_through: Lsn,
    /// Prepared transactions delivered on this connection although their PREPARE ends at
    /// or before `skip_through` (see `prepare_skip_through`): their COMMIT / ROLLBACK
    /// PREPARED is delivered even if acknowledged, so that whoever holds them can let go.
    replayed_prepares: HashSet<Xid>,
    out: VecDeque<Event>,
}

#[derive(Debug, Clone, Copy)]
struct TxnState {
    xid: Xid,
    commit_lsn: Lsn,
    commit_time: PgTimestamp,
    skip: bool,
}

impl LogicalDecoder {
    /// A decoder for `options` (protocol version, parallel streaming) reporting to `feedback`.
    pub fn new(options: DecodeOptions, feedback: LsnFeedback) -> Self {
        let skip_through = feedback.acknowledged();
        let prepare_skip_through = feedback.flushed().min(skip_through);
        Self {
            pgo: PgoutputDecoder::new(options),
            cache: RelationCache::new(),
            feedback,
            types: None,
            collect_unresolved: false,
            unresolved: BTreeSet::new(),
            composite_rechecks: HashSet::new(),
            enum_rechecks: HashSet::new(),
            txn: None,
            streams: HashSet::new(),
            skip_through,
            prepare_skip_through,
            replayed_prepares: HashSet::new(),
            out: VecDeque::new(),
        }
    }

    /// Decodes values of non-built-in types with `types`.
    #[must_use]
    pub fn with_types(mut self, types: TypeRegistry) -> Self {
        self.types = Some(Arc::new(types));
        self
    }

    /// Collects the OIDs of non-built-in types that the registry does not know, as Type and
    /// Relation messages name them, for [`take_unresolved_types`](Self::take_unresolved_types).
    /// [`LogicalStream`](crate::LogicalStream) uses this to look them up in the catalog.
    #[must_use]
    pub fn with_unresolved_type_collection(mut self, on: bool) -> Self {
        self.collect_unresolved = on;
        self
    }

    /// The OIDs collected since the last call (see
    /// [`with_unresolved_type_collection`](Self::with_unresolved_type_collection)). Register
    /// what they are with [`register_types`](Self::register_types) before handling the next
    /// message: rows decode with the registry as it was when their change was handled.
    pub fn take_unresolved_types(&mut self) -> BTreeSet<Oid> {
        std::mem::take(&mut self.unresolved)
    }

    /// True when [`take_unresolved_types`](Self::take_unresolved_types) has something.
    pub fn has_unresolved_types(&self) -> bool {
        !self.unresolved.is_empty()
    }

    /// Adds (or replaces) registry entries. Rows already handed out keep the registry they were
    /// decoded with.
    pub fn register_types(&mut self, entries: impl IntoIterator<Item = (Oid, TypeKind)>) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let types = Arc::make_mut(self.types.get_or_insert_with(Default::default));
        for (oid, kind) in entries {
            types.register(oid, kind);
        }
        self.refresh_queued_types();
    }

    /// Row events still queued (not polled) decode with the current registry.
    fn refresh_queued_types(&mut self) {
        for ev in &mut self.out {
            if let EventKind::Insert(ch) | EventKind::Update(ch) | EventKind::Delete(ch) =
                &mut ev.kind
            {
                ch.refresh_types(&self.types);
            }
        }
    }

    /// Notes columns of `tuple` whose type changed without `pgoutput` describing it again, to
    /// be looked up again: composites whose attribute count differs from the registry's
    /// (`ALTER TYPE ... ADD ATTRIBUTE`), enums (and arrays of enums) with a label the
    /// registry does not list (`ALTER TYPE ... ADD VALUE`). Once per (type, count) and
    /// (type, label).
    fn check_user_values(
        &mut self,
        relation: &walstream_proto::pgoutput::Relation,
        tuple: &TupleData,
    ) {
        let Some(types) = self
            .types
            .as_ref()
            .filter(|t| t.has_composites() || t.has_enum_labels())
            .map(Arc::clone)
        else {
            return;
        };
        if types.has_enum_labels() {
            self.check_enum_labels(&types, relation, tuple);
        }
        if !types.has_composites() {
            return;
        }
        for (col, value) in relation.columns.iter().zip(tuple.iter()) {
            let Some(fields) = types.composite_fields(col.type_oid) else {
                continue;
            };
            let arity = match &value {
                ColumnValue::Text(b) => crate::types::composite_text_arity(b),
                ColumnValue::Binary(b) => b
                    .get(..4)
                    .and_then(|n| <[u8; 4]>::try_from(n).ok())
                    .and_then(|n| usize::try_from(i32::from_be_bytes(n)).ok()),
                _ => continue,
            };
            let matches = match arity {
                // `()`: no attributes, or one that is NULL.
                Some(0) => fields.len() <= 1,
                Some(n) => n == fields.len(),
                None => true,
            };
            if !matches
                && self
                    .composite_rechecks
                    .insert((col.type_oid, arity.unwrap_or(0)))
            {
                self.unresolved.insert(col.type_oid);
            }
        }
    }

    /// Notes enum columns (and arrays of enums) holding a label the registry does not list.
    fn check_enum_labels(
        &mut self,
        types: &TypeRegistry,
        relation: &walstream_proto::pgoutput::Relation,
        tuple: &TupleData,
    ) {
        for (col, value) in relation.columns.iter().zip(tuple.iter()) {
            let Some((enum_oid, is_array)) = crate::types::enum_of_with_array(types, col.type_oid)
            else {
                continue;
            };
            let Some(labels) = types.enum_labels(enum_oid) else {
                continue;
            };
            let (format, data) = match value {
                ColumnValue::Text(b) => (walstream_proto::ValueFormat::Text, b),
                ColumnValue::Binary(b) => (walstream_proto::ValueFormat::Binary, b),
                _ => continue,
            };
            // One label: the value is the label's bytes in both formats.
            if !is_array && labels.iter().any(|l| l.as_bytes() == &data[..]) {
                continue;
            }
            // Undecodable values are the row's business (its decode error), not a lookup's.
            let Ok(decoded) = types.decode(col.type_oid, format, data.clone()) else {
                continue;
            };
            let single = [decoded];
            let values: &[walstream_proto::Value] = match &single[0] {
                walstream_proto::Value::Array(a) => a.elements(),
                _ => &single,
            };
            for v in values {
                let walstream_proto::Value::Enum(label) = v else {
                    continue;
                };
                if !labels.iter().any(|l| l == label.as_str())
                    && self
                        .enum_rechecks
                        .insert((enum_oid, label.as_str().to_owned()))
                {
                    self.unresolved.insert(enum_oid);
                }
            }
        }
    }

    /// Registers enum types with their labels in sort order (see
    /// [`TypeRegistry::register_enum`]).
    pub fn register_enums(&mut self, entries: impl IntoIterator<Item = (Oid, Vec<String>)>) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let types = Arc::make_mut(self.types.get_or_insert_with(Default::default));
        for (oid, labels) in entries {
            types.register_enum(oid, labels);
        }
        self.refresh_queued_types();
    }

    /// Registers composite types with their attributes (see
    /// [`TypeRegistry::register_composite`]).
    pub fn register_composites(
        &mut self,
        entries: impl IntoIterator<Item = (Oid, Vec<walstream_proto::CompositeField>)>,
    ) {
        let mut entries = entries.into_iter().peekable();
        if entries.peek().is_none() {
            return;
        }
        let types = Arc::make_mut(self.types.get_or_insert_with(Default::default));
        for (oid, fields) in entries {
            types.register_composite(oid, fields);
        }
        self.refresh_queued_types();
    }

    /// The registry used for non-built-in types, if any.
    pub fn types(&self) -> Option<&TypeRegistry> {
        self.types.as_deref()
    }

    /// True when `oid` is decodable: built in or registered.
    fn knows_type(&self, oid: Oid) -> bool {
        crate::types::is_builtin(oid) || self.types.as_ref().is_some_and(|t| t.get(oid).is_some())
    }

    /// Notes the unknown types `observed` names.
    fn collect_types(&mut self, observed: &Observed) {
        if !self.collect_unresolved {
            return;
        }
        let oids: Vec<Oid> = match observed {
            Observed::Relation { relation, .. } => {
                relation.columns.iter().map(|c| c.type_oid).collect()
            }
            Observed::Type { pg_type, .. } => {
                // A composite is looked up again whenever the server describes it: its
                // attributes may have changed (the OID stays).
                let oid = pg_type.oid;
                if self.types.as_ref().and_then(|t| t.get(oid)) == Some(TypeKind::Composite) {
                    self.unresolved.insert(oid);
                }
                vec![oid]
            }
            _ => return,
        };
        for oid in oids {
            if !self.knows_type(oid) {
                self.unresolved.insert(oid);
            }
        }
    }

    /// The shared feedback state.
    pub fn feedback(&self) -> &LsnFeedback {
        &self.feedback
    }

    /// The relations and types seen so far.
    pub fn relations(&self) -> &RelationCache {
        &self.cache
    }

    /// The decode options.
    pub fn options(&self) -> &DecodeOptions {
        self.pgo.options()
    }

    /// True when no transaction and no streamed transaction is open.
    pub fn is_idle(&self) -> bool {
        self.txn.is_none() && self.streams.is_empty()
    }

    /// Handles one XLogData message: `wal_start`/`wal_end` from its header, `data` the
    /// `pgoutput` message.
    pub fn handle_xlog_data(
        &mut self,
        wal_start: Lsn,
        wal_end: Lsn,
        data: Bytes,
    ) -> Result<(), Error> {
        self.feedback.record_received(wal_start.max(wal_end));
        let msg = self.pgo.decode(data)?;
        self.handle_message(wal_start, msg)
    }

    /// Handles a primary keepalive with the server's `wal_end`.
    pub fn handle_keepalive(&mut self, wal_end: Lsn) {
        self.feedback.keepalive(wal_end);
    }

    /// The next event, if any. With auto-ack on, boundary events are acknowledged here.
    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.out.pop_front()?;
        if self.feedback.auto_ack() {
            ev.ack();
        }
        Some(ev)
    }

    /// Forgets everything in flight after a lost connection: open transactions and streamed
    /// blocks (the server sends them again from their start) and events not yet polled. The
    /// next stream starts at the acknowledged position; transactions ending at or before it are
    /// skipped.
    ///
    /// Queues an [`EventKind::Resumed`] event as the first event of the new connection,
    /// listing the transactions left open (repeated resets before any new event merge into
    /// one).
    pub fn reset_for_resume(&mut self) {
        // A Resumed event still queued from an earlier reset (a failed reconnect attempt).
        let mut discarded = match self.out.front().map(Event::kind) {
            Some(EventKind::Resumed(r)) => r.discarded.clone(),
            _ => Vec::new(),
        };
        if let Some(t) = self.txn.take() {
            self.feedback.release();
            if !t.skip {
                discarded.push(t.xid);
            }
        }
        for xid in self.streams.drain() {
            self.feedback.release();
            discarded.push(xid);
        }
        discarded.sort_unstable_by_key(|x| x.0);
        discarded.dedup();
        self.out.clear();
        self.pgo = PgoutputDecoder::new(*self.pgo.options());
        self.skip_through = self.feedback.acknowledged();
        let at = self.feedback.flushed();
        self.prepare_skip_through = at.min(self.skip_through);
        self.replayed_prepares.clear();
        self.out.push_back(Event {
            lsn: at,
            xid: None,
            commit_lsn: None,
            commit_time: None,
            kind: EventKind::Resumed(Resumed { at, discarded }),
            ack: None,
        });
    }

    fn push(&mut self, lsn: Lsn, kind: EventKind, ack: Option<AckHandle>) {
        let (xid, commit_lsn, commit_time) = match (self.pgo.current_stream(), &self.txn) {
            (Some(x), _) => (Some(x), None, None),
            (None, Some(t)) => (Some(t.xid), Some(t.commit_lsn), Some(t.commit_time)),
            (None, None) => (None, None, None),
        };
        self.out.push_back(Event {
            lsn,
            xid,
            commit_lsn,
            commit_time,
            kind,
            ack,
        });
    }

    fn skipping(&self) -> bool {
        self.pgo.current_stream().is_none() && self.txn.is_some_and(|t| t.skip)
    }

    fn begin(
        &mut self,
        xid: Xid,
        commit_lsn: Lsn,
        commit_time: PgTimestamp,
        skip: bool,
    ) -> Result<(), Error> {
        if self.txn.is_some() || self.pgo.in_stream() {
            return Err(Error::protocol(
                "a transaction began while another was open",
            ));
        }
        self.feedback.hold();
        self.txn = Some(TxnState {
            xid,
            commit_lsn,
            commit_time,
            skip,
        });
        Ok(())
    }

    fn end(&mut self, what: &str) -> Result<TxnState, Error> {
        let txn = self
            .txn
            .take()
            .ok_or_else(|| Error::protocol(format!("{what} without an open transaction")))?;
        self.feedback.release();
        Ok(txn)
    }

    fn boundary(&self, end: Lsn) -> Option<AckHandle> {
        Some(self.feedback.register(end))
    }

    fn handle_message(&mut self, lsn: Lsn, msg: PgoutputMessage) -> Result<(), Error> {
        let observed = self.cache.observe(&msg)?;
        let sub_xid = msg.stream_xid();
        let types = self.types.clone();
        match msg {
            PgoutputMessage::Begin(b) => {
                let skip = b.final_lsn < self.skip_through;
                self.begin(b.xid, b.final_lsn, b.commit_time, skip)?;
                if !skip {
                    self.push(lsn, EventKind::Begin(b), None);
                }
            }
            PgoutputMessage::Commit(c) => {
                let was_skipping = self.skipping();
                if !was_skipping {
                    let ack = self.boundary(c.end_lsn);
                    self.push(lsn, EventKind::Commit(c), ack);
                }
                self.end("Commit")?;
            }
            PgoutputMessage::BeginPrepare(b) => {
                let skip = b.end_lsn <= self.prepare_skip_through;
                if !skip && b.end_lsn <= self.skip_through {
                    self.replayed_prepares.insert(b.xid);
                }
                self.begin(b.xid, b.prepare_lsn, b.prepare_time, skip)?;
                if !skip {
                    self.push(lsn, EventKind::BeginPrepare(b), None);
                }
            }
            PgoutputMessage::Prepare(p) => {
                if !self.skipping() {
                    let ack = self.boundary(p.end_lsn);
                    self.push(lsn, EventKind::Prepare(p), ack);
                }
                self.end("Prepare")?;
            }
            PgoutputMessage::CommitPrepared(c) => {
                if c.end_lsn > self.skip_through || self.replayed_prepares.remove(&c.xid) {
                    let ack = self.boundary(c.end_lsn);
                    let (xid, at, time) = (c.xid, c.commit_lsn, c.commit_time);
                    self.out.push_back(Event {
                        lsn,
                        xid: Some(xid),
                        commit_lsn: Some(at),
                        commit_time: Some(time),
                        kind: EventKind::CommitPrepared(c),
                        ack,
                    });
                }
            }
            PgoutputMessage::RollbackPrepared(r) => {
                if r.rollback_end_lsn > self.skip_through || self.replayed_prepares.remove(&r.xid) {
                    let ack = self.boundary(r.rollback_end_lsn);
                    let xid = r.xid;
                    self.out.push_back(Event {
                        lsn,
                        xid: Some(xid),
                        commit_lsn: None,
                        commit_time: Some(r.rollback_time),
                        kind: EventKind::RollbackPrepared(r),
                        ack,
                    });
                }
            }
            PgoutputMessage::Origin(o) => {
                if !self.skipping() {
                    self.push(lsn, EventKind::Origin(o), None);
                }
            }
            PgoutputMessage::Relation(_) | PgoutputMessage::Type(_) => {
                // Also in a skipped transaction: the relation is used by later ones.
                self.collect_types(&observed);
                if self.skipping() {
                    return Ok(());
                }
                let kind = match observed {
                    Observed::Relation { relation, change } => {
                        EventKind::Relation(RelationEvent { relation, change })
                    }
                    Observed::Type { pg_type, .. } => EventKind::Type(pg_type),
                    _ => {
                        return Err(Error::protocol(
                            "relation cache did not store a description",
                        ));
                    }
                };
                self.push(lsn, kind, None);
            }
            PgoutputMessage::Insert(m) => {
                let rel = row_relation(observed)?;
                if self.collect_unresolved {
                    self.check_user_values(&rel, &m.new);
                }
                if !self.skipping() {
                    let ch = RowChange::new(rel, sub_xid, Some(m.new), None).with_types(types);
                    self.push(lsn, EventKind::Insert(ch), None);
                }
            }
            PgoutputMessage::Update(m) => {
                let rel = row_relation(observed)?;
                if self.collect_unresolved {
                    self.check_user_values(&rel, &m.new);
                }
                if !self.skipping() {
                    let ch =
                        RowChange::new(rel, sub_xid, Some(m.new), m.old.as_ref()).with_types(types);
                    self.push(lsn, EventKind::Update(ch), None);
                }
            }
            PgoutputMessage::Delete(m) => {
                let rel = row_relation(observed)?;
                if !self.skipping() {
                    let ch = RowChange::new(rel, sub_xid, None, Some(&m.old)).with_types(types);
                    self.push(lsn, EventKind::Delete(ch), None);
                }
            }
            PgoutputMessage::Truncate(t) => {
                let Observed::Truncate(relations) = observed else {
                    return Err(Error::protocol("relation cache did not resolve a Truncate"));
                };
                if !self.skipping() {
                    let ev = TruncateEvent {
                        relations,
                        options: t.options,
                        sub_xid,
                    };
                    self.push(lsn, EventKind::Truncate(ev), None);
                }
            }
            PgoutputMessage::Message(m) => {
                if m.is_transactional() || self.txn.is_some() || self.pgo.in_stream() {
                    if !self.skipping() {
                        self.push(lsn, EventKind::Message(m), None);
                    }
                } else if m.lsn > self.skip_through {
                    let ack = self.boundary(m.lsn);
                    self.push(lsn, EventKind::Message(m), ack);
                }
            }
            PgoutputMessage::StreamStart(s) => {
                if self.txn.is_some() {
                    return Err(Error::protocol("Stream Start inside a transaction"));
                }
                if self.streams.insert(s.xid) {
                    self.feedback.hold();
                }
                self.push(lsn, EventKind::StreamStart(s), None);
            }
            PgoutputMessage::StreamStop => {
                // The decoder already left the block; report it with the block's xid unknown.
                self.out.push_back(Event {
                    lsn,
                    xid: None,
                    commit_lsn: None,
                    commit_time: None,
                    kind: EventKind::StreamStop,
                    ack: None,
                });
            }
            PgoutputMessage::StreamCommit(c) => {
                if self.streams.remove(&c.xid) {
                    self.feedback.release();
                }
                let ack = self.boundary(c.end_lsn);
                let (xid, at, time) = (c.xid, c.commit_lsn, c.commit_time);
                self.out.push_back(Event {
                    lsn,
                    xid: Some(xid),
                    commit_lsn: Some(at),
                    commit_time: Some(time),
                    kind: EventKind::StreamCommit(c),
                    ack,
                });
            }
            PgoutputMessage::StreamAbort(a) => {
                if a.is_toplevel() && self.streams.remove(&a.xid) {
                    self.feedback.release();
                }
                let xid = a.xid;
                self.out.push_back(Event {
                    lsn,
                    xid: Some(xid),
                    commit_lsn: None,
                    commit_time: None,
                    kind: EventKind::StreamAbort(a),
                    ack: None,
                });
            }
            PgoutputMessage::StreamPrepare(p) => {
                if self.streams.remove(&p.xid) {
                    self.feedback.release();
                }
                if p.end_lsn <= self.skip_through {
                    self.replayed_prepares.insert(p.xid);
                }
                let ack = self.boundary(p.end_lsn);
                let (xid, at, time) = (p.xid, p.prepare_lsn, p.prepare_time);
                self.out.push_back(Event {
                    lsn,
                    xid: Some(xid),
                    commit_lsn: Some(at),
                    commit_time: Some(time),
                    kind: EventKind::StreamPrepare(p),
                    ack,
                });
            }
            _ => return Err(Error::protocol("unsupported pgoutput message")),
        }
        Ok(())
    }
}

fn row_relation(observed: Observed) -> Result<Arc<walstream_proto::pgoutput::Relation>, Error> {
    match observed {
        Observed::Row(rel) => Ok(rel),
        _ => Err(Error::protocol(
            "relation cache did not resolve a row change",
        )),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::row::tests::{relation, tuple};
    use walstream_proto::pgoutput::{
        self as pgo, Begin, Commit, Insert, LogicalMessage, RelationMessage, StreamAbort,
        StreamCommit, StreamStart,
    };

    pub(crate) fn bytes(m: &PgoutputMessage) -> Bytes {
        m.to_bytes().unwrap()
    }

    pub(crate) fn begin(xid: u32, final_lsn: u64) -> PgoutputMessage {
        PgoutputMessage::Begin(Begin {
            final_lsn: Lsn(final_lsn),
            commit_time: PgTimestamp(0),
            xid: Xid(xid),
        })
    }

    pub(crate) fn commit(commit_lsn: u64, end_lsn: u64) -> PgoutputMessage {
        PgoutputMessage::Commit(Commit {
            flags: 0,
            commit_lsn: Lsn(commit_lsn),
            end_lsn: Lsn(end_lsn),
            commit_time: PgTimestamp(0),
        })
    }

    pub(crate) fn rel(xid: Option<u32>) -> PgoutputMessage {
        PgoutputMessage::Relation(RelationMessage {
            xid: xid.map(Xid),
            relation: relation(16384, "t", &[("id", 23, true), ("v", 25, false)]),
        })
    }

    pub(crate) fn insert(xid: Option<u32>, id: &str) -> PgoutputMessage {
        PgoutputMessage::Insert(Insert {
            xid: xid.map(Xid),
            relation_id: Oid(16384),
            new: tuple(&[Some(id), Some("x")]),
        })
    }

    pub(crate) fn stream_start(xid: u32, first: bool) -> PgoutputMessage {
        PgoutputMessage::StreamStart(StreamStart {
            xid: Xid(xid),
            first_segment: first,
        })
    }

    pub(crate) fn stream_commit(xid: u32, commit_lsn: u64, end_lsn: u64) -> PgoutputMessage {
        PgoutputMessage::StreamCommit(StreamCommit {
            xid: Xid(xid),
            flags: 0,
            commit_lsn: Lsn(commit_lsn),
            end_lsn: Lsn(end_lsn),
            commit_time: PgTimestamp(0),
        })
    }

    pub(crate) fn stream_abort(xid: u32, subxid: u32) -> PgoutputMessage {
        PgoutputMessage::StreamAbort(StreamAbort {
            xid: Xid(xid),
            subxid: Xid(subxid),
            abort_info: None,
        })
    }

    fn feed(d: &mut LogicalDecoder, msgs: &[(u64, PgoutputMessage)]) -> Vec<Event> {
        let mut out = Vec::new();
        for (lsn, m) in msgs {
            d.handle_xlog_data(Lsn(*lsn), Lsn(*lsn), bytes(m)).unwrap();
            while let Some(e) = d.poll_event() {
                out.push(e);
            }
        }
        out
    }

    fn kinds(evs: &[Event]) -> Vec<&'static str> {
        evs.iter().map(Event::kind_name).collect()
    }

    fn decoder(start: u64) -> LogicalDecoder {
        LogicalDecoder::new(DecodeOptions::new(2), LsnFeedback::new(Lsn(start)))
    }

    #[test]
    fn transaction_events_and_commit_end_lsn_ack() {
        let mut d = decoder(0x10);
        let evs = feed(
            &mut d,
            &[
                (0x100, begin(700, 0x180)),
                (0x100, rel(None)),
                (0x120, insert(None, "1")),
                (0x190, commit(0x180, 0x1b0)),
            ],
        );
        assert_eq!(kinds(&evs), ["begin", "relation", "insert", "commit"]);
        let ins = &evs[2];
        assert_eq!(ins.xid(), Some(Xid(700)));
        assert_eq!(ins.commit_lsn(), Some(Lsn(0x180)));
        let change = ins.kind().row_change().unwrap();
        assert_eq!((change.schema(), change.table()), ("public", "t"));
        assert_eq!(
            change
                .new
                .as_ref()
                .unwrap()
                .get("id")
                .unwrap()
                .value()
                .and_then(walstream_proto::Value::as_i64),
            Some(1)
        );
        assert_eq!(ins.ack_lsn(), None);
        // The commit acknowledges its END lsn, not commit_lsn.
        assert_eq!(evs[3].ack_lsn(), Some(Lsn(0x1b0)));
        assert_eq!(d.feedback().flushed(), Lsn(0x10));
        assert!(evs[3].ack());
        assert_eq!(d.feedback().positions().flush, Lsn(0x1b0));
        assert!(d.is_idle());
    }

    #[test]
    fn keepalive_inside_transaction_does_not_advance() {
        let mut d = decoder(0x10);
        feed(
            &mut d,
            &[
                (0x100, begin(700, 0x180)),
                (0x100, rel(None)),
                (0x120, insert(None, "1")),
            ],
        );
        d.handle_keepalive(Lsn(0x500));
        assert_eq!(d.feedback().flushed(), Lsn(0x10));
        let evs = feed(&mut d, &[(0x190, commit(0x180, 0x1b0))]);
        d.handle_keepalive(Lsn(0x600));
        assert_eq!(
            d.feedback().flushed(),
            Lsn(0x10),
            "commit delivered but not acked"
        );
        evs[0].ack();
        assert_eq!(
            d.feedback().flushed(),
            Lsn(0x600),
            "remembered idle keepalive applies"
        );
    }

    #[test]
    fn open_streamed_transaction_blocks_idle_advance() {
        let mut d = decoder(0x10);
        feed(
            &mut d,
            &[
                (0x100, stream_start(900, true)),
                (0x100, rel(Some(900))),
                (0x110, insert(Some(900), "1")),
                (0x120, PgoutputMessage::StreamStop),
            ],
        );
        d.handle_keepalive(Lsn(0x500));
        assert_eq!(d.feedback().flushed(), Lsn(0x10));
        let evs = feed(&mut d, &[(0x600, stream_commit(900, 0x600, 0x620))]);
        assert_eq!(evs[0].ack_lsn(), Some(Lsn(0x620)));
        evs[0].ack();
        d.handle_keepalive(Lsn(0x700));
        assert_eq!(d.feedback().flushed(), Lsn(0x700));
    }

    #[test]
    fn top_level_stream_abort_ends_in_flight() {
        let mut d = decoder(0x10);
        feed(
            &mut d,
            &[
                (0x100, stream_start(900, true)),
                (0x110, insert_with_rel()),
                (0x120, PgoutputMessage::StreamStop),
            ],
        );
        let evs = feed(&mut d, &[(0x130, stream_abort(900, 901))]);
        assert_eq!(kinds(&evs), ["stream_abort"]);
        assert!(
            !d.is_idle(),
            "subtransaction abort keeps the transaction open"
        );
        feed(&mut d, &[(0x140, stream_abort(900, 900))]);
        assert!(d.is_idle());
        d.handle_keepalive(Lsn(0x200));
        assert_eq!(d.feedback().flushed(), Lsn(0x200));
    }

    fn insert_with_rel() -> PgoutputMessage {
        rel(Some(900))
    }

    #[test]
    fn non_transactional_message_is_a_boundary() {
        let mut d = decoder(0x10);
        let m = PgoutputMessage::Message(LogicalMessage {
            xid: None,
            flags: 0,
            lsn: Lsn(0x158),
            prefix: "p".into(),
            content: Bytes::from_static(b"hello"),
        });
        let evs = feed(&mut d, &[(0x158, m)]);
        assert_eq!(evs[0].ack_lsn(), Some(Lsn(0x158)));
        d.handle_keepalive(Lsn(0x300));
        assert_eq!(d.feedback().flushed(), Lsn(0x10));
        evs[0].ack();
        assert_eq!(d.feedback().flushed(), Lsn(0x300));
    }

    #[test]
    fn auto_ack_acknowledges_at_delivery() {
        let mut d = decoder(0x10);
        d.feedback().set_auto_ack(true);
        feed(
            &mut d,
            &[(0x100, begin(1, 0x180)), (0x190, commit(0x180, 0x1b0))],
        );
        assert_eq!(d.feedback().flushed(), Lsn(0x1b0));
    }

    #[test]
    fn resume_skips_acknowledged_transactions_and_replays_the_rest() {
        let mut d = decoder(0x10);
        let evs = feed(
            &mut d,
            &[
                (0x100, begin(1, 0x180)),
                (0x100, rel(None)),
                (0x120, insert(None, "1")),
                (0x190, commit(0x180, 0x1b0)),
                (0x200, begin(2, 0x280)),
                (0x210, insert(None, "2")),
            ],
        );
        evs[3].ack();
        // Connection lost mid-transaction 2, before the ack reached the server.
        d.reset_for_resume();
        assert!(d.is_idle());
        d.handle_keepalive(Lsn(0x900));
        let evs = feed(
            &mut d,
            &[
                (0x100, begin(1, 0x180)),
                (0x100, rel(None)),
                (0x120, insert(None, "1")),
                (0x190, commit(0x180, 0x1b0)),
                (0x200, begin(2, 0x280)),
                (0x210, insert(None, "2")),
                (0x290, commit(0x280, 0x2b0)),
            ],
        );
        assert_eq!(
            kinds(&evs),
            ["resumed", "begin", "insert", "commit"],
            "the resume announced, transaction 1 skipped, 2 delivered whole"
        );
        let EventKind::Resumed(r) = evs[0].kind() else {
            panic!("not resumed");
        };
        assert_eq!((r.at, r.discarded.as_slice()), (Lsn(0x1b0), &[Xid(2)][..]));
        assert_eq!(evs[1].xid(), Some(Xid(2)));
        // The relation from the skipped transaction still reached the cache.
        assert_eq!(d.relations().relation_count(), 1);
    }

    #[test]
    fn unknown_types_are_collected_and_registered_types_decode_later_rows() {
        let mut d = decoder(0x10).with_unresolved_type_collection(true);
        let rel = PgoutputMessage::Relation(RelationMessage {
            xid: None,
            relation: relation(16384, "t", &[("id", 23, true), ("v", 16_500, false)]),
        });
        let ins = || {
            PgoutputMessage::Insert(Insert {
                xid: None,
                relation_id: Oid(16384),
                new: tuple(&[Some("1"), Some("happy")]),
            })
        };
        let evs = feed(
            &mut d,
            &[(0x100, begin(1, 0x180)), (0x100, rel), (0x110, ins())],
        );
        // Built-in int4 is not collected; the unknown 16500 is, once.
        assert_eq!(
            d.take_unresolved_types().into_iter().collect::<Vec<_>>(),
            [Oid(16_500)]
        );
        assert!(!d.has_unresolved_types());
        let v = |ev: &Event| {
            ev.kind()
                .row_change()
                .unwrap()
                .new
                .as_ref()
                .unwrap()
                .get("v")
                .unwrap()
                .value()
                .cloned()
        };
        assert!(matches!(
            v(&evs[2]),
            Some(walstream_proto::Value::Unknown { .. })
        ));
        d.register_types([(Oid(16_500), TypeKind::Enum)]);
        let evs = feed(&mut d, &[(0x120, ins())]);
        assert_eq!(v(&evs[0]).unwrap().to_string(), "happy");
        assert!(matches!(v(&evs[0]), Some(walstream_proto::Value::Enum(_))));
        // Known now: a Relation naming it again collects nothing.
        let rel = PgoutputMessage::Relation(RelationMessage {
            xid: None,
            relation: relation(16384, "t", &[("id", 23, true), ("v", 16_500, false)]),
        });
        feed(&mut d, &[(0x130, rel)]);
        assert!(!d.has_unresolved_types());
        // Without collection nothing is gathered.
        let mut d = decoder(0x10);
        feed(
            &mut d,
            &[(0x100, begin(1, 0x180)), (0x100, rel_with(16_600))],
        );
        assert!(!d.has_unresolved_types());
    }

    #[test]
    fn an_enum_label_missing_from_the_registry_is_looked_up_once() {
        let mut types = TypeRegistry::new();
        types.register_enum(Oid(16_500), vec!["sad".into(), "happy".into()]);
        types.register(
            Oid(16_501),
            TypeKind::Array {
                element: Oid(16_500),
            },
        );
        let mut d = decoder(0x10)
            .with_types(types)
            .with_unresolved_type_collection(true);
        let rel = PgoutputMessage::Relation(RelationMessage {
            xid: None,
            relation: relation(
                16384,
                "t",
                &[("id", 23, true), ("v", 16_500, false), ("a", 16_501, false)],
            ),
        });
        let ins = |v: &str, a: &str| {
            PgoutputMessage::Insert(Insert {
                xid: None,
                relation_id: Oid(16384),
                new: tuple(&[Some("1"), Some(v), Some(a)]),
            })
        };
        feed(
            &mut d,
            &[
                (0x100, begin(1, 0x180)),
                (0x100, rel),
                (0x110, ins("happy", "{sad,NULL}")),
            ],
        );
        assert!(!d.has_unresolved_types(), "known labels");
        feed(&mut d, &[(0x120, ins("new", "{}"))]);
        assert_eq!(
            d.take_unresolved_types().into_iter().collect::<Vec<_>>(),
            [Oid(16_500)]
        );
        // The same unknown label again (say the lookup did not find it): no new lookup; a
        // new label in an array: one.
        feed(&mut d, &[(0x130, ins("new", "{new}"))]);
        assert!(!d.has_unresolved_types());
        feed(&mut d, &[(0x140, ins("sad", "{sad,newer}"))]);
        assert_eq!(
            d.take_unresolved_types().into_iter().collect::<Vec<_>>(),
            [Oid(16_500)]
        );
        // Registered with the new labels: queued rows see them.
        d.register_enums([(
            Oid(16_500),
            vec!["sad".into(), "happy".into(), "new".into(), "newer".into()],
        )]);
        assert_eq!(
            d.types().unwrap().enum_labels(Oid(16_500)).unwrap().len(),
            4
        );
        feed(&mut d, &[(0x150, ins("newer", "{new}"))]);
        assert!(!d.has_unresolved_types());
    }

    fn rel_with(type_oid: u32) -> PgoutputMessage {
        PgoutputMessage::Relation(RelationMessage {
            xid: None,
            relation: relation(16384, "t", &[("id", 23, true), ("v", type_oid, false)]),
        })
    }

    #[test]
    fn protocol_errors_are_typed() {
        let mut d = decoder(0);
        let err = d
            .handle_xlog_data(Lsn(1), Lsn(1), bytes(&commit(1, 2)))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Protocol);
        let err = d
            .handle_xlog_data(Lsn(1), Lsn(1), Bytes::from_static(b"Z"))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode);
        let err = d
            .handle_xlog_data(Lsn(1), Lsn(1), bytes(&insert(None, "1")))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Decode, "unknown relation");
        let _ = pgo::MessageTag::BEGIN;
    }
}
