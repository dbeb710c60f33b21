//! Tables: medians of the runs per scenario, transport and client, with ratios against
//! pg_recvlogical.

use std::fmt::Write as _;
use std::time::Duration;

use crate::measure::Measured;
use crate::scenario::Scenario;
use crate::{Client, Transport};

/// One client's run over one backlog.
#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) scenario: Scenario,
    pub(crate) transport: Transport,
    pub(crate) client: Client,
    pub(crate) rows: u64,
    pub(crate) wall: Duration,
    pub(crate) client_cpu_s: f64,
    pub(crate) peak_rss_kb: u64,
    pub(crate) walsender_cpu_s: f64,
}

impl RunResult {
    pub(crate) fn events_per_s(&self) -> f64 {
        self.rows as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Seconds of CPU per 1M events.
    pub(crate) fn cpu_per_m(&self) -> f64 {
        self.client_cpu_s * 1e6 / (self.rows.max(1) as f64)
    }

    pub(crate) fn walsender_per_m(&self) -> f64 {
        self.walsender_cpu_s * 1e6 / (self.rows.max(1) as f64)
    }

    /// The walsender's CPU as a share of the wall time.
    pub(crate) fn walsender_busy(&self) -> f64 {
        self.walsender_cpu_s / self.wall.as_secs_f64().max(1e-9)
    }

    /// One progress line.
    pub(crate) fn line(&self) -> String {
        format!(
            "{:<7} {:<4} {:<24} {:>9.0} ev/s  {:>6.2} s CPU/1M  {:>6.1} MB  walsender {:>5.2} s/1M ({:.0}% busy)",
            self.scenario.name(),
            self.transport.name(),
            self.client.name(),
            self.events_per_s(),
            self.cpu_per_m(),
            self.peak_rss_kb as f64 / 1024.0,
            self.walsender_per_m(),
            self.walsender_busy() * 100.0
        )
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    events_per_s: f64,
    cpu_per_m: f64,
    rss_mb: f64,
    walsender_per_m: f64,
    walsender_busy: f64,
    runs: usize,
}

fn summarize(runs: &[&RunResult]) -> Summary {
    let m = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(|r| f(r)).collect());
    Summary {
        events_per_s: m(&RunResult::events_per_s),
        cpu_per_m: m(&RunResult::cpu_per_m),
        rss_mb: m(&|r| r.peak_rss_kb as f64 / 1024.0),
        walsender_per_m: m(&RunResult::walsender_per_m),
        walsender_busy: m(&RunResult::walsender_busy),
        runs: runs.len(),
    }
}

/// The (scenario, transport) pairs measured, in the order first run.
fn cells(results: &[RunResult]) -> Vec<(Scenario, Transport)> {
    let mut keys: Vec<(Scenario, Transport)> = Vec::new();
    for r in results {
        if !keys.contains(&(r.scenario, r.transport)) {
            keys.push((r.scenario, r.transport));
        }
    }
    keys
}

/// The runs of `client` in one (scenario, transport) cell.
fn runs_of(
    results: &[RunResult],
    scenario: Scenario,
    transport: Transport,
    client: Client,
) -> Vec<&RunResult> {
    results
        .iter()
        .filter(|r| r.scenario == scenario && r.transport == transport && r.client == client)
        .collect()
}

/// The markdown table of all runs: medians per (scenario, transport, client).
pub(crate) fn table(results: &[RunResult]) -> String {
    let mut out = String::from(
        "| scenario | transport | client | events/s | client CPU s / 1M events | peak RSS MB | \
         walsender CPU s / 1M (busy) | events/s ÷ pg_recvlogical | CPU ÷ pg_recvlogical |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (scenario, transport) in cells(results) {
        let of = |client: Client| runs_of(results, scenario, transport, client);
        let base = of(Client::RecvLogical);
        let base = (!base.is_empty()).then(|| summarize(&base));
        let mut clients: Vec<Client> = Vec::new();
        for r in results {
            if r.scenario == scenario && r.transport == transport && !clients.contains(&r.client) {
                clients.push(r.client);
            }
        }
        let rows = results
            .iter()
            .find(|r| r.scenario == scenario)
            .map_or(0, |r| r.rows);
        for client in clients {
            let s = summarize(&of(client));
            let (speed, cpu) = match base {
                Some(b) if client != Client::RecvLogical && b.cpu_per_m > 0.0 => (
                    format!("{:.2}×", s.events_per_s / b.events_per_s.max(1e-9)),
                    format!("{:.2}×", s.cpu_per_m / b.cpu_per_m.max(1e-9)),
                ),
                _ => ("—".to_owned(), "—".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {:.2} | {:.1} | {:.2} ({:.0}%) | {speed} | {cpu} |",
                scenario.describe(rows),
                transport.name(),
                client.name(),
                s.events_per_s,
                s.cpu_per_m,
                s.rss_mb,
                s.walsender_per_m,
                s.walsender_busy * 100.0,
            );
            let _ = s.runs;
        }
    }
    let runs = results
        .iter()
        .map(|r| r.client)
        .filter(|c| *c == Client::RecvLogical)
        .count();
    let _ = writeln!(
        out,
        "\nMedians of the runs ({} runs in total, {runs} of pg_recvlogical).",
        results.len()
    );
    out
}

/// Before/after: per (scenario, transport), the medians of `after` over those of `before`
/// (empty when no scenario has both).
pub(crate) fn comparison_table(results: &[RunResult], after: Client, before: Client) -> String {
    let mut out = String::new();
    for (scenario, transport) in cells(results) {
        let of = |client: Client| runs_of(results, scenario, transport, client);
        let (a, b) = (of(after), of(before));
        if a.is_empty() || b.is_empty() {
            continue;
        }
        let (a, b) = (summarize(&a), summarize(&b));
        if out.is_empty() {
            let _ = writeln!(
                out,
                "\n`{}` against `{}` (medians, same alternation):\n\n\
                 | scenario | transport | events/s after ÷ before | client CPU per event after ÷ \
                 before | walsender CPU per event after ÷ before |\n|---|---|---:|---:|---:|",
                after.name(),
                before.name()
            );
        }
        let ratio = |x: f64, y: f64| {
            if y > 0.0 {
                format!("{:.2}×", x / y)
            } else {
                "—".to_owned()
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            scenario.name(),
            transport.name(),
            ratio(a.events_per_s, b.events_per_s),
            ratio(a.cpu_per_m, b.cpu_per_m),
            ratio(a.walsender_per_m, b.walsender_per_m),
        );
    }
    out
}

/// The scale test's figures.
#[derive(Debug, Clone)]
pub(crate) struct ScaleResult {
    pub(crate) streams: usize,
    pub(crate) idle_rss_before_kb: f64,
    pub(crate) idle_rss_after_kb: f64,
    pub(crate) busy_rows: f64,
    pub(crate) busy: Measured,
}

pub(crate) fn scale_table(s: &ScaleResult) -> String {
    let n = s.streams.max(1) as f64;
    let per_stream_kb = (s.idle_rss_after_kb - s.idle_rss_before_kb) / n;
    let wall = s.busy.wall.as_secs_f64().max(1e-9);
    format!(
        "\n| {} streams on one current-thread runtime | value |\n|---|---:|\n\
         | RSS before connecting | {:.1} MB |\n\
         | RSS with every stream connected and idle | {:.1} MB |\n\
         | memory per idle stream (RSS delta / streams) | {per_stream_kb:.0} kB |\n\
         | busy: row changes consumed (all streams) | {:.0} |\n\
         | busy: total events/s | {:.0} |\n\
         | busy: client CPU s / 1M events | {:.2} |\n\
         | busy: peak RSS | {:.1} MB |\n\
         | busy: walsenders' CPU s (sum) | {:.1} |\n",
        s.streams,
        s.idle_rss_before_kb / 1024.0,
        s.idle_rss_after_kb / 1024.0,
        s.busy_rows,
        s.busy_rows / wall,
        s.busy.client_cpu_s * 1e6 / s.busy_rows.max(1.0),
        s.busy.peak_rss_kb as f64 / 1024.0,
        s.busy.walsender_cpu_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(client: Client, secs: f64, cpu: f64) -> RunResult {
        RunResult {
            scenario: Scenario::Narrow,
            transport: Transport::Tcp,
            client,
            rows: 1_000_000,
            wall: Duration::from_secs_f64(secs),
            client_cpu_s: cpu,
            peak_rss_kb: 4096,
            walsender_cpu_s: secs,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn table_has_ratios_against_recvlogical() {
        let results = vec![
            run(Client::RecvLogical, 10.0, 4.0),
            run(Client::Cli, 5.0, 1.0),
            run(Client::RecvLogical, 10.0, 4.0),
            run(Client::Cli, 5.0, 1.0),
        ];
        let t = table(&results);
        assert!(
            t.contains("| 200000 | 1.00 | 4.0 | 5.00 (100%) | 2.00× | 0.25× |"),
            "{t}"
        );
        assert!(
            t.contains("| 100000 | 4.00 | 4.0 | 10.00 (100%) | — | — |"),
            "{t}"
        );
    }
}
