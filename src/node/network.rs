//! The Raft network: openraft's RPCs as HTTP POSTs with bincode bodies to `/raft/append`,
//! `/raft/vote` and `/raft/snapshot` on the peer, authenticated by the cluster secret.
//!
//! Peers are called over HTTPS when the node has a `[tls]` section (with its own
//! certificate, for mutual TLS), over plain HTTP otherwise ([`crate::tls::Outgoing`]).
//!
//! The response body is the bincode of `Result<Response, RaftError<..>>`, so a remote Raft
//! error arrives as the same value the remote Raft returned. A connection that cannot be made
//! maps to [`Unreachable`], which makes openraft back off from the peer instead of retrying it
//! in a hot loop; any other transport failure maps to [`NetworkError`].
//!
//! Every request carries the sender's cluster id ([`crate::cluster_id::CLUSTER_ID_HEADER`])
//! once it has one; the receiver refuses another cluster's ([`super::identity`]).
//!
//! Every answer carries the peer's wall-clock time ([`CLOCK_HEADER`]); the sender records the
//! peer's offset from its own clock for the cluster calendar ([`super::calendar`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use licd_raft::codec::{decode, encode};
use licd_raft::{RaftNodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::calendar::ClockSample;

/// Response header of `/raft` routes: the answering node's wall-clock time, in milliseconds
/// since the Unix epoch, from which the leader learns the voters' clock offsets.
pub const CLOCK_HEADER: &str = "x-licd-clock";
/// Request header carrying the cluster secret on `/raft` routes.
pub const CLUSTER_SECRET_HEADER: &str = "x-licd-cluster-secret";

/// When each peer last answered an RPC (the heartbeat monitoring view of `/admin/status`),
/// and its wall clock against this node's (the samples of [`super::calendar`]).
#[derive(Debug, Default)]
pub struct Contacts {
    last: Mutex<BTreeMap<RaftNodeId, Instant>>,
    clocks: Mutex<BTreeMap<RaftNodeId, ClockSample>>,
}

/// The longest round trip whose clock sample is kept: half of it is the sample's error.
const MAX_SAMPLE_RTT: Duration = Duration::from_secs(1);

impl Contacts {
    fn record(&self, peer: RaftNodeId) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.insert(peer, Instant::now());
    }

    /// Records a peer's wall clock `peer_ms`, read while this node's went from `sent_ms` to
    /// `received_ms` over `rtt` of monotonic time.
    fn record_clock(
        &self,
        peer: RaftNodeId,
        peer_ms: u64,
        sent_ms: u64,
        received_ms: u64,
        rtt: Duration,
    ) {
        if rtt > MAX_SAMPLE_RTT {
            return;
        }
        let middle = i128::from(sent_ms) + (i128::from(received_ms) - i128::from(sent_ms)) / 2;
        let offset = i128::from(peer_ms) - middle;
        let Ok(offset_ms) = i64::try_from(offset) else {
            return;
        };
        let mut clocks = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
        clocks.insert(
            peer,
            ClockSample {
                offset_ms,
                at: Instant::now(),
            },
        );
    }

    /// Time since `peer` last answered, if it ever did.
    pub fn since(&self, peer: RaftNodeId) -> Option<Duration> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.get(&peer).map(Instant::elapsed)
    }

    /// Each peer's clock offset from this node's, from samples at most `fresh` old.
    pub fn clock_offsets(&self, fresh: Duration) -> BTreeMap<RaftNodeId, i64> {
        let clocks = self.clocks.lock().unwrap_or_else(|p| p.into_inner());
        clocks
            .iter()
            .filter(|(_, s)| s.at.elapsed() <= fresh)
            .map(|(id, s)| (*id, s.offset_ms))
            .collect()
    }
}

/// Builds [`PeerClient`]s. Each peer has its own pooled HTTP client, so a slow snapshot to
/// one peer does not hold up heartbeats to another; the pool is kept for as long as the
/// peer's address stays the same, because openraft asks for a new client for every
/// linearizable read round and a new pool would mean new TCP (and TLS) connections each
/// time.
#[derive(Clone)]
pub struct Network {
    cluster_secret: Arc<str>,
    bind_ip: Option<IpAddr>,
    contacts: Arc<Contacts>,
    outgoing: crate::tls::Outgoing,
    pools: Arc<Mutex<BTreeMap<RaftNodeId, (String, reqwest::Client)>>>,
    cluster_id: Arc<super::identity::ClusterIdCell>,
    retry_every: Duration,
}

impl Network {
    /// A network that authenticates with `cluster_secret`, binds outgoing connections to
    /// `bind_ip` when given, and records each answer in `contacts`.
    pub fn new(cluster_secret: Arc<str>, bind_ip: Option<IpAddr>, contacts: Arc<Contacts>) -> Self {
        Network {
            cluster_secret,
            bind_ip,
            contacts,
            outgoing: crate::tls::Outgoing::plain(),
            pools: Arc::default(),
            cluster_id: Arc::default(),
            retry_every: DEFAULT_RETRY_EVERY,
        }
    }

    /// Retries a peer it could not reach every `every` (the heartbeat interval) rather than
    /// openraft's default of every 500 ms: a follower that comes back hears from its leader
    /// within a heartbeat or so, long before its election timer (or
    /// [`super::failover`]) would take the silence for a dead leader.
    pub fn with_retry_every(mut self, every: Duration) -> Self {
        self.retry_every = every;
        self
    }

    /// Names the node's cluster id, as `cell` holds it at each call, on every request.
    pub fn with_cluster_id(mut self, cell: Arc<super::identity::ClusterIdCell>) -> Self {
        self.cluster_id = cell;
        self
    }

    /// Calls peers with `outgoing`'s scheme and TLS configuration (HTTPS with the node's
    /// certificate when it has a `[tls]` section); plain HTTP otherwise.
    pub fn with_outgoing(mut self, outgoing: crate::tls::Outgoing) -> Self {
        self.outgoing = outgoing;
        self
    }
}

/// How often an unreachable peer is retried unless [`Network::with_retry_every`] says.
const DEFAULT_RETRY_EVERY: Duration = Duration::from_millis(50);

/// The connection to one peer.
pub struct PeerClient {
    retry_every: Duration,
    target: RaftNodeId,
    base: String,
    http: reqwest::Client,
    cluster_secret: Arc<str>,
    contacts: Arc<Contacts>,
    cluster_id: Arc<super::identity::ClusterIdCell>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerClient {
        let base = self.outgoing.base_url(&node.addr);
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let http = match pools.get(&target) {
            Some((addr, http)) if *addr == base => http.clone(),
            _ => {
                let http = self.build_http();
                pools.insert(target, (base.clone(), http.clone()));
                http
            }
        };
        drop(pools);
        PeerClient {
            retry_every: self.retry_every,
            target,
            base,
            http,
            cluster_secret: self.cluster_secret.clone(),
            contacts: self.contacts.clone(),
            cluster_id: self.cluster_id.clone(),
        }
    }
}

impl Network {
    /// A pooled HTTP client for one peer.
    fn build_http(&self) -> reqwest::Client {
        let mut builder = self
            .outgoing
            .apply(reqwest::Client::builder())
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .tcp_nodelay(true)
            .no_proxy();
        if let Some(ip) = self.bind_ip {
            builder = builder.local_address(ip);
        }
        // Building a client fails only when the TLS backend cannot start, and its
        // configuration was built when the node started; fall back to the default client
        // rather than fail the peer.
        builder.build().unwrap_or_default()
    }
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let (sent_ms, sent) = (super::now().0, Instant::now());
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CLUSTER_SECRET_HEADER, &*self.cluster_secret)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        if let Some(id) = self.cluster_id.get() {
            request = request.header(crate::cluster_id::CLUSTER_ID_HEADER, &*id);
        }
        let response = request
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = response.status();
        if let Some(peer_ms) = response
            .headers()
            .get(CLOCK_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            let rtt = sent.elapsed();
            self.contacts
                .record_clock(self.target, peer_ms, sent_ms, super::now().0, rtt);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let e = AnyError::error(format!(
                "peer {} answered {status} on {path}: {text}",
                self.target
            ));
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let result: Result<Resp, RaftError<RaftNodeId, E>> =
            decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.contacts.record(self.target);
        result.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>,
    > {
        self.call("/raft/append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        let chunk = licd_raft::codec::SnapshotChunk::from(rpc);
        self.call("/raft/snapshot", &chunk, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, BasicNode, RaftError<RaftNodeId>>>
    {
        self.call("/raft/vote", &rpc, option.hard_ttl()).await
    }

    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry_every))
    }
}
