//! `licd-jepsen`: runs licd under faults and checks the history of every run.
//!
//! Exit codes: 0 when every checker passed (and, in `--quick`, when the injected bug was
//! caught); 1 when a checker found a violation (or the injected bug was not caught); 2 when a
//! run could not be set up (not root, tools missing, the cluster did not start).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use licd_jepsen::checker::{self, CheckConfig};
use licd_jepsen::harness::fault::{self, Fault, FaultGroup, Selection};
use licd_jepsen::harness::netns::{Namespace, preflight};
use licd_jepsen::harness::outcome::RunOutcome;
use licd_jepsen::harness::report;
use licd_jepsen::harness::run::{RunSpec, run};
use licd_jepsen::history::History;

const SETUP_FAILED: u8 = 2;

/// One run of `--quick`: name, faults, seconds, lease servers, the injected bug if any.
type QuickRun = (&'static str, Vec<Selection>, u64, usize, Option<Bug>);

/// A bug injected into a licd build, which a `--quick` run must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `--features bug-stale-reads`: the linearizability checker must refute the history.
    StaleReads,
    /// `--features bug-wall-clock-leases`: the lease checker must see a lease end early.
    WallClockLeases,
}

impl Bug {
    fn name(self) -> &'static str {
        match self {
            Bug::StaleReads => "stale reads",
            Bug::WallClockLeases => "wall-clock leases",
        }
    }

    /// How the report shows the bug, if it does.
    fn caught(self, report: &checker::Report) -> Option<String> {
        match self {
            Bug::StaleReads => report
                .linearizable
                .counterexample
                .as_ref()
                .filter(|_| !report.linearizable.valid)
                .map(|c| c.message.clone()),
            Bug::WallClockLeases => report
                .lease
                .violations
                .iter()
                .find(|v| v.kind == "lease-ended-early")
                .map(|v| v.message.clone()),
        }
    }
}

/// Fault-injection tests of licd: crashes, pauses, partitions, membership changes and clock
/// skew against a real three-node cluster, with every run's history checked.
#[derive(Debug, Parser)]
#[command(name = "licd-jepsen", version, about, args_override_self = true)]
struct Args {
    /// The CI suite: a short seeded run per nemesis group, plus a run against a build with an
    /// injected bug that must be caught.
    #[arg(long)]
    quick: bool,
    /// Seconds of faults (full runs).
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Faults to draw from: fault names or groups (kill, pause, partition, membership, clock,
    /// all), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    nemesis: Vec<Selection>,
    /// Seed of the fault schedule and the workload (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The largest clock skew of `clock-skew`, in minutes.
    #[arg(long, default_value_t = 180)]
    max_skew_minutes: i64,
    /// Logical clients.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// The licd binary (a release build).
    #[arg(long, default_value = "target/release/licd")]
    licd: PathBuf,
    /// A licd built with `--features bug-stale-reads`, for the bug-injection run of `--quick`.
    #[arg(long)]
    buggy_licd: Option<PathBuf>,
    /// A licd built with `--features bug-wall-clock-leases`, for the lease bug-injection run
    /// of `--quick`.
    #[arg(long)]
    buggy_lease_licd: Option<PathBuf>,
    /// Application servers of the lease workload beside the license workload (full runs;
    /// 0: none).
    #[arg(long, default_value_t = 6)]
    lease_servers: usize,
    /// Where run directories are written.
    #[arg(long, default_value = "target/jepsen")]
    out: PathBuf,
    /// Internal: set when the harness runs inside its network namespace.
    #[arg(long, hide = true)]
    inside: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a recorded history file offline.
    Check {
        /// The history (JSON lines).
        history: PathBuf,
        /// The license's max_cores.
        #[arg(long, default_value_t = 24)]
        max_cores: u64,
        /// The license's min_cores_per_node.
        #[arg(long, default_value_t = 4)]
        min_cores_per_node: u32,
        /// The lease license's max_cores (the lease workload's).
        #[arg(long, default_value_t = 16)]
        lease_max_cores: u64,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Check {
        history,
        max_cores,
        min_cores_per_node,
        lease_max_cores,
    }) = &args.command
    {
        return check_file(history, *max_cores, *min_cores_per_node, *lease_max_cores);
    }
    if args.inside {
        return inside(args);
    }
    outside(args)
}

fn check_file(
    path: &PathBuf,
    max_cores: u64,
    min_cores_per_node: u32,
    lease_max_cores: u64,
) -> ExitCode {
    let events = match licd_jepsen::history::read_history(path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("licd-jepsen: {}: {e}", path.display());
            return ExitCode::from(SETUP_FAILED);
        }
    };
    let history = match History::from_events(events) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("licd-jepsen: {}: {e}", path.display());
            return ExitCode::from(SETUP_FAILED);
        }
    };
    let mut config = CheckConfig::new(checker::License {
        max_cores,
        min_cores_per_node,
    });
    config.lease.max_cores = lease_max_cores;
    let report = checker::check_all(&history, &config);
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Creates the namespace, runs the harness inside it, and removes it (and everything in it)
/// afterwards, also on Ctrl-C or SIGTERM.
fn outside(args: Args) -> ExitCode {
    if let Err(e) = preflight() {
        eprintln!("licd-jepsen: {e:#}");
        return ExitCode::from(SETUP_FAILED);
    }
    for bin in std::iter::once(&args.licd)
        .chain(args.buggy_licd.iter())
        .chain(args.buggy_lease_licd.iter())
    {
        if !bin.is_file() {
            eprintln!(
                "licd-jepsen: no licd binary at {} (build it with `cargo build --release`)",
                bin.display()
            );
            return ExitCode::from(SETUP_FAILED);
        }
    }
    let name = format!("licd-jepsen-{}", std::process::id());
    let ns = match Namespace::create(&name) {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("licd-jepsen: cannot create network namespace {name}: {e:#}");
            return ExitCode::from(SETUP_FAILED);
        }
    };
    // Forward SIGINT and SIGTERM to the inner harness, which stops its nodes and exits.
    static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    extern "C" fn forward(sig: libc::c_int) {
        let pid = CHILD.load(std::sync::atomic::Ordering::SeqCst);
        if pid > 0 {
            // SAFETY: kill is async-signal-safe.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }
    // SAFETY: the handler only reads an atomic and calls kill, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, forward as *const () as usize);
        libc::signal(libc::SIGTERM, forward as *const () as usize);
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("licd-jepsen: cannot find its own executable: {e}");
            return ExitCode::from(SETUP_FAILED);
        }
    };
    let mut inner_args: Vec<String> = std::env::args().skip(1).collect();
    inner_args.push("--inside".into());
    // Paths given relative to here must keep working inside.
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolutize = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        }
    };
    inner_args.extend([
        "--licd".into(),
        absolutize(&args.licd).display().to_string(),
        "--out".into(),
        absolutize(&args.out).display().to_string(),
    ]);
    if let Some(b) = &args.buggy_licd {
        inner_args.extend(["--buggy-licd".into(), absolutize(b).display().to_string()]);
    }
    if let Some(b) = &args.buggy_lease_licd {
        inner_args.extend([
            "--buggy-lease-licd".into(),
            absolutize(b).display().to_string(),
        ]);
    }
    let status = ns.exec(&exe, &inner_args, |pid| {
        CHILD.store(
            i32::try_from(pid).unwrap_or(0),
            std::sync::atomic::Ordering::SeqCst,
        );
    });
    drop(ns);
    match status {
        Ok(s) => match s.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(SETUP_FAILED)),
            None => ExitCode::from(SETUP_FAILED),
        },
        Err(e) => {
            eprintln!("licd-jepsen: {e:#}");
            ExitCode::from(SETUP_FAILED)
        }
    }
}

/// Inside the namespace: runs the suite, stopping everything on SIGINT or SIGTERM.
fn inside(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("licd-jepsen: cannot start the runtime: {e}");
            return ExitCode::from(SETUP_FAILED);
        }
    };
    let code = runtime.block_on(async {
        tokio::select! {
            code = suite(&args) => code,
            _ = stop_signal() => {
                eprintln!("licd-jepsen: interrupted; stopping the nodes");
                ExitCode::from(130)
            }
        }
    });
    let _ = licd_jepsen::harness::firewall::heal();
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn suite(args: &Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let specs: Vec<(RunSpec, Option<Bug>)> = if args.quick {
        let (Some(buggy), Some(buggy_lease)) = (&args.buggy_licd, &args.buggy_lease_licd) else {
            eprintln!(
                "licd-jepsen: --quick needs --buggy-licd (a debug build with --features \
                 bug-stale-reads) and --buggy-lease-licd (one with --features \
                 bug-wall-clock-leases)"
            );
            return ExitCode::from(SETUP_FAILED);
        };
        let group = |g| vec![Selection::Group(g)];
        let fault = |f| vec![Selection::Fault(f)];
        let time_faults = vec![
            Selection::Group(FaultGroup::Clock),
            Selection::Fault(Fault::KillLeader),
            Selection::Fault(Fault::KillRandom),
            Selection::Fault(Fault::PartitionLeader),
            Selection::Fault(Fault::PartitionHalves),
        ];
        let plan: Vec<QuickRun> = vec![
            ("quick-kill", group(FaultGroup::Kill), 15, 0, None),
            ("quick-pause", group(FaultGroup::Pause), 15, 0, None),
            ("quick-partition", group(FaultGroup::Partition), 20, 0, None),
            (
                "quick-membership",
                group(FaultGroup::Membership),
                20,
                0,
                None,
            ),
            ("quick-clock", group(FaultGroup::Clock), 15, 0, None),
            ("quick-leases", time_faults, 45, 6, None),
            (
                "quick-bug-stale-reads",
                fault(Fault::PartitionLeader),
                30,
                0,
                Some(Bug::StaleReads),
            ),
            (
                "quick-bug-wall-clock-leases",
                fault(Fault::ClockLead),
                30,
                6,
                Some(Bug::WallClockLeases),
            ),
        ];
        let mut specs = Vec::new();
        for (i, (name, selection, secs, lease_servers, bug)) in plan.into_iter().enumerate() {
            specs.push((
                RunSpec {
                    name: name.to_string(),
                    bin: match bug {
                        Some(Bug::StaleReads) => buggy.clone(),
                        Some(Bug::WallClockLeases) => buggy_lease.clone(),
                        None => args.licd.clone(),
                    },
                    faults: fault::expand(&selection),
                    time: Duration::from_secs(secs),
                    seed: args.seed.unwrap_or(100 + i as u64),
                    concurrency: args.concurrency,
                    out: args.out.clone(),
                    max_skew_minutes: args.max_skew_minutes,
                    lease_servers,
                },
                bug,
            ));
        }
        specs
    } else {
        let faults = fault::expand(&args.nemesis);
        vec![(
            RunSpec {
                name: format!("run-{seed}"),
                bin: args.licd.clone(),
                faults,
                time: Duration::from_secs(args.time),
                seed,
                concurrency: args.concurrency,
                out: args.out.clone(),
                max_skew_minutes: args.max_skew_minutes,
                lease_servers: args.lease_servers,
            },
            None,
        )]
    };

    let mut outcomes: Vec<RunOutcome> = Vec::new();
    let mut failed = false;
    for (spec, bug) in &specs {
        eprintln!(
            "licd-jepsen: {} ({:?}, {} s, seed {})",
            spec.name,
            fault::names(&spec.faults),
            spec.time.as_secs(),
            spec.seed
        );
        let outcome = match run(spec).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!(
                    "licd-jepsen: {}: the run could not be set up: {e:#}",
                    spec.name
                );
                return ExitCode::from(SETUP_FAILED);
            }
        };
        println!("{}", report::summary(&outcome));
        match bug {
            Some(bug) => match bug.caught(&outcome.report) {
                Some(how) => println!("  the injected bug ({}) was caught: {how}", bug.name()),
                None => {
                    println!(
                        "  FAILURE: the injected bug ({}) was NOT caught",
                        bug.name()
                    );
                    failed = true;
                }
            },
            None if !outcome.report.valid => failed = true,
            None => {}
        }
        outcomes.push(outcome);
    }
    let _ = std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&outcomes).unwrap_or_default(),
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
