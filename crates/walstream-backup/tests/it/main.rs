//! Integration tests of walstream-backup against real PostgreSQL servers.

mod backup;
mod pg_archives;
mod receiver;
