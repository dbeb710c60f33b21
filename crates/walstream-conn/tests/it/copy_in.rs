//! `COPY ... FROM STDIN` and `UPLOAD_MANIFEST` through [`walstream_conn::CopyIn`] against a
//! real server.

use walstream_conn::{Client, CopyIn, ErrorKind};
use walstream_proto::SqlState;
use walstream_test_support::{Cluster, ClusterOptions, Role, for_each_server};

use crate::{connect, log_tail, run};

fn plain(cluster: &Cluster) -> String {
    format!("{} sslmode=disable", cluster.conninfo(Role::Scram))
}

/// `n` rows of `id<TAB>name` starting at `first`, as COPY text.
fn rows(first: u32, n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for id in first..first + n {
        out.extend_from_slice(format!("{id}\tname {id} {}\n", "x".repeat(40)).as_bytes());
    }
    out
}

fn sqlstate(e: &walstream_conn::Error) -> String {
    e.code().map(|c| c.code().to_owned()).unwrap_or_default()
}

fn count(c: &mut Client) -> String {
    run(c.simple_query("SELECT count(*), coalesce(sum(id), 0) FROM t"))
        .unwrap()
        .first()
        .map(|r| format!("{} {}", r.get(0).unwrap(), r.get(1).unwrap()))
        .unwrap()
}

/// Sends `data` in pieces of `piece` bytes (cut anywhere, also inside rows).
async fn send_pieces(
    copy: &mut CopyIn<'_>,
    data: &[u8],
    piece: usize,
) -> Result<(), walstream_conn::Error> {
    for p in data.chunks(piece) {
        copy.send(p).await?;
    }
    Ok(())
}

#[test]
fn copy_from_stdin_on_a_normal_connection() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster
            .execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
            .unwrap();
        let mut c =
            connect(&plain(&cluster)).unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&cluster)));

        // 20000 rows (about 1.2 MB: several flushes), cut at odd places.
        let data = rows(1, 20_000);
        assert!(data.len() > 4 * CopyIn::FLUSH_THRESHOLD);
        let tag = run(async {
            let mut copy = c.copy_in("COPY t (id, name) FROM STDIN").await.unwrap();
            assert_eq!(copy.response().column_formats.len(), 2);
            send_pieces(&mut copy, &data[..1000], 7).await.unwrap();
            copy.send(&data[1000..]).await.unwrap();
            copy.finish().await
        })
        .unwrap();
        assert_eq!(tag.as_deref(), Some("COPY 20000"));
        assert!(c.is_usable());
        assert_eq!(count(&mut c), format!("20000 {}", 20_000u64 * 20_001 / 2));

        // A bad row in the middle: the server's error surfaces (from `send` once the server
        // has answered, or from `finish`), nothing is committed, the client stays usable.
        let e = run(async {
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            let mut data = rows(100_001, 100);
            data.extend_from_slice(b"not a number\tbad\n");
            data.extend_from_slice(&rows(100_101, 50_000));
            match send_pieces(&mut copy, &data, 100_000).await {
                Ok(()) => copy.finish().await.map(|_| ()).unwrap_err(),
                Err(e) => e,
            }
        });
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        assert_eq!(sqlstate(&e), "22P02", "{e}");
        assert!(c.is_usable());
        assert_eq!(count(&mut c), format!("20000 {}", 20_000u64 * 20_001 / 2));

        // A duplicate key is found only at the end: `finish` returns it.
        let e = run(async {
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            copy.send(&rows(20_000, 1)).await.unwrap();
            copy.finish().await.unwrap_err()
        });
        assert_eq!(sqlstate(&e), "23505", "{e}");
        assert!(c.is_usable());

        // Aborted by the client: the server's answer quotes the message.
        let db = run(async {
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            copy.send(&rows(200_000, 10)).await.unwrap();
            copy.abort("caller gave up").await.unwrap()
        });
        assert_eq!(db.code(), SqlState::QUERY_CANCELED);
        assert!(db.message().contains("caller gave up"), "{}", db.message());
        assert!(c.is_usable());
        assert_eq!(count(&mut c), format!("20000 {}", 20_000u64 * 20_001 / 2));

        // Commands that do not start COPY IN.
        let e = run(c.copy_in("SELECT 1")).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidState, "{e}");
        let e = run(c.copy_in("COPY no_such_table FROM STDIN"))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42P01", "{e}");
        let e = run(c.copy_in("COPY t TO STDOUT")).map(|_| ()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert!(!c.is_usable());
        let mut c = connect(&plain(&cluster)).unwrap();

        // A plain query that starts COPY IN is still refused with CopyFail.
        let e = run(c.simple_query("COPY t FROM STDIN")).unwrap_err();
        assert_eq!(e.code(), Some(SqlState::QUERY_CANCELED), "{e}");
        assert!(c.is_usable());

        // A writer dropped mid-COPY leaves the client broken, not confused.
        run(async {
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            copy.send(&rows(300_000, 10)).await.unwrap();
        });
        assert!(!c.is_usable());
        let e = run(c.simple_query("SELECT 1")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        let mut c = connect(&plain(&cluster)).unwrap();
        assert_eq!(count(&mut c), format!("20000 {}", 20_000u64 * 20_001 / 2));
    });
}

#[test]
fn copy_in_on_replication_connections() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
        cluster
            .execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
            .unwrap();
        // A logical replication connection runs SQL, COPY FROM STDIN included.
        let mut c = connect(&format!("{} replication=database", plain(&cluster))).unwrap();
        let tag = run(async {
            let mut copy = c.copy_in("COPY t FROM STDIN").await.unwrap();
            copy.send(&rows(1, 500)).await.unwrap();
            copy.finish().await
        })
        .unwrap();
        assert_eq!(tag.as_deref(), Some("COPY 500"));
        run(c.identify_system()).unwrap();

        // A physical one: UPLOAD_MANIFEST (17+) reads the manifest as COPY IN; one that is
        // not a manifest is refused by the server once it has all of it.
        let mut c = connect(&format!("{} replication=true", plain(&cluster))).unwrap();
        let r = run(async {
            let mut copy = c.copy_in("UPLOAD_MANIFEST").await?;
            copy.send(b"{ \"not\": \"a manifest\" }\n").await?;
            copy.finish().await
        });
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Db, "{e}");
        if cluster.major() < 17 {
            // No such command before 17: taken for SQL, which a physical walsender refuses.
            assert_eq!(sqlstate(&e), "0A000", "{e}");
        } else {
            assert!(e.db_error().is_some_and(|db| !db.message().is_empty()));
        }
        assert!(c.is_usable());
        run(c.identify_system()).unwrap();
    });
}
