//! One run: start a cluster, install the license, run the workload while the nemesis injects
//! and heals faults, heal everything, read the final state, check the history, write the
//! report.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use licd_raft::license::License;
use licd_raft::license_file::{LicenseFile, encode_public_key, generate_signing_key};
use licd_raft::types::{LicenseId, Timestamp};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::cluster::Cluster;
use super::fault::Fault;
use super::leases::{self, LEASE_MAX_CORES};
use super::nemesis::Nemesis;
use super::outcome::RunOutcome;
use super::report;
use super::workload::{self, LICENSE_ID, MAX_CORES, MIN_CORES_PER_NODE, Recorder};
use crate::checker::{self, CheckConfig, LeaseConfig};
use crate::history::{F, History};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The run's name (its directory under `out`).
    pub name: String,
    /// The licd binary.
    pub bin: PathBuf,
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// How long faults are injected.
    pub time: Duration,
    /// The seed of the fault schedule and the workload.
    pub seed: u64,
    /// Logical clients.
    pub concurrency: usize,
    /// Where run directories go.
    pub out: PathBuf,
    /// The largest clock skew, in minutes.
    pub max_skew_minutes: i64,
    /// Application servers of the lease workload (none: no lease workload).
    pub lease_servers: usize,
}

/// The license of harness runs.
fn license() -> License {
    License {
        id: LicenseId::new(LICENSE_ID).expect("valid id"),
        customer: "Jepsen".into(),
        issued_at: Timestamp(1_000),
        expires_at: None,
        max_cores: MAX_CORES,
        min_cores_per_node: MIN_CORES_PER_NODE,
        allowed_macs: workload::servers()
            .into_iter()
            .map(|(_, _, mac)| mac)
            .collect(),
        features: Default::default(),
        serial: 1,
    }
}

/// Runs one test end to end. Errors are setup failures; violations are in the outcome.
pub async fn run(spec: &RunSpec) -> anyhow::Result<RunOutcome> {
    let dir = spec.out.join(&spec.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let vendor = generate_signing_key(&mut rand::rngs::OsRng);
    let license = license();
    let license_text = LicenseFile::issue(&license, &vendor)?;

    let mut cluster = Cluster::new(&spec.bin, &dir, encode_public_key(&vendor.verifying_key()));
    for id in 1..=3 {
        cluster.add_node(id)?;
    }
    for id in 1..=3 {
        cluster.wait_healthy(id, Duration::from_secs(30)).await?;
    }
    cluster
        .init(&[1, 2, 3])
        .await
        .context("initializing the cluster")?;
    cluster
        .leader(Duration::from_secs(20))
        .await
        .context("no leader after initialization")?;
    cluster
        .install_license(&license_text)
        .await
        .context("installing the license")?;
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0)),
    );
    let lease_servers = leases::lease_servers(spec.lease_servers, spec.seed);
    if spec.lease_servers > 0 {
        let text = LicenseFile::issue(&leases::lease_license(&lease_servers, now), &vendor)?;
        cluster
            .install_license(&text)
            .await
            .context("installing the lease license")?;
    }
    let timing = licd::config::RaftTiming::default();
    let lease_config = LeaseConfig {
        max_cores: u64::from(LEASE_MAX_CORES),
        checkpoint_ms: timing.lease_checkpoint_ms,
        election_timeout_max_ms: timing.election_timeout_max_ms,
        tick_ms: timing.tick_ms,
    };

    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(workload::run_clients(
        rec.clone(),
        Cluster::all_endpoints(),
        spec.concurrency,
        spec.seed,
        stop.clone(),
    ));
    let lease_clients = tokio::spawn(leases::run_lease_workload(
        rec.clone(),
        Cluster::all_endpoints(),
        spec.lease_servers,
        spec.seed,
        lease_config,
        stop.clone(),
    ));

    let pinned = (0..spec.concurrency)
        .filter(|i| i % 2 == 1)
        .map(workload::pinned_node)
        .collect();
    let mut nemesis = Nemesis::new(
        StdRng::seed_from_u64(spec.seed),
        spec.concurrency,
        4,
        pinned,
    );
    nemesis.max_skew_minutes = spec.max_skew_minutes;
    let mut voters: BTreeSet<u64> = [1, 2, 3].into();
    let started = Instant::now();
    let mut injected = 0;
    let mut fault_time = Duration::ZERO;
    while started.elapsed() < spec.time {
        let pause = nemesis.millis(1_500, 3_000);
        tokio::time::sleep(pause).await;
        if let Some((_, v)) = cluster.leader(Duration::from_secs(2)).await {
            voters = v;
        }
        let fault = nemesis.pick(&spec.faults);
        let active = match nemesis.inject(&mut cluster, fault).await {
            Ok(a) => a,
            Err(e) => {
                rec.nemesis(F::Start, fault, Some(format!("not injected: {e:#}")));
                rec.nemesis(F::Stop, fault, None);
                continue;
            }
        };
        let began = Instant::now();
        rec.nemesis(F::Start, active.fault, Some(active.detail.clone()));
        injected += 1;
        tokio::time::sleep(nemesis.millis(2_000, 5_000)).await;
        let name = active.fault;
        let healed = nemesis.heal(&mut cluster, active).await;
        fault_time += began.elapsed();
        rec.nemesis(
            F::Stop,
            name,
            healed.err().map(|e| format!("heal failed: {e:#}")),
        );
        if let Some((_, v)) = cluster.leader(Duration::from_secs(5)).await {
            voters = v;
        }
    }
    // Heal everything, let the workload run on a healthy cluster, then read the final state.
    // Every fault was healed as it ended; this only repairs what a failed heal left behind.
    nemesis.heal_all(&mut cluster, &voters).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    clients.await??;
    lease_clients.await??;
    let read =
        workload::final_reads(&rec, &Cluster::all_endpoints(), Duration::from_secs(30)).await?;
    if !read {
        eprintln!(
            "licd-jepsen: {}: no final read succeeded within 30 s",
            spec.name
        );
    }
    cluster.stop_all();

    let events = rec.events();
    report::write_history(&dir.join("history.jsonl"), &events)?;
    let history = History::from_events(events).context("the recorded history is malformed")?;
    let mut config = CheckConfig::new(checker::License {
        max_cores: u64::from(MAX_CORES),
        min_cores_per_node: MIN_CORES_PER_NODE,
    });
    config.lease = lease_config;
    let report = checker::check_all(&history, &config);
    let outcome = RunOutcome {
        name: spec.name.clone(),
        dir: dir.clone(),
        faults: spec.faults.clone(),
        seed: spec.seed,
        operations: history.ops.len(),
        faults_injected: injected,
        fault_seconds: fault_time.as_secs_f64(),
        report,
    };
    report::write_results(&dir, &outcome, &history)?;
    Ok(outcome)
}
