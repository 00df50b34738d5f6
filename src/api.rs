//! The JSON shapes of licd's HTTP API, shared by the server and the client library so that
//! the two cannot drift apart. docs/api.md describes every endpoint that uses them.

use std::collections::BTreeMap;

use licd_raft::command::{Allocation, CoreFigures, Grant};
use licd_raft::query::{CheckResult, Usage};
use licd_raft::types::{Cores, LicenseId, MacAddr, NodeName, RequestId, Timestamp};
use licd_raft::{Code, RaftNodeId};
use serde::{Deserialize, Serialize};

/// Header carrying a client's request id (the body's `request_id` field also works).
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Response header: the id of the Raft member this node believes leads.
pub const LEADER_ID_HEADER: &str = "x-licd-leader-id";
/// Response header: the HTTP address of that leader.
pub const LEADER_ADDR_HEADER: &str = "x-licd-leader-addr";
/// Response header: the id of the node that answered.
pub const NODE_ID_HEADER: &str = "x-licd-node-id";
/// Request header a follower sets when it forwards a request to the leader; a node that is
/// not the leader answers a forwarded request with 503 instead of forwarding it again.
pub const FORWARDED_HEADER: &str = "x-licd-forwarded";
/// Request header carrying the cluster secret on `/raft` routes.
pub const CLUSTER_SECRET_HEADER: &str = "x-licd-cluster-secret";

/// The one error shape of every route: `{"code", "message", ...figures}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code, such as `CPU_LIMIT_EXHAUSTED` or `BAD_REQUEST`.
    pub code: String,
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
    /// Suggested wait before a retry, in milliseconds (503 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// An error body with a code and a message and no figures.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            code: code.into(),
            message: message.into(),
            requested: None,
            available: None,
            licensed: None,
            retry_after_ms: None,
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

/// `PUT /v1/nodes/{node}/allocation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateBody {
    /// The license; may be omitted when exactly one is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseId>,
    /// The server's MAC address.
    pub mac: MacAddr,
    /// The server's CPU cores.
    pub cores: Cores,
    /// Lease duration in milliseconds; the node's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// The request id, if not given in the `x-request-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// The body of heartbeat and release calls: only an optional request id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestIdBody {
    /// The request id, if not given in the `x-request-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// Where a write landed in the Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    /// The term of the entry.
    pub term: u64,
    /// Its index.
    pub index: u64,
}

/// Answer to an allocation or a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantBody {
    /// The server.
    pub node: NodeName,
    /// Its allocation.
    pub allocation: Allocation,
    /// True when an earlier allocation of the server was replaced.
    pub replaced: bool,
    /// The license's counted cores over all servers.
    pub allocated_cores: u64,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// The request id the write was applied under.
    pub request_id: RequestId,
    /// The log entry that decided it.
    pub log: LogPosition,
}

impl GrantBody {
    /// Wraps a state machine grant.
    pub fn new(grant: Grant, request_id: RequestId, log: LogPosition) -> Self {
        GrantBody {
            node: grant.node,
            allocation: grant.allocation,
            replaced: grant.replaced,
            allocated_cores: grant.allocated_cores,
            licensed_cores: grant.licensed_cores,
            request_id,
            log,
        }
    }
}

/// Answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseBody {
    /// The server.
    pub node: NodeName,
    /// Whether it held an allocation.
    pub released: bool,
    /// What it held.
    pub freed: Option<Allocation>,
    /// The request id the write was applied under.
    pub request_id: RequestId,
    /// The log entry that decided it.
    pub log: LogPosition,
}

/// `GET /v1/nodes/{node}/check` query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// The MAC the server has now; when given it must match its allocation and the license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
}

/// Answer to a license check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckBody {
    /// The check itself.
    #[serde(flatten)]
    pub check: CheckResult,
    /// The leader that answered.
    pub leader_id: RaftNodeId,
    /// Its term.
    pub term: u64,
}

/// Answer to `GET /v1/licenses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicensesBody {
    /// Each installed license with its usage.
    pub licenses: Vec<Usage>,
    /// The cluster clock.
    pub cluster_time: Timestamp,
}

/// `POST /admin/init`: the initial voters by id and HTTP address; empty means this node alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitBody {
    /// Voter id to `host:port`.
    #[serde(default)]
    pub members: BTreeMap<RaftNodeId, String>,
}

/// `POST /admin/learners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerBody {
    /// The new member's id.
    pub node_id: RaftNodeId,
    /// Its HTTP address, `host:port`.
    pub addr: String,
}

/// `PUT /admin/voters`: the complete new voter set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotersBody {
    /// The voters after the change.
    pub voters: Vec<RaftNodeId>,
}

/// Answer to membership changes: the membership after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipBody {
    /// Voter ids.
    pub voters: Vec<RaftNodeId>,
    /// Learner ids.
    pub learners: Vec<RaftNodeId>,
    /// Every member's HTTP address.
    pub nodes: BTreeMap<RaftNodeId, String>,
}

/// One member in the cluster status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: RaftNodeId,
    /// Its HTTP address.
    pub addr: String,
    /// `voter` or `learner`.
    pub role: String,
    /// Highest log index known replicated to it (leader's view; `None` when unknown).
    pub matched_index: Option<u64>,
    /// How far behind the leader's last log it is, in entries (leader's view).
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it (leader's view; for the leader,
    /// since a quorum last acknowledged it).
    pub last_contact_ms: Option<u64>,
    /// Whether the leader considers it reachable (heard within the election timeout).
    pub healthy: Option<bool>,
}

/// Answer to `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusBody {
    /// The node that answered.
    pub node_id: RaftNodeId,
    /// Its Raft role: `Leader`, `Follower`, `Candidate` or `Learner`.
    pub state: String,
    /// The leader it knows.
    pub leader_id: Option<RaftNodeId>,
    /// Its current term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its last applied index.
    pub last_applied_index: Option<u64>,
    /// Its last snapshot's index.
    pub snapshot_index: Option<u64>,
    /// Every member with its replication progress.
    pub members: Vec<MemberStatus>,
    /// Warnings, such as a lost redundancy.
    pub warnings: Vec<String>,
}

impl StatusBody {
    /// The ids of the voting members.
    pub fn voters(&self) -> Vec<RaftNodeId> {
        self.members
            .iter()
            .filter(|m| m.role == "voter")
            .map(|m| m.id)
            .collect()
    }
}

/// Answer to a license installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledBody {
    /// The license id.
    pub license: LicenseId,
    /// True when an older issue was replaced.
    pub replaced: bool,
    /// True when the same license was already installed.
    pub unchanged: bool,
    /// Allocations released because the new issue no longer allows them.
    pub dropped: Vec<DroppedBody>,
    /// The log entry that decided it.
    pub log: LogPosition,
}

/// One allocation a replacing license released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedBody {
    /// The server.
    pub node: NodeName,
    /// Why.
    pub code: Code,
}

/// Answer to a license removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedBody {
    /// The license id.
    pub license: LicenseId,
    /// The servers whose allocations were released with it.
    pub released: Vec<NodeName>,
    /// The log entry that decided it.
    pub log: LogPosition,
}

/// Answer to `POST /admin/snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// The index the snapshot covers, once built.
    pub snapshot_index: Option<u64>,
}

/// Answer to `GET /v1/cluster`: the leader's view of the cluster's health, for agents and
/// applications (no admin token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterHealthBody {
    /// The leader.
    pub leader_id: RaftNodeId,
    /// Its term.
    pub term: u64,
    /// The voters.
    pub voters: Vec<RaftNodeId>,
    /// How many voters the leader heard from within the election timeout (itself included).
    pub healthy_servers: usize,
    /// The voters it did not hear from.
    pub down: Vec<RaftNodeId>,
    /// Warnings, such as a lost redundancy.
    pub warnings: Vec<String>,
}
