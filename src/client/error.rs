//! How a [`super::Client`] retries ([`RetryPolicy`]) and why a call failed ([`ClientError`]).

use std::time::Duration;

use reqwest::StatusCode;

use crate::api::{ErrorBody, ErrorCode};

/// How a client retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Give up on a call after this long, counting every attempt.
    pub deadline: Duration,
    /// Give up on one attempt after this long and try the next endpoint.
    pub attempt_timeout: Duration,
    /// The first pause between attempts; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(2),
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error: bad input, a license rule, auth, not found...
    #[error("{} ({status}): {}", body.code, body.message)]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The error body, with its code and figures.
        body: ErrorBody,
    },
    /// No node gave an answer before the deadline. For a write the outcome is unknown; retry
    /// it with the same request id to learn it.
    #[error(
        "no licd node answered within {deadline:?} after {attempts} attempts; last error: {last_error}"
    )]
    Unavailable {
        /// The deadline that passed.
        deadline: Duration,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure seen.
        last_error: String,
    },
    /// The client was built without endpoints, or with an unusable one.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// A check answer did not carry a valid signature by a trusted answer key for the
    /// nonce sent: not the cluster's answer (an emulator, a replay, a node without the key).
    /// Trust nothing in it.
    #[error("the check answer is not the license cluster's: {0}")]
    BadSignature(crate::signing::SignatureError),
    /// A TLS handshake failed: the node's certificate is not signed by the configured CA or
    /// does not name the address dialled, or the node required a client certificate this
    /// client does not have. Not retried: every node of a cluster would answer the same.
    #[error("TLS with {endpoint} failed: {message}")]
    Tls {
        /// The node.
        endpoint: String,
        /// rustls's reason.
        message: String,
    },
    /// A node answered 2xx with a body this client does not understand.
    #[error("unexpected answer from {endpoint}: {message}")]
    Protocol {
        /// The node.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
}

impl ClientError {
    /// The error code, for an API error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }

    /// Whether this is an API error with the given code (state machine codes convert:
    /// `e.is(Code::NotAllocated.into())`, or pass an [`ErrorCode`]).
    pub fn is(&self, code: impl Into<ErrorCode>) -> bool {
        self.code() == Some(code.into())
    }
}
