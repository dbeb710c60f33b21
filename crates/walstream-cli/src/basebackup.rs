//! `walstream basebackup`: take a base backup like `pg_basebackup`, through walstream-backup.
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use walstream_backup::{
    BaseBackup, BaseBackupOptions, CheckpointMode, ChecksumAlgorithm, DirectoryTarget, Format,
    ManifestMode, Progress, WalMethod, WalStream,
};
use walstream_conn::ReplicationMode;

use crate::conn;
use crate::error::{Category, CliError};

/// Arguments of `walstream basebackup`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream basebackup -d 'host=db user=repl' -D /backups/today -P
  walstream basebackup -d 'host=db user=repl' -D /backups/t1 --format tar --compress server-zstd:level=5
  walstream basebackup -d 'host=db user=repl' -D /backups/b2 --wal-method fetch --checkpoint fast \\
      --max-rate 50M --manifest-checksums SHA256 -T /srv/ts1=/backups/b2-ts1
  walstream verifybackup /backups/today
  walstream basebackup -d 'host=db user=repl' -D /backups/tue -c fast \
      --incremental /backups/today/backup_manifest
  pg_combinebackup /backups/today /backups/tue -o /restore/tue

The connection must allow physical replication (a role with REPLICATION, a `replication` line in
pg_hba.conf); `replication=true` is added to -d. Plain format extracts the archives (tablespaces
to their locations, or where -T maps them) and verifies the result against backup_manifest;
tar format keeps the archives as the server sends them (base.tar, <oid>.tar, compressed if
--compress). With --wal-method stream the WAL goes to DIR/pg_wal (pg_wal.tar in tar format)
over a second connection (a temporary physical slot, or --slot). Until the backup is complete, DIR holds
walstream_backup_incomplete and has no backup_label or backup_manifest: never use such a
directory.

--compress asks the server to compress: server-gzip[:LEVEL], server-lz4[:LEVEL],
server-zstd[:LEVEL|DETAIL] where DETAIL is the server's COMPRESSION_DETAIL (level=N, workers=N,
long); needs PostgreSQL 15 or later. Plain format decompresses on the fly.

--incremental MANIFEST (PostgreSQL 17+) takes an incremental backup on top of the backup whose
backup_manifest is MANIFEST (a full or an incremental one): only the blocks changed since then
are sent, relation files become INCREMENTAL.<name> files. The server needs summarize_wal = on
since before that earlier backup. pg_combinebackup (of the server's version) combines the
chain, oldest first, into a full backup a server can start on.")]
pub(crate) struct BasebackupArgs {
    /// Connection string (key=value or postgresql:// URI); PG* variables fill the gaps.
    #[arg(short = 'd', long = "dbname", value_name = "CONNINFO")]
    pub(crate) conninfo: Option<String>,
    /// The directory to write the backup into (missing or empty).
    #[arg(short = 'D', long = "pgdata", value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Output format.
    #[arg(short = 'F', long, value_enum, default_value_t = FormatArg::Plain)]
    pub(crate) format: FormatArg,
    /// How the WAL needed by the backup is included.
    #[arg(short = 'X', long, value_enum, default_value_t = WalArg::Stream)]
    pub(crate) wal_method: WalArg,
    /// Checkpoint mode at the start of the backup.
    #[arg(short = 'c', long, value_enum, default_value_t = CheckpointArg::Spread)]
    pub(crate) checkpoint: CheckpointArg,
    /// Server-side compression: server-gzip[:N], server-lz4[:N], server-zstd[:N|DETAIL].
    #[arg(short = 'Z', long, value_name = "METHOD")]
    pub(crate) compress: Option<String>,
    /// Maximum transfer rate in kB/s (suffix k or M; 32k to 1024M).
    #[arg(short = 'r', long, value_name = "RATE")]
    pub(crate) max_rate: Option<String>,
    /// Manifest checksum algorithm: NONE, CRC32C (default), SHA224, SHA256, SHA384, SHA512.
    #[arg(long, value_name = "ALGORITHM")]
    pub(crate) manifest_checksums: Option<String>,
    /// Do not ask for a backup manifest (plain format is then not verified).
    #[arg(long)]
    pub(crate) no_manifest: bool,
    /// Stream the WAL through this existing physical slot (with --wal-method stream).
    #[arg(short = 'S', long)]
    pub(crate) slot: Option<String>,
    /// Show progress on stderr.
    #[arg(short = 'P', long)]
    pub(crate) progress: bool,
    /// The backup label.
    #[arg(short = 'l', long, default_value = "walstream basebackup")]
    pub(crate) label: String,
    /// Relocate a tablespace: OLDDIR=NEWDIR (plain format); repeatable.
    #[arg(short = 'T', long = "tablespace-mapping", value_name = "OLDDIR=NEWDIR")]
    pub(crate) tablespace_mapping: Vec<String>,
    /// Do not verify data checksums on the server while reading.
    #[arg(long)]
    pub(crate) no_verify_checksums: bool,
    /// Do not fsync the finished backup (faster; unsafe if this machine crashes soon after).
    #[arg(short = 'N', long)]
    pub(crate) no_sync: bool,
    /// Take an incremental backup on top of the backup with this backup_manifest
    /// (PostgreSQL 17+, summarize_wal = on).
    #[arg(short = 'i', long, value_name = "MANIFEST")]
    pub(crate) incremental: Option<PathBuf>,
}

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FormatArg {
    /// Extract into DIR.
    Plain,
    /// Keep the tar archives.
    Tar,
}

/// `--wal-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WalArg {
    /// WAL in the main archive, sent at the end of the backup.
    Fetch,
    /// WAL streamed over a second connection while the backup runs.
    Stream,
    /// No WAL (the backup needs a WAL archive to be restored).
    None,
}

/// `--checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CheckpointArg {
    /// Request an immediate checkpoint.
    Fast,
    /// Wait for a spread checkpoint.
    Spread,
}

/// Parses `--compress`: `server-METHOD[:LEVEL|DETAIL]` → (method, detail).
fn parse_compress(spec: &str) -> Result<(String, Option<String>), CliError> {
    let usage = |why: &str| {
        CliError::usage(format!("--compress {spec:?}: {why}")).hint(
            "use server-gzip[:LEVEL], server-lz4[:LEVEL] or server-zstd[:LEVEL|DETAIL], \
             e.g. server-zstd:level=5,workers=2",
        )
    };
    let Some(rest) = spec.strip_prefix("server-") else {
        return Err(usage("only server-side compression is supported"));
    };
    let (method, detail) = match rest.split_once(':') {
        Some((m, d)) => (m, Some(d)),
        None => (rest, None),
    };
    if !matches!(method, "gzip" | "lz4" | "zstd") {
        return Err(usage("unknown method"));
    }
    let detail = match detail {
        None => None,
        Some("") => return Err(usage("empty detail")),
        Some(d) if d.bytes().all(|b| b.is_ascii_digit()) => Some(format!("level={d}")),
        Some(d) => Some(d.to_owned()),
    };
    Ok((method.to_owned(), detail))
}

/// Parses `--max-rate` into kB/s: a number with an optional `k` or `M` suffix.
fn parse_rate(text: &str) -> Result<u32, CliError> {
    let usage = || {
        CliError::usage(format!("--max-rate {text:?} is not a rate"))
            .hint("give kB/s as a number, or with a suffix: 32k, 500k, 20M (32k to 1024M)")
    };
    let t = text.trim();
    let (num, mult) = if let Some(n) = t.strip_suffix('M') {
        (n, 1024u64)
    } else if let Some(n) = t.strip_suffix('k') {
        (n, 1)
    } else {
        (t, 1)
    };
    let n: u64 = num.trim().parse().map_err(|_| usage())?;
    let kb = n.checked_mul(mult).ok_or_else(usage)?;
    if !(32..=1_048_576).contains(&kb) {
        return Err(usage());
    }
    u32::try_from(kb).map_err(|_| usage())
}

/// A simple progress line on stderr, redrawn at most every 200 ms.
fn progress_printer() -> impl FnMut(&Progress) + Send + 'static {
    let mut last: Option<Instant> = None;
    move |p: &Progress| {
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(200)) {
            return;
        }
        last = Some(now);
        eprint!("\r{}", progress_line(p));
        let _ = std::io::stderr().flush();
    }
}

fn progress_line(p: &Progress) -> String {
    let kb = |b: u64| b / 1024;
    let place = match p.tablespace {
        Some(oid) => format!("tablespace {oid}"),
        None => "main directory".to_owned(),
    };
    match p.bytes_total {
        Some(total) if total > 0 => {
            let pct = p.bytes_done.saturating_mul(100) / total;
            format!(
                "{}/{} kB ({}%), archive {} ({place})   ",
                kb(p.bytes_done),
                kb(total),
                pct.min(100),
                p.archive + 1
            )
        }
        _ => format!(
            "{} kB, archive {} ({place})   ",
            kb(p.bytes_done),
            p.archive + 1
        ),
    }
}

/// One line for a backup error, with a hint where we know the next step; `incremental`
/// when the backup was an incremental one.
fn backup_error(err: walstream_backup::Error, incremental: bool) -> CliError {
    use walstream_backup::Error as E;
    match err {
        E::Conn(e) if incremental && e.db_error().is_some() => {
            // The step that failed (uploading the manifest, or the backup itself).
            let step = e.db_error().and_then(|db| {
                let text = e.to_string();
                let step = text.strip_suffix(&db.to_string())?.trim_end_matches(": ");
                (!step.is_empty()).then(|| step.to_owned())
            });
            let mut c = CliError::from(e).hint(
                "--incremental needs the backup_manifest of an earlier backup of this same \
                 server, and summarize_wal = on since before that backup",
            );
            if let Some(step) = step {
                c = c.context(&step);
            }
            c
        }
        E::Conn(e) => CliError::from(e),
        E::WalStream(inner) => backup_error(*inner, false).context("streaming the WAL"),
        E::Io { .. }
            if err
                .to_string()
                .contains("tablespace directory is not empty") =>
        {
            CliError::other(with_sources(&err)).hint(
                "relocate the tablespace into a missing or empty directory with \
                 -T OLDDIR=NEWDIR, or use --format tar",
            )
        }
        E::Io { .. } if err.to_string().contains("not empty") => {
            CliError::other(with_sources(&err)).hint("give -D a missing or empty directory")
        }
        E::Unsupported(_) if incremental => CliError::new(Category::Usage, with_sources(&err))
            .hint("take a full backup (without --incremental), or use PostgreSQL 17 or later"),
        E::Unsupported(_) => CliError::new(Category::Usage, with_sources(&err))
            .hint("drop the option, or use a newer PostgreSQL server"),
        E::Verification { problems } => CliError::other(format!(
            "the backup does not match its manifest ({} problem(s)): {}",
            problems.len(),
            problems
                .iter()
                .take(3)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
        .hint("the directory stays marked incomplete; take the backup again"),
        other => CliError::other(with_sources(&other)),
    }
}

fn with_sources(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    message
}

pub(crate) async fn run(args: &BasebackupArgs) -> Result<(), CliError> {
    let (compression, compression_detail) = match &args.compress {
        Some(spec) => {
            let (m, d) = parse_compress(spec)?;
            (Some(m), d)
        }
        None => (None, None),
    };
    let max_rate = args.max_rate.as_deref().map(parse_rate).transpose()?;
    let manifest_checksums = args
        .manifest_checksums
        .as_deref()
        .map(|a| {
            ChecksumAlgorithm::from_name(a).ok_or_else(|| {
                CliError::usage(format!("unknown manifest checksum algorithm {a:?}"))
                    .hint("use NONE, CRC32C, SHA224, SHA256, SHA384 or SHA512")
            })
        })
        .transpose()?;
    if args.format == FormatArg::Tar && !args.tablespace_mapping.is_empty() {
        return Err(CliError::usage("--tablespace-mapping needs --format plain")
            .hint("tar format keeps the archives as sent; map tablespaces when extracting them"));
    }
    if args.slot.is_some() && args.wal_method != WalArg::Stream {
        return Err(CliError::usage("--slot needs --wal-method stream"));
    }
    if let Some(manifest) = &args.incremental {
        // Checked before DIR is created.
        if let Err(e) = std::fs::File::open(manifest) {
            return Err(
                CliError::io(&format!("--incremental {}", manifest.display()), &e)
                    .hint("give the backup_manifest file of the earlier backup"),
            );
        }
    }
    let options = BaseBackupOptions {
        label: Some(args.label.clone()),
        progress: args.progress,
        checkpoint: match args.checkpoint {
            CheckpointArg::Fast => CheckpointMode::Fast,
            CheckpointArg::Spread => CheckpointMode::Spread,
        },
        compression,
        compression_detail,
        max_rate,
        // Like pg_basebackup: tar format describes tablespaces in tablespace_map.
        tablespace_map: args.format == FormatArg::Tar,
        no_verify_checksums: args.no_verify_checksums,
        manifest: if args.no_manifest {
            ManifestMode::No
        } else {
            ManifestMode::Yes
        },
        manifest_checksums,
        ..BaseBackupOptions::default()
    };
    let config = conn::config(args.conninfo.as_deref(), ReplicationMode::Physical)?;
    let wal = match args.wal_method {
        WalArg::Fetch => WalMethod::Fetch,
        WalArg::None => WalMethod::None,
        WalArg::Stream => {
            let mut s = WalStream::new(config.clone());
            if let Some(slot) = &args.slot {
                s = s.slot(slot.clone());
            }
            WalMethod::Stream(Box::new(s))
        }
    };
    let format = match args.format {
        FormatArg::Plain => Format::Plain,
        FormatArg::Tar => Format::Tar,
    };
    // Checked before DIR is created.
    let mut mappings = Vec::new();
    for m in &args.tablespace_mapping {
        let Some((old, new)) = m.split_once('=') else {
            return Err(CliError::usage(format!("--tablespace-mapping {m:?}"))
                .hint("write it as OLDDIR=NEWDIR, both absolute paths"));
        };
        if !std::path::Path::new(old).is_absolute() || new.is_empty() {
            return Err(CliError::usage(format!(
                "--tablespace-mapping {m:?}: OLDDIR must be the tablespace's absolute location \
                 on the server, NEWDIR a directory"
            ))
            .hint("write it as OLDDIR=NEWDIR, e.g. -T /srv/ts1=/backups/b1-ts1"));
        }
        mappings.push((old, new));
    }
    let incremental = args.incremental.is_some();
    let mut target =
        DirectoryTarget::create(&args.dir, format).map_err(|e| backup_error(e, false))?;
    if args.no_sync {
        target = target.no_sync();
    }
    for (old, new) in mappings {
        target = target.map_tablespace(old, new);
    }
    let mut backup = BaseBackup::new(options).wal_method(wal);
    if let Some(manifest) = &args.incremental {
        backup = backup.incremental_from(manifest.as_path());
    }
    if args.progress {
        backup = backup.on_progress(progress_printer());
    }
    // A spread checkpoint may keep the server silent for minutes.
    backup = backup.idle_timeout(match args.checkpoint {
        CheckpointArg::Fast => Some(Duration::from_secs(600)),
        CheckpointArg::Spread => None,
    });
    // Ctrl-C / SIGTERM abandon the backup: the directory keeps its incomplete marker. The
    // handlers are installed explicitly, so a signal is honoured even when the process
    // inherited an ignored SIGINT (as commands started in the background by a shell do).
    let mut stop = crate::stream::shutdown_on_signals();
    let mut client = conn::connect(args.conninfo.as_deref(), ReplicationMode::Physical).await?;
    let outcome = tokio::select! {
        r = backup.run_to_directory(&mut client, target) => r,
        Ok(_) = stop.wait_for(|s| *s) => {
            if args.progress {
                eprintln!();
            }
            return Err(CliError::other(format!(
                "backup into {} interrupted by a signal (the directory is marked incomplete)",
                args.dir.display()
            )));
        }
    };
    if args.progress {
        eprintln!();
    }
    let (result, dir) = outcome.map_err(|e| {
        backup_error(e, incremental).context(&format!(
            "backup into {} failed (the directory is marked incomplete)",
            args.dir.display()
        ))
    })?;
    if args.progress {
        if let Some(p) = &result.last_progress {
            eprintln!("{}", progress_line(p).trim_end());
        }
    }
    println!(
        "{}backup complete in {}: start {} end {} (timeline {}), {} archive(s){}",
        if incremental { "incremental " } else { "" },
        dir.display(),
        result.start_lsn,
        result.end_lsn,
        result.end_timeline,
        result.archives,
        match result.wal_streamed_to {
            Some(l) => format!(", WAL streamed to {l}"),
            None => String::new(),
        }
    );
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_specs() {
        assert_eq!(
            parse_compress("server-gzip").unwrap(),
            ("gzip".into(), None)
        );
        assert_eq!(
            parse_compress("server-gzip:5").unwrap(),
            ("gzip".into(), Some("level=5".into()))
        );
        assert_eq!(
            parse_compress("server-zstd:level=3,workers=2").unwrap(),
            ("zstd".into(), Some("level=3,workers=2".into()))
        );
        assert_eq!(parse_compress("server-lz4").unwrap(), ("lz4".into(), None));
        for bad in ["gzip", "client-gzip", "server-bzip2", "server-gzip:"] {
            let e = parse_compress(bad).unwrap_err();
            assert_eq!(e.category(), Category::Usage, "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("32").unwrap(), 32);
        assert_eq!(parse_rate("500k").unwrap(), 500);
        assert_eq!(parse_rate("20M").unwrap(), 20 * 1024);
        assert_eq!(parse_rate("1024M").unwrap(), 1_048_576);
        for bad in ["31", "2000M", "x", "", "-5", "99999999999999999999M"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn progress_lines() {
        let p = Progress {
            bytes_done: 512 * 1024,
            bytes_total: Some(1024 * 1024),
            archive: 1,
            tablespace: None,
            archive_bytes_done: 0,
            archive_bytes_total: None,
        };
        assert_eq!(
            progress_line(&p).trim_end(),
            "512/1024 kB (50%), archive 2 (main directory)"
        );
        let p = Progress {
            bytes_total: None,
            tablespace: Some(16384),
            ..p
        };
        assert_eq!(
            progress_line(&p).trim_end(),
            "512 kB, archive 2 (tablespace 16384)"
        );
    }
}
