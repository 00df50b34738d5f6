//! `/raft/append`, `/raft/vote`, `/raft/snapshot`: the receiving end of
//! [`crate::node::network`]. Bodies are bincode; the answer is the bincode of the local Raft's
//! `Result`, so the sender sees the remote error as the value it is. Every answer carries this
//! node's wall-clock time for the leader's calendar.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use licd_raft::codec::{decode, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::api::CLOCK_HEADER;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/append", post(append))
        .route("/vote", post(vote))
        .route("/snapshot", post(snapshot))
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&body?)?;
    Ok(reply(&app.node.raft().append_entries(request).await))
}

async fn vote(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&body?)?;
    Ok(reply(&app.node.raft().vote(request).await))
}

async fn snapshot(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request = parse(&body?)?;
    Ok(reply(&app.node.raft().install_snapshot(request).await))
}
