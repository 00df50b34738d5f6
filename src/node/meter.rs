//! [`Meter`]: the node's Prometheus metrics (`GET /metrics`).
//!
//! Counters and latency histograms are recorded as requests are answered; gauges (license
//! usage, Raft progress, peers, clocks) are taken from the node's state and status when the
//! metrics are scraped, so they are never stale. Each node has a recorder of its own rather
//! than the process-wide one, so several nodes in one process (the tests) keep apart.
//!
//! Gauges of a license that was removed keep their last value until the process restarts.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::Node;
use super::status::Role;

/// Latency buckets, in seconds: from a local check (well under a millisecond) to a write
/// that waited for a failover.
const BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A node's metrics recorder.
pub struct Meter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}

impl Default for Meter {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        Meter { recorder, handle }
    }
}

impl Meter {
    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// One answered request of `kind` (`allocate`, `release`, `heartbeat`, `check`, ...) with
    /// its `outcome` (`ok`, `refused`, `unavailable`, `bad_request`, `error`).
    pub fn request(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.with(|| {
            counter!("licd_requests_total", "kind" => kind, "outcome" => outcome).increment(1);
            histogram!("licd_request_duration_seconds", "kind" => kind).record(took.as_secs_f64());
        });
    }

    /// A request refused by a license rule, by code.
    pub fn refusal(&self, code: &'static str) {
        self.with(|| counter!("licd_refusals_total", "code" => code).increment(1));
    }

    /// A license check's answer, by code (`VALID`, `NOT_ALLOCATED`, ...).
    pub fn check_answer(&self, code: &'static str) {
        self.with(|| counter!("licd_check_answers_total", "code" => code).increment(1));
    }

    /// Leases this node ended (as leader) because they were over.
    pub fn leases_expired(&self, n: usize) {
        self.with(|| counter!("licd_lease_expirations_total").increment(n as u64));
    }

    /// This node proposed one log entry carrying `writes` writes ([`super::writes`]).
    pub fn write_entry(&self, writes: usize) {
        self.with(|| {
            counter!("licd_write_entries_total").increment(1);
            counter!("licd_writes_total").increment(writes as u64);
        });
    }

    /// This node saw the leader change.
    pub fn leader_changed(&self) {
        self.with(|| counter!("licd_leader_changes_total").increment(1));
    }

    /// This node stood for election because its leader fell silent ([`super::failover`]).
    pub fn prompt_election(&self) {
        self.with(|| counter!("licd_prompt_elections_total").increment(1));
    }

    /// The metrics in Prometheus' text format, gauges taken from `node` now.
    pub fn render(&self, node: &Node) -> String {
        let status = node.status();
        let today = node.calendar_now();
        self.with(|| {
            gauge!("licd_raft_term").set(status.term as f64);
            gauge!("licd_raft_leader").set(f64::from(u8::from(status.role == Role::Leader)));
            let index = |i: Option<u64>| i.map_or(0.0, |i| i as f64);
            gauge!("licd_raft_last_log_index").set(index(status.last_log_index));
            gauge!("licd_raft_applied_index").set(index(status.last_applied_index));
            gauge!("licd_raft_snapshot_index").set(index(status.snapshot_index));
            if status.role == Role::Leader {
                let voters = status.voters().len();
                gauge!("licd_voters").set(voters as f64);
                gauge!("licd_voters_up").set((voters - status.down_voters().len()) as f64);
                if let Some(clocks) = status.clocks {
                    gauge!("licd_clocks_agreed").set(f64::from(u8::from(clocks.agreed)));
                }
                for m in &status.members {
                    let peer = m.id.to_string();
                    if let Some(p) = &m.progress {
                        gauge!("licd_peer_healthy", "peer" => peer.clone())
                            .set(f64::from(u8::from(p.healthy)));
                        if let Some(lag) = p.lag {
                            gauge!("licd_peer_replication_lag", "peer" => peer.clone())
                                .set(lag as f64);
                        }
                        if let Some(ms) = p.last_contact_ms {
                            gauge!("licd_peer_last_contact_seconds", "peer" => peer.clone())
                                .set(ms as f64 / 1e3);
                        }
                    }
                    if let Some(ms) = m.clock_skew_ms {
                        gauge!("licd_peer_clock_skew_seconds", "peer" => peer).set(ms as f64 / 1e3);
                    }
                }
            }
            node.read_local(|applied| {
                let state = &applied.licenses;
                let today = today.map_or(state.clock(), |t| t.max(state.clock()));
                for (id, license) in state.licenses() {
                    let id = id.to_string();
                    let allocated = state.counted_cores(&license.id);
                    let servers = state
                        .allocations()
                        .values()
                        .filter(|a| a.license == license.id)
                        .count();
                    let cores = |kind: &'static str, n: f64| {
                        gauge!("licd_license_cores", "license" => id.clone(), "kind" => kind)
                            .set(n);
                    };
                    cores("licensed", f64::from(license.max_cores));
                    cores("allocated", allocated as f64);
                    cores(
                        "free",
                        u64::from(license.max_cores).saturating_sub(allocated) as f64,
                    );
                    gauge!("licd_license_servers", "license" => id.clone()).set(servers as f64);
                    if let Some(at) = license.expires_at {
                        let left = (at.0 as f64 - today.0 as f64) / 1e3;
                        gauge!("licd_license_expiry_seconds", "license" => id).set(left);
                    }
                }
            });
        });
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_prometheus_text() {
        let meter = Meter::default();
        meter.request("check", "ok", Duration::from_micros(700));
        meter.request("check", "ok", Duration::from_millis(3));
        meter.refusal("CPU_LIMIT_EXHAUSTED");
        meter.leases_expired(2);
        let text = meter.handle.render();
        assert!(
            text.contains(r#"licd_requests_total{kind="check",outcome="ok"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"licd_refusals_total{code="CPU_LIMIT_EXHAUSTED"} 1"#));
        assert!(text.contains("licd_lease_expirations_total 2"));
        assert!(
            text.contains(r#"licd_request_duration_seconds_bucket{kind="check",le="0.001"} 1"#)
        );
        assert!(text.contains(r#"licd_request_duration_seconds_count{kind="check"} 2"#));
    }

    #[test]
    fn two_meters_keep_apart() {
        let a = Meter::default();
        let b = Meter::default();
        a.leader_changed();
        assert!(a.handle.render().contains("licd_leader_changes_total 1"));
        assert!(!b.handle.render().contains("licd_leader_changes_total"));
    }
}
