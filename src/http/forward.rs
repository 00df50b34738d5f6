//! Any node serves any request: a follower forwards `/v1` and `/admin` calls to the leader,
//! one hop at most, and every response names the leader in its headers.
//!
//! A forwarded request carries [`FORWARDED_HEADER`]; a node that receives one and does not
//! lead answers 503 instead of forwarding again, so two nodes with stale views of the
//! leadership cannot bounce a request between them.

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::api::{FORWARDED_HEADER, LEADER_ADDR_HEADER, LEADER_ID_HEADER, NODE_ID_HEADER};

/// Largest request body forwarded, in bytes (the API's own limit).
pub const MAX_FORWARD_BODY: usize = super::MAX_API_BODY;

/// Middleware: serve the request here if this node leads, else forward it to the leader, else
/// answer 503 with a `Retry-After`.
pub async fn to_leader(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if app.node.is_leader() {
        return next.run(request).await;
    }
    if request.headers().contains_key(FORWARDED_HEADER) {
        return ApiError::ForwardedToFollower.into_response();
    }
    match app.node.leader() {
        Some((id, addr)) if id != app.node.id() => forward(&app, &addr, request).await,
        _ => ApiError::NoLeader.into_response(),
    }
}

/// Sends the request to the leader at `addr` and relays its answer.
pub async fn forward(app: &AppState, addr: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORWARD_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::PayloadTooLarge(format!(
                "request body exceeds {MAX_FORWARD_BODY} bytes"
            ))
            .into_response();
        }
    };
    // Nested routers see their path with the prefix stripped; forward the original one.
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0);
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    let url = format!("{}{path}", app.node.outgoing().base_url(addr));
    let mut outgoing = app
        .forwarder
        .request(parts.method.clone(), &url)
        .body(bytes);
    for (name, value) in &parts.headers {
        if !is_hop_header(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing.header(FORWARDED_HEADER, app.node.id().to_string());
    match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status();
            let headers = answer.headers().clone();
            match answer.bytes().await {
                Ok(body) => {
                    let mut response = Response::new(Body::from(body));
                    *response.status_mut() = status;
                    for (name, value) in &headers {
                        if !is_hop_header(name) {
                            response.headers_mut().append(name, value.clone());
                        }
                    }
                    response
                }
                Err(e) => leader_unreachable(&e),
            }
        }
        Err(e) => leader_unreachable(&e),
    }
}

fn leader_unreachable(e: &reqwest::Error) -> Response {
    tracing::debug!(error = %e, "forwarding to the leader failed");
    ApiError::LeaderUnreachable.into_response()
}

fn is_hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "content-length"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-connection"
    )
}

/// Middleware: name this node and the leader it knows on every response.
pub async fn leader_headers(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    set_if_absent(headers, NODE_ID_HEADER, &app.node.id().to_string());
    if let Some((id, addr)) = app.node.leader() {
        set_if_absent(headers, LEADER_ID_HEADER, &id.to_string());
        set_if_absent(headers, LEADER_ADDR_HEADER, &addr);
    }
    response
}

/// A forwarded answer keeps the leader's own headers, which are the more current.
fn set_if_absent(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if headers.contains_key(name) {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}
