//! The agent's local status endpoint: `GET /status` answers [`super::AgentStatus`] as JSON, with
//! 200 when licensed and 503 when not, so that a plain HTTP health check can gate the
//! application. It listens on loopback by default: it is for the local application only.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::StatusHandle;

/// The status service.
pub fn router(status: StatusHandle) -> Router {
    Router::new()
        .route("/status", get(get_status))
        .with_state(status)
}

async fn get_status(State(status): State<StatusHandle>) -> impl IntoResponse {
    let status = status.read().unwrap_or_else(|p| p.into_inner()).current();
    let code = if status.licensed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(status))
}

/// Serves the status on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    status: StatusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(status))
        .with_graceful_shutdown(shutdown)
        .await
}
