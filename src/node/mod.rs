//! A running licd node: its Raft instance, its stores, and the background tasks that serve
//! the license API (the read batcher and the lease ticker).
//!
//! [`Node::start`] opens the sled database, starts openraft, and returns a handle that the
//! HTTP layer ([`crate::http`]) shares between requests. [`Node::shutdown`] stops Raft and
//! flushes the database.

pub mod network;
mod reads;
mod ticker;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use licd_raft::types::{LeaseTtl, RequestId, Timestamp};
use licd_raft::{Command, RaftNodeId, Request, TypeConfig};
use licd_storage::{AppliedState, LogStore, StateMachineStore};
use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{BasicNode, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use crate::config::{ConfigError, NodeConfig, Secrets};
pub use reads::ReadBatcher;

/// The openraft handle of a licd node.
pub type LicdRaft = Raft<TypeConfig>;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened.
    #[error(transparent)]
    Storage(#[from] licd_storage::OpenError),
    /// openraft refused to start.
    #[error("cannot start Raft: {0}")]
    Raft(String),
}

/// A started node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: RaftNodeId,
    advertise: String,
    raft: LicdRaft,
    log_store: LogStore,
    state: Arc<RwLock<AppliedState>>,
    trusted_keys: Vec<VerifyingKey>,
    default_lease_ttl: LeaseTtl,
    secrets: Secrets,
    election_timeout_max: Duration,
    reads: ReadBatcher,
    ticker: tokio::task::JoinHandle<()>,
    contacts: Arc<network::Contacts>,
}

impl Node {
    /// Opens the node's storage and starts Raft and the background tasks.
    pub async fn start(config: &NodeConfig, secrets: Secrets) -> Result<Node, StartError> {
        config.validate()?;
        let t = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: "licd".into(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            install_snapshot_timeout: t.install_snapshot_timeout_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(t.snapshot_every_logs),
            max_in_snapshot_log_to_keep: t.logs_kept_after_snapshot,
            // Keep a few entries less than a snapshot interval before a lagging follower is
            // sent a snapshot instead of the log.
            replication_lag_threshold: t.snapshot_every_logs,
            ..Default::default()
        };
        let raft_config = Arc::new(
            raft_config
                .validate()
                .map_err(|e| StartError::Raft(e.to_string()))?,
        );
        let (log_store, sm): (LogStore, StateMachineStore) = licd_storage::open(&config.data_dir)?;
        let state = sm.state();
        let contacts = Arc::new(network::Contacts::default());
        let network = network::Network::new(
            secrets.cluster_secret.clone(),
            config.raft_bind_ip,
            contacts.clone(),
        );
        let raft = Raft::new(config.node_id, raft_config, network, log_store.clone(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let reads = ReadBatcher::spawn(raft.clone());
        let ticker = tokio::spawn(ticker::run(
            raft.clone(),
            state.clone(),
            config.node_id,
            Duration::from_millis(t.tick_ms),
        ));
        Ok(Node {
            inner: Arc::new(Inner {
                id: config.node_id,
                advertise: config.advertise_addr(),
                raft,
                log_store,
                state,
                trusted_keys: config.trusted_keys()?,
                default_lease_ttl: config.default_lease_ttl()?,
                secrets,
                election_timeout_max: Duration::from_millis(t.election_timeout_max_ms),
                reads,
                ticker,
                contacts,
            }),
        })
    }

    /// This node's Raft member id.
    pub fn id(&self) -> RaftNodeId {
        self.inner.id
    }

    /// The address this node advertises.
    pub fn advertise_addr(&self) -> &str {
        &self.inner.advertise
    }

    /// The openraft handle.
    pub fn raft(&self) -> &LicdRaft {
        &self.inner.raft
    }

    /// The secrets the node checks requests against.
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The trusted vendor keys.
    pub fn trusted_keys(&self) -> &[VerifyingKey] {
        &self.inner.trusted_keys
    }

    /// The lease duration used when an allocation names none.
    pub fn default_lease_ttl(&self) -> LeaseTtl {
        self.inner.default_lease_ttl
    }

    /// The configured maximum election timeout: a peer silent for longer is considered down.
    pub fn election_timeout_max(&self) -> Duration {
        self.inner.election_timeout_max
    }

    /// When each peer last answered this node's Raft RPCs.
    pub fn contacts(&self) -> &network::Contacts {
        &self.inner.contacts
    }

    /// The latest Raft metrics.
    pub fn metrics(&self) -> RaftMetrics<RaftNodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// A receiver of Raft metrics changes.
    pub fn metrics_watch(&self) -> watch::Receiver<RaftMetrics<RaftNodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// The leader this node knows, with its advertised address.
    pub fn leader(&self) -> Option<(RaftNodeId, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Whether this node currently believes it leads.
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)
    }

    /// Runs `f` on the applied state. Callers on the license read path must first confirm
    /// leadership with [`Node::linearizable_read`].
    pub fn read_state<T>(&self, f: impl FnOnce(&AppliedState) -> T) -> T {
        let guard = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Confirms that this node leads and that its state machine has applied everything
    /// committed before the call: a read after this returns is linearizable. Concurrent
    /// callers share heartbeat rounds.
    pub async fn linearizable_read(
        &self,
    ) -> Result<(), RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>> {
        self.inner.reads.confirm().await
    }

    /// Proposes a command stamped with this node's wall-clock time and the request id.
    pub async fn write(
        &self,
        request_id: RequestId,
        command: Command,
    ) -> Result<
        ClientWriteResponse<TypeConfig>,
        RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>,
    > {
        self.inner
            .raft
            .client_write(Request {
                time: now(),
                request_id,
                command,
            })
            .await
    }

    /// The members of the cluster by id and address.
    pub fn members(&self) -> BTreeMap<RaftNodeId, String> {
        self.metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    /// Stops Raft and the background tasks and flushes the database.
    pub async fn shutdown(&self) {
        self.inner.ticker.abort();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        if let Err(e) = self.inner.log_store.flush().await {
            tracing::error!(error = %e, "final flush of the database failed");
        }
    }
}

/// This machine's wall-clock time as a cluster timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}
