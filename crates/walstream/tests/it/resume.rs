//! The resume signal: a connection cut inside a streamed transaction (larger than
//! `logical_decoding_work_mem`) yields an `EventKind::Resumed` naming it before the first
//! event of the new connection; the server re-sends the streamed transaction from its first
//! block; the transaction assembler drops the partial state on the signal; every committed
//! transaction is delivered once.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use walstream::{
    Assembled, AssemblyOptions, Config, Event, EventKind, LogicalStream, RetryPolicy, Streaming,
    TransactionAssembler, Xid,
};
use walstream_test_support::{
    Cluster, ClusterOptions, ConnectionPlan, Direction, Fault, FaultProxy, Role, Trigger,
    for_each_server,
};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

async fn next(stream: &mut LogicalStream) -> Event {
    tokio::time::timeout(Duration::from_secs(30), stream.next_event())
        .await
        .expect("no event within 30 s")
        .expect("stream error")
        .expect("stream ended")
}

const BIG_ROWS: usize = 2000;

#[test]
fn cut_inside_a_streamed_transaction_signals_resumed_and_delivers_each_commit_once() {
    for_each_server(|install| {
        let c = Cluster::start(
            install,
            ClusterOptions::new()
                .setting("logical_decoding_work_mem", "64kB")
                .setting("wal_sender_timeout", "5s"),
        )
        .unwrap();
        // Three committed transactions before streaming starts, so the byte stream is the
        // same on every run: small A, big B (streamed in blocks), small C.
        c.execute(&format!(
            "CREATE TABLE r (id int PRIMARY KEY, pad text); \
             CREATE PUBLICATION r_pub FOR TABLE r; \
             SELECT pg_create_logical_replication_slot('r_slot', 'pgoutput'); \
             INSERT INTO r VALUES (0, 'a'); \
             INSERT INTO r SELECT g, repeat('x', 100) FROM generate_series(1, {BIG_ROWS}) g; \
             INSERT INTO r VALUES (-1, 'c');"
        ))
        .unwrap();
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).unwrap();
        // Connection 1 is cut 40 kB into the server's bytes: inside B's streamed blocks
        // (A and the connection setup take a few kB; B's first block alone is > 64 kB).
        proxy.script([
            ConnectionPlan::new().at(Trigger::bytes(Direction::ToClient, 40_000), Fault::Reset)
        ]);
        let conninfo = c.conninfo(Role::Scram).replace(
            &format!("port={}", c.port()),
            &format!("port={}", proxy.port()),
        );
        let config: Config = format!("{conninfo} sslmode=disable").parse().unwrap();
        block_on(async {
            let mut stream = LogicalStream::builder(config, "r_slot")
                .publication("r_pub")
                .streaming(Streaming::On)
                .status_interval(Duration::from_millis(100))
                .retry({
                    let mut r = RetryPolicy::default();
                    r.initial_backoff = Duration::from_millis(50);
                    r
                })
                .start()
                .await
                .unwrap();
            let mut asm =
                TransactionAssembler::new(AssemblyOptions::default(), stream.feedback().clone());
            let mut resumed: Vec<walstream::Resumed> = Vec::new();
            let mut commits: HashMap<Xid, usize> = HashMap::new();
            let mut streamed_xid = None;
            let mut inserts_after_resume = 0usize;
            let mut first_block_after_resume = None;
            let mut assembled: Vec<(Xid, usize)> = Vec::new();
            while assembled.len() < 3 {
                let ev = next(&mut stream).await;
                match ev.kind() {
                    EventKind::Resumed(r) => {
                        assert!(
                            first_block_after_resume.is_none(),
                            "Resumed comes before the new connection's events"
                        );
                        resumed.push(r.clone());
                    }
                    EventKind::StreamStart(s) => {
                        streamed_xid = Some(s.xid);
                        if !resumed.is_empty() && first_block_after_resume.is_none() {
                            first_block_after_resume = Some(s.first_segment);
                        }
                    }
                    EventKind::Insert(_) if !resumed.is_empty() && ev.xid() == streamed_xid => {
                        inserts_after_resume += 1;
                    }
                    EventKind::Commit(_) => *commits.entry(ev.xid().unwrap()).or_default() += 1,
                    EventKind::StreamCommit(cm) => *commits.entry(cm.xid).or_default() += 1,
                    _ => {}
                }
                asm.push(ev).unwrap();
                while let Some(item) = asm.poll() {
                    if let Assembled::Transaction(mut t) = item {
                        let mut rows = 0;
                        while let Some(ch) = t.next_change() {
                            if ch.unwrap().kind_name() == "insert" {
                                rows += 1;
                            }
                        }
                        assembled.push((t.xid(), rows));
                        // Acknowledge the whole transaction once processed.
                        t.ack();
                    }
                }
            }
            assert!(!proxy.fired().is_empty(), "the scripted cut did not happen");
            let b = streamed_xid.expect("B was streamed");
            assert_eq!(resumed.len(), 1, "one Resumed per reconnect: {resumed:?}");
            assert_eq!(
                resumed[0].discarded,
                [b],
                "the open streamed transaction is named"
            );
            assert_eq!(
                first_block_after_resume,
                Some(true),
                "the server re-sends the streamed transaction from its first block"
            );
            assert_eq!(
                inserts_after_resume, BIG_ROWS,
                "every change of B re-sent after the resume, once"
            );
            assert_eq!(commits.len(), 3, "A, B, C: {commits:?}");
            assert!(
                commits.values().all(|&n| n == 1),
                "each commit delivered once: {commits:?}"
            );
            let rows: Vec<usize> = assembled.iter().map(|(_, n)| *n).collect();
            assert_eq!(
                rows,
                [1, BIG_ROWS, 1],
                "assembled A, B (partial blocks dropped on Resumed), C"
            );
            assert_eq!(assembled[1].0, b);
            stream.shutdown().await.unwrap();
        });
    });
}

/// A psql session kept open on stdin, to hold a transaction open across steps.
struct Session {
    child: std::process::Child,
}

impl Session {
    fn open(c: &Cluster) -> Self {
        let child = std::process::Command::new(c.install().bin("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(c.socket_conninfo(Role::Postgres))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    fn send(&mut self, sql: &str) {
        use std::io::Write as _;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success(), "psql session failed");
    }
}

/// The same cut, but inside a transaction that is still running on the server: after the
/// resume its blocks come again from the first one, and its commit arrives once.
#[test]
fn cut_inside_a_still_running_streamed_transaction_resends_it_from_the_start() {
    for_each_server(|install| {
        let c = Cluster::start(
            install,
            ClusterOptions::new()
                .setting("logical_decoding_work_mem", "64kB")
                .setting("wal_sender_timeout", "5s"),
        )
        .unwrap();
        c.execute(
            "CREATE TABLE r (id int PRIMARY KEY, pad text); \
             CREATE PUBLICATION r_pub FOR TABLE r; \
             SELECT pg_create_logical_replication_slot('r_slot', 'pgoutput');",
        )
        .unwrap();
        let proxy = FaultProxy::start(("127.0.0.1", c.port())).unwrap();
        let conninfo = c.conninfo(Role::Scram).replace(
            &format!("port={}", c.port()),
            &format!("port={}", proxy.port()),
        );
        let config: Config = format!("{conninfo} sslmode=disable").parse().unwrap();
        // D: big and still running (no COMMIT yet).
        let mut session = Session::open(&c);
        session.send(&format!(
            "BEGIN; INSERT INTO r SELECT g, repeat('x', 100) FROM generate_series(1, {BIG_ROWS}) g;"
        ));
        block_on(async {
            let mut stream = LogicalStream::builder(config, "r_slot")
                .publication("r_pub")
                .streaming(Streaming::On)
                .status_interval(Duration::from_millis(100))
                .start()
                .await
                .unwrap();
            let mut asm =
                TransactionAssembler::new(AssemblyOptions::default(), stream.feedback().clone());
            let (mut d, mut resumed, mut cut) = (None, None::<walstream::Resumed>, false);
            let (mut first_after, mut inserts_after, mut commits) = (None, 0usize, 0);
            let mut assembled = Vec::new();
            while assembled.is_empty() {
                let ev = next(&mut stream).await;
                match ev.kind() {
                    EventKind::StreamStart(s) => {
                        d = Some(s.xid);
                        if resumed.is_some() && first_after.is_none() {
                            first_after = Some(s.first_segment);
                        }
                    }
                    EventKind::StreamStop if !cut => {
                        // One block of D received: cut the connection now.
                        cut = true;
                        proxy.handle().inject(Fault::Reset);
                    }
                    EventKind::StreamStop
                        if resumed.is_some() && first_after.is_some() && commits == 0 =>
                    {
                        // D's blocks are flowing again: let it commit.
                        commits = -1;
                        session.send("COMMIT;");
                    }
                    EventKind::Resumed(r) => resumed = Some(r.clone()),
                    EventKind::Insert(_) if resumed.is_some() => inserts_after += 1,
                    EventKind::StreamCommit(_) => commits = 1,
                    _ => {}
                }
                asm.push(ev).unwrap();
                while let Some(item) = asm.poll() {
                    if let Assembled::Transaction(mut t) = item {
                        let mut rows = 0;
                        while let Some(ch) = t.next_change() {
                            if ch.unwrap().kind_name() == "insert" {
                                rows += 1;
                            }
                        }
                        assembled.push((t.xid(), rows));
                        t.ack();
                    }
                }
            }
            let d = d.expect("D was streamed");
            let resumed = resumed.expect("a Resumed event");
            assert_eq!(
                resumed.discarded,
                [d],
                "the open streamed transaction is named"
            );
            assert_eq!(first_after, Some(true), "re-sent from its first block");
            assert_eq!(inserts_after, BIG_ROWS, "every change re-sent, once");
            assert_eq!(commits, 1);
            assert_eq!(assembled, [(d, BIG_ROWS)], "assembled once, whole");
            stream.shutdown().await.unwrap();
        });
        session.finish();
    });
}
