//! Integration tests of walstream-backup against real PostgreSQL servers.

mod backup;
mod incremental;
mod incremental_ts;
mod pg_archives;
mod receiver;
mod standby;
mod targets;
