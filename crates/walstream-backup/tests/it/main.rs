//! Integration tests of walstream-backup against real PostgreSQL servers.

mod pg_archives;
