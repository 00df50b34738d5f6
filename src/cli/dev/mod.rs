//! `licd dev`: a complete three-node cluster on this machine, from nothing, in one command.
//!
//! It generates a throwaway vendor key and a demo license bound to this machine, writes the
//! secrets, the answer-signing key and three node configurations into a working directory,
//! starts three `licd serve` child processes, initializes the cluster, installs the license,
//! allocates this machine's cores, prints what to try, and then keeps the lease alive until Ctrl-C or
//! SIGTERM, when it stops the nodes gracefully. The nodes serve HTTPS with certificates from
//! a throwaway CA made for the run (`<dir>/tls/ca.pem`, which the printed commands and the
//! agent trust); `--plain-http` runs them without TLS. Whatever fails, the children are stopped: a
//! guard kills them when it is dropped.

pub(crate) mod children;
pub(crate) mod prepare;
pub(crate) mod startup;
mod summary;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use licd_raft::RaftNodeId;
use licd_raft::types::{LeaseTtl, NodeName};

use self::children::{Children, describe_status};
use self::prepare::{Prepared, prepare};
use self::startup::bring_up;
use self::summary::{NodeSummary, Summary, print_summary};
use super::common::default_node_name;
use super::output::{Output, describe_client_error};
use crate::agent::{Agent, AgentConfig};
use crate::client::{Client, RetryPolicy};

/// Options of `licd dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Working directory for keys, license, configs, data and logs. Created if needed; the
    /// files of an earlier `licd dev` run in it are replaced.
    #[arg(long, value_name = "DIR", default_value = "licd-dev")]
    pub dir: PathBuf,
    /// HTTP port of node 1; nodes 2 and 3 use the next two ports.
    #[arg(long, value_name = "PORT", default_value_t = 7101)]
    pub base_port: u16,
    /// Set everything up, print it, then stop the cluster and exit (for CI).
    #[arg(long)]
    pub no_wait: bool,
    /// Run the nodes over plain HTTP instead of HTTPS with a throwaway CA.
    #[arg(long)]
    pub plain_http: bool,
}

/// The lease the dev allocation gets; `licd dev` renews it every third of it.
const DEV_LEASE_MS: u64 = 30_000;
/// How long the nodes get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGINT and SIGTERM, registered up front so that neither kills the process mid-setup.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Completes on the next SIGINT or SIGTERM, with its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "Ctrl-C",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Refuses ports that something already listens on.
pub(crate) fn check_ports(ports: &[u16]) -> anyhow::Result<()> {
    for &port in ports {
        if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                bail!("port {port} is in use: is another licd dev running? use --base-port");
            }
            bail!("cannot use port {port}: {e}; use --base-port");
        }
    }
    Ok(())
}

/// Runs `licd dev`.
pub async fn run(args: DevArgs, out: Output) -> anyhow::Result<ExitCode> {
    let Some(last_port) = args.base_port.checked_add(2).filter(|_| args.base_port > 0) else {
        bail!("--base-port must be 1 to 65533");
    };
    let ports: Vec<u16> = (args.base_port..=last_port).collect();
    check_ports(&ports)?;
    let mut signals = Signals::new()?;
    let prepared = prepare(&args)?;
    let node = default_node_name();
    if !out.json {
        println!(
            "licd dev: starting three nodes on 127.0.0.1:{}-{} in {} ...",
            args.base_port,
            last_port,
            prepared.dir.display()
        );
    }

    let mut children = Children { nodes: Vec::new() };
    let outcome = tokio::select! {
        r = bring_up(&prepared, &mut children, &node) => Some(r),
        name = signals.recv() => {
            eprintln!("licd dev: {name} during startup; stopping the nodes");
            None
        }
    };
    let (leader, grant) = match outcome {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            let logs: Vec<String> = children
                .nodes
                .iter()
                .map(|n| n.log.display().to_string())
                .collect();
            drop(children);
            let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
            if logs.is_empty() {
                return Err(e);
            }
            bail!(
                "{e:#}\n(the nodes are stopped; their logs: {})",
                logs.join(", ")
            );
        }
        None => {
            for line in children.stop(STOP_GRACE) {
                eprintln!("licd dev: {line}");
            }
            let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
            return Ok(ExitCode::from(130));
        }
    };

    let summary = Summary {
        dir: prepared.dir.clone(),
        endpoints: prepared.endpoints(),
        ca_file: prepared.ca_file.clone(),
        nodes: children
            .nodes
            .iter()
            .map(|n| NodeSummary {
                id: n.id,
                addr: n.addr.clone(),
                pid: n.pid,
                config: n.config.clone(),
                log: n.log.clone(),
            })
            .collect(),
        leader_id: Some(leader),
        admin_token_file: prepared.admin_token_file.clone(),
        operator_token_file: prepared.operator_token_file.clone(),
        client_token_file: prepared.client_token_file.clone(),
        cluster_secret_file: prepared.cluster_secret_file.clone(),
        answer_key_file: prepared.answer_key_file.clone(),
        answer_public_key: prepared.answer_public_key.clone(),
        vendor_key_file: prepared.vendor_key_file.clone(),
        vendor_public_key: prepared.vendor_public_key.clone(),
        license_file: prepared.license_file.clone(),
        license: prepared.license.clone(),
        mac_detected: prepared.mac_detected,
        allocation: grant,
    };
    out.emit(&summary, || {
        print_summary(&summary, &prepared, args.no_wait)
    })?;

    let code = if args.no_wait {
        ExitCode::SUCCESS
    } else {
        wait(&mut children, &mut signals, &summary, &prepared, node).await
    };
    let report = children.stop(STOP_GRACE);
    for line in &report {
        eprintln!("licd dev: {line}");
    }
    let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
    eprintln!(
        "licd dev: the cluster is stopped; its files stay in {}",
        prepared.dir.display()
    );
    Ok(code)
}

/// How long licd dev waits before it starts a node that exited again: long enough to see the
/// cluster carry on with two nodes and warn about its redundancy.
const RESTART_PAUSE: Duration = Duration::from_secs(5);

/// How often licd dev restarts one node before it leaves it down.
const MAX_RESTARTS: u32 = 5;

/// The dev agent's status address: 79 above the base port (7180 by default).
fn agent_status_addr(base_port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base_port.saturating_add(79)))
}

/// Runs this machine's agent and watches the children until a signal, or until every node
/// died.
async fn wait(
    children: &mut Children,
    signals: &mut Signals,
    summary: &Summary,
    prepared: &Prepared,
    node: NodeName,
) -> ExitCode {
    let status_addr = agent_status_addr(prepared.base_port);
    let agent = start_agent(summary, prepared, node, status_addr).await;
    let mut watch = tokio::time::interval(Duration::from_millis(300));
    // Nodes that exited, with when licd dev starts them again and how often it did.
    let mut pending: BTreeMap<RaftNodeId, tokio::time::Instant> = BTreeMap::new();
    let mut restarts: BTreeMap<RaftNodeId, u32> = BTreeMap::new();
    let code = loop {
        tokio::select! {
            name = signals.recv() => {
                eprintln!("licd dev: {name}: stopping the cluster");
                break ExitCode::SUCCESS;
            }
            _ = watch.tick() => {
                for (id, pid, status, log) in children.newly_exited() {
                    eprintln!(
                        "licd dev: node {id} (pid {pid}) {}; {} of 3 nodes are running (log: {})",
                        describe_status(status),
                        children.running(),
                        log.display()
                    );
                    let count = restarts.entry(id).or_default();
                    if *count < MAX_RESTARTS {
                        *count += 1;
                        pending.insert(id, tokio::time::Instant::now() + RESTART_PAUSE);
                        eprintln!(
                            "licd dev: restarting node {id} in {} s; meanwhile `licd cluster \
                             status` shows the redundancy warning",
                            RESTART_PAUSE.as_secs()
                        );
                    } else {
                        eprintln!(
                            "licd dev: node {id} exited {MAX_RESTARTS} times; not restarting it \
                             (see its log)"
                        );
                    }
                }
                let due: Vec<RaftNodeId> = pending
                    .iter()
                    .filter(|(_, at)| tokio::time::Instant::now() >= **at)
                    .map(|(id, _)| *id)
                    .collect();
                for id in due {
                    pending.remove(&id);
                    match children.restart(prepared, id) {
                        Ok(pid) => eprintln!(
                            "licd dev: node {id} restarted (pid {pid}); it catches up from the \
                             leader"
                        ),
                        Err(e) => eprintln!("licd dev: cannot restart node {id}: {e:#}"),
                    }
                }
                if children.running() == 0 && pending.is_empty() {
                    eprintln!("licd dev: every node has exited; giving up");
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    if let Some((agent, stop_status)) = agent {
        // Releases this machine's allocation while the cluster still runs.
        agent.shutdown().await;
        let _ = stop_status.send(());
    }
    code
}

/// Starts the agent for this machine, with its status endpoint on `status_addr`.
async fn start_agent(
    summary: &Summary,
    prepared: &Prepared,
    node: NodeName,
    status_addr: SocketAddr,
) -> Option<(Agent, tokio::sync::oneshot::Sender<()>)> {
    let third = Duration::from_millis(DEV_LEASE_MS / 3);
    let client = match Client::with_policy(
        &summary.endpoints,
        RetryPolicy {
            deadline: third,
            ..RetryPolicy::default()
        },
    )
    .and_then(|c| c.with_tls(&prepared.client_tls()))
    {
        Ok(c) => c.with_token(&prepared.client_token),
        Err(e) => {
            eprintln!(
                "licd dev: cannot start the agent: {}",
                describe_client_error(&e)
            );
            return None;
        }
    };
    let client = match crate::cli::answer_key::parse_public_keys(std::slice::from_ref(
        &prepared.answer_public_key,
    )) {
        Ok(keys) => client.with_answer_keys(keys),
        Err(e) => {
            eprintln!("licd dev: cannot start the agent: {e:#}");
            return None;
        }
    };
    let config = AgentConfig {
        node,
        license: Some(prepared.license.id.clone()),
        mac: prepared.mac,
        cores: prepared.cores,
        lease_ttl: LeaseTtl::from_millis(DEV_LEASE_MS).ok()?,
        refused_retry: Duration::from_secs(5),
        state_file: Some(crate::agent::saved::StateFile::new(
            prepared.dir.join("agent-state.json"),
        )),
    };
    // The agent takes over the allocation made at start-up: it needs that allocation's lease
    // token, which it reads from its state file (no grace is saved with it).
    let grant = &summary.allocation;
    if let Some(state) = &config.state_file {
        if let Err(e) = state.save(
            &grant.node,
            Duration::ZERO,
            grant.allocation.counted_cores,
            Some(&grant.lease_token),
        ) {
            eprintln!("licd dev: cannot hand the lease token to the agent: {e}");
        }
    }
    let agent = Agent::spawn(client, config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    match tokio::net::TcpListener::bind(status_addr).await {
        Ok(listener) => {
            tokio::spawn(crate::agent::status::serve(
                listener,
                agent.status_handle(),
                async {
                    let _ = rx.await;
                },
            ));
        }
        Err(e) => eprintln!(
            "licd dev: the agent runs, but its status endpoint cannot listen on {status_addr}: {e}"
        ),
    }
    Some((agent, tx))
}
