//! The wire types of `/v1`, the license API of application servers and the agent.
//!
//! They are licd's public contract and deliberately not the state machine's types: the Raft
//! log and snapshots may change their structs (as stored formats do) while these keep their
//! fields, and every conversion from a `licd-raft` type is written out here.

use licd_raft::RaftNodeId;
use licd_raft::command::{Allocation, Grant};
use licd_raft::query::{CheckResult, LicenseSummary, NodeUsage, Usage};
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{ErrorCode, LeaseToken};
use crate::node::Renewal;

/// `PUT /v1/nodes/{node}/allocation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateBody {
    /// The license; may be omitted when exactly one is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseId>,
    /// The server's MAC address.
    pub mac: MacAddr,
    /// The server's CPU cores.
    pub cores: Cores,
    /// Lease duration in milliseconds (1 second to 7 days); the node's default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1_000, maximum = 604_800_000)]
    pub ttl_ms: Option<u64>,
    /// The request id, if not given in the `x-request-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// The body of heartbeat and release calls: only an optional request id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestIdBody {
    /// The request id, if not given in the `x-request-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
}

/// Where a write landed in the Raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPosition {
    /// The term of the entry.
    pub term: u64,
    /// Its index.
    pub index: u64,
}

/// A server's allocation as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AllocationBody {
    /// The license the cores come from.
    pub license: LicenseId,
    /// The server's MAC address.
    pub mac: MacAddr,
    /// The cores the server has.
    pub cores: Cores,
    /// The cores it counts against the license: at least the license's minimum per node.
    pub counted_cores: u32,
    /// The lease duration a heartbeat renews, in milliseconds.
    pub lease_ttl: LeaseTtl,
    /// Cluster calendar time of the allocation.
    pub allocated_at: Timestamp,
    /// Lease time left when the answer was made, in milliseconds: count it down on your own
    /// monotonic clock from when you sent the request.
    pub lease_remaining_ms: u64,
}

impl From<&Allocation> for AllocationBody {
    fn from(a: &Allocation) -> Self {
        AllocationBody {
            license: a.license.clone(),
            mac: a.mac,
            cores: a.cores,
            counted_cores: a.counted_cores,
            lease_ttl: a.lease_ttl,
            allocated_at: a.allocated_at,
            lease_remaining_ms: a.remaining_ms,
        }
    }
}

/// Answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GrantBody {
    /// The server.
    pub node: NodeName,
    /// Its allocation.
    pub allocation: AllocationBody,
    /// True when an earlier allocation of the server was replaced.
    pub replaced: bool,
    /// The license's counted cores over all servers.
    pub allocated_cores: u64,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// Calendar time left until the license expires, in milliseconds (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_expires_in_ms: Option<u64>,
    /// The request id the write was applied under.
    pub request_id: RequestId,
    /// The log entry that decided it.
    pub log: LogPosition,
    /// The allocation's lease token: present it in the `x-licd-lease-token` header of every
    /// heartbeat, release and re-allocation. Keep it secret; no other answer shows it.
    pub lease_token: LeaseToken,
}

impl GrantBody {
    /// The answer for a state machine grant applied under `request_id` at `log`, whose
    /// holder presents `lease_token`.
    pub fn new(
        grant: &Grant,
        license_expires_in_ms: Option<u64>,
        request_id: RequestId,
        log: LogPosition,
        lease_token: LeaseToken,
    ) -> Self {
        GrantBody {
            node: grant.node.clone(),
            allocation: (&grant.allocation).into(),
            replaced: grant.replaced,
            allocated_cores: grant.allocated_cores,
            licensed_cores: grant.licensed_cores,
            license_expires_in_ms,
            request_id,
            log,
            lease_token,
        }
    }
}

/// Answer to a heartbeat: the lease renewed in the leader's memory, without a log write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RenewBody {
    /// The server.
    pub node: NodeName,
    /// Its allocation; `lease_remaining_ms` is the renewed lease.
    pub allocation: AllocationBody,
    /// Lease time left after the renewal, in milliseconds (the whole ttl): count it down on
    /// your own monotonic clock from when you sent the heartbeat.
    pub lease_remaining_ms: u64,
    /// The license's counted cores over all servers.
    pub allocated_cores: u64,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// Calendar time left until the license expires, in milliseconds (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_expires_in_ms: Option<u64>,
    /// The leader that renewed it.
    #[schema(value_type = u64)]
    pub leader_id: RaftNodeId,
    /// Its term.
    pub term: u64,
}

impl RenewBody {
    /// The answer for a renewal by `leader_id` in `term`.
    pub fn new(node: NodeName, renewal: &Renewal, leader_id: RaftNodeId, term: u64) -> Self {
        let mut allocation = AllocationBody::from(&renewal.allocation);
        allocation.lease_remaining_ms = renewal.remaining_ms;
        RenewBody {
            node,
            allocation,
            lease_remaining_ms: renewal.remaining_ms,
            allocated_cores: renewal.allocated_cores,
            licensed_cores: renewal.licensed_cores,
            license_expires_in_ms: renewal.license_expires_in_ms,
            leader_id,
            term,
        }
    }
}

/// Answer to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseBody {
    /// The server.
    pub node: NodeName,
    /// Whether it held an allocation.
    pub released: bool,
    /// What it held.
    pub freed: Option<AllocationBody>,
    /// The request id the write was applied under.
    pub request_id: RequestId,
    /// The log entry that decided it.
    pub log: LogPosition,
}

/// `GET /v1/nodes/{node}/check` query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// The MAC the server has now; when given it must match its allocation and the license.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The caller's nonce, 16 to 64 bytes as hex: the answer's signature covers it, so the
    /// answer cannot be replayed to another check (see [`crate::signing`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^([0-9a-fA-F]{2}){16,64}$")]
    pub nonce: Option<String>,
}

/// The parts of a license an application or an operator looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicenseSummaryBody {
    /// The license id.
    pub id: LicenseId,
    /// Who it was issued to.
    pub customer: String,
    /// The issue counter.
    pub serial: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires, if ever.
    pub expires_at: Option<Timestamp>,
    /// Total cores licensed.
    pub max_cores: u32,
    /// The minimum each server counts.
    pub min_cores_per_node: u32,
    /// Enabled features.
    pub features: Vec<String>,
}

impl From<&LicenseSummary> for LicenseSummaryBody {
    fn from(l: &LicenseSummary) -> Self {
        LicenseSummaryBody {
            id: l.id.clone(),
            customer: l.customer.clone(),
            serial: l.serial,
            issued_at: l.issued_at,
            expires_at: l.expires_at,
            max_cores: l.max_cores,
            min_cores_per_node: l.min_cores_per_node,
            features: l.features.clone(),
        }
    }
}

/// What a license check answers for one application server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckAnswer {
    /// The server asked about.
    pub node: NodeName,
    /// True exactly when `code` is `VALID`.
    pub valid: bool,
    /// `VALID`, `NOT_ALLOCATED`, `LEASE_EXPIRED`, `LICENSE_EXPIRED`, `NO_LICENSE` or
    /// `INVALID_MULTI_SERVER_LICENSE`.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// The license the server is allocated under, if any.
    pub license: Option<LicenseSummaryBody>,
    /// The cores the server counts against the license, if allocated.
    pub counted_cores: Option<u32>,
    /// The license's counted cores over all servers.
    pub allocated_cores: Option<u64>,
    /// The license's `max_cores`.
    pub licensed_cores: Option<u32>,
    /// Lease time left, in milliseconds, as the leader measures it.
    pub lease_remaining_ms: Option<u64>,
    /// The cluster calendar time the check was evaluated at.
    pub checked_at: Timestamp,
}

impl From<&CheckResult> for CheckAnswer {
    fn from(c: &CheckResult) -> Self {
        CheckAnswer {
            node: c.node.clone(),
            valid: c.valid,
            code: c.code.into(),
            message: c.message.clone(),
            license: c.license.as_ref().map(Into::into),
            counted_cores: c.counted_cores,
            allocated_cores: c.allocated_cores,
            licensed_cores: c.licensed_cores,
            lease_remaining_ms: c.lease_remaining_ms,
            checked_at: c.checked_at,
        }
    }
}

/// Answer to a license check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckBody {
    /// The check itself.
    #[serde(flatten)]
    pub check: CheckAnswer,
    /// The leader that answered.
    #[schema(value_type = u64)]
    pub leader_id: RaftNodeId,
    /// Its term.
    pub term: u64,
    /// The cluster's signature over the answer and the caller's nonce; absent when the node
    /// has no answer-signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<AnswerSignature>,
}

/// The signature of a check answer (the message it covers: [`crate::signing`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnswerSignature {
    /// The encoding of the signed message, `licd-check-v1`.
    pub scheme: String,
    /// The signing key's id: the first 8 bytes of the SHA-256 of its public key, as hex.
    pub key_id: String,
    /// The nonce the signature covers, as lowercase hex (empty: none was sent). A verifier
    /// compares it with the nonce it sent.
    pub nonce: String,
    /// The Ed25519 signature, base64.
    pub value: String,
}

/// One server's share of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeUsageBody {
    /// The server.
    pub node: NodeName,
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its cores.
    pub cores: Cores,
    /// What it counts.
    pub counted_cores: u32,
    /// Lease time left, in milliseconds, as the leader measures it.
    pub lease_remaining_ms: u64,
}

impl From<&NodeUsage> for NodeUsageBody {
    fn from(n: &NodeUsage) -> Self {
        NodeUsageBody {
            node: n.node.clone(),
            mac: n.mac,
            cores: n.cores,
            counted_cores: n.counted_cores,
            lease_remaining_ms: n.lease_remaining_ms,
        }
    }
}

/// A license's consumption (`GET /v1/licenses/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageBody {
    /// The license.
    pub license: LicenseSummaryBody,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// Counted cores over all servers.
    pub allocated_cores: u64,
    /// `licensed_cores - allocated_cores`.
    pub free_cores: u64,
    /// Whether the license has expired at the time of the report.
    pub expired: bool,
    /// Each allocated server, by name.
    pub nodes: Vec<NodeUsageBody>,
}

impl From<&Usage> for UsageBody {
    fn from(u: &Usage) -> Self {
        UsageBody {
            license: (&u.license).into(),
            licensed_cores: u.licensed_cores,
            allocated_cores: u.allocated_cores,
            free_cores: u.free_cores,
            expired: u.expired,
            nodes: u.nodes.iter().map(Into::into).collect(),
        }
    }
}

/// Answer to `GET /v1/licenses`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LicensesBody {
    /// Each installed license with its usage.
    pub licenses: Vec<UsageBody>,
    /// The cluster clock.
    pub cluster_time: Timestamp,
}

/// Answer to `GET /v1/cluster`: the leader's view of the cluster's health, for agents and
/// applications (no admin token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterHealthBody {
    /// The leader.
    #[schema(value_type = u64)]
    pub leader_id: RaftNodeId,
    /// Its term.
    pub term: u64,
    /// The voters.
    #[schema(value_type = Vec<u64>)]
    pub voters: Vec<RaftNodeId>,
    /// How many voters the leader heard from within the election timeout (itself included).
    pub healthy_servers: usize,
    /// The voters it did not hear from.
    #[schema(value_type = Vec<u64>)]
    pub down: Vec<RaftNodeId>,
    /// Each voter's wall clock minus the cluster's, in milliseconds, where known.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, i64>)]
    pub clock_skew_ms: std::collections::BTreeMap<RaftNodeId, i64>,
    /// Warnings, such as a lost redundancy or a skewed clock.
    pub warnings: Vec<String>,
}

impl From<openraft::LogId<RaftNodeId>> for LogPosition {
    fn from(id: openraft::LogId<RaftNodeId>) -> Self {
        LogPosition {
            term: id.leader_id.term,
            index: id.index,
        }
    }
}
