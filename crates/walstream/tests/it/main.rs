//! walstream facade integration tests against real PostgreSQL servers from
//! walstream-test-support (every configured major version).

mod resume;
mod snapshot;
mod stream;
