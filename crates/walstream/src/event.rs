//! Events: what a logical stream hands to the user.
//!
//! Each [`Event`] carries the WAL position it was sent at ([`Event::lsn`]), the transaction it
//! belongs to ([`Event::xid`], [`Event::commit_lsn`], [`Event::commit_time`] where known) and
//! its [`EventKind`]. Row events hold the relation (`Arc<Relation>`) and [`Row`]s whose values
//! are decoded lazily. Events that complete a unit of work (commits, prepares, non-transactional
//! messages, ...) carry an [`AckHandle`]: call [`Event::ack`] once they are durably processed.
use std::sync::Arc;

use walstream_proto::pgoutput::{
    self as pgo, PgType, Relation, RelationChange, TruncateOptions, TupleData,
};
use walstream_proto::{Lsn, PgTimestamp, Xid};

use crate::feedback::AckHandle;
use crate::row::Row;

/// One event of a logical replication stream.
#[derive(Debug, Clone)]
pub struct Event {
    pub(crate) lsn: Lsn,
    pub(crate) xid: Option<Xid>,
    pub(crate) commit_lsn: Option<Lsn>,
    pub(crate) commit_time: Option<PgTimestamp>,
    pub(crate) kind: EventKind,
    pub(crate) ack: Option<AckHandle>,
}

impl Event {
    /// The WAL position the server sent this event at (the XLogData start).
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The top-level transaction id, when the event belongs to a transaction and the server
    /// said which (Begin, streamed blocks, two-phase messages).
    pub fn xid(&self) -> Option<Xid> {
        self.xid
    }

    /// The LSN of the commit (or prepare) record of the transaction, when known at this point
    /// (non-streamed transactions announce it in Begin).
    pub fn commit_lsn(&self) -> Option<Lsn> {
        self.commit_lsn
    }

    /// The commit (or prepare) time of the transaction, when known at this point.
    pub fn commit_time(&self) -> Option<PgTimestamp> {
        self.commit_time
    }

    /// What happened.
    pub fn kind(&self) -> &EventKind {
        &self.kind
    }

    /// Consumes the event, returning its kind.
    pub fn into_kind(self) -> EventKind {
        self.kind
    }

    /// The relation of a row, truncate or relation event (the first one for a truncate).
    pub fn relation(&self) -> Option<&Arc<Relation>> {
        match &self.kind {
            EventKind::Insert(c) | EventKind::Update(c) | EventKind::Delete(c) => Some(&c.relation),
            EventKind::Read(r) => Some(&r.change.relation),
            EventKind::Truncate(t) => t.relations.first(),
            EventKind::Relation(r) => Some(&r.relation),
            _ => None,
        }
    }

    /// The end LSN to acknowledge for this event, if it completes a unit of work.
    pub fn ack_lsn(&self) -> Option<Lsn> {
        self.ack.as_ref().map(AckHandle::lsn)
    }

    /// The acknowledgement handle, if this event completes a unit of work.
    pub fn ack_handle(&self) -> Option<&AckHandle> {
        self.ack.as_ref()
    }

    /// Acknowledges this event (and everything delivered before it) if it completes a unit
    /// of work; otherwise does nothing. Returns whether something was acknowledged.
    pub fn ack(&self) -> bool {
        match &self.ack {
            Some(h) => {
                h.clone().ack();
                true
            }
            None => false,
        }
    }

    /// A short lowercase name of the kind: `begin`, `commit`, `insert`, ... (as in JSON).
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }
}

/// What an [`Event`] reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// A transaction starts (non-streamed: it is complete and committed when sent).
    Begin(pgo::Begin),
    /// The transaction commits. Acknowledge `end_lsn` (the event's ack handle does).
    Commit(pgo::Commit),
    /// A row was inserted.
    Insert(RowChange),
    /// A row was updated.
    Update(RowChange),
    /// A row was deleted.
    Delete(RowChange),
    /// Tables were truncated.
    Truncate(TruncateEvent),
    /// A logical decoding message (`pg_logical_emit_message`).
    Message(pgo::LogicalMessage),
    /// A relation description; `change` says whether its shape changed.
    Relation(RelationEvent),
    /// A user type description.
    Type(Arc<PgType>),
    /// The transaction's changes originated on another node.
    Origin(pgo::Origin),
    /// A block of an in-progress (streamed) transaction starts.
    StreamStart(pgo::StreamStart),
    /// The current streamed block ends.
    StreamStop,
    /// A streamed transaction commits.
    StreamCommit(pgo::StreamCommit),
    /// A streamed transaction (or one of its subtransactions) aborts.
    StreamAbort(pgo::StreamAbort),
    /// A prepared transaction starts.
    BeginPrepare(pgo::BeginPrepare),
    /// The transaction was prepared (two-phase).
    Prepare(pgo::Prepare),
    /// A prepared transaction committed.
    CommitPrepared(pgo::CommitPrepared),
    /// A prepared transaction rolled back.
    RollbackPrepared(pgo::RollbackPrepared),
    /// A streamed transaction was prepared.
    StreamPrepare(pgo::Prepare),
    /// A row read by the initial snapshot (see
    /// [`LogicalStreamBuilder::initial_snapshot`](crate::LogicalStreamBuilder::initial_snapshot)):
    /// the row as it was at the slot's consistent point, which is the event's
    /// [`lsn`](Event::lsn). Apply it like an insert (an upsert by key).
    Read(SnapshotRead),
    /// The initial snapshot is complete: every published table was read. Streamed changes
    /// (committed after the consistent point) follow.
    SnapshotComplete(SnapshotComplete),
    /// The stream reconnected after a lost connection; the events of the new connection
    /// follow. Everything delivered but not acknowledged before it will be delivered again
    /// (unless its transaction was acknowledged); transactions and streamed transactions
    /// left open by the lost connection (listed in [`Resumed::discarded`]) are sent again
    /// from their start — drop their partial state. See the
    /// [manual](crate::manual#failure-and-resume).
    Resumed(Resumed),
}

impl EventKind {
    /// The lowercase name used in JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Begin(_) => "begin",
            Self::Commit(_) => "commit",
            Self::Insert(_) => "insert",
            Self::Update(_) => "update",
            Self::Delete(_) => "delete",
            Self::Truncate(_) => "truncate",
            Self::Message(_) => "message",
            Self::Relation(_) => "relation",
            Self::Type(_) => "type",
            Self::Origin(_) => "origin",
            Self::StreamStart(_) => "stream_start",
            Self::StreamStop => "stream_stop",
            Self::StreamCommit(_) => "stream_commit",
            Self::StreamAbort(_) => "stream_abort",
            Self::BeginPrepare(_) => "begin_prepare",
            Self::Prepare(_) => "prepare",
            Self::CommitPrepared(_) => "commit_prepared",
            Self::RollbackPrepared(_) => "rollback_prepared",
            Self::StreamPrepare(_) => "stream_prepare",
            Self::Read(_) => "read",
            Self::SnapshotComplete(_) => "snapshot_complete",
            Self::Resumed(_) => "resumed",
        }
    }

    /// The row change of an Insert, Update, Delete or snapshot Read.
    pub fn row_change(&self) -> Option<&RowChange> {
        match self {
            Self::Insert(c) | Self::Update(c) | Self::Delete(c) => Some(c),
            Self::Read(r) => Some(&r.change),
            _ => None,
        }
    }
}

/// An inserted, updated or deleted row.
#[derive(Debug, Clone)]
pub struct RowChange {
    /// The relation (schema, table, columns).
    pub relation: Arc<Relation>,
    /// The transaction id the change was sent with inside a streamed block (a subtransaction's
    /// own xid when the change was made in a subtransaction).
    pub sub_xid: Option<Xid>,
    /// The new row (Insert, Update).
    pub new: Option<Row>,
    /// The old row (Delete; Update when the replica identity sends it).
    pub old: Option<OldRow>,
}

impl RowChange {
    pub(crate) fn new(
        relation: Arc<Relation>,
        sub_xid: Option<Xid>,
        new: Option<TupleData>,
        old: Option<&pgo::OldTuple>,
    ) -> Self {
        let old = old.map(|o| match o {
            pgo::OldTuple::Key(t) => OldRow::Key(Row::new(Arc::clone(&relation), t.clone())),
            pgo::OldTuple::Full(t) => OldRow::Full(Row::new(Arc::clone(&relation), t.clone())),
        });
        let new = new.map(|t| Row::new(Arc::clone(&relation), t));
        Self {
            relation,
            sub_xid,
            new,
            old,
        }
    }

    pub(crate) fn with_types(mut self, types: Option<Arc<walstream_proto::TypeRegistry>>) -> Self {
        if types.is_some() {
            self.new = self.new.map(|r| r.with_types(types.clone()));
            self.old = self.old.map(|o| match o {
                OldRow::Key(r) => OldRow::Key(r.with_types(types.clone())),
                OldRow::Full(r) => OldRow::Full(r.with_types(types.clone())),
            });
        }
        self
    }

    /// Decodes the rows with `types` from now on (the registry grew after the change was
    /// queued, before it was handed out).
    pub(crate) fn refresh_types(&mut self, types: &Option<Arc<walstream_proto::TypeRegistry>>) {
        if let Some(r) = self.new.take() {
            self.new = Some(r.with_types(types.clone()));
        }
        if let Some(o) = self.old.take() {
            self.old = Some(match o {
                OldRow::Key(r) => OldRow::Key(r.with_types(types.clone())),
                OldRow::Full(r) => OldRow::Full(r.with_types(types.clone())),
            });
        }
    }

    /// The schema (namespace) of the relation.
    pub fn schema(&self) -> &str {
        &self.relation.namespace
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.relation.name
    }
}

/// The old row of an Update or Delete.
#[derive(Debug, Clone)]
pub enum OldRow {
    /// Only the replica identity key columns (the other columns are null in the tuple).
    Key(Row),
    /// The whole old row (`REPLICA IDENTITY FULL`).
    Full(Row),
}

impl OldRow {
    /// The row.
    pub fn row(&self) -> &Row {
        match self {
            Self::Key(r) | Self::Full(r) => r,
        }
    }

    /// True if only the key columns were sent.
    pub fn is_key(&self) -> bool {
        matches!(self, Self::Key(_))
    }
}

/// Tables truncated together.
#[derive(Debug, Clone)]
pub struct TruncateEvent {
    /// The truncated relations, in message order.
    pub relations: Vec<Arc<Relation>>,
    /// CASCADE / RESTART IDENTITY.
    pub options: TruncateOptions,
    /// The streamed transaction id, inside a streamed block.
    pub sub_xid: Option<Xid>,
}

/// A relation description received.
#[derive(Debug, Clone)]
pub struct RelationEvent {
    /// The relation as now known.
    pub relation: Arc<Relation>,
    /// New, identical re-send, renamed, or shape changed (schema change).
    pub change: RelationChange,
}

impl RelationEvent {
    /// True if the relation is new or its columns or replica identity changed.
    pub fn is_schema_change(&self) -> bool {
        matches!(
            self.change,
            RelationChange::New | RelationChange::ShapeChanged
        )
    }
}

/// A row of the initial snapshot.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SnapshotRead {
    /// The row (in `new`; `old` and `sub_xid` are `None`).
    pub change: RowChange,
    /// True for the last row of the whole snapshot (Debezium's `source.snapshot = "last"`:
    /// pass it to [`DebeziumEncoder::encode_read`](crate::DebeziumEncoder::encode_read)).
    pub last: bool,
}

impl SnapshotRead {
    /// The row read.
    pub fn row(&self) -> Option<&Row> {
        self.change.new.as_ref()
    }
}

/// The end of the initial snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotComplete {
    /// The slot's consistent point: the snapshot shows every transaction that committed
    /// before it, the stream sends every transaction that commits after it.
    pub consistent_point: Lsn,
    /// The slot created for the snapshot.
    pub slot: String,
    /// The tables read.
    pub tables: usize,
    /// The rows read.
    pub rows: u64,
}

/// A reconnect: the stream resumed after a lost connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resumed {
    /// The position the new connection asked the server to start at (the acknowledged,
    /// reported flush position; the server starts at the later of it and the slot's
    /// `confirmed_flush_lsn`).
    pub at: Lsn,
    /// Transactions whose events were partly delivered and which the lost connection left
    /// open: the open transaction (Begin without Commit/Prepare) and every streamed
    /// transaction with blocks delivered but no Stream Commit/Abort/Prepare yet. The server
    /// sends each of them again from its start (or, for a transaction that was already
    /// acknowledged, not at all), so their partial state must be dropped.
    pub discarded: Vec<Xid>,
}
