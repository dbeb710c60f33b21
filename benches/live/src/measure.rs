//! Running a client process and measuring it: wall time, user+system CPU (from
//! `/proc/<pid>/stat`, read once the process is a zombie, so the figures are final and
//! include every thread), peak RSS (`VmHWM`, sampled while it runs) and the CPU of the
//! walsenders serving it (children of the postmaster whose title says `walsender`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running client is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The longest a walsender is followed after its client exited.
const WALSENDER_GRACE: Duration = Duration::from_secs(3);

/// The fields of `/proc/<pid>/stat` the harness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub(crate) state: char,
    pub(crate) ppid: u32,
    /// utime + stime in clock ticks.
    pub(crate) cpu_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from its last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15); index = field - 3.
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// The value in kB of a `Key:   123 kB` line of `/proc/<pid>/status`.
pub(crate) fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

pub(crate) fn read_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn read_hwm_kb(pid: u32) -> Option<u64> {
    parse_status_kb(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmHWM",
    )
}

/// The clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`, 100 when unknown).
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// The postmaster's pid (first line of `postmaster.pid`).
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The walsender processes of `postmaster` that exist now.
pub(crate) fn walsenders(postmaster: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| read_stat(pid).is_some_and(|s| s.ppid == postmaster))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("walsender"))
        })
        .collect()
}

/// What one client run cost.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) client_cpu_s: f64,
    pub(crate) peak_rss_kb: u64,
    pub(crate) walsender_cpu_s: f64,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` to completion, sampling it and the walsenders of `postmaster` that appear
/// while it runs (walsenders in `ignore` existed before and are left out).
pub(crate) fn run_measured(
    cmd: &mut Command,
    postmaster: u32,
    ignore: &[u32],
    ticks: f64,
) -> Result<Measured, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawning {:?}: {e}", cmd.get_program()))?;
    let pid = child.id();
    let mut hwm = 0u64;
    let mut client_ticks = 0u64;
    // Walsender pid -> last CPU ticks seen.
    let mut senders: BTreeMap<u32, u64> = BTreeMap::new();
    let sample_senders = |senders: &mut BTreeMap<u32, u64>, discover: bool| {
        if discover {
            for ws in walsenders(postmaster) {
                if !ignore.contains(&ws) {
                    senders.entry(ws).or_insert(0);
                }
            }
        }
        let mut alive = false;
        for (ws, t) in senders.iter_mut() {
            if let Some(s) = read_stat(*ws).filter(|s| s.ppid == postmaster) {
                *t = s.cpu_ticks;
                alive = true;
            }
        }
        alive
    };
    let mut last_discovery = Instant::now() - Duration::from_secs(1);
    let wall = loop {
        match read_stat(pid) {
            Some(s) if s.state == 'Z' || s.state == 'X' => {
                client_ticks = s.cpu_ticks;
                break start.elapsed();
            }
            Some(s) => {
                client_ticks = s.cpu_ticks;
                if let Some(h) = read_hwm_kb(pid) {
                    hwm = hwm.max(h);
                }
            }
            // Already reaped (cannot happen before wait) or /proc unavailable.
            None => break start.elapsed(),
        }
        // New walsenders are looked for every 100 ms (a /proc scan), known ones every tick.
        let discover = last_discovery.elapsed() >= Duration::from_millis(100);
        if discover {
            last_discovery = Instant::now();
        }
        sample_senders(&mut senders, discover);
        std::thread::sleep(SAMPLE_EVERY);
    };
    // Follow the walsenders until they exit after their client went away.
    let grace = Instant::now();
    while grace.elapsed() < WALSENDER_GRACE && sample_senders(&mut senders, false) {
        std::thread::sleep(SAMPLE_EVERY);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {:?}: {e}", cmd.get_program()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}{}",
            cmd.get_program(),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Measured {
        wall,
        client_cpu_s: client_ticks as f64 / ticks,
        peak_rss_kb: hwm,
        walsender_cpu_s: senders.values().sum::<u64>() as f64 / ticks,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "1234 (a b) c)) S 77 1234 1234 0 -1 4194560 300 0 0 0 250 31 0 0 20 0 1 0 \
                    500 1000000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 77);
        assert_eq!(s.cpu_ticks, 281);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) R 1"), None);
    }

    #[test]
    fn parses_status_kb() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(parse_status_kb(text, "VmHWM"), Some(5120));
        assert_eq!(parse_status_kb(text, "VmRSS"), Some(4000));
        assert_eq!(parse_status_kb(text, "VmSwap"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = read_stat(std::process::id()).unwrap();
        assert_ne!(me.state, 'Z');
        assert!(clock_ticks() > 0.0);
    }
}
