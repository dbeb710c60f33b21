//! Resolving the host, hostaddr and port lists into the servers to try, plus the few facts
//! about the local system libpq's defaults depend on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The default PostgreSQL port.
pub const DEFAULT_PORT: u16 = 5432;

/// The Unix-socket directories libpq builds may default to: Debian's and most packagers'
/// `/var/run/postgresql`, and upstream's `/tmp`. walstream uses the first that exists.
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// One server to try, in the order of the host list (or shuffled by
/// `load_balance_hosts=random`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// Where to connect.
    pub addr: TargetAddr,
    /// The `host` entry as written, empty if this entry of the list was left empty (or there
    /// was no `host` at all). Used for `.pgpass` matching.
    pub host: String,
    /// Position of this entry in the host list.
    pub index: usize,
}

/// The address of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAddr {
    /// A TCP connection.
    Tcp {
        /// The host name: the `host` entry, or the `hostaddr` entry written as text if `host`
        /// was not given. Resolved by DNS unless `hostaddr` is set; used for TLS server-name
        /// verification and SNI either way.
        host: String,
        /// The numeric address to connect to, skipping name resolution (`hostaddr`).
        hostaddr: Option<IpAddr>,
        /// The TCP port.
        port: u16,
    },
    /// A Unix-domain socket.
    Unix {
        /// The socket file, `<dir>/.s.PGSQL.<port>`. A path whose first character is `@` names
        /// a socket in Linux's abstract namespace: the `@` stands for the leading NUL byte.
        path: PathBuf,
        /// The port number the socket file name was built from (the server reports it, and
        /// `.pgpass` matches on it).
        port: u16,
    },
}

impl Target {
    /// The port, whichever the transport.
    #[must_use]
    pub const fn port(&self) -> u16 {
        match &self.addr {
            TargetAddr::Tcp { port, .. } | TargetAddr::Unix { port, .. } => *port,
        }
    }

    /// The name to verify the server certificate against and send as SNI, `None` for a Unix
    /// socket (where libpq never uses TLS).
    #[must_use]
    pub fn server_name(&self) -> Option<&str> {
        match &self.addr {
            TargetAddr::Tcp { host, .. } => Some(host),
            TargetAddr::Unix { .. } => None,
        }
    }

    /// The host name `.pgpass` entries are matched against, as libpq does: the `host` entry;
    /// else the `hostaddr` entry; `localhost` for the default Unix-socket directory.
    #[must_use]
    pub fn pgpass_host(&self) -> &str {
        match &self.addr {
            TargetAddr::Tcp { host, .. } => host,
            TargetAddr::Unix { .. } => {
                if self.host.is_empty() || DEFAULT_SOCKET_DIRS.contains(&self.host.as_str()) {
                    "localhost"
                } else {
                    &self.host
                }
            }
        }
    }
}

/// Whether a `host` entry names a Unix-socket directory: an absolute path, or `@` for the
/// abstract namespace.
pub(super) fn is_unix_socket_dir(host: &str) -> bool {
    host.starts_with('/') || host.starts_with('@')
}

/// `<dir>/.s.PGSQL.<port>`.
pub(super) fn socket_path(dir: &str, port: u16) -> PathBuf {
    Path::new(dir).join(format!(".s.PGSQL.{port}"))
}

/// The default socket directory: the first of [`DEFAULT_SOCKET_DIRS`] that exists.
pub(super) fn default_socket_dir() -> &'static str {
    DEFAULT_SOCKET_DIRS
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap_or(DEFAULT_SOCKET_DIRS[0])
}

/// Shuffles `items` in place (Fisher–Yates) with randomness from `next`, which returns a
/// uniformly random `u64`.
pub(super) fn shuffle<T>(items: &mut [T], mut next: impl FnMut() -> u64) {
    for i in (1..items.len()).rev() {
        let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
        // `bound` is at most the slice length, so the remainder fits in usize.
        let j = usize::try_from(next() % bound).unwrap_or(0);
        items.swap(i, j);
    }
}

/// The name of the operating-system user this process runs as, like libpq's
/// `pg_fe_getusername`: the password-database entry of the effective user ID (found through
/// the owner of `/proc/self`, since this crate has no `unsafe` to call `geteuid`), else the
/// `USER` or `LOGNAME` environment variable.
pub(super) fn os_user_name() -> Option<String> {
    passwd_entry_of_self()
        .map(|e| e.0)
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
}

/// The home directory: `HOME`, else the password-database entry of the effective user ID.
pub(super) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| passwd_entry_of_self().map(|e| PathBuf::from(e.1)))
}

/// `(name, home)` from `/etc/passwd` for the effective user ID.
#[cfg(unix)]
fn passwd_entry_of_self() -> Option<(String, String)> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_lookup(&passwd, uid)
}

#[cfg(not(unix))]
fn passwd_entry_of_self() -> Option<(String, String)> {
    None
}

/// Finds `uid` in the text of an `/etc/passwd` file: `name:pw:uid:gid:gecos:home:shell`.
pub(super) fn passwd_lookup(passwd: &str, uid: u32) -> Option<(String, String)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        let home = fields.nth(2)?;
        (entry_uid == uid && !name.is_empty()).then(|| (name.to_owned(), home.to_owned()))
    })
}
