//! `/v1`: the license API for application servers and the agent.
//!
//! Each handler reads its input ([`super::request`]), asks the [`Node`](crate::node::Node)
//! (a write through [`Node::propose`](crate::node::Node::propose), a read through
//! [`Node::read`](crate::node::Node::read), which confirms leadership first) and turns the
//! answer into the wire type of [`crate::api`]. Both are bounded in time by the node: past its
//! deadline the answer is 503, and a write's outcome is then unknown until retried with the
//! same request id.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use licd_raft::command::Allocate;
use licd_raft::types::{LeaseTtl, NodeName, RequestId};
use licd_raft::{Code, Command, Outcome, Rejection};
use licd_storage::AppliedState;

use super::AppState;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use super::request::{license_id, node_name, optional_body, request_id, unexpected};
use crate::api::{
    AllocateBody, CheckAnswer, CheckBody, ClusterHealthBody, ErrorCode, GrantBody, LicensesBody,
    LogPosition, ReleaseBody, RenewBody, UsageBody,
};
use crate::lease_token::{LEASE_TOKEN_HEADER, LeaseToken, check_presented};
use crate::node::Proposed;
use crate::signing::{Nonce, SignedFields};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/nodes/{node}/allocation", put(allocate).delete(release))
        .route("/nodes/{node}/heartbeat", post(heartbeat))
        .route("/nodes/{node}/check", get(check))
        .route("/licenses", get(list_licenses))
        .route("/licenses/{id}", get(get_license))
        .route("/cluster", get(cluster_health))
        .route("/events", get(list_events))
}

async fn allocate(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<AllocateBody>,
) -> Result<Response, ApiError> {
    metered(&app, "allocate", async {
        let node = node_name(node)?;
        let request_id = request_id(&headers, body.request_id.clone())?;
        let lease_ttl = match body.ttl_ms {
            Some(ms) => {
                LeaseTtl::from_millis(ms).map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            None => app.node.default_lease_ttl(),
        };
        // A retry under the same request id derives the same token (see crate::lease_token).
        let presented = lease_token(&headers)?;
        let issued = LeaseToken::derive(
            app.node.secrets().cluster_secret.as_bytes(),
            &request_id,
            &node,
        );
        let command = Command::Allocate(Allocate {
            node,
            license: body.license,
            mac: body.mac,
            cores: body.cores,
            lease_ttl,
            token_hash: Some(issued.hash()),
            presented: presented.as_ref().map(LeaseToken::hash),
        });
        let proposed = app.node.propose(request_id.clone(), command).await?;
        grant_answer(&app, &proposed, request_id, issued, presented)
    })
    .await
}

/// The lease token a request presents in [`LEASE_TOKEN_HEADER`], if any; 400 when it is not
/// one. Never logged.
fn lease_token(headers: &HeaderMap) -> Result<Option<LeaseToken>, ApiError> {
    let Some(value) = headers.get(LEASE_TOKEN_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(format!(
            "{LEASE_TOKEN_HEADER} is not a lease token (32 hex digits)"
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    text.parse().map(Some).map_err(|_| bad())
}

async fn heartbeat(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    metered(&app, "heartbeat", async {
        // A renewal is not a log write, so it needs no request id; one sent is still checked.
        let (node, _) = node_and_request_id(node, &headers, body)?;
        let token = lease_token(&headers)?;
        let renewal = app.node.heartbeat(&node, token.as_ref()).await?;
        let body = RenewBody::new(node, &renewal, app.node.id(), app.node.term());
        Ok(axum::Json(body).into_response())
    })
    .await
}

/// Answers `answer`, counting it in the node's metrics by `kind` and outcome (refusals by
/// code too) with its latency.
async fn metered(
    app: &AppState,
    kind: &'static str,
    answer: impl Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = answer.await;
    let meter = app.node.meter();
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => {
            if let ApiError::Refused(r) = e {
                meter.refusal(ErrorCode::from(r.code).as_str());
            }
            e.outcome()
        }
    };
    meter.request(kind, outcome, started.elapsed());
    result
}

/// The answer to an allocation: 201, or 200 when it replaced one. Its lease token is the one
/// presented when the allocation kept it (a re-allocation), else the one `issued`.
fn grant_answer(
    app: &AppState,
    proposed: &Proposed,
    request_id: RequestId,
    issued: LeaseToken,
    presented: Option<LeaseToken>,
) -> Result<Response, ApiError> {
    let log = LogPosition::from(proposed.log_id);
    let (grant, status) = match &proposed.result {
        Ok(Outcome::Allocated(grant)) if grant.replaced => (grant, StatusCode::OK),
        Ok(Outcome::Allocated(grant)) => (grant, StatusCode::CREATED),
        Err(rejection) => return Err(rejection.clone().into()),
        Ok(_) => return Err(unexpected("allocating", proposed)),
    };
    let expires_in = app.node.license_expires_in(&grant.allocation.license);
    let kept = grant.allocation.token_hash.as_ref();
    let token = match presented {
        Some(presented) if kept.is_some_and(|hash| presented.matches(hash)) => presented,
        _ => issued,
    };
    let body = GrantBody::new(grant, expires_in, request_id, log, token);
    Ok((status, axum::Json(body)).into_response())
}

async fn release(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    metered(&app, "release", async {
        let (node, request_id) = node_and_request_id(node, &headers, body)?;
        let token = lease_token(&headers)?;
        // Refused before the log when the token is not the allocation's, and the request is
        // not a retry of a release already applied (which the log answers as it was first
        // answered, whoever holds the name now). The state machine checks again at apply,
        // against the allocation the name holds by then.
        let refusal = |s: &AppliedState| {
            if s.licenses.remembers(&request_id) {
                return Ok(());
            }
            let held = s
                .licenses
                .allocations()
                .get(&node)
                .and_then(|a| a.token_hash);
            check_presented(held.as_ref(), token.as_ref())
        };
        // This node's applied state may be behind the cluster's (a new leader still applying,
        // or a deposed one that does not know it yet), so a refusal is only given after a
        // read that confirms leadership; a release the local state lets through needs none.
        if app.node.read_local(refusal).is_err() {
            app.node.read(refusal).await??;
        }
        let command = Command::ReleaseHeld {
            node,
            presented: token.as_ref().map(LeaseToken::hash),
        };
        release_with(&app, command, request_id).await
    })
    .await
}

/// The server named in the path and the request id of a heartbeat or a release (header,
/// else the optional body).
fn node_and_request_id(
    node: String,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(NodeName, RequestId), ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(headers, optional_body(&body?)?)?;
    Ok((node, request_id))
}

/// Releases a server's allocation without a token (the admin force-release).
pub(super) async fn release_node(
    app: &AppState,
    node: NodeName,
    request_id: RequestId,
) -> Result<Response, ApiError> {
    release_with(app, Command::Release { node }, request_id).await
}

/// Proposes a release (the administrator's or the holder's) and renders its answer.
async fn release_with(
    app: &AppState,
    command: Command,
    request_id: RequestId,
) -> Result<Response, ApiError> {
    let proposed = app.node.propose(request_id.clone(), command).await?;
    let log = LogPosition::from(proposed.log_id);
    match &proposed.result {
        Ok(Outcome::Released { node, freed }) => Ok(axum::Json(ReleaseBody {
            node: node.clone(),
            released: freed.is_some(),
            freed: freed.as_ref().map(Into::into),
            request_id,
            log,
        })
        .into_response()),
        Err(rejection) => Err(rejection.clone().into()),
        Ok(_) => Err(unexpected("releasing", &proposed)),
    }
}

async fn check(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    AppQuery(query): AppQuery<crate::api::CheckQuery>,
) -> Result<Response, ApiError> {
    metered(&app, "check", async {
        let node = node_name(node)?;
        let nonce = query
            .nonce
            .as_deref()
            .map(Nonce::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let check = app
            .node
            .read_leases(|v| {
                let result = v
                    .state
                    .check(&node, query.mac, v.today, |n, a| v.remaining(n, a));
                CheckAnswer::from(&result)
            })
            .await?;
        app.node.meter().check_answer(check.code.as_str());
        let mut body = CheckBody {
            check,
            leader_id: app.node.id(),
            term: app.node.term(),
            signature: None,
        };
        if let Some(signer) = app.node.answer_signer() {
            let signature = signer.sign(&SignedFields::of(&body, query.mac, nonce.as_ref()));
            body.signature = Some(signature);
        }
        Ok(axum::Json(body).into_response())
    })
    .await
}

async fn list_licenses(State(app): State<AppState>) -> Result<Response, ApiError> {
    let body = app
        .node
        .read_leases(|v| LicensesBody {
            licenses: v
                .state
                .usage_all(v.today, |n, a| v.remaining(n, a))
                .iter()
                .map(Into::into)
                .collect(),
            cluster_time: v.today,
        })
        .await?;
    Ok(axum::Json(body).into_response())
}

async fn get_license(
    State(app): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = license_id(id)?;
    let usage = app
        .node
        .read_leases(|v| {
            let usage = v.state.usage(&id, v.today, |n, a| v.remaining(n, a));
            usage.as_ref().map(UsageBody::from)
        })
        .await?;
    match usage {
        Some(usage) => Ok(axum::Json(usage).into_response()),
        None => Err(Rejection::new(Code::LicenseNotFound).into()),
    }
}

/// A page of the usage history, read like every client read (leadership confirmed first),
/// so that a page never misses an event an earlier answer showed.
async fn list_events(
    State(app): State<AppState>,
    AppQuery(query): AppQuery<crate::api::EventsQuery>,
) -> Result<Response, ApiError> {
    use crate::api::{DEFAULT_EVENTS_LIMIT, EventsBody, MAX_EVENTS_LIMIT};
    let limit = query.limit.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if !(1..=MAX_EVENTS_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_EVENTS_LIMIT}, not {limit}"
        )));
    }
    // Event numbers are JSON-safe integers of the contract (int64); larger is no event.
    let since = query.since.unwrap_or(0);
    if i64::try_from(since).is_err() {
        return Err(ApiError::bad_request(format!(
            "since must be 0 to {}, not {since}",
            i64::MAX
        )));
    }
    let page = app.node.events(since, limit).await?;
    Ok(axum::Json(EventsBody::from(&page)).into_response())
}

/// The leader's view of the cluster's health (served by the leader: the route forwards).
async fn cluster_health(State(app): State<AppState>) -> Result<Response, ApiError> {
    let status = app.node.status();
    let leader_id = status.leader_id.ok_or(ApiError::NoLeader)?;
    let voters = status.voters();
    let down = status.down_voters();
    let clock_skew_ms = status
        .members
        .iter()
        .filter_map(|m| m.clock_skew_ms.map(|s| (m.id, s)))
        .collect();
    Ok(axum::Json(ClusterHealthBody {
        leader_id,
        term: status.term,
        healthy_servers: voters.len() - down.len(),
        voters,
        down,
        clock_skew_ms,
        warnings: status.warnings(),
    })
    .into_response())
}
