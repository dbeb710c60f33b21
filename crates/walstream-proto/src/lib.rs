//! Sans-IO codec for PostgreSQL's wire protocol, streaming replication and `pgoutput`.
//!
//! This crate performs no I/O, spawns no tasks and never reads the clock: it turns bytes into
//! typed messages and typed messages into bytes. Everything above it in walstream (the
//! connection, the streams, the command-line tool) is built on it, and a program that only
//! decodes recorded WAL streams can depend on it alone.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cursor;
mod error;
pub mod pgoutput;
mod types;
mod value;

pub use error::{DecodeError, EncodeError};
pub use types::{Lsn, Oid, ParseLsnError, ParseSqlStateError, PgTimestamp, SqlState, TimelineId, Xid};
pub use value::{
    ArrayDim, MacAddr, MacAddr8, NoTypes, PgArray, PgBit, PgDate, PgInet, PgInterval, PgMoney,
    PgMultirange, PgNumeric, PgRange, PgText, PgTime, PgTimeTz, PgUuid, RangeBound, TypeKind,
    TypeLookup, TypeRegistry, Value, ValueFormat, builtin_type_oids, decode_value,
    decode_value_with,
};
