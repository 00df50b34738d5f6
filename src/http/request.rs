//! Reading what a request says: path segments as validated names, the request id, the
//! optional body of heartbeat and release calls. Every failure is a 400 [`ApiError`] that
//! says what is wrong, before anything reaches the node.

use axum::http::HeaderMap;
use licd_raft::types::{LicenseId, NodeName, RequestId};

use super::error::ApiError;
use crate::api::{REQUEST_ID_HEADER, RequestIdBody};
use crate::node::Proposed;

/// Parses a path segment as a server name.
pub fn node_name(raw: String) -> Result<NodeName, ApiError> {
    NodeName::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Parses a path segment as a license id.
pub fn license_id(raw: String) -> Result<LicenseId, ApiError> {
    LicenseId::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
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
fn fresh_request_id() -> RequestId {
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

/// The error for an outcome that does not belong to the command proposed: a bug, never the
/// caller's fault.
pub fn unexpected(what: &'static str, proposed: &Proposed) -> ApiError {
    ApiError::internal(what, format!("{:?}", proposed.result))
}
