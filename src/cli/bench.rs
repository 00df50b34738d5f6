//! `licd bench`: measures a licd cluster on this machine, and etcd beside it when asked.
//!
//! By default it starts three `licd serve` children of this binary (as `licd dev` does, in a
//! temporary directory removed at the end), measures, prints a table and stops them; with
//! `--vs-etcd` it also starts three etcd members and runs the same shapes on them, adding a
//! ratio column licd/etcd. Whatever fails, or on Ctrl-C, every child is stopped.
//!
//! The workloads (see docs/performance.md): `write` (allocations with a fresh request id,
//! each a Raft write), `check` (linearizable reads), `healthz` (the HTTP ceiling), each at one
//! connection and at `--connections`, all sent to the leader; `heartbeat` (the capacity
//! search); `failover` (leader kills under one-at-a-time writes through the client library).
//! The instruments themselves live in [`crate::bench`].

mod etcd;
mod failover;
mod heartbeat;
mod local;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use licd_raft::types::NodeName;

use self::etcd::LocalEtcd;
use self::local::{FAILOVER, LocalLicd, WRITERS, bench_client, remote_leader};
use crate::api::AllocateBody;
use crate::bench::load::{Budget, Connection, MakeRequest, closed_loop};
use crate::bench::report::{Machine, Report, Row, Timing, median_rows, table};
use crate::bench::requests::{self, Access, BENCH_CORES, BENCH_LEASE_MS, bench_mac, bench_node};
use crate::bench::stats::{check_summary, summarize};
use crate::cli::output::Output;
use crate::client::new_request_id;
use crate::config::RaftTiming;

/// What `licd bench` can measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Allocations, each a Raft write.
    Write,
    /// License checks, each a linearizable read.
    Check,
    /// `GET /healthz` (etcd: `/version`): the HTTP ceiling.
    Healthz,
    /// How many application servers can heartbeat under the renewal bound.
    Heartbeat,
    /// Leader kills under one-at-a-time writes.
    Failover,
}

/// Options of `licd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Measure the cluster at these host:port endpoints instead of starting one (check and
    /// healthz only: the other workloads need the bench's own license and processes).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    pub endpoints: Vec<String>,
    /// Also start a three-member etcd cluster (the `etcd` on PATH) and run the same shapes.
    #[arg(long)]
    pub vs_etcd: bool,
    /// Seconds each throughput workload runs [default: 5, --quick: 1].
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Connections of the concurrent runs (each workload also runs on one connection).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Only these workloads (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Workload>,
    /// Leader kills of the failover workload [default: 20, --quick: 1].
    #[arg(long)]
    pub kills: Option<u32>,
    /// The most application servers the heartbeat search tries [default: 4000, --quick: 50].
    #[arg(long, value_name = "SERVERS")]
    pub heartbeat_cap: Option<usize>,
    /// The renewal p99 bound of the heartbeat search, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub heartbeat_bound_ms: u64,
    /// The Raft timing of the clusters the bench starts, in milliseconds: the heartbeat
    /// interval and the bounds of the election timeout (etcd gets the heartbeat and the
    /// lower bound as its `--heartbeat-interval` and `--election-timeout`) [default: licd's,
    /// 50,250,500].
    #[arg(long, value_delimiter = ',', value_name = "HEARTBEAT,MIN,MAX")]
    pub raft_timing: Vec<u64>,
    /// Run each throughput workload this many times, licd and etcd taking turns, and report
    /// the round with the median throughput (the JSON keeps every round).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub rounds: u32,
    /// A very short run of everything, for a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// Also write the figures as JSON into this file (the global --json prints them on
    /// stdout instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}

/// The settings of one run, defaults applied.
struct Plan {
    duration: Duration,
    rounds: u32,
    connections: usize,
    workloads: Vec<Workload>,
    kills: u32,
    heartbeat_first: usize,
    heartbeat_cap: usize,
    heartbeat_bound: Duration,
    heartbeat_step: Duration,
    settle: Duration,
    timing: Timing,
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
        let duration = args.duration.unwrap_or(if args.quick { 1.0 } else { 5.0 });
        if !(duration > 0.0 && duration <= 3600.0) {
            bail!("--duration must be more than 0 and at most 3600 seconds");
        }
        if !(1..=1024).contains(&args.connections) {
            bail!("--connections must be 1 to 1024");
        }
        if !(1..=99).contains(&args.rounds) {
            bail!("--rounds must be 1 to 99");
        }
        let workloads = if args.only.is_empty() {
            vec![
                Workload::Healthz,
                Workload::Check,
                Workload::Write,
                Workload::Heartbeat,
                Workload::Failover,
            ]
        } else {
            args.only.clone()
        };
        let heartbeat_cap = args
            .heartbeat_cap
            .unwrap_or(if args.quick { 50 } else { 4000 });
        if !(1..=60_000).contains(&heartbeat_cap) {
            bail!("--heartbeat-cap must be 1 to 60000");
        }
        let duration = Duration::from_secs_f64(duration);
        let timing = raft_timing(&args.raft_timing)?;
        if args.vs_etcd && timing.election_timeout_min_ms < 5 * timing.heartbeat_ms {
            bail!(
                "--raft-timing with --vs-etcd: etcd wants an election timeout (MIN) of at least \
                 five heartbeats"
            );
        }
        Ok(Plan {
            timing,
            duration,
            rounds: args.rounds,
            connections: args.connections,
            workloads,
            kills: args.kills.unwrap_or(if args.quick { 1 } else { 20 }),
            heartbeat_first: if args.quick { 25 } else { 250 },
            heartbeat_cap,
            heartbeat_bound: Duration::from_millis(args.heartbeat_bound_ms),
            // A full run's steps last a whole renewal period, so every server renews.
            heartbeat_step: if args.quick {
                duration
            } else {
                duration.max(Duration::from_millis(BENCH_LEASE_MS / 3))
            },
            settle: if args.quick {
                Duration::from_millis(300)
            } else {
                Duration::from_secs(1)
            },
        })
    }

    /// The timing as the nodes' configuration takes it.
    fn node_timing(&self) -> RaftTiming {
        RaftTiming {
            heartbeat_ms: self.timing.heartbeat_ms,
            election_timeout_min_ms: self.timing.election_timeout_min_ms,
            election_timeout_max_ms: self.timing.election_timeout_max_ms,
            ..RaftTiming::default()
        }
    }

    fn runs(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }

    /// The bench servers that write (one per connection) and are checked.
    fn writers(&self) -> u32 {
        u32::try_from(self.connections).unwrap_or(u32::MAX)
    }

    /// The throughput workloads of one round, in the table's order.
    fn jobs(&self) -> Vec<Job> {
        let mut jobs = Vec::new();
        for (workload, shape) in [
            (Workload::Check, Shape::Check),
            (Workload::Healthz, Shape::Healthz),
            (Workload::Write, Shape::Write),
        ] {
            if !self.runs(workload) {
                continue;
            }
            // The ceiling is measured at the concurrent count only.
            let counts = if shape == Shape::Healthz {
                vec![self.connections]
            } else {
                self.connection_counts()
            };
            jobs.extend(
                counts
                    .into_iter()
                    .map(|connections| Job { shape, connections }),
            );
        }
        jobs
    }

    /// The connection counts each throughput workload runs at.
    fn connection_counts(&self) -> Vec<usize> {
        let mut c = vec![1, self.connections];
        c.dedup();
        c
    }
}

/// `--raft-timing`'s three figures, or licd's defaults; checked by a node configuration's
/// rules.
fn raft_timing(given: &[u64]) -> anyhow::Result<Timing> {
    let d = RaftTiming::default();
    let [
        heartbeat_ms,
        election_timeout_min_ms,
        election_timeout_max_ms,
    ] = match given {
        [] => [
            d.heartbeat_ms,
            d.election_timeout_min_ms,
            d.election_timeout_max_ms,
        ],
        [h, min, max] => [*h, *min, *max],
        _ => bail!("--raft-timing takes three figures: HEARTBEAT,MIN,MAX (milliseconds)"),
    };
    let timing = Timing {
        heartbeat_ms,
        election_timeout_min_ms,
        election_timeout_max_ms,
    };
    if timing.heartbeat_ms == 0
        || timing.election_timeout_min_ms <= timing.heartbeat_ms
        || timing.election_timeout_max_ms <= timing.election_timeout_min_ms
    {
        bail!("--raft-timing: the heartbeat must be above 0 and below MIN, and MIN below MAX");
    }
    Ok(timing)
}

/// Runs `licd bench`.
pub async fn run(args: BenchArgs, out: Output) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(&args)?;
    let etcd_exe = if args.vs_etcd {
        Some(etcd::find_etcd().context(
            "--vs-etcd needs an `etcd` executable on PATH (Debian: apt-get install etcd-server)",
        )?)
    } else {
        None
    };
    if !args.endpoints.is_empty()
        && plan.workloads.iter().any(|w| {
            matches!(
                w,
                Workload::Write | Workload::Heartbeat | Workload::Failover
            )
        })
    {
        bail!(
            "with --endpoints only `--only check,healthz` can run: writes, heartbeats and \
             failover need the bench's own cluster and license"
        );
    }
    if !args.endpoints.is_empty() && !args.raft_timing.is_empty() {
        bail!("--raft-timing sets the timing of the clusters the bench starts, not of --endpoints");
    }
    let etcd_version = match &etcd_exe {
        Some(exe) => Some(etcd::etcd_version(exe)?),
        None => None,
    };
    let work = measure_all(&args, &plan, etcd_exe);
    let report = tokio::select! {
        r = work => r?,
        _ = tokio::signal::ctrl_c() => {
            // Dropping the measurement stops every child and removes the temporary files.
            bail!("interrupted; the bench clusters are stopped");
        }
    };
    let report = Report {
        machine: Machine::this(etcd_version),
        ..report
    };
    let text = serde_json::to_string_pretty(&report)?;
    // With the global --json, the JSON document replaces the table on stdout.
    if out.json {
        println!("{text}");
    } else {
        print!("{}", table(&report));
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One throughput workload on one system.
async fn throughput(
    system: &str,
    workload: &str,
    addr: &str,
    connections: usize,
    duration: Duration,
    make: MakeRequest,
) -> anyhow::Result<Row> {
    eprintln!("licd bench: {system} {workload} on {connections} connections ...");
    let r = closed_loop(addr, connections, Budget::Time(duration), make).await?;
    if let Some(e) = &r.first_error {
        eprintln!(
            "licd bench: {system} {workload}: {} errors; the first: {e}",
            r.errors
        );
    }
    let summary = summarize(r.latencies_us, r.errors, r.elapsed);
    // A workload that measured nothing is a failed run, not a row of zeros.
    check_summary(&summary).map_err(|e| {
        anyhow::anyhow!(
            "{system} {workload} on {connections} connections: {e} ({})",
            r.first_error.unwrap_or_default()
        )
    })?;
    Ok(Row {
        system: system.into(),
        workload: workload.into(),
        connections,
        summary,
    })
}

async fn measure_all(
    args: &BenchArgs,
    plan: &Plan,
    etcd_exe: Option<PathBuf>,
) -> anyhow::Result<Report> {
    let mut report = Report {
        machine: Machine::this(None),
        raft_timing: args.endpoints.is_empty().then_some(plan.timing),
        duration_s: plan.duration.as_secs_f64(),
        rounds: plan.rounds,
        rows: Vec::new(),
        round_rows: Vec::new(),
        heartbeat: None,
        failover: Vec::new(),
    };
    let writers = plan.writers();
    // Both clusters run for the whole bench, so that their workloads can take turns.
    let mut licd = if args.endpoints.is_empty() {
        eprintln!("licd bench: starting three licd nodes ...");
        Some(
            LocalLicd::start(
                writers,
                u32::try_from(plan.heartbeat_cap).unwrap_or(0),
                plan.node_timing(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut etcd = match etcd_exe {
        Some(exe) => {
            eprintln!("licd bench: starting three etcd members ...");
            Some(LocalEtcd::start(exe, plan.timing).await?)
        }
        None => None,
    };
    let result = measure(args, plan, licd.as_mut(), etcd.as_mut(), &mut report).await;
    if let Some(l) = licd.as_mut() {
        l.stop();
    }
    if let Some(e) = etcd.as_mut() {
        e.stop();
    }
    result.map(|()| report)
}

/// A throughput workload at a number of connections: one line of the table.
#[derive(Debug, Clone, Copy)]
struct Job {
    shape: Shape,
    connections: usize,
}

/// The throughput workloads, the ones a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Check,
    Healthz,
    Write,
}

impl Shape {
    /// Its name in the table and the JSON.
    fn name(self) -> &'static str {
        match self {
            Shape::Check => "check",
            Shape::Healthz => "healthz",
            Shape::Write => "write",
        }
    }
}

/// The systems a round measures, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Licd,
    Etcd,
}

/// The licd cluster measured: its leader and what requests present.
struct LicdTarget {
    leader: String,
    access: Access,
    /// The bench's own servers hold allocations there (the bench started the cluster), whose
    /// leases must be kept alive between workloads.
    servers: Option<u32>,
}

async fn measure(
    args: &BenchArgs,
    plan: &Plan,
    licd: Option<&mut LocalLicd>,
    mut etcd: Option<&mut LocalEtcd>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let writers = plan.writers();
    let target = match &licd {
        Some(l) => {
            let access = l.access();
            let leader = l.leader_addr().await?;
            allocate_bench_servers(&leader, &access, writers).await?;
            LicdTarget {
                leader,
                access,
                servers: Some(writers),
            }
        }
        None => {
            let access = local::bench_access(None);
            let leader = remote_leader(&args.endpoints, &access).await?;
            LicdTarget {
                leader,
                access,
                servers: None,
            }
        }
    };
    let etcd_leader = match &mut etcd {
        Some(e) => Some(e.leader_addr().await?),
        None => None,
    };
    for round in 0..plan.rounds {
        if plan.rounds > 1 {
            eprintln!("licd bench: round {} of {} ...", round + 1, plan.rounds);
        }
        // The systems take turns, and the first of each round alternates, so that neither
        // always runs on a machine the other has just warmed or loaded.
        let order = if round % 2 == 0 {
            [System::Licd, System::Etcd]
        } else {
            [System::Etcd, System::Licd]
        };
        let mut rows = Vec::new();
        for job in plan.jobs() {
            for system in order {
                match (system, &etcd_leader) {
                    (System::Licd, _) => rows.push(licd_job(&target, plan, job).await?),
                    (System::Etcd, Some(leader)) => rows.push(etcd_job(leader, plan, job).await?),
                    (System::Etcd, None) => {}
                }
            }
        }
        report.round_rows.push(rows);
    }
    report.rows = median_rows(&report.round_rows);
    if plan.rounds == 1 {
        report.round_rows.clear();
    }
    if let Some(licd) = licd {
        measure_licd_capacity(licd, &target, plan, report).await?;
    }
    if let Some(etcd) = etcd {
        measure_etcd_failover(etcd, plan, report).await?;
    }
    Ok(())
}

/// Allocates the bench's servers, so that checks find them licensed and writes re-allocate.
async fn allocate_bench_servers(leader: &str, access: &Access, writers: u32) -> anyhow::Result<()> {
    let (a, h) = (access.clone(), leader.to_string());
    let make: MakeRequest =
        Arc::new(move |_, seq| requests::licd_allocate_first(&a, &h, WRITERS, seq as u32));
    each_bench_server(leader, writers, "allocating the bench servers", make).await
}

/// Renews the bench servers' leases (heartbeats, not log writes) before a workload: with
/// several rounds, and etcd's turns between licd's, more than a lease can pass between two
/// workloads that re-allocate or check them.
async fn renew_bench_servers(target: &LicdTarget) -> anyhow::Result<()> {
    let Some(servers) = target.servers else {
        return Ok(());
    };
    let (a, h) = (target.access.clone(), target.leader.clone());
    let make: MakeRequest =
        Arc::new(move |_, seq| requests::licd_heartbeat(&a, &h, WRITERS, seq as u32));
    let what = "renewing the bench servers' leases";
    each_bench_server(&target.leader, servers, what, make).await
}

/// Sends `make`'s request for each of the first `servers` bench servers once; any error
/// fails the bench, naming `what` it was doing.
async fn each_bench_server(
    leader: &str,
    servers: u32,
    what: &str,
    make: MakeRequest,
) -> anyhow::Result<()> {
    let done = closed_loop(leader, 8, Budget::Requests(u64::from(servers)), make).await?;
    if done.errors > 0 {
        bail!("{what} failed: {}", done.first_error.unwrap_or_default());
    }
    Ok(())
}

/// One licd throughput workload at the leader.
async fn licd_job(target: &LicdTarget, plan: &Plan, job: Job) -> anyhow::Result<Row> {
    renew_bench_servers(target).await?;
    let (a, h) = (target.access.clone(), target.leader.clone());
    let make: MakeRequest = match job.shape {
        Shape::Check => Arc::new(move |conn, _| requests::licd_check(&a, &h, WRITERS, conn as u32)),
        Shape::Healthz => Arc::new(move |_, _| requests::licd_healthz(&a, &h)),
        Shape::Write => {
            Arc::new(move |conn, _| requests::licd_allocate(&a, &h, WRITERS, conn as u32))
        }
    };
    let (name, at) = (job.shape.name(), &target.leader);
    throughput("licd", name, at, job.connections, plan.duration, make).await
}

/// The same shape on etcd's leader.
async fn etcd_job(leader: &str, plan: &Plan, job: Job) -> anyhow::Result<Row> {
    let (a, h) = (Access::default(), leader.to_string());
    let make: MakeRequest = match job.shape {
        Shape::Check => Arc::new(move |conn, _| requests::etcd_range(&a, &h, conn as u32)),
        Shape::Healthz => Arc::new(move |_, _| requests::etcd_version(&a, &h)),
        Shape::Write => Arc::new(move |conn, seq| requests::etcd_put(&a, &h, conn as u32, seq)),
    };
    let name = job.shape.name();
    throughput("etcd", name, leader, job.connections, plan.duration, make).await
}

/// licd's heartbeat capacity and failover, on the cluster the bench started.
async fn measure_licd_capacity(
    licd: &mut LocalLicd,
    target: &LicdTarget,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    let (leader, access) = (&target.leader, &target.access);
    if plan.runs(Workload::Heartbeat) {
        eprintln!("licd bench: licd heartbeat capacity ...");
        let search = heartbeat::Search {
            first: plan.heartbeat_first,
            cap: plan.heartbeat_cap,
            bound: plan.heartbeat_bound,
            step: plan.heartbeat_step,
            connections: plan.connections,
        };
        report.heartbeat = Some(heartbeat::search(leader, access, &search).await?);
    }
    if plan.runs(Workload::Failover) {
        eprintln!("licd bench: licd failover, {} leader kills ...", plan.kills);
        let client = Arc::new(bench_client(
            &licd.endpoints(),
            Duration::from_secs(30),
            access.bearer.as_deref(),
        )?);
        let node = NodeName::new(bench_node(FAILOVER, 0)).context("the failover node name")?;
        let body = AllocateBody {
            license: None,
            mac: bench_mac(FAILOVER, 0),
            cores: licd_raft::types::Cores::new(BENCH_CORES).context("bench cores")?,
            ttl_ms: Some(BENCH_LEASE_MS),
            request_id: None,
        };
        // The first allocation gives the lease token every later write presents.
        let token = client
            .allocate(&node, &body, &new_request_id())
            .await
            .context("the failover server's first allocation")?
            .lease_token;
        let write = move || {
            let (client, node, body) = (client.clone(), node.clone(), body.clone());
            let token = token.clone();
            async move {
                client
                    .reallocate(&node, &body, &new_request_id(), &token)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        let f = failover::run("licd", licd, plan.kills, plan.settle, write).await?;
        report.failover.push(f);
    }
    Ok(())
}

async fn measure_etcd_failover(
    etcd: &mut LocalEtcd,
    plan: &Plan,
    report: &mut Report,
) -> anyhow::Result<()> {
    if plan.runs(Workload::Failover) {
        eprintln!("licd bench: etcd failover, {} leader kills ...", plan.kills);
        let members: Vec<Connection> = etcd
            .endpoints()
            .iter()
            .map(|a| Connection::new(a))
            .collect();
        let state = Arc::new(tokio::sync::Mutex::new((members, 0usize, 0u64)));
        let write = move || {
            let state = state.clone();
            async move {
                let mut guard = state.lock().await;
                let (members, next, seq) = &mut *guard;
                *seq += 1;
                etcd::put_with_failover(members, next, *seq, Duration::from_secs(30)).await
            }
        };
        let f = failover::run("etcd", etcd, plan.kills, plan.settle, write).await?;
        report.failover.push(f);
    }
    Ok(())
}
