//! The physical WAL receiver under faults: walstream-backup's `WalReceiver` streams through
//! the proxy while the proxy resets its connection and the server restarts (`-m fast` and
//! `-m immediate`); the caller retries transient errors as documented. The server's own
//! `pg_receivewal` runs alongside on its own slot, directly. Every completed segment both
//! wrote must be byte-identical, the receiver's completed segments must run without a gap
//! to the end of the workload, and each faulted run must end (and the receiver recover)
//! within asserted bounds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use walstream_backup::{WalReceiver, WalReceiverOptions};
use walstream_conn::Config;
use walstream_test_support::{
    Cluster, ClusterOptions, FaultProxy, Role, for_each_server, wait_for,
};

use crate::common::{block_on, log_tail, proxied_conninfo, report};

/// 1 MB segments: a few seconds of workload complete several of them.
const SEGMENT: u64 = 1024 * 1024;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "walstream-faults-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pg_receivewal -n` restarted 200 ms after each exit (its own retry loop waits 5 s, and
/// gives up when a reconnection lands on a server still shutting down), stopped with SIGINT
/// on drop.
struct PgReceivewal {
    stop: Arc<AtomicBool>,
    pid: Arc<Mutex<Option<u32>>>,
    thread: Option<std::thread::JoinHandle<u32>>,
}

impl PgReceivewal {
    fn start(bin: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = Arc::new(Mutex::new(None));
        let thread = {
            let (stop, pid) = (Arc::clone(&stop), Arc::clone(&pid));
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(Ordering::SeqCst) {
                    let log = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .expect("log file");
                    let mut child: Child = Command::new(&bin)
                        .args(&args)
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("pg_receivewal");
                    *pid.lock().unwrap_or_else(PoisonError::into_inner) = Some(child.id());
                    let _ = child.wait();
                    *pid.lock().unwrap_or_else(PoisonError::into_inner) = None;
                    runs += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                runs
            })
        };
        Self {
            stop,
            pid,
            thread: Some(thread),
        }
    }

    /// Stops it; returns how many times it ran.
    fn stop(&mut self) -> u32 {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return 0;
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !thread.is_finished() && Instant::now() < deadline {
            if let Some(pid) = *self.pid.lock().unwrap_or_else(PoisonError::into_inner) {
                let _ = Command::new("kill")
                    .args(["-INT", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if thread.is_finished() {
            thread.join().unwrap_or(0)
        } else {
            0
        }
    }
}

impl Drop for PgReceivewal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The files in `dir` with their sizes, for failure messages.
fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let len = e.metadata().map_or(0, |m| m.len());
                    format!("{} ({len})", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.join(", ")
}

/// Completed segment files of timeline 1 in `dir`, by segment number.
fn completed_segments(dir: &Path) -> BTreeMap<u64, PathBuf> {
    let per_log = 0x1_0000_0000 / SEGMENT;
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let (Ok(tli), Ok(log), Ok(seg)) = (
            u32::from_str_radix(&name[..8], 16),
            u64::from_str_radix(&name[8..16], 16),
            u64::from_str_radix(&name[16..], 16),
        ) else {
            continue;
        };
        if tli == 1 {
            out.insert(log * per_log + seg, entry.path());
        }
    }
    out
}

#[test]
fn wal_receiver_under_reset_and_restarts_matches_pg_receivewal() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new().initdb_arg("--wal-segsize=1"))
            .expect("cluster");
        c.execute(
            "SELECT pg_create_physical_replication_slot('ours', true); \
             SELECT pg_create_physical_replication_slot('theirs', true); \
             CREATE TABLE w (id int, pad text);",
        )
        .expect("slots");
        let scratch = Scratch::new("receiver");
        let ours = scratch.0.join("ours");
        let theirs = scratch.0.join("theirs");
        std::fs::create_dir_all(&theirs).expect("dir");
        let theirs_log = scratch.0.join("pg_receivewal.log");
        let direct = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let mut pg_receivewal = PgReceivewal::start(
            c.install().bin("pg_receivewal"),
            [
                "-D",
                &theirs.to_string_lossy(),
                "-S",
                "theirs",
                "--no-sync",
                "-n",
                "-v",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(["-s".to_owned(), "1".to_owned(), "-d".to_owned(), direct])
            .collect(),
            theirs_log.clone(),
        );
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
        let config: Config = proxied_conninfo(&c, &proxy).parse().expect("conninfo");
        let stopping = Arc::new(AtomicBool::new(false));
        let retries = Arc::new(AtomicU32::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut receiver = WalReceiver::new(
            config,
            WalReceiverOptions::new(&ours)
                .slot("ours")
                .status_interval(Duration::from_millis(200))
                .fsync_interval(Duration::from_millis(200)),
        );
        let handle = receiver.handle();
        let task = {
            let stopping = Arc::clone(&stopping);
            let retries = Arc::clone(&retries);
            runtime.spawn(async move {
                loop {
                    match receiver.run().await {
                        Ok(outcome) => return Ok(outcome),
                        Err(e) if e.is_transient() && !stopping.load(Ordering::SeqCst) => {
                            retries.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
        };

        // Both stream before the workload starts (PostgreSQL 14 has no READ_REPLICATION_SLOT:
        // a receiver that connects late starts at the server's current position), and the
        // receiver streams again after each fault before the next round, so that every
        // fault hits a live stream.
        let streaming = |slot: &str| {
            wait_for(
                &format!("slot {slot} streaming"),
                Duration::from_secs(30),
                || {
                    c.replication_slots()
                        .ok()?
                        .into_iter()
                        .find(|s| s.slot_name == slot && s.active)
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&c)));
        };
        streaming("ours");
        streaming("theirs");
        // The workload, with faults between its rounds.
        let started = Instant::now();
        for round in 0..8 {
            c.execute(&format!(
                "INSERT INTO w SELECT g, repeat('{round}', 300) FROM generate_series(1, 3000) g"
            ))
            .expect("workload");
            match round {
                1 => proxy.reset_all(),
                2 => c.restart().expect("restart -m fast"),
                3 => {
                    c.stop_immediate().expect("stop -m immediate");
                    c.start_server().expect("start after crash");
                }
                4 | 6 => proxy.reset_all(),
                _ => continue,
            }
            // Give the old walsender time to notice the reset before checking the slot.
            std::thread::sleep(Duration::from_millis(300));
            streaming("ours");
        }
        c.execute("SELECT pg_switch_wal()").expect("switch");
        c.execute("INSERT INTO w VALUES (0, 'after the switch')")
            .expect("insert");
        let end = c.current_wal_lsn().expect("lsn");
        // The last complete segment is the one before `end`'s.
        let last_complete = end / SEGMENT - 1;
        // pg_receivewal waits 5 s before reconnecting after a restart: allow for it.
        for (who, dir) in [("ours", &ours), ("pg_receivewal", &theirs)] {
            wait_for(
                &format!("{who}: segment {last_complete} completed"),
                Duration::from_secs(40),
                || {
                    completed_segments(dir)
                        .contains_key(&last_complete)
                        .then_some(())
                },
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\nreceiver task finished: {}, retries {}\nours: {}\npg_receivewal: {}\n{}",
                    task.is_finished(),
                    retries.load(Ordering::SeqCst),
                    listing(&ours),
                    std::fs::read_to_string(&theirs_log).unwrap_or_default(),
                    log_tail(&c)
                )
            });
        }
        let pg_receivewal_runs = pg_receivewal.stop();
        stopping.store(true, Ordering::SeqCst);
        handle.stop();
        let outcome = block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                let mut t = task;
                (&mut t).await
            })
            .await
        });
        drop(runtime);
        let outcome = outcome
            .expect("the receiver did not stop within 10 s")
            .expect("receiver task");
        let outcome = outcome.unwrap_or_else(|e| panic!("the receiver failed: {e:?}"));
        let elapsed = started.elapsed();
        assert!(
            !proxy.fired().is_empty(),
            "the proxy never reset the receiver"
        );
        let retried = retries.load(Ordering::SeqCst);
        assert!(retried >= 3, "only {retried} retries after 4 faults");

        let ours_segs = completed_segments(&ours);
        let theirs_segs = completed_segments(&theirs);
        let first = *ours_segs
            .keys()
            .next()
            .expect("the receiver completed segments");
        // No gap: every segment from the first through the last complete one.
        let missing: Vec<u64> = (first..=last_complete)
            .filter(|n| !ours_segs.contains_key(n))
            .collect();
        assert!(missing.is_empty(), "segments missing in ours: {missing:?}");
        let common: Vec<u64> = theirs_segs
            .keys()
            .filter(|n| ours_segs.contains_key(n) && **n <= last_complete)
            .copied()
            .collect();
        assert!(
            common.len() >= 4,
            "too few segments in common: ours {:?}, pg_receivewal {:?}",
            ours_segs.keys().collect::<Vec<_>>(),
            theirs_segs.keys().collect::<Vec<_>>()
        );
        for n in &common {
            let a = std::fs::read(&ours_segs[n]).expect("read ours");
            let b = std::fs::read(&theirs_segs[n]).expect("read theirs");
            assert!(
                a == b,
                "segment {} differs from pg_receivewal's",
                ours_segs[n].display()
            );
        }
        // pg_receivewal's segments through the end that the receiver lacks would be a gap
        // on our side.
        let only_theirs: Vec<u64> = theirs_segs
            .keys()
            .filter(|n| **n >= first && **n <= last_complete && !ours_segs.contains_key(n))
            .copied()
            .collect();
        assert!(
            only_theirs.is_empty(),
            "only pg_receivewal has {only_theirs:?}"
        );
        report(&format!(
            "receiver reset+restarts pg{} segments={} identical_to_pg_receivewal={} retries={retried} \
             pg_receivewal_runs={pg_receivewal_runs} faults_fired={} stopped={:?} {}ms",
            c.major(),
            last_complete + 1 - first,
            common.len(),
            proxy.fired().len(),
            outcome.reason,
            elapsed.as_millis()
        ));
    });
}
