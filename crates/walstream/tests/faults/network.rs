//! Network faults against walstream-conn's `ReplicationStream` directly (no retry): every
//! fault must end the stream with a typed error, or be ridden out, within a bounded time.

use std::time::{Duration, Instant};

use walstream_conn::{Client, Config, ErrorKind, ReplicationStream};
use walstream_proto::{Lsn, ReplicationMessage};
use walstream_test_support::{
    Cluster, ConnectionPlan, Direction, Fault, FaultProxy, Trigger, for_each_server,
};

use crate::common::{block_on, cluster, log_tail, proxied_conninfo, report};

/// How a faulted stream ended.
#[derive(Debug)]
enum Outcome {
    /// `next_message` returned an error of this kind.
    Error(ErrorKind),
    /// The server ended the stream (`Ok(None)`).
    Ended,
    /// The stream kept delivering data after the fault.
    Survived,
}

async fn start(config: &Config, slot: &str) -> ReplicationStream {
    let client = Client::connect(config)
        .await
        .expect("connect through proxy");
    let mut stream = client
        .start_logical_replication(
            slot,
            Lsn(0),
            &[("proto_version", "1"), ("publication_names", "\"ws_pub\"")],
        )
        .await
        .expect("START_REPLICATION");
    stream.set_status_interval(Duration::from_millis(200));
    stream
}

/// Reads until an XLogData after `from` arrives; `Err` with the outcome if the stream
/// ended first.
async fn until_data(stream: &mut ReplicationStream, from: Lsn) -> Result<(), Outcome> {
    loop {
        match stream.next_message().await {
            Ok(Some(ReplicationMessage::XLogData(x))) if x.wal_start > from => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err(Outcome::Ended),
            Err(e) => return Err(Outcome::Error(e.kind())),
        }
    }
}

/// One case: a fresh slot, a stream through a fresh proxy, data flowing, then `inject`,
/// then more data. Returns the outcome and how long after the fault it was known.
fn case(
    cluster: &Cluster,
    name: &str,
    plan: ConnectionPlan,
    inject: impl FnOnce(&FaultProxy, &Cluster),
) -> (Outcome, Duration) {
    let slot = format!("net_{name}");
    cluster
        .execute(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
        ))
        .expect("slot");
    let proxy = FaultProxy::start(("127.0.0.1", cluster.port())).expect("proxy");
    proxy.script([plan]);
    let config: Config = format!("{} replication=database", proxied_conninfo(cluster, &proxy))
        .parse()
        .expect("conninfo");
    let (outcome, elapsed) = block_on(async {
        let mut stream = start(&config, &slot).await;
        cluster
            .execute("INSERT INTO acct SELECT g, 'before' FROM generate_series(1, 50) g ON CONFLICT (id) DO UPDATE SET val = excluded.val")
            .expect("insert");
        tokio::time::timeout(Duration::from_secs(20), until_data(&mut stream, Lsn(0)))
            .await
            .expect("data flows before the fault")
            .expect("stream alive before the fault");
        let faulted = Instant::now();
        inject(&proxy, cluster);
        // More data after the fault: a surviving stream must deliver it.
        let after = Lsn(cluster.current_wal_lsn().expect("lsn"));
        cluster
            .execute("INSERT INTO acct SELECT g, repeat('after', 100) FROM generate_series(1, 400) g ON CONFLICT (id) DO UPDATE SET val = excluded.val")
            .expect("insert");
        let outcome = tokio::time::timeout(Duration::from_secs(20), async {
            match until_data(&mut stream, after).await {
                Ok(()) => Outcome::Survived,
                Err(o) => o,
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: the stream hung for 20 s after the fault"));
        (outcome, faulted.elapsed())
    });
    // The walsender must go away (or stay usable) and the slot be released: no leaked
    // server state blocks the next consumer.
    if !matches!(outcome, Outcome::Survived) {
        walstream_test_support::wait_for(
            &format!("{name}: slot {slot} released"),
            Duration::from_secs(20),
            || {
                cluster
                    .replication_slots()
                    .ok()?
                    .into_iter()
                    .find(|s| s.slot_name == slot && !s.active)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(cluster)));
    }
    eprintln!("{name}: fired {:?}", proxy.fired());
    report(&format!(
        "conn {name} pg{} {:?} {}ms",
        cluster.major(),
        outcome,
        elapsed.as_millis()
    ));
    (outcome, elapsed)
}

fn assert_error(name: &str, outcome: &Outcome, kinds: &[ErrorKind]) {
    match outcome {
        Outcome::Error(k) if kinds.contains(k) => {}
        Outcome::Ended => {}
        other => panic!("{name}: expected an error of {kinds:?} or the end, got {other:?}"),
    }
}

#[test]
fn replication_stream_network_faults_end_promptly() {
    for_each_server(|install| {
        let c = cluster(install, "60s");
        let broken = [ErrorKind::Io, ErrorKind::Closed, ErrorKind::Protocol];

        let (o, t) = case(&c, "reset", ConnectionPlan::new(), |p, _| {
            p.reset_all();
        });
        assert_error("reset", &o, &broken);
        assert!(t < Duration::from_secs(5), "reset noticed after {t:?}");

        // Cut the server's next message 7 bytes in.
        let (o, t) = case(&c, "truncate", ConnectionPlan::new(), |p, _| {
            p.inject(Fault::Truncate {
                direction: Direction::ToClient,
                bytes: 7,
            });
        });
        assert_error("truncate", &o, &broken);
        assert!(t < Duration::from_secs(5), "truncation noticed after {t:?}");

        let (o, t) = case(&c, "half_close_to_client", ConnectionPlan::new(), |p, _| {
            p.inject(Fault::HalfClose(Direction::ToClient));
        });
        assert_error("half_close_to_client", &o, &broken);
        assert!(t < Duration::from_secs(5), "EOF noticed after {t:?}");

        // The server sees EOF from the client: its walsender exits and closes.
        let (o, t) = case(&c, "half_close_to_server", ConnectionPlan::new(), |p, _| {
            p.inject(Fault::HalfClose(Direction::ToServer));
        });
        assert_error("half_close_to_server", &o, &broken);
        assert!(
            t < Duration::from_secs(10),
            "server close noticed after {t:?}"
        );

        // A stall shorter than wal_sender_timeout is ridden out.
        let (o, t) = case(&c, "stall_2s", ConnectionPlan::new(), |p, _| {
            p.inject(Fault::Stall {
                direction: None,
                duration: Duration::from_secs(2),
            });
        });
        assert!(matches!(o, Outcome::Survived), "stall: {o:?}");
        assert!(
            t >= Duration::from_millis(1900),
            "the stall did not hold: {t:?}"
        );

        // Slow links deliver, just later.
        let (o, _) = case(&c, "throttle_delay", ConnectionPlan::new(), |p, _| {
            p.inject(Fault::Throttle {
                direction: Some(Direction::ToClient),
                bytes_per_sec: 64 * 1024,
            });
            p.inject(Fault::Delay {
                direction: None,
                delay: Duration::from_millis(50),
            });
        });
        assert!(matches!(o, Outcome::Survived), "throttle: {o:?}");

        // Server side: the walsender is terminated (57P01 in an ErrorResponse).
        let (o, t) = case(&c, "terminate", ConnectionPlan::new(), |_, c| {
            assert!(c.terminate_walsenders().expect("terminate") >= 1);
        });
        assert_error(
            "terminate",
            &o,
            &[ErrorKind::Db, ErrorKind::Io, ErrorKind::Closed],
        );
        assert!(
            t < Duration::from_secs(5),
            "termination noticed after {t:?}"
        );
    });
}

#[test]
fn reset_at_byte_offsets_inside_the_stream_never_hangs() {
    // Reset after N bytes to the client for a spread of offsets: the cut lands inside the
    // startup, the replication handshake, CopyBoth and XLogData messages.
    for_each_server(|install| {
        let c = cluster(install, "60s");
        for (i, offset) in [1u64, 9, 300, 700, 1100, 1500, 4000]
            .into_iter()
            .enumerate()
        {
            let slot = format!("off_{i}");
            c.execute(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')"
            ))
            .expect("slot");
            let proxy = FaultProxy::start(("127.0.0.1", c.port())).expect("proxy");
            proxy
                .script([ConnectionPlan::new()
                    .at(Trigger::bytes(Direction::ToClient, offset), Fault::Reset)]);
            let config: Config = format!("{} replication=database", proxied_conninfo(&c, &proxy))
                .parse()
                .expect("conninfo");
            c.execute("INSERT INTO acct SELECT g, 'x' FROM generate_series(1, 100) g ON CONFLICT (id) DO UPDATE SET val = excluded.val")
                .expect("insert");
            let started = Instant::now();
            let result: Result<(), String> = block_on(async {
                tokio::time::timeout(Duration::from_secs(15), async {
                    let client = Client::connect(&config).await.map_err(|e| e.to_string())?;
                    let mut stream = client
                        .start_logical_replication(
                            &slot,
                            Lsn(0),
                            &[("proto_version", "1"), ("publication_names", "\"ws_pub\"")],
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    loop {
                        match stream.next_message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => return Err("ended".to_owned()),
                            Err(e) => return Err(format!("{:?}", e.kind())),
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| panic!("offset {offset}: hung"))
            });
            let err = result.expect_err("the reset must surface");
            assert!(
                proxy.wait_fired_blocking(1, Duration::from_secs(1)),
                "offset {offset}: the reset never fired"
            );
            assert!(started.elapsed() < Duration::from_secs(10));
            report(&format!(
                "conn reset_at_{offset} pg{} {err} {}ms",
                c.major(),
                started.elapsed().as_millis()
            ));
        }
    });
}
