//! `walstream demo`: a throwaway PostgreSQL server, a scripted workload, its changes streamed
//! live.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use walstream_conn::{Client, ReplicationMode};
use walstream_test_support::{Cluster, ClusterOptions, PgInstall, Role};

use crate::error::{Category, CliError};
use crate::output::{Format, Renderer};
use crate::stream::{self, Limits, Output, Sink, SlotStreamArgs, StopReason, Streaming};

/// Arguments of `walstream demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  walstream demo                       # readable lines; stops after the workload
  walstream demo --format jsonl | jq . # JSON lines on stdout, progress on stderr
  walstream demo --events 20           # stop after 20 events
  walstream demo --keep                # leave the server running and print how to connect

Needs the PostgreSQL server programs (initdb, pg_ctl, postgres, psql) on this machine; they
are looked up in --pg-bin, PATH, `pg_config --bindir`, /usr/lib/postgresql/*/bin and
/opt/pgbin/*/bin. When run as root the server runs as the `postgres` user (created if
missing). Nothing outside a temporary directory is touched.")]
pub(crate) struct DemoArgs {
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value_t = DemoFormat::Pretty)]
    pub(crate) format: DemoFormat,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub(crate) events: Option<u64>,
    /// Leave the server running afterwards and print its connection string.
    #[arg(long)]
    pub(crate) keep: bool,
    /// The directory holding initdb, pg_ctl, postgres and psql.
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin: Option<PathBuf>,
    /// Rows in the workload's large transaction.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub(crate) large_rows: u32,
    /// Pause between workload steps, in milliseconds (so the output reads live).
    #[arg(long, value_name = "MS", default_value_t = 400)]
    pub(crate) pace_ms: u64,
}

/// Formats `demo` supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoFormat {
    /// Readable lines.
    Pretty,
    /// One JSON object per event (docs/jsonl.md).
    Jsonl,
}

const SLOT: &str = "walstream_demo";
const PUBLICATION: &str = "walstream_demo";
/// The prefix of the non-transactional message that ends the workload.
const DONE_PREFIX: &str = "walstream-demo-done";
const PROGRAMS: [&str; 4] = ["initdb", "pg_ctl", "postgres", "psql"];

/// Exactly what to do when no server programs are found.
const INSTALL_HELP: &str = "install the PostgreSQL server programs, e.g. on Debian/Ubuntu \
`apt-get install -y postgresql` (or postgresql-16), on Fedora/RHEL `dnf install -y \
postgresql-server`, on macOS `brew install postgresql@16`; or run `bash .ci/run postgres` in \
the repository (it unpacks PostgreSQL 14-18 into /opt/pgbin); or pass --pg-bin DIR";

fn has_programs(dir: &Path) -> bool {
    PROGRAMS.iter().all(|p| dir.join(p).is_file())
}

/// The newest `<root>/*/bin` holding the server programs.
fn newest_under(root: &str) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let bin = e.path().join("bin");
            let version = e.file_name().to_string_lossy().parse::<u32>().unwrap_or(0);
            has_programs(&bin).then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Finds the server programs: --pg-bin, PATH, pg_config, /usr/lib/postgresql, /opt/pgbin.
pub(crate) fn find_bindir(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = explicit {
        if has_programs(dir) {
            return Ok(dir.to_path_buf());
        }
        return Err(CliError::usage(format!(
            "{} does not hold {}",
            dir.display(),
            PROGRAMS.join(", ")
        ))
        .hint(format!(
            "pass the `bin` directory of a PostgreSQL installation, or {INSTALL_HELP}"
        )));
    }
    let from_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|d| has_programs(d)));
    let from_pg_config = || {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
        (out.status.success() && has_programs(&dir)).then_some(dir)
    };
    from_path
        .or_else(from_pg_config)
        .or_else(|| newest_under("/usr/lib/postgresql"))
        .or_else(|| newest_under("/opt/pgbin"))
        .ok_or_else(|| {
            CliError::other(
                "no PostgreSQL server programs found (looked in PATH, `pg_config --bindir`, \
                 /usr/lib/postgresql/*/bin and /opt/pgbin/*/bin)",
            )
            .hint(INSTALL_HELP)
        })
}

fn say(msg: &str) {
    eprintln!("walstream demo: {msg}");
}

pub(crate) async fn run(args: &DemoArgs) -> Result<(), CliError> {
    let deadline = match args.duration {
        Some(s) => Some(
            Instant::now()
                + Duration::try_from_secs_f64(s)
                    .map_err(|_| CliError::usage("--duration must be a non-negative number"))?,
        ),
        None => None,
    };
    let shutdown = stream::shutdown_on_signals();
    let bindir = find_bindir(args.pg_bin.as_deref())?;
    let install = PgInstall::from_bindir(&bindir).map_err(|e| {
        CliError::other(format!("cannot use {}: {e}", bindir.display())).hint(INSTALL_HELP)
    })?;
    say(&format!(
        "starting a throwaway PostgreSQL {} from {} ...",
        install.version,
        bindir.display()
    ));
    let cluster =
        tokio::task::spawn_blocking(move || Cluster::start(&install, ClusterOptions::new()))
            .await
            .map_err(|e| CliError::other(format!("starting the server: {e}")))?
            .map_err(|e| {
                CliError::other(format!("starting the server: {e}")).hint(
            "see the server log above; `walstream demo -v` shows more, --pg-bin picks another \
             installation",
        )
            })?;
    if *shutdown.borrow() {
        return Err(CliError::other("interrupted"));
    }
    let conninfo = cluster.conninfo(Role::Postgres);
    say(&format!(
        "server up on port {} ({})",
        cluster.port(),
        conninfo
    ));

    let result = stream_demo(args, &conninfo, deadline, shutdown).await;

    if args.keep {
        let data = cluster.data_dir().to_path_buf();
        let root = data.parent().map(Path::to_path_buf).unwrap_or_default();
        let pg_ctl = cluster.install().bin("pg_ctl");
        let as_pg = if is_root() {
            "runuser -u postgres -- "
        } else {
            ""
        };
        // Leaving the cluster undropped keeps the server running and its files in place.
        std::mem::forget(cluster);
        say("the server keeps running:");
        eprintln!("  connect:  psql \"{conninfo}\"");
        eprintln!(
            "  stream:   walstream tail -d \"{conninfo}\" -S {SLOT} -P {PUBLICATION} --messages --format pretty"
        );
        eprintln!(
            "  stop:     {as_pg}{} -D {} stop && rm -rf {}",
            pg_ctl.display(),
            data.display(),
            root.display()
        );
    } else {
        drop(cluster);
        say("server stopped and removed");
    }
    result
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

async fn stream_demo(
    args: &DemoArgs,
    conninfo: &str,
    deadline: Option<Instant>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), CliError> {
    let mut sql = crate::conn::connect(Some(conninfo), ReplicationMode::Off).await?;
    sql.simple_query(
        "CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, \
           balance numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL DEFAULT now()); \
         CREATE TABLE audit_log (id bigint PRIMARY KEY, account_id int, note text); \
         CREATE PUBLICATION walstream_demo FOR ALL TABLES;",
    )
    .await?;
    say(&format!(
        "created tables accounts and audit_log, publication {PUBLICATION}, slot {SLOT}; streaming:"
    ));

    let repl = crate::conn::connect(Some(conninfo), ReplicationMode::Logical).await?;
    let slot_args = SlotStreamArgs {
        conninfo: Some(conninfo.to_owned()),
        slot: SLOT.to_owned(),
        publication: PUBLICATION.to_owned(),
        create_slot: true,
        temporary: false,
        if_not_exists: false,
        two_phase: false,
        failover: false,
        start: None,
        endpos: None,
        proto_version: None,
        streaming: Streaming::Off,
        binary: false,
        messages: true,
        origin: None,
        status_interval: 1.0,
        batch_latency: 1,
    };
    let opened = stream::open(&slot_args, repl).await?;
    let pace = Duration::from_millis(args.pace_ms);
    let large = args.large_rows;
    let workload = tokio::spawn(async move { workload(&mut sql, pace, large).await });

    let format = match args.format {
        DemoFormat::Pretty => Format::Pretty,
        DemoFormat::Jsonl => Format::Jsonl,
    };
    let sink = Sink::Render {
        renderer: Box::new(Renderer::new(format)),
        out: Output::open(None)?,
        assembly: None,
    };
    let limits = Limits {
        endpos: None,
        max_events: args.events,
        deadline,
        stop_message_prefix: Some(DONE_PREFIX.to_owned()),
    };
    let summary = stream::run(opened, sink, &limits, shutdown).await;
    // The workload may still be running when a limit stopped the stream.
    workload.abort();
    let outcome = workload.await;
    let summary = summary?;
    if let Ok(Err(e)) = outcome {
        return Err(e.context("the demo workload failed"));
    }
    let why = match summary.reason {
        StopReason::StopMessage => "the workload finished",
        StopReason::Events => "--events reached",
        StopReason::Deadline => "--duration reached",
        StopReason::Signal => "interrupted",
        StopReason::Endpos => "end position reached",
        StopReason::ServerEnded => "the server ended the stream",
    };
    say(&format!(
        "{why}: {} events streamed; slot {SLOT} confirmed up to {}",
        summary.events, summary.flushed
    ));
    if summary.reason == StopReason::ServerEnded {
        return Err(CliError::new(
            Category::Server,
            "the server ended the replication stream",
        ));
    }
    Ok(())
}

/// The scripted workload: inserts, updates, a delete, a large transaction, logical messages,
/// a truncate, and the final non-transactional message that ends the demo.
async fn workload(sql: &mut Client, pace: Duration, large_rows: u32) -> Result<(), CliError> {
    let steps: Vec<String> = vec![
        "INSERT INTO accounts (owner, balance) VALUES ('alice', 100.00)".into(),
        "INSERT INTO accounts (owner, balance) VALUES ('bob', 50.00), ('carol', 75.25)".into(),
        "BEGIN; \
         UPDATE accounts SET balance = balance - 30, updated_at = now() WHERE owner = 'alice'; \
         UPDATE accounts SET balance = balance + 30, updated_at = now() WHERE owner = 'bob'; \
         SELECT pg_logical_emit_message(true, 'walstream-demo', 'transfer alice->bob 30.00'); \
         COMMIT"
            .into(),
        "DELETE FROM accounts WHERE owner = 'carol'".into(),
        format!(
            "INSERT INTO audit_log SELECT g, 1 + g % 2, 'bulk row ' || g \
             FROM generate_series(1, {large_rows}) g"
        ),
        "SELECT pg_logical_emit_message(false, 'walstream-demo', 'a non-transactional note')"
            .into(),
        "TRUNCATE audit_log".into(),
        format!("SELECT pg_logical_emit_message(false, '{DONE_PREFIX}', 'workload finished')"),
    ];
    for step in steps {
        tokio::time::sleep(pace).await;
        tracing::debug!(%step, "workload");
        sql.simple_query(&step).await?;
    }
    Ok(())
}
