//! Reading what a request says: path segments as validated names, the request id, the
//! optional body of heartbeat and release calls. Every failure is a 400 [`ApiError`] that
//! says what is wrong, before anything reaches the node.

use axum::http::HeaderMap;
use licd_raft::types::{LicenseId, NodeName, RequestId};

use super::error::ApiError;
use crate::api::{IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER, RequestIdBody};
use crate::node::Proposed;

/// Parses a path segment as a server name.
pub fn node_name(raw: String) -> Result<NodeName, ApiError> {
    NodeName::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Parses a path segment as a license id.
pub fn license_id(raw: String) -> Result<LicenseId, ApiError> {
    LicenseId::new(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The exactly-once key of a write: `idempotency-key`, else (deprecated for this use)
/// `x-request-id`, else the body's `request_id`, else a fresh one (such a request cannot be
/// retried safely, so clients should send one).
pub fn request_id(headers: &HeaderMap, body: Option<RequestId>) -> Result<RequestId, ApiError> {
    for name in [IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER] {
        if let Some(value) = headers.get(name) {
            let text = value
                .to_str()
                .map_err(|_| ApiError::bad_request(format!("{name} is not valid text")))?;
            return RequestId::new(text).map_err(|e| ApiError::bad_request(format!("{name}: {e}")));
        }
    }
    Ok(body.unwrap_or_else(fresh_request_id))
}

/// Refuses a JSON body that is not an object: serde would read an array into a struct
/// field by field, so `["bench", ...]` must not pass where `{...}` is documented.
pub fn require_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => Err(ApiError::bad_request("the body must be a JSON object")),
    }
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
    require_object(bytes)?;
    let body: RequestIdBody = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")))?;
    Ok(body.request_id)
}

/// The error for an outcome that does not belong to the command proposed: a bug, never the
/// caller's fault.
pub fn unexpected(what: &'static str, proposed: &Proposed) -> ApiError {
    ApiError::internal(what, format!("{:?}", proposed.result))
}
