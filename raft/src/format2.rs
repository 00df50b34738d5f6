//! The shapes of stored format 2, the format before lease tokens, and their upgrade to the
//! current types.
//!
//! Format 2 stored allocations without a token hash, so its log entries and snapshots do not
//! decode as the current types (the codec is not self-describing: a new field changes the
//! bytes). These mirror types decode them exactly; `From` turns each into the current type:
//! - an `Allocate` entry gets no token hash (`None`), which makes it apply by format 2's
//!   rules, so a replica re-applying the old log computes what format 2 computed, whichever
//!   snapshot it starts from;
//! - a stored `Allocation` gets no token hash: it is renewed without a token, and the next
//!   allocation of its name from its MAC gives it one (see `LicenseState::apply`).
//!
//! What it leaves out: the conversion of a whole database, which `licd-storage` does once at
//! open with these types. Nothing here is written by this build except in tests, which build
//! format 2 data with the `Serialize` half.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::{
    Allocate, Allocation, Command, DroppedAllocation, Grant, LeaseCheckpoint, LeaseRef, Outcome,
    Rejection, Request,
};
use crate::dedup::{Applied, DedupTable};
use crate::license::License;
use crate::state::LicenseState;
use crate::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp};

/// A log entry's application data in format 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request2 {
    /// As [`Request::time`].
    pub time: Option<Timestamp>,
    /// As [`Request::request_id`].
    pub request_id: RequestId,
    /// The command, in format 2.
    pub command: Command2,
}

/// [`Command`] in format 2: only `Allocate` differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command2 {
    /// As [`Command::InstallLicense`].
    InstallLicense(License),
    /// As [`Command::RemoveLicense`].
    RemoveLicense {
        /// The license.
        license: LicenseId,
    },
    /// An allocation without token hashes.
    Allocate(Allocate2),
    /// As [`Command::Release`].
    Release {
        /// The server.
        node: NodeName,
    },
    /// As [`Command::Checkpoint`].
    Checkpoint {
        /// The leases.
        leases: Vec<LeaseCheckpoint>,
    },
    /// As [`Command::Expire`].
    Expire {
        /// The leases.
        leases: Vec<LeaseRef>,
    },
}

/// [`Allocate`] in format 2: no token hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocate2 {
    /// The server.
    pub node: NodeName,
    /// The license named, if any.
    pub license: Option<LicenseId>,
    /// The server's MAC.
    pub mac: MacAddr,
    /// Its cores.
    pub cores: Cores,
    /// Its lease.
    pub lease_ttl: LeaseTtl,
}

/// [`Allocation`] in format 2: no token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation2 {
    /// The license.
    pub license: LicenseId,
    /// The MAC.
    pub mac: MacAddr,
    /// The cores.
    pub cores: Cores,
    /// The counted cores.
    pub counted_cores: u32,
    /// The lease.
    pub lease_ttl: LeaseTtl,
    /// When it was allocated.
    pub allocated_at: Timestamp,
    /// The grant number.
    pub grant: u64,
    /// The checkpointed remaining time.
    pub remaining_ms: u64,
}

/// [`Outcome`] in format 2: the two that hold allocations differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome2 {
    /// As [`Outcome::Noop`].
    Noop,
    /// As [`Outcome::LicenseInstalled`].
    LicenseInstalled {
        /// The license.
        license: LicenseId,
        /// Replaced an older issue.
        replaced: bool,
        /// Nothing changed.
        unchanged: bool,
        /// Allocations released.
        dropped: Vec<DroppedAllocation>,
    },
    /// As [`Outcome::LicenseRemoved`].
    LicenseRemoved {
        /// The license.
        license: LicenseId,
        /// Servers released.
        released: Vec<NodeName>,
    },
    /// As [`Outcome::Allocated`].
    Allocated(Grant2),
    /// As [`Outcome::Released`].
    Released {
        /// The server.
        node: NodeName,
        /// What it held.
        freed: Option<Allocation2>,
    },
    /// As [`Outcome::Checkpointed`].
    Checkpointed {
        /// How many.
        updated: usize,
    },
    /// As [`Outcome::Expired`].
    Expired {
        /// Which servers.
        expired: Vec<NodeName>,
    },
}

/// [`Grant`] in format 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant2 {
    /// The server.
    pub node: NodeName,
    /// Its allocation.
    pub allocation: Allocation2,
    /// Replaced one it held.
    pub replaced: bool,
    /// The license's counted cores.
    pub allocated_cores: u64,
    /// The license's maximum.
    pub licensed_cores: u32,
}

/// A remembered request in format 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied2 {
    /// When it applied.
    pub at: Timestamp,
    /// Its command.
    pub command: Command2,
    /// Its first response.
    pub response: Result<Outcome2, Rejection>,
}

/// The exactly-once table in format 2.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupTable2 {
    /// By request id.
    pub by_id: BTreeMap<RequestId, Applied2>,
    /// In the order applied.
    pub order: VecDeque<RequestId>,
}

/// [`LicenseState`] in format 2, in the field order its snapshots hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseState2 {
    /// The cluster clock.
    pub clock: Timestamp,
    /// The licenses.
    pub licenses: BTreeMap<LicenseId, License>,
    /// The allocations.
    pub allocations: BTreeMap<NodeName, Allocation2>,
    /// The exactly-once table.
    pub dedup: DedupTable2,
    /// The next grant number.
    pub next_grant: u64,
    /// The allocation change count.
    pub allocation_changes: u64,
}

impl From<Request2> for Request {
    fn from(r: Request2) -> Request {
        Request {
            time: r.time,
            request_id: r.request_id,
            command: r.command.into(),
        }
    }
}

impl From<Command2> for Command {
    fn from(c: Command2) -> Command {
        match c {
            Command2::InstallLicense(l) => Command::InstallLicense(l),
            Command2::RemoveLicense { license } => Command::RemoveLicense { license },
            Command2::Allocate(a) => Command::Allocate(Allocate {
                node: a.node,
                license: a.license,
                mac: a.mac,
                cores: a.cores,
                lease_ttl: a.lease_ttl,
                token_hash: None,
                presented: None,
            }),
            Command2::Release { node } => Command::Release { node },
            Command2::Checkpoint { leases } => Command::Checkpoint { leases },
            Command2::Expire { leases } => Command::Expire { leases },
        }
    }
}

impl From<Allocation2> for Allocation {
    fn from(a: Allocation2) -> Allocation {
        Allocation {
            license: a.license,
            mac: a.mac,
            cores: a.cores,
            counted_cores: a.counted_cores,
            lease_ttl: a.lease_ttl,
            allocated_at: a.allocated_at,
            grant: a.grant,
            remaining_ms: a.remaining_ms,
            token_hash: None,
        }
    }
}

impl From<Outcome2> for Outcome {
    fn from(o: Outcome2) -> Outcome {
        match o {
            Outcome2::Noop => Outcome::Noop,
            Outcome2::LicenseInstalled {
                license,
                replaced,
                unchanged,
                dropped,
            } => Outcome::LicenseInstalled {
                license,
                replaced,
                unchanged,
                dropped,
            },
            Outcome2::LicenseRemoved { license, released } => {
                Outcome::LicenseRemoved { license, released }
            }
            Outcome2::Allocated(g) => Outcome::Allocated(Grant {
                node: g.node,
                allocation: g.allocation.into(),
                replaced: g.replaced,
                allocated_cores: g.allocated_cores,
                licensed_cores: g.licensed_cores,
            }),
            Outcome2::Released { node, freed } => Outcome::Released {
                node,
                freed: freed.map(Allocation::from),
            },
            Outcome2::Checkpointed { updated } => Outcome::Checkpointed { updated },
            Outcome2::Expired { expired } => Outcome::Expired { expired },
        }
    }
}

impl From<LicenseState2> for LicenseState {
    fn from(s: LicenseState2) -> LicenseState {
        let by_id = s
            .dedup
            .by_id
            .into_iter()
            .map(|(id, a)| {
                let applied = Applied {
                    at: a.at,
                    command: a.command.into(),
                    response: a.response.map(Outcome::from),
                };
                (id, applied)
            })
            .collect();
        LicenseState::restored(
            s.clock,
            s.licenses.into_iter().collect(),
            s.allocations
                .into_iter()
                .map(|(node, a)| (node, Allocation::from(a)))
                .collect(),
            DedupTable {
                by_id,
                order: s.dedup.order.into_iter().collect(),
            },
            s.next_grant,
            s.allocation_changes,
        )
    }
}

#[cfg(test)]
mod tests;
