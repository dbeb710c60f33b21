//! Server-side faults: the slot dropped while the stream retries, the publication altered
//! (a table added, a table removed) and dropped mid-stream, and DDL on a published table
//! between transactions (ADD COLUMN, DROP COLUMN, ALTER TYPE, RENAME COLUMN, RENAME TABLE).
//!
//! The publication and DDL cases run as oracles: a writer commits transactions with known
//! contents (small, rolled back, two-phase, streamed large, savepoints) and the schema or
//! publication changes between them, while a consumer with unlimited retry applies whole
//! transactions to a model and only then acknowledges them, and network and server faults
//! (proxy reset/truncate/stall, walsender termination, restart -m fast/immediate) are
//! injected all along. At the end every committed transaction was applied exactly once (by
//! marker row and by commit LSN), nothing that did not commit was applied, and the model
//! equals the server's tables (or their snapshot at the moment they left the publication).
//! On top, every row must be preceded by a Relation event describing exactly its shape.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use walstream::{
    ErrorKind, Event, EventKind, LogicalStream, Lsn, RetryPolicy, RowChange, Streaming, Xid,
};
use walstream_test_support::{Cluster, FaultProxy, for_each_server, wait_for};

use crate::common::{block_on, cluster, log_tail, proxied_config, report};
use crate::oracle::{FaultKind, inject};

/// Column values of one row by column name (the key column `id` excluded).
type Cols = BTreeMap<String, String>;
/// A table's name and columns `(name, type OID)`.
type Shape = (&'static str, Vec<(&'static str, u32)>);
/// Rows by `id`.
type Table = BTreeMap<i64, Cols>;
/// Tables by name.
type Tables = BTreeMap<String, Table>;

const INT4: u32 = 23;
const INT8: u32 = 20;
const TEXT: u32 = 25;

/// A retry policy that never gives up, with short waits.
fn unlimited_retry() -> RetryPolicy {
    let mut retry = RetryPolicy::default();
    retry.max_retries = None;
    retry.initial_backoff = Duration::from_millis(50);
    retry.max_backoff = Duration::from_millis(500);
    retry
}

// ---------------------------------------------------------------------------------------------
// Slot dropped while streaming
// ---------------------------------------------------------------------------------------------

/// Streams until one transaction arrived, then runs `drop_slot` (blocking) while the stream
/// keeps polling; returns the error the stream ended with and how long after `drop_slot`
/// returned it came.
fn stream_until_slot_dropped(
    c: &Cluster,
    proxy: &FaultProxy,
    slot: &str,
    drop_slot: impl FnOnce() + Send,
) -> (walstream::Error, Duration) {
    c.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
    ))
    .expect("slot");
    let config = proxied_config(c, proxy);
    block_on(async {
        let mut stream = LogicalStream::builder(config, slot)
            .publication("ws_pub")
            .status_interval(Duration::from_millis(200))
            .retry(unlimited_retry())
            .start()
            .await
            .expect("stream starts");
        c.execute(
            "INSERT INTO acct VALUES (1, 'one') ON CONFLICT (id) DO UPDATE SET val = excluded.val",
        )
        .expect("insert");
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let ev = stream
                    .next_event()
                    .await
                    .expect("stream alive")
                    .expect("not ended");
                ev.ack();
                if matches!(ev.kind(), EventKind::Commit(_)) {
                    break;
                }
            }
        })
        .await
        .expect("a transaction arrives before the fault");
        // The consumer keeps polling (and retrying) while the slot is dropped.
        let consumer = tokio::spawn(async move {
            loop {
                match stream.next_event().await {
                    Ok(Some(ev)) => {
                        ev.ack();
                    }
                    Ok(None) => return None,
                    Err(e) => return Some((e, Instant::now())),
                }
            }
        });
        tokio::task::block_in_place(drop_slot);
        let dropped = Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(30), consumer)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "slot {slot} dropped: the stream neither recovered nor failed within 30 s\n{}",
                    log_tail(c)
                )
            })
            .expect("consumer task");
        let (err, at) =
            ended.unwrap_or_else(|| panic!("slot {slot}: the stream ended without an error"));
        (err, at.saturating_duration_since(dropped))
    })
}

fn assert_slot_gone_error(slot: &str, err: &walstream::Error, after: Duration) {
    assert_eq!(err.kind(), ErrorKind::Connection, "{slot}: {err}");
    let db = err
        .db_error()
        .unwrap_or_else(|| panic!("{slot}: no server error in {err:?}"));
    assert_eq!(db.code().code(), "42704", "{slot}: {db}");
    assert!(
        db.message().contains(slot) && err.to_string().contains(slot),
        "{slot}: the error does not name the slot: {err}"
    );
    assert!(
        after < Duration::from_secs(10),
        "{slot}: the missing slot was reported {after:?} after the drop"
    );
}

#[test]
fn slot_dropped_while_the_stream_retries_ends_with_a_typed_error() {
    for_each_server(|install| {
        let c = cluster(install, "10s");

        // (a) The proxy refuses connections, so the stream is retrying while the slot goes;
        // then the server is reachable again and the stream must learn the slot is gone.
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
        let slot = "doomed_slot";
        let mut refused_retries = 0;
        let (err, after) = stream_until_slot_dropped(&c, &proxy, slot, || {
            proxy.set_refusing(true);
            proxy.reset_all();
            let before = proxy.accepted();
            c.terminate_walsenders().expect("terminate");
            wait_for("slot released", Duration::from_secs(20), || {
                c.replication_slots()
                    .ok()?
                    .into_iter()
                    .find(|s| s.slot_name == slot && !s.active)
            })
            .expect("slot released");
            c.execute(&format!("SELECT pg_drop_replication_slot('{slot}')"))
                .expect("drop slot");
            // Let the stream retry against the refusing proxy for a while.
            assert!(
                proxy.wait_accepted_blocking(before + 2, Duration::from_secs(10)),
                "the stream did not retry while the server was unreachable"
            );
            refused_retries = proxy.accepted() - before;
            proxy.set_refusing(false);
        });
        assert_slot_gone_error(slot, &err, after);
        // The error is final: the stream does not keep reconnecting behind the caller's back.
        let accepted = proxy.accepted();
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(proxy.accepted(), accepted, "the stream kept reconnecting");
        report(&format!(
            "server slot_dropped_refusing pg{} Connection/{} {}ms retries={refused_retries}",
            c.major(),
            err.db_error()
                .map(|d| d.code().code().to_owned())
                .unwrap_or_default(),
            after.as_millis()
        ));
        drop(proxy);

        // (b) A race: the walsender is terminated and the slot dropped in a loop while the
        // stream reconnects as fast as it can (the slot may be re-acquired in between).
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
        let slot = "raced_slot";
        let (err, after) = stream_until_slot_dropped(&c, &proxy, slot, || {
            c.execute(&format!(
                "DO $$ BEGIN \
                   FOR i IN 1..2000 LOOP \
                     PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots \
                       WHERE slot_name = '{slot}' AND active_pid IS NOT NULL; \
                     BEGIN \
                       PERFORM pg_drop_replication_slot('{slot}'); \
                       RETURN; \
                     EXCEPTION WHEN object_in_use THEN PERFORM pg_sleep(0.005); \
                     END; \
                   END LOOP; \
                   RAISE EXCEPTION 'slot {slot} could not be dropped'; \
                 END $$"
            ))
            .expect("terminate and drop");
        });
        assert_slot_gone_error(slot, &err, after);
        report(&format!(
            "server slot_dropped_race pg{} Connection/{} {}ms",
            c.major(),
            err.db_error()
                .map(|d| d.code().code().to_owned())
                .unwrap_or_default(),
            after.as_millis()
        ));
    });
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// One change, as the model applies it.
#[derive(Debug, Clone)]
enum Change {
    Upsert {
        table: String,
        id: i64,
        cols: Cols,
    },
    Delete {
        table: String,
        id: i64,
    },
    /// A `txlog` row: the writer's transaction number.
    Marker(i64),
}

/// What a DDL-aware sink knows about a table whose schema changes: the shape of its rows in
/// each stage, and how the existing rows change when a stage begins.
struct Schema {
    /// The stage of writer transaction `k`.
    stage: fn(i64) -> usize,
    /// The table's name and columns `(name, type OID)` in a stage.
    shape: fn(usize) -> Shape,
    /// The table's names over its life.
    names: &'static [&'static str],
    /// Applies the DDL that starts stage `s` to the model's tables.
    migrate: fn(usize, &mut Tables),
}

#[derive(Default)]
struct Model {
    tables: Tables,
    applied_markers: Vec<i64>,
    applied_commits: Vec<Lsn>,
    duplicate_commits: Vec<Lsn>,
    pending: Vec<Change>,
    pending_marker: Option<i64>,
    streamed: HashMap<Xid, Vec<(Xid, Change)>>,
    stream_marker: HashMap<Xid, i64>,
    in_stream: Option<Xid>,
    prepared: HashMap<String, Vec<Change>>,
    /// The last Relation event per relation OID: name and columns.
    relations: HashMap<u32, (String, Vec<(String, u32)>)>,
    relation_events: u64,
    schema_changes: u64,
    /// Every schema-watched row checked against its stage's shape.
    shape_checks: u64,
    violations: Vec<String>,
    schema: Option<&'static Schema>,
    stage: usize,
    done: bool,
    events: u64,
    /// The last events (kind, LSN, marker), for failure messages.
    trace: std::collections::VecDeque<String>,
}

fn int_of(row: &walstream::Row, name: &str) -> i64 {
    let field = row
        .get(name)
        .unwrap_or_else(|e| panic!("column {name}: {e}"));
    let text = field
        .value()
        .unwrap_or_else(|| panic!("column {name} has no value"))
        .to_string();
    text.parse()
        .unwrap_or_else(|_| panic!("column {name}: {text:?}"))
}

fn change_of(kind: &EventKind, rc: &RowChange) -> Change {
    let table = rc.table().to_owned();
    match kind {
        EventKind::Insert(_) | EventKind::Update(_) => {
            let row = rc.new.as_ref().expect("new row");
            if table == "txlog" {
                return Change::Marker(int_of(row, "k"));
            }
            let mut cols = Cols::new();
            for (col, field) in row.iter() {
                if col.name == "id" {
                    continue;
                }
                let field = field.unwrap_or_else(|e| panic!("{table}.{}: {e}", col.name));
                assert!(
                    !field.is_unchanged_toast(),
                    "{table}.{}: unchanged TOAST in the oracle",
                    col.name
                );
                let value = field
                    .value()
                    .unwrap_or_else(|| panic!("{table}.{} is null", col.name))
                    .to_string();
                cols.insert(col.name.clone(), value);
            }
            Change::Upsert {
                id: int_of(row, "id"),
                table,
                cols,
            }
        }
        EventKind::Delete(_) => Change::Delete {
            id: int_of(rc.old.as_ref().expect("old key").row(), "id"),
            table,
        },
        other => panic!("not a row change: {other:?}"),
    }
}

impl Model {
    fn new(schema: Option<&'static Schema>, tables: Tables) -> Self {
        Self {
            schema,
            tables,
            ..Self::default()
        }
    }

    fn migrate_to(&mut self, stage: usize) {
        if let Some(schema) = self.schema {
            while self.stage < stage {
                self.stage += 1;
                (schema.migrate)(self.stage, &mut self.tables);
            }
        }
    }

    fn apply(&mut self, changes: Vec<Change>, commit: Lsn) {
        if self.applied_commits.contains(&commit) {
            self.duplicate_commits.push(commit);
            return;
        }
        self.applied_commits.push(commit);
        if let Some(schema) = self.schema {
            if let Some(k) = changes.iter().find_map(|c| match c {
                Change::Marker(k) => Some(*k),
                _ => None,
            }) {
                self.migrate_to((schema.stage)(k));
            }
        }
        for c in changes {
            match c {
                Change::Upsert { table, id, cols } => {
                    self.tables.entry(table).or_default().insert(id, cols);
                }
                Change::Delete { table, id } => {
                    if let Some(t) = self.tables.get_mut(&table) {
                        t.remove(&id);
                    }
                }
                Change::Marker(k) => self.applied_markers.push(k),
            }
        }
    }

    /// Checks a row against the last Relation event for its relation, and, for a table whose
    /// schema changes, against the shape of its transaction's stage.
    fn check_row(&mut self, rc: &RowChange, marker: Option<i64>) {
        let rel = &rc.relation;
        let shape: Vec<(String, u32)> = rel
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid.0))
            .collect();
        match self.relations.get(&rel.oid.0) {
            None => self.violations.push(format!(
                "a row of {} (oid {}) before any Relation event for it",
                rel.name, rel.oid
            )),
            Some((name, cols)) if *name != rel.name || *cols != shape => {
                self.violations.push(format!(
                    "a row of {} {shape:?} after a Relation event for {name} {cols:?}",
                    rel.name
                ));
            }
            Some(_) => {}
        }
        let Some(schema) = self.schema else { return };
        if !schema.names.contains(&rel.name.as_str()) {
            return;
        }
        let Some(k) = marker else {
            self.violations.push(format!(
                "a row of {} before its transaction's marker",
                rel.name
            ));
            return;
        };
        let stage = (schema.stage)(k);
        let (name, cols) = (schema.shape)(stage);
        let expected: Vec<(String, u32)> =
            cols.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect();
        if rel.name != name || shape != expected {
            self.violations.push(format!(
                "transaction {k} (stage {stage}): a row of {} {shape:?}, expected {name} {expected:?}",
                rel.name
            ));
        }
        self.shape_checks += 1;
    }

    /// Handles one event, then acknowledges it (apply, then ack).
    fn handle(&mut self, ev: &Event) {
        self.events += 1;
        let kind = ev.kind();
        if self.trace.len() == 80 {
            self.trace.pop_front();
        }
        let detail = match kind {
            EventKind::Insert(rc) if rc.table() == "txlog" => format!(" {:?}", change_of(kind, rc)),
            EventKind::Commit(c) => format!(" commit_lsn={} end_lsn={}", c.commit_lsn, c.end_lsn),
            _ => String::new(),
        };
        if !matches!(kind, EventKind::Insert(rc) | EventKind::Update(rc) | EventKind::Delete(rc) if rc.table() != "txlog")
        {
            self.trace
                .push_back(format!("{} @{}{detail}", kind.name(), ev.lsn()));
        }
        match kind {
            // A Begin cannot occur inside a streamed block: if one is open, the connection was
            // lost inside it and the stream resumed, so that block's state is stale.
            EventKind::Begin(_) | EventKind::BeginPrepare(_) => {
                self.in_stream = None;
                self.pending.clear();
                self.pending_marker = None;
            }
            EventKind::Relation(r) => {
                self.relation_events += 1;
                if r.is_schema_change() {
                    self.schema_changes += 1;
                }
                let cols = r
                    .relation
                    .columns
                    .iter()
                    .map(|c| (c.name.clone(), c.type_oid.0))
                    .collect();
                self.relations
                    .insert(r.relation.oid.0, (r.relation.name.clone(), cols));
            }
            EventKind::Insert(rc) | EventKind::Update(rc) | EventKind::Delete(rc) => {
                let change = change_of(kind, rc);
                let marker = match self.in_stream {
                    Some(xid) => self.stream_marker.get(&xid).copied(),
                    None => self.pending_marker,
                };
                if let Change::Marker(k) = change {
                    match self.in_stream {
                        Some(xid) => {
                            self.stream_marker.insert(xid, k);
                        }
                        None => self.pending_marker = Some(k),
                    }
                } else {
                    self.check_row(rc, marker);
                }
                match self.in_stream {
                    Some(xid) => self
                        .streamed
                        .entry(xid)
                        .or_default()
                        .push((rc.sub_xid.unwrap_or(xid), change)),
                    None => self.pending.push(change),
                }
            }
            EventKind::StreamStart(s) => {
                if s.first_segment {
                    self.streamed.insert(s.xid, Vec::new());
                    self.stream_marker.remove(&s.xid);
                }
                self.in_stream = Some(s.xid);
            }
            EventKind::StreamStop => self.in_stream = None,
            EventKind::StreamAbort(a) => {
                if a.subxid == a.xid {
                    self.streamed.remove(&a.xid);
                } else if let Some(list) = self.streamed.get_mut(&a.xid) {
                    list.retain(|(sub, _)| *sub != a.subxid);
                }
            }
            EventKind::StreamCommit(c) => {
                let changes = self.streamed.remove(&c.xid).unwrap_or_default();
                self.apply(changes.into_iter().map(|(_, c)| c).collect(), c.commit_lsn);
            }
            EventKind::Commit(c) => {
                let changes = std::mem::take(&mut self.pending);
                self.apply(changes, c.commit_lsn);
            }
            EventKind::Prepare(p) => {
                let changes = std::mem::take(&mut self.pending);
                self.prepared.insert(p.gid.clone(), changes);
            }
            EventKind::StreamPrepare(p) => {
                let changes = self.streamed.remove(&p.xid).unwrap_or_default();
                self.prepared
                    .insert(p.gid.clone(), changes.into_iter().map(|(_, c)| c).collect());
            }
            EventKind::CommitPrepared(c) => {
                let changes = self.prepared.remove(&c.gid).unwrap_or_else(|| {
                    panic!("COMMIT PREPARED {} for a transaction never prepared", c.gid)
                });
                self.apply(changes, c.commit_lsn);
            }
            EventKind::RollbackPrepared(r) => {
                self.prepared.remove(&r.gid);
            }
            EventKind::Message(m) if m.prefix == "oracle" => self.done = true,
            _ => {}
        }
        ev.ack();
    }
}

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

/// One step of the writer.
#[derive(Debug, Clone)]
enum Step {
    /// Writer transaction `k` (it inserts `k` into `txlog` first); `commits` says whether it
    /// commits.
    Txn { k: i64, sql: String, commits: bool },
    /// Schema or publication change, between transactions.
    Admin(String),
    /// Record a query's rows under a label (e.g. a table's contents when it leaves the
    /// publication).
    Snapshot(&'static str, String),
}

/// What the oracle run produced.
struct Outcome {
    model: Model,
    committed: BTreeSet<i64>,
    snapshots: HashMap<&'static str, Vec<Vec<String>>>,
    /// The error the stream ended with, if it did not reach the end-of-workload message.
    error: Option<walstream::Error>,
    faults: u32,
    elapsed: Duration,
}

/// Runs `steps` with a writer while a consumer with unlimited retry applies the stream to a
/// model and mixed faults are injected every `every`. The consumer stops at the writer's
/// end-of-workload message or at the first error (reported in the outcome); either must come
/// within `bound`.
fn run_steps(
    c: &Cluster,
    name: &str,
    steps: &[Step],
    schema: Option<&'static Schema>,
    initial: Tables,
    every: Duration,
    bound: Duration,
) -> Outcome {
    let two_phase = c.major() >= 15;
    c.execute(&format!(
        "SELECT pg_create_logical_replication_slot('oracle', 'pgoutput', false{})",
        if two_phase { ", true" } else { "" }
    ))
    .expect("slot");
    let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
    let config = proxied_config(c, &proxy);
    let gate = Mutex::new(());
    let writer_done = AtomicBool::new(false);
    let started = Instant::now();

    let (model, error, committed, snapshots, faults) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut committed = BTreeSet::new();
            let mut snapshots = HashMap::new();
            for step in steps {
                let _g = gate.lock().unwrap_or_else(PoisonError::into_inner);
                match step {
                    Step::Txn { k, sql, commits } => {
                        c.execute(sql)
                            .unwrap_or_else(|e| panic!("{name}: writer transaction {k}: {e}"));
                        if *commits {
                            committed.insert(*k);
                        }
                    }
                    Step::Admin(sql) => c
                        .execute(sql)
                        .unwrap_or_else(|e| panic!("{name}: {sql}: {e}")),
                    Step::Snapshot(label, sql) => {
                        snapshots.insert(
                            *label,
                            c.query_rows(sql)
                                .unwrap_or_else(|e| panic!("{name}: {sql}: {e}")),
                        );
                    }
                }
                drop(_g);
                // Spread the workload so that faults land between and inside transactions.
                std::thread::sleep(Duration::from_millis(25));
            }
            let _g = gate.lock().unwrap_or_else(PoisonError::into_inner);
            c.execute("SELECT pg_logical_emit_message(true, 'oracle', 'done')")
                .expect("end message");
            writer_done.store(true, Ordering::SeqCst);
            (committed, snapshots)
        });
        let injector = s.spawn(|| {
            let mut n = 0u32;
            while !writer_done.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if writer_done.load(Ordering::SeqCst) {
                    break;
                }
                inject(FaultKind::Mixed, n, c, &proxy, &gate);
                n += 1;
            }
            n
        });
        let (model, error) = block_on(async {
            let mut stream = LogicalStream::builder(config, "oracle")
                .publication("ws_pub")
                .streaming(Streaming::On)
                .two_phase(two_phase)
                .messages(true)
                .status_interval(Duration::from_millis(200))
                .retry(unlimited_retry())
                .start()
                .await
                .expect("stream starts");
            let mut model = Model::new(schema, initial);
            let mut error = None;
            tokio::time::timeout(bound, async {
                while !model.done {
                    match stream.next_event().await {
                        Ok(Some(ev)) => model.handle(&ev),
                        Ok(None) => panic!("{name}: the stream ended"),
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{name}: neither the end of the workload nor an error within {bound:?} \
                     ({} events, {} commits applied)\n{}",
                    model.events,
                    model.applied_commits.len(),
                    log_tail(c)
                )
            });
            let _ = stream.shutdown().await;
            (model, error)
        });
        let (committed, snapshots) = writer.join().expect("writer");
        let faults = injector.join().expect("injector");
        (model, error, committed, snapshots, faults)
    });
    let server_markers: BTreeSet<i64> = c
        .query_rows("SELECT k FROM txlog")
        .expect("txlog")
        .into_iter()
        .map(|r| r[0].parse().expect("k"))
        .collect();
    assert_eq!(
        server_markers, committed,
        "{name}: the writer's view and the server disagree"
    );
    assert!(faults >= 3, "{name}: only {faults} faults were injected");
    Outcome {
        model,
        committed,
        snapshots,
        error,
        faults,
        elapsed: started.elapsed(),
    }
}

/// Rows `id|col1|col2...` (from a snapshot or a query) as a model table with `cols` as
/// column names.
fn table_of(rows: &[Vec<String>], cols: &[&str]) -> Table {
    rows.iter()
        .map(|r| {
            assert_eq!(r.len(), cols.len() + 1, "row {r:?} for columns {cols:?}");
            let id = r[0].parse().expect("id");
            let vals = cols
                .iter()
                .zip(&r[1..])
                .map(|(c, v)| ((*c).to_owned(), v.clone()))
                .collect();
            (id, vals)
        })
        .collect()
}

/// Describes how two tables differ (a few entries), for failure messages.
fn diff(model: &Table, server: &Table) -> String {
    let wrong: Vec<_> = server
        .iter()
        .filter(|(k, v)| model.get(k) != Some(v))
        .map(|(k, v)| format!("{k}: server {v:?} model {:?}", model.get(k)))
        .take(5)
        .collect();
    let extra: Vec<_> = model
        .keys()
        .filter(|k| !server.contains_key(k))
        .take(5)
        .collect();
    format!("{wrong:?}; extra ids in the model {extra:?}")
}

/// The exactly-once checks shared by the oracles; returns the result line.
fn check_exactly_once(name: &str, c: &Cluster, o: &Outcome, expected: &BTreeSet<i64>) -> String {
    let m = &o.model;
    let mut applied = m.applied_markers.clone();
    applied.sort_unstable();
    let applied_set: BTreeSet<i64> = applied.iter().copied().collect();
    let lost: Vec<i64> = expected.difference(&applied_set).copied().collect();
    let phantom: Vec<i64> = applied_set.difference(expected).copied().collect();
    let twice = applied.len() - applied_set.len();
    let line = format!(
        "oracle {name} pg{} committed={} expected={} faults={} events={} relations={} \
         schema_changes={} shape_checks={} lost={} twice={} dup_commit_lsn={} phantom={} \
         violations={} {}ms",
        c.major(),
        o.committed.len(),
        expected.len(),
        o.faults,
        m.events,
        m.relation_events,
        m.schema_changes,
        m.shape_checks,
        lost.len(),
        twice,
        m.duplicate_commits.len(),
        phantom.len(),
        m.violations.len(),
        o.elapsed.as_millis()
    );
    report(&line);
    assert!(
        lost.is_empty(),
        "{line}: lost {lost:?}; last events:\n{}",
        m.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(twice, 0, "{line}: applied twice");
    assert!(
        m.duplicate_commits.is_empty(),
        "{line}: duplicate commit LSNs {:?}",
        m.duplicate_commits
    );
    assert!(
        phantom.is_empty(),
        "{line}: applied but not expected: {phantom:?}"
    );
    assert!(
        m.violations.is_empty(),
        "{line}: {:?}",
        &m.violations[..m.violations.len().min(5)]
    );
    line
}

// ---------------------------------------------------------------------------------------------
// Publication altered and dropped mid-stream
// ---------------------------------------------------------------------------------------------

/// Transaction `k` of the publication oracle. `sign` is -1 while `extra` is not published
/// (its ids are negative then) and 1 afterwards.
fn publication_txn(k: i64, sign: i64) -> Step {
    let mark = format!("INSERT INTO txlog VALUES ({k});");
    let a = (k * 7) % 30;
    let e = sign * (1 + (k * 11) % 30);
    let up = |t: &str, id: i64, v: String| {
        format!(
            "INSERT INTO {t} VALUES ({id}, '{v}') ON CONFLICT (id) DO UPDATE SET val = excluded.val;"
        )
    };
    let (body, end, commits) = match k % 6 {
        0 => (
            format!(
                "{} {}",
                up("acct", a, format!("a{k}")),
                up("extra", e, format!("e{k}"))
            ),
            "COMMIT;".to_owned(),
            true,
        ),
        1 => (
            format!(
                "UPDATE acct SET val = 'u{k}' WHERE id % 5 = {r}; \
                 UPDATE extra SET val = 'u{k}' WHERE id % 5 = {r} AND sign(id) = {sign};",
                r = k % 5
            ),
            "COMMIT;".to_owned(),
            true,
        ),
        2 => (
            format!("DELETE FROM acct WHERE id = {a}; DELETE FROM extra WHERE id = {e};"),
            "COMMIT;".to_owned(),
            true,
        ),
        3 => (
            format!(
                "{} {}",
                up("acct", a, format!("never{k}")),
                up("extra", e, format!("never{k}"))
            ),
            "ROLLBACK;".to_owned(),
            false,
        ),
        4 => (
            // Large: streamed (over logical_decoding_work_mem = 64kB); a savepoint rolled back.
            format!(
                "INSERT INTO extra SELECT {sign} * g, 'big{k}-' || repeat('x', 200) \
                 FROM generate_series(1000, 2000) g \
                 ON CONFLICT (id) DO UPDATE SET val = excluded.val; \
                 INSERT INTO acct SELECT g, 'big{k}-' || repeat('y', 200) \
                 FROM generate_series(1000, 1400) g \
                 ON CONFLICT (id) DO UPDATE SET val = excluded.val; \
                 SAVEPOINT s; {} ROLLBACK TO SAVEPOINT s;",
                up("acct", 77, format!("sub{k}"))
            ),
            "COMMIT;".to_owned(),
            true,
        ),
        _ => {
            let commit = (k / 6) % 2 == 0;
            (
                format!(
                    "{} {}",
                    up("acct", a, format!("p{k}")),
                    up("extra", e, format!("p{k}"))
                ),
                format!(
                    "PREPARE TRANSACTION 'g{k}'; {} 'g{k}';",
                    if commit {
                        "COMMIT PREPARED"
                    } else {
                        "ROLLBACK PREPARED"
                    }
                ),
                commit,
            )
        }
    };
    Step::Txn {
        k,
        sql: format!("BEGIN; {mark} {body} {end}"),
        commits,
    }
}

/// Whether PostgreSQL's pgoutput skips a missing publication with a WARNING instead of an
/// ERROR (PostgreSQL 18; earlier majors fail the walsender).
fn skips_missing_publication(major: u32) -> bool {
    major >= 18
}

#[test]
fn oracle_publication_altered_and_dropped_mid_stream() {
    for_each_server(|install| {
        let c = cluster(install, "10s");
        c.execute(
            "CREATE TABLE extra (id int PRIMARY KEY, val text NOT NULL); \
             INSERT INTO acct SELECT g, 'seed' FROM generate_series(0, 29) g; \
             INSERT INTO extra SELECT -g, 'seed' FROM generate_series(1, 30) g;",
        )
        .expect("schema");
        // Phase A (1-15): acct and txlog published, extra not. Then extra is added.
        // Phase B (16-30): all three. Then acct is removed (its contents recorded).
        // Phase C (31-45): extra and txlog. Then the publication is dropped.
        // Phase D (46): nothing may arrive: the server errors, or (18+) skips the
        // missing publication.
        let mut steps: Vec<Step> = (1..=15).map(|k| publication_txn(k, -1)).collect();
        steps.push(Step::Admin(
            "ALTER PUBLICATION ws_pub ADD TABLE extra".into(),
        ));
        steps.extend((16..=30).map(|k| publication_txn(k, 1)));
        steps.push(Step::Admin(
            "ALTER PUBLICATION ws_pub DROP TABLE acct".into(),
        ));
        steps.push(Step::Snapshot("acct", "SELECT id, val FROM acct".into()));
        steps.extend((31..=45).map(|k| publication_txn(k, 1)));
        steps.push(Step::Snapshot(
            "extra",
            "SELECT id, val FROM extra WHERE id > 0".into(),
        ));
        steps.push(Step::Admin("DROP PUBLICATION ws_pub".into()));
        steps.push(publication_txn(46, 1));

        let o = run_steps(
            &c,
            "publication",
            &steps,
            None,
            Tables::from([("acct".to_owned(), seed("seed", 0..30))]),
            Duration::from_millis(400),
            Duration::from_secs(120),
        );
        // PostgreSQL 14-17 can fail with 42704 on a transaction that committed *before* the
        // DROP PUBLICATION when the walsender reaches it only after the drop (it lags after a
        // fault; seen for a streamed transaction: the error came in its first stream_change,
        // and the stream ended with it). Those transactions cannot be delivered by any client;
        // the stream must then end with the typed error and what was applied must be a
        // gap-free prefix of the committed transactions.
        let applied_max = o.model.applied_markers.iter().copied().max().unwrap_or(0);
        let cut_short = !skips_missing_publication(c.major())
            && o.error.is_some()
            && o.committed.iter().any(|k| *k <= 45 && *k > applied_max);
        let limit = if cut_short { applied_max } else { 45 };
        let expected: BTreeSet<i64> = o
            .committed
            .iter()
            .copied()
            .filter(|k| *k <= limit)
            .collect();
        let line = check_exactly_once("publication", &c, &o, &expected);
        if cut_short {
            let undeliverable: Vec<i64> = o
                .committed
                .iter()
                .copied()
                .filter(|k| *k > limit && *k <= 45)
                .collect();
            report(&format!(
                "server publication_dropped_race pg{} committed before the drop, undeliverable \
                 (42704 when decoded after it): {undeliverable:?}",
                c.major()
            ));
        }
        let model_acct = o.model.tables.get("acct").cloned().unwrap_or_default();
        let model_extra = o.model.tables.get("extra").cloned().unwrap_or_default();
        let server_acct = table_of(&o.snapshots["acct"], &["val"]);
        let server_extra = table_of(&o.snapshots["extra"], &["val"]);
        assert!(
            model_extra.keys().all(|id| *id > 0),
            "{line}: extra's rows from before it was published arrived: {:?}",
            model_extra
                .keys()
                .filter(|id| **id < 0)
                .take(5)
                .collect::<Vec<_>>()
        );
        if !cut_short {
            assert_eq!(
                model_extra,
                server_extra,
                "{line}: extra differs: {}",
                diff(&model_extra, &server_extra)
            );
        }
        // acct as the consumer applied it equals acct when it left the publication (after
        // transaction 30): nothing of acct arrived after that.
        if limit >= 30 {
            assert_eq!(
                model_acct,
                server_acct,
                "{line}: acct differs from its contents when it left the publication: {}",
                diff(&model_acct, &server_acct)
            );
        }
        if skips_missing_publication(c.major()) {
            assert!(
                o.error.is_none(),
                "{line}: PostgreSQL {} skips a missing publication, got {:?}",
                c.major(),
                o.error
            );
            assert!(
                c.log_contents().contains("skipped loading publication"),
                "{line}: no 'skipped loading publication' warning in the server log"
            );
            report(&format!(
                "server publication_dropped pg{} skipped (WARNING), nothing sent after the drop",
                c.major()
            ));
        } else {
            let err = o
                .error
                .as_ref()
                .unwrap_or_else(|| panic!("{line}: the dropped publication went unnoticed"));
            assert_eq!(err.kind(), ErrorKind::Connection, "{line}: {err}");
            let db = err
                .db_error()
                .unwrap_or_else(|| panic!("{line}: no server error in {err:?}"));
            assert_eq!(db.code().code(), "42704", "{line}: {db}");
            assert!(db.message().contains("ws_pub"), "{line}: {db}");
            report(&format!(
                "server publication_dropped pg{} Connection/42704 \"{}\"",
                c.major(),
                db.message()
            ));
        }
    });
}

/// Rows `ids` with `val = value` (seed rows written before the slot existed: the model
/// starts with them).
fn seed(value: &str, ids: std::ops::Range<i64>) -> Table {
    ids.map(|g| (g, Cols::from([("val".to_owned(), value.to_owned())])))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// DDL on a published table between transactions
// ---------------------------------------------------------------------------------------------

/// Writer transactions per DDL stage.
const PER_STAGE: i64 = 8;
/// The DDL that starts stages 1..=5.
const DDL: [&str; 5] = [
    "ALTER TABLE ddl ADD COLUMN c text NOT NULL DEFAULT 'dflt'",
    "ALTER TABLE ddl DROP COLUMN a",
    // Rewrites the table; values beyond int4 follow.
    "ALTER TABLE ddl ALTER COLUMN b TYPE bigint",
    "ALTER TABLE ddl RENAME COLUMN c TO d",
    "ALTER TABLE ddl RENAME TO ddl2",
];

fn ddl_stage(k: i64) -> usize {
    usize::try_from((k - 1) / PER_STAGE).unwrap_or(0)
}

fn ddl_shape(stage: usize) -> Shape {
    match stage {
        0 => ("ddl", vec![("id", INT4), ("a", TEXT), ("b", INT4)]),
        1 => (
            "ddl",
            vec![("id", INT4), ("a", TEXT), ("b", INT4), ("c", TEXT)],
        ),
        2 => ("ddl", vec![("id", INT4), ("b", INT4), ("c", TEXT)]),
        3 => ("ddl", vec![("id", INT4), ("b", INT8), ("c", TEXT)]),
        4 => ("ddl", vec![("id", INT4), ("b", INT8), ("d", TEXT)]),
        _ => ("ddl2", vec![("id", INT4), ("b", INT8), ("d", TEXT)]),
    }
}

/// What the DDL starting `stage` does to the rows already there.
fn ddl_migrate(stage: usize, tables: &mut Tables) {
    let rows = tables.entry("ddl".to_owned()).or_default();
    match stage {
        1 => rows.values_mut().for_each(|r| {
            r.insert("c".into(), "dflt".into());
        }),
        2 => rows.values_mut().for_each(|r| {
            r.remove("a");
        }),
        3 => {} // int4 → int8: the same text
        4 => rows.values_mut().for_each(|r| {
            if let Some(v) = r.remove("c") {
                r.insert("d".into(), v);
            }
        }),
        5 => {
            let rows = std::mem::take(rows);
            tables.remove("ddl");
            tables.insert("ddl2".into(), rows);
        }
        _ => unreachable!("no stage {stage}"),
    }
}

static DDL_SCHEMA: Schema = Schema {
    stage: ddl_stage,
    shape: ddl_shape,
    names: &["ddl", "ddl2"],
    migrate: ddl_migrate,
};

/// Transaction `k` of the DDL oracle, written for its stage's shape.
fn ddl_txn(k: i64) -> Step {
    let stage = ddl_stage(k);
    let (table, cols) = ddl_shape(stage);
    let b = |n: i64| if stage >= 3 { 3_000_000_000 + n } else { n };
    // Columns other than id, with their values for row `id` (text values from `tag`).
    let values = |id: i64, tag: &str| -> Vec<String> {
        cols.iter()
            .skip(1)
            .map(|(name, _)| match *name {
                "b" => b(k * 100 + id).to_string(),
                _ => format!("'{tag}'"),
            })
            .collect()
    };
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let set: Vec<String> = names[1..]
        .iter()
        .map(|n| format!("{n} = excluded.{n}"))
        .collect();
    let upsert = |id: i64, tag: &str| {
        format!(
            "INSERT INTO {table} ({}) VALUES ({id}, {}) ON CONFLICT (id) DO UPDATE SET {};",
            names.join(", "),
            values(id, tag).join(", "),
            set.join(", ")
        )
    };
    let text_col = cols
        .iter()
        .rev()
        .find(|(_, t)| *t == TEXT)
        .map_or("d", |(n, _)| *n);
    let id = |n: i64| (k * 7 + n * 13) % 40;
    let (body, end, commits) = match k % PER_STAGE {
        0 | 1 => (
            format!(
                "{} {}",
                upsert(id(1), &format!("k{k}a")),
                upsert(id(2), &format!("k{k}b"))
            ),
            "COMMIT;".to_owned(),
            true,
        ),
        2 => (
            format!(
                "UPDATE {table} SET b = b + 1, {text_col} = 'u{k}' WHERE id % 5 = {};",
                k % 5
            ),
            "COMMIT;".to_owned(),
            true,
        ),
        3 => (
            format!("DELETE FROM {table} WHERE id = {};", id(3)),
            "COMMIT;".to_owned(),
            true,
        ),
        4 => (
            upsert(id(4), &format!("never{k}")),
            "ROLLBACK;".to_owned(),
            false,
        ),
        5 => {
            // Large: streamed, with the Relation message inside a stream block.
            let others: Vec<String> = names[1..]
                .iter()
                .map(|n| match *n {
                    "b" => format!("{} + g", b(0)),
                    _ => format!("'big{k}-' || repeat('x', 200)"),
                })
                .collect();
            (
                format!(
                    "INSERT INTO {table} ({}) SELECT g, {} FROM generate_series(1000, 2000) g \
                     ON CONFLICT (id) DO UPDATE SET {};",
                    names.join(", "),
                    others.join(", "),
                    set.join(", ")
                ),
                "COMMIT;".to_owned(),
                true,
            )
        }
        6 => (
            upsert(id(5), &format!("2pc{k}")),
            format!("PREPARE TRANSACTION 'd{k}'; COMMIT PREPARED 'd{k}';"),
            true,
        ),
        _ => (
            format!(
                "{} SAVEPOINT s; DELETE FROM {table} WHERE id = {}; ROLLBACK TO SAVEPOINT s;",
                upsert(id(6), &format!("k{k}")),
                id(6)
            ),
            "COMMIT;".to_owned(),
            true,
        ),
    };
    Step::Txn {
        k,
        sql: format!("BEGIN; INSERT INTO txlog VALUES ({k}); {body} {end}"),
        commits,
    }
}

#[test]
fn oracle_ddl_between_transactions() {
    for_each_server(|install| {
        let c = cluster(install, "10s");
        c.execute(
            "CREATE TABLE ddl (id int PRIMARY KEY, a text NOT NULL, b int NOT NULL); \
             INSERT INTO ddl SELECT g, 'seed', g FROM generate_series(0, 39) g; \
             ALTER PUBLICATION ws_pub ADD TABLE ddl;",
        )
        .expect("schema");
        let stages = i64::try_from(DDL.len()).unwrap_or(0) + 1;
        let mut steps = Vec::new();
        for k in 1..=stages * PER_STAGE {
            let stage = ddl_stage(k);
            if stage > 0 && ddl_stage(k - 1) < stage {
                steps.push(Step::Admin(DDL[stage - 1].to_owned()));
            }
            steps.push(ddl_txn(k));
        }
        let seed: Table = (0..40)
            .map(|g| {
                (
                    g,
                    Cols::from([
                        ("a".to_owned(), "seed".to_owned()),
                        ("b".to_owned(), g.to_string()),
                    ]),
                )
            })
            .collect();
        let mut o = run_steps(
            &c,
            "ddl",
            &steps,
            Some(&DDL_SCHEMA),
            Tables::from([("ddl".to_owned(), seed)]),
            Duration::from_millis(400),
            Duration::from_secs(120),
        );
        if let Some(e) = &o.error {
            panic!("ddl: the stream failed: {e:?}\n{}", log_tail(&c));
        }
        let line = check_exactly_once("ddl", &c, &o, &o.committed.clone());
        // Every stage's rows were checked against their shape.
        let last = usize::try_from(stages - 1).unwrap_or(0);
        o.model.migrate_to(last);
        assert!(
            o.model.shape_checks >= u64::try_from(stages).unwrap_or(0) * 4,
            "{line}: too few rows checked against their stage's shape"
        );
        assert!(
            !o.model.tables.contains_key("ddl") || o.model.tables["ddl"].is_empty(),
            "{line}: rows left under the old table name"
        );
        let model = o.model.tables.get("ddl2").cloned().unwrap_or_default();
        let server = table_of(
            &c.query_rows("SELECT id, b, d FROM ddl2").expect("ddl2"),
            &["b", "d"],
        );
        assert_eq!(
            model,
            server,
            "{line}: the model differs from the server: {}",
            diff(&model, &server)
        );
    });
}
