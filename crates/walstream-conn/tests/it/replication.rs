//! Replication commands and a logical replication stream against a real server.

use std::time::Duration;

use walstream_conn::{CreateSlotOptions, ErrorKind, SnapshotAction};
use walstream_proto::{Lsn, ReplicationMessage, TimelineId, XLogData};
use walstream_test_support::{
    Cluster, ClusterOptions, Role, for_each_server, skip_unless, wait_for,
};

use crate::{connect, log_tail, run};

fn repl(cluster: &Cluster, mode: &str) -> String {
    format!(
        "{} replication={mode} sslmode=disable",
        cluster.conninfo(Role::Scram)
    )
}

#[test]
fn replication_commands() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let mut c = connect(&repl(&cluster, "database"))
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        let sys = run(c.identify_system()).unwrap();
        assert_eq!(sys.timeline, TimelineId(1));
        assert!(sys.xlog_pos.0 > 0);
        assert_eq!(sys.dbname.as_deref(), Some("postgres"));
        assert!(sys.system_id.parse::<u64>().is_ok());
        assert_eq!(run(c.show("wal_level")).unwrap(), "logical");
        // Plain SQL on a replication=database connection.
        assert_eq!(
            run(c.simple_query("SELECT 40 + 2")).unwrap()[0].get(0),
            Some("42")
        );

        let slot = run(c.create_replication_slot(
            "ws_logical",
            &CreateSlotOptions::logical("pgoutput").snapshot(SnapshotAction::Nothing),
        ))
        .unwrap();
        assert_eq!(slot.slot_name, "ws_logical");
        assert!(slot.consistent_point.is_some());
        assert_eq!(slot.snapshot_name, None);
        assert_eq!(slot.output_plugin.as_deref(), Some("pgoutput"));
        let exported = run(c.create_replication_slot(
            "ws_tmp",
            &CreateSlotOptions::logical("pgoutput").temporary(),
        ))
        .unwrap();
        assert!(exported.snapshot_name.is_some());
        let slots = cluster.replication_slots().unwrap();
        assert!(slots.iter().any(|s| s.slot_name == "ws_tmp" && s.temporary));

        let two_phase = CreateSlotOptions::logical("pgoutput").two_phase(true);
        if cluster.major() >= 15 {
            run(c.create_replication_slot("ws_2pc", &two_phase)).unwrap();
            run(c.drop_replication_slot("ws_2pc", false)).unwrap();
        } else {
            let e = run(c.create_replication_slot("ws_2pc", &two_phase)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }

        let mut p = connect(&repl(&cluster, "true")).unwrap();
        assert_eq!(run(p.identify_system()).unwrap().dbname, None);
        let phys =
            run(p.create_replication_slot("ws_phys", &CreateSlotOptions::physical(true))).unwrap();
        assert!(phys.consistent_point.is_some());
        if skip_unless(
            cluster.major() >= 15,
            "READ_REPLICATION_SLOT needs PostgreSQL 15",
        ) {
            let read = run(p.read_replication_slot("ws_phys"))
                .unwrap()
                .expect("slot exists");
            assert_eq!(read.slot_type, "physical");
            assert!(read.restart_lsn.is_some());
            assert_eq!(read.restart_tli, Some(TimelineId(1)));
            assert_eq!(run(p.read_replication_slot("nope")).unwrap(), None);
        } else {
            assert_eq!(
                run(p.read_replication_slot("ws_phys")).unwrap_err().kind(),
                ErrorKind::Unsupported
            );
        }
        if cluster.major() >= 17 {
            run(c.alter_replication_slot("ws_logical", Some(true), None)).unwrap();
            let failover = CreateSlotOptions::logical("pgoutput")
                .snapshot(SnapshotAction::Nothing)
                .failover(true);
            run(c.create_replication_slot("ws_failover", &failover)).unwrap();
        } else {
            let e = run(c.alter_replication_slot("ws_logical", Some(true), None)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(c.is_usable(), "refused before sending");
        }
        // TIMELINE_HISTORY of timeline 1 does not exist: a typed server error.
        let e = run(p.timeline_history(TimelineId(1))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        run(p.drop_replication_slot("ws_phys", true)).unwrap();
        let e = run(p.drop_replication_slot("ws_phys", false)).unwrap_err();
        assert_eq!(
            e.code().map(|c| c.code().to_owned()).as_deref(),
            Some("42704")
        );
    });
}

#[test]
fn logical_stream_receives_changes_and_confirms_flush() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster
            .execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
            .unwrap();
        cluster
            .execute("CREATE PUBLICATION ws_pub FOR TABLE items")
            .unwrap();
        let mut c = connect(&repl(&cluster, "database")).unwrap();
        let slot = run(c.create_replication_slot(
            "ws_stream",
            &CreateSlotOptions::logical("pgoutput").snapshot(SnapshotAction::Nothing),
        ))
        .unwrap();
        let start = slot.consistent_point.unwrap();
        cluster
            .execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 10) g")
            .unwrap();
        let end_of_insert = Lsn(cluster.current_wal_lsn().unwrap());
        run(async {
            let mut stream = c
                .start_logical_replication(
                    "ws_stream",
                    start,
                    &[("proto_version", "1"), ("publication_names", "ws_pub")],
                )
                .await
                .unwrap();
            stream.set_status_interval(Duration::from_millis(200));
            let (mut inserts, mut commit_end) = (0, Lsn(0));
            while inserts < 10 || commit_end.0 == 0 {
                let msg = tokio::time::timeout(Duration::from_secs(20), stream.next_message())
                    .await
                    .unwrap()
                    .unwrap();
                match msg {
                    Some(ReplicationMessage::XLogData(XLogData { data, wal_end, .. })) => {
                        match data.first() {
                            Some(b'I') => inserts += 1,
                            Some(b'C') if inserts == 10 => commit_end = wal_end.max(end_of_insert),
                            _ => {}
                        }
                    }
                    Some(ReplicationMessage::PrimaryKeepalive(_)) => {}
                    Some(_) => {}
                    None => panic!("server ended the stream"),
                }
            }
            assert_eq!(inserts, 10);
            stream.set_flushed(commit_end);
            stream.send_status_update(false).await.unwrap();
            // Keep the stream alive while the server records the flush position.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let confirmed = cluster
                    .replication_slots()
                    .unwrap()
                    .into_iter()
                    .find(|s| s.slot_name == "ws_stream")
                    .and_then(|s| s.confirmed_flush_lsn)
                    .unwrap_or(0);
                if confirmed >= end_of_insert.0 {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "confirmed_flush_lsn stuck at {confirmed:x}"
                );
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), stream.next_message()).await;
            }
            let (mut client, next) = stream.finish().await.unwrap();
            assert_eq!(next, None);
            // The connection is usable again after the stream.
            assert_eq!(client.show("wal_level").await.unwrap(), "logical");
        });
        let slot = wait_for("slot inactive", Duration::from_secs(10), || {
            cluster
                .replication_slots()
                .ok()?
                .into_iter()
                .find(|s| s.slot_name == "ws_stream" && !s.active)
        })
        .unwrap();
        assert!(slot.confirmed_flush_lsn.unwrap() >= end_of_insert.0);
    });
}

#[test]
fn stream_error_is_typed() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let c = connect(&repl(&cluster, "database")).unwrap();
        // Unknown slot: START_REPLICATION fails with the server's error.
        let e = run(c.start_logical_replication("missing", Lsn(0), &[])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        assert!(
            e.db_error()
                .is_some_and(|d| d.message().contains("missing")),
            "{e}"
        );
    });
}

#[test]
fn physical_stream_ends_at_a_timeline_switch_with_the_next_timeline() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster
            .execute("CREATE TABLE before_switch AS SELECT g FROM generate_series(1, 100) g")
            .unwrap();
        let on_tl1 = Lsn(cluster.current_wal_lsn().unwrap());
        // Restart the cluster as a standby of nobody and promote it: timeline 2 begins.
        cluster.stop_fast().unwrap();
        std::fs::write(cluster.data_dir().join("standby.signal"), b"").unwrap();
        cluster.start_server().unwrap();
        assert_eq!(cluster.psql("SELECT pg_promote()").unwrap().trim(), "t");
        cluster
            .execute("CREATE TABLE after_switch AS SELECT g FROM generate_series(1, 100) g")
            .unwrap();

        let mut c = connect(&repl(&cluster, "true"))
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        let sys = run(c.identify_system()).unwrap();
        assert_eq!(sys.timeline, TimelineId(2));
        let history = run(c.timeline_history(TimelineId(2))).unwrap();
        assert_eq!(history.filename, "00000002.history");
        // "1\t0/3000060\tno recovery target specified"
        let text = String::from_utf8(history.content.to_vec()).unwrap();
        let fields: Vec<&str> = text.lines().next().unwrap().split('\t').collect();
        assert_eq!(fields[0], "1", "{text}");
        let switch: Lsn = fields[1].parse().unwrap();
        assert!(switch >= on_tl1, "{switch} {on_tl1}");

        // Streaming timeline 1 from before the switch: WAL up to the switch point, then the
        // server ends the COPY and names timeline 2 and where it starts.
        let (client, next, last_end) = run(async {
            let mut stream = c
                .start_physical_replication(None, on_tl1, Some(TimelineId(1)))
                .await
                .unwrap();
            let mut last_end = on_tl1;
            let mut bytes = 0usize;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(20), stream.next_message())
                    .await
                    .expect("the stream must end at the switch point")
                    .unwrap();
                match msg {
                    Some(ReplicationMessage::XLogData(x)) => {
                        // Contiguous WAL from the requested position on.
                        assert_eq!(x.wal_start, last_end);
                        last_end = Lsn(x.wal_start.0 + x.data.len() as u64);
                        bytes += x.data.len();
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            assert!(bytes > 0);
            let (client, next) = stream.finish().await.unwrap();
            (client, next, last_end)
        });
        let next = next.expect("a next timeline");
        assert_eq!(next.timeline, TimelineId(2));
        assert_eq!(next.start, switch);
        assert!(
            last_end >= switch,
            "streamed to {last_end}, switch at {switch}"
        );
        // The connection is idle again: continue on the next timeline.
        assert!(client.is_usable());
        run(async {
            let mut stream = client
                .start_physical_replication(None, next.start, Some(next.timeline))
                .await
                .unwrap();
            let first = loop {
                match tokio::time::timeout(Duration::from_secs(20), stream.next_message())
                    .await
                    .unwrap()
                    .unwrap()
                {
                    Some(ReplicationMessage::XLogData(x)) => break x,
                    Some(_) => {}
                    None => panic!("timeline 2 ended"),
                }
            };
            assert_eq!(first.wal_start, next.start);
            let (_, none) = stream.finish().await.unwrap();
            assert_eq!(none, None);
        });
    });
}
