//! The failover client library: the CLI and the agent talk to a licd cluster through it.
//!
//! A [`Client`] knows every endpoint of the cluster. It sends each call to the leader it last
//! learned of (from the `x-licd-leader-*` headers every node sets), and when a node cannot be
//! reached, does not answer in time, or answers 503 (no leader, leadership moving), it retries
//! the *same* request, with the *same* request id, on the next endpoint, with exponential
//! backoff, until the caller's deadline. The state machine applies a request id once, so a
//! retried write cannot be applied twice: a leader crash costs the caller latency, not an
//! error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use licd_raft::query::Usage;
use licd_raft::types::{LicenseId, MacAddr, NodeName, RequestId};
use licd_raft::{Code, RaftNodeId};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    AddLearnerBody, AllocateBody, CheckBody, ClusterHealthBody, ErrorBody, GrantBody, InitBody,
    InstalledBody, LEADER_ADDR_HEADER, LicensesBody, MembershipBody, REQUEST_ID_HEADER,
    ReleaseBody, RemovedBody, SnapshotBody, StatusBody, VotersBody,
};

/// How a client retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Give up on a call after this long, counting every attempt.
    pub deadline: Duration,
    /// Give up on one attempt after this long and try the next endpoint.
    pub attempt_timeout: Duration,
    /// The first pause between attempts; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error: bad input, a license rule, auth, not found...
    #[error("{} ({status}): {}", body.code, body.message)]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The error body, with its code and figures.
        body: ErrorBody,
    },
    /// No node gave an answer before the deadline. For a write the outcome is unknown; retry
    /// it with the same request id to learn it.
    #[error(
        "no licd node answered within {deadline:?} after {attempts} attempts; last error: {last_error}"
    )]
    Unavailable {
        /// The deadline that passed.
        deadline: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure seen.
        last_error: String,
    },
    /// The client was built without endpoints, or with an unusable one.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A node answered 2xx with a body this client does not understand.
    #[error("unexpected answer from {endpoint}: {message}")]
    Protocol {
        /// The node.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// The error code, for an API error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }

    /// Whether this is the given state machine code.
    pub fn is(&self, code: Code) -> bool {
        self.code() == Some(code.as_str())
    }
}

/// A client of a licd cluster. Share it: it keeps a connection pool and the leader it learned.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<String>,
    http: reqwest::Client,
    leader: Mutex<Option<String>>,
    /// Nodes that recently could not be reached, until when they are avoided.
    suspects: Mutex<HashMap<String, Instant>>,
    admin_token: Option<String>,
    policy: RetryPolicy,
}

/// How long a node that could not be reached is tried only when every other node has failed
/// too, and its name in a leader hint (a follower's stale view) is not followed.
const SUSPECT_FOR: Duration = Duration::from_secs(1);

/// A fresh random request id for one logical call.
pub fn new_request_id() -> RequestId {
    let n: u128 = rand::random();
    RequestId::new(format!("c-{n:032x}")).expect("c- and 32 hex digits form a valid id")
}

fn normalize(endpoint: &str) -> Result<String, ClientError> {
    let e = endpoint.trim().trim_end_matches('/');
    let e = e.strip_prefix("http://").unwrap_or(e);
    if e.is_empty() || e.contains('/') || e.starts_with("https:") {
        return Err(ClientError::Config(format!(
            "endpoint {endpoint:?} must be host:port (plain HTTP)"
        )));
    }
    Ok(e.to_string())
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
        let endpoints = endpoints
            .iter()
            .map(|e| normalize(e.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(policy.attempt_timeout.min(Duration::from_secs(1)))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Client {
            endpoints,
            http,
            leader: Mutex::new(None),
            suspects: Mutex::new(HashMap::new()),
            admin_token: None,
            policy,
        })
    }

    /// Binds the client's outgoing connections to a local address (a test harness gives each
    /// logical client its own address so network faults can single it out).
    pub fn with_local_address(mut self, ip: std::net::IpAddr) -> Result<Self, ClientError> {
        self.http = reqwest::Client::builder()
            .connect_timeout(self.policy.attempt_timeout.min(Duration::from_secs(1)))
            .no_proxy()
            .local_address(ip)
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(self)
    }

    /// Sets the admin token sent as a bearer token on `/admin` calls.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
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

    /// Sends one logical call, retrying as the module documentation describes.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        request_id: Option<&RequestId>,
    ) -> Result<(StatusCode, T), ClientError> {
        self.call_with(method, path, body, request_id, Attempt::Short)
            .await
    }

    /// Like [`Client::call`]; a [`Attempt::Long`] call (a membership change, which waits for
    /// a learner to catch up, or a snapshot) may use the whole deadline on one attempt.
    async fn call_with<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
        request_id: Option<&RequestId>,
        kind: Attempt,
    ) -> Result<(StatusCode, T), ClientError> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut backoff = self.policy.initial_backoff;
        let mut last_error: String;
        loop {
            let endpoint = self.target(attempt);
            attempt += 1;
            let left = self.policy.deadline.saturating_sub(started.elapsed());
            let timeout = match kind {
                Attempt::Short => self.policy.attempt_timeout.min(left),
                Attempt::Long => left,
            };
            let mut request = self
                .http
                .request(method.clone(), format!("http://{endpoint}{path}"))
                .timeout(timeout);
            if let Some(id) = request_id {
                request = request.header(REQUEST_ID_HEADER, id.as_str());
            }
            if path.starts_with("/admin")
                && let Some(token) = &self.admin_token
            {
                request = request.bearer_auth(token);
            }
            request = match &body {
                Body::None => request,
                Body::Json(v) => request.json(v),
                Body::Text(t) => request
                    .header(reqwest::header::CONTENT_TYPE, "text/plain")
                    .body(t.to_string()),
            };
            match request.send().await {
                Ok(response) => {
                    self.suspect(&endpoint, false);
                    let status = response.status();
                    let hinted = response
                        .headers()
                        .get(LEADER_ADDR_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        // Follow a fresh hint, or forget the leader and go round the nodes.
                        self.set_leader(hinted.filter(|h| *h != endpoint));
                        let text = response.text().await.unwrap_or_default();
                        last_error = format!("{endpoint} answered 503: {text}");
                    } else {
                        if hinted.is_some() {
                            self.set_leader(hinted);
                        }
                        let bytes = response.bytes().await.map_err(|e| ClientError::Protocol {
                            endpoint: endpoint.clone(),
                            message: e.to_string(),
                        });
                        match bytes {
                            Ok(bytes) => return decode(&endpoint, status, &bytes),
                            Err(e) => last_error = e.to_string(),
                        }
                    }
                }
                Err(e) => {
                    // Unreachable or too slow: forget it as leader, try the next node.
                    self.suspect(&endpoint, true);
                    if self.known_leader().as_deref() == Some(endpoint.as_str()) {
                        self.set_leader(None);
                    }
                    last_error = format!("{endpoint}: {e}");
                }
            }
            let elapsed = started.elapsed();
            if elapsed + backoff >= self.policy.deadline {
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

    /// Allocates (or re-allocates) a server's cores. Pass the same request id to retry.
    pub async fn allocate(
        &self,
        node: &NodeName,
        body: &AllocateBody,
        request_id: &RequestId,
    ) -> Result<GrantBody, ClientError> {
        let path = format!("/v1/nodes/{node}/allocation");
        let (_, grant) = self
            .call(Method::PUT, &path, Body::json(body), Some(request_id))
            .await?;
        Ok(grant)
    }

    /// Renews a server's lease.
    pub async fn heartbeat(
        &self,
        node: &NodeName,
        request_id: &RequestId,
    ) -> Result<GrantBody, ClientError> {
        let path = format!("/v1/nodes/{node}/heartbeat");
        let (_, grant) = self
            .call(Method::POST, &path, Body::None, Some(request_id))
            .await?;
        Ok(grant)
    }

    /// Releases a server's cores (idempotent).
    pub async fn release(
        &self,
        node: &NodeName,
        request_id: &RequestId,
    ) -> Result<ReleaseBody, ClientError> {
        let path = format!("/v1/nodes/{node}/allocation");
        let (_, body) = self
            .call(Method::DELETE, &path, Body::None, Some(request_id))
            .await?;
        Ok(body)
    }

    /// Asks whether a server is licensed (a linearizable read on the leader).
    pub async fn check(
        &self,
        node: &NodeName,
        mac: Option<MacAddr>,
    ) -> Result<CheckBody, ClientError> {
        let path = match mac {
            Some(mac) => format!("/v1/nodes/{node}/check?mac={mac}"),
            None => format!("/v1/nodes/{node}/check"),
        };
        let (_, body) = self.call(Method::GET, &path, Body::None, None).await?;
        Ok(body)
    }

    /// Every installed license with its usage.
    pub async fn licenses(&self) -> Result<LicensesBody, ClientError> {
        let (_, body) = self
            .call(Method::GET, "/v1/licenses", Body::None, None)
            .await?;
        Ok(body)
    }

    /// One license's usage.
    pub async fn license(&self, id: &LicenseId) -> Result<Usage, ClientError> {
        let path = format!("/v1/licenses/{id}");
        let (_, body) = self.call(Method::GET, &path, Body::None, None).await?;
        Ok(body)
    }

    /// The leader's view of the cluster's health (no admin token needed).
    pub async fn cluster_health(&self) -> Result<ClusterHealthBody, ClientError> {
        let (_, body) = self
            .call(Method::GET, "/v1/cluster", Body::None, None)
            .await?;
        Ok(body)
    }

    /// Initializes the cluster with its first voters (empty: the node asked, alone).
    pub async fn init(&self, body: &InitBody) -> Result<MembershipBody, ClientError> {
        let (_, b) = self
            .call_with(
                Method::POST,
                "/admin/init",
                Body::json(body),
                None,
                Attempt::Long,
            )
            .await?;
        Ok(b)
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
        let (_, b) = self
            .call_with(
                Method::POST,
                "/admin/learners",
                Body::json(&body),
                None,
                Attempt::Long,
            )
            .await?;
        Ok(b)
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, node_id: RaftNodeId) -> Result<MembershipBody, ClientError> {
        let path = format!("/admin/voters/{node_id}");
        let (_, b) = self
            .call_with(Method::POST, &path, Body::None, None, Attempt::Long)
            .await?;
        Ok(b)
    }

    /// Sets the complete voter set.
    pub async fn set_voters(&self, voters: Vec<RaftNodeId>) -> Result<MembershipBody, ClientError> {
        let body = VotersBody { voters };
        let (_, b) = self
            .call_with(
                Method::PUT,
                "/admin/voters",
                Body::json(&body),
                None,
                Attempt::Long,
            )
            .await?;
        Ok(b)
    }

    /// Removes a member, voter or learner.
    pub async fn remove_member(&self, node_id: RaftNodeId) -> Result<MembershipBody, ClientError> {
        let path = format!("/admin/members/{node_id}");
        let (_, b) = self
            .call_with(Method::DELETE, &path, Body::None, None, Attempt::Long)
            .await?;
        Ok(b)
    }

    /// The cluster status, from the leader when one is known.
    pub async fn status(&self) -> Result<StatusBody, ClientError> {
        let (_, b) = self
            .call(Method::GET, "/admin/status", Body::None, None)
            .await?;
        Ok(b)
    }

    /// The status as one particular node sees it, without failover.
    pub async fn status_of(&self, endpoint: &str) -> Result<StatusBody, ClientError> {
        let single = Client {
            endpoints: vec![normalize(endpoint)?],
            http: self.http.clone(),
            leader: Mutex::new(None),
            suspects: Mutex::new(HashMap::new()),
            admin_token: self.admin_token.clone(),
            policy: RetryPolicy {
                deadline: self.policy.attempt_timeout,
                ..self.policy.clone()
            },
        };
        let (_, b) = single
            .call(Method::GET, "/admin/status", Body::None, None)
            .await?;
        Ok(b)
    }

    /// Installs a signed license file (its text).
    pub async fn install_license(
        &self,
        text: &str,
        request_id: &RequestId,
    ) -> Result<InstalledBody, ClientError> {
        let (_, b) = self
            .call(
                Method::POST,
                "/admin/licenses",
                Body::Text(text),
                Some(request_id),
            )
            .await?;
        Ok(b)
    }

    /// Removes a license and its allocations.
    pub async fn remove_license(
        &self,
        id: &LicenseId,
        request_id: &RequestId,
    ) -> Result<RemovedBody, ClientError> {
        let path = format!("/admin/licenses/{id}");
        let (_, b) = self
            .call(Method::DELETE, &path, Body::None, Some(request_id))
            .await?;
        Ok(b)
    }

    /// Releases a server's allocation as an administrator.
    pub async fn force_release(
        &self,
        node: &NodeName,
        request_id: &RequestId,
    ) -> Result<ReleaseBody, ClientError> {
        let path = format!("/admin/nodes/{node}/allocation");
        let (_, b) = self
            .call(Method::DELETE, &path, Body::None, Some(request_id))
            .await?;
        Ok(b)
    }

    /// Asks the leader to build a snapshot now.
    pub async fn snapshot(&self) -> Result<SnapshotBody, ClientError> {
        let (_, b) = self
            .call_with(
                Method::POST,
                "/admin/snapshot",
                Body::None,
                None,
                Attempt::Long,
            )
            .await?;
        Ok(b)
    }
}

/// How long one attempt of a call may take.
#[derive(Clone, Copy)]
enum Attempt {
    /// [`RetryPolicy::attempt_timeout`].
    Short,
    /// What is left of the deadline.
    Long,
}

enum Body<'a> {
    None,
    Json(serde_json::Value),
    Text(&'a str),
}

impl Body<'_> {
    fn json<T: Serialize>(value: &T) -> Self {
        // The API types serialize to JSON infallibly (no maps with non-string keys).
        Body::Json(serde_json::to_value(value).unwrap_or(serde_json::Value::Null))
    }
}

fn decode<T: DeserializeOwned>(
    endpoint: &str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<(StatusCode, T), ClientError> {
    if status.is_success() {
        return serde_json::from_slice(bytes)
            .map(|v| (status, v))
            .map_err(|e| ClientError::Protocol {
                endpoint: endpoint.to_string(),
                message: format!("cannot decode a {status} answer: {e}"),
            });
    }
    let body = serde_json::from_slice::<ErrorBody>(bytes).unwrap_or_else(|_| {
        ErrorBody::new(
            format!("HTTP_{}", status.as_u16()),
            String::from_utf8_lossy(bytes).into_owned(),
        )
    });
    Err(ClientError::Api { status, body })
}
