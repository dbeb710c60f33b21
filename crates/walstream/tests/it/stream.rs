//! The live logical stream: event kinds, acknowledgement moving `confirmed_flush_lsn`, idle
//! advancement, and exactly-once delivery across a walsender termination.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use walstream::{Config, Event, EventKind, LogicalStream, Lsn, RetryPolicy, list_slots};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server, wait_for};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

fn cluster(install: &walstream_test_support::PgInstall) -> Cluster {
    // Short sender timeout: idle keepalives every second.
    let c = Cluster::start(
        install,
        ClusterOptions::new().setting("wal_sender_timeout", "2s"),
    )
    .unwrap();
    c.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         CREATE TABLE other (x int); \
         CREATE PUBLICATION ws_pub FOR TABLE items; \
         SELECT pg_create_logical_replication_slot('ws_slot', 'pgoutput');",
    )
    .unwrap();
    c
}

fn config(c: &Cluster) -> Config {
    format!("{} sslmode=disable", c.conninfo(Role::Scram))
        .parse()
        .unwrap()
}

fn confirmed(c: &Cluster) -> u64 {
    c.replication_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.slot_name == "ws_slot")
        .and_then(|s| s.confirmed_flush_lsn)
        .unwrap_or(0)
}

async fn next(stream: &mut LogicalStream) -> Event {
    tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("no event within 30 s")
        .expect("stream error")
        .expect("stream ended")
}

/// Reads events until `commits` commits arrived.
async fn until_commits(stream: &mut LogicalStream, commits: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut seen = 0;
    while seen < commits {
        let ev = next(stream).await;
        if matches!(ev.kind(), EventKind::Commit(_)) {
            seen += 1;
        }
        out.push(ev);
    }
    out
}

fn commit_end(ev: &Event) -> Option<Lsn> {
    match ev.kind() {
        EventKind::Commit(c) => Some(c.end_lsn),
        _ => None,
    }
}

#[test]
fn event_kinds_ack_and_idle_advancement() {
    for_each_server(|install| {
        let c = cluster(install);
        c.execute(
            "INSERT INTO items VALUES (1, 'a'); \
             UPDATE items SET name = 'b' WHERE id = 1; \
             DELETE FROM items WHERE id = 1; \
             TRUNCATE items; \
             SELECT pg_logical_emit_message(true, 'pfx', 'hello');",
        )
        .unwrap();
        block_on(async {
            let mut stream = LogicalStream::builder(config(&c), "ws_slot")
                .publication("ws_pub")
                .messages(true)
                .status_interval(Duration::from_millis(200))
                .start()
                .await
                .unwrap();
            let expected_version = match c.major() {
                14 => 2,
                15 => 3,
                _ => 4,
            };
            assert_eq!(stream.proto_version(), Some(expected_version));
            let events = until_commits(&mut stream, 5).await;
            let kinds: Vec<&str> = events
                .iter()
                .map(Event::kind_name)
                .filter(|k| !matches!(*k, "begin" | "commit" | "relation"))
                .collect();
            assert_eq!(kinds, ["insert", "update", "delete", "truncate", "message"]);
            let insert = events
                .iter()
                .find_map(|e| match e.kind() {
                    EventKind::Insert(ch) => ch.new.clone(),
                    _ => None,
                })
                .unwrap();
            #[derive(serde::Deserialize, Debug, PartialEq)]
            struct Item {
                id: i32,
                name: String,
            }
            assert_eq!(
                insert.deserialize::<Item>().unwrap(),
                Item {
                    id: 1,
                    name: "a".into()
                }
            );

            // Acknowledge the first transaction only: confirmed_flush_lsn becomes its
            // commit's end LSN exactly (later transactions are delivered, not acknowledged).
            let ends: Vec<Lsn> = events.iter().filter_map(commit_end).collect();
            let first = events.iter().find(|e| commit_end(e).is_some()).unwrap();
            assert!(first.ack());
            stream.send_feedback().await.unwrap();
            let want = ends[0].0;
            wait_for(
                "confirmed_flush_lsn = first commit end",
                Duration::from_secs(20),
                || (confirmed(&c) == want).then_some(()),
            )
            .unwrap_or_else(|e| panic!("{e}: confirmed {:x}, want {want:x}", confirmed(&c)));

            // Acknowledge everything, then only write to an unpublished table: keepalives
            // move the slot past the last commit.
            let last = events
                .iter()
                .rev()
                .find(|e| commit_end(e).is_some())
                .unwrap();
            assert!(last.ack());
            let last_end = ends.last().unwrap().0;
            c.execute("INSERT INTO other SELECT generate_series(1, 1000)")
                .unwrap();
            let target = c.current_wal_lsn().unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                // Drive the stream (keepalives); there must be no events.
                if let Ok(r) =
                    tokio::time::timeout(Duration::from_millis(500), stream.next_event()).await
                {
                    let ev = r.unwrap().unwrap();
                    // PostgreSQL 14 sends empty transactions for unpublished tables.
                    assert!(
                        matches!(ev.kind(), EventKind::Begin(_) | EventKind::Commit(_)),
                        "unexpected {ev:?}"
                    );
                    ev.ack();
                }
                stream.send_feedback().await.unwrap();
                let now = confirmed(&c);
                if now >= target {
                    assert!(now > last_end);
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "idle slot stuck at {now:x}, target {target:x}"
                );
            }
            let slots = list_slots(&config(&c)).await.unwrap();
            let slot = slots.iter().find(|s| s.name == "ws_slot").unwrap();
            assert!(slot.active);
            assert!(slot.lag_bytes.is_some());
            stream.shutdown().await.unwrap();
            assert!(stream.next_event().await.unwrap().is_none());
        });
        wait_for("slot released", Duration::from_secs(10), || {
            c.replication_slots()
                .ok()?
                .into_iter()
                .find(|s| s.slot_name == "ws_slot" && !s.active)
        })
        .unwrap();
    });
}

#[test]
fn reconnect_delivers_each_committed_transaction_once() {
    for_each_server(|install| {
        let c = cluster(install);
        for i in 1..=5 {
            c.execute(&format!("INSERT INTO items VALUES ({i}, 'x')"))
                .unwrap();
        }
        block_on(async {
            let mut stream = LogicalStream::builder(config(&c), "ws_slot")
                .publication("ws_pub")
                .status_interval(Duration::from_secs(60))
                .retry(RetryPolicy::default())
                .start()
                .await
                .unwrap();
            // A consumer that applies whole transactions: changes of a transaction cut off by
            // the connection loss are sent again from its start after the resume.
            let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
            let mut pending = Vec::new();
            let mut commits = 0;
            let mut terminated = false;
            while seen.len() < 10 {
                let ev = next(&mut stream).await;
                if let EventKind::Begin(_) = ev.kind() {
                    pending.clear();
                }
                if let EventKind::Insert(ch) = ev.kind() {
                    let id: (i32, String) = ch.new.as_ref().unwrap().deserialize().unwrap();
                    pending.push(id.0);
                }
                if commit_end(&ev).is_some() {
                    for id in pending.drain(..) {
                        *seen.entry(id).or_default() += 1;
                    }
                    // Acknowledged locally; the status interval is long, so the server has
                    // not heard of it when its walsender is terminated.
                    ev.ack();
                    commits += 1;
                    if commits == 3 && !terminated {
                        terminated = true;
                        assert!(c.terminate_walsenders().unwrap() >= 1);
                        for i in 6..=10 {
                            c.execute(&format!("INSERT INTO items VALUES ({i}, 'x')"))
                                .unwrap();
                        }
                    }
                }
            }
            assert!(terminated);
            assert_eq!(
                seen.keys().copied().collect::<Vec<_>>(),
                (1..=10).collect::<Vec<_>>()
            );
            assert!(seen.values().all(|n| *n == 1), "delivered twice: {seen:?}");
            stream.shutdown().await.unwrap();
        });
    });
}

#[test]
fn event_stream_is_send_and_stops_on_cancel() {
    for_each_server(|install| {
        let c = cluster(install);
        c.execute("INSERT INTO items VALUES (1, 'a')").unwrap();
        block_on(async {
            let stream = LogicalStream::builder(config(&c), "ws_slot")
                .publication("ws_pub")
                .auto_ack(true)
                .start()
                .await
                .unwrap();
            let token = stream.cancellation_token();
            let feedback = stream.feedback().clone();
            // The commit end of the insert's transaction, once the stream has delivered it: a
            // keepalive can advance the acknowledged position before then, so wait for this.
            let commit_end = Arc::new(AtomicU64::new(0));
            let seen_commit = commit_end.clone();
            let task = tokio::spawn(async move {
                let mut events = stream.into_stream();
                let mut inserts = 0;
                while let Some(ev) = events.next().await {
                    match ev.unwrap().kind() {
                        EventKind::Insert(_) => inserts += 1,
                        EventKind::Commit(c) if inserts > 0 => {
                            seen_commit.store(c.end_lsn.0, Ordering::SeqCst)
                        }
                        _ => {}
                    }
                }
                inserts
            });
            wait_for_async(|| {
                let end = commit_end.load(Ordering::SeqCst);
                end > 0 && feedback.acknowledged().0 >= end
            })
            .await;
            token.cancel();
            let inserts = tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("stream did not stop after cancel")
                .unwrap();
            assert_eq!(inserts, 1);
        });
        // Graceful shutdown sent the auto-acknowledged position.
        wait_for(
            "slot released with the ack",
            Duration::from_secs(10),
            || {
                c.replication_slots().ok()?.into_iter().find(|s| {
                    s.slot_name == "ws_slot" && !s.active && s.confirmed_flush_lsn.is_some()
                })
            },
        )
        .unwrap();
    });
}

async fn wait_for_async(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
