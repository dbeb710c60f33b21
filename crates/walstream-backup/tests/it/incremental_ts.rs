//! Incremental backups (PostgreSQL 17+) beyond plain format without tablespaces: tar
//! format with a tablespace whose table changes between the full and the incremental
//! backup (the archives extracted by GNU tar and by our own extractor, the tablespace links
//! pointed at the extracted copies, combined with `pg_combinebackup -T`), and server-side
//! compressed incremental backups (plain format decoded on the fly, and a compressed tar
//! extracted through our decoder), each combined, checked by `pg_verifybackup` and
//! started as a server that has exactly the pre-backup rows.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use walstream_backup::{
    ArchiveSink, BaseBackup, BaseBackupOptions, Codec, DirExtractor, DirectoryTarget, Error,
    Format, INCOMPLETE_MARKER, MANIFEST_FILE, TarEntry, TarExtractor, TarReader, TarVisitor,
    WalMethod, WalStream,
};
use walstream_test_support::{Cluster, PgInstall, for_each_server, skip_unless};

use crate::backup::{
    Restored, backup_into, built_with, chown_to_server, fast, pg_verifybackup, physical, rt, run,
    scratch, small,
};

/// The rows of both tables, identical on the source and on a restored copy: counts, sums
/// and a digest of the updated column.
const STATE: &str = "SELECT (SELECT count(*) || ':' || sum(id) || ':' || md5(string_agg(v, ',' ORDER BY id)) FROM in_ts)
        || ' ' || (SELECT count(*) || ':' || sum(n) FROM ts_new)
        || ' ' || (SELECT count(*) || ':' || sum(id) FROM w)";

/// A cluster with WAL summarization and a tablespace in `<work>/ts-orig` holding `in_ts`.
fn cluster_with_tablespace(install: &PgInstall, work: &Path) -> (Cluster, PathBuf) {
    let ts = work.join("ts-orig");
    fs::create_dir(&ts).unwrap();
    chown_to_server(&ts);
    let cluster = Cluster::start(install, small().setting("summarize_wal", "on")).unwrap();
    cluster
        .execute(&format!(
            "CREATE TABLESPACE ts1 LOCATION '{}';
             CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE ts1;
             INSERT INTO in_ts SELECT g, repeat('a', 100) FROM generate_series(1, 4000) g;
             CREATE TABLE w (id int PRIMARY KEY);
             INSERT INTO w SELECT g FROM generate_series(1, 100) g;",
            ts.display()
        ))
        .unwrap();
    (cluster, ts)
}

/// Writes between the full and the incremental backup: updates, inserts and deletes in
/// the tablespace's table, a new table in the tablespace, rows in the main directory.
fn change(cluster: &Cluster) {
    cluster
        .execute(
            "UPDATE in_ts SET v = repeat('b', 80) WHERE id % 7 = 0;
             INSERT INTO in_ts SELECT g, 'new' FROM generate_series(4001, 4500) g;
             DELETE FROM in_ts WHERE id % 100 = 1;
             CREATE TABLE ts_new TABLESPACE ts1 AS SELECT g AS n FROM generate_series(1, 700) g;
             INSERT INTO w SELECT g FROM generate_series(101, 200) g;",
        )
        .unwrap();
}

/// Written after the incremental backup ended: must not be in a restored server.
fn after(cluster: &Cluster) {
    cluster
        .execute(
            "INSERT INTO in_ts SELECT g, 'late' FROM generate_series(90001, 90050) g;
             INSERT INTO w VALUES (99999);",
        )
        .unwrap();
}

fn check_restored(restored: &Restored, expected: &str, ts_location: &Path) {
    assert_eq!(restored.query(STATE), expected);
    assert_eq!(
        restored.query("SELECT count(*) FROM in_ts WHERE id > 90000"),
        "0"
    );
    assert_eq!(
        restored.query("SELECT count(*) FROM w WHERE id = 99999"),
        "0"
    );
    assert_eq!(
        restored
            .query("SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'ts1'"),
        ts_location.to_str().unwrap()
    );
}

/// Feeds a whole file to a sink in 64 kB chunks.
fn feed(file: &Path, sink: &mut dyn ArchiveSink) {
    let data = fs::read(file).unwrap();
    for chunk in data.chunks(64 * 1024) {
        sink.write(chunk)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    sink.finish()
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
}

/// Extracts `archive` (compressed or not, by its name) into `dest` with our extractor,
/// pointing tablespace links at `old` to `new`.
fn extract_ours(archive: &Path, dest: &Path, map: Option<(&Path, &Path)>) {
    let mut dir = DirExtractor::new(dest).unwrap();
    if let Some((old, new)) = map {
        dir.map_tablespace(old.to_str().unwrap(), new);
    }
    let tar: Box<dyn ArchiveSink> = Box::new(TarExtractor::with_extractor(dir));
    let name = archive.file_name().unwrap().to_str().unwrap();
    let mut sink = match Codec::from_archive_name(name) {
        Some(codec) => codec.decoder(tar),
        None => tar,
    };
    feed(archive, sink.as_mut());
}

/// Member names of a plain tar file.
fn members(archive: &Path) -> Vec<String> {
    struct Names(Vec<String>);
    impl TarVisitor for Names {
        fn begin_entry(&mut self, entry: &TarEntry) -> Result<(), Error> {
            self.0.push(entry.path.clone());
            Ok(())
        }
        fn entry_data(&mut self, _: &[u8]) -> Result<(), Error> {
            Ok(())
        }
        fn end_entry(&mut self) -> Result<(), Error> {
            Ok(())
        }
    }
    let mut names = Names(Vec::new());
    let mut reader = TarReader::new();
    reader
        .feed(&fs::read(archive).unwrap(), &mut names)
        .unwrap();
    reader.finish().unwrap();
    names.0
}

fn is_incremental(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("INCREMENTAL."))
}

/// The one `<oid>.tar*` archive of a tar-format backup: (oid, path).
fn tablespace_archive(dir: &Path) -> (String, PathBuf) {
    let found: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            let (stem, _) = name.split_once(".tar")?;
            stem.parse::<u32>().ok().map(|_| (stem.to_owned(), p))
        })
        .collect();
    let [one] = found.as_slice() else {
        panic!("expected one tablespace archive: {found:?}")
    };
    one.clone()
}

fn take(
    cluster: &Cluster,
    dest: &Path,
    format: Format,
    backup: &mut BaseBackup,
    map: Option<(&Path, &Path)>,
) -> PathBuf {
    let mut target = DirectoryTarget::create(dest, format).unwrap().no_sync();
    if let Some((old, new)) = map {
        target = target.map_tablespace(old.to_str().unwrap(), new);
    }
    let (_, dir) = rt()
        .block_on(backup_into(cluster, backup, target))
        .unwrap_or_else(|e| panic!("backup into {}: {e}", dest.display()));
    assert!(!dir.join(INCOMPLETE_MARKER).exists());
    dir
}

fn combine(install: &PgInstall, chain: &[&Path], out: &Path, ts_old: &Path, ts_new: &Path) {
    let mut cmd = Command::new(install.bin("pg_combinebackup"));
    cmd.arg("--no-sync")
        .args(chain)
        .arg("-o")
        .arg(out)
        .arg(format!("-T{}={}", ts_old.display(), ts_new.display()));
    run(&mut cmd);
}

#[test]
fn incremental_tar_backup_with_a_tablespace_combines_and_starts() {
    for_each_server(|install| {
        if !skip_unless(
            install.major >= 17,
            "incremental backups need PostgreSQL 17",
        ) {
            return;
        }
        let work = scratch();
        let w = work.path();
        let (cluster, ts_orig) = cluster_with_tablespace(install, w);

        // The full backup, tar format, WAL fetched into base.tar: base.tar holds the
        // pg_tblspc/<oid> link to the original location, <oid>.tar the tablespace.
        let full = take(
            &cluster,
            &w.join("full"),
            Format::Tar,
            &mut BaseBackup::new(fast()).wal_method(WalMethod::Fetch),
            None,
        );
        let (oid, full_ts_tar) = tablespace_archive(&full);
        assert!(!members(&full_ts_tar).iter().any(|m| is_incremental(m)));

        change(&cluster);
        let expected = cluster.psql(STATE).unwrap().trim().to_owned();

        // The incremental backup, tar format, WAL streamed into pg_wal.tar.
        let incr = take(
            &cluster,
            &w.join("incr"),
            Format::Tar,
            &mut BaseBackup::new(fast())
                .wal_method(WalMethod::Stream(Box::new(WalStream::new(physical(
                    &cluster,
                )))))
                .incremental_from(full.join(MANIFEST_FILE)),
            None,
        );
        after(&cluster);
        let (incr_oid, incr_ts_tar) = tablespace_archive(&incr);
        assert_eq!(incr_oid, oid);
        // The changed table in the tablespace comes as INCREMENTAL.* files.
        let ts_members = members(&incr_ts_tar);
        assert!(
            ts_members.iter().any(|m| is_incremental(m)),
            "{ts_members:?}"
        );
        assert!(
            members(&incr.join("base.tar"))
                .iter()
                .any(|m| is_incremental(m))
        );
        if install.major >= 18 {
            // pg_verifybackup reads tar-format backups since 18.
            pg_verifybackup(install, &incr, &["-F", "t", "-n"]);
        }

        // The full backup extracted by GNU tar; its tablespace link still points at the
        // server's own tablespace and is pointed at the extracted copy.
        let full_data = w.join("x-full");
        let full_ts = w.join("x-full-ts");
        for (archive, dest) in [(full.join("base.tar"), &full_data), (full_ts_tar, &full_ts)] {
            fs::create_dir_all(dest).unwrap();
            run(Command::new("tar")
                .arg("-xf")
                .arg(archive)
                .arg("-C")
                .arg(dest));
        }
        let link = full_data.join("pg_tblspc").join(&oid);
        assert_eq!(fs::read_link(&link).unwrap(), ts_orig);
        fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(&full_ts, &link).unwrap();
        fs::copy(full.join(MANIFEST_FILE), full_data.join(MANIFEST_FILE)).unwrap();

        // The incremental backup extracted by our extractor, the link mapped on the way.
        let incr_data = w.join("x-incr");
        let incr_ts = w.join("x-incr-ts");
        extract_ours(
            &incr.join("base.tar"),
            &incr_data,
            Some((&ts_orig, &incr_ts)),
        );
        extract_ours(&incr_ts_tar, &incr_ts, None);
        extract_ours(&incr.join("pg_wal.tar"), &incr_data.join("pg_wal"), None);
        assert_eq!(
            fs::read_link(incr_data.join("pg_tblspc").join(&oid)).unwrap(),
            incr_ts
        );
        fs::copy(incr.join(MANIFEST_FILE), incr_data.join(MANIFEST_FILE)).unwrap();

        pg_verifybackup(install, &full_data, &[]);
        pg_verifybackup(install, &incr_data, &[]);

        let combined = w.join("combined");
        let combined_ts = w.join("combined-ts");
        combine(
            install,
            &[&full_data, &incr_data],
            &combined,
            &incr_ts,
            &combined_ts,
        );
        pg_verifybackup(install, &combined, &[]);
        assert_eq!(
            fs::read_link(combined.join("pg_tblspc").join(&oid)).unwrap(),
            combined_ts
        );
        let restored = Restored::start(install, &combined, w, &[&combined_ts]);
        check_restored(&restored, &expected, &combined_ts);
    });
}

#[test]
fn compressed_incremental_backups_with_a_tablespace_combine_and_start() {
    for_each_server(|install| {
        if !skip_unless(
            install.major >= 17,
            "incremental backups need PostgreSQL 17",
        ) {
            return;
        }
        let work = scratch();
        let w = work.path();
        let (cluster, ts_orig) = cluster_with_tablespace(install, w);

        // The full backup, plain, the tablespace mapped to a directory of its own.
        let full_ts = w.join("full-ts");
        let full = take(
            &cluster,
            &w.join("full"),
            Format::Plain,
            &mut BaseBackup::new(fast()),
            Some((&ts_orig, &full_ts)),
        );
        change(&cluster);
        let expected = cluster.psql(STATE).unwrap().trim().to_owned();

        // One incremental backup per compression method the server has, all on top of
        // the same full backup: plain format (decoded on the fly, verified against the
        // manifest by run_to_directory) for gzip and zstd, tar format kept compressed and
        // extracted through our decoder for lz4.
        let mut taken = Vec::new();
        for (method, detail, format) in [
            ("gzip", Some("level=1"), Format::Plain),
            ("lz4", None, Format::Tar),
            ("zstd", Some("level=3"), Format::Plain),
        ] {
            if !built_with(install, method) {
                skip_unless(
                    false,
                    &format!(
                        "this PostgreSQL {} is built without {method}",
                        install.major
                    ),
                );
                continue;
            }
            let options = BaseBackupOptions {
                compression: Some(method.into()),
                compression_detail: detail.map(str::to_owned),
                ..fast()
            };
            let mut backup = BaseBackup::new(options).incremental_from(full.join(MANIFEST_FILE));
            let incr_ts = w.join(format!("{method}-ts"));
            let data = match format {
                Format::Plain => take(
                    &cluster,
                    &w.join(method),
                    format,
                    &mut backup,
                    Some((&ts_orig, &incr_ts)),
                ),
                Format::Tar => {
                    let dir = take(&cluster, &w.join(method), format, &mut backup, None);
                    let (_, ts_archive) = tablespace_archive(&dir);
                    let names: Vec<String> = fs::read_dir(&dir)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect();
                    assert!(names.contains(&"base.tar.lz4".to_owned()), "{names:?}");
                    assert!(
                        ts_archive.to_str().unwrap().ends_with(".tar.lz4"),
                        "{ts_archive:?}"
                    );
                    let data = w.join(format!("x-{method}"));
                    extract_ours(&dir.join("base.tar.lz4"), &data, Some((&ts_orig, &incr_ts)));
                    extract_ours(&ts_archive, &incr_ts, None);
                    fs::copy(dir.join(MANIFEST_FILE), data.join(MANIFEST_FILE)).unwrap();
                    data
                }
            };
            assert!(
                fs::read_dir(&incr_ts).unwrap().next().is_some(),
                "{method}: nothing in the tablespace"
            );
            taken.push((method, data, incr_ts));
        }
        // gzip (zlib) is in every build used here: the test must combine something.
        assert!(!taken.is_empty(), "no compression method available");
        after(&cluster);

        for (method, data, incr_ts) in taken {
            pg_verifybackup(install, &data, &[]);
            let combined = w.join(format!("combined-{method}"));
            let combined_ts = w.join(format!("combined-{method}-ts"));
            combine(install, &[&full, &data], &combined, &incr_ts, &combined_ts);
            pg_verifybackup(install, &combined, &[]);
            let restored = Restored::start(install, &combined, w, &[&combined_ts]);
            check_restored(&restored, &expected, &combined_ts);
        }
    });
}
