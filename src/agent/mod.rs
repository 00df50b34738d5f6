//! `licd agent`: the piece of licd on every application server.
//!
//! The agent holds this server's core allocation, keeps its lease alive through any failover
//! of the license cluster, and tells the local application at any moment whether the server
//! is licensed, through a small HTTP status endpoint ([`status`]).
//!
//! Its loop:
//! - without an allocation it allocates; a license refusal (`CPU_LIMIT_EXHAUSTED`,
//!   `INVALID_MULTI_SERVER_LICENSE`, `LICENSE_EXPIRED`, ...) is reported as unlicensed with
//!   that code and message, and retried at a slow pace, since a license may be replaced or
//!   cores freed;
//! - with an allocation it heartbeats at a third of the lease ttl, counted from the send time
//!   of the last renewal; when the cluster answers `NOT_ALLOCATED` (the lease was lost, say
//!   after a long pause) it allocates again at once;
//! - when no node answers, it keeps reporting licensed, with code `GRACE`, only until the
//!   lease it last confirmed ends, then reports `SERVERS_UNREACHABLE`; when the cluster
//!   returns it allocates again without a restart;
//! - on shutdown it releases its allocation.
//!
//! Given the cluster's answer keys, it believes only signed answers: each allocation and
//! renewal is confirmed by a signed check, and an answer that does not verify counts as no
//! answer (module `verify`).
//!
//! **The lease token.** The allocation's lease token (see [`crate::lease_token`]) is kept in
//! memory and in the state file; every heartbeat, re-allocation and the release present it.
//! A restarted agent reads it back and renews the allocation it held. An agent refused
//! `NODE_IN_USE` (its name holds an allocation it has no token for: the state file was lost,
//! or another host holds the name) reports that code and retries at the refusal pace until
//! the old lease ends and the name is free; it never takes a live allocation over.
//!
//! **Grace never extends a lease the cluster did not grant.** The agent measures a lease from
//! the moment it *sent* the request that the cluster answered, on its own monotonic clock:
//! the leader measured the remaining time it answered after that moment, so the lease ends
//! no earlier in real time than `sent + remaining`. Grace also ends when the license's
//! expiry date comes (the cluster says how far away it is, counted the same way), and never
//! survives a lost lease.

pub mod saved;
pub mod status;
mod verify;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::AllocateBody;
use crate::client::{Client, ClientError, new_request_id};
use crate::lease_token::LeaseToken;

/// What the agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This server's name in the license cluster.
    pub node: NodeName,
    /// The license to allocate from; `None` when the cluster has exactly one.
    pub license: Option<LicenseId>,
    /// This server's MAC address.
    pub mac: MacAddr,
    /// This server's cores.
    pub cores: Cores,
    /// The lease to ask for.
    pub lease_ttl: LeaseTtl,
    /// The pause between attempts while the cluster refuses the license.
    pub refused_retry: Duration,
    /// Where the last confirmed lease is kept across the agent's restarts, if anywhere.
    pub state_file: Option<saved::StateFile>,
}

/// The status the agent reports to the local application (`GET /status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Whether the application may run licensed now.
    pub licensed: bool,
    /// `VALID`, `GRACE`, `SERVERS_UNREACHABLE`, `STARTING`, or the cluster's refusal code
    /// (`CPU_LIMIT_EXHAUSTED`, `INVALID_MULTI_SERVER_LICENSE`, `LICENSE_EXPIRED`, ...).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
    /// This server's name.
    pub node: NodeName,
    /// The cores this server counts against the license (0 while not allocated).
    pub cores: u32,
    /// Lease time left, in milliseconds, on this machine's monotonic clock (the cluster's
    /// answer counted down from when the confirming request was sent).
    pub lease_remaining_ms: Option<u64>,
    /// While in grace: the wall-clock time (ms since the epoch) after which the agent reports
    /// unlicensed unless the cluster answers again.
    pub grace_until: Option<Timestamp>,
    /// The license cluster as last seen.
    pub cluster: ClusterView,
}

/// The license cluster as the agent last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// Whether the last call reached a node.
    pub reachable: bool,
    /// The leader's id.
    pub leader: Option<u64>,
    /// Voters the leader heard from recently.
    pub healthy_servers: Option<usize>,
    /// The number of voters.
    pub voters: Option<usize>,
    /// Each license server's wall clock minus the cluster's, in milliseconds, where the
    /// leader knows it (a skew past the bound also shows in `warnings`).
    #[serde(default)]
    pub clock_skew_ms: std::collections::BTreeMap<u64, i64>,
    /// Warnings, such as "one more failure stops licensing" or a skewed clock.
    pub warnings: Vec<String>,
}

/// A lease the cluster confirmed.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// When, on this machine's monotonic clock, the lease certainly still runs until: the
    /// confirming request's send time plus the remaining time the cluster answered, and no
    /// later than the license's expiry date counted the same way.
    until: Instant,
    counted_cores: u32,
}

/// The status as the loop last set it, and the instant the confirmed lease certainly runs
/// until. Readers see the status through [`Shared::current`], which turns it unlicensed once
/// that instant passes, even while the loop is still waiting for a node to answer.
#[derive(Debug)]
pub struct Shared {
    status: AgentStatus,
    lease_until: Option<Instant>,
}

impl Shared {
    /// The status now.
    pub fn current(&self) -> AgentStatus {
        let mut status = self.status.clone();
        let now = Instant::now();
        status.lease_remaining_ms = self.lease_until.filter(|_| status.licensed).map(|until| {
            u64::try_from(until.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
        });
        if status.licensed
            && self
                .lease_until
                .is_some_and(|until| Instant::now() >= until)
        {
            status.licensed = false;
            status.cores = 0;
            status.grace_until = None;
            if status.code == "GRACE" {
                status.code = "SERVERS_UNREACHABLE".into();
                status.message =
                    "No license server answers and the last confirmed lease has ended.".into();
            } else {
                status.code = "LEASE_EXPIRED".into();
                status.message = "The lease ended before the cluster confirmed a renewal.".into();
            }
        }
        status
    }
}

/// The shared status handle.
pub type StatusHandle = Arc<RwLock<Shared>>;

/// A running agent.
pub struct Agent {
    status: StatusHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Agent {
    /// Starts the agent loop.
    pub fn spawn(client: Client, config: AgentConfig) -> Agent {
        let restored = config
            .state_file
            .as_ref()
            .and_then(|f| f.load(&config.node))
            .map(|(left, counted_cores)| Held {
                until: Instant::now() + left,
                counted_cores,
            });
        let status = Arc::new(RwLock::new(Shared {
            status: AgentStatus {
                licensed: false,
                code: "STARTING".into(),
                message: "the agent has not yet reached the license cluster".into(),
                node: config.node.clone(),
                cores: 0,
                lease_remaining_ms: None,
                grace_until: None,
                cluster: ClusterView::default(),
            },
            lease_until: None,
        }));
        if let Some(held) = restored {
            // Licensed on the lease confirmed before the restart, while it runs; the first
            // renewal tells whether the cluster still holds it.
            let mut shared = status.write().unwrap_or_else(|p| p.into_inner());
            shared.status.licensed = true;
            shared.status.code = "GRACE".into();
            shared.status.message =
                "Restarted on the last confirmed lease; confirming it with the cluster.".into();
            shared.status.cores = held.counted_cores;
            shared.lease_until = Some(held.until);
        }
        let token = config
            .state_file
            .as_ref()
            .and_then(|f| f.load_token(&config.node));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            Arc::new(client),
            config,
            status.clone(),
            stop_rx,
            (restored, token),
        ));
        Agent { status, stop, task }
    }

    /// The current status.
    pub fn status(&self) -> AgentStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current()
    }

    /// A shared handle on the status, for the status server.
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Stops the loop at once without releasing anything, the way a crash of the agent would
    /// (the state file keeps the last confirmed lease).
    pub fn abort(self) {
        self.task.abort();
    }

    /// Stops the loop and releases the allocation (bounded by the client's deadline).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn wall_now() -> Timestamp {
    crate::node::now()
}

/// The wall-clock time corresponding to a monotonic instant.
fn wall_at(at: Instant) -> Timestamp {
    let now = Instant::now();
    let wall = wall_now();
    if at >= now {
        wall.plus_millis(u64::try_from((at - now).as_millis()).unwrap_or(u64::MAX))
    } else {
        Timestamp(
            wall.0
                .saturating_sub(u64::try_from((now - at).as_millis()).unwrap_or(0)),
        )
    }
}

struct Loop {
    client: Arc<Client>,
    config: AgentConfig,
    status: StatusHandle,
    held: Option<Held>,
    /// The lease token of the allocation held (or last held: a re-allocation presents it).
    token: Option<LeaseToken>,
}

/// The refusals after which the agent waits and allocates again.
fn is_refusal(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status, .. } if status.is_client_error())
}

async fn run(
    client: Arc<Client>,
    config: AgentConfig,
    status: StatusHandle,
    mut stop: watch::Receiver<bool>,
    (restored, token): (Option<Held>, Option<LeaseToken>),
) {
    let mut agent = Loop {
        client,
        config,
        status,
        held: restored,
        token,
    };
    loop {
        let pause = agent.step().await;
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => break,
        }
    }
    agent.release().await;
}

impl Loop {
    fn set(&self, f: impl FnOnce(&mut AgentStatus)) {
        let mut shared = self.status.write().unwrap_or_else(|p| p.into_inner());
        f(&mut shared.status);
        shared.lease_until = self.held.map(|h| h.until);
    }

    /// One round: allocate or heartbeat; returns how long to wait before the next.
    async fn step(&mut self) -> Duration {
        let ttl = Duration::from_millis(self.config.lease_ttl.as_millis());
        let sent = Instant::now();
        let result = match self.held {
            Some(_) => self
                .client
                .heartbeat(&self.config.node, self.token.as_ref(), &new_request_id())
                .await
                .map(|r| Confirmed {
                    remaining_ms: r.lease_remaining_ms,
                    license_expires_in_ms: r.license_expires_in_ms,
                    counted_cores: r.allocation.counted_cores,
                }),
            None => {
                let body = AllocateBody {
                    license: self.config.license.clone(),
                    mac: self.config.mac,
                    cores: self.config.cores,
                    ttl_ms: Some(self.config.lease_ttl.as_millis()),
                    request_id: None,
                };
                let (node, id) = (&self.config.node, new_request_id());
                let granted = match &self.token {
                    Some(token) => self.client.reallocate(node, &body, &id, token).await,
                    None => self.client.allocate(node, &body, &id).await,
                };
                granted.map(|g| {
                    self.token = Some(g.lease_token);
                    Confirmed {
                        remaining_ms: g.allocation.lease_remaining_ms,
                        license_expires_in_ms: g.license_expires_in_ms,
                        counted_cores: g.allocation.counted_cores,
                    }
                })
            }
        };
        let (result, sent) = self.confirm_signed(result, sent).await;
        match result {
            Ok(confirmed) => {
                self.confirmed(&confirmed, sent);
                self.refresh_cluster_view().await;
                // The next renewal is due a third of the ttl after this one was sent (sooner
                // when the cluster promised less than the ttl), however long the answer and
                // the cluster view took.
                let promised = Duration::from_millis(confirmed.remaining_ms);
                (sent + (ttl / 3).min(promised / 2)).saturating_duration_since(Instant::now())
            }
            Err(e) if e.is(licd_raft::Code::NotAllocated) => {
                // The lease was lost (a long pause, a forced release): allocate again now.
                tracing::warn!(node = %self.config.node, "lease lost; allocating again");
                self.forget();
                self.set(|s| {
                    s.licensed = false;
                    s.code = "NOT_ALLOCATED".into();
                    s.message = "The lease was lost; allocating again.".into();
                    s.cores = 0;
                    s.grace_until = None;
                    s.cluster.reachable = true;
                });
                Duration::ZERO
            }
            Err(e) if e.is(licd_raft::Code::NodeInUse) => {
                // The name holds a live allocation this agent has no token for. Taking it
                // over is refused by design: wait until its lease ends.
                tracing::warn!(
                    node = %self.config.node,
                    "the server name holds an allocation this agent has no lease token for \
                     (lost state file, or another host uses the name); retrying until its \
                     lease ends"
                );
                self.forget();
                self.set(|s| {
                    s.licensed = false;
                    s.code = "NODE_IN_USE".into();
                    s.message = "This server name holds a live allocation this agent has no \
                                 lease token for; retrying until that lease ends."
                        .into();
                    s.cores = 0;
                    s.grace_until = None;
                    s.cluster.reachable = true;
                });
                self.config.refused_retry
            }
            Err(e) if is_refusal(&e) => {
                let ClientError::Api { body, .. } = &e else {
                    return self.config.refused_retry;
                };
                tracing::warn!(code = %body.code, message = %body.message, "license refused");
                self.forget();
                let (code, message) = (body.code.to_string(), body.message.clone());
                self.set(|s| {
                    s.licensed = false;
                    s.code = code;
                    s.message = message;
                    s.cores = 0;
                    s.grace_until = None;
                    s.cluster.reachable = true;
                });
                self.refresh_cluster_view().await;
                self.config.refused_retry
            }
            Err(e) => {
                self.unreachable(&e);
                // Try again soon, but not in a hot loop.
                (ttl / 10).clamp(Duration::from_millis(200), Duration::from_secs(2))
            }
        }
    }

    fn confirmed(&mut self, c: &Confirmed, sent: Instant) {
        let lease_end = sent + Duration::from_millis(c.remaining_ms);
        let until = match c.license_expires_in_ms {
            Some(ms) => lease_end.min(sent + Duration::from_millis(ms)),
            None => lease_end,
        };
        let held = Held {
            until,
            counted_cores: c.counted_cores,
        };
        self.held = Some(held);
        if let Some(file) = &self.config.state_file {
            let left = until.saturating_duration_since(Instant::now());
            let token = self.token.as_ref();
            if let Err(e) = file.save(&self.config.node, left, held.counted_cores, token) {
                tracing::warn!(path = %file.path().display(), error = %e, "cannot save the agent state");
            }
        }
        self.set(|s| {
            s.licensed = true;
            s.code = "VALID".into();
            s.message = "The server is licensed.".into();
            s.cores = held.counted_cores;
            s.grace_until = None;
            s.cluster.reachable = true;
        });
    }

    /// Drops the held lease and its token, in memory and in the state file.
    fn forget(&mut self) {
        self.held = None;
        self.token = None;
        if let Some(file) = &self.config.state_file {
            file.clear();
        }
    }

    /// No node answered: grace while the confirmed lease runs, then unlicensed.
    fn unreachable(&mut self, e: &ClientError) {
        tracing::warn!(error = %e, "license cluster unreachable");
        let now = Instant::now();
        match self.held {
            Some(held) if now < held.until => {
                let left = held.until - now;
                self.set(|s| {
                    s.licensed = true;
                    s.code = "GRACE".into();
                    s.message = format!(
                        "{}; licensed for {} s more on the last confirmed lease.",
                        verify::outage(e),
                        left.as_secs()
                    );
                    s.grace_until = Some(wall_at(held.until));
                    s.cluster.reachable = false;
                });
            }
            _ => {
                // The lease ended by this agent's count: allocate when the cluster returns,
                // presenting the token (kept, with the state file), since the cluster may
                // still hold the allocation.
                self.held = None;
                self.set(|s| {
                    s.licensed = false;
                    s.code = "SERVERS_UNREACHABLE".into();
                    s.message = format!(
                        "{} and the last confirmed lease has ended.",
                        verify::outage(e)
                    );
                    s.cores = 0;
                    s.grace_until = None;
                    s.cluster.reachable = false;
                });
            }
        }
    }

    /// Asks the leader how healthy the cluster is (best effort: failures are ignored).
    async fn refresh_cluster_view(&self) {
        if let Ok(health) = self.client.cluster_health().await {
            self.set(|s| {
                s.cluster.leader = Some(health.leader_id);
                s.cluster.healthy_servers = Some(health.healthy_servers);
                s.cluster.voters = Some(health.voters.len());
                s.cluster.clock_skew_ms = health.clock_skew_ms;
                s.cluster.warnings = health.warnings;
            });
        }
    }

    async fn release(&mut self) {
        if self.held.is_none() {
            return;
        }
        match self
            .client
            .release(&self.config.node, self.token.as_ref(), &new_request_id())
            .await
        {
            Ok(_) => tracing::info!(node = %self.config.node, "allocation released"),
            Err(e) => tracing::warn!(error = %e, "could not release the allocation"),
        }
        self.forget();
        self.set(|s| {
            s.licensed = false;
            s.code = "STOPPED".into();
            s.message = "The agent stopped and released this server's cores.".into();
            s.cores = 0;
            s.grace_until = None;
        });
    }
}

/// What a successful allocation or renewal told the agent.
struct Confirmed {
    /// Lease time left when the leader answered.
    remaining_ms: u64,
    /// Calendar time left until the license expires.
    license_expires_in_ms: Option<u64>,
    /// The cores this server counts.
    counted_cores: u32,
}
