//! Streaming over the server's Unix-domain socket, where reads are batched with
//! sub-millisecond naps (walstream-conn's `UNIX_NAP`): a backlog drained at full speed
//! arrives whole and in order, a walsender terminated in the middle of it is resumed from
//! without loss or duplicates, and a trickle slower than one message per nap (never batched)
//! and a burst after it are delivered too.

use std::collections::BTreeMap;
use std::time::Duration;

use walstream::{EventKind, LogicalStream, LogicalStreamBuilder, Lsn, RetryPolicy, Value};
use walstream_test_support::{Cluster, Role, for_each_server};

use crate::util::{block_on, cluster, confirmed, int, next};

const TXNS: i64 = 200;
const ROWS_PER_TXN: i64 = 100;

fn socket_builder(c: &Cluster, slot: &str) -> LogicalStreamBuilder {
    LogicalStream::builder(c.socket_conninfo(Role::Scram).parse().unwrap(), slot)
        .publication("p")
        .status_interval(Duration::from_millis(200))
}

/// Table `t`, publication `p` and slot `s`.
fn setup(c: &Cluster) {
    c.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text); \
         CREATE PUBLICATION p FOR TABLE t; \
         SELECT pg_create_logical_replication_slot('s', 'pgoutput');",
    )
    .unwrap();
}

/// [`setup`], and a backlog of `TXNS` transactions of `ROWS_PER_TXN` rows each (ids 1.. in
/// commit order, a 40-byte text per row).
fn backlog(c: &Cluster) {
    setup(c);
    let mut sql = String::new();
    for txn in 0..TXNS {
        let first = txn * ROWS_PER_TXN + 1;
        let last = first + ROWS_PER_TXN - 1;
        sql.push_str(&format!(
            "INSERT INTO t SELECT g, repeat('x', 40) FROM generate_series({first}, {last}) g;\n"
        ));
    }
    // psql runs each statement in its own transaction.
    c.execute(&sql).unwrap();
}

/// Reads until the backlog's last transaction committed, checking that each commit's rows
/// are one whole transaction in order, acknowledging every commit and calling `after_commit`
/// with the number of rows committed so far. Returns (rows by id, commits by end LSN,
/// resumes).
async fn drain(
    stream: &mut LogicalStream,
    mut after_commit: impl FnMut(usize),
) -> (BTreeMap<i64, usize>, BTreeMap<Lsn, usize>, usize) {
    let last = TXNS * ROWS_PER_TXN;
    let mut by_id: BTreeMap<i64, usize> = BTreeMap::new();
    let mut by_end: BTreeMap<Lsn, usize> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut resumes = 0;
    while by_id.keys().next_back() != Some(&last) {
        let ev = next(stream).await;
        match ev.kind() {
            EventKind::Begin(_) => pending.clear(),
            EventKind::Resumed(_) => {
                resumes += 1;
                pending.clear();
            }
            EventKind::Insert(ch) => {
                let row = ch.new.as_ref().unwrap();
                pending.push(int(row, "id"));
                let v = row.get("v").unwrap();
                assert_eq!(
                    v.value().and_then(Value::as_str),
                    Some("x".repeat(40).as_str())
                );
            }
            EventKind::Commit(cm) => {
                let n = i64::try_from(pending.len()).unwrap();
                assert_eq!(n, ROWS_PER_TXN, "a transaction arrived cut: {pending:?}");
                let first = pending[0];
                assert_eq!((first - 1) % ROWS_PER_TXN, 0, "starts mid-transaction");
                assert_eq!(pending, (first..first + n).collect::<Vec<_>>());
                *by_end.entry(cm.end_lsn).or_default() += 1;
                for id in pending.drain(..) {
                    *by_id.entry(id).or_default() += 1;
                }
                assert!(ev.ack());
                after_commit(by_id.len());
            }
            _ => {}
        }
    }
    (by_id, by_end, resumes)
}

fn assert_once(by_id: &BTreeMap<i64, usize>, by_end: &BTreeMap<Lsn, usize>) {
    assert_eq!(
        by_id.keys().copied().collect::<Vec<_>>(),
        (1..=TXNS * ROWS_PER_TXN).collect::<Vec<_>>(),
        "rows missing"
    );
    let twice: Vec<_> = by_id.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(twice.is_empty(), "rows delivered twice: {twice:?}");
    let twice: Vec<_> = by_end.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(twice.is_empty(), "commits delivered twice: {twice:?}");
    assert_eq!(by_end.len(), usize::try_from(TXNS).unwrap());
}

#[test]
fn a_backlog_drained_over_the_unix_socket_arrives_whole_and_in_order() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        backlog(&c);
        let (by_id, by_end, resumes) = block_on(async {
            let mut stream = socket_builder(&c, "s").start().await.unwrap();
            let got = drain(&mut stream, |_| {}).await;
            stream.shutdown().await.unwrap();
            got
        });
        assert_eq!(resumes, 0);
        assert_once(&by_id, &by_end);
        // Everything acknowledged reached the server (shutdown flushes the last ack).
        assert!(confirmed(&c, "s") >= by_end.keys().next_back().unwrap().0);
    });
}

#[test]
fn a_walsender_killed_mid_backlog_over_the_unix_socket_is_resumed_without_loss() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        backlog(&c);
        let (by_id, by_end, resumes) = block_on(async {
            let mut retry = RetryPolicy::default();
            retry.max_retries = Some(20);
            retry.initial_backoff = Duration::from_millis(50);
            retry.max_backoff = Duration::from_millis(500);
            let mut stream = socket_builder(&c, "s").retry(retry).start().await.unwrap();
            // Kill the walsender once 3000 rows were committed, while the rest of the
            // backlog is in flight (the socket parked, messages queued in the kernel).
            let mut killed = false;
            let got = drain(&mut stream, |rows| {
                if rows >= 3000 && !killed {
                    assert!(c.terminate_walsenders().unwrap() >= 1);
                    killed = true;
                }
            })
            .await;
            stream.shutdown().await.unwrap();
            got
        });
        assert!(resumes >= 1, "the stream never reconnected");
        // Acknowledged transactions are not sent again, the others are sent whole: every
        // row and every commit exactly once.
        assert_once(&by_id, &by_end);
    });
}

#[test]
fn a_trickle_then_a_burst_over_the_unix_socket_are_delivered() {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        setup(&c);
        let (go, started) = std::sync::mpsc::channel::<()>();
        let ids = std::thread::scope(|scope| {
            let c = &c;
            let writer = scope.spawn(move || {
                started.recv().unwrap();
                // A trickle: one transaction every 20 ms, far slower than one message per
                // nap (the socket stays in the reactor).
                for id in 1..=20 {
                    c.execute(&format!("INSERT INTO t VALUES ({id}, 'slow')"))
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Then a burst: 5000 rows in 50 transactions.
                let mut sql = String::new();
                for txn in 0..50 {
                    let first = 21 + txn * 100;
                    sql.push_str(&format!(
                        "INSERT INTO t SELECT g, 'fast' FROM generate_series({first}, {}) g;\n",
                        first + 99
                    ));
                }
                c.execute(&sql).unwrap();
            });
            let ids = block_on(async {
                let mut stream = socket_builder(c, "s").start().await.unwrap();
                go.send(()).unwrap();
                let mut ids = Vec::new();
                let mut last_end = Lsn(0);
                while ids.len() < 5020 {
                    let ev = next(&mut stream).await;
                    match ev.kind() {
                        EventKind::Insert(ch) => ids.push(int(ch.new.as_ref().unwrap(), "id")),
                        EventKind::Commit(cm) => {
                            last_end = cm.end_lsn;
                            assert!(ev.ack());
                        }
                        _ => {}
                    }
                }
                stream.shutdown().await.unwrap();
                (ids, last_end)
            });
            writer.join().unwrap();
            ids
        });
        let (ids, last_end) = ids;
        assert_eq!(ids, (1..=5020).collect::<Vec<_>>());
        // Shutdown flushed the acknowledgement of the last commit.
        assert!(confirmed(&c, "s") >= last_end.0);
    });
}
