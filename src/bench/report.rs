//! What `licd bench` prints and writes: the table, side by side with etcd when it ran, and
//! the JSON document of the same figures.

use serde::{Deserialize, Serialize};

use super::gaps::GapSummary;
use super::stats::Summary;

/// One workload at one number of connections, on one system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// `licd` or `etcd`.
    pub system: String,
    /// `write`, `check`, `healthz` or `heartbeat`.
    pub workload: String,
    /// Concurrent connections (for `heartbeat`: the application servers simulated).
    pub connections: usize,
    /// What was measured.
    pub summary: Summary,
}

/// One step of the heartbeat capacity search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatStep {
    /// Simulated application servers, each renewing every third of its lease.
    pub servers: usize,
    /// The renewals' latencies, counted from when each was due.
    pub summary: Summary,
    /// Whether the renewal p99 stayed under the bound with no error.
    pub passed: bool,
}

/// The heartbeat capacity search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeats {
    /// The renewal p99 bound, in milliseconds.
    pub bound_ms: f64,
    /// The most servers whose renewals stayed under the bound (0 if none did).
    pub capacity: usize,
    /// Whether the search stopped at its cap while still under the bound.
    pub reached_cap: bool,
    /// Every step, in order.
    pub steps: Vec<HeartbeatStep>,
}

/// Leader kills under a one-at-a-time write loop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failover {
    /// `licd` or `etcd`.
    pub system: String,
    /// Leaders killed with SIGKILL.
    pub kills: u32,
    /// Writes that returned an error to the caller (after the client's own retries).
    pub errors: u64,
    /// The gaps between successful writes.
    pub gaps: GapSummary,
    /// Each kill, timed.
    #[serde(default)]
    pub per_kill: Vec<KillTiming>,
}

/// How long one kill of the leader took to get over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillTiming {
    /// From the kill until a surviving member named a new leader, in milliseconds (`None`:
    /// none was seen named before the cluster moved on).
    pub to_leader_ms: Option<f64>,
    /// From the kill until the next write succeeded, in milliseconds.
    pub to_write_ms: Option<f64>,
}

/// Where the figures were measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs (`nproc`).
    pub cpus: usize,
    /// The CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// `release` or `debug`: how this licd was built.
    pub build: String,
    /// The etcd version measured, if any.
    pub etcd_version: Option<String>,
}

/// The Raft timing both clusters ran with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    /// licd's leader heartbeat interval (etcd's `--heartbeat-interval`).
    pub heartbeat_ms: u64,
    /// licd's lower bound of the election timeout (etcd's `--election-timeout`).
    pub election_timeout_min_ms: u64,
    /// licd's upper bound of the election timeout.
    pub election_timeout_max_ms: u64,
}

/// Everything one `licd bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// The Raft timing of the clusters the bench started (`--raft-timing`); `None` when it
    /// measured a running cluster (`--endpoints`).
    pub raft_timing: Option<Timing>,
    /// Seconds each throughput workload ran.
    pub duration_s: f64,
    /// How many times each throughput workload ran (`--rounds`).
    #[serde(default = "one")]
    pub rounds: u32,
    /// The throughput workloads: with several rounds, each one's round of median throughput.
    pub rows: Vec<Row>,
    /// Every round's rows, in the order they ran (empty with one round: `rows` are it).
    #[serde(default)]
    pub round_rows: Vec<Vec<Row>>,
    /// The heartbeat capacity search, if it ran.
    pub heartbeat: Option<Heartbeats>,
    /// The failover runs, licd's and etcd's.
    pub failover: Vec<Failover>,
}

fn one() -> u32 {
    1
}

/// Of the rows of several rounds, one per system, workload and connection count, in the
/// order they first ran: the round with the median throughput (with an even number of
/// rounds, the lower of the two middle ones), so a row's figures all come from one run.
pub fn median_rows(rounds: &[Vec<Row>]) -> Vec<Row> {
    let mut keys: Vec<(&str, &str, usize)> = Vec::new();
    for row in rounds.iter().flatten() {
        let key = (row.system.as_str(), row.workload.as_str(), row.connections);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .filter_map(|(system, workload, connections)| {
            let mut runs: Vec<&Row> = rounds
                .iter()
                .flatten()
                .filter(|r| {
                    r.system == system && r.workload == workload && r.connections == connections
                })
                .collect();
            runs.sort_by(|a, b| a.summary.per_second.total_cmp(&b.summary.per_second));
            runs.get((runs.len().max(1) - 1) / 2).map(|r| (*r).clone())
        })
        .collect()
}

impl Machine {
    /// This machine, for this build.
    pub fn this(etcd_version: Option<String>) -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            etcd_version,
        }
    }
}

/// The median and the largest of `values` (the lower middle one of an even count), or `None`
/// when there are none.
fn median_and_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let max = *sorted.last()?;
    Some((sorted[(sorted.len() - 1) / 2], max))
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The table, one line per workload and connection count; etcd's columns and the ratios
/// licd/etcd when etcd ran.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let m = &report.machine;
    out.push_str(&format!(
        "licd bench: {} build, {} CPUs ({}), {:.1} s per workload{}{}{}\n\n",
        m.build,
        m.cpus,
        m.cpu_model,
        report.duration_s,
        if report.rounds > 1 {
            format!(
                ", the median of {} rounds{}",
                report.rounds,
                if m.etcd_version.is_some() {
                    " (licd and etcd taking turns)"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        },
        report
            .raft_timing
            .map(|t| format!(
                ", Raft heartbeat {} ms, election timeout {}-{} ms",
                t.heartbeat_ms, t.election_timeout_min_ms, t.election_timeout_max_ms
            ))
            .unwrap_or_default(),
        m.etcd_version
            .as_ref()
            .map(|v| format!(", etcd {v}"))
            .unwrap_or_default()
    ));
    if report.rows.iter().any(|r| r.system == "licd") {
        throughput_table(report, &mut out);
    }
    if let Some(h) = &report.heartbeat {
        out.push_str(&format!(
            "\nheartbeat capacity: {}{} application servers with a 30 s lease renewing every 10 s \
             kept renewal p99 under {} ms\n",
            if h.reached_cap { "at least " } else { "" },
            h.capacity,
            h.bound_ms
        ));
        for step in &h.steps {
            out.push_str(&format!(
                "  {:>6} servers: {:>6} renewals, p50 {:.2} ms, p99 {:.2} ms, {} errors{}\n",
                step.servers,
                step.summary.count,
                step.summary.p50_ms,
                step.summary.p99_ms,
                step.summary.errors,
                if step.passed {
                    ""
                } else {
                    "  (over the bound)"
                }
            ));
        }
    }
    if !report.failover.is_empty() {
        out.push_str("\nfailover (SIGKILL of the leader under one-at-a-time writes):\n");
        for f in &report.failover {
            out.push_str(&format!(
                "  {:<5} {:>3} kills: {:>6} writes, longest gap {:.0} ms, p99 gap {:.1} ms, \
                 median gap {:.2} ms, {} errors returned to the caller\n",
                f.system,
                f.kills,
                f.gaps.successes,
                f.gaps.longest_ms,
                f.gaps.p99_ms,
                f.gaps.p50_ms,
                f.errors
            ));
            let leader: Vec<f64> = f.per_kill.iter().filter_map(|k| k.to_leader_ms).collect();
            let write: Vec<f64> = f.per_kill.iter().filter_map(|k| k.to_write_ms).collect();
            if let (Some(l), Some(w)) = (median_and_max(&leader), median_and_max(&write)) {
                out.push_str(&format!(
                    "        after a kill: a new leader named in {:.0} ms (median; longest \
                     {:.0} ms), the next write in {:.0} ms (median; longest {:.0} ms)\n",
                    l.0, l.1, w.0, w.1
                ));
            }
        }
        if let [l, e] = &report.failover[..] {
            out.push_str(&format!(
                "  licd/etcd: longest gap {}, p99 gap {}\n",
                ratio(l.gaps.longest_ms, e.gaps.longest_ms),
                ratio(l.gaps.p99_ms, e.gaps.p99_ms)
            ));
        }
    }
    out
}

/// The throughput lines of [`table`].
fn throughput_table(report: &Report, out: &mut String) {
    let with_etcd = report.rows.iter().any(|r| r.system == "etcd");
    out.push_str(&format!(
        "{:<10} {:>5} | {:>9} {:>8} {:>8} {:>8} {:>6}",
        "workload", "conns", "licd op/s", "p50 ms", "p99 ms", "p999 ms", "errors"
    ));
    if with_etcd {
        out.push_str(&format!(
            " | {:>9} {:>8} {:>8} {:>8} | {:>9} {:>9}",
            "etcd op/s", "p50 ms", "p99 ms", "p999 ms", "op/s l/e", "p50 l/e"
        ));
    }
    out.push('\n');
    for row in report.rows.iter().filter(|r| r.system == "licd") {
        let s = &row.summary;
        out.push_str(&format!(
            "{:<10} {:>5} | {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>6}",
            row.workload, row.connections, s.per_second, s.p50_ms, s.p99_ms, s.p999_ms, s.errors
        ));
        if with_etcd {
            let etcd = report.rows.iter().find(|e| {
                e.system == "etcd" && e.workload == row.workload && e.connections == row.connections
            });
            match etcd {
                Some(e) => {
                    let t = &e.summary;
                    out.push_str(&format!(
                        " | {:>9.0} {:>8.2} {:>8.2} {:>8.2} | {:>9} {:>9}",
                        t.per_second,
                        t.p50_ms,
                        t.p99_ms,
                        t.p999_ms,
                        ratio(s.per_second, t.per_second),
                        ratio(s.p50_ms, t.p50_ms)
                    ));
                }
                None => out.push_str(&format!(" | {:>9} {:>8} {:>8} {:>8} |", "-", "-", "-", "-")),
            }
        }
        out.push('\n');
    }
    if report.round_rows.len() > 1 {
        per_round(report, with_etcd, out);
    }
}

/// Each round's throughput (and ratio, beside etcd), so the spread of the medians shows.
fn per_round(report: &Report, with_etcd: bool, out: &mut String) {
    out.push_str(if with_etcd {
        "\nop/s in each round, licd (licd/etcd):\n"
    } else {
        "\nop/s in each round:\n"
    });
    for row in report.rows.iter().filter(|r| r.system == "licd") {
        let find = |round: &[Row], system: &str| {
            round
                .iter()
                .find(|r| {
                    r.system == system
                        && r.workload == row.workload
                        && r.connections == row.connections
                })
                .map(|r| r.summary.per_second)
        };
        let cells: Vec<String> = report
            .round_rows
            .iter()
            .map(|round| match (find(round, "licd"), find(round, "etcd")) {
                (Some(l), Some(e)) if with_etcd => format!("{l:.0} ({})", ratio(l, e)),
                (Some(l), _) => format!("{l:.0}"),
                (None, _) => "-".into(),
            })
            .collect();
        out.push_str(&format!(
            "  {:<10} {:>5}: {}\n",
            row.workload,
            row.connections,
            cells.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::{Row, median_and_max, median_rows};
    use crate::bench::stats::summarize;
    use std::time::Duration;

    fn row(system: &str, workload: &str, connections: usize, requests: u64) -> Row {
        // `requests` answers of 1 ms each in one second: `requests` per second.
        let latencies = vec![1000; usize::try_from(requests).unwrap()];
        Row {
            system: system.into(),
            workload: workload.into(),
            connections,
            summary: summarize(latencies, 0, Duration::from_secs(1)),
        }
    }

    #[test]
    fn each_line_takes_the_round_of_median_throughput() {
        let rounds = vec![
            vec![row("licd", "check", 64, 300), row("etcd", "check", 64, 10)],
            vec![row("etcd", "check", 64, 30), row("licd", "check", 64, 100)],
            vec![row("licd", "check", 64, 200), row("etcd", "check", 64, 20)],
        ];
        let rows = median_rows(&rounds);
        let rates: Vec<(&str, f64)> = rows
            .iter()
            .map(|r| (r.system.as_str(), r.summary.per_second))
            .collect();
        assert_eq!(rates, vec![("licd", 200.0), ("etcd", 20.0)]);
        // An even number of rounds takes the lower middle; one round is itself.
        assert_eq!(median_rows(&rounds[..2])[0].summary.per_second, 100.0);
        assert_eq!(median_rows(&rounds[..1])[0].summary.per_second, 300.0);
        assert!(median_rows(&[]).is_empty());
    }

    #[test]
    fn the_median_and_the_longest() {
        assert_eq!(median_and_max(&[]), None);
        assert_eq!(median_and_max(&[300.0, 100.0, 200.0]), Some((200.0, 300.0)));
        assert_eq!(median_and_max(&[4.0, 1.0, 3.0, 2.0]), Some((2.0, 4.0)));
    }
}
