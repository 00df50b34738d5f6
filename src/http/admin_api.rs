//! `/admin`: cluster membership, status, licenses and maintenance, behind the admin token.
//!
//! `/admin/init` and `/admin/status` are served by the node asked (a cluster that is not yet
//! initialized has no leader to forward to); every other admin route goes to the leader.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::extract::rejection::StringRejection;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use licd_raft::license_file::LicenseFile;
use licd_raft::types::{LicenseId, RequestId};
use licd_raft::{Code, Command, Outcome, RaftNodeId, Rejection};
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, ServerState};

use super::AppState;
use super::error::{ApiError, AppJson, AppPath};
use super::forward;
use super::license_api::{node_name, propose, release_node, request_id};
use crate::api::{
    AddLearnerBody, DroppedBody, FORWARDED_HEADER, InitBody, InstalledBody, MemberStatus,
    MembershipBody, RemovedBody, SnapshotBody, StatusBody, VotersBody,
};
use crate::node::now;

pub fn routes<L>(to_leader: L) -> Router<AppState>
where
    L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<Request>>::Future: Send + 'static,
{
    let led = Router::new()
        .route("/learners", post(add_learner))
        .route("/voters", put(set_voters))
        .route("/voters/{id}", post(promote))
        .route("/members/{id}", delete(remove_member))
        .route("/licenses", post(install_license))
        .route("/licenses/{id}", delete(remove_license))
        .route("/nodes/{node}/allocation", delete(force_release))
        .route("/snapshot", post(snapshot))
        .route_layer(to_leader);
    Router::new()
        .route("/init", post(init))
        .route("/status", get(status))
        .merge(led)
}

/// How long a membership change may take, a learner's catch-up included.
const MEMBERSHIP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Bounds a membership change in time; past the deadline the change may still complete.
async fn bounded<T>(change: impl Future<Output = T>) -> Result<T, ApiError> {
    tokio::time::timeout(MEMBERSHIP_DEADLINE, change)
        .await
        .map_err(|_| {
            ApiError::unavailable(
                "TIMEOUT",
                "the membership change did not complete within 60 s (a learner may still be \
                 catching up); see `licd cluster status`",
            )
        })
}

fn membership_body(app: &AppState) -> MembershipBody {
    let m = app.node.metrics();
    let membership = m.membership_config.membership();
    MembershipBody {
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        nodes: app.node.members(),
    }
}

async fn init(
    State(app): State<AppState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let init: InitBody = if body.iter().all(u8::is_ascii_whitespace) {
        InitBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?
    };
    let mut members: BTreeMap<RaftNodeId, BasicNode> = init
        .members
        .into_iter()
        .map(|(id, addr)| (id, BasicNode::new(addr)))
        .collect();
    if members.is_empty() {
        members.insert(app.node.id(), BasicNode::new(app.node.advertise_addr()));
    }
    if !members.contains_key(&app.node.id()) {
        return Err(ApiError::bad_request(format!(
            "the initial members must include this node ({})",
            app.node.id()
        )));
    }
    match app.node.raft().initialize(members).await {
        Ok(()) => {
            // The metrics show the new membership shortly after initialize returns.
            let mut watch = app.node.metrics_watch();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                watch.wait_for(|m| m.membership_config.membership().voter_ids().count() > 0),
            )
            .await;
            Ok((StatusCode::OK, axum::Json(membership_body(&app))).into_response())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ALREADY_INITIALIZED",
            format!("the cluster is already initialized: {e}"),
        )),
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(RaftError::Fatal(f)) => Err(ApiError::unavailable("UNAVAILABLE", f.to_string())),
    }
}

async fn add_learner(
    State(app): State<AppState>,
    AppJson(body): AppJson<AddLearnerBody>,
) -> Result<Response, ApiError> {
    if body.node_id == 0 || body.addr.trim().is_empty() {
        return Err(ApiError::bad_request(
            "node_id must be 1 or more and addr must be host:port",
        ));
    }
    // Blocking: answers once the learner has caught up with the leader's log.
    bounded(
        app.node
            .raft()
            .add_learner(body.node_id, BasicNode::new(body.addr), true),
    )
    .await??;
    Ok(axum::Json(membership_body(&app)).into_response())
}

async fn set_voters(
    State(app): State<AppState>,
    AppJson(body): AppJson<VotersBody>,
) -> Result<Response, ApiError> {
    let voters: BTreeSet<RaftNodeId> = body.voters.into_iter().collect();
    if voters.is_empty() {
        return Err(ApiError::bad_request("a cluster needs at least one voter"));
    }
    // Voters that leave stay as learners only if asked to; here they leave the cluster.
    bounded(app.node.raft().change_membership(voters, false)).await??;
    Ok(axum::Json(membership_body(&app)).into_response())
}

async fn promote(
    State(app): State<AppState>,
    AppPath(id): AppPath<RaftNodeId>,
) -> Result<Response, ApiError> {
    bounded(
        app.node
            .raft()
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
    )
    .await??;
    Ok(axum::Json(membership_body(&app)).into_response())
}

async fn remove_member(
    State(app): State<AppState>,
    AppPath(id): AppPath<RaftNodeId>,
) -> Result<Response, ApiError> {
    let body = membership_body(&app);
    let change = if body.voters.contains(&id) {
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else if body.learners.contains(&id) {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    } else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "MEMBER_NOT_FOUND",
            format!("node {id} is not a member"),
        ));
    };
    bounded(app.node.raft().change_membership(change, false)).await??;
    Ok(axum::Json(membership_body(&app)).into_response())
}

async fn status(State(app): State<AppState>, request: Request) -> Response {
    // The leader's view has the replication progress: prefer it when a leader is known.
    if !app.node.is_leader()
        && !request.headers().contains_key(FORWARDED_HEADER)
        && let Some((id, addr)) = app.node.leader()
        && id != app.node.id()
    {
        let answer = forward::forward(&app, &addr, request).await;
        if answer.status() != StatusCode::SERVICE_UNAVAILABLE {
            return answer;
        }
    }
    axum::Json(local_status(&app)).into_response()
}

/// This node's view of the cluster; with replication progress and warnings when it leads.
pub fn local_status(app: &AppState) -> StatusBody {
    let m = app.node.metrics();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
    let leading = m.state == ServerState::Leader;
    let limit = app.node.election_timeout_max();
    let mut members = Vec::new();
    for (id, node) in membership.nodes() {
        let (matched, lag, contact, healthy) = if leading {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned().flatten())
                .map(|l| l.index);
            let lag = m
                .last_log_index
                .map(|last| last.saturating_sub(matched.unwrap_or(0)));
            let contact = if *id == app.node.id() {
                m.millis_since_quorum_ack
            } else {
                app.node
                    .contacts()
                    .since(*id)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            };
            let healthy = *id == app.node.id()
                || contact.is_some_and(|ms| u128::from(ms) <= limit.as_millis());
            (matched, lag, contact, Some(healthy))
        } else {
            (None, None, None, None)
        };
        members.push(MemberStatus {
            id: *id,
            addr: node.addr.clone(),
            role: if voters.contains(id) {
                "voter"
            } else {
                "learner"
            }
            .into(),
            matched_index: matched,
            lag,
            last_contact_ms: contact,
            healthy,
        });
    }
    let mut warnings = Vec::new();
    if leading {
        let down: Vec<RaftNodeId> = members
            .iter()
            .filter(|s| voters.contains(&s.id) && s.healthy == Some(false))
            .map(|s| s.id)
            .collect();
        let up = voters.len() - down.len();
        let quorum = voters.len() / 2 + 1;
        if up < quorum + 1 {
            let names: Vec<String> = down.iter().map(ToString::to_string).collect();
            warnings.push(format!(
                "redundancy lost: {up} of {} license servers are up; one more failure stops licensing{}",
                voters.len(),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (down: {})", names.join(", "))
                }
            ));
        }
    } else if m.current_leader.is_none() {
        warnings.push("no leader is known: licensing is unavailable".into());
    }
    StatusBody {
        node_id: app.node.id(),
        state: format!("{:?}", m.state),
        leader_id: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        members,
        warnings,
    }
}

async fn install_license(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<Response, ApiError> {
    let text = body?;
    let license = LicenseFile::parse_and_verify(&text, app.node.trusted_keys()).map_err(|e| {
        let code = match e {
            licd_raft::license_file::LicenseFileError::UntrustedKey(_)
            | licd_raft::license_file::LicenseFileError::BadSignature => "LICENSE_NOT_TRUSTED",
            _ => "INVALID_LICENSE_FILE",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, e.to_string())
    })?;
    // Refuse an expired license before proposing it; the state machine checks again against
    // the cluster clock.
    if license.is_expired_at(now()) {
        return Err(Rejection::new(Code::LicenseExpired).into());
    }
    let request_id = request_id(&headers, None)?;
    let (result, log) = propose(&app, request_id, Command::InstallLicense(license)).await?;
    match result? {
        Outcome::LicenseInstalled {
            license,
            replaced,
            unchanged,
            dropped,
        } => {
            let status = if replaced || unchanged {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let body = InstalledBody {
                license,
                replaced,
                unchanged,
                dropped: dropped
                    .into_iter()
                    .map(|d| DroppedBody {
                        node: d.node,
                        code: d.code,
                    })
                    .collect(),
                log,
            };
            Ok((status, axum::Json(body)).into_response())
        }
        other => Err(ApiError::internal(
            "installing a license",
            format!("{other:?}"),
        )),
    }
}

async fn remove_license(
    State(app): State<AppState>,
    AppPath(id): AppPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let id = LicenseId::new(id).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let request_id: RequestId = request_id(&headers, None)?;
    let (result, log) = propose(&app, request_id, Command::RemoveLicense { license: id }).await?;
    match result? {
        Outcome::LicenseRemoved { license, released } => Ok(axum::Json(RemovedBody {
            license,
            released,
            log,
        })
        .into_response()),
        other => Err(ApiError::internal(
            "removing a license",
            format!("{other:?}"),
        )),
    }
}

async fn force_release(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(&headers, None)?;
    release_node(&app, node, request_id).await
}

async fn snapshot(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.node
        .raft()
        .trigger()
        .snapshot()
        .await
        .map_err(|f| ApiError::unavailable("UNAVAILABLE", f.to_string()))?;
    // Wait (briefly) for the snapshot to be built so the answer can name it.
    let target = app.node.metrics().last_applied.map(|l| l.index);
    let mut watch = app.node.metrics_watch();
    let built = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let snap = watch.borrow().snapshot.map(|l| l.index);
            if snap >= target {
                return snap;
            }
            if watch.changed().await.is_err() {
                return snap;
            }
        }
    })
    .await
    .unwrap_or_else(|_| app.node.metrics().snapshot.map(|l| l.index));
    Ok(axum::Json(SnapshotBody {
        snapshot_index: built,
    })
    .into_response())
}
