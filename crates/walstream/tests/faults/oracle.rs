//! The oracle: a workload writer commits (and aborts) transactions with known contents
//! while a consumer with retry applies each committed transaction to an in-memory model and
//! acknowledges it; faults are injected all along. At the end the model must equal the
//! tables on the server, every committed transaction must have been applied exactly once
//! (by commit LSN and by its marker row), and nothing that did not commit may have been
//! applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use walstream::{Event, EventKind, LogicalStream, Lsn, RetryPolicy, RowChange, Streaming, Xid};
use walstream_test_support::{
    Cluster, Direction, Fault, FaultProxy, PgInstall, Trigger, for_each_server,
};

use crate::common::{block_on, cluster, log_tail, proxied_config, report};

/// One change, as the model applies it.
#[derive(Debug, Clone)]
enum Change {
    Upsert(i64, String),
    Delete(i64),
    /// A `txlog` row: the writer's transaction number.
    Marker(i64),
}

/// The consumer's state: the applied model and the staging areas a real sink would keep
/// durably (prepared transactions survive reconnects).
#[derive(Debug, Default)]
struct Model {
    rows: BTreeMap<i64, String>,
    applied_markers: Vec<i64>,
    applied_commits: Vec<Lsn>,
    duplicate_commits: Vec<Lsn>,
    pending: Vec<Change>,
    streamed: HashMap<Xid, Vec<(Xid, Change)>>,
    in_stream: Option<Xid>,
    prepared: HashMap<String, Vec<Change>>,
    done: bool,
    events: u64,
}

fn int_field(row: &walstream::Row, name: &str) -> i64 {
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
    match (rc.table(), kind) {
        ("txlog", EventKind::Insert(_)) => {
            Change::Marker(int_field(rc.new.as_ref().expect("new row"), "k"))
        }
        ("acct", EventKind::Insert(_) | EventKind::Update(_)) => {
            let row = rc.new.as_ref().expect("new row");
            let val = row.get("val").expect("val");
            Change::Upsert(
                int_field(row, "id"),
                val.value().expect("val not null").to_string(),
            )
        }
        ("acct", EventKind::Delete(_)) => {
            Change::Delete(int_field(rc.old.as_ref().expect("old key").row(), "id"))
        }
        (table, _) => panic!("unexpected change on {table}: {kind:?}"),
    }
}

impl Model {
    fn apply(&mut self, changes: Vec<Change>, commit: Lsn) {
        if self.applied_commits.contains(&commit) {
            self.duplicate_commits.push(commit);
            return;
        }
        self.applied_commits.push(commit);
        for c in changes {
            match c {
                Change::Upsert(id, val) => {
                    self.rows.insert(id, val);
                }
                Change::Delete(id) => {
                    self.rows.remove(&id);
                }
                Change::Marker(k) => self.applied_markers.push(k),
            }
        }
    }

    /// Handles one event, then acknowledges it (the "apply, then ack" discipline).
    fn handle(&mut self, ev: &Event) {
        self.events += 1;
        let kind = ev.kind();
        match kind {
            // A Begin cannot occur inside a streamed block: if one is open here, the connection
            // was lost inside it and the stream resumed, so that block's state is stale.
            EventKind::Begin(_) | EventKind::BeginPrepare(_) => {
                self.in_stream = None;
                self.pending.clear();
            }
            EventKind::Insert(rc) | EventKind::Update(rc) | EventKind::Delete(rc) => {
                let change = change_of(kind, rc);
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

/// Which fault the injector applies, repeatedly, while the workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    ProxyReset,
    ProxyStall,
    ProxyTruncate,
    TerminateWalsender,
    RestartFast,
    RestartImmediate,
    SenderTimeout,
    Mixed,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            Self::ProxyReset => "proxy_reset",
            Self::ProxyStall => "proxy_stall",
            Self::ProxyTruncate => "proxy_truncate",
            Self::TerminateWalsender => "terminate_walsender",
            Self::RestartFast => "restart_fast",
            Self::RestartImmediate => "restart_immediate",
            Self::SenderTimeout => "wal_sender_timeout",
            Self::Mixed => "mixed",
        }
    }
}

/// The writer's SQL for transaction `k`; `true` when it commits.
fn transaction(k: i64) -> (String, bool) {
    let id = |n: i64| (k * 7 + n * 13) % 60;
    let mark = format!("INSERT INTO txlog VALUES ({k});");
    match k % 7 {
        0 => (
            format!(
                "BEGIN; {mark} INSERT INTO acct VALUES ({a}, 'k{k}a'), ({b}, 'k{k}b') \
                 ON CONFLICT (id) DO UPDATE SET val = excluded.val; COMMIT;",
                a = id(1),
                b = id(2)
            ),
            true,
        ),
        1 => (
            format!(
                "BEGIN; {mark} UPDATE acct SET val = 'u{k}' WHERE id % 10 = {}; COMMIT;",
                k % 10
            ),
            true,
        ),
        2 => (
            format!(
                "BEGIN; {mark} DELETE FROM acct WHERE id = {}; COMMIT;",
                id(3)
            ),
            true,
        ),
        3 => (
            format!(
                "BEGIN; {mark} INSERT INTO acct VALUES ({}, 'never{k}') \
                 ON CONFLICT (id) DO UPDATE SET val = excluded.val; ROLLBACK;",
                id(4)
            ),
            false,
        ),
        4 => {
            let commit = (k / 7) % 3 != 2;
            let end = if commit {
                "COMMIT PREPARED"
            } else {
                "ROLLBACK PREPARED"
            };
            (
                format!(
                    "BEGIN; {mark} INSERT INTO acct VALUES ({a}, '2pc{k}') \
                     ON CONFLICT (id) DO UPDATE SET val = excluded.val; \
                     PREPARE TRANSACTION 'g{k}'; {end} 'g{k}';",
                    a = id(5)
                ),
                commit,
            )
        }
        5 => {
            // Large: well over logical_decoding_work_mem (64 kB), so it is streamed; one in
            // three aborts after being streamed.
            let commit = (k / 7) % 3 != 1;
            let end = if commit { "COMMIT" } else { "ROLLBACK" };
            (
                format!(
                    "BEGIN; {mark} INSERT INTO acct SELECT g, 'big{k}-' || repeat('x', 200) \
                     FROM generate_series(1000, 2500) g \
                     ON CONFLICT (id) DO UPDATE SET val = excluded.val; \
                     SAVEPOINT s; INSERT INTO acct VALUES (5000 + {k}, 'sub{k}'); \
                     ROLLBACK TO SAVEPOINT s; {end};"
                ),
                commit,
            )
        }
        _ => (
            format!(
                "BEGIN; {mark} INSERT INTO acct VALUES ({a}, 'k{k}') ON CONFLICT (id) DO UPDATE \
                 SET val = excluded.val; SAVEPOINT s; DELETE FROM acct WHERE id = {a}; \
                 ROLLBACK TO SAVEPOINT s; COMMIT;",
                a = id(6)
            ),
            true,
        ),
    }
}

/// Applies one fault of `kind` (round `n`). Server restarts hold `gate` so that no writer
/// transaction is in flight (its outcome would be unknown to the oracle).
pub(crate) fn inject(
    kind: FaultKind,
    n: u32,
    cluster: &Cluster,
    proxy: &FaultProxy,
    gate: &Mutex<()>,
) {
    let kind = if kind == FaultKind::Mixed {
        [
            FaultKind::ProxyReset,
            FaultKind::ProxyTruncate,
            FaultKind::TerminateWalsender,
            FaultKind::ProxyStall,
            FaultKind::RestartImmediate,
            FaultKind::RestartFast,
        ][usize::try_from(n).unwrap_or(0) % 6]
    } else {
        kind
    };
    match kind {
        FaultKind::ProxyReset => proxy.reset_all(),
        FaultKind::ProxyStall => proxy.inject(Fault::Stall {
            direction: None,
            duration: Duration::from_millis(1500),
        }),
        FaultKind::ProxyTruncate => proxy.inject_at(
            Trigger::bytes(Direction::ToClient, 1 + u64::from(n) * 997 % 5000),
            Fault::Truncate {
                direction: Direction::ToClient,
                bytes: 3 + u64::from(n) % 11,
            },
        ),
        FaultKind::TerminateWalsender => {
            let _ = cluster.terminate_walsenders().expect("terminate");
        }
        FaultKind::RestartFast => {
            let _g = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cluster.restart().expect("restart -m fast");
        }
        FaultKind::RestartImmediate => {
            let _g = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cluster.stop_immediate().expect("stop -m immediate");
            cluster.start_server().expect("start after crash");
        }
        FaultKind::SenderTimeout => {
            // Longer than wal_sender_timeout (1 s): the server gives up on the silent client.
            proxy.inject(Fault::Stall {
                direction: None,
                duration: Duration::from_millis(3500),
            });
        }
        FaultKind::Mixed => unreachable!("resolved above"),
    }
}

/// Runs the oracle on `install` with `transactions` writer transactions and `kind` faults
/// every `every`.
pub(crate) fn run_oracle(install: &PgInstall, kind: FaultKind, transactions: i64, every: Duration) {
    let timeout = if kind == FaultKind::SenderTimeout {
        "1s"
    } else {
        "10s"
    };
    let c = cluster(install, timeout);
    let two_phase = c.major() >= 15;
    c.execute(&format!(
        "SELECT pg_create_logical_replication_slot('oracle', 'pgoutput', false{})",
        if two_phase { ", true" } else { "" }
    ))
    .expect("slot");
    // Rows for the updates and deletes to work on.
    c.execute("INSERT INTO acct SELECT g, 'seed' FROM generate_series(0, 59) g")
        .expect("seed");
    let seeded: BTreeMap<i64, String> = (0..60).map(|g| (g, "seed".to_owned())).collect();
    let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
    let config = proxied_config(&c, &proxy);
    let gate = Mutex::new(());
    let writer_done = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<BTreeSet<i64>>();
    let started = Instant::now();
    let mut faults = 0u32;

    let model = std::thread::scope(|s| {
        // The writer: transactions 1..=N, each under the gate, then the set of committed
        // markers, then the end-of-workload message.
        s.spawn(|| {
            let mut committed = BTreeSet::new();
            for k in 1..=transactions {
                let (sql, commits) = transaction(k);
                let _g = gate
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                c.execute(&sql)
                    .unwrap_or_else(|e| panic!("writer transaction {k}: {e}"));
                drop(_g);
                if commits {
                    committed.insert(k);
                }
                // Spread the workload so that faults land between and inside transactions.
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = tx.send(committed);
            let _g = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.execute("SELECT pg_logical_emit_message(true, 'oracle', 'done')")
                .expect("end message");
            writer_done.store(true, Ordering::SeqCst);
        });
        // The injector.
        let injector = s.spawn(|| {
            let mut n = 0u32;
            while !writer_done.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if writer_done.load(Ordering::SeqCst) {
                    break;
                }
                inject(kind, n, &c, &proxy, &gate);
                n += 1;
            }
            n
        });
        let model = block_on(async {
            let mut retry = RetryPolicy::default();
            retry.max_retries = None;
            retry.initial_backoff = Duration::from_millis(50);
            retry.max_backoff = Duration::from_secs(1);
            let mut stream = LogicalStream::builder(config, "oracle")
                .publication("ws_pub")
                .streaming(Streaming::On)
                .two_phase(two_phase)
                .messages(true)
                .status_interval(Duration::from_millis(200))
                .retry(retry)
                .start()
                .await
                .expect("stream starts");
            let mut model = Model {
                rows: seeded,
                ..Model::default()
            };
            let bound = Duration::from_secs(120)
                + every * 4 * u32::try_from(transactions).unwrap_or(1000) / 10;
            tokio::time::timeout(bound, async {
                while !model.done {
                    match stream.next_event().await {
                        Ok(Some(ev)) => model.handle(&ev),
                        Ok(None) => panic!("the stream ended"),
                        Err(e) => panic!("stream error (retry is unlimited): {e:?}"),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: no end of workload within {bound:?} ({} events, {} commits applied)\n{}",
                    kind.name(),
                    model.events,
                    model.applied_commits.len(),
                    log_tail(&c)
                )
            });
            let _ = stream.shutdown().await;
            model
        });
        faults = injector.join().expect("injector");
        model
    });

    let committed = rx.recv().expect("writer reported");
    // The server's truth.
    let server_markers: BTreeSet<i64> = c
        .query_rows("SELECT k FROM txlog")
        .expect("txlog")
        .into_iter()
        .map(|r| r[0].parse().expect("k"))
        .collect();
    assert_eq!(
        server_markers, committed,
        "the writer's view and the server disagree"
    );
    let server_rows: BTreeMap<i64, String> = c
        .query_rows("SELECT id, val FROM acct")
        .expect("acct")
        .into_iter()
        .map(|r| (r[0].parse().expect("id"), r[1].clone()))
        .collect();

    let mut applied = model.applied_markers.clone();
    applied.sort_unstable();
    let applied_set: BTreeSet<i64> = applied.iter().copied().collect();
    let lost: Vec<i64> = committed.difference(&applied_set).copied().collect();
    let phantom: Vec<i64> = applied_set.difference(&committed).copied().collect();
    let twice = applied.len() - applied_set.len();
    let line = format!(
        "oracle {} pg{} txns={} committed={} faults={} events={} lost={} twice={} dup_commit_lsn={} phantom={} rows_equal={} {}ms",
        kind.name(),
        c.major(),
        transactions,
        committed.len(),
        faults,
        model.events,
        lost.len(),
        twice,
        model.duplicate_commits.len(),
        phantom.len(),
        model.rows == server_rows,
        started.elapsed().as_millis()
    );
    report(&line);
    assert!(lost.is_empty(), "{line}: lost {lost:?}");
    assert_eq!(twice, 0, "{line}: applied twice");
    assert!(
        model.duplicate_commits.is_empty(),
        "{line}: duplicate commit LSNs {:?}",
        model.duplicate_commits
    );
    assert!(
        phantom.is_empty(),
        "{line}: applied but never committed: {phantom:?}"
    );
    if model.rows != server_rows {
        let diff: Vec<_> = server_rows
            .iter()
            .filter(|(k, v)| model.rows.get(k) != Some(v))
            .map(|(k, v)| (k, v, model.rows.get(k)))
            .take(10)
            .collect();
        let extra: Vec<_> = model
            .rows
            .keys()
            .filter(|k| !server_rows.contains_key(k))
            .take(10)
            .collect();
        panic!("{line}: model differs from the server: {diff:?}, extra ids {extra:?}");
    }
    assert!(faults >= 3, "{line}: fewer than 3 faults were injected");
    if matches!(
        kind,
        FaultKind::ProxyReset | FaultKind::ProxyStall | FaultKind::ProxyTruncate
    ) {
        assert!(
            !proxy.fired().is_empty(),
            "{line}: the proxy never fired a fault"
        );
    }
    if kind == FaultKind::SenderTimeout {
        assert!(
            c.log_contents().contains("replication timeout"),
            "{line}: wal_sender_timeout never expired"
        );
    }
}

fn short(kind: FaultKind) {
    for_each_server(|install| run_oracle(install, kind, 56, Duration::from_millis(350)));
}

fn long(kind: FaultKind) {
    for_each_server(|install| run_oracle(install, kind, 420, Duration::from_millis(600)));
}

#[test]
fn oracle_proxy_reset() {
    short(FaultKind::ProxyReset);
}

#[test]
fn oracle_proxy_stall() {
    short(FaultKind::ProxyStall);
}

#[test]
fn oracle_proxy_truncate() {
    short(FaultKind::ProxyTruncate);
}

#[test]
fn oracle_terminate_walsender() {
    short(FaultKind::TerminateWalsender);
}

#[test]
fn oracle_restart_fast() {
    short(FaultKind::RestartFast);
}

#[test]
fn oracle_restart_immediate() {
    short(FaultKind::RestartImmediate);
}

#[test]
fn oracle_wal_sender_timeout() {
    short(FaultKind::SenderTimeout);
}

#[test]
#[ignore = "long: run by name from .ci/run"]
fn oracle_long_mixed() {
    long(FaultKind::Mixed);
}

#[test]
#[ignore = "long: run by name from .ci/run"]
fn oracle_long_proxy_truncate() {
    long(FaultKind::ProxyTruncate);
}

#[test]
#[ignore = "long: run by name from .ci/run"]
fn oracle_long_restart_immediate() {
    long(FaultKind::RestartImmediate);
}
