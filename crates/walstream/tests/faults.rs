//! Fault-injection suite: network faults through walstream-test-support's `FaultProxy` and
//! server-side faults (walsender termination, restarts, `wal_sender_timeout`) against real
//! PostgreSQL servers, with an oracle proving that no committed transaction is lost or
//! applied twice. See `docs/reliability.md`.
//!
//! Long variants are `#[ignore]`d and listed in `.ci/ignored-tests`.

#[path = "faults/common.rs"]
mod common;
#[path = "faults/network.rs"]
mod network;
#[path = "faults/oracle.rs"]
mod oracle;
#[path = "faults/server.rs"]
mod server;
#[path = "faults/backup.rs"]
mod backup;
