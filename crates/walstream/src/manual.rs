//! # The walstream manual
//!
//! Prose about running logical replication with walstream. Nothing here is code; the types
//! it names are linked.
//!
//! ## Server setup
//!
//! Logical replication needs `wal_level = logical` (restart required), a role with the
//! `REPLICATION` attribute (or superuser) and `SELECT` on the published tables, a
//! `pg_hba.conf` line that lets it connect to the database, and a publication:
//!
//! ```sql
//! CREATE PUBLICATION app_pub FOR TABLE orders, customers;   -- or FOR ALL TABLES
//! SELECT pg_create_logical_replication_slot('app_slot', 'pgoutput');
//! ```
//!
//! ## Slots
//!
//! A replication slot is the server's memory of how far a consumer got. It holds back two
//! things until the consumer confirms progress: WAL (from `restart_lsn` on — disk fills up
//! if nobody consumes or confirms) and old catalog rows (`catalog_xmin`). A slot keeps
//! both even when no client is connected: drop slots you no longer use
//! ([`drop_slot`](crate::drop_slot)), and watch [`list_slots`](crate::list_slots)'s
//! `lag_bytes` (`pg_current_wal_lsn() - confirmed_flush_lsn`) in monitoring.
//!
//! * A **permanent** slot survives restarts and disconnections: use it for anything that
//!   must not miss changes.
//! * A **temporary** slot is dropped when the connection that created it ends: fine for
//!   tests and one-off captures, useless for resuming.
//! * **two_phase** slots decode prepared transactions at `PREPARE` (PostgreSQL 15+ with the
//!   `TWO_PHASE` option; pair it with [`LogicalStreamBuilder::two_phase`](crate::LogicalStreamBuilder::two_phase)).
//! * **failover** slots (PostgreSQL 17+) are synchronised to standbys.
//! * Creating a slot with `EXPORT_SNAPSHOT` ([`SnapshotAction::Export`](crate::SnapshotAction))
//!   returns a snapshot name; a second, ordinary connection can `SET TRANSACTION SNAPSHOT`
//!   to it and read the tables exactly as of the slot's consistent point, which is how an
//!   initial copy hands over to the stream without missing or doubling rows. The snapshot
//!   lives only while the creating connection runs no other command.
//!
//! ## LSNs and feedback
//!
//! An [`Lsn`](crate::Lsn) is a byte position in the WAL. The stream reports three positions
//! to the server in standby status updates:
//!
//! * **write** — what walstream has *received*;
//! * **flush** and **apply** — what *you acknowledged*, and only ever a transaction
//!   boundary: the server sets the slot's `confirmed_flush_lsn` to it and may recycle WAL
//!   before it. Everything after it is sent again after a reconnect.
//!
//! Acknowledge with [`Event::ack`](crate::Event::ack) (or an [`AckHandle`](crate::AckHandle)
//! you keep, or [`LsnFeedback::ack`](crate::LsnFeedback::ack) on a clone of
//! [`LogicalStream::feedback`](crate::LogicalStream::feedback) in another task) **after** the
//! event's effects are durable. The acknowledged position of a transaction is its commit's
//! `end_lsn` — the byte after the commit record — never the `commit_lsn`. Acknowledgement is
//! cumulative: acknowledging a commit acknowledges everything delivered before it.
//!
//! Idle tables: when nothing is in flight and everything delivered is acknowledged, a server
//! keepalive's position is reported as flushed, so a slot whose tables see no changes still
//! follows the server's WAL instead of pinning it. Auto-ack
//! ([`LogicalStreamBuilder::auto_ack`](crate::LogicalStreamBuilder::auto_ack)) acknowledges
//! every event on delivery — simple, and at-most-once: a crash loses what was being
//! processed. The repository's `docs/acknowledgement.md` has the diagrams.
//!
//! Status updates go out every [status interval](crate::LogicalStreamBuilder::status_interval)
//! (10 s by default), when the server asks, on
//! [`LogicalStream::send_feedback`](crate::LogicalStream::send_feedback), and at
//! [`shutdown`](crate::LogicalStream::shutdown). An acknowledgement that has not been sent
//! yet when the process dies is simply not known to the server: the transactions after the
//! last reported position are delivered again. Make your processing idempotent per
//! transaction (e.g. store the commit `end_lsn` with the data in one transaction and skip
//! transactions at or below it), and you have exactly-once effects.
//!
//! ## Failure and resume
//!
//! On a lost connection, a terminated walsender (`pg_terminate_backend`), or a server
//! restart, [`LogicalStream`](crate::LogicalStream) reconnects per its
//! [`RetryPolicy`](crate::RetryPolicy) (exponential backoff with jitter; errors such as a
//! wrong password or a missing slot are not retried). It restarts `START_REPLICATION` at the
//! reported flush position (the server starts at the later of that and the slot's
//! `confirmed_flush_lsn` — never ask for that position plus one: transactions are identified
//! by where they end, not where they start). Transactions the server sends again that end at
//! or before what you acknowledged are skipped, so a consumer that acknowledges sees each
//! committed transaction once. Changes of a transaction that was cut off mid-way are sent
//! again from its `Begin`: buffer changes until the commit (or use the
//! [`TransactionAssembler`](crate::TransactionAssembler)) if partial transactions must not
//! be applied.
//!
//! When you restart your process, start the stream without a start LSN (the slot's
//! `confirmed_flush_lsn` is used) or with the position you stored yourself.
//!
//! Streamed in-progress transactions ([`Streaming::On`](crate::Streaming)) cannot be
//! recognised as already acknowledged before their end: in event mode their blocks may be
//! delivered again after a resume; the assembler drops them whole.
//!
//! ## TLS choices
//!
//! Connection settings are libpq's ([`Config`](crate::Config) parses the URL and
//! `key=value` forms, `PG*` variables and `.pgpass`). The TLS modes mean what they mean in
//! libpq:
//!
//! | `sslmode` | encrypts | verifies the server |
//! |---|---|---|
//! | `disable` | no | — |
//! | `prefer` (default) | if the server offers it | no |
//! | `require` | yes | no (unless `sslrootcert` is given: then like `verify-ca`) |
//! | `verify-ca` | yes | certificate chain to `sslrootcert` |
//! | `verify-full` | yes | chain **and** host name |
//!
//! Use `verify-full` across untrusted networks: anything less lets a machine in the middle
//! read the replicated data (which is every row of every published table). With SCRAM
//! authentication over TLS, `channel_binding=require` additionally proves that the server you
//! authenticated to is the one on the other end of the TLS session. `sslrootcert=system`
//! uses the operating system's roots. walstream's TLS is rustls with the ring provider:
//! no OpenSSL, no C toolchain.
//!
//! ## Rows into your types
//!
//! [`Row::deserialize`](crate::Row::deserialize) maps columns to struct fields by name with
//! serde. NULL needs an `Option`; an unchanged TOAST value (an update that did not touch a
//! large column, under `REPLICA IDENTITY DEFAULT`) is an error unless the field is a
//! [`Toasted<T>`](crate::Toasted) — or set `REPLICA IDENTITY FULL` on the table to always
//! receive every column. Features `chrono`, `time`, `uuid` and `rust_decimal` add
//! `TryFrom<&Field>` conversions to those crates' types.
//!
//! ## Output formats
//!
//! [`Event::to_json_line`](crate::Event::to_json_line) renders walstream's own JSON lines
//! (`docs/jsonl.md`); [`DebeziumEncoder`](crate::DebeziumEncoder) renders Debezium's envelope
//! and type mapping (`docs/debezium.md`).
