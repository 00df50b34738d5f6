//! What the Raft log carries ([`Request`]) and what applying it answers ([`Response`]).
//!
//! A request is stamped by the leader when it is proposed: the cluster's agreed calendar time
//! (when the voters' clocks agree) and the client's request id travel inside the entry, so
//! that every replica applies exactly the same input and never consults a clock or a random
//! source of its own.
//!
//! No entry carries a lease's expiry instant. Leases are elapsed time measured by the leader
//! on its monotonic clock; the log records what the leader decided: grants (with their ttl),
//! releases, checkpoints of the remaining time of each lease, and expirations.

use serde::{Deserialize, Serialize};

use crate::events::Retention;
use crate::license::License;
use crate::types::{
    Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash,
};

/// The exact message of [`Code::CpuLimitExhausted`], as users know it from the field.
pub const CPU_LIMIT_MESSAGE: &str = "CPU limit exhausted. Can't allocate more CPUs.";
/// The exact message of [`Code::InvalidMultiServerLicense`], as users know it from the field.
pub const INVALID_MULTI_SERVER_MESSAGE: &str =
    "Invalid license for multi-server environment setup.";

/// One entry of application data in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The cluster's calendar time when the leader proposed the entry: the voters' agreed
    /// wall-clock time, or `None` when they did not agree (the cluster clock then stays
    /// where it is). Only license dates are decided by it, never a lease.
    pub time: Option<Timestamp>,
    /// The client's id for this logical request; retries carry the same id.
    pub request_id: RequestId,
    /// What to do.
    pub command: Command,
}

/// The state changes the license state machine knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Install a verified license, or replace an older issue of the same license id.
    InstallLicense(License),
    /// Remove a license and release every allocation made under it.
    RemoveLicense {
        /// The license to remove.
        license: LicenseId,
    },
    /// Allocate (or re-allocate) an application server's cores.
    Allocate(Allocate),
    /// Give a server's cores back. Releasing a server that holds nothing succeeds.
    Release {
        /// The server to release.
        node: NodeName,
    },
    /// Record the remaining time of live leases as the leader measured it, so that a new
    /// leader never gives a lease more than that (plus the election bound). Proposed
    /// periodically by the leader; entries naming a grant that is gone are ignored.
    Checkpoint {
        /// The leases and their remaining time.
        leases: Vec<LeaseCheckpoint>,
    },
    /// End leases the leader measured as over, freeing their cores. Entries naming a grant
    /// that is gone (released or re-allocated since) are ignored.
    Expire {
        /// The leases to end.
        leases: Vec<LeaseRef>,
    },
    /// The holder gives a server's cores back, presenting the allocation's lease token
    /// ([`Command::Release`] is the administrator's, which needs none). Refused with
    /// `LEASE_TOKEN_REQUIRED` or `LEASE_TOKEN_MISMATCH` when the allocation's token is not
    /// the one presented; releasing a server that holds nothing succeeds.
    ReleaseHeld {
        /// The server to release.
        node: NodeName,
        /// The hash of the lease token presented, if any.
        presented: Option<TokenHash>,
    },
    /// Set how much usage history every replica keeps ([`crate::events`]). Proposed by the
    /// leader when its configured retention differs from the replicated one; bounds below 1
    /// are taken as 1.
    SetEventRetention {
        /// The new retention.
        retention: Retention,
    },
    /// Several requests in one log entry, applied one after another exactly as if each were
    /// an entry of its own, all at the entry's time; answered by [`Outcome::Batch`], one
    /// response per request in the same order. The leader batches the writes that arrive
    /// while its previous entry is being made durable (group commit), so that a burst of
    /// writes costs one log append and one flush per node, not one each. A batch is never
    /// remembered in the exactly-once table as a whole; each of its requests is.
    Batch(Vec<Batched>),
}

/// One request of a [`Command::Batch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batched {
    /// The client's id for this request, as [`Request::request_id`].
    pub request_id: RequestId,
    /// What to do.
    pub command: Command,
}

/// One grant of one server, as [`Command::Expire`] names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRef {
    /// The server.
    pub node: NodeName,
    /// Its grant, [`Allocation::grant`].
    pub grant: u64,
}

/// A lease's remaining time, as [`Command::Checkpoint`] records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCheckpoint {
    /// The server.
    pub node: NodeName,
    /// Its grant, [`Allocation::grant`].
    pub grant: u64,
    /// Lease time left when the leader proposed the checkpoint, in milliseconds.
    pub remaining_ms: u64,
}

/// The arguments of [`Command::Allocate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocate {
    /// The application server asking.
    pub node: NodeName,
    /// The license to allocate from; `None` picks the only installed license.
    pub license: Option<LicenseId>,
    /// The server's MAC address, which the license must allow.
    pub mac: MacAddr,
    /// The server's CPU cores.
    pub cores: Cores,
    /// How long the allocation lives without a heartbeat.
    pub lease_ttl: LeaseTtl,
    /// The hash of the lease token the leader issues with this allocation when it is a new
    /// one (a re-allocation keeps the token it was made with). `None` only in an entry
    /// logged by stored format 2, before lease tokens: it applies by that format's rules
    /// (no holder check, an allocation without a token), so that every replica computes
    /// what format 2 computed, whichever snapshot it re-applies the log from.
    pub token_hash: Option<TokenHash>,
    /// The hash of the lease token the client presented: a name that holds a live
    /// allocation is re-allocated only when it matches that allocation's.
    pub presented: Option<TokenHash>,
}

/// What applying one log entry answered. A rejection is a normal, deterministic outcome: every
/// replica rejects the same entry the same way.
pub type Response = Result<Outcome, Rejection>;

/// A successful outcome of applying one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The entry carried no command (a blank or membership entry of Raft itself).
    Noop,
    /// A license was installed or replaced.
    LicenseInstalled {
        /// The license id.
        license: LicenseId,
        /// True when an older issue of the license was replaced.
        replaced: bool,
        /// True when the very same license was already installed: nothing changed.
        unchanged: bool,
        /// Allocations the new issue no longer allows, which were released.
        dropped: Vec<DroppedAllocation>,
    },
    /// A license was removed.
    LicenseRemoved {
        /// The license id.
        license: LicenseId,
        /// The servers whose allocations were released with it.
        released: Vec<NodeName>,
    },
    /// Cores were allocated.
    Allocated(Grant),
    /// A server's allocation was released.
    Released {
        /// The server.
        node: NodeName,
        /// What it held, if anything.
        freed: Option<Allocation>,
    },
    /// Remaining lease times were recorded.
    Checkpointed {
        /// How many leases were updated.
        updated: usize,
    },
    /// Leases ended.
    Expired {
        /// The servers whose leases ended and whose cores were freed.
        expired: Vec<NodeName>,
    },
    /// The usage history's retention was set.
    RetentionSet {
        /// The retention now in force.
        retention: Retention,
    },
    /// The responses to the requests of a [`Command::Batch`], in its order.
    Batch(Vec<Response>),
}

/// An allocation as the state machine stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// The license the cores come from.
    pub license: LicenseId,
    /// The server's MAC address.
    pub mac: MacAddr,
    /// The cores the server has.
    pub cores: Cores,
    /// The cores it counts against the license: at least the license's minimum per node.
    pub counted_cores: u32,
    /// The lease duration a heartbeat renews.
    pub lease_ttl: LeaseTtl,
    /// Cluster calendar time of the allocation (informational; leases never use it).
    pub allocated_at: Timestamp,
    /// This grant's number: unique in the state, increasing with each allocation, so that a
    /// checkpoint or an expiration proposed for one grant cannot touch a later one.
    pub grant: u64,
    /// Lease time left, in milliseconds, as of the latest checkpoint (the ttl when granted).
    pub remaining_ms: u64,
    /// The hash of the allocation's lease token, which heartbeats, releases and
    /// re-allocations must present. `None` for an allocation made before lease tokens
    /// existed (stored format 2): it is renewed without a token, and the next allocation of
    /// the same name with the same MAC replaces it with one that has a token.
    pub token_hash: Option<TokenHash>,
}

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The server.
    pub node: NodeName,
    /// Its allocation after the command.
    pub allocation: Allocation,
    /// True when the allocation replaced one the server already held.
    pub replaced: bool,
    /// The license's counted cores over all servers after the command.
    pub allocated_cores: u64,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
}

/// An allocation released because a replacing license issue no longer allows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DroppedAllocation {
    /// The server.
    pub node: NodeName,
    /// Why: [`Code::InvalidMultiServerLicense`] or [`Code::CpuLimitExhausted`].
    pub code: Code,
}

/// A command the state machine refused. It changed nothing but the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Machine-readable reason.
    pub code: Code,
    /// Human-readable reason; for the two field-known codes, their exact message.
    pub message: String,
    /// Core figures, for [`Code::CpuLimitExhausted`].
    pub figures: Option<CoreFigures>,
}

impl Rejection {
    /// A rejection with the code's standard message.
    pub fn new(code: Code) -> Self {
        Rejection {
            code,
            message: code.default_message().to_string(),
            figures: None,
        }
    }

    /// A rejection with a message of its own.
    pub fn with_message(code: Code, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            figures: None,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Rejection {}

/// The core figures reported when an allocation would exceed the license.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreFigures {
    /// Cores the allocation would count (after the per-node minimum).
    pub requested: u32,
    /// Cores still free for this server: the license's maximum less what other servers count.
    pub available: u64,
    /// The license's `max_cores`.
    pub licensed: u32,
}

/// Every outcome code licd reports, of license checks and of refused commands alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    /// The server is licensed.
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
    /// A heartbeat or a release of an allocation that has a lease token presented none.
    LeaseTokenRequired,
    /// A heartbeat or a release presented a lease token that is not the allocation's.
    LeaseTokenMismatch,
}

impl Code {
    /// The code as it appears on the wire, such as `CPU_LIMIT_EXHAUSTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::NotAllocated => "NOT_ALLOCATED",
            Code::LeaseExpired => "LEASE_EXPIRED",
            Code::LicenseExpired => "LICENSE_EXPIRED",
            Code::NoLicense => "NO_LICENSE",
            Code::InvalidMultiServerLicense => "INVALID_MULTI_SERVER_LICENSE",
            Code::CpuLimitExhausted => "CPU_LIMIT_EXHAUSTED",
            Code::LicenseNotFound => "LICENSE_NOT_FOUND",
            Code::LicenseRequired => "LICENSE_REQUIRED",
            Code::LicenseOutdated => "LICENSE_OUTDATED",
            Code::LicenseConflict => "LICENSE_CONFLICT",
            Code::InvalidLicense => "INVALID_LICENSE",
            Code::RequestIdReused => "REQUEST_ID_REUSED",
            Code::NodeInUse => "NODE_IN_USE",
            Code::MacInUse => "MAC_IN_USE",
            Code::LeaseTokenRequired => "LEASE_TOKEN_REQUIRED",
            Code::LeaseTokenMismatch => "LEASE_TOKEN_MISMATCH",
        }
    }

    /// The standard human message of the code.
    pub fn default_message(self) -> &'static str {
        match self {
            Code::Valid => "The server is licensed.",
            Code::NotAllocated => "The server holds no core allocation.",
            Code::LeaseExpired => "The server's lease expired without a heartbeat.",
            Code::LicenseExpired => "The license has expired.",
            Code::NoLicense => "No license is installed.",
            Code::InvalidMultiServerLicense => INVALID_MULTI_SERVER_MESSAGE,
            Code::CpuLimitExhausted => CPU_LIMIT_MESSAGE,
            Code::LicenseNotFound => "No license with this id is installed.",
            Code::LicenseRequired => "Several licenses are installed: the request must name one.",
            Code::LicenseOutdated => "An issue of this license that is not older is installed.",
            Code::LicenseConflict => {
                "A different license with the same id and serial is installed."
            }
            Code::InvalidLicense => "The license's content is inconsistent.",
            Code::RequestIdReused => "The request id was already used for a different request.",
            Code::NodeInUse => {
                "The server name holds a live allocation: present its lease token, or wait \
                 until its lease ends."
            }
            Code::MacInUse => "Another server name holds a live allocation with this MAC address.",
            Code::LeaseTokenRequired => {
                "The allocation has a lease token: present it (header x-licd-lease-token)."
            }
            Code::LeaseTokenMismatch => "The lease token is not this allocation's.",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
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
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<Code>(&json).unwrap(), code);
        }
    }

    #[test]
    fn the_field_messages_are_exact() {
        assert_eq!(
            Rejection::new(Code::CpuLimitExhausted).message,
            "CPU limit exhausted. Can't allocate more CPUs."
        );
        assert_eq!(
            Rejection::new(Code::InvalidMultiServerLicense).message,
            "Invalid license for multi-server environment setup."
        );
    }
}
