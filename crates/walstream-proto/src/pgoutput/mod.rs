//! The `pgoutput` logical replication protocol, versions 1 to 4.
//!
//! PostgreSQL's built-in output plugin turns decoded WAL into the messages described in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>. This
//! module decodes and encodes them:
//!
//! - [`PgoutputMessage::decode`] decodes one message statelessly, given whether it arrived
//!   inside a streamed block and the [`DecodeOptions`] (protocol version, parallel streaming);
//! - [`PgoutputDecoder`] tracks Stream Start / Stream Stop so callers need not;
//! - row values stay in the received bytes: [`TupleData`] validates their structure once and
//!   [`TupleData::iter`] yields [`ColumnValue`]s lazily (zero-copy [`bytes::Bytes`] slices),
//!   [`TupleData::iter_ref`] borrowed [`ColumnRef`]s, neither allocating;
//! - [`RelationCache`] remembers Relation and Type messages and resolves the changes that
//!   refer to them.
//!
//! Every message encodes back to exactly the bytes it was decoded from.

#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod fast;
pub(crate) mod fuzz;
mod message;
mod relcache;
mod tuple;

pub use message::{
    AbortInfo, Begin, BeginPrepare, Column, Commit, CommitPrepared, DecodeOptions, Delete, Insert,
    LogicalMessage, MessageTag, OldTuple, Origin, PgType, PgoutputDecoder, PgoutputMessage,
    Prepare, Relation, RelationMessage, ReplicaIdentity, RollbackPrepared, StreamAbort,
    StreamCommit, StreamStart, Truncate, TruncateOptions, TypeMessage, Update,
};
pub use relcache::{Observed, RelationCache, RelationChange};
pub use tuple::{
    ColumnRef, ColumnValue, TupleData, TupleIter, TupleRefIter, TypedColumn, TypedColumns,
};
