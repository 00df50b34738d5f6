//! The licd cluster under measure: three `licd serve` children started as `licd dev` starts
//! them (the same demo-license, node-configuration and start-up functions), in a temporary
//! directory; or a cluster already running at `--endpoints`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use licd_raft::RaftNodeId;
use licd_raft::license::MAX_LICENSED_CORES;

use super::failover::Killable;
use hyper::Method;

use crate::bench::load::exchange;
use crate::bench::requests::{self, Access, bench_mac};
use crate::cli::dev::children::Children;
use crate::cli::dev::prepare::{DemoLicense, Prepared, write_cluster_files};
use crate::cli::dev::startup::start_cluster;
use crate::client::{Client, RetryPolicy};

/// How long the bench waits for a killed node to be back in the cluster.
const REJOIN_DEADLINE: Duration = Duration::from_secs(60);

/// A licd cluster started by the bench. Dropping it stops the nodes and removes its files.
pub(super) struct LocalLicd {
    /// The nodes (declared first: they stop before their directory is removed).
    children: Children,
    prepared: Prepared,
    admin: Client,
    /// An admin client of each node alone, for polling who it takes for the leader and
    /// whether a restarted node is back.
    one_node: Vec<(RaftNodeId, Client)>,
    _dir: tempfile::TempDir,
}

/// The bench servers' groups: their names and MACs never collide.
pub(super) const WRITERS: u8 = 0;
/// The simulated application servers of the heartbeat search.
pub(super) const HEARTBEATERS: u8 = 1;
/// The failover loop's server.
pub(super) const FAILOVER: u8 = 2;

/// What every bench request presents: for the bench's own cluster its client token and
/// the secret its servers' lease tokens derive from; for `--endpoints`, the client token in
/// `LICD_TOKEN`, if set.
pub(super) fn bench_access(prepared: Option<&Prepared>) -> Access {
    match prepared {
        Some(p) => Access {
            bearer: Some(p.client_token.clone()),
            cluster_secret: Some(p.cluster_secret.clone()),
        },
        None => Access {
            bearer: std::env::var("LICD_TOKEN").ok(),
            cluster_secret: None,
        },
    }
}

/// The failover-capable client of the bench cluster (the library every application uses).
pub(super) fn bench_client(
    endpoints: &[String],
    deadline: Duration,
    token: Option<&str>,
) -> anyhow::Result<Client> {
    let policy = RetryPolicy {
        deadline,
        ..RetryPolicy::default()
    };
    let client =
        Client::with_policy(endpoints, policy).map_err(|e| anyhow::anyhow!("bench client: {e}"))?;
    Ok(match token {
        Some(t) => client.with_token(t),
        None => client,
    })
}

/// Finds three free consecutive loopback ports, from `first` on.
fn free_base_port(first: u16) -> anyhow::Result<u16> {
    let mut base = first;
    for _ in 0..50 {
        let ports = [base, base + 1, base + 2];
        if crate::cli::dev::check_ports(&ports).is_ok() {
            return Ok(base);
        }
        base += 10;
    }
    bail!("no three free consecutive ports from {first} to {base}")
}

impl LocalLicd {
    /// Starts the cluster with a demo license allowing `writers` writing servers,
    /// `heartbeaters` heartbeating servers and the failover server, the nodes with `timing`.
    pub(super) async fn start(
        writers: u32,
        heartbeaters: u32,
        timing: crate::config::RaftTiming,
    ) -> anyhow::Result<LocalLicd> {
        let dir = tempfile::Builder::new()
            .prefix("licd-bench-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let mut extra_macs: Vec<_> = (0..writers).map(|i| bench_mac(WRITERS, i)).collect();
        extra_macs.extend((0..heartbeaters).map(|i| bench_mac(HEARTBEATERS, i)));
        extra_macs.push(bench_mac(FAILOVER, 0));
        let shape = DemoLicense {
            extra_macs,
            max_cores: Some(MAX_LICENSED_CORES),
            // The bench measures the cluster, not the per-token write limit.
            limits: Some(crate::config::LimitsConfig {
                writes_per_second: 1_000_000,
                write_burst: 1_000_000,
                ..crate::config::LimitsConfig::default()
            }),
            raft: Some(timing),
        };
        // Two benches at once (tests) start their searches apart.
        let base_port = free_base_port(17200 + (std::process::id() % 300) as u16 * 10)?;
        // Plain HTTP: the load generator speaks no TLS (docs/performance.md).
        let prepared = write_cluster_files(dir.path().to_path_buf(), base_port, &shape, false)?;
        let mut children = Children { nodes: Vec::new() };
        let (_, admin) = start_cluster(&prepared, &mut children).await?;
        let one_node = children
            .nodes
            .iter()
            .map(|n| {
                let one = bench_client(
                    std::slice::from_ref(&n.addr),
                    Duration::from_millis(200),
                    None,
                )?;
                Ok((n.id, one.with_admin_token(prepared.admin_token.clone())))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(LocalLicd {
            children,
            prepared,
            admin,
            one_node,
            _dir: dir,
        })
    }

    /// host:port of every node.
    pub(super) fn endpoints(&self) -> Vec<String> {
        self.children.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// What bench requests present.
    pub(super) fn access(&self) -> Access {
        bench_access(Some(&self.prepared))
    }

    fn addr_of(&self, id: RaftNodeId) -> anyhow::Result<String> {
        self.children
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.addr.clone())
            .with_context(|| format!("no node {id}"))
    }

    /// The leader's id, once one is known.
    async fn leader_id(&self) -> anyhow::Result<RaftNodeId> {
        let started = Instant::now();
        loop {
            if let Ok(s) = self.admin.status().await
                && let Some(id) = s.leader_id
            {
                return Ok(id);
            }
            if started.elapsed() > REJOIN_DEADLINE {
                bail!("no licd leader within {REJOIN_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// host:port of the leader.
    pub(super) async fn leader_addr(&self) -> anyhow::Result<String> {
        let id = self.leader_id().await?;
        self.addr_of(id)
    }

    /// Stops the nodes (SIGTERM, then SIGKILL after a grace).
    pub(super) fn stop(&mut self) {
        let _ = self.children.stop(Duration::from_secs(5));
    }
}

impl Killable for LocalLicd {
    async fn leader(&mut self) -> anyhow::Result<u64> {
        self.leader_id().await
    }

    fn kill(&mut self, member: u64) -> anyhow::Result<()> {
        tokio::task::block_in_place(|| self.children.kill(member))
    }

    fn restart(&mut self, member: u64) -> anyhow::Result<()> {
        self.children.restart(&self.prepared, member).map(|_| ())
    }

    async fn rejoined(&mut self, member: u64) -> bool {
        let Some((_, one)) = self.one_node.iter().find(|(id, _)| *id == member) else {
            return false;
        };
        matches!(one.status().await, Ok(s) if s.leader_id.is_some() && s.last_applied_index.is_some())
    }

    async fn new_leader_known(&mut self, killed: u64) -> bool {
        for (_, one) in self.one_node.iter().filter(|(id, _)| *id != killed) {
            if matches!(one.status().await, Ok(s) if s.leader_id.is_some_and(|l| l != killed)) {
                return true;
            }
        }
        false
    }
}

/// The leader of a cluster at `endpoints`, from the leader header of an answer.
pub(super) async fn remote_leader(endpoints: &[String], access: &Access) -> anyhow::Result<String> {
    let mut last = String::new();
    for addr in endpoints {
        let request = requests::request(access, Method::GET, addr, "/v1/cluster", None);
        match exchange(addr, request, Duration::from_secs(5)).await {
            Ok((status, headers, _)) => {
                if let Some(leader) = headers
                    .get(crate::api::LEADER_ADDR_HEADER)
                    .and_then(|v| v.to_str().ok())
                {
                    return Ok(leader.to_string());
                }
                last = format!("{addr} answered {status} without naming a leader");
            }
            Err(e) => last = format!("{e:#}"),
        }
    }
    bail!("no leader found at {}: {last}", endpoints.join(", "))
}
