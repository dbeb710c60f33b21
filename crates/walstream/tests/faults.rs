//! Fault-injection suite: network faults through walstream-test-support's `FaultProxy` and
//! server-side faults (walsender termination, restarts, `wal_sender_timeout`, slot dropped,
//! publication altered or dropped, DDL between transactions) against real PostgreSQL
//! servers, with oracles proving that no committed transaction is lost or applied twice;
//! plus the base backup and the physical WAL receiver under faults. See
//! `docs/reliability.md`.
//!
//! Long variants are `#[ignore]`d and listed in `.ci/ignored-tests`.

#[path = "faults/backup.rs"]
mod backup;
#[path = "faults/common.rs"]
mod common;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/oracle.rs"]
mod oracle;
#[path = "faults/receiver.rs"]
mod receiver;
#[path = "faults/server.rs"]
mod server;
