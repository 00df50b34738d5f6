//! A running licd node: its Raft instance, its stores, and the background tasks that serve
//! the license API (the read batcher and the lease keeper).
//!
//! [`Node::start`] opens the sled database, starts openraft, and returns a handle that the
//! HTTP layer ([`crate::http`]) shares between requests. [`Node::shutdown`] stops Raft and
//! flushes the database; dropping the last handle stops the background tasks too.
//!
//! This is the API the handlers call, and the only way they reach Raft:
//! - [`Node::propose`] writes a command through the log within [`REQUEST_DEADLINE`] and
//!   returns the state machine's outcome with the log position that decided it;
//! - [`Node::read`] confirms leadership (a shared heartbeat round) before it lets the caller
//!   look at the applied state: a client's read cannot skip the confirmation;
//! - [`Node::heartbeat`] renews a lease in the leader's [`lessor`] after a leadership
//!   confirmation, without a log write; [`Node::read_leases`] reads the state together with
//!   the leader's lease times;
//! - [`Node::status`] is the node's [`status::ClusterStatus`];
//! - the membership operations live in [`membership`].
//!
//! Failures are [`NodeError`]s, which say what the caller can do (retry elsewhere, later,
//! or fix the input); the HTTP layer maps them to answers in one place.

mod backup;
pub mod calendar;
mod error;
mod failover;
pub mod identity;
mod leases;
pub mod lessor;
pub mod membership;
pub mod meter;
pub mod network;
mod reads;
pub mod status;
mod tasks;
mod ticker;
mod writes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::VerifyingKey;
use licd_raft::command::Rejection;
use licd_raft::license_file::LicenseFile;
use licd_raft::types::{LeaseTtl, RequestId, Timestamp};
use licd_raft::{Code, Command, Outcome, RaftNodeId, TypeConfig};
use licd_storage::{AppliedState, LogStore, StateMachineStore};
use openraft::{BasicNode, LogId, Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;

use crate::config::{ConfigError, NodeConfig, Secrets};
pub use error::{Deadline, NodeError};
pub use leases::Renewal;
use lessor::Lessor;
pub use reads::ReadBatcher;
use status::ClusterStatus;
pub use tasks::TaskGuard;

/// The openraft handle of a licd node.
pub type LicdRaft = Raft<TypeConfig>;

/// How long a write or a read may wait for Raft before it fails with [`NodeError::Timeout`].
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

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

/// A command applied through the log: the state machine's answer and where it was decided.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The outcome, or the rule that refused the command.
    pub result: Result<Outcome, Rejection>,
    /// The log entry that decided it.
    pub log_id: LogId<RaftNodeId>,
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
    /// The cluster's answer-signing key, when configured: check answers are signed with it.
    answer_signer: Option<crate::signing::AnswerSigner>,
    /// The bearer tokens accepted, by role.
    tokens: Arc<crate::auth::Tokens>,
    /// The abuse limits of the HTTP API.
    limits: crate::config::LimitsConfig,
    election_timeout_max: Duration,
    reads: ReadBatcher,
    writes: writes::WriteBatcher,
    /// The read rounds, the write batches, the lease keeper and the leader watch; dropped
    /// (and so stopped) with the node.
    tasks: Mutex<Vec<TaskGuard>>,
    contacts: Arc<network::Contacts>,
    /// When this node last accepted an append and gave its vote, and the highest term it
    /// refused a vote in ([`failover`]).
    contact: failover::Contact,
    /// The leases this node measures while it leads.
    lessor: Mutex<Lessor>,
    /// The cluster's calendar time as this node knows it.
    calendar: Mutex<calendar::Calendar>,
    /// How far a voter's clock may be from the voters' median.
    clock_skew_bound: Duration,
    /// The node's Prometheus metrics.
    meter: meter::Meter,
    /// How the node reaches its peers: plain HTTP, or HTTPS with its certificate.
    outgoing: crate::tls::Outgoing,
    /// The cluster this node's data belongs to, shared with the network.
    cluster_id: Arc<identity::ClusterIdCell>,
    /// The usage history retention this node proposes while it leads (`[events]`).
    event_retention: licd_raft::events::Retention,
    /// Held while a write starts the usage history, so that concurrent first writes
    /// propose one retention entry, not one each.
    history_start: tokio::sync::Mutex<()>,
}

impl Node {
    /// Opens the node's storage and starts Raft and the background tasks.
    pub async fn start(config: &NodeConfig, secrets: Secrets) -> Result<Node, StartError> {
        config.validate()?;
        // Read before the storage opens (`validate` read it too): a bad key file stops the
        // start with nothing begun.
        let answer_signer = config
            .answer_signing_key()?
            .map(crate::signing::AnswerSigner::new);
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
        let cluster_id = Arc::new(identity::ClusterIdCell::new(
            log_store
                .cluster_id()
                .map_err(|e| StartError::Storage(licd_storage::OpenError::Tree(e)))?,
        ));
        let contacts = Arc::new(network::Contacts::default());
        let outgoing = crate::tls::Outgoing::for_node(config.tls.as_ref())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let network = network::Network::new(
            secrets.cluster_secret.clone(),
            config.raft_bind_ip,
            contacts.clone(),
        )
        .with_outgoing(outgoing.clone())
        .with_cluster_id(cluster_id.clone())
        .with_retry_every(Duration::from_millis(t.heartbeat_ms));
        let gate = reads::StartupGate::of_store(&mut log_store.clone())
            .await
            .map_err(|e| StartError::Raft(format!("cannot read the log at start-up: {e}")))?;
        let raft = Raft::new(config.node_id, raft_config, network, log_store.clone(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (reads, read_rounds) = ReadBatcher::spawn(raft.clone(), gate);
        let (writes, write_queue) = writes::WriteBatcher::channel();
        let trusted_keys = config.trusted_keys()?;
        let tokens = crate::auth::Tokens::new(&config.auth, &secrets.admin_token)
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let default_lease_ttl = config.default_lease_ttl()?;
        let election_timeout_max = Duration::from_millis(t.election_timeout_max_ms);
        let prompt = failover::Timing {
            lease: election_timeout_max,
            heartbeat: Duration::from_millis(t.heartbeat_ms),
        };
        let keeper = ticker::Schedule {
            every: Duration::from_millis(t.tick_ms),
            checkpoint_every: Duration::from_millis(t.lease_checkpoint_ms),
        };
        let inner = Arc::new(Inner {
            event_retention: config.events.retention(),
            history_start: tokio::sync::Mutex::new(()),
            id: config.node_id,
            advertise: config.advertise_addr(),
            raft,
            log_store,
            state,
            trusted_keys,
            default_lease_ttl,
            secrets,
            answer_signer,
            tokens: Arc::new(tokens),
            limits: config.limits.clone(),
            election_timeout_max,
            reads,
            writes,
            tasks: Mutex::new(vec![read_rounds]),
            contacts,
            contact: failover::Contact::default(),
            lessor: Mutex::new(Lessor::new(election_timeout_max)),
            calendar: Mutex::new(calendar::Calendar::default()),
            clock_skew_bound: Duration::from_millis(t.clock_skew_bound_ms),
            meter: meter::Meter::default(),
            outgoing,
            cluster_id,
        });
        // Spawned once the node exists: a task that started while it was being built would
        // find no node behind its weak handle and end at once.
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([
                TaskGuard::spawn("write batches", writes::run(write_queue, weak.clone())),
                TaskGuard::spawn("lease keeper", ticker::run(weak.clone(), keeper)),
                TaskGuard::spawn("prompt elections", failover::run(weak.clone(), prompt)),
                TaskGuard::spawn("leader watch", watch_leader(weak)),
            ]);
        Ok(Node { inner })
    }

    /// This node's Raft member id.
    pub fn id(&self) -> RaftNodeId {
        self.inner.id
    }

    /// The node's metrics.
    pub fn meter(&self) -> &meter::Meter {
        &self.inner.meter
    }

    /// How this node calls its peers (Raft and forwarded requests): the scheme and TLS
    /// configuration of its own `[tls]` section.
    pub fn outgoing(&self) -> &crate::tls::Outgoing {
        &self.inner.outgoing
    }

    /// Hands an append from a leader to Raft, noting when one was accepted ([`failover`]).
    pub async fn append_entries(
        &self,
        request: openraft::raft::AppendEntriesRequest<licd_raft::TypeConfig>,
    ) -> Result<
        openraft::raft::AppendEntriesResponse<RaftNodeId>,
        openraft::error::RaftError<RaftNodeId>,
    > {
        let answer = self.inner.raft.append_entries(request).await;
        if let Ok(a) = &answer
            && !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_))
        {
            self.inner.contact.appended();
        }
        answer
    }

    /// Hands a vote request to Raft, noting whether this node gave its vote ([`failover`]).
    pub async fn vote(
        &self,
        request: openraft::raft::VoteRequest<RaftNodeId>,
    ) -> Result<openraft::raft::VoteResponse<RaftNodeId>, openraft::error::RaftError<RaftNodeId>>
    {
        let term = request.vote.leader_id().term;
        let answer = self.inner.raft.vote(request).await;
        if let Ok(a) = &answer {
            self.inner.contact.voted(term, a.vote_granted);
        }
        answer
    }

    /// The address this node advertises.
    pub fn advertise_addr(&self) -> &str {
        &self.inner.advertise
    }

    /// The openraft handle, for the Raft transport.
    pub fn raft(&self) -> &LicdRaft {
        &self.inner.raft
    }

    /// The secrets the node checks requests against.
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The key check answers are signed with, if the node has one.
    pub fn answer_signer(&self) -> Option<&crate::signing::AnswerSigner> {
        self.inner.answer_signer.as_ref()
    }

    /// The bearer tokens the node accepts.
    pub fn tokens(&self) -> &crate::auth::Tokens {
        &self.inner.tokens
    }

    /// The abuse limits of the node's HTTP API.
    pub fn limits(&self) -> &crate::config::LimitsConfig {
        &self.inner.limits
    }

    /// The lease duration used when an allocation names none.
    pub fn default_lease_ttl(&self) -> LeaseTtl {
        self.inner.default_lease_ttl
    }

    /// The latest Raft metrics.
    pub fn metrics(&self) -> RaftMetrics<RaftNodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// A receiver of Raft metrics changes.
    pub fn metrics_watch(&self) -> watch::Receiver<RaftMetrics<RaftNodeId, BasicNode>> {
        self.inner.raft.metrics()
    }

    /// This node's current term.
    pub fn term(&self) -> u64 {
        self.inner.raft.metrics().borrow().current_term
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

    /// Whether this node currently believes it leads ([`status::leads`]).
    pub fn is_leader(&self) -> bool {
        status::leads(&self.inner.raft.metrics().borrow(), self.inner.id)
    }

    /// This node's view of the cluster: roles, members, health, clock skews and warnings.
    pub fn status(&self) -> ClusterStatus {
        let contacts = &self.inner.contacts;
        let metrics = self.metrics();
        let skews = if status::leads(&metrics, self.inner.id) {
            Some(self.agreement().skew_ms)
        } else {
            None
        };
        ClusterStatus::observe(
            &metrics,
            self.inner.id,
            |peer| contacts.since(peer),
            self.inner.election_timeout_max,
        )
        .with_clocks(skews, self.inner.clock_skew_bound)
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

    /// Confirms that this node leads and has applied everything committed before the call,
    /// then runs `f` on the applied state: the read is linearizable. Concurrent callers share
    /// heartbeat rounds. Fails with [`NodeError::Timeout`] past [`REQUEST_DEADLINE`].
    ///
    /// With the `bug-stale-reads` feature (fault-injection builds only) it confirms nothing,
    /// so a deposed leader answers from its stale state: the fault harness must catch that.
    pub async fn read<T>(&self, f: impl FnOnce(&AppliedState) -> T) -> Result<T, NodeError> {
        if !cfg!(feature = "bug-stale-reads") {
            match tokio::time::timeout(REQUEST_DEADLINE, self.inner.reads.confirm()).await {
                Ok(confirmed) => {
                    confirmed?;
                }
                Err(_) => return Err(NodeError::Timeout(Deadline::Read)),
            }
        }
        let guard = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        Ok(f(&guard))
    }

    /// Runs `f` on this node's applied state *without* confirming leadership: not
    /// linearizable, so never an answer to a client. For comparing replicas (tests,
    /// diagnostics); clients' reads go through [`Node::read`].
    pub fn read_local<T>(&self, f: impl FnOnce(&AppliedState) -> T) -> T {
        let guard = self.inner.state.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Proposes `command` under `request_id`, stamped with the cluster's calendar time (none
    /// when the voters' clocks do not agree: [`calendar`]), and
    /// waits for it to be applied. Fails with [`NodeError::Timeout`] past
    /// [`REQUEST_DEADLINE`]; the outcome is then unknown until retried with the same id.
    ///
    /// While the usage history has not started (a new cluster, or one upgraded from a format
    /// without it), the history's retention entry, which starts it, is proposed first
    /// ([`licd_raft::events`]), so that the command is recorded.
    pub async fn propose(
        &self,
        request_id: RequestId,
        command: Command,
    ) -> Result<Proposed, NodeError> {
        let not_started = |node: &Node| node.read_local(|s| s.events.retention().is_none());
        if !matches!(command, Command::SetEventRetention { .. }) && not_started(self) {
            let _starting = self.inner.history_start.lock().await;
            if not_started(self) {
                self.propose_event_retention().await?;
            }
        }
        self.propose_stamped(request_id, command).await
    }

    /// Proposes this node's configured usage history retention.
    pub(crate) async fn propose_event_retention(&self) -> Result<Proposed, NodeError> {
        let request_id = RequestId::new(format!("event-retention-{}-{}", self.id(), self.term()))
            .map_err(|e| NodeError::Invalid(e.to_string()))?;
        let retention = self.inner.event_retention;
        self.propose_stamped(request_id, Command::SetEventRetention { retention })
            .await
    }

    /// The usage history retention this node proposes while it leads.
    pub fn configured_event_retention(&self) -> licd_raft::events::Retention {
        self.inner.event_retention
    }

    /// A page of the usage history: at most `limit` events after event number `since`,
    /// read linearizably like every client read.
    pub async fn events(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<licd_raft::events::Page, NodeError> {
        self.read(|s| s.events.after(since, limit)).await
    }

    async fn propose_stamped(
        &self,
        request_id: RequestId,
        command: Command,
    ) -> Result<Proposed, NodeError> {
        let write = self.inner.writes.propose(request_id, command);
        match tokio::time::timeout(REQUEST_DEADLINE, write).await {
            Ok(response) => Ok(response?),
            Err(_) => Err(NodeError::Timeout(Deadline::Write)),
        }
    }

    /// Verifies a signed license file against the trusted vendor keys and proposes it. An
    /// unreadable, untrusted or already expired license never reaches the log (the state
    /// machine checks the expiry again against the cluster clock).
    pub async fn install_license(
        &self,
        text: &str,
        request_id: RequestId,
    ) -> Result<Proposed, NodeError> {
        let license = LicenseFile::parse_and_verify(text, &self.inner.trusted_keys)?;
        if let Some(today) = self.calendar_now()
            && license.is_expired_at(today)
        {
            return Err(Rejection::new(Code::LicenseExpired).into());
        }
        self.propose(request_id, Command::InstallLicense(license))
            .await
    }

    /// How many of the node's background tasks (read rounds, write batches, lease keeper,
    /// leader watch) are running: all four while the node is up.
    pub fn background_tasks_running(&self) -> usize {
        let tasks = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.iter().filter(|t| !t.is_finished()).count()
    }

    /// Stops Raft and the background tasks and flushes the database.
    pub async fn shutdown(&self) {
        for task in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            task.stop();
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        if let Err(e) = self.inner.log_store.flush().await {
            tracing::error!(error = %e, "final flush of the database failed");
        }
    }
}

/// Counts the changes of leader this node sees (for `licd_leader_changes_total`).
async fn watch_leader(node: Weak<Inner>) {
    let Some(mut watch) = node.upgrade().map(|inner| inner.raft.metrics()) else {
        return;
    };
    let mut leader = watch.borrow().current_leader;
    while watch.changed().await.is_ok() {
        let now = watch.borrow().current_leader;
        if now != leader && now.is_some() {
            let Some(inner) = node.upgrade() else {
                return;
            };
            inner.meter.leader_changed();
        }
        leader = now;
    }
}

/// This machine's wall-clock time as a cluster timestamp.
pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}
