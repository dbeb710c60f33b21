//! Operating-system plumbing: running as root, the `postgres` user, running commands.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use crate::Error;

/// The OS user that runs the server when the tests run as root.
pub(crate) const SERVER_OS_USER: &str = "postgres";

/// Whether this process runs with effective uid 0 (`/proc/self` is owned by the euid).
pub(crate) fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| match std::fs::metadata("/proc/self") {
        Ok(meta) => meta.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false),
    })
}

/// Where cluster directories are created: `/tmp` as root (the `postgres` user must be able to
/// traverse every parent, and root's temp dir may live under `/root`), else the temp dir.
pub(crate) fn scratch_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("WALSTREAM_TEST_TMPDIR") {
        return PathBuf::from(dir);
    }
    if is_root() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    }
}

/// Makes sure the `postgres` OS user exists when running as root (once per process).
pub(crate) fn ensure_server_user() -> Result<(), Error> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    if !is_root() {
        return Ok(());
    }
    let result = DONE.get_or_init(|| {
        if user_exists() {
            return Ok(());
        }
        let out = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                SERVER_OS_USER,
            ])
            .output()
            .map_err(|e| format!("running useradd: {e}"))?;
        // Another test process may have created it concurrently.
        if out.status.success() || user_exists() {
            Ok(())
        } else {
            Err(format!(
                "useradd --system {SERVER_OS_USER} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    result
        .clone()
        .map_err(|e| Error::io(e, std::io::Error::other("cannot create server user")))
}

fn user_exists() -> bool {
    Command::new("id")
        .arg(SERVER_OS_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A command for a server-side program (`initdb`, `pg_ctl`): as the `postgres` user when root.
///
/// The working directory is set to `cwd` (which the server user can enter): PostgreSQL's
/// programs look up the current directory and fail when it is not accessible.
pub(crate) fn server_command(program: &Path, cwd: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = if has_runuser() {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVER_OS_USER, "--"]);
            c
        } else {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                SERVER_OS_USER,
                "--regid",
                SERVER_OS_USER,
                "--init-groups",
                "--",
            ]);
            c
        };
        c.arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.current_dir(cwd);
    clean_pg_env(&mut cmd);
    cmd
}

/// A command for a client program (`psql`), run as the current user.
pub(crate) fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    clean_pg_env(&mut cmd);
    cmd
}

fn has_runuser() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new("runuser")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Removes every `PG*` variable so the developer's environment cannot redirect the harness.
fn clean_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("LC_ALL", "C").env("TZ", "UTC");
}

/// Runs `cmd`, returning its output, or [`Error::Command`] when it exits unsuccessfully.
pub(crate) fn run(cmd: &mut Command) -> Result<Output, Error> {
    let out = run_unchecked(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(command_error(cmd, out))
    }
}

/// Runs `cmd` and returns its output whatever the exit status.
pub(crate) fn run_unchecked(cmd: &mut Command) -> Result<Output, Error> {
    cmd.stdin(Stdio::null());
    cmd.output()
        .map_err(|e| Error::io(format!("spawning `{}`", describe(cmd)), e))
}

pub(crate) fn command_error(cmd: &Command, out: Output) -> Error {
    Error::Command {
        command: describe(cmd),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Hands `path` (recursively) to the server's OS user when running as root (the server runs
/// as that user then and must own its tablespace and data directories); a no-op otherwise.
pub fn chown_to_server(path: &Path) -> Result<(), Error> {
    if !is_root() {
        return Ok(());
    }
    run(Command::new("chown").args([
        OsStr::new("-R"),
        OsStr::new(&format!("{SERVER_OS_USER}:")),
        path.as_os_str(),
    ]))
    .map(drop)
}

/// Sets a file's or directory's permission bits.
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {mode:o} {}", path.display()), e))
}
