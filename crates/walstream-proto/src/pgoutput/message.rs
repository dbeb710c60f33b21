//! The `pgoutput` logical replication messages, protocol versions 1 to 4.
//!
//! Each type mirrors one section of
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::error::{DecodeError, EncodeError};
use crate::pgoutput::fast;
use crate::pgoutput::tuple::TupleData;
use crate::types::{Lsn, Oid, PgTimestamp, Xid};

/// The first byte of a `pgoutput` message.
///
/// An open newtype: any byte can be held, and the associated constants name the ones
/// PostgreSQL sends. Decoding an unknown tag fails with [`DecodeError::UnknownTag`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageTag(pub u8);

impl MessageTag {
    /// Begin (`B`).
    pub const BEGIN: Self = Self(b'B');
    /// Commit (`C`).
    pub const COMMIT: Self = Self(b'C');
    /// Origin (`O`).
    pub const ORIGIN: Self = Self(b'O');
    /// Relation (`R`).
    pub const RELATION: Self = Self(b'R');
    /// Type (`Y`).
    pub const TYPE: Self = Self(b'Y');
    /// Insert (`I`).
    pub const INSERT: Self = Self(b'I');
    /// Update (`U`).
    pub const UPDATE: Self = Self(b'U');
    /// Delete (`D`).
    pub const DELETE: Self = Self(b'D');
    /// Truncate (`T`).
    pub const TRUNCATE: Self = Self(b'T');
    /// Logical decoding message (`M`).
    pub const MESSAGE: Self = Self(b'M');
    /// Stream Start (`S`), protocol version 2+.
    pub const STREAM_START: Self = Self(b'S');
    /// Stream Stop (`E`), protocol version 2+.
    pub const STREAM_STOP: Self = Self(b'E');
    /// Stream Commit (`c`), protocol version 2+.
    pub const STREAM_COMMIT: Self = Self(b'c');
    /// Stream Abort (`A`), protocol version 2+.
    pub const STREAM_ABORT: Self = Self(b'A');
    /// Begin Prepare (`b`), protocol version 3+.
    pub const BEGIN_PREPARE: Self = Self(b'b');
    /// Prepare (`P`), protocol version 3+.
    pub const PREPARE: Self = Self(b'P');
    /// Commit Prepared (`K`), protocol version 3+.
    pub const COMMIT_PREPARED: Self = Self(b'K');
    /// Rollback Prepared (`r`), protocol version 3+.
    pub const ROLLBACK_PREPARED: Self = Self(b'r');
    /// Stream Prepare (`p`), protocol version 3+.
    pub const STREAM_PREPARE: Self = Self(b'p');

    /// The first protocol version that has this message, or `None` for an unknown tag.
    pub fn min_protocol_version(self) -> Option<u32> {
        Some(match self {
            Self::BEGIN
            | Self::COMMIT
            | Self::ORIGIN
            | Self::RELATION
            | Self::TYPE
            | Self::INSERT
            | Self::UPDATE
            | Self::DELETE
            | Self::TRUNCATE
            | Self::MESSAGE => 1,
            Self::STREAM_START | Self::STREAM_STOP | Self::STREAM_COMMIT | Self::STREAM_ABORT => 2,
            Self::BEGIN_PREPARE
            | Self::PREPARE
            | Self::COMMIT_PREPARED
            | Self::ROLLBACK_PREPARED
            | Self::STREAM_PREPARE => 3,
            _ => return None,
        })
    }

    /// True for the messages that may appear between Stream Start and Stream Stop.
    pub fn allowed_in_stream(self) -> bool {
        matches!(
            self,
            Self::RELATION
                | Self::TYPE
                | Self::INSERT
                | Self::UPDATE
                | Self::DELETE
                | Self::TRUNCATE
                | Self::MESSAGE
                | Self::ORIGIN
                | Self::STREAM_STOP
        )
    }

    /// True for the messages that carry a transaction id first when streamed.
    fn has_stream_xid(self) -> bool {
        matches!(
            self,
            Self::RELATION
                | Self::TYPE
                | Self::INSERT
                | Self::UPDATE
                | Self::DELETE
                | Self::TRUNCATE
                | Self::MESSAGE
        )
    }
}

impl fmt::Debug for MessageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "MessageTag({:?})", char::from(self.0))
        } else {
            write!(f, "MessageTag(0x{:02x})", self.0)
        }
    }
}

/// How to decode: the negotiated protocol version and the streaming mode.
///
/// The Stream Abort message carries an abort LSN and timestamp only when protocol version 4
/// or later is used *and* the subscriber asked for `streaming = parallel`; nothing in the
/// message says so, so the decoder must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecodeOptions {
    protocol_version: u32,
    parallel_streaming: bool,
}

impl DecodeOptions {
    /// Options for `proto_version` `protocol_version`, without parallel streaming.
    pub fn new(protocol_version: u32) -> Self {
        Self {
            protocol_version,
            parallel_streaming: false,
        }
    }

    /// Sets whether the slot was started with `streaming 'parallel'`.
    #[must_use]
    pub fn with_parallel_streaming(mut self, parallel: bool) -> Self {
        self.parallel_streaming = parallel;
        self
    }

    /// The protocol version.
    pub fn protocol_version(&self) -> u32 {
        self.protocol_version
    }

    /// Whether parallel streaming was requested.
    pub fn parallel_streaming(&self) -> bool {
        self.parallel_streaming
    }

    /// True when Stream Abort messages carry the abort LSN and timestamp.
    pub fn stream_abort_has_abort_info(&self) -> bool {
        self.protocol_version >= 4 && self.parallel_streaming
    }
}

impl Default for DecodeOptions {
    /// Protocol version 4 without parallel streaming.
    fn default() -> Self {
        Self::new(4)
    }
}

/// One decoded `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgoutputMessage {
    /// Begin of a (non-streamed) transaction.
    Begin(Begin),
    /// Commit of a (non-streamed) transaction.
    Commit(Commit),
    /// The origin of the current transaction.
    Origin(Origin),
    /// The description of a relation.
    Relation(RelationMessage),
    /// The name of a non-builtin type.
    Type(TypeMessage),
    /// A row was inserted.
    Insert(Insert),
    /// A row was updated.
    Update(Update),
    /// A row was deleted.
    Delete(Delete),
    /// One or more tables were truncated.
    Truncate(Truncate),
    /// A logical decoding message (`pg_logical_emit_message`).
    Message(LogicalMessage),
    /// Start of a block of changes of a streamed transaction.
    StreamStart(StreamStart),
    /// End of a block of changes of a streamed transaction.
    StreamStop,
    /// Commit of a streamed transaction.
    StreamCommit(StreamCommit),
    /// Abort of a streamed (sub)transaction.
    StreamAbort(StreamAbort),
    /// Begin of a prepared transaction.
    BeginPrepare(BeginPrepare),
    /// Prepare of a transaction (two-phase commit).
    Prepare(Prepare),
    /// Commit of a prepared transaction.
    CommitPrepared(CommitPrepared),
    /// Rollback of a prepared transaction.
    RollbackPrepared(RollbackPrepared),
    /// Prepare of a streamed transaction.
    StreamPrepare(Prepare),
}

/// Begin.
///
/// Wire format: section "Begin" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Begin {
    /// The final LSN of the transaction.
    pub final_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
}

/// Commit.
///
/// Wire format: section "Commit" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Commit {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end LSN of the transaction.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
}

/// Origin.
///
/// Wire format: section "Origin" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The LSN of the commit on the origin server.
    pub commit_lsn: Lsn,
    /// The origin's name.
    pub name: String,
}

/// A relation's replica identity setting (`relreplident`): an open newtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaIdentity(pub u8);

impl ReplicaIdentity {
    /// `DEFAULT`: the primary key.
    pub const DEFAULT: Self = Self(b'd');
    /// `NOTHING`.
    pub const NOTHING: Self = Self(b'n');
    /// `FULL`: all columns.
    pub const FULL: Self = Self(b'f');
    /// `USING INDEX`.
    pub const INDEX: Self = Self(b'i');
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Column {
    /// Flags; bit 0 (`1`) marks a column that is part of the key.
    pub flags: u8,
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: Oid,
    /// Type modifier (`atttypmod`).
    pub type_modifier: i32,
}

impl Column {
    /// Flag bit marking a key column.
    pub const FLAG_KEY: u8 = 0x01;

    /// True if the column is part of the replica identity key.
    pub fn is_key(&self) -> bool {
        self.flags & Self::FLAG_KEY != 0
    }
}

/// The description of a relation, as sent in a Relation message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation {
    /// Relation OID.
    pub oid: Oid,
    /// Namespace (schema); empty for `pg_catalog`.
    pub namespace: String,
    /// Relation name.
    pub name: String,
    /// Replica identity setting.
    pub replica_identity: ReplicaIdentity,
    /// Columns, in the order tuples list them.
    pub columns: Vec<Column>,
}

/// Relation message.
///
/// Wire format: section "Relation" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationMessage {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// The relation; shared so caches and events can hold it cheaply.
    pub relation: Arc<Relation>,
}

/// A non-builtin type's name, as sent in a Type message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PgType {
    /// Type OID.
    pub oid: Oid,
    /// Namespace (schema); empty for `pg_catalog`.
    pub namespace: String,
    /// Type name.
    pub name: String,
}

/// Type message.
///
/// Wire format: section "Type" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeMessage {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// The type.
    pub pg_type: Arc<PgType>,
}

/// Insert.
///
/// Wire format: section "Insert" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// The new row.
    pub new: TupleData,
}

/// The old row of an Update or Delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OldTuple {
    /// The replica identity key columns (`K`); other columns are null.
    Key(TupleData),
    /// The whole old row (`O`), with `REPLICA IDENTITY FULL`.
    Full(TupleData),
}

impl OldTuple {
    /// The tuple data.
    pub fn tuple(&self) -> &TupleData {
        match self {
            Self::Key(t) | Self::Full(t) => t,
        }
    }

    fn tag(&self) -> u8 {
        match self {
            Self::Key(_) => b'K',
            Self::Full(_) => b'O',
        }
    }
}

/// Update.
///
/// Wire format: section "Update" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// The old key or row, when the replica identity requires it be sent.
    pub old: Option<OldTuple>,
    /// The new row.
    pub new: TupleData,
}

/// Delete.
///
/// Wire format: section "Delete" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// OID of the relation.
    pub relation_id: Oid,
    /// The old key or row.
    pub old: OldTuple,
}

/// Truncate option bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TruncateOptions(pub u8);

impl TruncateOptions {
    /// `CASCADE`.
    pub const CASCADE: u8 = 0x01;
    /// `RESTART IDENTITY`.
    pub const RESTART_IDENTITY: u8 = 0x02;

    /// True if `CASCADE` was given.
    pub fn cascade(self) -> bool {
        self.0 & Self::CASCADE != 0
    }

    /// True if `RESTART IDENTITY` was given.
    pub fn restart_identity(self) -> bool {
        self.0 & Self::RESTART_IDENTITY != 0
    }
}

/// Truncate.
///
/// Wire format: section "Truncate" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Truncate {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// Option bits.
    pub options: TruncateOptions,
    /// The truncated relations.
    pub relation_ids: Vec<Oid>,
}

/// Logical decoding message.
///
/// Wire format: section "Message" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogicalMessage {
    /// Transaction id (streamed transactions only).
    pub xid: Option<Xid>,
    /// Flags: 1 if the message is transactional, else 0.
    pub flags: u8,
    /// The LSN of the message.
    pub lsn: Lsn,
    /// The prefix given to `pg_logical_emit_message`.
    pub prefix: String,
    /// The content.
    pub content: Bytes,
}

impl LogicalMessage {
    /// Flag bit of a transactional message.
    pub const FLAG_TRANSACTIONAL: u8 = 0x01;

    /// True if the message was emitted transactionally.
    pub fn is_transactional(&self) -> bool {
        self.flags & Self::FLAG_TRANSACTIONAL != 0
    }
}

/// Stream Start.
///
/// Wire format: section "Stream Start" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamStart {
    /// Transaction id of the streamed transaction.
    pub xid: Xid,
    /// True for the first block of this transaction.
    pub first_segment: bool,
}

/// Stream Commit.
///
/// Wire format: section "Stream Commit" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamCommit {
    /// Transaction id.
    pub xid: Xid,
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// The LSN of the commit record.
    pub commit_lsn: Lsn,
    /// The end LSN of the transaction.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
}

/// The abort position sent with Stream Abort under protocol 4 with parallel streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortInfo {
    /// The LSN of the abort.
    pub abort_lsn: Lsn,
    /// Abort timestamp.
    pub abort_time: PgTimestamp,
}

/// Stream Abort.
///
/// Wire format: section "Stream Abort" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamAbort {
    /// Transaction id of the top-level transaction.
    pub xid: Xid,
    /// Transaction id of the aborted subtransaction (equal to `xid` for the top level).
    pub subxid: Xid,
    /// Abort LSN and time (protocol 4 with `streaming = parallel` only).
    pub abort_info: Option<AbortInfo>,
}

impl StreamAbort {
    /// True when the whole transaction, not just a subtransaction, was aborted.
    pub fn is_toplevel(&self) -> bool {
        self.xid == self.subxid
    }
}

/// Begin Prepare.
///
/// Wire format: section "Begin Prepare" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BeginPrepare {
    /// The LSN of the prepare.
    pub prepare_lsn: Lsn,
    /// The end LSN of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction identifier given to `PREPARE TRANSACTION`.
    pub gid: String,
}

/// Prepare and Stream Prepare.
///
/// Wire format: section "Prepare" and "Stream Prepare" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prepare {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// The LSN of the prepare.
    pub prepare_lsn: Lsn,
    /// The end LSN of the prepared transaction.
    pub end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction identifier.
    pub gid: String,
}

/// Commit Prepared.
///
/// Wire format: section "Commit Prepared" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitPrepared {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// The LSN of the commit prepared record.
    pub commit_lsn: Lsn,
    /// The end LSN of the commit prepared transaction.
    pub end_lsn: Lsn,
    /// Commit timestamp.
    pub commit_time: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction identifier.
    pub gid: String,
}

/// Rollback Prepared.
///
/// Wire format: section "Rollback Prepared" of the PostgreSQL docs' [Logical Replication
/// Message Formats][formats].
///
/// [formats]: https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RollbackPrepared {
    /// Flags (currently unused, 0).
    pub flags: u8,
    /// The end LSN of the prepared transaction.
    pub prepare_end_lsn: Lsn,
    /// The end LSN of the rollback prepared transaction.
    pub rollback_end_lsn: Lsn,
    /// Prepare timestamp.
    pub prepare_time: PgTimestamp,
    /// Rollback timestamp.
    pub rollback_time: PgTimestamp,
    /// Transaction id.
    pub xid: Xid,
    /// Global transaction identifier.
    pub gid: String,
}

impl PgoutputMessage {
    /// Decodes one message, statelessly.
    ///
    /// `in_stream` says whether the message was received between Stream Start and Stream Stop,
    /// where Relation, Type, Insert, Update, Delete, Truncate and Message carry an extra
    /// transaction id first. [`PgoutputDecoder`] tracks that for you.
    #[inline]
    pub fn decode(
        bytes: Bytes,
        in_stream: bool,
        options: &DecodeOptions,
    ) -> Result<Self, DecodeError> {
        // Rows are most of the traffic: try the slice-walking fast path first. It only
        // accepts well-formed changes and hands anything else back to the general path.
        let bytes = if !in_stream || options.protocol_version >= 2 {
            match fast::dml(bytes, in_stream) {
                Ok(msg) => return Ok(msg),
                Err(bytes) => bytes,
            }
        } else {
            bytes
        };
        Self::decode_general(bytes, in_stream, options)
    }

    /// The general decoder, through the bounds-checked cursor; the source of every error.
    pub(super) fn decode_general(
        bytes: Bytes,
        in_stream: bool,
        options: &DecodeOptions,
    ) -> Result<Self, DecodeError> {
        let mut cur = Cursor::new(bytes, "pgoutput message");
        let tag = MessageTag(cur.u8()?);
        let Some(min_version) = tag.min_protocol_version() else {
            return Err(cur.unknown_tag(tag.0, 0));
        };
        cur.set_context(tag.context());
        if min_version > options.protocol_version {
            return Err(cur.invalid(
                0,
                "message not available in the negotiated protocol version",
            ));
        }
        if in_stream && !tag.allowed_in_stream() {
            return Err(cur.invalid(0, "message not allowed inside a streamed block"));
        }
        if in_stream && options.protocol_version < 2 {
            return Err(cur.invalid(0, "streaming needs protocol version 2 or later"));
        }
        let xid = if in_stream && tag.has_stream_xid() {
            Some(Xid(cur.u32()?))
        } else {
            None
        };
        let msg = match tag {
            MessageTag::BEGIN => Self::Begin(Begin {
                final_lsn: lsn(&mut cur)?,
                commit_time: ts(&mut cur)?,
                xid: Xid(cur.u32()?),
            }),
            MessageTag::COMMIT => Self::Commit(Commit {
                flags: cur.u8()?,
                commit_lsn: lsn(&mut cur)?,
                end_lsn: lsn(&mut cur)?,
                commit_time: ts(&mut cur)?,
            }),
            MessageTag::ORIGIN => Self::Origin(Origin {
                commit_lsn: lsn(&mut cur)?,
                name: cur.cstr()?,
            }),
            MessageTag::RELATION => Self::Relation(RelationMessage {
                xid,
                relation: Arc::new(relation(&mut cur)?),
            }),
            MessageTag::TYPE => Self::Type(TypeMessage {
                xid,
                pg_type: Arc::new(PgType {
                    oid: Oid(cur.u32()?),
                    namespace: cur.cstr()?,
                    name: cur.cstr()?,
                }),
            }),
            MessageTag::INSERT => {
                let relation_id = Oid(cur.u32()?);
                expect_byte(&mut cur, b'N')?;
                Self::Insert(Insert {
                    xid,
                    relation_id,
                    new: TupleData::decode(&mut cur)?,
                })
            }
            MessageTag::UPDATE => {
                let relation_id = Oid(cur.u32()?);
                let at = cur.offset();
                let old = match cur.u8()? {
                    b'K' => Some(OldTuple::Key(TupleData::decode(&mut cur)?)),
                    b'O' => Some(OldTuple::Full(TupleData::decode(&mut cur)?)),
                    b'N' => None,
                    other => return Err(cur.unknown_tag(other, at)),
                };
                if old.is_some() {
                    expect_byte(&mut cur, b'N')?;
                }
                Self::Update(Update {
                    xid,
                    relation_id,
                    old,
                    new: TupleData::decode(&mut cur)?,
                })
            }
            MessageTag::DELETE => {
                let relation_id = Oid(cur.u32()?);
                let at = cur.offset();
                let old = match cur.u8()? {
                    b'K' => OldTuple::Key(TupleData::decode(&mut cur)?),
                    b'O' => OldTuple::Full(TupleData::decode(&mut cur)?),
                    other => return Err(cur.unknown_tag(other, at)),
                };
                Self::Delete(Delete {
                    xid,
                    relation_id,
                    old,
                })
            }
            MessageTag::TRUNCATE => {
                let at = cur.offset();
                let raw = cur.i32()?;
                let options = TruncateOptions(cur.u8()?);
                let n = cur.count(i64::from(raw), 4, at)?;
                let mut relation_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    relation_ids.push(Oid(cur.u32()?));
                }
                Self::Truncate(Truncate {
                    xid,
                    options,
                    relation_ids,
                })
            }
            MessageTag::MESSAGE => Self::Message(LogicalMessage {
                xid,
                flags: cur.u8()?,
                lsn: lsn(&mut cur)?,
                prefix: cur.cstr()?,
                content: cur.len_prefixed()?,
            }),
            MessageTag::STREAM_START => {
                let xid = Xid(cur.u32()?);
                let at = cur.offset();
                let first_segment = match cur.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(cur.invalid(at, "first-segment flag must be 0 or 1")),
                };
                Self::StreamStart(StreamStart { xid, first_segment })
            }
            MessageTag::STREAM_STOP => Self::StreamStop,
            MessageTag::STREAM_COMMIT => Self::StreamCommit(StreamCommit {
                xid: Xid(cur.u32()?),
                flags: cur.u8()?,
                commit_lsn: lsn(&mut cur)?,
                end_lsn: lsn(&mut cur)?,
                commit_time: ts(&mut cur)?,
            }),
            MessageTag::STREAM_ABORT => {
                let xid = Xid(cur.u32()?);
                let subxid = Xid(cur.u32()?);
                let abort_info = if options.stream_abort_has_abort_info() {
                    Some(AbortInfo {
                        abort_lsn: lsn(&mut cur)?,
                        abort_time: ts(&mut cur)?,
                    })
                } else {
                    None
                };
                Self::StreamAbort(StreamAbort {
                    xid,
                    subxid,
                    abort_info,
                })
            }
            MessageTag::BEGIN_PREPARE => Self::BeginPrepare(BeginPrepare {
                prepare_lsn: lsn(&mut cur)?,
                end_lsn: lsn(&mut cur)?,
                prepare_time: ts(&mut cur)?,
                xid: Xid(cur.u32()?),
                gid: cur.cstr()?,
            }),
            MessageTag::PREPARE => Self::Prepare(prepare(&mut cur)?),
            MessageTag::STREAM_PREPARE => Self::StreamPrepare(prepare(&mut cur)?),
            MessageTag::COMMIT_PREPARED => Self::CommitPrepared(CommitPrepared {
                flags: cur.u8()?,
                commit_lsn: lsn(&mut cur)?,
                end_lsn: lsn(&mut cur)?,
                commit_time: ts(&mut cur)?,
                xid: Xid(cur.u32()?),
                gid: cur.cstr()?,
            }),
            MessageTag::ROLLBACK_PREPARED => Self::RollbackPrepared(RollbackPrepared {
                flags: cur.u8()?,
                prepare_end_lsn: lsn(&mut cur)?,
                rollback_end_lsn: lsn(&mut cur)?,
                prepare_time: ts(&mut cur)?,
                rollback_time: ts(&mut cur)?,
                xid: Xid(cur.u32()?),
                gid: cur.cstr()?,
            }),
            // `min_protocol_version` returned `Some` only for the tags above.
            other => return Err(cur.unknown_tag(other.0, 0)),
        };
        cur.finish()?;
        Ok(msg)
    }

    /// The message's tag.
    pub fn tag(&self) -> MessageTag {
        match self {
            Self::Begin(_) => MessageTag::BEGIN,
            Self::Commit(_) => MessageTag::COMMIT,
            Self::Origin(_) => MessageTag::ORIGIN,
            Self::Relation(_) => MessageTag::RELATION,
            Self::Type(_) => MessageTag::TYPE,
            Self::Insert(_) => MessageTag::INSERT,
            Self::Update(_) => MessageTag::UPDATE,
            Self::Delete(_) => MessageTag::DELETE,
            Self::Truncate(_) => MessageTag::TRUNCATE,
            Self::Message(_) => MessageTag::MESSAGE,
            Self::StreamStart(_) => MessageTag::STREAM_START,
            Self::StreamStop => MessageTag::STREAM_STOP,
            Self::StreamCommit(_) => MessageTag::STREAM_COMMIT,
            Self::StreamAbort(_) => MessageTag::STREAM_ABORT,
            Self::BeginPrepare(_) => MessageTag::BEGIN_PREPARE,
            Self::Prepare(_) => MessageTag::PREPARE,
            Self::CommitPrepared(_) => MessageTag::COMMIT_PREPARED,
            Self::RollbackPrepared(_) => MessageTag::ROLLBACK_PREPARED,
            Self::StreamPrepare(_) => MessageTag::STREAM_PREPARE,
        }
    }

    /// The streamed transaction id carried by a change inside a streamed block, if any.
    pub fn stream_xid(&self) -> Option<Xid> {
        match self {
            Self::Relation(m) => m.xid,
            Self::Type(m) => m.xid,
            Self::Insert(m) => m.xid,
            Self::Update(m) => m.xid,
            Self::Delete(m) => m.xid,
            Self::Truncate(m) => m.xid,
            Self::Message(m) => m.xid,
            _ => None,
        }
    }

    /// Appends the encoded message to `out`.
    ///
    /// Optional fields are written when present: a change's `xid` (as inside a streamed
    /// block) and a Stream Abort's `abort_info` (protocol 4, parallel streaming). Decoding the
    /// result with matching `in_stream` and [`DecodeOptions`] gives back an equal message.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = out.len();
        let res = self.encode_inner(out);
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    fn encode_inner(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let ctx = self.tag().context();
        out.put_u8(self.tag().0);
        if let Some(xid) = self.stream_xid() {
            out.put_u32(xid.0);
        }
        match self {
            Self::Begin(m) => {
                out.put_u64(m.final_lsn.0);
                out.put_i64(m.commit_time.0);
                out.put_u32(m.xid.0);
            }
            Self::Commit(m) => {
                out.put_u8(m.flags);
                out.put_u64(m.commit_lsn.0);
                out.put_u64(m.end_lsn.0);
                out.put_i64(m.commit_time.0);
            }
            Self::Origin(m) => {
                out.put_u64(m.commit_lsn.0);
                put_cstr(out, &m.name, ctx)?;
            }
            Self::Relation(m) => {
                let r = &m.relation;
                out.put_u32(r.oid.0);
                put_cstr(out, &r.namespace, ctx)?;
                put_cstr(out, &r.name, ctx)?;
                out.put_u8(r.replica_identity.0);
                let n = i16::try_from(r.columns.len()).map_err(|_| EncodeError::TooLarge {
                    context: ctx,
                    length: r.columns.len(),
                })?;
                out.put_i16(n);
                for c in &r.columns {
                    out.put_u8(c.flags);
                    put_cstr(out, &c.name, ctx)?;
                    out.put_u32(c.type_oid.0);
                    out.put_i32(c.type_modifier);
                }
            }
            Self::Type(m) => {
                out.put_u32(m.pg_type.oid.0);
                put_cstr(out, &m.pg_type.namespace, ctx)?;
                put_cstr(out, &m.pg_type.name, ctx)?;
            }
            Self::Insert(m) => {
                out.put_u32(m.relation_id.0);
                out.put_u8(b'N');
                m.new.encode(out);
            }
            Self::Update(m) => {
                out.put_u32(m.relation_id.0);
                if let Some(old) = &m.old {
                    out.put_u8(old.tag());
                    old.tuple().encode(out);
                }
                out.put_u8(b'N');
                m.new.encode(out);
            }
            Self::Delete(m) => {
                out.put_u32(m.relation_id.0);
                out.put_u8(m.old.tag());
                m.old.tuple().encode(out);
            }
            Self::Truncate(m) => {
                let n = i32::try_from(m.relation_ids.len()).map_err(|_| EncodeError::TooLarge {
                    context: ctx,
                    length: m.relation_ids.len(),
                })?;
                out.put_i32(n);
                out.put_u8(m.options.0);
                for oid in &m.relation_ids {
                    out.put_u32(oid.0);
                }
            }
            Self::Message(m) => {
                out.put_u8(m.flags);
                out.put_u64(m.lsn.0);
                put_cstr(out, &m.prefix, ctx)?;
                let n = i32::try_from(m.content.len()).map_err(|_| EncodeError::TooLarge {
                    context: ctx,
                    length: m.content.len(),
                })?;
                out.put_i32(n);
                out.put_slice(&m.content);
            }
            Self::StreamStart(m) => {
                out.put_u32(m.xid.0);
                out.put_u8(u8::from(m.first_segment));
            }
            Self::StreamStop => {}
            Self::StreamCommit(m) => {
                out.put_u32(m.xid.0);
                out.put_u8(m.flags);
                out.put_u64(m.commit_lsn.0);
                out.put_u64(m.end_lsn.0);
                out.put_i64(m.commit_time.0);
            }
            Self::StreamAbort(m) => {
                out.put_u32(m.xid.0);
                out.put_u32(m.subxid.0);
                if let Some(a) = m.abort_info {
                    out.put_u64(a.abort_lsn.0);
                    out.put_i64(a.abort_time.0);
                }
            }
            Self::BeginPrepare(m) => {
                out.put_u64(m.prepare_lsn.0);
                out.put_u64(m.end_lsn.0);
                out.put_i64(m.prepare_time.0);
                out.put_u32(m.xid.0);
                put_cstr(out, &m.gid, ctx)?;
            }
            Self::Prepare(m) | Self::StreamPrepare(m) => {
                out.put_u8(m.flags);
                out.put_u64(m.prepare_lsn.0);
                out.put_u64(m.end_lsn.0);
                out.put_i64(m.prepare_time.0);
                out.put_u32(m.xid.0);
                put_cstr(out, &m.gid, ctx)?;
            }
            Self::CommitPrepared(m) => {
                out.put_u8(m.flags);
                out.put_u64(m.commit_lsn.0);
                out.put_u64(m.end_lsn.0);
                out.put_i64(m.commit_time.0);
                out.put_u32(m.xid.0);
                put_cstr(out, &m.gid, ctx)?;
            }
            Self::RollbackPrepared(m) => {
                out.put_u8(m.flags);
                out.put_u64(m.prepare_end_lsn.0);
                out.put_u64(m.rollback_end_lsn.0);
                out.put_i64(m.prepare_time.0);
                out.put_i64(m.rollback_time.0);
                out.put_u32(m.xid.0);
                put_cstr(out, &m.gid, ctx)?;
            }
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

impl MessageTag {
    /// The static context string errors carry for this message.
    fn context(self) -> &'static str {
        match self {
            Self::BEGIN => "pgoutput Begin",
            Self::COMMIT => "pgoutput Commit",
            Self::ORIGIN => "pgoutput Origin",
            Self::RELATION => "pgoutput Relation",
            Self::TYPE => "pgoutput Type",
            Self::INSERT => "pgoutput Insert",
            Self::UPDATE => "pgoutput Update",
            Self::DELETE => "pgoutput Delete",
            Self::TRUNCATE => "pgoutput Truncate",
            Self::MESSAGE => "pgoutput Message",
            Self::STREAM_START => "pgoutput Stream Start",
            Self::STREAM_STOP => "pgoutput Stream Stop",
            Self::STREAM_COMMIT => "pgoutput Stream Commit",
            Self::STREAM_ABORT => "pgoutput Stream Abort",
            Self::BEGIN_PREPARE => "pgoutput Begin Prepare",
            Self::PREPARE => "pgoutput Prepare",
            Self::COMMIT_PREPARED => "pgoutput Commit Prepared",
            Self::ROLLBACK_PREPARED => "pgoutput Rollback Prepared",
            Self::STREAM_PREPARE => "pgoutput Stream Prepare",
            _ => "pgoutput message",
        }
    }
}

fn lsn(cur: &mut Cursor) -> Result<Lsn, DecodeError> {
    Ok(Lsn(cur.u64()?))
}

fn ts(cur: &mut Cursor) -> Result<PgTimestamp, DecodeError> {
    Ok(PgTimestamp(cur.i64()?))
}

fn expect_byte(cur: &mut Cursor, want: u8) -> Result<(), DecodeError> {
    let at = cur.offset();
    let got = cur.u8()?;
    if got == want {
        Ok(())
    } else {
        Err(cur.unknown_tag(got, at))
    }
}

fn relation(cur: &mut Cursor) -> Result<Relation, DecodeError> {
    let oid = Oid(cur.u32()?);
    let namespace = cur.cstr()?;
    let name = cur.cstr()?;
    let replica_identity = ReplicaIdentity(cur.u8()?);
    let at = cur.offset();
    let raw = cur.i16()?;
    // flags (1) + name terminator (1) + type oid (4) + typmod (4)
    let n = cur.count(i64::from(raw), 10, at)?;
    let mut columns = Vec::with_capacity(n);
    for _ in 0..n {
        columns.push(Column {
            flags: cur.u8()?,
            name: cur.cstr()?,
            type_oid: Oid(cur.u32()?),
            type_modifier: cur.i32()?,
        });
    }
    Ok(Relation {
        oid,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

fn prepare(cur: &mut Cursor) -> Result<Prepare, DecodeError> {
    Ok(Prepare {
        flags: cur.u8()?,
        prepare_lsn: lsn(cur)?,
        end_lsn: lsn(cur)?,
        prepare_time: ts(cur)?,
        xid: Xid(cur.u32()?),
        gid: cur.cstr()?,
    })
}

fn put_cstr(out: &mut BytesMut, s: &str, context: &'static str) -> Result<(), EncodeError> {
    if memchr::memchr(0, s.as_bytes()).is_some() {
        return Err(EncodeError::EmbeddedNul { context });
    }
    out.put_slice(s.as_bytes());
    out.put_u8(0);
    Ok(())
}

/// A stateful decoder that knows whether it is inside a streamed block.
///
/// Call [`PgoutputDecoder::decode`] with each message in the order received. Stream Start
/// enters a streamed block and Stream Stop leaves it; inside, changes carry their transaction
/// id first and only the messages [`MessageTag::allowed_in_stream`] accepts may appear. A
/// message that fails to decode leaves the state unchanged.
#[derive(Debug, Clone)]
pub struct PgoutputDecoder {
    options: DecodeOptions,
    stream: Option<Xid>,
}

impl PgoutputDecoder {
    /// A decoder outside any streamed block.
    pub fn new(options: DecodeOptions) -> Self {
        Self {
            options,
            stream: None,
        }
    }

    /// The options in use.
    pub fn options(&self) -> &DecodeOptions {
        &self.options
    }

    /// The transaction id of the streamed block we are in, if any.
    pub fn current_stream(&self) -> Option<Xid> {
        self.stream
    }

    /// True between Stream Start and Stream Stop.
    pub fn in_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Forgets any streamed block in progress, as when a new replication session starts
    /// (the server begins every session outside a block).
    pub fn reset(&mut self) {
        self.stream = None;
    }

    /// Decodes the next message and updates the streaming state.
    #[inline]
    pub fn decode(&mut self, bytes: Bytes) -> Result<PgoutputMessage, DecodeError> {
        // Changes are most of the traffic and never move the streaming state: the fast path
        // returns them without passing through the state update below.
        let in_stream = self.in_stream();
        let bytes = if !in_stream || self.options.protocol_version >= 2 {
            match fast::dml(bytes, in_stream) {
                Ok(msg) => return Ok(msg),
                Err(bytes) => bytes,
            }
        } else {
            bytes
        };
        self.decode_general(bytes)
    }

    /// Every other message (and every malformed change), through the general decoder.
    #[inline(never)]
    fn decode_general(&mut self, bytes: Bytes) -> Result<PgoutputMessage, DecodeError> {
        let msg = PgoutputMessage::decode_general(bytes, self.in_stream(), &self.options)?;
        if matches!(msg, PgoutputMessage::StreamStop) && !self.in_stream() {
            return Err(DecodeError::InvalidValue {
                context: MessageTag::STREAM_STOP.context(),
                offset: 0,
                reason: "Stream Stop outside a streamed block",
            });
        }
        match &msg {
            PgoutputMessage::StreamStart(s) => {
                // `decode` with `in_stream` rejects Stream Start inside a block already.
                self.stream = Some(s.xid);
            }
            PgoutputMessage::StreamStop => self.stream = None,
            _ => {}
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgoutput::tuple::ColumnValue;

    fn roundtrip(msg: &PgoutputMessage, in_stream: bool, opts: &DecodeOptions) -> Bytes {
        let bytes = msg.to_bytes().unwrap();
        let back = PgoutputMessage::decode(bytes.clone(), in_stream, opts).unwrap();
        assert_eq!(&back, msg);
        bytes
    }

    fn tuple(vals: &[ColumnValue]) -> TupleData {
        TupleData::from_values(vals).unwrap()
    }

    #[test]
    fn begin_exact_bytes() {
        let m = PgoutputMessage::Begin(Begin {
            final_lsn: Lsn(0x1_0000_0002),
            commit_time: PgTimestamp(3),
            xid: Xid(4),
        });
        let b = roundtrip(&m, false, &DecodeOptions::new(1));
        assert_eq!(
            &b[..],
            b"B\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x04"
        );
    }

    #[test]
    fn streamed_insert_has_xid() {
        let m = PgoutputMessage::Insert(Insert {
            xid: Some(Xid(77)),
            relation_id: Oid(16384),
            new: tuple(&[
                ColumnValue::Text(Bytes::from_static(b"1")),
                ColumnValue::Null,
            ]),
        });
        let b = roundtrip(&m, true, &DecodeOptions::new(2));
        assert_eq!(&b[..5], b"I\x00\x00\x00\x4d");
        // Outside a stream the xid would be read as the relation id and the rest misparsed.
        assert!(PgoutputMessage::decode(b.clone(), false, &DecodeOptions::new(2)).is_err());
        // Streaming does not exist in protocol 1.
        assert!(PgoutputMessage::decode(b, true, &DecodeOptions::new(1)).is_err());
    }

    #[test]
    fn stream_abort_depends_on_options() {
        let plain = PgoutputMessage::StreamAbort(StreamAbort {
            xid: Xid(5),
            subxid: Xid(6),
            abort_info: None,
        });
        let b = roundtrip(&plain, false, &DecodeOptions::new(4));
        assert_eq!(b.len(), 9);
        let par = DecodeOptions::new(4).with_parallel_streaming(true);
        assert!(matches!(
            PgoutputMessage::decode(b, false, &par),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        let full = PgoutputMessage::StreamAbort(StreamAbort {
            xid: Xid(5),
            subxid: Xid(5),
            abort_info: Some(AbortInfo {
                abort_lsn: Lsn(9),
                abort_time: PgTimestamp(-1),
            }),
        });
        let b = roundtrip(&full, false, &par);
        assert_eq!(b.len(), 25);
        assert!(matches!(
            PgoutputMessage::decode(b.clone(), false, &DecodeOptions::new(4)),
            Err(DecodeError::TrailingBytes {
                offset: 9,
                remaining: 16,
                ..
            })
        ));
        // Parallel streaming without protocol 4 has no abort info.
        let v3 = DecodeOptions::new(3).with_parallel_streaming(true);
        assert!(PgoutputMessage::decode(b, false, &v3).is_err());
    }

    #[test]
    fn update_variants_and_delete() {
        let t = tuple(&[
            ColumnValue::Text(Bytes::from_static(b"x")),
            ColumnValue::UnchangedToast,
        ]);
        for old in [
            None,
            Some(OldTuple::Key(t.clone())),
            Some(OldTuple::Full(t.clone())),
        ] {
            let m = PgoutputMessage::Update(Update {
                xid: None,
                relation_id: Oid(1),
                old,
                new: t.clone(),
            });
            roundtrip(&m, false, &DecodeOptions::new(1));
        }
        let m = PgoutputMessage::Delete(Delete {
            xid: Some(Xid(3)),
            relation_id: Oid(1),
            old: OldTuple::Key(t),
        });
        roundtrip(&m, true, &DecodeOptions::new(2));
        assert!(matches!(
            PgoutputMessage::decode(
                Bytes::from_static(b"D\0\0\0\x01N\0\0"),
                false,
                &DecodeOptions::new(1)
            ),
            Err(DecodeError::UnknownTag {
                tag: b'N',
                offset: 5,
                ..
            })
        ));
    }

    #[test]
    fn unknown_and_version_gated_tags() {
        let opts = DecodeOptions::new(1);
        assert!(matches!(
            PgoutputMessage::decode(Bytes::from_static(b"Z"), false, &opts),
            Err(DecodeError::UnknownTag {
                tag: b'Z',
                offset: 0,
                ..
            })
        ));
        assert!(matches!(
            PgoutputMessage::decode(Bytes::new(), false, &opts),
            Err(DecodeError::UnexpectedEof { .. })
        ));
        assert!(matches!(
            PgoutputMessage::decode(Bytes::from_static(b"E"), false, &opts),
            Err(DecodeError::InvalidValue { .. })
        ));
        assert_eq!(
            PgoutputMessage::decode(Bytes::from_static(b"E"), false, &DecodeOptions::new(2))
                .unwrap(),
            PgoutputMessage::StreamStop
        );
    }

    #[test]
    fn decoder_tracks_stream_state() {
        let mut d = PgoutputDecoder::new(DecodeOptions::new(2));
        let start = PgoutputMessage::StreamStart(StreamStart {
            xid: Xid(9),
            first_segment: true,
        });
        let start_bytes = start.to_bytes().unwrap();
        assert_eq!(d.decode(start_bytes.clone()).unwrap(), start);
        assert_eq!(d.current_stream(), Some(Xid(9)));
        // No nested Stream Start, and the state stays unchanged after the error.
        assert!(d.decode(start_bytes).is_err());
        assert!(d.in_stream());
        let ins = PgoutputMessage::Insert(Insert {
            xid: Some(Xid(10)),
            relation_id: Oid(5),
            new: tuple(&[]),
        });
        assert_eq!(d.decode(ins.to_bytes().unwrap()).unwrap(), ins);
        assert_eq!(
            d.decode(Bytes::from_static(b"E")).unwrap(),
            PgoutputMessage::StreamStop
        );
        assert!(!d.in_stream());
        let commit = PgoutputMessage::StreamCommit(StreamCommit {
            xid: Xid(9),
            flags: 0,
            commit_lsn: Lsn(1),
            end_lsn: Lsn(2),
            commit_time: PgTimestamp(3),
        });
        assert_eq!(d.decode(commit.to_bytes().unwrap()).unwrap(), commit);
        // A Stream Stop outside a block is rejected.
        assert!(matches!(
            d.decode(Bytes::from_static(b"E")),
            Err(DecodeError::InvalidValue { .. })
        ));
        // Changes outside a block have no xid.
        let ins = PgoutputMessage::Insert(Insert {
            xid: None,
            relation_id: Oid(5),
            new: tuple(&[]),
        });
        assert_eq!(d.decode(ins.to_bytes().unwrap()).unwrap(), ins);
        // A new session starts outside any block, whatever the last one was doing.
        assert_eq!(d.decode(start.to_bytes().unwrap()).unwrap(), start);
        d.reset();
        assert!(!d.in_stream());
        assert_eq!(d.decode(ins.to_bytes().unwrap()).unwrap(), ins);
    }

    #[test]
    fn encode_rejects_nul_and_leaves_buffer_clean() {
        let m = PgoutputMessage::Origin(Origin {
            commit_lsn: Lsn(1),
            name: "a\0b".into(),
        });
        let mut out = BytesMut::from(&b"xy"[..]);
        assert!(matches!(
            m.encode(&mut out),
            Err(EncodeError::EmbeddedNul { .. })
        ));
        assert_eq!(&out[..], b"xy");
    }
}
