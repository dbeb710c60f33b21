//! Integration tests of walstream-backup against real PostgreSQL servers.

mod backup;
mod incremental;
mod pg_archives;
mod receiver;
