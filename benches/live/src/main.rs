//! `walstream-bench`: the live-stream benchmark of issue #9.
//!
//! Starts a throwaway server (walstream-test-support), fills one slot's backlog per scenario,
//! then consumes the same backlog — from a fresh copy of the slot every run — with
//! walstream's CLI (`tail --format none --endpos`), walstream's library (typed events and raw
//! messages) and `pg_recvlogical -f /dev/null -E <end>` of the same major, alternating the
//! clients, and prints events/s, client CPU per 1M events, peak RSS and the walsender's CPU,
//! with ratios against pg_recvlogical. Then the scale test: many streams on one thread.
//!
//! `cargo run --release -p walstream-bench -- --scale 1` (see docs/performance.md).
#![forbid(unsafe_code)]

mod consume;
mod measure;
mod report;
mod scenario;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use walstream_test_support::{Cluster, ClusterOptions, PgInstall, Role};

use crate::consume::{ConsumeArgs, ScaleArgs};
use crate::measure::{Measured, clock_ticks, postmaster_pid, run_measured, walsenders};
use crate::report::{RunResult, ScaleResult};
use crate::scenario::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "walstream-bench",
    about = "walstream vs pg_recvlogical on a live stream"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// (internal) One library consumer; the harness runs it as a child process.
    #[command(hide = true)]
    Consume(ConsumeArgs),
    /// (internal) The scale test's child.
    #[command(hide = true)]
    Scale(ScaleArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The PostgreSQL bin directory (default: /opt/pgbin/15/bin if present, else the first
    /// of WALSTREAM_PG_BINDIRS or the machine's PostgreSQL).
    #[arg(long)]
    bindir: Option<PathBuf>,
    /// Multiplies every backlog size (1 = the sizes of issue #9; 0.1 for a quick run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Repetitions of every client (runs alternate between clients).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Scenarios, comma-separated: narrow, wide, text2k, mixed, bigtx.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "narrow,wide,text2k,mixed,bigtx"
    )]
    scenarios: Vec<String>,
    /// Clients, comma-separated: cli, typed, raw, recvlogical, nobatch (the CLI with
    /// `--batch-latency 0`), and before (with --before-cli).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cli,typed,raw,recvlogical"
    )]
    clients: Vec<String>,
    /// Extra transports measured on the narrow scenario: unix, tls (TCP is always measured).
    #[arg(long, value_delimiter = ',', default_value = "unix,tls")]
    transports: Vec<String>,
    /// Rows per transaction when filling (not for bigtx).
    #[arg(long, default_value_t = 100)]
    txn_rows: u64,
    /// Streams of the scale test (0 skips it).
    #[arg(long, default_value_t = 50)]
    streams: usize,
    /// The walstream CLI binary (default: `walstream` next to this binary, built with
    /// `cargo build --release -p walstream-cli` when missing).
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Another walstream CLI binary (e.g. a build of an older commit), measured as the client
    /// `before` alongside the others: before/after figures from alternating runs.
    #[arg(long)]
    before_cli: Option<PathBuf>,
}

/// A client of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    Cli,
    /// The CLI with batched reads off (`--batch-latency 0`).
    CliNoBatch,
    CliBefore,
    Typed,
    Raw,
    RecvLogical,
}

impl Client {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Cli => "walstream tail -f none",
            Self::CliNoBatch => "walstream tail --batch-latency 0",
            Self::CliBefore => "walstream tail (before)",
            Self::Typed => "walstream lib typed",
            Self::Raw => "walstream lib raw",
            Self::RecvLogical => "pg_recvlogical",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "cli" => Some(Self::Cli),
            "nobatch" => Some(Self::CliNoBatch),
            "before" => Some(Self::CliBefore),
            "typed" => Some(Self::Typed),
            "raw" => Some(Self::Raw),
            "recvlogical" => Some(Self::RecvLogical),
            _ => None,
        }
    }
}

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Unix,
    Tls,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Unix => "unix",
            Self::Tls => "tls",
        }
    }

    fn conninfo(self, cluster: &Cluster) -> String {
        match self {
            Self::Tcp => format!("{} sslmode=disable", cluster.conninfo(Role::Postgres)),
            Self::Unix => cluster.socket_conninfo(Role::Postgres),
            Self::Tls => format!("{} sslmode=require", cluster.conninfo(Role::Postgres)),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Some(Sub::Consume(a)) => consume::consume(a),
        Some(Sub::Scale(a)) => consume::scale(a),
        None => bench(&cli.run),
    };
    if let Err(e) = result {
        eprintln!("walstream-bench: {e}");
        std::process::exit(1);
    }
}

fn install(args: &RunArgs) -> Result<PgInstall, BoxError> {
    let default = Path::new("/opt/pgbin/15/bin");
    match &args.bindir {
        Some(dir) => Ok(PgInstall::from_bindir(dir)?),
        None if default.join("postgres").exists() => Ok(PgInstall::from_bindir(default)?),
        None => walstream_test_support::servers()
            .first()
            .cloned()
            .ok_or_else(|| "no PostgreSQL installation found; pass --bindir".into()),
    }
}

fn cli_binary(args: &RunArgs) -> Result<PathBuf, BoxError> {
    if let Some(p) = &args.cli {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("the harness binary has no directory")?;
    let cli = dir.join("walstream");
    if !cli.exists() {
        eprintln!("building the walstream CLI (cargo build --release -p walstream-cli)");
        let target = dir
            .parent()
            .ok_or("the harness binary is not in a target dir")?;
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "build",
                "--release",
                "-p",
                "walstream-cli",
                "--bin",
                "walstream",
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()?;
        if !status.success() || !cli.exists() {
            return Err(format!("could not build {}; pass --cli", cli.display()).into());
        }
    }
    Ok(cli)
}

/// The server: the suite's cluster with room for the scale test and a fast fill.
fn start_cluster(install: &PgInstall, scale: f64) -> Result<Cluster, BoxError> {
    // Large enough that only the one big transaction is streamed (it is at every scale).
    let work_mem_kb = ((65536.0 * scale).round() as u64).clamp(1024, 65536);
    let options = ClusterOptions::new()
        .setting("shared_buffers", "256MB")
        .setting("max_wal_size", "16GB")
        .setting("checkpoint_timeout", "1h")
        .setting("synchronous_commit", "off")
        .setting("autovacuum", "off")
        .setting("max_connections", "200")
        .setting("max_wal_senders", "120")
        .setting("max_replication_slots", "120")
        .setting("log_connections", "off")
        .setting("log_disconnections", "off")
        .setting("log_replication_commands", "off")
        .setting("logical_decoding_work_mem", format!("{work_mem_kb}kB"));
    Ok(Cluster::start(install, options)?)
}

fn drop_slot(cluster: &Cluster, slot: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match cluster.execute(&format!(
            "SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots \
             WHERE slot_name = '{slot}'"
        )) {
            Ok(()) => return Ok(()),
            // Still active: its walsender is exiting.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A prepared backlog.
struct Prepared {
    scenario: Scenario,
    rows: u64,
    endpos: String,
}

fn prepare(
    cluster: &Cluster,
    scenario: Scenario,
    rows: u64,
    txn_rows: u64,
) -> Result<Prepared, BoxError> {
    let t = Instant::now();
    cluster.execute(&scenario.setup_sql())?;
    cluster.execute(&format!(
        "SELECT pg_create_logical_replication_slot('{}', 'pgoutput')",
        scenario.base_slot()
    ))?;
    // The end position: the insert position right after the last commit (in the same
    // session, so nothing else is written in between as a rule), which is that commit's end
    // LSN: every client stops at that commit instead of waiting for a keepalive.
    let endpos = cluster.psql(&format!(
        "{}\nSELECT pg_current_wal_insert_lsn();",
        scenario.fill_sql(rows, txn_rows)
    ))?;
    eprintln!(
        "prepared {}: {rows} row changes up to {endpos} in {:.1} s",
        scenario.name(),
        t.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        scenario,
        rows,
        endpos,
    })
}

struct Env<'a> {
    cluster: &'a Cluster,
    postmaster: u32,
    ticks: f64,
    cli: Option<PathBuf>,
    before_cli: Option<PathBuf>,
    me: PathBuf,
}

fn command(
    env: &Env<'_>,
    client: Client,
    p: &Prepared,
    conninfo: &str,
    slot: &str,
) -> Result<Command, BoxError> {
    let publication = p.scenario.publication();
    let rows = p.rows.to_string();
    let streamed = p.scenario.streamed();
    Ok(match client {
        Client::Cli | Client::CliNoBatch | Client::CliBefore => {
            let binary = if client == Client::CliBefore {
                env.before_cli
                    .as_ref()
                    .ok_or("--before-cli is needed for client before")?
            } else {
                env.cli.as_ref().ok_or("no CLI binary")?
            };
            let mut c = Command::new(binary);
            c.args(["tail", "-d", conninfo, "-S", slot, "-P", &publication])
                .args(["-f", "none", "--endpos", &p.endpos]);
            if client == Client::CliNoBatch {
                c.args(["--batch-latency", "0"]);
            }
            if streamed {
                c.args(["--proto-version", "2", "--streaming", "on"]);
            }
            if std::env::var_os("RUST_LOG").is_none() {
                c.env("RUST_LOG", "warn");
            }
            c
        }
        Client::Typed | Client::Raw => {
            let mut c = Command::new(&env.me);
            let mode = if client == Client::Raw {
                "raw"
            } else {
                "typed"
            };
            c.args([
                "consume",
                "--mode",
                mode,
                "--conninfo",
                conninfo,
                "--slot",
                slot,
            ])
            .args(["--publication", &publication, "--rows", &rows]);
            if streamed {
                c.arg("--streamed");
            }
            c
        }
        Client::RecvLogical => {
            let mut c = Command::new(env.cluster.install().bin("pg_recvlogical"));
            c.args([
                "-d",
                conninfo,
                "-S",
                slot,
                "--start",
                "--no-loop",
                "-f",
                "/dev/null",
            ])
            .args(["-E", &p.endpos, "-o", "proto_version=1"])
            .arg("-o")
            .arg(format!("publication_names={publication}"));
            c
        }
    })
}

/// With `WALSTREAM_BENCH_WRAP` set (e.g. `perf record -g -o /tmp/ws.data --`), clients run
/// under that command line (whitespace-separated) for profiling; the figures are then the
/// wrapper's.
fn wrap(cmd: Command) -> Command {
    let Some(prefix) = std::env::var("WALSTREAM_BENCH_WRAP")
        .ok()
        .filter(|w| !w.trim().is_empty())
    else {
        return cmd;
    };
    let mut words = prefix.split_whitespace();
    let Some(first) = words.next() else {
        return cmd;
    };
    let mut wrapped = Command::new(first);
    wrapped
        .args(words)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            wrapped.env(k, v);
        }
    }
    wrapped
}

/// One run: a fresh copy of the base slot, one client to the end of the backlog.
fn run_once(
    env: &Env<'_>,
    client: Client,
    transport: Transport,
    p: &Prepared,
) -> Result<RunResult, BoxError> {
    let slot = format!("bench_run_{}", p.scenario.name());
    env.cluster.execute(&format!(
        "SELECT pg_copy_logical_replication_slot('{}', '{slot}')",
        p.scenario.base_slot()
    ))?;
    let conninfo = transport.conninfo(env.cluster);
    let mut cmd = wrap(command(env, client, p, &conninfo, &slot)?);
    let ignore = walsenders(env.postmaster);
    let m: Measured = run_measured(&mut cmd, env.postmaster, &ignore, env.ticks)?;
    if std::env::var_os("WALSTREAM_BENCH_VERBOSE").is_some() {
        eprint!("{}{}", m.stdout, m.stderr);
    }
    drop_slot(env.cluster, &slot)?;
    if matches!(client, Client::Typed | Client::Raw) {
        let rows = m
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "rows")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok());
        if rows != Some(p.rows) {
            return Err(format!(
                "{} consumed {rows:?} row changes, expected {}",
                client.name(),
                p.rows
            )
            .into());
        }
    }
    Ok(RunResult {
        scenario: p.scenario,
        transport,
        client,
        rows: p.rows,
        wall: m.wall,
        client_cpu_s: m.client_cpu_s,
        peak_rss_kb: m.peak_rss_kb,
        walsender_cpu_s: m.walsender_cpu_s,
    })
}

fn bench(args: &RunArgs) -> Result<(), BoxError> {
    let scenarios = args
        .scenarios
        .iter()
        .map(|s| Scenario::parse(s).ok_or_else(|| format!("unknown scenario {s:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let clients = args
        .clients
        .iter()
        .map(|s| Client::parse(s).ok_or_else(|| format!("unknown client {s:?}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut transports = vec![Transport::Tcp];
    for t in &args.transports {
        match t.as_str() {
            "unix" => transports.push(Transport::Unix),
            "tls" => transports.push(Transport::Tls),
            "tcp" | "" => {}
            other => return Err(format!("unknown transport {other:?}").into()),
        }
    }
    let install = install(args)?;
    let cli = if clients.contains(&Client::Cli) || clients.contains(&Client::CliNoBatch) {
        Some(cli_binary(args)?)
    } else {
        None
    };
    eprintln!(
        "PostgreSQL {} ({}), scale {}, {} runs per client",
        install.version,
        install.bindir.display(),
        args.scale,
        args.runs
    );
    let cluster = start_cluster(&install, args.scale)?;
    let postmaster = postmaster_pid(cluster.data_dir()).ok_or("no postmaster.pid")?;
    let env = Env {
        cluster: &cluster,
        postmaster,
        ticks: clock_ticks(),
        cli,
        before_cli: args.before_cli.clone(),
        me: std::env::current_exe()?,
    };
    let mut results = Vec::new();
    for &scenario in &scenarios {
        let prepared = prepare(&cluster, scenario, scenario.rows(args.scale), args.txn_rows)?;
        let scenario_transports: &[Transport] = if scenario == Scenario::Narrow {
            &transports
        } else {
            &[Transport::Tcp]
        };
        // One unmeasured run first: the first decoding of a fresh backlog pays for cold
        // caches (WAL pages, catalog lookups) that later runs do not.
        if let Some(&first) = clients.first() {
            run_once(&env, first, Transport::Tcp, &prepared)?;
        }
        for &transport in scenario_transports {
            for run in 0..args.runs {
                // Alternate the clients (and their order) so drifting load hits all alike.
                let mut order = clients.clone();
                if run % 2 == 1 {
                    order.reverse();
                }
                for &client in &order {
                    let r = run_once(&env, client, transport, &prepared)?;
                    eprintln!("  {}", r.line());
                    results.push(r);
                }
            }
        }
        // Free the backlog's WAL for the next scenario.
        drop_slot(&cluster, &scenario.base_slot())?;
    }
    let mut out = report::table(&results);
    out.push_str(&report::comparison_table(
        &results,
        Client::Cli,
        Client::CliBefore,
    ));
    out.push_str(&report::comparison_table(
        &results,
        Client::Cli,
        Client::CliNoBatch,
    ));
    if args.streams > 0 {
        let s = scale_test(&env, args)?;
        out.push_str(&report::scale_table(&s));
    }
    println!("{out}");
    Ok(())
}

/// Many streams on one current-thread runtime: memory per idle stream, then every stream
/// consuming its own copy of a backlog at once.
fn scale_test(env: &Env<'_>, args: &RunArgs) -> Result<ScaleResult, BoxError> {
    let cluster = env.cluster;
    let n = args.streams;
    let s = Scenario::Narrow;
    let table = "bench_scale";
    let publication = "bench_pub_scale";
    let rows_per_stream = ((20_000.0 * args.scale).round() as u64).max(100);
    cluster.execute(&format!(
        "CREATE TABLE {table} (id bigserial PRIMARY KEY, n int NOT NULL, t text);\n\
         CREATE PUBLICATION {publication} FOR TABLE {table};"
    ))?;
    let conninfo = Transport::Tcp.conninfo(cluster);
    // Idle streams: slots with no backlog.
    for i in 0..n {
        cluster.execute(&format!(
            "SELECT pg_create_logical_replication_slot('bench_idle_{i}', 'pgoutput')"
        ))?;
    }
    let mut idle = Command::new(&env.me);
    idle.args([
        "scale",
        "--conninfo",
        &conninfo,
        "--slot-prefix",
        "bench_idle_",
    ])
    .args(["--count", &n.to_string(), "--publication", publication]);
    let m = run_measured(&mut idle, env.postmaster, &[], env.ticks)?;
    let field = |text: &str, key: &str| -> Option<f64> {
        text.split_whitespace()
            .skip_while(|w| *w != key)
            .nth(1)?
            .parse()
            .ok()
    };
    let before = field(&m.stdout, "rss_before_kb").ok_or("idle scale test printed no RSS")?;
    let after = field(&m.stdout, "rss_after_kb").ok_or("idle scale test printed no RSS")?;
    for i in 0..n {
        drop_slot(cluster, &format!("bench_idle_{i}"))?;
    }
    // Busy streams: copies of one backlog.
    cluster.execute("SELECT pg_create_logical_replication_slot('bench_base_scale', 'pgoutput')")?;
    let fill = s
        .fill_sql(rows_per_stream, args.txn_rows)
        .replace(&s.table(), table);
    cluster.execute(&fill)?;
    for i in 0..n {
        cluster.execute(&format!(
            "SELECT pg_copy_logical_replication_slot('bench_base_scale', 'bench_busy_{i}')"
        ))?;
    }
    let mut busy = Command::new(&env.me);
    busy.args([
        "scale",
        "--busy",
        "--conninfo",
        &conninfo,
        "--slot-prefix",
        "bench_busy_",
    ])
    .args(["--count", &n.to_string(), "--publication", publication])
    .args(["--rows", &rows_per_stream.to_string()]);
    let b = run_measured(&mut busy, env.postmaster, &[], env.ticks)?;
    let rows = field(&b.stdout, "rows").ok_or("busy scale test printed no count")?;
    for i in 0..n {
        drop_slot(cluster, &format!("bench_busy_{i}"))?;
    }
    drop_slot(cluster, "bench_base_scale")?;
    Ok(ScaleResult {
        streams: n,
        idle_rss_before_kb: before,
        idle_rss_after_kb: after,
        busy_rows: rows,
        busy: b,
    })
}
