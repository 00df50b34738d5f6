//! `/v1`: the license API for application servers and the agent.
//!
//! Writes are stamped with the leader's time and the request id and go through the Raft log;
//! checks and usage reads are answered by the leader after a linearizable read confirmation.
//! Both are bounded in time: a write or read that cannot complete within [`REQUEST_DEADLINE`]
//! answers 503, and a write's outcome is then unknown until retried with the same request id.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use licd_raft::command::Allocate;
use licd_raft::types::{LeaseTtl, LicenseId, NodeName, RequestId};
use licd_raft::{Command, Outcome};
use openraft::raft::ClientWriteResponse;

use super::AppState;
use super::error::{ApiError, AppJson, AppPath, AppQuery};
use crate::api::{
    AllocateBody, CheckBody, CheckQuery, ClusterHealthBody, GrantBody, LicensesBody, LogPosition,
    REQUEST_ID_HEADER, ReleaseBody, RequestIdBody,
};
use crate::node::now;

/// How long a request may wait for Raft before it is answered 503.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/nodes/{node}/allocation", put(allocate).delete(release))
        .route("/nodes/{node}/heartbeat", post(heartbeat))
        .route("/nodes/{node}/check", get(check))
        .route("/licenses", get(list_licenses))
        .route("/licenses/{id}", get(get_license))
        .route("/cluster", get(cluster_health))
}

/// Parses a path segment as a server name, with a 400 that says what is wrong.
pub fn node_name(raw: String) -> Result<NodeName, ApiError> {
    NodeName::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The request id: the header's, else the body's, else a fresh one (such a request cannot
/// be retried safely, so clients should send one).
pub fn request_id(headers: &HeaderMap, body: Option<RequestId>) -> Result<RequestId, ApiError> {
    if let Some(value) = headers.get(REQUEST_ID_HEADER) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("x-request-id is not valid text"))?;
        return RequestId::new(text).map_err(|e| ApiError::bad_request(e.to_string()));
    }
    Ok(body.unwrap_or_else(fresh_request_id))
}

/// A random request id for requests that came without one.
pub fn fresh_request_id() -> RequestId {
    let n: u128 = rand::random();
    RequestId::new(format!("srv-{n:032x}")).expect("srv- and 32 hex digits form a valid id")
}

/// Reads the optional `{"request_id": ...}` body of heartbeat and release calls.
pub fn optional_body(bytes: &[u8]) -> Result<Option<RequestId>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let body: RequestIdBody = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    Ok(body.request_id)
}

/// Proposes a command within the deadline.
pub async fn propose(
    app: &AppState,
    request_id: RequestId,
    command: Command,
) -> Result<(Result<Outcome, licd_raft::Rejection>, LogPosition), ApiError> {
    let write = app.node.write(request_id, command);
    let response: ClientWriteResponse<licd_raft::TypeConfig> = match tokio::time::timeout(
        REQUEST_DEADLINE,
        write,
    )
    .await
    {
        Ok(result) => result?,
        Err(_) => {
            return Err(ApiError::unavailable(
                "TIMEOUT",
                "the write was not committed in time; its outcome is unknown: retry with the same request id",
            ));
        }
    };
    let log = LogPosition {
        term: response.log_id.leader_id.term,
        index: response.log_id.index,
    };
    Ok((response.data, log))
}

/// Confirms leadership for a linearizable read within the deadline.
///
/// With the `bug-stale-reads` feature (fault-injection builds only) it confirms nothing, so a
/// deposed leader answers from its stale state: the fault harness must catch that.
#[cfg(feature = "bug-stale-reads")]
pub async fn confirm_read(_app: &AppState) -> Result<(), ApiError> {
    Ok(())
}

/// Confirms leadership for a linearizable read within the deadline.
#[cfg(not(feature = "bug-stale-reads"))]
pub async fn confirm_read(app: &AppState) -> Result<(), ApiError> {
    match tokio::time::timeout(REQUEST_DEADLINE, app.node.linearizable_read()).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::unavailable(
            "TIMEOUT",
            "leadership could not be confirmed in time; retry",
        )),
    }
}

fn unexpected(outcome: &Outcome) -> ApiError {
    ApiError::internal("interpreting a write's outcome", format!("{outcome:?}"))
}

async fn allocate(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    AppJson(body): AppJson<AllocateBody>,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(&headers, body.request_id.clone())?;
    let lease_ttl = match body.ttl_ms {
        Some(ms) => LeaseTtl::from_millis(ms).map_err(|e| ApiError::bad_request(e.to_string()))?,
        None => app.node.default_lease_ttl(),
    };
    let command = Command::Allocate(Allocate {
        node,
        license: body.license,
        mac: body.mac,
        cores: body.cores,
        lease_ttl,
    });
    let (result, log) = propose(&app, request_id.clone(), command).await?;
    match result? {
        Outcome::Allocated(grant) => {
            let status = if grant.replaced {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, axum::Json(GrantBody::new(grant, request_id, log))).into_response())
        }
        other => Err(unexpected(&other)),
    }
}

async fn heartbeat(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(&headers, optional_body(&body?)?)?;
    let (result, log) = propose(&app, request_id.clone(), Command::Heartbeat { node }).await?;
    match result? {
        Outcome::Renewed(grant) => {
            Ok(axum::Json(GrantBody::new(grant, request_id, log)).into_response())
        }
        other => Err(unexpected(&other)),
    }
}

async fn release(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(&headers, optional_body(&body?)?)?;
    release_node(&app, node, request_id).await
}

/// Releases a server's allocation (the license API's release and the admin force-release).
pub async fn release_node(
    app: &AppState,
    node: NodeName,
    request_id: RequestId,
) -> Result<Response, ApiError> {
    let (result, log) = propose(app, request_id.clone(), Command::Release { node }).await?;
    match result? {
        Outcome::Released { node, freed } => Ok(axum::Json(ReleaseBody {
            node,
            released: freed.is_some(),
            freed,
            request_id,
            log,
        })
        .into_response()),
        other => Err(unexpected(&other)),
    }
}

async fn check(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    AppQuery(query): AppQuery<CheckQuery>,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    confirm_read(&app).await?;
    let term = app.node.metrics().current_term;
    let check = app
        .node
        .read_state(|s| s.licenses.check(&node, query.mac, now()));
    Ok(axum::Json(CheckBody {
        check,
        leader_id: app.node.id(),
        term,
    })
    .into_response())
}

async fn list_licenses(State(app): State<AppState>) -> Result<Response, ApiError> {
    confirm_read(&app).await?;
    let body = app.node.read_state(|s| {
        let time = now().max(s.licenses.clock());
        LicensesBody {
            licenses: s.licenses.usage_all(time),
            cluster_time: s.licenses.clock(),
        }
    });
    Ok(axum::Json(body).into_response())
}

async fn get_license(
    State(app): State<AppState>,
    AppPath(id): AppPath<String>,
) -> Result<Response, ApiError> {
    let id = LicenseId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    confirm_read(&app).await?;
    match app.node.read_state(|s| s.licenses.usage(&id, now())) {
        Some(usage) => Ok(axum::Json(usage).into_response()),
        None => Err(licd_raft::Rejection::new(licd_raft::Code::LicenseNotFound).into()),
    }
}

/// The leader's view of the cluster's health (served by the leader: the route forwards).
async fn cluster_health(State(app): State<AppState>) -> Result<Response, ApiError> {
    let status = super::admin_api::local_status(&app);
    let leader_id = status
        .leader_id
        .ok_or_else(|| ApiError::unavailable("NO_LEADER", "no leader is known yet; retry"))?;
    let voters: Vec<u64> = status.voters();
    let down: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.role == "voter" && m.healthy == Some(false))
        .map(|m| m.id)
        .collect();
    Ok(axum::Json(ClusterHealthBody {
        leader_id,
        term: status.term,
        healthy_servers: voters.len() - down.len(),
        voters,
        down,
        warnings: status.warnings,
    })
    .into_response())
}
