//! The wire types of `/admin`: membership, status, license installation and maintenance.
//!
//! Like the license API's types they are licd's own, converted explicitly from the node's
//! and the state machine's types.

use std::collections::BTreeMap;

use licd_raft::RaftNodeId;
use licd_raft::types::{LicenseId, NodeName};
use serde::{Deserialize, Serialize};

use super::{ErrorCode, LogPosition};
use crate::node::status::{ClusterStatus, MemberKind, Role};

/// `POST /admin/init`: the initial voters by id and HTTP address; empty means this node alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitBody {
    /// Voter id to `host:port`.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub members: BTreeMap<RaftNodeId, String>,
}

/// `POST /admin/learners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerBody {
    /// The new member's id.
    #[schema(value_type = u64)]
    pub node_id: RaftNodeId,
    /// Its HTTP address, `host:port`.
    pub addr: String,
}

/// `PUT /admin/voters`: the complete new voter set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VotersBody {
    /// The voters after the change.
    #[schema(value_type = Vec<u64>)]
    pub voters: Vec<RaftNodeId>,
}

/// Answer to membership changes: the membership after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembershipBody {
    /// Voter ids.
    #[schema(value_type = Vec<u64>)]
    pub voters: Vec<RaftNodeId>,
    /// Learner ids.
    #[schema(value_type = Vec<u64>)]
    pub learners: Vec<RaftNodeId>,
    /// Every member's HTTP address.
    #[schema(value_type = BTreeMap<String, String>)]
    pub nodes: BTreeMap<RaftNodeId, String>,
}

/// One member in the cluster status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberStatus {
    /// Its id.
    #[schema(value_type = u64)]
    pub id: RaftNodeId,
    /// Its HTTP address.
    pub addr: String,
    /// `voter` or `learner`.
    pub role: MemberKind,
    /// Highest log index known replicated to it (leader's view; `None` when unknown).
    pub matched_index: Option<u64>,
    /// How far behind the leader's last log it is, in entries (leader's view).
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it (leader's view; for the leader,
    /// since a quorum last acknowledged it).
    pub last_contact_ms: Option<u64>,
    /// Whether the leader considers it reachable (heard within the election timeout).
    pub healthy: Option<bool>,
    /// Its wall clock minus the voters' median, in milliseconds (leader's view, where known).
    #[serde(default)]
    pub clock_skew_ms: Option<i64>,
}

/// Answer to `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusBody {
    /// The node that answered.
    #[schema(value_type = u64)]
    pub node_id: RaftNodeId,
    /// Its Raft role: `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: Role,
    /// The leader it knows.
    #[schema(value_type = Option<u64>)]
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
            .filter(|m| m.role == MemberKind::Voter)
            .map(|m| m.id)
            .collect()
    }
}

impl From<&ClusterStatus> for StatusBody {
    fn from(s: &ClusterStatus) -> Self {
        StatusBody {
            node_id: s.node_id,
            state: s.role,
            leader_id: s.leader_id,
            term: s.term,
            last_log_index: s.last_log_index,
            last_applied_index: s.last_applied_index,
            snapshot_index: s.snapshot_index,
            members: s
                .members
                .iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    addr: m.addr.clone(),
                    role: m.kind,
                    matched_index: m.progress.as_ref().and_then(|p| p.matched_index),
                    lag: m.progress.as_ref().and_then(|p| p.lag),
                    last_contact_ms: m.progress.as_ref().and_then(|p| p.last_contact_ms),
                    healthy: m.progress.as_ref().map(|p| p.healthy),
                    clock_skew_ms: m.clock_skew_ms,
                })
                .collect(),
            warnings: s.warnings(),
        }
    }
}

/// Answer to a license installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DroppedBody {
    /// The server.
    pub node: NodeName,
    /// Why.
    pub code: ErrorCode,
}

/// Answer to a license removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RemovedBody {
    /// The license id.
    pub license: LicenseId,
    /// The servers whose allocations were released with it.
    pub released: Vec<NodeName>,
    /// The log entry that decided it.
    pub log: LogPosition,
}

/// Answer to `POST /admin/snapshot`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SnapshotBody {
    /// The index the snapshot covers, once built.
    pub snapshot_index: Option<u64>,
}

/// `GET /healthz`: the process serves HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`: whether this node can take part (200) or not (503).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// A leader is known and this node is a voter, or a learner that has caught up.
    pub ready: bool,
    /// The leader this node knows of.
    #[schema(value_type = Option<u64>)]
    pub leader_id: Option<RaftNodeId>,
    /// This node is a voter.
    pub voter: bool,
    /// This node is a learner.
    pub learner: bool,
}
