//! Finding the PostgreSQL installations to test against.

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The environment variable that selects the PostgreSQL installations to test.
pub const BINDIRS_VAR: &str = "WALSTREAM_PG_BINDIRS";

/// One PostgreSQL installation: a `bin` directory holding `initdb`, `pg_ctl`, `postgres` and
/// `psql`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgInstall {
    /// The `bin` directory.
    pub bindir: PathBuf,
    /// The major version (14, 15, ...).
    pub major: u32,
    /// The full version as `postgres --version` prints it, e.g. `15.18`.
    pub version: String,
}

impl PgInstall {
    /// Inspects a `bin` directory by running its `postgres --version`.
    pub fn from_bindir(bindir: impl Into<PathBuf>) -> Result<Self, String> {
        let bindir = bindir.into();
        let postgres = bindir.join("postgres");
        let out = Command::new(&postgres)
            .arg("--version")
            .output()
            .map_err(|e| format!("cannot run {}: {e}", postgres.display()))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "{} --version failed ({}): {}{}",
                postgres.display(),
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let (major, version) = parse_version(&text)
            .ok_or_else(|| format!("cannot parse `{}` from {}", text.trim(), postgres.display()))?;
        Ok(Self {
            bindir,
            major,
            version,
        })
    }

    /// The path of one of this installation's programs (`psql`, `pg_basebackup`, ...).
    pub fn bin(&self, program: &str) -> PathBuf {
        self.bindir.join(program)
    }
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into `(15, "15.18")`.
fn parse_version(text: &str) -> Option<(u32, String)> {
    let rest = text.trim().strip_prefix("postgres (PostgreSQL) ")?;
    let version = rest.split_whitespace().next()?;
    let major_text: String = version.chars().take_while(char::is_ascii_digit).collect();
    let major = major_text.parse().ok()?;
    Some((major, version.to_owned()))
}

const INSTALL_HELP: &str = "no PostgreSQL server installation found. Install one with \
`apt-get install postgresql-15`, or run `bash .ci/run` (which fetches PostgreSQL 14-18 into \
/opt/pgbin/<major>), or point WALSTREAM_PG_BINDIRS at one or more `bin` directories \
(separated by `:` or `,`), e.g. WALSTREAM_PG_BINDIRS=/opt/pgbin/16/bin";

/// The PostgreSQL installations the suite runs against, in the configured order.
///
/// `WALSTREAM_PG_BINDIRS` (a list of `bin` directories separated by `:` or `,`) selects them.
/// Without it the machine's PostgreSQL is used: `pg_config --bindir` from `PATH` when that
/// directory holds a server, else the newest of `/usr/lib/postgresql/*/bin` and
/// `/opt/pgbin/*/bin`.
///
/// # Panics
///
/// When no server is found, or a configured directory is not a working installation: a test
/// suite that silently tests nothing is worse than a failing one. The message says how to
/// install PostgreSQL.
pub fn servers() -> &'static [PgInstall] {
    static SERVERS: OnceLock<Result<Vec<PgInstall>, String>> = OnceLock::new();
    match SERVERS.get_or_init(discover) {
        Ok(list) => list,
        Err(message) => panic!("walstream-test-support: {message}"),
    }
}

fn discover() -> Result<Vec<PgInstall>, String> {
    if let Some(value) = std::env::var_os(BINDIRS_VAR) {
        let value = value.to_string_lossy().into_owned();
        let dirs: Vec<&str> = value
            .split([':', ','])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if dirs.is_empty() {
            return Err(format!("{BINDIRS_VAR} is set but empty; {INSTALL_HELP}"));
        }
        return dirs
            .into_iter()
            .map(|d| {
                PgInstall::from_bindir(d)
                    .map_err(|e| format!("{BINDIRS_VAR} entry `{d}` is unusable: {e}"))
            })
            .collect();
    }
    if let Some(dir) = pg_config_bindir() {
        if dir.join("postgres").is_file() {
            if let Ok(install) = PgInstall::from_bindir(&dir) {
                return Ok(vec![install]);
            }
        }
    }
    let mut found: Vec<PgInstall> = ["/usr/lib/postgresql", "/opt/pgbin"]
        .iter()
        .flat_map(|root| std::fs::read_dir(root).into_iter().flatten().flatten())
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("postgres").is_file())
        .filter_map(|bin| PgInstall::from_bindir(bin).ok())
        .collect();
    found.sort_by_key(|i| i.major);
    found
        .pop()
        .map(|newest| vec![newest])
        .ok_or_else(|| INSTALL_HELP.to_owned())
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let dir = Path::new(text.trim());
    (!dir.as_os_str().is_empty()).then(|| dir.to_path_buf())
}

/// Runs `body` once for every configured installation (see [`servers`]).
///
/// Each run is announced on standard error; a panic in one run does not stop the others, and
/// after all of them this function panics naming every version that failed.
///
/// This is the pattern for integration tests that must hold on every supported major:
///
/// ```no_run
/// use walstream_test_support::{for_each_server, Cluster, ClusterOptions};
///
/// #[test]
/// fn streams_inserts() {
///     for_each_server(|install| {
///         let cluster = Cluster::start(install, ClusterOptions::new()).unwrap();
///         // ...
///         # let _ = cluster;
///     });
/// }
/// ```
pub fn for_each_server(body: impl Fn(&PgInstall)) {
    let mut failed = Vec::new();
    for install in servers() {
        let outcome = catch_unwind(AssertUnwindSafe(|| body(install)));
        if outcome.is_err() {
            failed.push(format!(
                "PostgreSQL {} ({})",
                install.version,
                install.bindir.display()
            ));
        }
    }
    assert!(failed.is_empty(), "failed on: {}", failed.join(", "));
}

/// Reports a version-gated test's skip honestly. Returns `true` when the test should run.
///
/// When `condition` is false this prints `SKIPPED: <test>: <reason>` straight to the process's
/// standard error (past the test harness's output capture, so it shows in `cargo test`
/// output) and, when `WALSTREAM_SKIP_LOG` names a file, appends the same line to it (`.ci/run`
/// counts them in its summary). The test should then return without asserting anything:
///
/// ```no_run
/// # use walstream_test_support::{skip_unless, Cluster};
/// # fn example(cluster: &Cluster) {
/// if !skip_unless(cluster.major() >= 16, "logical decoding on standbys needs PostgreSQL 16") {
///     return;
/// }
/// # }
/// ```
pub fn skip_unless(condition: bool, reason: &str) -> bool {
    let log = std::env::var_os("WALSTREAM_SKIP_LOG").map(PathBuf::from);
    skip_unless_to(condition, reason, log.as_deref())
}

fn skip_unless_to(condition: bool, reason: &str, log: Option<&Path>) -> bool {
    if condition {
        return true;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let line = format!("SKIPPED: {test}: {reason}\n");
    // Writing to the handle (not eprint!) bypasses libtest's capture on purpose.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Ok(mut file) = file {
            let _ = file.write_all(line.as_bytes());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_version_lines() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some((15, "15.18".to_owned()))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 18.6"),
            Some((18, "18.6".to_owned()))
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 17beta1"),
            Some((17, "17beta1".into()))
        );
        assert_eq!(parse_version("pg_ctl (PostgreSQL) 15.1"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn skips_are_logged_and_runs_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("skips.txt");
        assert!(skip_unless_to(true, "never logged", Some(&log)));
        assert!(!log.exists());
        assert!(!skip_unless_to(false, "needs PostgreSQL 99", Some(&log)));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(
            text.starts_with("SKIPPED: install::tests::skips_are_logged"),
            "{text}"
        );
        assert!(text.trim_end().ends_with(": needs PostgreSQL 99"), "{text}");
    }
}
