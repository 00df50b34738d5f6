//! `/raft/append`, `/raft/vote`, `/raft/snapshot`: the receiving end of
//! [`crate::node::network`]. Bodies are bincode; the answer is the bincode of the local Raft's
//! `Result`, so the sender sees the remote error as the value it is. Every answer carries this
//! node's wall-clock time for the leader's calendar. A message from a node of another cluster
//! (its `x-licd-cluster-id`) is refused with 409 `CLUSTER_MISMATCH` before it reaches Raft.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use licd_raft::codec::{decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::api::{CLOCK_HEADER, CLUSTER_ID_HEADER};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
}

/// Refuses a message from a node of another cluster (`crate::node::identity` has the rules),
/// before its body is read.
async fn admit(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = match headers.get(CLUSTER_ID_HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::ClusterMismatch(format!("the {CLUSTER_ID_HEADER} header is not text"))
        })?),
    };
    Ok(app.node.admit_peer(presented).await?)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    decode(body).map_err(|e| ApiError::bad_request(format!("malformed raft message: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::HeaderName::from_static(CLOCK_HEADER),
                    crate::node::now().0.to_string(),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::internal("encoding a raft reply", e).into_response(),
    }
}

async fn append(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&app, &headers).await?;
    let request = parse(&body?)?;
    Ok(reply(&app.node.append_entries(request).await))
}

async fn vote(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&app, &headers).await?;
    let request = parse(&body?)?;
    Ok(reply(&app.node.vote(request).await))
}

async fn snapshot(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admit(&app, &headers).await?;
    let chunk: licd_raft::codec::SnapshotChunk = parse(&body?)?;
    Ok(reply(&app.node.raft().install_snapshot(chunk.into()).await))
}
