//! `BASE_BACKUP` end to end with [`BaseBackup`]: backups taken while a writer commits,
//! checked by the same major's `pg_verifybackup`, started as servers, with a mapped
//! tablespace, server-side compression, tar format, and interrupted backups.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use walstream_backup::{
    ArchiveSink, BackupResult, BackupTargetKind, BaseBackup, BaseBackupOptions, CheckpointMode,
    DirectoryTarget, Error, Format, INCOMPLETE_MARKER, MANIFEST_FILE, PENDING_LABEL, Progress,
    ReceiveErrorKind, TarExtractor, WalMethod, WalStream,
};
use walstream_conn::{Client, Config};
use walstream_test_support::{
    Cluster, ClusterOptions, ConnectionPlan, Direction, Fault, FaultProxy, PgInstall, Role,
    Trigger, for_each_server, parse_lsn, skip_unless,
};

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A scratch directory the `postgres` user can traverse.
pub(crate) fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("walstream-backup-it-")
        .tempdir_in("/tmp")
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

pub(crate) fn chown_to_server(path: &Path) {
    walstream_test_support::chown_to_server(path).unwrap();
}

/// A command run as the server's OS user.
pub(crate) fn as_server(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn physical(cluster: &Cluster) -> Config {
    config_string(cluster).parse().unwrap()
}

/// Clusters with 1 MB WAL segments: less WAL to fetch and stream, and a non-default
/// segment size exercised.
pub(crate) fn small() -> ClusterOptions {
    ClusterOptions::new().initdb_arg("--wal-segsize=1")
}

pub(crate) fn fast() -> BaseBackupOptions {
    BaseBackupOptions {
        checkpoint: CheckpointMode::Fast,
        label: Some("walstream it".into()),
        ..BaseBackupOptions::default()
    }
}

pub(crate) async fn backup_into(
    cluster: &Cluster,
    backup: &mut BaseBackup,
    target: DirectoryTarget,
) -> Result<(BackupResult, PathBuf), Error> {
    let mut client = Client::connect(&physical(cluster)).await?;
    backup.run_to_directory(&mut client, target).await
}

/// `pg_verifybackup` of the cluster's own major.
pub(crate) fn pg_verifybackup(install: &PgInstall, dir: &Path, extra: &[&str]) {
    run(Command::new(install.bin("pg_verifybackup"))
        .args(extra)
        .arg(dir));
}

/// A server started on a restored backup directory; stopped on drop.
pub(crate) struct Restored {
    install: PgInstall,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
}

impl Restored {
    pub(crate) fn start(
        install: &PgInstall,
        data: &Path,
        scratch: &Path,
        extra_dirs: &[&Path],
    ) -> Self {
        let sock = scratch.join("restored-sock");
        fs::create_dir_all(&sock).unwrap();
        for d in [data, sock.as_path()]
            .into_iter()
            .chain(extra_dirs.iter().copied())
        {
            chown_to_server(d);
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = sock.join("restored.log");
        let me = Self {
            install: install.clone(),
            data: data.to_path_buf(),
            sock,
            log,
            port,
        };
        let out = me
            .pg_ctl()
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=''",
                me.sock.display()
            ))
            .args(["-w", "-t", "120", "start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the restored server did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&me.log).unwrap_or_default()
        );
        me
    }

    /// The directory of the server's Unix socket.
    pub(crate) fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The server's port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    fn pg_ctl(&self) -> Command {
        let mut c = as_server(self.install.bin("pg_ctl"));
        c.arg("-D").arg(&self.data).arg("-l").arg(&self.log);
        c
    }

    pub(crate) fn query(&self, sql: &str) -> String {
        run(Command::new(self.install.bin("psql"))
            .args(["-X", "-A", "-t", "-h"])
            .arg(&self.sock)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(sql))
        .trim()
        .to_owned()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Commits one row at a time until stopped, recording each row's id with the WAL
/// position after its commit.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<(u32, u64)>>>,
}

impl Writer {
    fn start(cluster: &Arc<Cluster>, first_id: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let cluster = cluster.clone();
        let handle = std::thread::spawn(move || {
            let mut done = Vec::new();
            let mut id = first_id;
            while !flag.load(Ordering::SeqCst) {
                let out = cluster
                    .psql(&format!(
                        "INSERT INTO w VALUES ({id}); SELECT pg_current_wal_lsn();"
                    ))
                    .unwrap();
                done.push((id, parse_lsn(out.trim()).unwrap()));
                id += 1;
            }
            done
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Vec<(u32, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

/// Rows committed before the backup's end position must be in the restored server.
fn check_rows(restored: &Restored, committed: &[(u32, u64)], end: u64) {
    let present: Vec<u32> = restored
        .query("SELECT id FROM w ORDER BY id")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let must: Vec<u32> = committed
        .iter()
        .filter(|(_, lsn)| *lsn <= end)
        .map(|(id, _)| *id)
        .collect();
    assert!(must.len() >= 100, "the pre-backup rows are expected");
    for id in &must {
        assert!(
            present.contains(id),
            "row {id} committed before the end is missing"
        );
    }
}

fn prepare(cluster: &Cluster) {
    cluster
        .execute(
            "CREATE TABLE w (id int PRIMARY KEY);
             INSERT INTO w SELECT g FROM generate_series(1, 100) g;
             CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 3000) g;",
        )
        .unwrap();
}

fn initial_rows() -> Vec<(u32, u64)> {
    (1..=100).map(|i| (i, 0)).collect()
}

#[test]
fn fetch_backup_with_mapped_tablespace_while_writing_verifies_and_starts() {
    for_each_server(|install| {
        let work = scratch();
        let ts_dir = work.path().join("ts-orig");
        fs::create_dir(&ts_dir).unwrap();
        chown_to_server(&ts_dir);
        let cluster = Arc::new(Cluster::start(install, small()).unwrap());
        prepare(&cluster);
        cluster
            .execute(&format!(
                "CREATE TABLESPACE ts1 LOCATION '{}';
                 CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g AS id FROM generate_series(1, 500) g;",
                ts_dir.display()
            ))
            .unwrap();
        let writer = Writer::start(&cluster, 1000);
        std::thread::sleep(Duration::from_millis(200));

        let ts_new = work.path().join("ts-new");
        let dest = work.path().join("backup");
        let reports: Arc<Mutex<Vec<Progress>>> = Arc::default();
        let sink = reports.clone();
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync()
            .map_tablespace(ts_dir.to_str().unwrap(), &ts_new);
        let mut backup = BaseBackup::new(BaseBackupOptions {
            progress: true,
            ..fast()
        })
        .wal_method(WalMethod::Fetch)
        .on_progress(move |p| sink.lock().unwrap().push(*p));
        let (result, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        let mut committed = writer.finish();
        committed.extend(initial_rows());

        assert_eq!(result.server_major, cluster.major());
        assert!(result.end_lsn > result.start_lsn);
        assert_eq!(result.tablespaces.len(), 2, "{:?}", result.tablespaces);
        assert_eq!(result.archives, 2);
        assert!(!dir.join(INCOMPLETE_MARKER).exists());
        assert!(dir.join("backup_label").exists());
        assert!(!dir.join(PENDING_LABEL).exists());
        // The tablespace went to its new location, and the link points there.
        assert_eq!(
            fs::read_link(dir.join(format!("pg_tblspc/{}", result.tablespaces[0].oid.unwrap())))
                .unwrap(),
            ts_new
        );
        assert!(fs::read_dir(&ts_new).unwrap().next().is_some());
        // Progress: a total, per-tablespace reports, the tablespace first.
        let reports = reports.lock().unwrap();
        assert!(!reports.is_empty());
        assert!(reports.iter().all(|p| p.bytes_total.is_some()));
        assert!(reports.iter().any(|p| p.tablespace.is_some()));
        assert!(
            reports
                .iter()
                .any(|p| p.tablespace.is_none() && p.archive_bytes_done > 0)
        );
        let last = reports.last().unwrap();
        assert!(last.bytes_done > 0);

        pg_verifybackup(install, &dir, &[]);
        let restored = Restored::start(install, &dir, work.path(), &[&ts_new]);
        check_rows(&restored, &committed, result.end_lsn.0);
        assert_eq!(restored.query("SELECT count(*) FROM in_ts"), "500");
        assert_eq!(restored.query("SELECT count(*) FROM big"), "3000");
        assert_eq!(
            restored.query(
                "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"
            ),
            ts_new.to_str().unwrap()
        );
    });
}

#[test]
fn stream_backup_verifies_starts_and_leaves_no_slot() {
    for_each_server(|install| {
        let work = scratch();
        let cluster = Arc::new(Cluster::start(install, small()).unwrap());
        prepare(&cluster);
        let writer = Writer::start(&cluster, 1000);
        std::thread::sleep(Duration::from_millis(200));
        let dest = work.path().join("backup");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let mut backup =
            BaseBackup::new(fast()).wal_method(WalMethod::Stream(Box::new(WalStream::new(
                // A plain connection string: WalStream makes it a replication one.
                format!("{} sslmode=disable", cluster.conninfo(Role::Scram))
                    .parse()
                    .unwrap(),
            ))));
        let (result, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        let mut committed = writer.finish();
        committed.extend(initial_rows());
        let streamed = result.wal_streamed_to.unwrap();
        assert!(
            streamed >= result.end_lsn,
            "{streamed} < {}",
            result.end_lsn
        );
        // Segments, none left partial.
        let wal: Vec<String> = fs::read_dir(dir.join("pg_wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.len() == 24)
            .collect();
        assert!(!wal.is_empty());
        assert!(!fs::read_dir(dir.join("pg_wal")).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }));
        // The temporary slot went with the streaming connection.
        walstream_test_support::wait_for(
            "the temporary slot to go",
            Duration::from_secs(10),
            || cluster.replication_slots().ok().filter(Vec::is_empty),
        )
        .unwrap();
        pg_verifybackup(install, &dir, &[]);
        let restored = Restored::start(install, &dir, work.path(), &[]);
        check_rows(&restored, &committed, result.end_lsn.0);
    });
}

/// Every regular file below `dir`, relative path → contents.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn tar_format_equals_plain_extraction_and_verifies() {
    for_each_server(|install| {
        let work = scratch();
        let cluster = Cluster::start(install, small()).unwrap();
        prepare(&cluster);
        let dest = work.path().join("tar");
        let target = DirectoryTarget::create(&dest, Format::Tar)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(fast()).wal_method(WalMethod::Fetch);
        let (_, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.contains(&"base.tar".to_owned()), "{names:?}");
        assert!(names.contains(&MANIFEST_FILE.to_owned()), "{names:?}");
        assert!(!names.contains(&INCOMPLETE_MARKER.to_owned()));

        // GNU tar's extraction of our base.tar ...
        let by_tar = work.path().join("by-tar");
        fs::create_dir(&by_tar).unwrap();
        run(Command::new("tar")
            .arg("-xf")
            .arg(dir.join("base.tar"))
            .arg("-C")
            .arg(&by_tar));
        // ... equals our plain extraction of it, file by file ...
        let by_us = work.path().join("by-us");
        let mut ex = TarExtractor::new(&by_us).unwrap();
        for chunk in fs::read(dir.join("base.tar")).unwrap().chunks(10_000) {
            ex.write(chunk).unwrap();
        }
        ex.finish().unwrap();
        let (a, b) = (tree(&by_tar), tree(&by_us));
        assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
        assert!(a == b, "file contents differ");
        // ... and with the manifest it is a valid backup for pg_verifybackup.
        fs::copy(dir.join(MANIFEST_FILE), by_us.join(MANIFEST_FILE)).unwrap();
        pg_verifybackup(install, &by_us, &[]);

        // Tar format with streamed WAL: pg_wal.tar beside base.tar, like pg_basebackup.
        let dest = work.path().join("tar-stream");
        let target = DirectoryTarget::create(&dest, Format::Tar)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(fast()).wal_method(WalMethod::Stream(Box::new(
            WalStream::new(physical(&cluster)),
        )));
        let (result, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        assert!(!dir.join("pg_wal").exists());
        let wal = work.path().join("wal-out");
        let mut ex = TarExtractor::new(&wal).unwrap();
        ex.write(&fs::read(dir.join("pg_wal.tar")).unwrap())
            .unwrap();
        ex.finish().unwrap();
        let segments: Vec<u64> = fs::read_dir(&wal)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        assert!(!segments.is_empty());
        assert!(segments.iter().all(|&len| len == 1 << 20), "{segments:?}");
        assert!(result.wal_streamed_to.unwrap() >= result.end_lsn);
        if cluster.major() >= 18 {
            // pg_verifybackup reads tar-format backups since 18 (WAL parsing needs plain).
            pg_verifybackup(install, &dir, &["-F", "t", "-n"]);
        }
    });
}

/// Whether the server was built with a compression method (zlib is on unless disabled).
pub(crate) fn built_with(install: &PgInstall, method: &str) -> bool {
    let out = run(Command::new(install.bin("pg_config")).arg("--configure"));
    match method {
        "gzip" => !out.contains("without-zlib"),
        m => out.contains(&format!("with-{m}")),
    }
}

#[test]
fn server_compressed_backups_extract_and_verify() {
    for_each_server(|install| {
        let cluster = Cluster::start(install, small()).unwrap();
        if !skip_unless(
            cluster.major() >= 15,
            "server-side COMPRESSION needs PostgreSQL 15",
        ) {
            return;
        }
        prepare(&cluster);
        // TARGET 'blackhole': the server reads everything and sends only progress.
        let work = scratch();
        let target = DirectoryTarget::create(work.path().join("hole"), Format::Tar)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(BaseBackupOptions {
            target: BackupTargetKind::Blackhole,
            progress: true,
            ..fast()
        })
        .wal_method(WalMethod::None);
        let (result, dir) = rt()
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap();
        // The server still announces its (empty) archives and manifest.
        assert_eq!(result.archives, 1);
        assert!(result.end_lsn > result.start_lsn);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            0,
            "blackhole wrote files"
        );

        for (method, detail) in [
            ("gzip", Some("level=1")),
            ("lz4", None),
            ("zstd", Some("level=3")),
        ] {
            if !built_with(install, method) {
                skip_unless(
                    false,
                    &format!(
                        "this PostgreSQL {} is built without {method}",
                        cluster.major()
                    ),
                );
                continue;
            }
            let work = scratch();
            let dest = work.path().join(method);
            let target = DirectoryTarget::create(&dest, Format::Plain)
                .unwrap()
                .no_sync();
            let mut backup = BaseBackup::new(BaseBackupOptions {
                compression: Some(method.into()),
                compression_detail: detail.map(str::to_owned),
                ..fast()
            })
            .wal_method(WalMethod::None);
            // run_to_directory verifies every file against the manifest.
            let (_, dir) = rt()
                .block_on(backup_into(&cluster, &mut backup, target))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            pg_verifybackup(install, &dir, &["-n"]);
            assert!(dir.join("PG_VERSION").exists());

            if method != "lz4" {
                continue;
            }
            // Tar format keeps the compressed archive as sent (once: it is the same path
            // for every method).
            let dest = work.path().join(format!("{method}-tar"));
            let target = DirectoryTarget::create(&dest, Format::Tar)
                .unwrap()
                .no_sync();
            let (_, dir) = rt()
                .block_on(backup_into(&cluster, &mut backup, target))
                .unwrap();
            let names: Vec<String> = fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert!(names.contains(&"base.tar.lz4".to_owned()), "{names:?}");
        }
    });
}

fn assert_marked_incomplete(dir: &Path) {
    assert!(dir.join(INCOMPLETE_MARKER).exists(), "marker missing");
    assert!(!dir.join(MANIFEST_FILE).exists(), "manifest present");
    assert!(!dir.join("backup_label").exists(), "backup_label present");
}

fn throttled() -> BaseBackupOptions {
    BaseBackupOptions {
        max_rate: Some(32),
        progress: true,
        ..fast()
    }
}

#[test]
fn interrupted_backups_stay_marked_incomplete_with_typed_errors() {
    for_each_server(|install| {
        let work = scratch();
        let cluster = Arc::new(Cluster::start(install, small()).unwrap());
        prepare(&cluster);
        let runtime = rt();

        // 1. The walsender is terminated after the first progress report.
        let dest = work.path().join("terminated");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let reported = Arc::new(AtomicUsize::new(0));
        let seen = reported.clone();
        let mut backup = BaseBackup::new(throttled())
            .wal_method(WalMethod::Fetch)
            .on_progress(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        let killer = {
            let cluster = cluster.clone();
            let reported = reported.clone();
            std::thread::spawn(move || {
                while reported.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
                cluster.terminate_walsenders().unwrap()
            })
        };
        let err = runtime
            .block_on(backup_into(&cluster, &mut backup, target))
            .unwrap_err();
        assert!(killer.join().unwrap() >= 1);
        assert!(matches!(err, Error::Conn(_)), "{err:?}");
        assert_marked_incomplete(&dest);

        // 2. The TCP connection drops mid-stream.
        let proxy = FaultProxy::start(("127.0.0.1", cluster.port())).unwrap();
        proxy.script([ConnectionPlan::new().at(
            Trigger::Bytes {
                direction: Direction::ToClient,
                bytes: 200_000,
            },
            Fault::Reset,
        )]);
        let dest = work.path().join("reset");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let config: Config = config_string(&cluster)
            .replace(
                &format!("port={}", cluster.port()),
                &format!("port={}", proxy.port()),
            )
            .parse()
            .unwrap();
        let mut backup = BaseBackup::new(fast()).wal_method(WalMethod::Fetch);
        let err = runtime
            .block_on(async {
                let mut client = Client::connect(&config).await?;
                backup.run_to_directory(&mut client, target).await
            })
            .unwrap_err();
        assert!(matches!(err, Error::Conn(_)), "{err:?}");
        assert_marked_incomplete(&dest);

        // 3. The caller cancels by dropping the future.
        let dest = work.path().join("cancelled");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(throttled()).wal_method(WalMethod::Fetch);
        let outcome = runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(2),
                backup_into(&cluster, &mut backup, target),
            )
            .await
        });
        assert!(outcome.is_err(), "the throttled backup finished within 2 s");
        assert_marked_incomplete(&dest);

        // 4. The WAL stream fails (no such slot): the throttled backup (minutes at 32 kB/s)
        // fails at once with the stream's error.
        let dest = work.path().join("stream-failed");
        let target = DirectoryTarget::create(&dest, Format::Plain)
            .unwrap()
            .no_sync();
        let mut backup = BaseBackup::new(throttled()).wal_method(WalMethod::Stream(Box::new(
            WalStream::new(physical(&cluster)).slot("no_such_slot"),
        )));
        let err = runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    backup_into(&cluster, &mut backup, target),
                )
                .await
            })
            .expect("the backup went on after its WAL stream failed")
            .unwrap_err();
        // 15+ finds the slot missing with READ_REPLICATION_SLOT, 14 when streaming starts.
        match &err {
            Error::WalStream(inner) => match &**inner {
                Error::Conn(c) => assert_eq!(
                    c.db_error().map(|d| d.code().to_string()).as_deref(),
                    Some("42704"),
                    "{c:?}"
                ),
                Error::Receive(r) => {
                    assert_eq!(r.kind(), ReceiveErrorKind::SlotMissing, "{r:?}");
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        assert_marked_incomplete(&dest);
    });
}

pub(crate) fn config_string(cluster: &Cluster) -> String {
    format!(
        "{} replication=true sslmode=disable",
        cluster.conninfo(Role::Scram)
    )
}
