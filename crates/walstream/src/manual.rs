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
//! `lag_bytes` (`pg_current_wal_lsn() - confirmed_flush_lsn`: how far acknowledgements are
//! behind) and `restart_lag_bytes` (`pg_current_wal_lsn() - restart_lsn`: how much WAL the
//! slot keeps on disk) in monitoring; `wal_status = lost` means the slot fell behind
//! `max_slot_wal_keep_size` and can no longer be used.
//!
//! [`SlotManager`](crate::SlotManager) runs slot commands on one `replication=database`
//! connection: [`create`](crate::SlotManager::create) /
//! [`create_if_not_exists`](crate::SlotManager::create_if_not_exists) (options in
//! [`CreateSlotOptions`](crate::CreateSlotOptions)), [`drop_slot`](crate::SlotManager::drop_slot)
//! (with `wait`, it waits for the slot's walsender to go away instead of failing),
//! [`alter`](crate::SlotManager::alter) (PostgreSQL 17+ `failover`, 18+ `two_phase`),
//! [`read`](crate::SlotManager::read) (`READ_REPLICATION_SLOT`, 15+, physical slots only —
//! the server refuses it for logical ones), [`info`](crate::SlotManager::info) and
//! [`list`](crate::SlotManager::list). The free functions do the same with a connection per
//! call. Options that a server version lacks fail before anything is sent.
//!
//! * A **permanent** slot survives restarts and disconnections: use it for anything that
//!   must not miss changes.
//! * A **temporary** slot is dropped when the connection that created it ends: fine for
//!   tests and one-off captures, useless for resuming. Create it with a
//!   [`SlotManager`](crate::SlotManager), which keeps the connection
//!   ([`create_slot`](crate::create_slot) refuses: its connection ends at once).
//! * **two_phase** slots decode prepared transactions at `PREPARE` (PostgreSQL 15+ with the
//!   `TWO_PHASE` option; pair it with [`LogicalStreamBuilder::two_phase`](crate::LogicalStreamBuilder::two_phase)).
//! * **failover** slots (PostgreSQL 17+) are synchronised to standbys.
//! * Creating a slot with `EXPORT_SNAPSHOT` ([`SnapshotAction::Export`](crate::SnapshotAction))
//!   returns a snapshot name; a second, ordinary connection can `SET TRANSACTION SNAPSHOT`
//!   to it and read the tables exactly as of the slot's consistent point, which is how an
//!   initial copy hands over to the stream without missing or doubling rows. The snapshot
//!   lives only while the creating connection runs no other command. With
//!   [`SnapshotAction::Use`](crate::SnapshotAction) the creating connection's own
//!   transaction (a `REPEATABLE READ, READ ONLY` one that `SlotManager::create` opens) uses
//!   the snapshot; `Nothing` makes none (fastest).
//!
//! ## Initial snapshot
//!
//! [`LogicalStreamBuilder::initial_snapshot`](crate::LogicalStreamBuilder::initial_snapshot)
//! does the whole hand-off for a **new** slot:
//!
//! 1. `CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')` on the replication connection, which
//!    then stays idle (the exported snapshot dies with its next command);
//! 2. a second, ordinary connection runs `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
//!    SET TRANSACTION SNAPSHOT '…'`, lists the publications' tables
//!    (`pg_publication_tables`) and copies each with `COPY (SELECT …) TO STDOUT`; each row
//!    becomes an [`EventKind::Read`](crate::EventKind::Read) with the same typed
//!    [`Row`](crate::Row) as stream events (values decoded by their type OID), the last one
//!    marked [`last`](crate::SnapshotRead::last);
//! 3. [`EventKind::SnapshotComplete`](crate::EventKind::SnapshotComplete) (consistent point,
//!    table and row counts);
//! 4. `START_REPLICATION` on the first connection from the slot: exactly the transactions
//!    that commit after the consistent point.
//!
//! The snapshot sees every transaction that committed before the consistent point and none
//! after; the slot sends exactly the ones after. So applying the reads (as upserts by key)
//! and then the changes gives the tables' current contents, with no row missed or doubled.
//! Rows are read as you consume them (a queue of a few hundred rows), so memory stays
//! bounded whatever the table sizes; a slow consumer keeps the copy's transaction open,
//! which holds back vacuum on the server for that long.
//!
//! Applied from the publications (PostgreSQL 15+): row filters (ORed when several
//! publications publish a table; none if one publishes it unfiltered, as the server does)
//! and column lists. Partitioned tables are copied as the publication lists them (the root
//! with `publish_via_partition_root`, otherwise each leaf). Not applied: the `publish`
//! operation list (a publication without `insert` still gets its tables copied, like the
//! server's own table synchronisation). Read events carry no acknowledgement handle: the
//! slot's `confirmed_flush_lsn` already is the consistent point.
//!
//! The snapshot cannot be resumed: if it fails or is cancelled, the stream drops the slot
//! (best effort) and returns the error (or ends), so that a new start takes a fresh
//! snapshot. Starting with `initial_snapshot(true)` on an existing slot is refused
//! ([`ErrorKind::Usage`](crate::ErrorKind)): once a snapshot completed, restart without it
//! (the `initial-snapshot` example checks with [`slot_info`](crate::slot_info)). If the
//! process dies during the copy the slot stays: drop it before starting over. With
//! [`DebeziumEncoder::encode_read`](crate::DebeziumEncoder::encode_read), read events become
//! Debezium's `op = "r"` records (`source.snapshot` `true`, `last` on the last row).
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
//! ### The resume signal
//!
//! Every reconnect puts one [`EventKind::Resumed`](crate::EventKind::Resumed) before the
//! first event of the new connection (failed attempts in between do not add more). It
//! carries [`at`](crate::Resumed::at), the position the new connection started from, and
//! [`discarded`](crate::Resumed::discarded): the transactions the lost connection left open
//! — a `Begin` without its `Commit`, and every streamed transaction with blocks delivered
//! but no Stream Commit/Abort/Prepare yet (whether the cut came inside a block or between
//! two). On it, a consumer must:
//!
//! * drop the partial state of the `discarded` transactions: the server sends each of them
//!   again **from its start** — for a streamed transaction, from its first block
//!   (`first_segment = true`), every change once more, whether the transaction was still
//!   running on the server or already committed there; a transaction that commits later
//!   then arrives with its Stream Commit once;
//! * treat everything delivered but not acknowledged as not delivered: it comes again
//!   (transactions that end at or before what was acknowledged are skipped).
//!
//! A signal on every reconnect, rather than only when something was open, is what makes the
//! second rule usable: a consumer that buffers whole but unacknowledged transactions (to
//! apply them in batches) learns that they will be re-sent. A synthetic Stream Stop would not
//! do: it says "block ends, transaction continues", the opposite of what happened.
//! The [`TransactionAssembler`](crate::TransactionAssembler) handles the event itself: it
//! drops every partial and unacknowledged state and passes the event on as
//! [`Assembled::Event`](crate::Assembled). Users of the sans-IO
//! [`LogicalDecoder`](crate::LogicalDecoder) get it from
//! [`reset_for_resume`](crate::LogicalDecoder::reset_for_resume).
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
//! ## User-defined types
//!
//! `pgoutput` sends the values of every column as text (or, with
//! [`binary`](crate::LogicalStreamBuilder::binary), in the type's binary form) and names a
//! non-built-in type only by OID, namespace and name. What an enum, a domain, an array or a
//! range of user types *is* lives in the catalog, so a [`LogicalStream`](crate::LogicalStream)
//! looks it up itself (automatic type resolution, on by default): when a Type or Relation
//! message names a type that is neither built in nor registered, the stream reads `pg_type`,
//! `pg_range`, `pg_enum` and `pg_attribute` over an ordinary connection made from the same
//! [`Config`](crate::Config)
//! (opened at the first lookup, reused, closed by [`shutdown`](crate::LogicalStream::shutdown)),
//! and registers the type, its array type, its multirange, and whatever it is built on (a
//! domain's base type, a range's subtype, an array's element, a composite's attribute types) —
//! all before the rows of that message are handed out, so every row decodes with it. Enums
//! become [`Value::Enum`](crate::Value::Enum) (the registry keeps their labels in sort order:
//! [`TypeRegistry::enum_labels`](crate::TypeRegistry::enum_labels), the `allowed` values of
//! Debezium's enum schema), domains their base type's value, composites
//! [`Value::Composite`](crate::Value::Composite) (attributes by name), arrays, ranges and
//! multiranges of them the usual variants.
//!
//! * Types created or changed while the stream runs are handled: a new column of a new type
//!   comes with a new Relation message, which triggers the lookup. A new enum label
//!   (`ALTER TYPE ... ADD VALUE`) decodes without one (labels are sent as text in both
//!   formats), but the registry's label list is refreshed: a row holding a label the registry
//!   does not list (in an enum column, an array of the enum or a domain over it) makes the
//!   stream look the enum up again, once per type and label, before the row is handed out. A
//!   label added but not yet used in a row is not noticed. A type keeps its OID while it exists (one
//!   dropped and created again gets a new OID), so what was looked up stays valid, across
//!   reconnects too. The exception is a composite type that gains or loses attributes
//!   (`ALTER TYPE ... ADD ATTRIBUTE`), which `pgoutput` does not announce: a row whose
//!   attribute count differs from the registered one makes the stream look the type up again
//!   (once per type and count). Rows written before the change can then no longer be decoded
//!   (the catalog describes the new shape; reading such a field is a typed error), and a
//!   change that keeps the count (`ALTER ATTRIBUTE ... TYPE`) is not noticed in text mode
//!   (binary values carry their attribute types).
//! * A failed lookup (server unreachable, connection limit reached, timeout after 30 s) does
//!   not stop the stream: the values stay [`Value::Unknown`](crate::Value::Unknown) (the text
//!   or bytes as received) and the failure is listed by
//!   [`type_lookup_failures`](crate::LogicalStream::type_lookup_failures); the next Relation
//!   or Type message naming the type tries again. A lookup connection the server closed is
//!   replaced once.
//! * Not decoded: base types of extensions (`citext`, `hstore`, ...) and arrays whose element
//!   delimiter is not a comma. They stay `Value::Unknown`.
//! * Rows of the [initial snapshot](#initial-snapshot) are typed the same way (the types of
//!   each table are looked up before its first row), and so are changes the
//!   [`TransactionAssembler`](crate::TransactionAssembler) spilled to disk and reads back.
//! * [`resolve_types(false)`](crate::LogicalStreamBuilder::resolve_types) turns the lookup off
//!   (no second connection); [`types`](crate::LogicalStreamBuilder::types) gives a
//!   [`TypeRegistry`](crate::TypeRegistry) of your own, used with or without resolution.
//! * A [`LogicalDecoder`](crate::LogicalDecoder) driven by hand gets the same lookups from a
//!   [`TypeResolver`](crate::TypeResolver) (`walstream tail` does this; `--no-resolve-types`
//!   turns it off). `walstream decode` has no server to ask: user types come out as the
//!   server's text, as with `--no-resolve-types`.
//! * [`Row::deserialize`](crate::Row::deserialize) reads them into Rust types: an enum into a
//!   Rust enum by label (unit variants), a domain as its base type, a composite into a struct
//!   by attribute name or into a tuple by position, an array of composites into
//!   `Vec<Struct>`:
//!
//!   ```
//!   #[derive(serde::Deserialize)]
//!   #[serde(rename_all = "lowercase")]
//!   enum Mood { Sad, Ok, Happy }
//!
//!   #[derive(serde::Deserialize)]
//!   struct Address { street: String, zip: Option<String> }   // CREATE TYPE address AS (...)
//!
//!   #[derive(serde::Deserialize)]
//!   struct Customer {
//!       id: i64,
//!       mood: Mood,                  // mood enum
//!       balance: String,             // DOMAIN money_amount AS numeric(12,2): "12.50"
//!       address: Address,            // composite
//!       previous: Vec<Address>,      // address[]
//!   }
//!   # fn demo(row: &walstream::Row) -> Result<Customer, walstream::DeserializeError> {
//!   let customer: Customer = row.deserialize()?;
//!   # Ok(customer) }
//!   ```
//! * The lookup connection is an ordinary backend of the stream's role and database (it
//!   counts towards `max_connections` and the role's connection limit); the catalog is
//!   readable by every role, so the replication role suffices.
//!
//! ## Output formats
//!
//! [`Event::to_json_line`](crate::Event::to_json_line) renders walstream's own JSON lines
//! (`docs/jsonl.md`); [`DebeziumEncoder`](crate::DebeziumEncoder) renders Debezium's envelope
//! and type mapping (`docs/debezium.md`).
