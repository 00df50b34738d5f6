//! The HTTP face of a node: the license API (`/v1`), the admin API (`/admin`), the Raft
//! transport (`/raft`), the metrics, the probes (`/healthz`, `/readyz`), the API contract
//! (`/openapi.json`: the `openapi` module) and the dashboard
//! (`/ui`: the `ui` module).
//!
//! Every route has the role its caller needs ([`crate::auth::routes`], checked by
//! `access`), and the API has time, concurrency and write-rate limits ([`limits`]).
//!
//! [`router`] builds the whole service from a [`Node`], so tests can drive it without a
//! socket; [`run`] serves it on a bound listener until a shutdown future completes, then
//! drains in-flight requests; [`serve`] is the same with a node's limits and TLS
//! ([`ServerOptions`], the accept loop of [`serve`]'s module).

mod access;
mod admin_api;
pub mod error;
mod forward;
mod license_api;
pub mod limits;
mod openapi;
mod raft_api;
mod request;
mod serve;
mod ui;

pub use openapi::document as openapi_document;
pub use serve::{MAX_HEADERS, ServerLimits, ServerOptions, serve};

/// The API contract as docs/openapi.json holds it: pretty JSON and a final newline.
pub fn openapi_json() -> String {
    let mut text = serde_json::to_string_pretty(&openapi::document())
        .expect("an OpenAPI document encodes as JSON");
    text.push('\n');
    text
}

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::node::Node;
use error::ApiError;

/// Largest body accepted on `/v1` and `/admin`, in bytes: a license file fits with room.
pub const MAX_API_BODY: usize = 2 << 20;
/// Largest body accepted on `/raft`: a snapshot chunk or an append batch.
pub const MAX_RAFT_BODY: usize = 256 << 20;

/// How long a follower waits for the leader's answer to a forwarded request: past the
/// node's own deadline for writes and reads, and past a membership change's.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(65);

/// What every handler shares, behind one reference count: axum clones the state for every
/// middleware and handler a request passes through.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

/// The contents of [`AppState`].
pub struct Shared {
    /// The node.
    pub node: Node,
    /// The HTTP client used to forward requests to the leader.
    pub forwarder: reqwest::Client,
    /// The write rate of each caller.
    pub writes: limits::WriteLimiter,
    /// The requests of `/v1` and `/admin` this node may serve at once.
    pub in_flight: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Builds the node's whole HTTP service.
pub fn router(node: Node) -> Router {
    // A forwarded request gets the node's own deadline for the leader's answer, plus time
    // for the hop: a stuck leader cannot hold a follower's connections for ever.
    // Forwarded requests go to the leader with the scheme (and certificate) of the Raft
    // transport: a cluster is all-TLS or all-plain.
    let forwarder = node
        .outgoing()
        .apply(reqwest::Client::builder())
        .connect_timeout(Duration::from_millis(500))
        .timeout(FORWARD_TIMEOUT)
        .no_proxy()
        .build()
        .unwrap_or_default();
    let app = AppState(std::sync::Arc::new(Shared {
        writes: limits::WriteLimiter::new(node.limits()),
        in_flight: limits::in_flight_permits(node.limits()),
        node,
        forwarder,
    }));

    // Route layers run inside out: the caller is authorized (and its write rate counted)
    // before the request is forwarded, so a refused request never leaves this node.
    // Each layer costs every request a clone of the services beneath it, so `/v1`, the hot
    // path, has two: the in-flight limit with the deadline, and the caller's authorization
    // with the hop to the leader.
    let to_leader = middleware::from_fn_with_state(app.clone(), forward::to_leader);
    let authorize = middleware::from_fn_with_state(app.clone(), access::authorize);
    let v1 = license_api::routes()
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            access::authorize_to_leader,
        ))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            |s: State<AppState>, r: axum::extract::Request, n: middleware::Next| {
                limits::bounded(limits::V1_TIMEOUT, s, r, n)
            },
        ));
    let admin = admin_api::routes(to_leader)
        .route_layer(authorize.clone())
        .layer(middleware::from_fn_with_state(
            app.clone(),
            |s: State<AppState>, r: axum::extract::Request, n: middleware::Next| {
                limits::bounded(limits::ADMIN_TIMEOUT, s, r, n)
            },
        ));
    let raft = raft_api::routes()
        .route_layer(authorize.clone())
        .layer(DefaultBodyLimit::max(MAX_RAFT_BODY));
    // The dashboard's assets are open (the route table says so); its data comes from the API.
    let ui = ui::routes().route_layer(authorize.clone());
    let metrics = get(metrics)
        .route_layer(authorize)
        .layer(middleware::from_fn(|r, n| {
            limits::deadline(limits::METRICS_TIMEOUT, r, n)
        }));

    Router::new()
        .nest("/v1", v1.layer(DefaultBodyLimit::max(MAX_API_BODY)))
        .nest("/admin", admin.layer(DefaultBodyLimit::max(MAX_API_BODY)))
        .nest("/raft", raft)
        .route("/healthz", get(healthz))
        .route("/metrics", metrics)
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi::serve))
        .merge(ui)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), edge))
        .with_state(app)
}

/// Serves `router` on `listener` over plain HTTP with the default [`ServerLimits`] until
/// `shutdown` completes, then stops accepting and lets in-flight requests finish.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, router, ServerOptions::default(), shutdown).await
}

/// Middleware around every route, in one layer (each layer costs every request a clone of
/// the services beneath it): the refusal of a path a URL parser would rewrite
/// ([`forward::normal_path`]), this node's and the leader's headers on the answer
/// ([`forward::leader_headers`]), and the access log line.
async fn edge(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let logged = tracing::enabled!(target: "licd::access", tracing::Level::DEBUG)
        .then(|| AccessLine::of(&request));
    let mut response = forward::normal_path(request, next).await;
    forward::leader_headers(&app, response.headers_mut());
    if let Some(line) = logged {
        line.log(&response);
    }
    response
}

/// One line per request at debug level (target `licd::access`): method, path, status,
/// latency and request id (`idempotency-key`, else `x-request-id`).
struct AccessLine {
    started: std::time::Instant,
    method: axum::http::Method,
    path: String,
    request_id: Option<String>,
}

impl AccessLine {
    fn of(request: &axum::extract::Request) -> Self {
        let request_id = [
            crate::api::IDEMPOTENCY_KEY_HEADER,
            crate::api::REQUEST_ID_HEADER,
        ]
        .iter()
        .find_map(|name| request.headers().get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
        AccessLine {
            started: std::time::Instant::now(),
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            request_id,
        }
    }

    fn log(self, response: &axum::response::Response) {
        tracing::debug!(
            target: "licd::access",
            method = %self.method,
            path = self.path,
            status = response.status().as_u16(),
            latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            request_id = self.request_id.as_deref().unwrap_or("-"),
            "request"
        );
    }
}

async fn not_found() -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Prometheus metrics of this node (text exposition format), answered by the node asked.
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.node.meter().render(&app.node),
    )
}

async fn healthz() -> impl IntoResponse {
    axum::Json(crate::api::HealthBody {
        status: "ok".to_string(),
    })
}

/// Ready when a leader is known and this node is a voter, or a learner that has caught up.
async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let m = app.node.metrics();
    let membership = m.membership_config.membership();
    let id = app.node.id();
    let is_voter = membership.voter_ids().any(|v| v == id);
    let is_learner = membership.learner_ids().any(|l| l == id);
    let caught_up = m
        .last_applied
        .map(|l| l.index)
        .zip(m.last_log_index)
        .is_some_and(|(applied, last)| applied >= last);
    let ready = m.current_leader.is_some() && (is_voter || (is_learner && caught_up));
    let body = crate::api::ReadyBody {
        ready,
        leader_id: m.current_leader,
        voter: is_voter,
        learner: is_learner,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}
