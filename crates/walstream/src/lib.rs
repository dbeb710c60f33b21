//! walstream: PostgreSQL logical replication streams that never lose a change.
//!
//! The design idea: everything that decides *what* to acknowledge and *which* events to hand
//! out is a sans-IO core that never touches a socket or a clock, so it can be tested with
//! scripted message sequences. The tokio driver on top only moves bytes.
//!
//! The acknowledgement core is [`LsnFeedback`]: the stream records what it received, the user
//! acknowledges what it has durably processed (with [`LsnFeedback::ack`] or an [`AckHandle`]),
//! and the library reports `write` = received, `flush` = `apply` = acknowledged — only ever at
//! transaction boundaries. See `docs/acknowledgement.md` in the repository.
//!
//! # Quick start
//!
//! ```no_run
//! use walstream::{Config, EventKind, LogicalStream};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config: Config = "host=localhost user=repl dbname=app".parse()?;
//! let mut stream = LogicalStream::builder(config, "app_slot")
//!     .publication("app_pub")
//!     .start()
//!     .await?;
//! while let Some(event) = stream.next_event().await? {
//!     if let EventKind::Insert(change) = event.kind() {
//!         println!("{}.{}: {:?}", change.schema(), change.table(), change.new);
//!     }
//!     event.ack(); // once the event's effects are durable
//! }
//! # Ok(()) }
//! ```
//!
//! The pieces: [`LogicalStream`] (connection, retry and resume, feedback, shutdown) over the
//! sans-IO [`LogicalDecoder`] (XLogData in, [`Event`]s out) and [`LsnFeedback`]; opt-in
//! [`TransactionAssembler`] for whole transactions; [`Row::deserialize`] into your types;
//! [`Event::to_json_line`] and [`DebeziumEncoder`] for JSON output; slot management with
//! [`SlotManager`] (or [`create_slot`], [`drop_slot`], [`list_slots`], ...); a managed
//! initial snapshot ([`LogicalStreamBuilder::initial_snapshot`]). The [`manual`] explains
//! slots, the snapshot hand-off, LSNs and feedback, failure and resume (the
//! [`EventKind::Resumed`] signal), and TLS choices.
//!
//! Features: `chrono`, `time`, `uuid`, `rust_decimal` add `TryFrom<&Field>` conversions to
//! those crates' types (dates, times, timestamps, UUIDs, decimals).
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod assembly;
mod convert;
mod de;
mod debezium;
mod decoder;
mod error;
mod event;
mod feedback;
mod jsonl;
pub mod manual;
mod row;
mod slots;
mod snapshot;
mod stream;
mod types;

pub use assembly::{
    Assembled, AssemblyOptions, Changes, Transaction, TransactionAssembler, TransactionKind,
    TwoPhaseDelivery,
};
pub use de::{DecodedRow, DeserializeError, Toasted};
pub use debezium::{
    BinaryMode, DebeziumEncoder, DebeziumOptions, DebeziumRecord, DecimalMode, IntervalMode,
    UNAVAILABLE_VALUE_PLACEHOLDER,
};
pub use decoder::LogicalDecoder;
pub use error::{Error, ErrorKind};
pub use event::{
    Event, EventKind, OldRow, RelationEvent, Resumed, RowChange, SnapshotComplete, SnapshotRead,
    TruncateEvent,
};
pub use feedback::{AckHandle, FeedbackPositions, LsnFeedback};
pub use row::{Field, Row, RowError};
pub use slots::{
    AlterSlot, SlotInfo, SlotManager, alter_slot, create_slot, create_slot_if_not_exists,
    drop_slot, list_slots, slot_info,
};
pub use stream::{
    EventStream, LogicalStream, LogicalStreamBuilder, OriginFilter, RawXLogData, RetryPolicy,
    Streaming,
};
pub use tokio_util::sync::CancellationToken;
pub use types::{TypeLookupFailure, TypeResolver};
pub use walstream_conn::{
    Config, CreateSlotOptions, CreatedSlot, DbError, ReadSlot, SlotKind, SnapshotAction,
};
pub use walstream_proto::pgoutput::{DecodeOptions, Relation, RelationChange};
pub use walstream_proto::{Lsn, Oid, PgTimestamp, Xid};
pub use walstream_proto::{TypeKind, TypeRegistry, Value, ValueFormat};
