//! The failover client library: the CLI and the agent talk to a licd cluster through it.
//!
//! A [`Client`] knows every endpoint of the cluster. It sends each call to the leader it last
//! learned of (from the `x-licd-leader-*` headers every node sets), and when a node cannot be
//! reached, does not answer in time, or answers 503 (no leader, leadership moving, overloaded)
//! or 429 (the token's write rate is used up), it retries
//! the *same* request, with the *same* request id (sent as `idempotency-key`), on the next
//! endpoint, with exponential backoff, until the caller's deadline. The state machine applies a request id once, so a
//! retried write cannot be applied twice: a leader crash costs the caller latency, not an
//! error.
//!
//! Each call carries a bearer token: the admin token on `/admin`, the other token
//! ([`Client::with_token`]: client or operator) elsewhere, each falling back on the other.
//!
//! Endpoints are `https://host:port`, `http://host:port` or a bare `host:port`, which means
//! HTTPS when the client has a CA file ([`Client::with_tls`]) and plain HTTP otherwise; the
//! leader hints name `host:port`, which is reached with the same scheme. HTTPS without a CA
//! file trusts the system's roots (a TLS proxy with a public certificate). A failed TLS
//! handshake is [`ClientError::Tls`] at once: every node of a cluster would fail the same.
//!
//! Every endpoint is one `Call` (method, path, body, request id, attempt length) sent
//! through one path, [`Client::send`]. The exception is [`Client::init`]: initializing a
//! cluster is addressed to one node and is never retried on another, since a second node
//! initialized on its own would be a second cluster.
//!
//! Given the cluster's answer keys ([`Client::with_answer_keys`]), [`Client::check`] accepts
//! only answers signed by one of them over the fresh nonce it sent (see [`crate::signing`]);
//! anything else, an emulator's `VALID` included, is a [`ClientError::BadSignature`].

mod call;
mod error;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use licd_raft::RaftNodeId;
use licd_raft::types::{LicenseId, MacAddr, NodeName, RequestId};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::api::{
    AddLearnerBody, AllocateBody, CheckBody, ClusterHealthBody, EventsBody, GrantBody,
    IDEMPOTENCY_KEY_HEADER, InitBody, InstalledBody, LEADER_ADDR_HEADER, LicensesBody,
    MembershipBody, REQUEST_ID_HEADER, ReleaseBody, RemovedBody, RenewBody, SnapshotBody,
    StatusBody, UsageBody, VotersBody,
};
use crate::lease_token::{LEASE_TOKEN_HEADER, LeaseToken};
use call::{Attempt, Body, Call, Tried, decode, http_client};
use ed25519_dalek::VerifyingKey;

use crate::signing::{self, Nonce};
pub use error::{ClientError, RetryPolicy};

/// A client of a licd cluster. Share it: it keeps a connection pool and the leader it learned.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<String>,
    /// The scheme the endpoints named, if they named one.
    scheme: Option<&'static str>,
    /// HTTPS settings: the CA and the client certificate, when given.
    tls: crate::tls::Outgoing,
    /// The local address outgoing connections are bound to.
    local: Option<std::net::IpAddr>,
    http: reqwest::Client,
    leader: Mutex<Option<String>>,
    /// Nodes that recently could not be reached, until when they are avoided.
    suspects: Mutex<HashMap<String, Instant>>,
    admin_token: Option<String>,
    /// The token of every call that is not an admin call (a client or operator token).
    token: Option<String>,
    policy: RetryPolicy,
    /// The cluster's answer-signing public keys: when any is given, every check answer must
    /// be signed by one of them for the nonce sent.
    answer_keys: Vec<VerifyingKey>,
}

/// How long a node that could not be reached is tried only when every other node has failed
/// too, and its name in a leader hint (a follower's stale view) is not followed.
const SUSPECT_FOR: Duration = Duration::from_secs(1);

/// A fresh random request id for one logical call.
pub fn new_request_id() -> RequestId {
    let n: u128 = rand::random();
    RequestId::new(format!("c-{n:032x}")).expect("c- and 32 hex digits form a valid id")
}

/// An endpoint's scheme (when it names one) and its `host:port`.
fn normalize(endpoint: &str) -> Result<(Option<&'static str>, String), ClientError> {
    let e = endpoint.trim().trim_end_matches('/');
    let (scheme, rest) = if let Some(rest) = e.strip_prefix("https://") {
        (Some("https"), rest)
    } else if let Some(rest) = e.strip_prefix("http://") {
        (Some("http"), rest)
    } else {
        (None, e)
    };
    if rest.is_empty() || rest.contains('/') || rest.contains("://") {
        return Err(ClientError::Config(format!(
            "endpoint {endpoint:?} must be https://host:port, http://host:port or host:port"
        )));
    }
    Ok((scheme, rest.to_string()))
}

/// The TLS settings of a client: the CA that signed the cluster's certificates, and a
/// client certificate for clusters that require one (mutual TLS).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificate(s); the system's roots when `None`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Client certificate and key, presented when the server asks.
    pub identity: Option<crate::tls::Identity>,
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (`host:port`), with the default policy.
    pub fn new<S: AsRef<str>>(endpoints: &[S]) -> Result<Self, ClientError> {
        Self::with_policy(endpoints, RetryPolicy::default())
    }

    /// A client with a retry policy of its own.
    pub fn with_policy<S: AsRef<str>>(
        endpoints: &[S],
        policy: RetryPolicy,
    ) -> Result<Self, ClientError> {
        let parsed = endpoints
            .iter()
            .map(|e| normalize(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() {
            return Err(ClientError::Config("no endpoints given".into()));
        }
        let mut schemes: Vec<&str> = parsed.iter().filter_map(|(s, _)| *s).collect();
        schemes.dedup();
        if schemes.len() > 1 {
            return Err(ClientError::Config(
                "the endpoints mix https:// and http://: a cluster is all-TLS or all-plain".into(),
            ));
        }
        let tls = crate::tls::Outgoing::plain();
        Ok(Client {
            endpoints: parsed.into_iter().map(|(_, e)| e).collect(),
            scheme: schemes
                .first()
                .map(|s| if *s == "https" { "https" } else { "http" }),
            http: http_client(&policy, None, &tls)?,
            tls,
            local: None,
            leader: Mutex::new(None),
            suspects: Mutex::new(HashMap::new()),
            admin_token: None,
            token: None,
            policy,
            answer_keys: Vec::new(),
        })
    }

    /// Binds the client's outgoing connections to a local address (a test harness gives each
    /// logical client its own address so network faults can single it out).
    pub fn with_local_address(mut self, ip: std::net::IpAddr) -> Result<Self, ClientError> {
        self.http = http_client(&self.policy, Some(ip), &self.tls)?;
        self.local = Some(ip);
        Ok(self)
    }

    /// Verifies the nodes' certificates against `tls.ca_file` (instead of the system's
    /// roots), presents `tls.identity` when a node asks for a certificate, and reaches bare
    /// `host:port` endpoints over HTTPS when a CA file is given.
    pub fn with_tls(mut self, tls: &ClientTls) -> Result<Self, ClientError> {
        let outgoing = match (&tls.ca_file, &tls.identity) {
            (Some(ca), identity) => crate::tls::Outgoing::https(
                crate::tls::client_config(ca, identity.as_ref())
                    .map_err(|e| ClientError::Config(e.to_string()))?,
            ),
            (None, Some(_)) => {
                return Err(ClientError::Config(
                    "a client certificate needs the cluster's CA file too (--ca-file)".into(),
                ));
            }
            (None, None) => crate::tls::Outgoing::plain(),
        };
        self.http = http_client(&self.policy, self.local, &outgoing)?;
        self.tls = outgoing;
        Ok(self)
    }

    /// `"https"` or `"http"`: what the endpoints named, else HTTPS when a CA file is given.
    pub fn scheme(&self) -> &'static str {
        self.scheme.unwrap_or(self.tls.scheme())
    }

    /// Sets the admin token sent as a bearer token on `/admin` calls, and on every other
    /// call when no [`Client::with_token`] is set (an admin may do everything).
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Requires every check answer to be signed by one of `keys` (the cluster's answer keys;
    /// several while a key is being replaced) for the nonce sent: others fail with
    /// [`ClientError::BadSignature`].
    pub fn with_answer_keys(mut self, keys: Vec<VerifyingKey>) -> Self {
        self.answer_keys = keys;
        self
    }

    /// Whether check answers are verified (answer keys were given).
    pub fn verifies_answers(&self) -> bool {
        !self.answer_keys.is_empty()
    }

    /// Sets the token sent as a bearer token on `/v1` calls (a client token for an
    /// application server, an operator token for reads), and on `/admin` calls when no admin
    /// token is set.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The bearer token of a call to `path`.
    fn token_for(&self, path: &str) -> Option<&str> {
        let (first, second) = if path.starts_with("/admin") {
            (&self.admin_token, &self.token)
        } else {
            (&self.token, &self.admin_token)
        };
        first.as_deref().or(second.as_deref())
    }

    /// The endpoints this client knows.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The leader address the client last learned, if any.
    pub fn known_leader(&self) -> Option<String> {
        self.leader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_leader(&self, addr: Option<String>) {
        let addr = addr.filter(|a| !self.is_suspect(a));
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    fn is_suspect(&self, endpoint: &str) -> bool {
        let suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        suspects
            .get(endpoint)
            .is_some_and(|until| Instant::now() < *until)
    }

    fn suspect(&self, endpoint: &str, yes: bool) {
        let mut suspects = self.suspects.lock().unwrap_or_else(|p| p.into_inner());
        if yes {
            suspects.insert(endpoint.to_string(), Instant::now() + SUSPECT_FOR);
        } else {
            suspects.remove(endpoint);
        }
    }

    /// The node to try on attempt `n`: the known leader, else the endpoints in turn, passing
    /// over those that recently could not be reached unless all of them could not.
    fn target(&self, attempt: u32) -> String {
        if let Some(leader) = self.known_leader() {
            return leader;
        }
        let n = self.endpoints.len();
        let start = attempt as usize % n;
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| !self.is_suspect(e))
            .unwrap_or(&self.endpoints[start])
            .clone()
    }

    /// One attempt of `call` at `endpoint`, given at most `timeout`.
    async fn try_once(&self, endpoint: &str, call: &Call<'_>, timeout: Duration) -> Tried {
        let mut request = self
            .http
            .request(
                call.method.clone(),
                format!("{}://{endpoint}{}", self.scheme(), call.path),
            )
            .timeout(timeout);
        if let Some(id) = call.request_id {
            // The key of exactly-once; x-request-id too, for tracing and for nodes of an
            // older version, which read the key from it.
            request = request
                .header(IDEMPOTENCY_KEY_HEADER, id.as_str())
                .header(REQUEST_ID_HEADER, id.as_str());
        }
        if let Some(token) = call.lease_token {
            request = request.header(LEASE_TOKEN_HEADER, token.reveal());
        }
        if let Some(token) = self.token_for(&call.path) {
            request = request.bearer_auth(token);
        }
        request = match &call.body {
            Body::None => request,
            Body::Json(v) => request.json(v),
            Body::Text(t) => request
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body(t.to_string()),
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(reason) = crate::tls::tls_failure(&e) {
                    return Tried::Tls(reason);
                }
                return Tried::Unreachable(format!("{endpoint}: {e}"));
            }
        };
        let status = response.status();
        let leader_hint = response
            .headers()
            .get(LEADER_ADDR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // 503 (no leader, overloaded) and 429 (the token's write rate) are both "not now":
        // the same request is sent again, with the same id, within the deadline.
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            let text = response.text().await.unwrap_or_default();
            return Tried::Unavailable {
                message: format!("{endpoint} answered {status}: {text}"),
                leader_hint,
            };
        }
        match response.bytes().await {
            Ok(bytes) => Tried::Answered {
                status,
                bytes: bytes.to_vec(),
                leader_hint,
            },
            Err(e) => Tried::Unreachable(format!("{endpoint}: {e}")),
        }
    }

    /// Sends one logical call, retrying as the module documentation describes; when `pinned`
    /// is given every attempt goes to that endpoint and no other.
    async fn send_with<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        pinned: Option<&str>,
    ) -> Result<T, ClientError> {
        let (endpoint, status, bytes) = self.send_raw(call, pinned).await?;
        decode(&endpoint, status, &bytes)
    }

    /// Like [`Client::send_with`], returning the answer's status and bytes undecoded (and the
    /// endpoint that answered).
    async fn send_raw(
        &self,
        call: Call<'_>,
        pinned: Option<&str>,
    ) -> Result<(String, StatusCode, Vec<u8>), ClientError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut backoff = self.policy.initial_backoff;
        loop {
            let endpoint = pinned.map_or_else(|| self.target(attempt), str::to_string);
            attempt += 1;
            let left = self.policy.deadline.saturating_sub(started.elapsed());
            let timeout = match call.attempt {
                Attempt::Short => self.policy.attempt_timeout.min(left),
                Attempt::Long => left,
            };
            let last_error = match self.try_once(&endpoint, &call, timeout).await {
                Tried::Answered {
                    status,
                    bytes,
                    leader_hint,
                } => {
                    self.suspect(&endpoint, false);
                    if leader_hint.is_some() {
                        self.set_leader(leader_hint);
                    }
                    return Ok((endpoint, status, bytes));
                }
                Tried::Unavailable {
                    message,
                    leader_hint,
                } => {
                    self.suspect(&endpoint, false);
                    // Follow a fresh hint, or forget the leader and go round the nodes.
                    self.set_leader(leader_hint.filter(|h| *h != endpoint));
                    message
                }
                Tried::Tls(message) => {
                    return Err(ClientError::Tls { endpoint, message });
                }
                Tried::Unreachable(message) => {
                    // Unreachable or too slow: forget it as leader, try the next node.
                    self.suspect(&endpoint, true);
                    if self.known_leader().as_deref() == Some(endpoint.as_str()) {
                        self.set_leader(None);
                    }
                    message
                }
            };
            if started.elapsed() + backoff >= self.policy.deadline {
                return Err(ClientError::Unavailable {
                    deadline: self.policy.deadline,
                    attempts: attempt,
                    last_error,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }

    /// Sends one logical call to the cluster, failing over between its nodes.
    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, ClientError> {
        self.send_with(call, None).await
    }

    /// Allocates a server's cores; the answer holds the allocation's lease token. Pass the
    /// same request id to retry: the retry is answered the same token. Refused with
    /// `NODE_IN_USE` while the name holds a live allocation (re-allocate it with
    /// [`Client::reallocate`]) and `MAC_IN_USE` while another name's uses the MAC.
    pub async fn allocate(
        &self,
        node: &NodeName,
        body: &AllocateBody,
        request_id: &RequestId,
    ) -> Result<GrantBody, ClientError> {
        let call = Call::new(Method::PUT, format!("/v1/nodes/{node}/allocation"));
        self.send(call.json(body).id(request_id)).await
    }

    /// Re-allocates the allocation `token` is the lease token of (other cores, ttl, license
    /// or MAC); it keeps the token. When the name holds nothing any more, it is a new
    /// allocation with a new token, which the answer holds.
    pub async fn reallocate(
        &self,
        node: &NodeName,
        body: &AllocateBody,
        request_id: &RequestId,
        token: &LeaseToken,
    ) -> Result<GrantBody, ClientError> {
        let call = Call::new(Method::PUT, format!("/v1/nodes/{node}/allocation"));
        self.send(call.json(body).id(request_id).token(Some(token)))
            .await
    }

    /// Renews a server's lease (in the leader's memory: not a log write), presenting its
    /// lease token (`None` only for an allocation made before lease tokens).
    pub async fn heartbeat(
        &self,
        node: &NodeName,
        token: Option<&LeaseToken>,
        request_id: &RequestId,
    ) -> Result<RenewBody, ClientError> {
        let call = Call::new(Method::POST, format!("/v1/nodes/{node}/heartbeat"));
        self.send(call.id(request_id).token(token)).await
    }

    /// Releases a server's cores, presenting its lease token (idempotent; `None` releases a
    /// name that holds nothing, or an allocation made before lease tokens).
    pub async fn release(
        &self,
        node: &NodeName,
        token: Option<&LeaseToken>,
        request_id: &RequestId,
    ) -> Result<ReleaseBody, ClientError> {
        let call = Call::new(Method::DELETE, format!("/v1/nodes/{node}/allocation"));
        self.send(call.id(request_id).token(token)).await
    }

    /// Asks whether a server is licensed (a linearizable read on the leader), with a fresh
    /// random nonce; verified when the client has answer keys.
    pub async fn check(
        &self,
        node: &NodeName,
        mac: Option<MacAddr>,
    ) -> Result<CheckBody, ClientError> {
        self.check_with_nonce(node, mac, &Nonce::random()).await
    }

    /// [`Client::check`] with the caller's nonce: the answer's signature covers it. With
    /// answer keys, an answer that is not signed by one of them for this nonce, node and MAC
    /// fails with [`ClientError::BadSignature`].
    pub async fn check_with_nonce(
        &self,
        node: &NodeName,
        mac: Option<MacAddr>,
        nonce: &Nonce,
    ) -> Result<CheckBody, ClientError> {
        let nonce_hex = nonce.to_hex();
        let path = match mac {
            Some(mac) => format!("/v1/nodes/{node}/check?mac={mac}&nonce={nonce_hex}"),
            None => format!("/v1/nodes/{node}/check?nonce={nonce_hex}"),
        };
        let body: CheckBody = self.send(Call::get(path)).await?;
        if self.verifies_answers() {
            signing::verify(&body, node, mac, Some(nonce), &self.answer_keys)
                .map_err(ClientError::BadSignature)?;
        }
        Ok(body)
    }

    /// Every installed license with its usage.
    pub async fn licenses(&self) -> Result<LicensesBody, ClientError> {
        self.send(Call::get("/v1/licenses")).await
    }

    /// One license's usage.
    pub async fn license(&self, id: &LicenseId) -> Result<UsageBody, ClientError> {
        self.send(Call::get(format!("/v1/licenses/{id}"))).await
    }

    /// A page of the usage history: at most `limit` events after event number `since` (an
    /// operator's read).
    pub async fn events(&self, since: u64, limit: usize) -> Result<EventsBody, ClientError> {
        self.send(Call::get(format!("/v1/events?since={since}&limit={limit}")))
            .await
    }

    /// The leader's view of the cluster's health (a token of any role).
    pub async fn cluster_health(&self) -> Result<ClusterHealthBody, ClientError> {
        self.send(Call::get("/v1/cluster")).await
    }

    /// Initializes the cluster with its first voters (empty: the node asked, alone).
    ///
    /// Only the first endpoint is asked, and retried while it cannot answer; the call never
    /// fails over, since another node initialized on its own would be another cluster.
    pub async fn init(&self, body: &InitBody) -> Result<MembershipBody, ClientError> {
        let call = Call::new(Method::POST, "/admin/init").json(body).long();
        self.send_with(call, Some(&self.endpoints[0])).await
    }

    /// Makes the first endpoint campaign for leadership, and returns its status after the
    /// election. Never fails over: the election is that node's.
    pub async fn elect(&self) -> Result<StatusBody, ClientError> {
        let call = Call::new(Method::POST, "/admin/elect").long();
        self.send_with(call, Some(&self.endpoints[0])).await
    }

    /// Adds a learner and waits until it has caught up.
    pub async fn add_learner(
        &self,
        node_id: RaftNodeId,
        addr: &str,
    ) -> Result<MembershipBody, ClientError> {
        let body = AddLearnerBody {
            node_id,
            addr: addr.to_string(),
        };
        let call = Call::new(Method::POST, "/admin/learners").json(&body);
        self.send(call.long()).await
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, node_id: RaftNodeId) -> Result<MembershipBody, ClientError> {
        let call = Call::new(Method::POST, format!("/admin/voters/{node_id}"));
        self.send(call.long()).await
    }

    /// Sets the complete voter set.
    pub async fn set_voters(&self, voters: Vec<RaftNodeId>) -> Result<MembershipBody, ClientError> {
        let call = Call::new(Method::PUT, "/admin/voters").json(&VotersBody { voters });
        self.send(call.long()).await
    }

    /// Removes a member, voter or learner.
    pub async fn remove_member(&self, node_id: RaftNodeId) -> Result<MembershipBody, ClientError> {
        let call = Call::new(Method::DELETE, format!("/admin/members/{node_id}"));
        self.send(call.long()).await
    }

    /// The cluster status, from the leader when one is known.
    pub async fn status(&self) -> Result<StatusBody, ClientError> {
        self.send(Call::get("/admin/status")).await
    }

    /// Installs a signed license file (its text).
    pub async fn install_license(
        &self,
        text: &str,
        request_id: &RequestId,
    ) -> Result<InstalledBody, ClientError> {
        let call = Call::new(Method::POST, "/admin/licenses").text(text);
        self.send(call.id(request_id)).await
    }

    /// Removes a license and its allocations.
    pub async fn remove_license(
        &self,
        id: &LicenseId,
        request_id: &RequestId,
    ) -> Result<RemovedBody, ClientError> {
        let call = Call::new(Method::DELETE, format!("/admin/licenses/{id}"));
        self.send(call.id(request_id)).await
    }

    /// Releases a server's allocation as an administrator.
    pub async fn force_release(
        &self,
        node: &NodeName,
        request_id: &RequestId,
    ) -> Result<ReleaseBody, ClientError> {
        let call = Call::new(Method::DELETE, format!("/admin/nodes/{node}/allocation"));
        self.send(call.id(request_id)).await
    }

    /// Downloads a backup file (`GET /admin/snapshot`): a consistent snapshot of the
    /// cluster, taken by the leader, holding every write acknowledged before the call. The
    /// bytes are returned as the leader sent them; [`crate::backup::Backup::from_file`]
    /// checks and reads them.
    pub async fn download_snapshot(&self) -> Result<Vec<u8>, ClientError> {
        let (endpoint, status, bytes) = self
            .send_raw(Call::get("/admin/snapshot").long(), None)
            .await?;
        if status.is_success() {
            return Ok(bytes);
        }
        Err(decode::<serde_json::Value>(&endpoint, status, &bytes)
            .err()
            .unwrap_or_else(|| ClientError::Protocol {
                endpoint,
                message: format!("a {status} answer decoded as success"),
            }))
    }

    /// Asks the leader to build a snapshot now.
    pub async fn snapshot(&self) -> Result<SnapshotBody, ClientError> {
        self.send(Call::new(Method::POST, "/admin/snapshot").long())
            .await
    }
}
