//! Integration tests of the harness itself, run against every configured PostgreSQL major
//! (`WALSTREAM_PG_BINDIRS`).
#![forbid(unsafe_code)]

mod auth;
mod cluster;
