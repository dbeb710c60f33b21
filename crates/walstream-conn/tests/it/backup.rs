//! `BASE_BACKUP` and `COPY ... TO STDOUT` through `CopyOutStream` against a real server.

use std::time::Duration;

use bytes::Bytes;
use walstream_conn::{CopyOutItem, CopyOutStream, ErrorKind, ResultSet};
use walstream_proto::{BaseBackupMessage, Lsn, SqlState};
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{connect, log_tail, run};

fn physical(cluster: &Cluster) -> String {
    format!(
        "{} replication=true sslmode=disable",
        cluster.conninfo(Role::Scram)
    )
}

/// A small, fast backup in the server's syntax.
fn command(major: u32, label: &str) -> String {
    if major >= 15 {
        format!("BASE_BACKUP (LABEL '{label}', CHECKPOINT 'fast', WAIT false, MANIFEST 'yes')")
    } else {
        format!("BASE_BACKUP LABEL '{label}' FAST NOWAIT MANIFEST 'yes'")
    }
}

/// What a whole backup looked like.
#[derive(Debug, Default)]
struct Seen {
    sets: Vec<ResultSet>,
    /// Per archive: name and byte count.
    archives: Vec<(String, u64)>,
    manifest: Vec<u8>,
    /// The last 1024 bytes of the first archive (a tar ends with two zero blocks).
    base_tail: Vec<u8>,
    copies: usize,
    max_chunk: usize,
}

impl Seen {
    fn archive_data(&mut self, data: &Bytes) {
        self.max_chunk = self.max_chunk.max(data.len());
        let Some(last) = self.archives.last_mut() else {
            panic!("archive data before any archive");
        };
        last.1 += data.len() as u64;
        if self.archives.len() == 1 {
            self.base_tail.extend_from_slice(data);
            let cut = self.base_tail.len().saturating_sub(1024);
            self.base_tail.drain(..cut);
        }
    }
}

/// Reads a whole backup, interpreting the COPY phases as the server version defines them.
async fn read_backup(stream: &mut CopyOutStream<'_>, major: u32) -> Seen {
    let mut seen = Seen::default();
    let mut in_manifest = false;
    while let Some(item) = stream.next().await.unwrap() {
        match item {
            CopyOutItem::ResultSet(set) => seen.sets.push(set),
            CopyOutItem::CopyStart(_) => {
                seen.copies += 1;
                if major < 15 {
                    // One COPY per tablespace (only pg_default here), then the manifest.
                    if seen.copies == 1 {
                        seen.archives.push(("base.tar".into(), 0));
                    } else {
                        in_manifest = true;
                    }
                }
            }
            CopyOutItem::CopyData(data) if major < 15 => {
                if in_manifest {
                    seen.manifest.extend_from_slice(&data);
                } else {
                    seen.archive_data(&data);
                }
            }
            CopyOutItem::CopyData(data) => match BaseBackupMessage::decode(data).unwrap() {
                BaseBackupMessage::NewArchive { name, .. } => seen.archives.push((name, 0)),
                BaseBackupMessage::Manifest => in_manifest = true,
                BaseBackupMessage::Data(d) if in_manifest => seen.manifest.extend_from_slice(&d),
                BaseBackupMessage::Data(d) => seen.archive_data(&d),
                _ => {}
            },
            CopyOutItem::CopyEnd => in_manifest = false,
            other => panic!("unexpected item {other:?}"),
        }
    }
    seen
}

fn position(set: &ResultSet) -> (Lsn, u32) {
    assert_eq!(set.rows().len(), 1, "{set:?}");
    let row = &set.rows()[0];
    let lsn: Lsn = row.get(0).unwrap().parse().unwrap();
    let tli: u32 = row.get(1).unwrap().parse().unwrap();
    (lsn, tli)
}

#[test]
fn base_backup_streams_result_sets_and_archives() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster
            .execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
            .unwrap();
        let before = Lsn(cluster.current_wal_lsn().unwrap());
        let mut c =
            connect(&physical(&cluster)).unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));
        let major = c.server_major_version().unwrap();
        let seen = run(async {
            let mut stream = c.base_backup(&command(major, "ws one")).await.unwrap();
            read_backup(&mut stream, major).await
        });
        // Start position, tablespaces, end position (each tagged `SELECT`), then the
        // command's own completion.
        assert_eq!(seen.sets.len(), 4, "{:?}", seen.sets);
        assert!(seen.sets[..3].iter().all(|s| s.tag() == Some("SELECT")));
        assert!(seen.sets[3].columns().is_empty() && seen.sets[3].rows().is_empty());
        assert_eq!(seen.sets[3].tag(), Some("BASE_BACKUP"));
        let (start, start_tli) = position(&seen.sets[0]);
        let (end, end_tli) = position(&seen.sets[2]);
        assert_eq!((start_tli, end_tli), (1, 1));
        assert!(before <= start && start <= end, "{before} {start} {end}");
        assert!(end.0 <= cluster.current_wal_lsn().unwrap());
        let ts = &seen.sets[1];
        let names: Vec<&str> = ts.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["spcoid", "spclocation", "size"]);
        assert_eq!(ts.rows().len(), 1, "only pg_default");
        assert_eq!(ts.rows()[0].get(0), None, "the main directory has no OID");
        // The archive: a tar of the data directory, in chunks, ending in two zero blocks.
        let expected_copies = if major >= 15 { 1 } else { 2 };
        assert_eq!(seen.copies, expected_copies);
        assert_eq!(seen.archives.len(), 1, "{:?}", seen.archives);
        let (name, bytes) = &seen.archives[0];
        assert_eq!(name, "base.tar");
        assert!(*bytes > 1_000_000, "archive of {bytes} bytes");
        assert_eq!(bytes % 512, 0);
        assert!(seen.max_chunk <= 1024 * 1024, "chunked, not buffered");
        assert_eq!(seen.base_tail, vec![0u8; 1024]);
        let manifest = String::from_utf8(seen.manifest).unwrap();
        assert!(manifest.starts_with("{ \"PostgreSQL-Backup-Manifest-Version\""));
        assert!(manifest.contains("\"Path\": \"PG_VERSION\""));
        // The connection is idle and usable after the command.
        assert!(c.is_usable());
        let sys = run(c.identify_system()).unwrap();
        assert!(sys.xlog_pos >= end);
    });
}

#[test]
fn base_backup_errors_and_abandoned_streams() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let mut c = connect(&physical(&cluster)).unwrap();
        let major = c.server_major_version().unwrap();
        // Not a BASE_BACKUP command: refused before sending.
        let e = run(c.base_backup("IDENTIFY_SYSTEM"))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState);
        // A server-side error arrives through `next`; the connection stays usable.
        let e = run(async {
            let mut s = c
                .base_backup("BASE_BACKUP (NO_SUCH_OPTION 1)")
                .await
                .unwrap();
            s.drain().await.map(|_| ()).unwrap_err()
        });
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        assert_eq!(
            e.code().map(|c| c.code().to_owned()).as_deref(),
            Some("42601")
        );
        assert!(c.is_usable());
        run(c.identify_system()).unwrap();

        // Abandoning a backup midway breaks the connection instead of corrupting it.
        run(async {
            let mut s = c.base_backup(&command(major, "abandoned")).await.unwrap();
            let mut copy_data = 0;
            while copy_data < 3 {
                if let CopyOutItem::CopyData(_) = s.next().await.unwrap().unwrap() {
                    copy_data += 1;
                }
            }
        });
        assert!(!c.is_usable());
        let e = run(c.identify_system()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        run(c.close());
        // A new connection backs up as usual.
        let mut c = connect(&physical(&cluster)).unwrap();
        let seen = run(async {
            let mut stream = c.base_backup(&command(major, "after")).await.unwrap();
            read_backup(&mut stream, major).await
        });
        assert_eq!(seen.sets.len(), 4);
    });
}

#[test]
fn cancelled_base_backup_leaves_the_connection_usable() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let cfg = crate::config(&physical(&cluster));
        let major = cluster.major();
        // Throttled to 32 kB/s, the backup would take minutes.
        let command = if major >= 15 {
            "BASE_BACKUP (LABEL 'slow', CHECKPOINT 'fast', WAIT false, MAX_RATE 32)"
        } else {
            "BASE_BACKUP LABEL 'slow' FAST NOWAIT MAX_RATE 32"
        };
        run(async {
            let mut c = walstream_conn::Client::connect(&cfg).await.unwrap();
            let token = c.cancel_token(&cfg).unwrap();
            let mut s = c.base_backup(command).await.unwrap();
            let mut chunks = 0;
            let e = loop {
                match s.next().await {
                    Ok(Some(CopyOutItem::CopyData(_))) => {
                        chunks += 1;
                        if chunks == 1 {
                            token.cancel().await.unwrap();
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the backup finished despite the cancel"),
                    Err(e) => break e,
                }
            };
            assert_eq!(e.code(), Some(SqlState::QUERY_CANCELED), "{e}");
            assert!(s.next().await.unwrap().is_none());
            assert!(c.is_usable());
            c.identify_system().await.unwrap();
        });
    });
}

#[test]
fn copy_to_stdout_on_a_normal_connection() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        let mut c = connect(&format!(
            "{} sslmode=disable",
            cluster.conninfo(Role::Trust)
        ))
        .unwrap();
        let items = run(async {
            let mut s = c
                .copy_out(
                    "SELECT 7 AS seven; COPY (SELECT g FROM generate_series(1, 3) g) TO STDOUT",
                )
                .await
                .unwrap();
            s.set_idle_timeout(Some(Duration::from_secs(10)));
            let mut items = Vec::new();
            while let Some(item) = s.next().await.unwrap() {
                items.push(item);
            }
            items
        });
        let mut it = items.into_iter();
        let Some(CopyOutItem::ResultSet(first)) = it.next() else {
            panic!("no first result set");
        };
        assert_eq!(first.rows()[0].get(0), Some("7"));
        assert_eq!(first.tag(), Some("SELECT 1"));
        assert!(matches!(it.next(), Some(CopyOutItem::CopyStart(_))));
        let mut text = Vec::new();
        for item in it.by_ref() {
            match item {
                CopyOutItem::CopyData(d) => text.extend_from_slice(&d),
                CopyOutItem::CopyEnd => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(text, b"1\n2\n3\n");
        let Some(CopyOutItem::ResultSet(done)) = it.next() else {
            panic!("no COPY result");
        };
        assert_eq!(done.tag(), Some("COPY 3"));
        assert!(it.next().is_none());
        assert_eq!(
            run(c.simple_query("SELECT 1")).unwrap()[0].get(0),
            Some("1")
        );
    });
}
