//! [`ApiError`]: the one error type of every route, rendered as `{code, message, ...}` JSON,
//! and the extractors that turn malformed input into it instead of axum's plain-text
//! rejections.
//!
//! Internal failures are logged with their detail and answered with a generic message; input
//! errors are answered with what is wrong. Bad input is never a 500.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use licd_raft::command::Rejection;
use licd_raft::{Code, RaftNodeId};
use openraft::BasicNode;
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError,
};

use crate::api::ErrorBody;

/// How long a client should wait before retrying a 503, in milliseconds.
pub const RETRY_AFTER_MS: u64 = 500;

/// An error answer: a status and the JSON body.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, message),
        }
    }

    /// 400 with code `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 503: no leader can serve the request now; the client should retry.
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.body.retry_after_ms = Some(RETRY_AFTER_MS);
        e
    }

    /// 500 for a failure that is not the caller's: logged in full, answered in general terms.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("internal error while {context}; see the server log"),
        )
    }

    /// 503 when leadership moved while the request was in flight.
    fn not_leader(forward: &ForwardToLeader<RaftNodeId, BasicNode>) -> Self {
        let message = match (&forward.leader_id, &forward.leader_node) {
            (Some(id), Some(node)) => {
                format!("this node is not the leader; node {id} at {} is", node.addr)
            }
            _ => "this node is not the leader and no leader is known yet".to_string(),
        };
        Self::unavailable("NOT_LEADER", message)
    }

    fn fatal(e: &openraft::error::Fatal<RaftNodeId>) -> Self {
        tracing::error!(error = %e, "raft is not running");
        Self::unavailable("UNAVAILABLE", "this node's Raft is shutting down")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.body.retry_after_ms;
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(ms) = retry {
            let secs = ms.div_ceil(1000).max(1);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

/// The HTTP status of a state machine refusal.
pub fn rejection_status(code: Code) -> StatusCode {
    match code {
        Code::LicenseNotFound | Code::NoLicense | Code::NotAllocated => StatusCode::NOT_FOUND,
        Code::LicenseRequired | Code::InvalidLicense => StatusCode::BAD_REQUEST,
        Code::CpuLimitExhausted
        | Code::InvalidMultiServerLicense
        | Code::LicenseExpired
        | Code::LeaseExpired
        | Code::LicenseOutdated
        | Code::LicenseConflict
        | Code::RequestIdReused
        | Code::Valid => StatusCode::CONFLICT,
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError {
            status: rejection_status(r.code),
            body: ErrorBody::new(r.code.as_str(), r.message).with_figures(r.figures),
        }
    }
}

impl From<RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>> for ApiError {
    fn from(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Self::not_leader(&f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
                ChangeMembershipError::InProgress(p) => Self::new(
                    StatusCode::CONFLICT,
                    "MEMBERSHIP_CHANGE_IN_PROGRESS",
                    p.to_string(),
                ),
                ChangeMembershipError::EmptyMembership(m) => {
                    Self::bad_request(format!("{m}: a cluster needs at least one voter"))
                }
                ChangeMembershipError::LearnerNotFound(l) => Self::new(
                    StatusCode::NOT_FOUND,
                    "MEMBER_NOT_FOUND",
                    format!("{l}: add the node as a learner first"),
                ),
            },
            RaftError::Fatal(f) => Self::fatal(&f),
        }
    }
}

impl From<RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>> for ApiError {
    fn from(e: RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => Self::not_leader(&f),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => Self::unavailable(
                "NO_QUORUM",
                format!("the leader cannot reach a majority of the cluster: {q}"),
            ),
            RaftError::Fatal(f) => Self::fatal(&f),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::new(status, "PAYLOAD_TOO_LARGE", r.body_text());
        }
        let code = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            "UNSUPPORTED_MEDIA_TYPE"
        } else {
            "BAD_REQUEST"
        };
        // Axum answers a body that parses but does not fit the type with 422; to clients it
        // is bad input like any other, so it is a 400.
        let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
            StatusCode::BAD_REQUEST
        } else {
            status
        };
        Self::new(status, code, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "PAYLOAD_TOO_LARGE", r.body_text())
        } else {
            Self::bad_request(r.body_text())
        }
    }
}

impl From<axum::extract::rejection::StringRejection> for ApiError {
    fn from(r: axum::extract::rejection::StringRejection) -> Self {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Self::new(status, "PAYLOAD_TOO_LARGE", r.body_text())
        } else {
            Self::bad_request(r.body_text())
        }
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

/// Path extractor whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Query extractor whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);
