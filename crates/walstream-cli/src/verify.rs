//! `walstream verifybackup`: check a plain-format base backup against its `backup_manifest`.
use std::path::PathBuf;

use walstream_backup::{VerifyOptions, verify_backup_with};

use crate::error::CliError;

/// Arguments of `walstream verifybackup`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream verifybackup /backups/2026-11-22          # like pg_verifybackup
  walstream verifybackup /backups/b1 --skip-checksums # presence and sizes only
  walstream verifybackup /backups/b1 -i pg_wal        # do not look at pg_wal

Checks the manifest's own checksum, files missing from or extra in the directory, every file's
size and checksum, and that the WAL segments the backup needs are in pg_wal. Prints one line
per problem and exits 1 if there is any, 0 for a valid backup.")]
pub(crate) struct VerifyArgs {
    /// The backup directory (plain format, holding backup_manifest).
    pub(crate) dir: PathBuf,
    /// Skip file checksums (check presence and size only).
    #[arg(short = 's', long)]
    pub(crate) skip_checksums: bool,
    /// Do not check for the WAL segments.
    #[arg(short = 'n', long)]
    pub(crate) no_wal: bool,
    /// A path (relative to DIR) to ignore, in addition to the defaults; repeatable.
    #[arg(short = 'i', long, value_name = "PATH")]
    pub(crate) ignore: Vec<String>,
}

pub(crate) fn run(args: &VerifyArgs) -> Result<(), CliError> {
    let mut options = VerifyOptions {
        skip_checksums: args.skip_checksums,
        check_wal: !args.no_wal,
        ..VerifyOptions::default()
    };
    options.ignore.extend(args.ignore.iter().cloned());
    let name = args.dir.display().to_string();
    let report = verify_backup_with(&args.dir, &options).map_err(|e| {
        CliError::other(format!("{name}: {e}"))
            .hint("give the directory of a plain-format backup taken with a manifest")
    })?;
    if report.is_ok() {
        println!(
            "backup successfully verified ({} files, {} bytes checksummed)",
            report.files_checksummed, report.bytes_checksummed
        );
        return Ok(());
    }
    for p in &report.problems {
        println!("{p}");
    }
    Err(CliError::other(format!(
        "{name}: {} problem(s) found; the backup is not usable as it is",
        report.problems.len()
    )))
}
