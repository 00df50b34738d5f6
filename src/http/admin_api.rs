//! `/admin`: cluster membership, status, licenses and maintenance, behind the admin token.
//!
//! `/admin/init`, `/admin/status` and `/admin/elect` are served by the node asked (a cluster
//! that is not yet initialized has no leader to forward to, and an election is the asked
//! node's); every other admin route goes to the leader.
//! Like the license API's, each handler reads its input, calls the node, and renders the
//! answer; the rules live in [`crate::node`].

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, StringRejection};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use licd_raft::{Outcome, RaftNodeId};

use super::AppState;
use super::error::{ApiError, AppJson, AppPath};
use super::forward;
use super::license_api::release_node;
use super::request::{license_id, node_name, request_id, unexpected};
use crate::api::{
    AddLearnerBody, DroppedBody, InitBody, InstalledBody, LogPosition, MembershipBody, RemovedBody,
    SnapshotBody, StatusBody, VotersBody,
};
use crate::node::membership::Membership;

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
        .route("/snapshot", post(snapshot).get(download_snapshot))
        .route_layer(to_leader);
    Router::new()
        .route("/init", post(init))
        .route("/status", get(status))
        .route("/elect", post(elect))
        .merge(led)
}

fn membership_body(m: Membership) -> axum::Json<MembershipBody> {
    axum::Json(MembershipBody {
        voters: m.voters,
        learners: m.learners,
        nodes: m.nodes,
    })
}

async fn init(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let init: InitBody = if body.iter().all(u8::is_ascii_whitespace) {
        InitBody::default()
    } else {
        super::request::require_object(&body)?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?
    };
    let membership = app.node.initialize(init.members).await?;
    Ok((StatusCode::OK, membership_body(membership)).into_response())
}

async fn add_learner(
    State(app): State<AppState>,
    AppJson(body): AppJson<AddLearnerBody>,
) -> Result<Response, ApiError> {
    // Blocking: answers once the learner has caught up with the leader's log.
    let membership = app.node.add_learner(body.node_id, body.addr).await?;
    Ok(membership_body(membership).into_response())
}

async fn set_voters(
    State(app): State<AppState>,
    AppJson(body): AppJson<VotersBody>,
) -> Result<Response, ApiError> {
    let voters: BTreeSet<RaftNodeId> = body.voters.into_iter().collect();
    let membership = app.node.set_voters(voters).await?;
    Ok(membership_body(membership).into_response())
}

async fn promote(
    State(app): State<AppState>,
    AppPath(id): AppPath<RaftNodeId>,
) -> Result<Response, ApiError> {
    Ok(membership_body(app.node.promote(id).await?).into_response())
}

async fn remove_member(
    State(app): State<AppState>,
    AppPath(id): AppPath<RaftNodeId>,
) -> Result<Response, ApiError> {
    Ok(membership_body(app.node.remove_member(id).await?).into_response())
}

async fn status(State(app): State<AppState>, request: Request) -> Response {
    // The leader's view has the replication progress: prefer it when a leader is known.
    if !app.node.is_leader()
        && !forward::is_forwarded(&app, request.headers())
        && let Some((id, addr)) = app.node.leader()
        && id != app.node.id()
    {
        let answer = forward::forward(&app, &addr, request).await;
        if answer.status() != StatusCode::SERVICE_UNAVAILABLE {
            return answer;
        }
    }
    axum::Json(StatusBody::from(&app.node.status())).into_response()
}

/// Makes the node asked campaign for leadership (to move the leader off a node about to be
/// maintained); answers with the status after the election.
async fn elect(State(app): State<AppState>) -> Result<Response, ApiError> {
    app.node.elect().await?;
    Ok(axum::Json(StatusBody::from(&app.node.status())).into_response())
}

async fn install_license(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<String, StringRejection>,
) -> Result<Response, ApiError> {
    let text = body?;
    let request_id = request_id(&headers, None)?;
    let proposed = app.node.install_license(&text, request_id).await?;
    let log = LogPosition::from(proposed.log_id);
    match &proposed.result {
        Ok(Outcome::LicenseInstalled {
            license,
            replaced,
            unchanged,
            dropped,
        }) => {
            let status = if *replaced || *unchanged {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let body = InstalledBody {
                license: license.clone(),
                replaced: *replaced,
                unchanged: *unchanged,
                dropped: dropped
                    .iter()
                    .map(|d| DroppedBody {
                        node: d.node.clone(),
                        code: d.code.into(),
                    })
                    .collect(),
                log,
            };
            Ok((status, axum::Json(body)).into_response())
        }
        Err(rejection) => Err(rejection.clone().into()),
        Ok(_) => Err(unexpected("installing a license", &proposed)),
    }
}

async fn remove_license(
    State(app): State<AppState>,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let license = license_id(id)?;
    let request_id = request_id(&headers, None)?;
    let command = licd_raft::Command::RemoveLicense { license };
    let proposed = app.node.propose(request_id, command).await?;
    let log = LogPosition::from(proposed.log_id);
    match &proposed.result {
        Ok(Outcome::LicenseRemoved { license, released }) => Ok(axum::Json(RemovedBody {
            license: license.clone(),
            released: released.clone(),
            log,
        })
        .into_response()),
        Err(rejection) => Err(rejection.clone().into()),
        Ok(_) => Err(unexpected("removing a license", &proposed)),
    }
}

async fn force_release(
    State(app): State<AppState>,
    AppPath(node): AppPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let node = node_name(node)?;
    let request_id = request_id(&headers, None)?;
    release_node(&app, node, request_id).await
}

async fn snapshot(State(app): State<AppState>) -> Result<Response, ApiError> {
    let snapshot_index = app.node.snapshot().await?;
    Ok(axum::Json(SnapshotBody { snapshot_index }).into_response())
}

/// The backup file of a consistent snapshot (`crate::backup`), built by the leader.
async fn download_snapshot(State(app): State<AppState>) -> Result<Response, ApiError> {
    let backup = app.node.backup().await?;
    let index = backup.last_log_id().map_or(0, |l| l.index);
    let bytes = backup
        .to_file()
        .map_err(|e| ApiError::internal("encoding the backup file", e))?;
    let disposition = format!("attachment; filename=\"licd-snapshot-{index}.licdsnap\"");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}
