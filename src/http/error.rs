//! [`ApiError`]: the one error type of every route, mapped to a status and a
//! `{code, message, ...}` JSON body in one place ([`IntoResponse`]), and the extractors that
//! turn malformed input into it instead of axum's plain-text rejections.
//!
//! Building an error logs nothing. Internal failures are logged once, when the answer is
//! rendered, under a fresh correlation id that the body carries, so an operator can find the
//! detail the caller was not shown. Input errors are answered with what is wrong. Bad input is
//! never a 500.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::{
    BytesRejection, JsonRejection, PathRejection, QueryRejection, StringRejection,
};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use licd_raft::command::Rejection;
use licd_raft::license_file::LicenseFileError;
use licd_raft::{Code, RaftNodeId};

use crate::api::{ErrorBody, ErrorCode};
use crate::node::{Deadline, NodeError};

/// How long a client should wait before retrying a 503, in milliseconds.
pub const RETRY_AFTER_MS: u64 = 500;

/// Every way a request can fail, as the HTTP layer answers it.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the input is unusable; the message says why.
    BadRequest(String),
    /// 413: the body is larger than the route accepts.
    PayloadTooLarge(String),
    /// 415: the body's content type is wrong.
    UnsupportedMediaType(String),
    /// 404: no such route.
    NoRoute,
    /// 405: the route exists, not with this method.
    MethodNotAllowed,
    /// 401: a credential is missing; the message says which.
    Unauthorized(&'static str),
    /// 403: a credential is wrong; names what was wrong.
    Forbidden(&'static str),
    /// 403: the token is valid, its role may not use this route.
    WrongRole {
        /// The caller's role.
        role: crate::auth::Role,
        /// What the route needs.
        needs: crate::auth::Need,
    },
    /// 403: the route has no entry in the route table, so it is closed.
    NoRole,
    /// 429: the caller's write rate is used up; retry after this long.
    RateLimited(std::time::Duration),
    /// 503: the node serves as many requests as it allows at once.
    Overloaded,
    /// 503: the whole request took longer than its route allows.
    RequestTimeout(std::time::Duration),
    /// A license rule refused the request (status by [`rejection_status`]).
    Refused(Rejection),
    /// 400: a license file that cannot be installed.
    LicenseFile(LicenseFileError),
    /// 409: the node already belongs to a cluster.
    AlreadyInitialized(String),
    /// 404: the member named is not in the cluster.
    MemberNotFound(String),
    /// 409: another membership change has not completed.
    MembershipChangeInProgress(String),
    /// 409: a Raft message from a node of another cluster.
    ClusterMismatch(String),
    /// 503: this node does not lead; the leader it knows, if any.
    NotLeader(Option<(RaftNodeId, String)>),
    /// 503: a forwarded request reached a node that does not lead.
    ForwardedToFollower,
    /// 503: no leader is known.
    NoLeader,
    /// 503: the leader cannot reach a majority.
    NoQuorum(String),
    /// 503: the leader could not be reached from this node.
    LeaderUnreachable,
    /// 503: the request did not complete within the server's deadline.
    Timeout(Deadline),
    /// 503: this node's Raft is stopping.
    Stopped,
    /// 500: a failure that is not the caller's; logged with its detail when answered.
    Internal {
        /// What the server was doing.
        context: &'static str,
        /// What went wrong (logged, not shown).
        detail: String,
    },
}

impl ApiError {
    /// 400 for input that is not what the route documents.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    /// 500 for a failure that is not the caller's.
    pub fn internal(context: &'static str, detail: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            context,
            detail: detail.to_string(),
        }
    }

    /// The outcome label of the error in the metrics: `refused` (a license rule),
    /// `bad_request` (input, credentials, routes), `unavailable` (503) or `error` (500).
    pub fn outcome(&self) -> &'static str {
        match self {
            ApiError::Refused(_) | ApiError::LicenseFile(_) => "refused",
            ApiError::NotLeader(_)
            | ApiError::ForwardedToFollower
            | ApiError::NoLeader
            | ApiError::NoQuorum(_)
            | ApiError::LeaderUnreachable
            | ApiError::Timeout(_)
            | ApiError::Overloaded
            | ApiError::RequestTimeout(_)
            | ApiError::Stopped => "unavailable",
            ApiError::Internal { .. } => "error",
            _ => "bad_request",
        }
    }

    /// The status and the body of the answer.
    fn parts(&self) -> (StatusCode, ErrorBody) {
        use ErrorCode as C;
        let unavailable = |code: ErrorCode, message: String| {
            let mut body = ErrorBody::new(code, message);
            body.retry_after_ms = Some(RETRY_AFTER_MS);
            (StatusCode::SERVICE_UNAVAILABLE, body)
        };
        let plain = |status: StatusCode, code: ErrorCode, message: &str| {
            (status, ErrorBody::new(code, message))
        };
        match self {
            ApiError::BadRequest(m) => plain(StatusCode::BAD_REQUEST, C::BadRequest, m),
            ApiError::PayloadTooLarge(m) => {
                plain(StatusCode::PAYLOAD_TOO_LARGE, C::PayloadTooLarge, m)
            }
            ApiError::UnsupportedMediaType(m) => plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                C::UnsupportedMediaType,
                m,
            ),
            ApiError::NoRoute => plain(StatusCode::NOT_FOUND, C::NotFound, "no such route"),
            ApiError::MethodNotAllowed => plain(
                StatusCode::METHOD_NOT_ALLOWED,
                C::MethodNotAllowed,
                "this route does not take this method (docs/api.md lists each route's)",
            ),
            ApiError::Unauthorized(m) => plain(StatusCode::UNAUTHORIZED, C::Unauthorized, m),
            ApiError::Forbidden(what) => plain(
                StatusCode::FORBIDDEN,
                C::Forbidden,
                &format!("the {what} is wrong"),
            ),
            ApiError::WrongRole { role, needs } => plain(
                StatusCode::FORBIDDEN,
                C::Forbidden,
                &format!("a {role} token may not use this route (it needs: {needs})"),
            ),
            ApiError::NoRole => plain(
                StatusCode::FORBIDDEN,
                C::Forbidden,
                "this route has no role in the route table, so it is closed",
            ),
            ApiError::RateLimited(wait) => {
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                let mut body = ErrorBody::new(
                    C::RateLimited,
                    format!("this token's write rate is used up; retry in {ms} ms"),
                );
                body.retry_after_ms = Some(ms);
                (StatusCode::TOO_MANY_REQUESTS, body)
            }
            ApiError::Overloaded => unavailable(
                C::Overloaded,
                "this node serves as many requests as it allows at once; retry shortly".into(),
            ),
            ApiError::RequestTimeout(limit) => unavailable(
                C::Timeout,
                format!(
                    "the request did not complete within {} s; a write's outcome is unknown: \
                     retry with the same idempotency key",
                    limit.as_secs()
                ),
            ),
            ApiError::Refused(r) => (
                rejection_status(r.code),
                ErrorBody::new(r.code.into(), r.message.clone()).with_figures(r.figures),
            ),
            ApiError::LicenseFile(e) => {
                let code = match e {
                    LicenseFileError::UntrustedKey(_) | LicenseFileError::BadSignature => {
                        C::LicenseNotTrusted
                    }
                    _ => C::InvalidLicenseFile,
                };
                plain(StatusCode::BAD_REQUEST, code, &e.to_string())
            }
            ApiError::AlreadyInitialized(m) => plain(
                StatusCode::CONFLICT,
                C::AlreadyInitialized,
                &format!("the cluster is already initialized: {m}"),
            ),
            ApiError::MemberNotFound(m) => plain(StatusCode::NOT_FOUND, C::MemberNotFound, m),
            ApiError::MembershipChangeInProgress(m) => {
                plain(StatusCode::CONFLICT, C::MembershipChangeInProgress, m)
            }
            ApiError::ClusterMismatch(m) => plain(StatusCode::CONFLICT, C::ClusterMismatch, m),
            ApiError::NotLeader(Some((id, addr))) => unavailable(
                C::NotLeader,
                format!("this node is not the leader; node {id} at {addr} is"),
            ),
            ApiError::NotLeader(None) => unavailable(
                C::NotLeader,
                "this node is not the leader and no leader is known yet".into(),
            ),
            ApiError::ForwardedToFollower => unavailable(
                C::NotLeader,
                "this node received a forwarded request but does not lead; retry".into(),
            ),
            ApiError::NoLeader => {
                unavailable(C::NoLeader, "no leader is known yet; retry shortly".into())
            }
            ApiError::NoQuorum(q) => unavailable(
                C::NoQuorum,
                format!("the leader cannot reach a majority of the cluster: {q}"),
            ),
            ApiError::LeaderUnreachable => unavailable(
                C::LeaderUnreachable,
                "the leader could not be reached from this node; retry".into(),
            ),
            ApiError::Timeout(what) => unavailable(
                C::Timeout,
                match what {
                    Deadline::Write => {
                        "the write was not committed in time; its outcome is \
                                        unknown: retry with the same request id"
                    }
                    Deadline::Read => "leadership could not be confirmed in time; retry",
                    Deadline::Membership => {
                        "the membership change did not complete within 60 s (a learner may \
                         still be catching up); see `licd cluster status`"
                    }
                    Deadline::Snapshot => {
                        "the snapshot was not built in time; retry (see the leader's log)"
                    }
                }
                .into(),
            ),
            ApiError::Stopped => {
                unavailable(C::Unavailable, "this node's Raft is shutting down".into())
            }
            ApiError::Internal { context, .. } => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                C::Internal,
                &format!("internal error while {context}; see the server log"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, mut body) = self.parts();
        if let ApiError::Internal { context, detail } = &self {
            let id = format!("{:016x}", rand::random::<u64>());
            tracing::error!(correlation_id = %id, context, error = %detail, "internal error");
            body.correlation_id = Some(id);
        }
        let retry = body.retry_after_ms;
        let mut response = (status, Json(body)).into_response();
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
        | Code::NodeInUse
        | Code::MacInUse
        | Code::Valid => StatusCode::CONFLICT,
        Code::LeaseTokenRequired => StatusCode::UNAUTHORIZED,
        Code::LeaseTokenMismatch => StatusCode::FORBIDDEN,
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::Refused(r)
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::NotLeader { leader } => ApiError::NotLeader(leader),
            NodeError::NoQuorum(q) => ApiError::NoQuorum(q),
            NodeError::Timeout(what) => ApiError::Timeout(what),
            NodeError::Stopped(_) => ApiError::Stopped,
            NodeError::Refused(r) => ApiError::Refused(r),
            NodeError::LicenseFile(f) => ApiError::LicenseFile(f),
            NodeError::Invalid(m) => ApiError::BadRequest(m),
            NodeError::AlreadyInitialized(m) => ApiError::AlreadyInitialized(m),
            NodeError::MemberNotFound(m) => ApiError::MemberNotFound(m),
            NodeError::MembershipChangeInProgress(m) => ApiError::MembershipChangeInProgress(m),
            NodeError::ClusterMismatch(m) => ApiError::ClusterMismatch(m),
            NodeError::Storage(m) => ApiError::internal("using the node's storage", m),
        }
    }
}

/// The error for a body that could not be read: too large, or broken off.
fn body_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(text)
    } else {
        ApiError::BadRequest(text)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // Axum answers a body that parses but does not fit the type with 422; to clients it
        // is bad input like any other, so it is a 400.
        match r.status() {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(r.body_text()),
            status => body_error(status, r.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

impl From<StringRejection> for ApiError {
    fn from(r: StringRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s; the body must be a JSON object
/// (serde alone would read an array into a struct).
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_type::Essence>().ok())
            .is_some_and(|m| m.is_json());
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "Expected request with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state).await?;
        super::request::require_object(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(AppJson(value)),
            // JSON has one number type: `4.0` is the integer 4 (as JSON Schema says). Serde
            // refuses it for an integer field, so read the body again with such numbers
            // written as integers; the first error stands when that does not help.
            Err(e) => match integral_numbers_as_integers(&bytes) {
                Some(value) => serde_json::from_value(value)
                    .map(AppJson)
                    .map_err(|_| e.into()),
                None => Err(e.into()),
            },
        }
    }
}

/// The body as a JSON value with every number that has a fraction of zero (`4.0`, `1e3`)
/// turned into an integer; `None` when it is not JSON or has no such number.
fn integral_numbers_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // 2^53: beyond it a float no longer holds every integer exactly.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *value = serde_json::Value::from(f as i64);
                    true
                } else {
                    false
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| walk(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| walk(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

/// The essence of a `Content-Type` (`type/subtype`, parameters dropped), enough to tell JSON.
mod mime_type {
    /// `type/subtype`, lower case.
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Essence(essence))
            } else {
                Err(())
            }
        }
    }

    impl Essence {
        /// `application/json` or `application/<anything>+json`, as axum's `Json` accepts.
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

/// Path extractor whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Query extractor whose rejections are [`ApiError`]s.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn integral_numbers_are_read_as_the_integers_they_are() {
        let value =
            integral_numbers_as_integers(br#"{"cores": 4.0, "x": [1e3, 2.5], "y": {"z": -3.0}}"#)
                .expect("it has integral floats");
        assert_eq!(
            value,
            serde_json::json!({"cores": 4, "x": [1000, 2.5], "y": {"z": -3}})
        );
        assert_eq!(integral_numbers_as_integers(br#"{"cores": 4}"#), None);
        assert_eq!(integral_numbers_as_integers(br#"{"cores": 4.5}"#), None);
        assert_eq!(integral_numbers_as_integers(b"not json"), None);
        // Past 2^53 a float is not an exact integer: left as it is.
        assert_eq!(integral_numbers_as_integers(br#"{"n": 1e300}"#), None);
    }

    /// The detail of an internal failure stays in the log; the body names what the server
    /// was doing and the id to find the detail under.
    #[tokio::test]
    async fn an_internal_error_hides_its_detail_and_carries_a_correlation_id() {
        let (status, body) = body_of(ApiError::internal("allocating", "secret detail")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["code"], "INTERNAL");
        assert_eq!(
            body["message"],
            "internal error while allocating; see the server log"
        );
        assert!(!body.to_string().contains("secret detail"));
        let id = body["correlation_id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
    }

    #[tokio::test]
    async fn unavailable_answers_carry_a_retry_hint_and_others_do_not() {
        let response = ApiError::NoLeader.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let (_, body) = body_of(ApiError::Timeout(Deadline::Write)).await;
        assert_eq!(body["code"], "TIMEOUT");
        assert_eq!(body["retry_after_ms"], RETRY_AFTER_MS);
        let (status, body) = body_of(ApiError::bad_request("no")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.get("retry_after_ms").is_none());
        assert!(body.get("correlation_id").is_none());
    }

    #[tokio::test]
    async fn a_rejection_keeps_its_code_message_and_figures() {
        let mut r = Rejection::new(Code::CpuLimitExhausted);
        r.figures = Some(licd_raft::command::CoreFigures {
            requested: 8,
            available: 4,
            licensed: 16,
        });
        let (status, body) = body_of(r.into()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["code"], "CPU_LIMIT_EXHAUSTED");
        assert_eq!(
            body["message"],
            "CPU limit exhausted. Can't allocate more CPUs."
        );
        assert_eq!(body["requested"], 8);
        assert_eq!(body["available"], 4);
        assert_eq!(body["licensed"], 16);
    }
}
