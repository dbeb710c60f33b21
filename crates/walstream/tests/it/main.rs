//! walstream facade integration tests against real PostgreSQL servers from
//! walstream-test-support (every configured major version).

mod ack;
mod memory;
mod messages;
mod origin;
mod protocols;
mod restart;
mod resume;
mod snapshot;
mod spill;
mod stream;
mod toast;
mod types;
mod unix;
mod user_types;
mod util;
