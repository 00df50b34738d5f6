//! Heartbeat capacity: how many application servers one cluster keeps leased.
//!
//! Each simulated server holds a 30 s lease and renews it every 10 s, as the agent does, at
//! its own phase, so `n` servers offer `n / 10` renewals a second, evenly spread. The search
//! doubles `n` until the renewals' p99 (counted from when each renewal was due) exceeds the
//! bound, an error occurs, or the cap is reached.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use super::local::HEARTBEATERS;
use crate::bench::load::{Budget, MakeRequest, closed_loop, scheduled};
use crate::bench::report::{HeartbeatStep, Heartbeats};
use crate::bench::requests::{Access, BENCH_LEASE_MS, licd_allocate_first, licd_heartbeat};
use crate::bench::stats::summarize;

/// The search's settings.
pub(super) struct Search {
    /// The first step's servers.
    pub(super) first: usize,
    /// The most servers tried.
    pub(super) cap: usize,
    /// The renewal p99 bound.
    pub(super) bound: Duration,
    /// How long each step runs (at least one renewal period in a full run).
    pub(super) step: Duration,
    /// Connections the renewals share.
    pub(super) connections: usize,
}

/// When each of `servers` servers renews within `length`: server `i` at
/// `i * period / servers`, then every `period`.
fn renewal_schedule(servers: usize, period: Duration, length: Duration) -> Vec<(Duration, u64)> {
    let mut schedule = Vec::new();
    for i in 0..servers {
        let mut at = period.mul_f64(i as f64 / servers as f64);
        while at < length {
            schedule.push((at, i as u64));
            at += period;
        }
    }
    schedule.sort();
    schedule
}

/// Runs the search against the leader at `addr`.
pub(super) async fn search(addr: &str, access: &Access, s: &Search) -> anyhow::Result<Heartbeats> {
    let period = Duration::from_millis(BENCH_LEASE_MS / 3);
    let mut allocated = 0usize;
    let mut steps = Vec::new();
    let mut capacity = 0;
    let mut servers = s.first.min(s.cap).max(1);
    loop {
        if servers > allocated {
            let (a, from) = (access.clone(), allocated as u32);
            let host = addr.to_string();
            let make: MakeRequest = Arc::new(move |_, seq| {
                licd_allocate_first(&a, &host, HEARTBEATERS, from + seq as u32)
            });
            let r = closed_loop(
                addr,
                s.connections.min(servers - allocated),
                Budget::Requests((servers - allocated) as u64),
                make,
            )
            .await?;
            if r.errors > 0 {
                bail!(
                    "allocating {servers} heartbeating servers: {} failed; the first: {}",
                    r.errors,
                    r.first_error.unwrap_or_default()
                );
            }
            allocated = servers;
        }
        let (a, host) = (access.clone(), addr.to_string());
        let make: MakeRequest =
            Arc::new(move |_, item| licd_heartbeat(&a, &host, HEARTBEATERS, item as u32));
        let schedule = renewal_schedule(servers, period, s.step);
        let r = scheduled(addr, s.connections, schedule, make).await?;
        let summary = summarize(r.latencies_us, r.errors, r.elapsed);
        let passed = summary.errors == 0
            && summary.count > 0
            && summary.p99_ms <= s.bound.as_secs_f64() * 1e3;
        steps.push(HeartbeatStep {
            servers,
            summary,
            passed,
        });
        if !passed {
            break;
        }
        capacity = servers;
        if servers >= s.cap {
            break;
        }
        servers = (servers * 2).min(s.cap);
    }
    Ok(Heartbeats {
        bound_ms: s.bound.as_secs_f64() * 1e3,
        capacity,
        reached_cap: capacity >= s.cap,
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_spread_evenly_over_the_period() {
        let s = renewal_schedule(4, Duration::from_secs(10), Duration::from_secs(15));
        let at: Vec<(u64, u64)> = s.iter().map(|(d, i)| (d.as_millis() as u64, *i)).collect();
        assert_eq!(
            at,
            vec![
                (0, 0),
                (2500, 1),
                (5000, 2),
                (7500, 3),
                (10_000, 0),
                (12_500, 1)
            ]
        );
    }
}
