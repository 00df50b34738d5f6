//! One call of the API as data ([`Call`]), how one attempt of it ended ([`Tried`]), and the
//! decoding of an answer into the caller's type or a [`ClientError`].
//!
//! Every endpoint method of [`super::Client`] builds a `Call`; one loop sends them all.

use std::time::Duration;

use licd_raft::types::RequestId;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ClientError, RetryPolicy};
use crate::api::{ErrorBody, ErrorCode};
use crate::lease_token::LeaseToken;

/// The HTTP client of a `Client`: no proxy, a connect timeout within one attempt, the
/// outgoing connections bound to `local` when given, and `tls` for HTTPS (the system's roots
/// when `None`). Pooled connections are dropped after 5 s idle, before the server's own idle
/// limit (10 s by default) closes them under a request.
pub(super) fn http_client(
    policy: &RetryPolicy,
    local: Option<std::net::IpAddr>,
    tls: &crate::tls::Outgoing,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = tls
        .apply(reqwest::Client::builder())
        .connect_timeout(policy.attempt_timeout.min(Duration::from_secs(1)))
        .pool_idle_timeout(Duration::from_secs(5))
        .no_proxy();
    if let Some(ip) = local {
        builder = builder.local_address(ip);
    }
    builder
        .build()
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// How long one attempt of a call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// [`RetryPolicy::attempt_timeout`].
    Short,
    /// What is left of the deadline: a membership change, which waits for a learner to catch
    /// up, or a snapshot.
    Long,
}

/// What a call sends.
#[derive(Debug)]
pub(super) enum Body<'a> {
    None,
    Json(serde_json::Value),
    Text(&'a str),
}

/// One call of the API, described once and sent by `Client::send`.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) body: Body<'a>,
    pub(super) request_id: Option<&'a RequestId>,
    /// The lease token presented in its header, the same on every attempt.
    pub(super) lease_token: Option<&'a LeaseToken>,
    pub(super) attempt: Attempt,
}

impl<'a> Call<'a> {
    pub(super) fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            body: Body::None,
            request_id: None,
            lease_token: None,
            attempt: Attempt::Short,
        }
    }

    pub(super) fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// Sends `value` as the JSON body.
    pub(super) fn json<T: Serialize>(mut self, value: &T) -> Self {
        // The API types serialize to JSON infallibly (no maps with non-string keys).
        self.body = Body::Json(serde_json::to_value(value).unwrap_or(serde_json::Value::Null));
        self
    }

    /// Sends `text` as a plain-text body.
    pub(super) fn text(mut self, text: &'a str) -> Self {
        self.body = Body::Text(text);
        self
    }

    /// Presents `token` in the lease token header (none: no header).
    pub(super) fn token(mut self, token: Option<&'a LeaseToken>) -> Self {
        self.lease_token = token;
        self
    }

    /// Sends the request id in its header, the same on every attempt.
    pub(super) fn id(mut self, request_id: &'a RequestId) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Lets one attempt use what is left of the deadline.
    pub(super) fn long(mut self) -> Self {
        self.attempt = Attempt::Long;
        self
    }
}

/// How one attempt ended.
pub(super) enum Tried {
    /// A node answered something other than 503 or 429.
    Answered {
        status: StatusCode,
        bytes: Vec<u8>,
        leader_hint: Option<String>,
    },
    /// A node answered 503 (no leader, leadership moving, overloaded) or 429 (rate limited).
    Unavailable {
        message: String,
        leader_hint: Option<String>,
    },
    /// The node could not be reached, or did not answer in time.
    Unreachable(String),
    /// The TLS handshake failed (the message says why): not worth another node.
    Tls(String),
}

pub(super) fn decode<T: DeserializeOwned>(
    endpoint: &str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, ClientError> {
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol {
            endpoint: endpoint.to_string(),
            message: format!("cannot decode a {status} answer: {e}"),
        });
    }
    let body = serde_json::from_slice::<ErrorBody>(bytes).unwrap_or_else(|_| {
        ErrorBody::new(
            ErrorCode::Unrecognized,
            format!("HTTP {status}: {}", String::from_utf8_lossy(bytes)),
        )
    });
    Err(ClientError::Api { status, body })
}
