//! `licd agent`: run the agent on an application server; `licd agent status`: ask a running
//! agent whether this server is licensed (exit code 0 only when it is).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName};

use super::common::{ClientOpts, default_cores, default_node_name, mac_or_default, parse_cores};
use super::output::{Exit, Output, format_time, human_duration_ms};
use crate::agent::{Agent, AgentConfig, AgentStatus};
use crate::client::{Client, RetryPolicy};

/// The agent's default local status address: loopback only.
pub const DEFAULT_STATUS_ADDR: &str = "127.0.0.1:7180";

/// `licd agent [OPTIONS]` runs the agent; `licd agent status` asks a running one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    /// `status`, or nothing to run the agent.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// Options of the agent itself.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The agent's subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Ask the local agent whether this server is licensed (exit code 0 only when it is).
    Status(StatusArgs),
}

/// Options of `licd agent status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent's status address.
    #[arg(long, env = "LICD_AGENT_ADDR", default_value = DEFAULT_STATUS_ADDR)]
    pub addr: SocketAddr,
}

/// Options of the running agent.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How to reach the cluster.
    #[command(flatten)]
    pub client: ClientOpts,
    /// The license to allocate from (optional when the cluster has exactly one).
    #[arg(long)]
    pub license: Option<LicenseId>,
    /// This server's name in the cluster (default: the host name).
    #[arg(long)]
    pub node: Option<NodeName>,
    /// This server's MAC address (default: the first non-loopback interface's).
    #[arg(long, conflicts_with = "interface")]
    pub mac: Option<MacAddr>,
    /// Take the MAC address of this network interface.
    #[arg(long)]
    pub interface: Option<String>,
    /// The cores to allocate (default: this machine's logical CPUs).
    #[arg(long, value_parser = parse_cores)]
    pub cores: Option<Cores>,
    /// The lease duration in milliseconds; the agent heartbeats every third of it.
    #[arg(long, default_value_t = 30_000)]
    pub ttl_ms: u64,
    /// The pause between attempts while the cluster refuses the license, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub refused_retry_ms: u64,
    /// Where the local status endpoint listens.
    #[arg(long = "status-addr", env = "LICD_AGENT_ADDR", default_value = DEFAULT_STATUS_ADDR)]
    pub status_addr: SocketAddr,
    /// A file (mode 0600) that keeps the last confirmed lease across restarts of the agent,
    /// so a server restarted during a cluster outage stays licensed until that lease ends.
    #[arg(long, env = "LICD_AGENT_STATE_FILE")]
    pub state_file: Option<std::path::PathBuf>,
    /// With answer keys the agent confirms each lease with a signed check, and takes an
    /// answer it cannot verify for no answer at all.
    #[command(flatten)]
    pub answer_keys: super::answer_key::AnswerKeyOpts,
}

/// Runs `licd agent ...`.
pub async fn run(args: AgentArgs, out: Output) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Status(s)) => status(s, out).await,
        None => run_agent(args.run).await,
    }
}

fn mac_of(args: &RunArgs) -> anyhow::Result<MacAddr> {
    if let Some(name) = &args.interface {
        let mac = mac_address::mac_address_by_name(name)
            .with_context(|| format!("cannot read the MAC address of interface {name}"))?
            .with_context(|| format!("interface {name} has no MAC address"))?;
        return Ok(MacAddr::from_bytes(mac.bytes()));
    }
    mac_or_default(args.mac)
}

/// Builds the agent's configuration and its client: every call's deadline is a third of the
/// lease, so a heartbeat that cannot get through is known to have failed while the lease
/// still has two thirds to run.
pub fn agent_setup(args: &RunArgs) -> anyhow::Result<(Client, AgentConfig)> {
    let lease_ttl =
        LeaseTtl::from_millis(args.ttl_ms).map_err(|e| anyhow::anyhow!("--ttl-ms: {e}"))?;
    if args.refused_retry_ms == 0 {
        bail!("--refused-retry-ms must be at least 1");
    }
    let config = AgentConfig {
        node: args.node.clone().unwrap_or_else(default_node_name),
        license: args.license.clone(),
        mac: mac_of(args)?,
        cores: args.cores.unwrap_or_else(default_cores),
        lease_ttl,
        refused_retry: Duration::from_millis(args.refused_retry_ms),
        state_file: args
            .state_file
            .clone()
            .map(crate::agent::saved::StateFile::new),
    };
    let third = Duration::from_millis(args.ttl_ms / 3);
    let policy = RetryPolicy {
        deadline: third,
        attempt_timeout: RetryPolicy::default().attempt_timeout.min(third),
        ..RetryPolicy::default()
    };
    let endpoints: Vec<String> = args.client.endpoints.clone();
    let client = args
        .client
        .with_tokens(Client::with_policy(&endpoints, policy)?.with_tls(&args.client.tls.get()?)?)?
        .with_answer_keys(args.answer_keys.keys()?);
    Ok((client, config))
}

async fn run_agent(args: RunArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    // Installed first: a SIGTERM while the agent starts still releases its allocation.
    let signal = super::serve::shutdown_signal();
    let (client, config) = agent_setup(&args)?;
    let listener = tokio::net::TcpListener::bind(args.status_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the status endpoint (is another agent running? use --status-addr)",
                args.status_addr
            )
        })?;
    tracing::info!(
        node = %config.node,
        mac = %config.mac,
        cores = config.cores.get(),
        status = %args.status_addr,
        "licd agent started"
    );
    let agent = Agent::spawn(client, config);
    // The status endpoint is bound: the application can ask from here on.
    super::notify::notify("READY=1");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::agent::status::serve(
        listener,
        agent.status_handle(),
        async {
            let _ = stop_rx.await;
        },
    ));
    signal.await;
    tracing::info!("stopping: releasing this server's allocation");
    agent.shutdown().await;
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(ExitCode::SUCCESS)
}

async fn status(args: StatusArgs, out: Output) -> anyhow::Result<ExitCode> {
    // The agent's local status endpoint is plain HTTP on loopback.
    let http = crate::tls::Outgoing::plain()
        .apply(reqwest::Client::builder())
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()?;
    let answer = http
        .get(format!("http://{}/status", args.addr))
        .send()
        .await
        .with_context(|| format!("no licd agent answers at {} (is it running?)", args.addr))?;
    let status: AgentStatus = answer
        .json()
        .await
        .context("the agent's answer is not a status")?;
    out.emit(&status, || print_status(&status))?;
    if status.licensed {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Exit {
            message: format!("not licensed: {}: {}", status.code, status.message),
            code: 1,
        }
        .into())
    }
}

fn print_status(s: &AgentStatus) {
    println!(
        "{} {}: {}",
        if s.licensed {
            "LICENSED"
        } else {
            "NOT LICENSED"
        },
        s.code,
        s.message
    );
    println!("  node:    {}", s.node);
    println!("  cores:   {}", s.cores);
    if let Some(ms) = s.lease_remaining_ms {
        println!("  lease:   ends in {}", human_duration_ms(ms));
    }
    if let Some(at) = s.grace_until {
        println!("  grace:   until {}", format_time(at));
    }
    let c = &s.cluster;
    println!(
        "  cluster: {}, leader {}, {} of {} servers healthy",
        if c.reachable {
            "reachable"
        } else {
            "unreachable"
        },
        c.leader.map_or_else(|| "?".into(), |l| l.to_string()),
        c.healthy_servers
            .map_or_else(|| "?".into(), |h| h.to_string()),
        c.voters.map_or_else(|| "?".into(), |v| v.to_string()),
    );
    if !c.clock_skew_ms.is_empty() {
        let skews: Vec<String> = c
            .clock_skew_ms
            .iter()
            .map(|(id, ms)| format!("node {id} {ms:+} ms"))
            .collect();
        println!("  clocks:  {}", skews.join(", "));
    }
    for w in &c.warnings {
        println!("  !!! WARNING: {w}");
    }
}
