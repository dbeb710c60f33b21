//! A throwaway PostgreSQL cluster.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::install::{PgInstall, servers};
use crate::roles::{self, Role};
use crate::tls::TlsFiles;
use crate::{Error, os};

/// The address the server listens on (and the host in [`Cluster::url`]).
pub const HOST: &str = "127.0.0.1";

/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "120";

/// How many times a start is retried when another process grabbed the chosen port.
const PORT_ATTEMPTS: usize = 8;

/// Extra configuration for [`Cluster::start`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    settings: Vec<(String, String)>,
    initdb_args: Vec<String>,
}

impl ClusterOptions {
    /// The defaults: the suite's settings, nothing extra.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or overrides) a `postgresql.conf` setting, e.g.
    /// `.setting("logical_decoding_work_mem", "64kB")`. The value is quoted by the harness.
    #[must_use]
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Adds an `initdb` argument, e.g. `--wal-segsize=1` or `--data-checksums`.
    #[must_use]
    pub fn initdb_arg(mut self, arg: impl Into<String>) -> Self {
        self.initdb_args.push(arg.into());
        self
    }
}

/// A row of `pg_replication_slots`. LSNs are raw 64-bit positions (wrap them in
/// `walstream_proto::Lsn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationSlot {
    /// `slot_name`.
    pub slot_name: String,
    /// `plugin` (logical slots only).
    pub plugin: Option<String>,
    /// `slot_type`: `physical` or `logical`.
    pub slot_type: String,
    /// `database` (logical slots only).
    pub database: Option<String>,
    /// `temporary`.
    pub temporary: bool,
    /// `active`.
    pub active: bool,
    /// `active_pid`.
    pub active_pid: Option<u32>,
    /// `restart_lsn`.
    pub restart_lsn: Option<u64>,
    /// `confirmed_flush_lsn` (logical slots only).
    pub confirmed_flush_lsn: Option<u64>,
    /// `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    pub wal_status: Option<String>,
}

/// A row of `pg_stat_replication` (one per WAL sender, physical or logical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatReplication {
    /// The WAL sender's process id.
    pub pid: u32,
    /// `application_name` of the client.
    pub application_name: String,
    /// `state`: `startup`, `catchup`, `streaming`, `backup`, `stopping`.
    pub state: String,
    /// `sent_lsn`.
    pub sent_lsn: Option<u64>,
    /// `write_lsn` as reported by the client's standby status updates.
    pub write_lsn: Option<u64>,
    /// `flush_lsn` as reported by the client.
    pub flush_lsn: Option<u64>,
    /// `replay_lsn` as reported by the client.
    pub replay_lsn: Option<u64>,
    /// `sync_state`.
    pub sync_state: String,
}

/// A running throwaway PostgreSQL cluster; stopped and deleted on drop.
///
/// Made by [`Cluster::start`]: a fresh `initdb`, the suite's roles ([`Role`]) and
/// `pg_hba.conf`, TLS ([`TlsFiles`]) and these settings (overridable per test with
/// [`ClusterOptions::setting`]): `listen_addresses = '127.0.0.1'` on a free port, a private
/// unix-socket directory, `wal_level = logical`, `max_wal_senders = 20`,
/// `max_replication_slots = 20`, `max_prepared_transactions = 10`, `fsync = off`, `ssl = on`,
/// `shared_buffers = 16MB`, connection and replication-command logging to `server.log` in the
/// data directory.
///
/// On drop the server is stopped (`pg_ctl stop -m immediate`) and the directories deleted;
/// when the drop happens during a panic, the tail of the server log is printed first. Set
/// `WALSTREAM_KEEP_CLUSTERS=1` to keep the directories for inspection.
#[derive(Debug)]
pub struct Cluster {
    install: PgInstall,
    root: Option<TempDir>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    tls: TlsFiles,
    port: u16,
}

impl Cluster {
    /// Starts a cluster of the first configured installation with default options.
    ///
    /// Tests that must hold on every configured major use [`crate::for_each_server`] with
    /// [`Cluster::start`] instead.
    pub fn start_default() -> Result<Self, Error> {
        let install = servers()
            .first()
            .expect("servers() panics rather than return no server");
        Self::start(install, ClusterOptions::new())
    }

    /// Creates, configures and starts a new cluster of `install`.
    pub fn start(install: &PgInstall, options: ClusterOptions) -> Result<Self, Error> {
        os::ensure_server_user()?;
        let base = os::scratch_base();
        let root = tempfile::Builder::new()
            .prefix("walstream-pg-")
            .tempdir_in(&base)
            .map_err(|e| Error::io(format!("creating a temp dir in {}", base.display()), e))?;
        os::chmod(root.path(), 0o755)?;
        let data_dir = root.path().join("data");
        let socket_dir = root.path().join("sock");
        for dir in [&data_dir, &socket_dir] {
            std::fs::create_dir(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            os::chmod(dir, 0o700)?;
        }
        os::chown_to_server(&data_dir)?;
        os::chown_to_server(&socket_dir)?;
        let tls = TlsFiles::generate(&root.path().join("tls"))?;

        let mut initdb = os::server_command(&install.bin("initdb"), root.path());
        initdb
            .arg("-D")
            .arg(&data_dir)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .args(&options.initdb_args);
        os::run(&mut initdb)?;

        let log_file = data_dir.join("server.log");
        let mut cluster = Self {
            install: install.clone(),
            root: Some(root),
            data_dir,
            socket_dir,
            log_file,
            tls,
            port: 0,
        };
        cluster.write_config_files(&options)?;
        cluster.start_on_free_port(&options)?;
        cluster.execute(&roles::create_roles_sql())?;
        Ok(cluster)
    }

    fn write_config_files(&self, options: &ClusterOptions) -> Result<(), Error> {
        let hba = self.data_dir.join("pg_hba.conf");
        std::fs::write(&hba, roles::pg_hba_conf())
            .map_err(|e| Error::io(format!("writing {}", hba.display()), e))?;
        let conf = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| Error::io(format!("opening {}", conf.display()), e))?;
        file.write_all(b"\n# walstream-test-support\ninclude 'walstream.conf'\n")
            .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
        self.write_walstream_conf(options)
    }

    fn write_walstream_conf(&self, options: &ClusterOptions) -> Result<(), Error> {
        let quote = |v: &str| format!("'{}'", v.replace('\'', "''"));
        let path = |p: &Path| quote(&p.to_string_lossy());
        let mut settings: Vec<(String, String)> = vec![
            ("listen_addresses".into(), quote(HOST)),
            ("port".into(), self.port.to_string()),
            ("unix_socket_directories".into(), path(&self.socket_dir)),
            ("wal_level".into(), "logical".into()),
            ("max_wal_senders".into(), "20".into()),
            ("max_replication_slots".into(), "20".into()),
            ("max_prepared_transactions".into(), "10".into()),
            ("fsync".into(), "off".into()),
            ("shared_buffers".into(), quote("16MB")),
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), path(&self.tls.server_cert)),
            ("ssl_key_file".into(), path(&self.tls.server_key)),
            ("ssl_ca_file".into(), path(&self.tls.server_ca_file())),
            ("log_connections".into(), "on".into()),
            ("log_replication_commands".into(), "on".into()),
            ("log_line_prefix".into(), quote("%m [%p] %q%u@%d ")),
            ("timezone".into(), quote("UTC")),
        ];
        for (name, value) in &options.settings {
            settings.retain(|(n, _)| n != name);
            settings.push((name.clone(), quote(value)));
        }
        let mut text = String::from("# Written by walstream-test-support.\n");
        for (name, value) in settings {
            let _ = writeln!(text, "{name} = {value}");
        }
        let file = self.data_dir.join("walstream.conf");
        std::fs::write(&file, text)
            .map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
        os::chown_to_server(&self.data_dir)
    }

    fn start_on_free_port(&mut self, options: &ClusterOptions) -> Result<(), Error> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            self.write_walstream_conf(options)?;
            match self.start_server() {
                Ok(()) => return Ok(()),
                Err(err) => {
                    let log = self.log_contents();
                    let conflict = log.contains("could not bind")
                        || log.contains("Address already in use")
                        || log.contains("could not create any TCP/IP sockets");
                    if !conflict {
                        return Err(err);
                    }
                    // Truncate the log so the next attempt's failure is not misread.
                    let _ = std::fs::write(&self.log_file, "");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| self.start_error("no port attempt was made")))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), Error> {
        let mut cmd = os::server_command(&self.install.bin("pg_ctl"), self.scratch_root());
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        cmd.args(["-w", "-t", PG_CTL_TIMEOUT_SECS]).args(args);
        // pg_ctl start leaves the postmaster attached to its stdout/stderr unless redirected:
        // with -l it logs to the file, but the pipes must not be inherited or output() would
        // wait for the server to exit.
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        os::run(&mut cmd).map(drop)
    }

    fn start_error(&self, reason: &str) -> Error {
        Error::Start {
            data_dir: self.data_dir.clone(),
            reason: reason.to_owned(),
            log: self.log_tail(60),
        }
    }

    fn scratch_root(&self) -> &Path {
        self.data_dir.parent().unwrap_or(&self.data_dir)
    }

    /// Starts the (stopped) server again on the same port.
    pub fn start_server(&self) -> Result<(), Error> {
        self.pg_ctl(&["start"])
            .map_err(|e| self.start_error(&e.to_string()))
    }

    /// Stops the server with `pg_ctl stop -m fast` (clients are disconnected, a shutdown
    /// checkpoint is written; WAL senders send everything first).
    pub fn stop_fast(&self) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-m", "fast"])
    }

    /// Stops the server with `pg_ctl stop -m immediate` (like a crash: no checkpoint).
    pub fn stop_immediate(&self) -> Result<(), Error> {
        self.pg_ctl(&["stop", "-m", "immediate"])
    }

    /// Restarts the server (`pg_ctl restart -m fast`), keeping its port.
    pub fn restart(&self) -> Result<(), Error> {
        self.pg_ctl(&["restart", "-m", "fast"])
            .map_err(|e| self.start_error(&e.to_string()))
    }

    /// Makes and starts a streaming hot standby of this cluster: the server's own
    /// `pg_basebackup -R -X stream` into a new directory, started on another free port with
    /// `options` (give the primary's settings again when they matter to a standby, e.g.
    /// `max_connections`). The roles come with the backup. Promote it with
    /// `standby.psql("SELECT pg_promote()")`; stopped and deleted on drop like any cluster.
    pub fn start_standby(&self, options: ClusterOptions) -> Result<Self, Error> {
        let base = os::scratch_base();
        let root = tempfile::Builder::new()
            .prefix("walstream-pg-standby-")
            .tempdir_in(&base)
            .map_err(|e| Error::io(format!("creating a temp dir in {}", base.display()), e))?;
        os::chmod(root.path(), 0o755)?;
        let data_dir = root.path().join("data");
        let socket_dir = root.path().join("sock");
        for dir in [&data_dir, &socket_dir] {
            std::fs::create_dir(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            os::chmod(dir, 0o700)?;
        }
        os::chown_to_server(&data_dir)?;
        os::chown_to_server(&socket_dir)?;
        let tls = TlsFiles::generate(&root.path().join("tls"))?;
        let mut backup = os::server_command(&self.install.bin("pg_basebackup"), root.path());
        backup
            .arg("-D")
            .arg(&data_dir)
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        os::run(&mut backup)?;
        // pg_basebackup 16+ writes options (sslcertmode, ...) that the server's walreceiver
        // rejects when it loads an older libpq: keep only what is needed.
        let auto = data_dir.join("postgresql.auto.conf");
        let text = std::fs::read_to_string(&auto)
            .map_err(|e| Error::io(format!("reading {}", auto.display()), e))?;
        let mut kept: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("primary_conninfo"))
            .map(|l| format!("{l}\n"))
            .collect();
        let _ = writeln!(
            kept,
            "primary_conninfo = 'host=''{}'' port={} user=postgres application_name=standby'",
            self.socket_dir.display(),
            self.port
        );
        std::fs::write(&auto, kept)
            .map_err(|e| Error::io(format!("writing {}", auto.display()), e))?;
        let log_file = data_dir.join("server.log");
        // The backup copied the primary's log: start the standby's afresh.
        std::fs::write(&log_file, "")
            .map_err(|e| Error::io(format!("truncating {}", log_file.display()), e))?;
        let mut standby = Self {
            install: self.install.clone(),
            root: Some(root),
            data_dir,
            socket_dir,
            log_file,
            tls,
            port: 0,
        };
        standby.start_on_free_port(&options)?;
        Ok(standby)
    }

    /// The installation this cluster runs.
    pub fn install(&self) -> &PgInstall {
        &self.install
    }

    /// The server's major version.
    pub fn major(&self) -> u32 {
        self.install.major
    }

    /// The TCP port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host for TCP connections: `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// The directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The suite's TLS files for this cluster.
    pub fn tls(&self) -> &TlsFiles {
        &self.tls
    }

    /// The server log file (in the data directory).
    pub fn log_path(&self) -> &Path {
        &self.log_file
    }

    /// The whole server log so far (empty if unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log_contents();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A libpq key/value connection string for `role` over TCP to database `postgres`,
    /// including the password when the role has one, e.g.
    /// `host=127.0.0.1 port=54321 user=ws_scram password='ws-scram-pw' dbname=postgres`.
    pub fn conninfo(&self, role: Role) -> String {
        let mut s = format!(
            "host={HOST} port={} user={} dbname=postgres",
            self.port,
            role.name()
        );
        if let Some(pw) = role.password() {
            let _ = write!(
                s,
                " password='{}'",
                pw.replace('\\', "\\\\").replace('\'', "\\'")
            );
        }
        s
    }

    /// [`conninfo`](Self::conninfo) through the unix socket instead of TCP.
    pub fn socket_conninfo(&self, role: Role) -> String {
        let mut s = format!(
            "host='{}' port={} user={} dbname=postgres",
            self.socket_dir.display(),
            self.port,
            role.name()
        );
        if let Some(pw) = role.password() {
            let _ = write!(
                s,
                " password='{}'",
                pw.replace('\\', "\\\\").replace('\'', "\\'")
            );
        }
        s
    }

    /// A `postgresql://` URL for `role` over TCP to database `postgres` (password
    /// percent-encoded), e.g. `postgresql://ws_scram:ws-scram-pw@127.0.0.1:54321/postgres`.
    pub fn url(&self, role: Role) -> String {
        let auth = match role.password() {
            Some(pw) => format!("{}:{}", role.name(), percent_encode(pw)),
            None => role.name().to_owned(),
        };
        format!("postgresql://{auth}@{HOST}:{}/postgres", self.port)
    }

    /// Runs SQL (one or more statements, each in its own transaction unless the text opens
    /// one) as `postgres` through the version's own `psql -X -A -t -q -v ON_ERROR_STOP=1` over
    /// the unix socket. Returns the output, trimmed: one line per row, columns separated by
    /// `|`, NULL as the empty string.
    pub fn psql(&self, sql: &str) -> Result<String, Error> {
        let conninfo = self.socket_conninfo(Role::Postgres);
        self.run_psql(&conninfo, sql, &[])
    }

    /// Runs SQL through `psql` with any connection string (key/value or URL), for testing
    /// logins: e.g. `cluster.psql_with(&format!("{} sslmode=require", cluster.conninfo(r)),
    /// "SELECT 1")`. Fails with [`Error::Command`] (psql's message in `stderr`) when the
    /// connection or the SQL fails.
    pub fn psql_with(&self, conninfo: &str, sql: &str) -> Result<String, Error> {
        self.run_psql(conninfo, sql, &[])
    }

    /// Runs statements as `postgres`, discarding their output.
    pub fn execute(&self, sql: &str) -> Result<(), Error> {
        self.psql(sql).map(drop)
    }

    /// Runs a query as `postgres` and returns its rows as columns of text (NULL as the empty
    /// string). Values must not contain the ASCII unit (0x1F) or record (0x1E) separators.
    pub fn query_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, Error> {
        let conninfo = self.socket_conninfo(Role::Postgres);
        let out = self.run_psql(&conninfo, sql, &["-F", "\u{1f}", "-R", "\u{1e}"])?;
        Ok(out
            .split('\u{1e}')
            .map(|r| r.trim_matches('\n'))
            .filter(|r| !r.is_empty())
            .map(|r| r.split('\u{1f}').map(str::to_owned).collect())
            .collect())
    }

    fn run_psql(&self, conninfo: &str, sql: &str, extra: &[&str]) -> Result<String, Error> {
        let mut cmd = os::client_command(&self.install.bin("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .args(extra)
            .arg("-d")
            .arg(conninfo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("spawning `{}`", os::describe(&cmd)), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failure here means psql exited early; its status and stderr explain why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::io(format!("waiting for `{}`", os::describe(&cmd)), e))?;
        if !out.status.success() {
            return Err(os::command_error(&cmd, out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `pg_current_wal_lsn()` as a raw 64-bit position.
    pub fn current_wal_lsn(&self) -> Result<u64, Error> {
        let text = self.psql("SELECT pg_current_wal_lsn()")?;
        parse_lsn(&text).ok_or(Error::Parse {
            what: "pg_current_wal_lsn()".into(),
            output: text,
        })
    }

    /// The rows of `pg_replication_slots`, ordered by slot name.
    pub fn replication_slots(&self) -> Result<Vec<ReplicationSlot>, Error> {
        let rows = self.query_rows(
            "SELECT slot_name, coalesce(plugin, ''), slot_type, coalesce(database::text, ''), \
             temporary, active, coalesce(active_pid::text, ''), coalesce(restart_lsn::text, ''), \
             coalesce(confirmed_flush_lsn::text, ''), coalesce(wal_status, '') \
             FROM pg_replication_slots ORDER BY slot_name",
        )?;
        rows.into_iter()
            .map(|row| match row.as_slice() {
                [
                    name,
                    plugin,
                    kind,
                    db,
                    temporary,
                    active,
                    pid,
                    restart,
                    confirmed,
                    status,
                ] => Ok(ReplicationSlot {
                    slot_name: name.clone(),
                    plugin: non_empty(plugin),
                    slot_type: kind.clone(),
                    database: non_empty(db),
                    temporary: temporary == "t",
                    active: active == "t",
                    active_pid: pid.parse().ok(),
                    restart_lsn: parse_lsn(restart),
                    confirmed_flush_lsn: parse_lsn(confirmed),
                    wal_status: non_empty(status),
                }),
                _ => Err(Error::Parse {
                    what: "pg_replication_slots".into(),
                    output: row.join("|"),
                }),
            })
            .collect()
    }

    /// The rows of `pg_stat_replication`, ordered by pid.
    pub fn stat_replication(&self) -> Result<Vec<StatReplication>, Error> {
        let rows = self.query_rows(
            "SELECT pid, coalesce(application_name, ''), coalesce(state, ''), \
             coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''), \
             coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, ''), \
             coalesce(sync_state, '') FROM pg_stat_replication ORDER BY pid",
        )?;
        rows.into_iter()
            .map(|row| match row.as_slice() {
                [pid, app, state, sent, write, flush, replay, sync] => Ok(StatReplication {
                    pid: pid.parse().map_err(|_| Error::Parse {
                        what: "pg_stat_replication.pid".into(),
                        output: pid.clone(),
                    })?,
                    application_name: app.clone(),
                    state: state.clone(),
                    sent_lsn: parse_lsn(sent),
                    write_lsn: parse_lsn(write),
                    flush_lsn: parse_lsn(flush),
                    replay_lsn: parse_lsn(replay),
                    sync_state: sync.clone(),
                }),
                _ => Err(Error::Parse {
                    what: "pg_stat_replication".into(),
                    output: row.join("|"),
                }),
            })
            .collect()
    }

    /// Terminates every WAL sender (physical and logical) and returns how many were signalled.
    pub fn terminate_walsenders(&self) -> Result<usize, Error> {
        let text = self.psql(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) \
             FROM pg_stat_activity WHERE backend_type = 'walsender'",
        )?;
        text.parse().map_err(|_| Error::Parse {
            what: "terminate_walsenders".into(),
            output: text,
        })
    }

    /// Terminates one backend (`pg_terminate_backend`); `false` if no such process.
    pub fn kill_backend(&self, pid: u32) -> Result<bool, Error> {
        let text = self.psql(&format!("SELECT pg_terminate_backend({pid})"))?;
        Ok(text == "t")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL {} server log ({}), last 80 lines ---\n{}\n--- end of server log ---",
                self.install.version,
                self.log_file.display(),
                self.log_tail(80)
            );
        }
        // The server may already be stopped; that is fine.
        let _ = self.stop_immediate();
        if let Some(root) = self.root.take() {
            if std::env::var_os("WALSTREAM_KEEP_CLUSTERS").is_some_and(|v| v != "0") {
                let kept = root.keep();
                eprintln!(
                    "walstream-test-support: kept cluster files in {}",
                    kept.display()
                );
            }
        }
    }
}

/// Waits until `probe` returns `Some`, polling every 50 ms, for at most `timeout`.
///
/// ```no_run
/// # use std::time::Duration;
/// # use walstream_test_support::{wait_for, Cluster};
/// # fn example(cluster: &Cluster) {
/// let slot = wait_for("slot s1 to become active", Duration::from_secs(10), || {
///     cluster.replication_slots().ok()?.into_iter().find(|s| s.slot_name == "s1" && s.active)
/// })
/// .unwrap();
/// # }
/// ```
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Parses PostgreSQL's `X/X` LSN text into a raw 64-bit position (`None` if malformed).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A currently free TCP port on 127.0.0.1 (bound to port 0, read, released). The caller
/// retries when another process takes it before the server binds it.
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((HOST, 0))
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound port", e))?
        .port();
    Ok(port)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lsn_text() {
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_lsn(""), None);
        assert_eq!(parse_lsn("1/"), None);
        assert_eq!(parse_lsn("100000000/0"), None);
    }

    #[test]
    fn percent_encodes_non_ascii_and_reserved() {
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("p@ss:w/rd"), "p%40ss%3Aw%2Frd");
        assert_eq!(percent_encode("\u{e4}"), "%C3%A4");
    }

    #[test]
    fn options_override_settings_in_order() {
        let o = ClusterOptions::new()
            .setting("a", "1")
            .setting("b", "2")
            .initdb_arg("-k");
        assert_eq!(
            o.settings,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(o.initdb_args, vec!["-k".to_owned()]);
    }
}
