//! `walstream basebackup` then `walstream verifybackup`, against every configured major;
//! incremental backups (17+) combined with `pg_combinebackup` and started.
use std::path::Path;

use walstream_test_support::{
    Cluster, ClusterOptions, PgInstall, Role, chown_to_server, for_each_server, skip_unless,
};

use crate::{assert_ok, path_arg, run, stderr, stdout};

#[test]
fn basebackup_then_verifybackup() {
    for_each_server(|install| {
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 2000) g")
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let dir = work.path().join("b");
        let d = dir.display().to_string();
        let mut args = vec![
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &d,
            "--wal-method",
            "stream",
            "--checkpoint",
            "fast",
            "--manifest-checksums",
            "SHA256",
            "-P",
            "--no-sync",
        ];
        if c.major() >= 15 {
            args.extend(["--compress", "server-gzip:1"]);
        }
        let out = run(&args);
        assert_ok(&out, Some(&c));
        assert!(stdout(&out).contains("backup complete"), "{}", stdout(&out));
        assert!(
            stderr(&out).contains(" kB"),
            "no progress: {}",
            stderr(&out)
        );
        let manifest = std::fs::read_to_string(dir.join("backup_manifest")).unwrap();
        assert!(manifest.contains("\"Checksum-Algorithm\": \"SHA256\""));
        assert!(!dir.join("walstream_backup_incomplete").exists());

        let out = run(&["verifybackup", &d]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("successfully verified"),
            "{}",
            stdout(&out)
        );

        // Tar format with the WAL streamed through an existing slot: base.tar, pg_wal.tar
        // and the manifest.
        c.execute("SELECT pg_create_physical_replication_slot('bk_slot')")
            .unwrap();
        let tar = work.path().join("t").display().to_string();
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &tar,
            "-F",
            "tar",
            "-X",
            "stream",
            "-S",
            "bk_slot",
            "-c",
            "fast",
        ]);
        assert_ok(&out, Some(&c));
        let mut names: Vec<String> = std::fs::read_dir(&tar)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["backup_manifest", "base.tar", "pg_wal.tar"]);
        // The slot was used: it now has a restart position.
        let slots = c.replication_slots().unwrap();
        let slot = slots.iter().find(|s| s.slot_name == "bk_slot").unwrap();
        assert!(slot.restart_lsn.is_some(), "{slot:?}");

        // A non-empty directory is refused with a hint; usage errors exit 2.
        let out = run(&["basebackup", "-d", &conninfo, "-D", &d, "-c", "fast"]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
        let other = work.path().join("x").display().to_string();
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &other,
            "--compress",
            "bzip2",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    });
}

/// Runs a command of the server's installation, as the server's OS user when root.
fn as_server(program: std::path::PathBuf) -> std::process::Command {
    if is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// A scratch directory under /tmp that the server's OS user can traverse (tablespaces and
/// restored clusters live below it).
fn server_visible_tempdir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn checked(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Starts a server on `data` (a combined backup) on a free port with its socket in `sock`,
/// runs `sql` with psql, stops the server and returns the output.
fn query_restored(install: &PgInstall, data: &Path, sock: &Path, sql: &str) -> String {
    std::fs::create_dir_all(sock).unwrap();
    for d in [data, sock] {
        chown_to_server(d).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = sock.join("server.log");
    let pg_ctl = |args: &[&str]| {
        let mut c = as_server(install.bin("pg_ctl"));
        c.arg("-D").arg(data).arg("-l").arg(&log).args(args);
        c
    };
    let started = pg_ctl(&[
        "-o",
        &format!("-p {port} -k {} -c listen_addresses=''", sock.display()),
        "-w",
        "-t",
        "120",
        "start",
    ])
    .output()
    .unwrap();
    assert!(
        started.status.success(),
        "the restored server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out = std::process::Command::new(install.bin("psql"))
        .args(["-X", "-A", "-t", "-h"])
        .arg(sock)
        .args([
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        ])
        .output()
        .unwrap();
    let _ = pg_ctl(&["-m", "immediate", "-w", "stop"]).output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn incremental_basebackup_combines_and_starts() {
    for_each_server(|install| {
        let work = server_visible_tempdir("walstream-cli-incr-");
        let manifest_arg = work.path().join("full/backup_manifest");
        if install.major < 17 {
            let c = Cluster::start(install, ClusterOptions::new()).unwrap();
            let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
            std::fs::create_dir(work.path().join("full")).unwrap();
            std::fs::write(&manifest_arg, "{}\n").unwrap();
            let d = path_arg(&work.path().join("incr"));
            let out = run(&[
                "basebackup",
                "-d",
                &conninfo,
                "-D",
                &d,
                "-c",
                "fast",
                "-i",
                &path_arg(&manifest_arg),
            ]);
            assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
            assert!(stderr(&out).contains("PostgreSQL 17"), "{}", stderr(&out));
            skip_unless(
                false,
                "incremental backups need PostgreSQL 17 (the usage error was checked)",
            );
            return;
        }
        let c = Cluster::start(
            install,
            ClusterOptions::new().setting("summarize_wal", "on"),
        )
        .unwrap();
        c.execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT g, 'a' FROM generate_series(1, 2000) g;",
        )
        .unwrap();
        let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let full = path_arg(&work.path().join("full"));
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &full,
            "-X",
            "fetch",
            "-c",
            "fast",
            "-N",
        ]);
        assert_ok(&out, Some(&c));

        c.execute(
            "CREATE TABLE t2 AS SELECT g AS n FROM generate_series(1, 300) g;
             UPDATE t SET v = 'b' WHERE id % 2 = 0;
             INSERT INTO t SELECT g, 'c' FROM generate_series(2001, 2500) g;",
        )
        .unwrap();
        let state = "SELECT (SELECT count(*) || ':' || string_agg(DISTINCT v, '') FROM t)
                        || ' ' || (SELECT count(*) FROM t WHERE v = 'b')
                        || ' ' || (SELECT sum(n) FROM t2)";
        let expected = c.psql(state).unwrap().trim().to_owned();

        let incr = path_arg(&work.path().join("incr"));
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &incr,
            "-X",
            "stream",
            "-c",
            "fast",
            "-N",
            "--incremental",
            &path_arg(&manifest_arg),
        ]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("incremental backup complete"),
            "{}",
            stdout(&out)
        );
        let label = std::fs::read_to_string(work.path().join("incr/backup_label")).unwrap();
        assert!(label.contains("INCREMENTAL FROM LSN"), "{label}");
        let out = run(&["verifybackup", &incr]);
        assert_ok(&out, Some(&c));
        c.execute("INSERT INTO t VALUES (99999, 'after')").unwrap();

        let combined = work.path().join("combined");
        checked(
            std::process::Command::new(install.bin("pg_combinebackup"))
                .args(["--no-sync", &full, &incr, "-o"])
                .arg(&combined),
        );
        let out = run(&["verifybackup", &path_arg(&combined)]);
        assert_ok(&out, Some(&c));
        checked(std::process::Command::new(install.bin("pg_verifybackup")).arg(&combined));
        let restored = query_restored(install, &combined, &work.path().join("sock"), state);
        assert_eq!(restored, expected);

        // Another cluster's manifest: the server's error, its SQLSTATE and a hint.
        let other = Cluster::start(install, ClusterOptions::new()).unwrap();
        let other_conninfo = format!("{} sslmode=disable", other.conninfo(Role::Scram));
        let wrong = path_arg(&work.path().join("wrong"));
        let out = run(&[
            "basebackup",
            "-d",
            &other_conninfo,
            "-D",
            &wrong,
            "-c",
            "fast",
            "-i",
            &path_arg(&manifest_arg),
        ]);
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("system identifier"), "{err}");
        assert!(err.contains("SQLSTATE") && err.contains("hint:"), "{err}");
        // A missing manifest file is refused before anything is created.
        let missing = work.path().join("none");
        let out = run(&[
            "basebackup",
            "-d",
            &other_conninfo,
            "-D",
            &path_arg(&missing),
            "-i",
            "/nonexistent/backup_manifest",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!missing.exists());
    });
}

/// The `<oid>.tar` archive of a tar-format backup directory: (oid, path).
fn tablespace_tar(dir: &Path) -> (String, std::path::PathBuf) {
    let found: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let oid = name.strip_suffix(".tar")?;
            oid.parse::<u32>().ok().map(|_| (oid.to_owned(), p.clone()))
        })
        .collect();
    let [one] = found.as_slice() else {
        panic!(
            "expected one tablespace archive in {}: {found:?}",
            dir.display()
        )
    };
    one.clone()
}

/// Restores a tar-format backup of `dir` the way a user would for pg_combinebackup: GNU
/// tar extracts base.tar into `data`, the tablespace archive into `ts` and pg_wal.tar
/// (if any) into `data/pg_wal`; the tablespace_map entry (which names the server's own
/// location) becomes a pg_tblspc link to `ts`. Both verifiers accept the extracted
/// backup; then tablespace_map is removed (a server started on it would re-create the
/// link to the old location; pg_combinebackup needs the link).
fn extract_tar_backup(dir: &Path, data: &Path, ts: &Path, ts_orig: &Path, c: &Cluster) {
    let (oid, ts_tar) = tablespace_tar(dir);
    for (archive, dest) in [(dir.join("base.tar"), data), (ts_tar, ts)] {
        std::fs::create_dir_all(dest).unwrap();
        checked(
            std::process::Command::new("tar")
                .arg("-xf")
                .arg(archive)
                .arg("-C")
                .arg(dest),
        );
    }
    if dir.join("pg_wal.tar").exists() {
        checked(
            std::process::Command::new("tar")
                .arg("-xf")
                .arg(dir.join("pg_wal.tar"))
                .arg("-C")
                .arg(data.join("pg_wal")),
        );
    }
    let map = std::fs::read_to_string(data.join("tablespace_map")).unwrap();
    assert_eq!(map.trim(), format!("{oid} {}", ts_orig.display()), "{map}");
    let link = data.join("pg_tblspc").join(&oid);
    assert!(
        !link.exists(),
        "tar format with a tablespace_map has no links"
    );
    std::os::unix::fs::symlink(ts, &link).unwrap();
    std::fs::copy(dir.join("backup_manifest"), data.join("backup_manifest")).unwrap();
    let out = run(&["verifybackup", &path_arg(data)]);
    assert_ok(&out, Some(c));
    checked(std::process::Command::new(c.install().bin("pg_verifybackup")).arg(data));
    std::fs::remove_file(data.join("tablespace_map")).unwrap();
}

#[test]
fn incremental_tar_basebackup_with_a_tablespace_combines_and_starts() {
    for_each_server(|install| {
        if !skip_unless(
            install.major >= 17,
            "incremental backups need PostgreSQL 17",
        ) {
            return;
        }
        let work = server_visible_tempdir("walstream-cli-incr-ts-");
        let w = work.path();
        let ts_orig = w.join("ts-orig");
        std::fs::create_dir(&ts_orig).unwrap();
        chown_to_server(&ts_orig).unwrap();
        let c = Cluster::start(
            install,
            ClusterOptions::new().setting("summarize_wal", "on"),
        )
        .unwrap();
        c.execute(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}';
             CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE ts1;
             INSERT INTO in_ts SELECT g, 'a' FROM generate_series(1, 3000) g;",
            ts_orig.display()
        ))
        .unwrap();
        let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let full = w.join("full");
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &path_arg(&full),
            "-F",
            "tar",
            "-X",
            "fetch",
            "-c",
            "fast",
            "-N",
        ]);
        assert_ok(&out, Some(&c));

        c.execute(
            "UPDATE in_ts SET v = 'b' WHERE id % 5 = 0;
             INSERT INTO in_ts SELECT g, 'c' FROM generate_series(3001, 3400) g;
             DELETE FROM in_ts WHERE id % 50 = 1;",
        )
        .unwrap();
        let state = "SELECT count(*) || ':' || sum(id) || ':' || md5(string_agg(v, '' ORDER BY id))
                     FROM in_ts";
        let expected = c.psql(state).unwrap().trim().to_owned();

        let incr = w.join("incr");
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &path_arg(&incr),
            "-F",
            "tar",
            "-X",
            "stream",
            "-c",
            "fast",
            "-N",
            "-i",
            &path_arg(&full.join("backup_manifest")),
        ]);
        assert_ok(&out, Some(&c));
        assert!(
            stdout(&out).contains("incremental backup complete"),
            "{}",
            stdout(&out)
        );
        c.execute("INSERT INTO in_ts VALUES (99999, 'after')")
            .unwrap();
        let (_, incr_ts_tar) = tablespace_tar(&incr);
        let listing = checked(
            std::process::Command::new("tar")
                .arg("-tf")
                .arg(&incr_ts_tar),
        );
        assert!(listing.contains("/INCREMENTAL."), "{listing}");

        let (full_data, full_ts) = (w.join("x-full"), w.join("x-full-ts"));
        extract_tar_backup(&full, &full_data, &full_ts, &ts_orig, &c);
        let (incr_data, incr_ts) = (w.join("x-incr"), w.join("x-incr-ts"));
        extract_tar_backup(&incr, &incr_data, &incr_ts, &ts_orig, &c);

        let combined = w.join("combined");
        let combined_ts = w.join("combined-ts");
        checked(
            std::process::Command::new(install.bin("pg_combinebackup"))
                .arg("--no-sync")
                .arg(&full_data)
                .arg(&incr_data)
                .arg("-o")
                .arg(&combined)
                .arg(format!(
                    "--tablespace-mapping={}={}",
                    incr_ts.display(),
                    combined_ts.display()
                )),
        );
        checked(std::process::Command::new(install.bin("pg_verifybackup")).arg(&combined));
        let out = run(&["verifybackup", &path_arg(&combined)]);
        assert_ok(&out, Some(&c));
        chown_to_server(&combined_ts).unwrap();
        let restored = query_restored(
            install,
            &combined,
            &w.join("sock"),
            &format!(
                "SELECT ({state}) || ' ' || (SELECT count(*) FROM in_ts WHERE id = 99999)
                 || ' ' || (SELECT pg_tablespace_location(oid) FROM pg_tablespace
                            WHERE spcname = 'ts1')"
            ),
        );
        assert_eq!(restored, format!("{expected} 0 {}", combined_ts.display()));
    });
}

/// Entries of `dir` (names), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Bytes of the regular files below `dir` outside `pg_wal` (what extraction wrote).
fn extracted_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() && e.file_name() != "pg_wal" {
                stack.push(e.path());
            } else if ft.is_file() {
                total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    total
}

/// Starts a throttled `walstream basebackup` (minutes at 32 kB/s), waits until it has
/// written part of the backup (`started` says when), kills it with `signal`, and checks
/// that the directory is marked incomplete and refused by both verifiers.
fn kill_mid_backup(
    c: &Cluster,
    dir: &Path,
    extra: &[&str],
    signal: &str,
    started: impl Fn(&Path) -> bool,
) {
    let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
    let d = path_arg(dir);
    let mut args = vec![
        "basebackup",
        "-d",
        &conninfo,
        "-D",
        &d,
        "-c",
        "fast",
        "--max-rate",
        "32k",
    ];
    args.extend_from_slice(extra);
    let mut child = crate::bin()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waited = walstream_test_support::wait_for(
        "the backup to write part of its data",
        std::time::Duration::from_secs(120),
        || started(dir).then_some(()),
    );
    let still_running = child.try_wait().unwrap().is_none();
    checked(
        std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string()),
    );
    let status = child.wait().unwrap();
    waited.unwrap();
    assert!(
        still_running,
        "the throttled backup ended before it was killed"
    );
    assert!(!status.success(), "{status:?}");
    let names = entries(dir);
    assert!(
        names.contains(&"walstream_backup_incomplete".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"backup_label".to_owned()), "{names:?}");
    assert!(!names.contains(&"backup_manifest".to_owned()), "{names:?}");
    let out = run(&["verifybackup", &d]);
    assert!(!out.status.success(), "walstream verifybackup accepted it");
    let out = std::process::Command::new(c.install().bin("pg_verifybackup"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "pg_verifybackup accepted it");
}

#[test]
fn killed_basebackup_leaves_a_directory_marked_incomplete() {
    for_each_server(|install| {
        let mut options = ClusterOptions::new();
        if install.major >= 17 {
            options = options.setting("summarize_wal", "on");
        }
        let c = Cluster::start(install, options).unwrap();
        c.execute(
            "CREATE TABLE t AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g",
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();

        // Plain format, WAL streamed, killed (SIGKILL) once files are being extracted.
        let plain = work.path().join("plain");
        kill_mid_backup(&c, &plain, &["-X", "stream"], "KILL", |d| {
            extracted_bytes(d) > 64 * 1024
        });

        // Tar format, interrupted (SIGINT, as by Ctrl-C) once base.tar has data.
        let tar = work.path().join("tar");
        kill_mid_backup(&c, &tar, &["-F", "tar", "-X", "fetch"], "INT", |d| {
            std::fs::metadata(d.join("base.tar")).is_ok_and(|m| m.len() > 64 * 1024)
        });

        if !skip_unless(
            install.major >= 17,
            "incremental backups need PostgreSQL 17 (plain and tar interruptions were checked)",
        ) {
            return;
        }
        // An incremental backup in tar format, terminated (SIGTERM) half-way.
        let full = work.path().join("full");
        let out = run(&[
            "basebackup",
            "-d",
            &format!("{} sslmode=disable", c.conninfo(Role::Scram)),
            "-D",
            &path_arg(&full),
            "-c",
            "fast",
            "-N",
        ]);
        assert_ok(&out, Some(&c));
        c.execute("UPDATE t SET pad = 'y' WHERE g % 2 = 0").unwrap();
        let manifest = path_arg(&full.join("backup_manifest"));
        let incr = work.path().join("incr");
        kill_mid_backup(
            &c,
            &incr,
            &["-F", "tar", "-X", "stream", "-i", &manifest],
            "TERM",
            |d| std::fs::metadata(d.join("base.tar")).is_ok_and(|m| m.len() > 64 * 1024),
        );
    });
}

#[test]
fn plain_basebackup_refuses_a_non_empty_tablespace_directory() {
    for_each_server(|install| {
        let work = server_visible_tempdir("walstream-cli-ts-");
        let w = work.path();
        let ts = w.join("ts-live");
        std::fs::create_dir(&ts).unwrap();
        chown_to_server(&ts).unwrap();
        let c = Cluster::start(install, ClusterOptions::new()).unwrap();
        c.execute(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}';
             CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g FROM generate_series(1, 1000) g;
             CHECKPOINT;",
            ts.display()
        ))
        .unwrap();
        let conninfo = format!("{} sslmode=disable", c.conninfo(Role::Scram));
        let listing = |dir: &Path| {
            checked(
                std::process::Command::new("find")
                    .arg(dir)
                    .args(["-printf", "%p %s %T@\\n"]),
            )
        };
        let before = listing(&ts);
        // Without -T the tablespace would be extracted into the server's own directory.
        let dest = w.join("b");
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &path_arg(&dest),
            "-c",
            "fast",
            "-X",
            "fetch",
            "-N",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("tablespace directory is not empty"), "{err}");
        assert!(err.contains("-T OLDDIR=NEWDIR"), "{err}");
        assert_eq!(listing(&ts), before, "the live tablespace was written to");
        assert!(dest.join("walstream_backup_incomplete").exists());
        // OLDDIR must be absolute (usage error, DIR not created).
        let dest = w.join("b-usage");
        let out = run(&[
            "basebackup",
            "-d",
            &conninfo,
            "-D",
            &path_arg(&dest),
            "-T",
            "ts-live=/tmp/x",
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(!dest.exists());
        // With -T it works; a relative NEWDIR is taken from the current directory and the
        // link is absolute.
        let dest = w.join("b2");
        let out = crate::bin()
            .current_dir(w)
            .args([
                "basebackup",
                "-d",
                &conninfo,
                "-D",
                &path_arg(&dest),
                "-c",
                "fast",
                "-X",
                "fetch",
                "-N",
                "-T",
                &format!("{}=ts-copy", ts.display()),
            ])
            .output()
            .unwrap();
        assert_ok(&out, Some(&c));
        assert!(
            std::fs::read_dir(w.join("ts-copy"))
                .unwrap()
                .next()
                .is_some()
        );
        let link = std::fs::read_dir(dest.join("pg_tblspc"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(std::fs::read_link(link).unwrap(), w.join("ts-copy"));
        let out = run(&["verifybackup", &path_arg(&dest)]);
        assert_ok(&out, Some(&c));
    });
}
