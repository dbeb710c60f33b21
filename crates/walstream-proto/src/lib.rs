//! Sans-IO codec for PostgreSQL's wire protocol, streaming replication and `pgoutput`.
//!
//! This crate performs no I/O, spawns no tasks and never reads the clock: it turns bytes into
//! typed messages and typed messages into bytes. Everything above it in walstream (the
//! connection, the streams, the command-line tool) is built on it, and a program that only
//! decodes recorded WAL streams can depend on it alone.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod backend;
mod capture;
mod cursor;
mod error;
mod frontend;
#[doc(hidden)]
pub mod internal;
pub mod pgoutput;
mod replication;
mod types;
mod value;

pub use backend::{
    Authentication, BackendMessage, BackendTag, CopyResponse, DataRow, DataRowColumns,
    ErrorFieldCode, ErrorFields, FieldDescription, FormatCode, Framer, MAX_SECRET_KEY_LEN,
    TransactionStatus,
};
pub use capture::{
    CaptureDecoder, CaptureKind, CaptureReader, CaptureWriter, DEFAULT_MAX_FRAME_SIZE, encode_frame,
};
pub use error::{DecodeError, EncodeError};
pub use frontend::{
    CANCEL_REQUEST_CODE, CancelRequest, FrontendFramer, FrontendMessage, GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET_LEN, PasswordKind, ProtocolVersion, SSL_REQUEST_CODE, StartupMessage,
    StartupPacket,
};
pub use replication::{
    BaseBackupMessage, HotStandbyFeedback, PrimaryKeepalive, ReplicationMessage, ReplicationTag,
    StandbyMessage, StandbyStatusUpdate, XLogData,
};
pub use types::{
    Lsn, Oid, ParseLsnError, ParseSqlStateError, PgTimestamp, SqlState, TimelineId, Xid,
};
pub use value::{
    ArrayDim, CompositeField, MacAddr, MacAddr8, NoTypes, PgArray, PgBit, PgComposite, PgDate,
    PgInet, PgInterval, PgMoney, PgMultirange, PgNumeric, PgRange, PgText, PgTime, PgTimeTz,
    PgUuid, RangeBound, TypeKind, TypeLookup, TypeRegistry, Value, ValueFormat, builtin_type_oids,
    decode_value, decode_value_with,
};
