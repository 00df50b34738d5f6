//! The error half of the wire: [`ErrorCode`], every code an answer of licd can carry, and
//! [`ErrorBody`], the one JSON shape of every error answer.
//!
//! Codes are serialized as the SCREAMING_SNAKE_CASE strings clients have always seen
//! (`CPU_LIMIT_EXHAUSTED`, `NOT_LEADER`, ...). The state machine's own [`Code`]s map onto
//! them one to one through an explicit conversion, so a change to the Raft log's enum cannot
//! silently rename a code on the wire. A code this build does not know (an answer from a
//! newer node) decodes as [`ErrorCode::Unrecognized`] instead of failing the whole answer.

use licd_raft::Code;
use licd_raft::command::CoreFigures;
use serde::{Deserialize, Serialize};

/// Every machine-readable code of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // The state machine's codes (see [`Code`]).
    /// The server is licensed (a check's answer, never an error).
    Valid,
    /// The server holds no allocation.
    NotAllocated,
    /// The server's lease ended without a heartbeat.
    LeaseExpired,
    /// The license has expired.
    LicenseExpired,
    /// No license is installed.
    NoLicense,
    /// The server's MAC address is not in the license.
    InvalidMultiServerLicense,
    /// The allocation would exceed the license's cores.
    CpuLimitExhausted,
    /// No license has the given id.
    LicenseNotFound,
    /// Several licenses are installed and the request named none.
    LicenseRequired,
    /// An issue of the license that is not older is already installed.
    LicenseOutdated,
    /// A different license with the same id and version is already installed.
    LicenseConflict,
    /// The license's content is inconsistent.
    InvalidLicense,
    /// The request id was already used for a different command.
    RequestIdReused,
    /// The server name holds a live allocation and the request did not present its lease
    /// token.
    NodeInUse,
    /// Another server name holds a live allocation with the same MAC address.
    MacInUse,
    /// A heartbeat or release of an allocation with a lease token presented none.
    LeaseTokenRequired,
    /// The lease token presented is not the allocation's.
    LeaseTokenMismatch,

    // Input and access.
    /// The request is malformed: path, query, headers or body.
    BadRequest,
    /// The body is larger than the route accepts.
    PayloadTooLarge,
    /// The body's content type is not the one the route reads.
    UnsupportedMediaType,
    /// No such route.
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// A credential is missing.
    Unauthorized,
    /// A credential is wrong, or its role may not use the route.
    Forbidden,
    /// The caller made more writes than its rate allows; retry after the `Retry-After`.
    RateLimited,
    /// The node serves as many requests as it allows at once; retry shortly.
    Overloaded,
    /// A license file's signature is bad or its key is not trusted.
    LicenseNotTrusted,
    /// A license file cannot be read.
    InvalidLicenseFile,

    // Cluster administration.
    /// `init` on a node that already belongs to a cluster.
    AlreadyInitialized,
    /// The member named is not in the cluster (or not yet a learner).
    MemberNotFound,
    /// Another membership change has not completed yet.
    MembershipChangeInProgress,
    /// A Raft message from a node of another cluster (another cluster id).
    ClusterMismatch,

    // Availability: 503 answers, which the client library retries.
    /// The node asked does not lead (it names the leader when it knows one).
    NotLeader,
    /// No leader is known yet.
    NoLeader,
    /// The leader cannot reach a majority.
    NoQuorum,
    /// The leader could not be reached from the node asked.
    LeaderUnreachable,
    /// The request did not complete within the server's deadline.
    Timeout,
    /// The node's Raft is shutting down.
    Unavailable,
    /// A failure that is not the caller's (the body has a correlation id to find it in the
    /// server log).
    Internal,

    // The command line's own codes for failures no server reported (`--json` output).
    /// The client was configured wrongly (no endpoints, a bad endpoint).
    ClientConfig,
    /// A server answered something the client does not understand.
    Protocol,
    /// A check answer's signature is missing or wrong: not the cluster's answer.
    BadSignature,
    /// A TLS handshake failed: a certificate the configured CA did not sign, a name that
    /// does not match, or a client certificate the server required and was not given.
    Tls,
    /// Any other failure of a command.
    Error,

    /// A code this build does not know.
    #[serde(other)]
    Unrecognized,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Valid => "VALID",
            ErrorCode::NotAllocated => "NOT_ALLOCATED",
            ErrorCode::LeaseExpired => "LEASE_EXPIRED",
            ErrorCode::LicenseExpired => "LICENSE_EXPIRED",
            ErrorCode::NoLicense => "NO_LICENSE",
            ErrorCode::InvalidMultiServerLicense => "INVALID_MULTI_SERVER_LICENSE",
            ErrorCode::CpuLimitExhausted => "CPU_LIMIT_EXHAUSTED",
            ErrorCode::LicenseNotFound => "LICENSE_NOT_FOUND",
            ErrorCode::LicenseRequired => "LICENSE_REQUIRED",
            ErrorCode::LicenseOutdated => "LICENSE_OUTDATED",
            ErrorCode::LicenseConflict => "LICENSE_CONFLICT",
            ErrorCode::InvalidLicense => "INVALID_LICENSE",
            ErrorCode::RequestIdReused => "REQUEST_ID_REUSED",
            ErrorCode::NodeInUse => "NODE_IN_USE",
            ErrorCode::MacInUse => "MAC_IN_USE",
            ErrorCode::LeaseTokenRequired => "LEASE_TOKEN_REQUIRED",
            ErrorCode::LeaseTokenMismatch => "LEASE_TOKEN_MISMATCH",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Overloaded => "OVERLOADED",
            ErrorCode::LicenseNotTrusted => "LICENSE_NOT_TRUSTED",
            ErrorCode::InvalidLicenseFile => "INVALID_LICENSE_FILE",
            ErrorCode::AlreadyInitialized => "ALREADY_INITIALIZED",
            ErrorCode::MemberNotFound => "MEMBER_NOT_FOUND",
            ErrorCode::MembershipChangeInProgress => "MEMBERSHIP_CHANGE_IN_PROGRESS",
            ErrorCode::ClusterMismatch => "CLUSTER_MISMATCH",
            ErrorCode::NotLeader => "NOT_LEADER",
            ErrorCode::NoLeader => "NO_LEADER",
            ErrorCode::NoQuorum => "NO_QUORUM",
            ErrorCode::LeaderUnreachable => "LEADER_UNREACHABLE",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::ClientConfig => "CLIENT_CONFIG",
            ErrorCode::Protocol => "PROTOCOL",
            ErrorCode::BadSignature => "BAD_SIGNATURE",
            ErrorCode::Tls => "TLS",
            ErrorCode::Error => "ERROR",
            ErrorCode::Unrecognized => "UNRECOGNIZED",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Code> for ErrorCode {
    fn from(code: Code) -> Self {
        match code {
            Code::Valid => ErrorCode::Valid,
            Code::NotAllocated => ErrorCode::NotAllocated,
            Code::LeaseExpired => ErrorCode::LeaseExpired,
            Code::LicenseExpired => ErrorCode::LicenseExpired,
            Code::NoLicense => ErrorCode::NoLicense,
            Code::InvalidMultiServerLicense => ErrorCode::InvalidMultiServerLicense,
            Code::CpuLimitExhausted => ErrorCode::CpuLimitExhausted,
            Code::LicenseNotFound => ErrorCode::LicenseNotFound,
            Code::LicenseRequired => ErrorCode::LicenseRequired,
            Code::LicenseOutdated => ErrorCode::LicenseOutdated,
            Code::LicenseConflict => ErrorCode::LicenseConflict,
            Code::InvalidLicense => ErrorCode::InvalidLicense,
            Code::RequestIdReused => ErrorCode::RequestIdReused,
            Code::NodeInUse => ErrorCode::NodeInUse,
            Code::MacInUse => ErrorCode::MacInUse,
            Code::LeaseTokenRequired => ErrorCode::LeaseTokenRequired,
            Code::LeaseTokenMismatch => ErrorCode::LeaseTokenMismatch,
        }
    }
}

/// The one error shape of every route: `{"code", "message", ...figures}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, such as `CPU_LIMIT_EXHAUSTED` or `BAD_REQUEST`.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// Cores the refused allocation would count (`CPU_LIMIT_EXHAUSTED` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<u32>,
    /// Cores still free for the server (`CPU_LIMIT_EXHAUSTED` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    /// The license's `max_cores` (`CPU_LIMIT_EXHAUSTED` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensed: Option<u32>,
    /// Suggested wait before a retry, in milliseconds (503 and 429 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The id under which the server logged an internal failure (`INTERNAL` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl ErrorBody {
    /// An error body with a code and a message and no figures.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            requested: None,
            available: None,
            licensed: None,
            retry_after_ms: None,
            correlation_id: None,
        }
    }

    /// Adds the core figures of a refused allocation.
    pub fn with_figures(mut self, figures: Option<CoreFigures>) -> Self {
        if let Some(f) = figures {
            self.requested = Some(f.requested);
            self.available = Some(f.available);
            self.licensed = Some(f.licensed);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state machine code keeps its wire spelling.
    #[test]
    fn state_machine_codes_keep_their_wire_names() {
        let all = [
            Code::Valid,
            Code::NotAllocated,
            Code::LeaseExpired,
            Code::LicenseExpired,
            Code::NoLicense,
            Code::InvalidMultiServerLicense,
            Code::CpuLimitExhausted,
            Code::LicenseNotFound,
            Code::LicenseRequired,
            Code::LicenseOutdated,
            Code::LicenseConflict,
            Code::InvalidLicense,
            Code::RequestIdReused,
            Code::NodeInUse,
            Code::MacInUse,
            Code::LeaseTokenRequired,
            Code::LeaseTokenMismatch,
        ];
        for code in all {
            let wire = ErrorCode::from(code);
            assert_eq!(wire.as_str(), code.as_str());
            assert_eq!(
                serde_json::to_string(&wire).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }

    /// `as_str` and serde agree for every code, and an unknown code still decodes.
    #[test]
    fn codes_round_trip_and_unknown_ones_decode() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::MembershipChangeInProgress,
            ErrorCode::ClusterMismatch,
            ErrorCode::LeaderUnreachable,
            ErrorCode::RateLimited,
            ErrorCode::Overloaded,
            ErrorCode::InvalidLicenseFile,
            ErrorCode::Internal,
            ErrorCode::ClientConfig,
            ErrorCode::BadSignature,
            ErrorCode::Tls,
            ErrorCode::Error,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let later: ErrorCode = serde_json::from_str("\"SOME_LATER_CODE\"").unwrap();
        assert_eq!(later, ErrorCode::Unrecognized);
    }
}
