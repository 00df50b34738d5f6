//! Any node serves any request: a follower forwards `/v1` and `/admin` calls to the leader,
//! one hop at most, and every response names the leader in its headers.
//!
//! A forwarded request carries [`FORWARDED_HEADER`] and, beside it, the cluster secret
//! header; a node that receives both and does not lead answers 503 instead of forwarding
//! again, so two nodes with stale views of the leadership cannot bounce a request between
//! them. A marker without the cluster secret is an outsider's and is dropped.
//!
//! A follower sends the leader exactly the path it received. That holds because
//! [`normal_path`] refuses, on every node alike, a path that a URL parser would rewrite
//! (`.` and `..` segments, `%2e`, a backslash, ...): such a path would otherwise name one server on
//! the follower and another on the leader. The caller's `Authorization` header is forwarded
//! and the leader checks it again.

use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::api::{
    CLUSTER_SECRET_HEADER, FORWARDED_HEADER, LEADER_ADDR_HEADER, LEADER_ID_HEADER, NODE_ID_HEADER,
};

/// Largest request body forwarded, in bytes (the API's own limit).
pub const MAX_FORWARD_BODY: usize = super::MAX_API_BODY;

/// Middleware: serve the request here if this node leads, else forward it to the leader, else
/// answer 503 with a `Retry-After`.
pub async fn to_leader(State(app): State<AppState>, request: Request, next: Next) -> Response {
    lead_or_forward(&app, request, next).await
}

/// What [`to_leader`] does, for a middleware that does more before it.
pub async fn lead_or_forward(app: &AppState, mut request: Request, next: Next) -> Response {
    let forwarded = is_forwarded(app, request.headers());
    if !forwarded {
        request.headers_mut().remove(FORWARDED_HEADER);
    }
    if app.node.is_leader() {
        return next.run(request).await;
    }
    if forwarded {
        return ApiError::ForwardedToFollower.into_response();
    }
    match app.node.leader() {
        Some((id, addr)) if id != app.node.id() => forward(app, &addr, request).await,
        _ => ApiError::NoLeader.into_response(),
    }
}

/// Whether a request was forwarded by another node of the cluster: it carries the marker
/// and the cluster secret.
pub fn is_forwarded(app: &AppState, headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
        && headers
            .get(CLUSTER_SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| {
                super::access::secret_matches(s.trim(), &app.node.secrets().cluster_secret)
            })
}

/// 400 for a path that a URL parser would rewrite (dot segments, `%2e`, backslashes,
/// characters it escapes), on every node, before routing; else the rest of the stack.
pub async fn normal_path(request: Request, next: Next) -> Response {
    let raw = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path(), |p| p.as_str());
    if rewritten(raw) {
        return ApiError::bad_request(
            "the path has dot segments, backslashes or characters that must be escaped",
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether the URL parser of the forwarding client would send `raw` as another path.
fn rewritten(raw: &str) -> bool {
    match reqwest::Url::parse(&format!("http://node{raw}")) {
        Ok(url) => {
            let mut again = url.path().to_string();
            if let Some(q) = url.query() {
                again.push('?');
                again.push_str(q);
            }
            again != raw
        }
        Err(_) => true,
    }
}

/// Whether a body-read error is the length limit (413) rather than a broken body (400).
fn too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Sends the request to the leader at `addr` and relays its answer.
pub async fn forward(app: &AppState, addr: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORWARD_BODY).await {
        Ok(b) => b,
        Err(e) if too_large(&e) => {
            return ApiError::PayloadTooLarge(format!(
                "request body exceeds {MAX_FORWARD_BODY} bytes"
            ))
            .into_response();
        }
        Err(e) => {
            return ApiError::bad_request(format!("cannot read the request body: {e}"))
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
        if !is_hop_header(name) && name != FORWARDED_HEADER && name != CLUSTER_SECRET_HEADER {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing
        .header(FORWARDED_HEADER, app.node.id().to_string())
        .header(CLUSTER_SECRET_HEADER, &*app.node.secrets().cluster_secret);
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

/// Names this node and the leader it knows on a response (every response: the edge
/// middleware of `super::router` calls it).
pub fn leader_headers(app: &AppState, headers: &mut HeaderMap) {
    set_if_absent(headers, NODE_ID_HEADER, &app.node.id().to_string());
    if let Some((id, addr)) = app.node.leader() {
        set_if_absent(headers, LEADER_ID_HEADER, &id.to_string());
        set_if_absent(headers, LEADER_ADDR_HEADER, &addr);
    }
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
