//! Server restarts (`pg_ctl stop -m fast` and `-m immediate`, then start) while a writer
//! commits one row per transaction: with retry enabled and a consumer that applies whole
//! transactions and acknowledges as it goes, every committed transaction is delivered once
//! (by commit end LSN and by row), none lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use walstream::{EventKind, Lsn, RetryPolicy};
use walstream_test_support::{Cluster, for_each_server};

use crate::util::{block_on, builder, cluster, int, next};

const ROWS: i64 = 40;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Fast,
    Immediate,
}

/// Inserts ids 1..=ROWS one transaction each, retrying through the outage (`ON CONFLICT`
/// makes a retry of an insert whose commit did happen a no-op).
fn writer(c: &Cluster) {
    for id in 1..=ROWS {
        let mut attempts = 0;
        while let Err(e) = c.execute(&format!(
            "INSERT INTO t VALUES ({id}) ON CONFLICT DO NOTHING"
        )) {
            attempts += 1;
            assert!(attempts < 300, "writer gave up at {id}: {e}");
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn restart_delivers_every_commit_once(stop: Stop) {
    for_each_server(|install| {
        let c = cluster(install, &[]);
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY); \
             CREATE PUBLICATION p FOR TABLE t; \
             SELECT pg_create_logical_replication_slot('s', 'pgoutput');",
        )
        .unwrap();
        let delivered = AtomicUsize::new(0);
        let (by_id, by_end, resumes) = std::thread::scope(|scope| {
            scope.spawn(|| writer(&c));
            scope.spawn(|| {
                let give_up = std::time::Instant::now() + Duration::from_secs(60);
                while delivered.load(Ordering::Acquire) < 10 && std::time::Instant::now() < give_up
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                match stop {
                    Stop::Fast => c.stop_fast().unwrap(),
                    Stop::Immediate => c.stop_immediate().unwrap(),
                }
                std::thread::sleep(Duration::from_secs(1));
                c.start_server().unwrap();
            });
            block_on(async {
                let mut retry = RetryPolicy::default();
                retry.max_retries = Some(100);
                retry.initial_backoff = Duration::from_millis(100);
                retry.max_backoff = Duration::from_secs(1);
                let mut stream = builder(&c, "s", "p")
                    .status_interval(Duration::from_secs(1))
                    .retry(retry)
                    .start()
                    .await
                    .unwrap();
                let mut by_id: BTreeMap<i64, usize> = BTreeMap::new();
                let mut by_end: BTreeMap<Lsn, usize> = BTreeMap::new();
                let mut pending = Vec::new();
                let mut resumes = 0;
                while by_id.len() < usize::try_from(ROWS).unwrap() {
                    let ev = next(&mut stream).await;
                    match ev.kind() {
                        EventKind::Begin(_) => pending.clear(),
                        EventKind::Resumed(_) => {
                            resumes += 1;
                            pending.clear();
                        }
                        EventKind::Insert(ch) => pending.push(int(ch.new.as_ref().unwrap(), "id")),
                        EventKind::Commit(cm) => {
                            // Empty transactions (PostgreSQL 14) carry no row.
                            if !pending.is_empty() {
                                *by_end.entry(cm.end_lsn).or_default() += 1;
                            }
                            for id in pending.drain(..) {
                                *by_id.entry(id).or_default() += 1;
                            }
                            assert!(ev.ack());
                            delivered.fetch_add(1, Ordering::AcqRel);
                        }
                        _ => {}
                    }
                }
                stream.shutdown().await.unwrap();
                (by_id, by_end, resumes)
            })
        });
        assert!(resumes >= 1, "the stream never reconnected ({stop:?})");
        assert_eq!(
            by_id.keys().copied().collect::<Vec<_>>(),
            (1..=ROWS).collect::<Vec<_>>(),
            "{stop:?}"
        );
        let twice: Vec<_> = by_id.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "rows delivered twice ({stop:?}): {twice:?}"
        );
        let twice: Vec<_> = by_end.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "commits delivered twice ({stop:?}): {twice:?}"
        );
        assert_eq!(by_end.len(), usize::try_from(ROWS).unwrap());
    });
}

#[test]
fn restart_fast_delivers_every_commit_once() {
    restart_delivers_every_commit_once(Stop::Fast);
}

#[test]
fn restart_immediate_delivers_every_commit_once() {
    restart_delivers_every_commit_once(Stop::Immediate);
}
