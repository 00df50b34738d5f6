//! Access control: every request of a routed path is checked against the route table
//! ([`crate::auth::routes`]) before it is served or forwarded, so a refused request never
//! reaches the leader, let alone the Raft log.
//!
//! A route needs nothing (the probes), the cluster secret header (the Raft transport), or an
//! `Authorization: Bearer <token>` of a role that may use it: missing is 401, a token that is
//! not configured or whose role may not use the route is 403. An accepted caller is left in
//! the request's extensions as a [`Caller`], and a write it makes is counted against its
//! rate ([`super::limits::WriteLimiter`]).

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Caller, Need, routes};

/// Constant-time comparison of a presented secret with the expected one.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The bearer token of a request, if it sent one.
fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Middleware (a route layer, so the matched route is known): checks the caller against the
/// route's [`Need`], then its write rate.
pub async fn authorize(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    match admit(&app, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Middleware: [`authorize`], then [`super::forward::to_leader`], in one layer (the route
/// layer of `/v1`: each layer costs every request a clone of the services beneath it).
pub async fn authorize_to_leader(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match admit(&app, &mut request) {
        Ok(()) => super::forward::lead_or_forward(&app, request, next).await,
        Err(refused) => refused.into_response(),
    }
}

/// What [`authorize`] checks: the caller against the route's [`Need`], then its write rate.
/// An accepted caller is left in the request's extensions; a refused one gets its error.
fn admit(app: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let method = request.method().as_str().to_string();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let Some(need) = path.as_deref().and_then(|p| routes::need(&method, p)) else {
        // Closed until given a role: tests/access.rs fails for a route missing from the table.
        return Err(ApiError::NoRole);
    };
    let caller = check(app, request, need)?;
    if let Some(caller) = caller {
        if path
            .as_deref()
            .is_some_and(|p| routes::is_limited_write(&method, p))
            && let Err(wait) = app.writes.take(&caller.name)
        {
            return Err(ApiError::RateLimited(wait));
        }
        request.extensions_mut().insert(caller);
    }
    Ok(())
}

/// Who the caller is for a route that needs `need` (`None` for an open route or the Raft
/// transport), or why it is refused.
fn check(app: &AppState, request: &Request, need: Need) -> Result<Option<Caller>, ApiError> {
    match need {
        Need::Open => Ok(None),
        Need::ClusterSecret => {
            let presented = request
                .headers()
                .get(crate::api::CLUSTER_SECRET_HEADER)
                .and_then(|v| v.to_str().ok());
            match presented {
                None => Err(ApiError::Unauthorized(
                    "raft routes need the cluster secret header",
                )),
                Some(p) if !secret_matches(p.trim(), &app.node.secrets().cluster_secret) => {
                    Err(ApiError::Forbidden("cluster secret"))
                }
                Some(_) => Ok(None),
            }
        }
        Need::AnyRole | Need::Role(_) => {
            let tokens = app.node.tokens();
            let caller = match bearer(request) {
                Some(token) => tokens.verify(token).ok_or(ApiError::Forbidden("token"))?,
                None => match tokens.anonymous() {
                    Some(anonymous) if anonymous.role.may(need) => anonymous,
                    _ => {
                        return Err(ApiError::Unauthorized(
                            "this route needs an Authorization: Bearer <token> header \
                             (docs/api.md lists the role of each route)",
                        ));
                    }
                },
            };
            if !caller.role.may(need) {
                return Err(ApiError::WrongRole {
                    role: caller.role,
                    needs: need,
                });
            }
            Ok(Some(caller))
        }
    }
}
