//! [`LicenseState`]: the replicated license state and the one function that changes it,
//! [`LicenseState::apply`].
//!
//! `apply` is deterministic: its only inputs are the state and the request, which carries the
//! leader's time. It reads no clock, does no I/O and draws no random number, so every replica
//! that applies the same log computes the same state, and a refused command is refused the
//! same way everywhere. It never fails: a refusal is a [`Rejection`] value in the response.
//!
//! The rules, in the order `apply` follows them:
//! 1. The cluster clock becomes `max(clock, request.time)`: it never goes back, whatever the
//!    leader's wall clock does.
//! 2. Leases whose expiry is at or before the clock end and free their cores.
//! 3. A request id already applied returns its first response and changes nothing.
//! 4. The command runs (see the table in docs/architecture.md).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{
    Allocate, Allocation, Code, Command, CoreFigures, DroppedAllocation, Grant, Outcome, Rejection,
    Request, Response,
};
use crate::dedup::{Applied, DedupTable};
use crate::license::License;
use crate::types::{LicenseId, NodeName, Timestamp};

/// The licenses, the allocations and the cluster clock, as every replica holds them.
///
/// Two indexes are derived from the allocations and kept in step with them: the lease expiry
/// order, so that expiring leases costs only the leases that expire, and each license's counted
/// total, so that a check or an allocation does not sum every allocation. They are not part of
/// snapshots: deserializing rebuilds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseState {
    pub(crate) clock: Timestamp,
    pub(crate) licenses: BTreeMap<LicenseId, License>,
    pub(crate) allocations: BTreeMap<NodeName, Allocation>,
    pub(crate) dedup: DedupTable,
    /// Derived: `(lease_expires_at, node)` of every allocation.
    lease_order: BTreeSet<(Timestamp, NodeName)>,
    /// Derived: the counted cores of each license's allocations (licenses with none are absent).
    counted: BTreeMap<LicenseId, u64>,
}

impl LicenseState {
    /// An empty state: no license, no allocation, the clock at the epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster clock: the latest time carried by an applied entry.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// The installed licenses by id.
    pub fn licenses(&self) -> &BTreeMap<LicenseId, License> {
        &self.licenses
    }

    /// The current allocations by server.
    pub fn allocations(&self) -> &BTreeMap<NodeName, Allocation> {
        &self.allocations
    }

    /// The counted cores of all allocations under `license`.
    pub fn counted_cores(&self, license: &LicenseId) -> u64 {
        self.counted.get(license).copied().unwrap_or(0)
    }

    /// How many request ids the exactly-once table remembers.
    pub fn remembered_requests(&self) -> usize {
        self.dedup.len()
    }

    /// The earliest lease expiry of any allocation: when the next `Tick` would free cores.
    pub fn next_lease_expiry(&self) -> Option<Timestamp> {
        self.lease_order.first().map(|(at, _)| *at)
    }

    /// Applies one request and returns its response. See the module documentation.
    pub fn apply(&mut self, request: &Request) -> Response {
        self.clock = self.clock.max(request.time);
        let expired = self.expire_leases();
        self.dedup.expire(self.clock);

        if let Some(earlier) = self.dedup.get(&request.request_id) {
            return if earlier.command == request.command {
                earlier.response.clone()
            } else {
                Err(Rejection::new(Code::RequestIdReused))
            };
        }

        let response = match &request.command {
            Command::InstallLicense(license) => self.install_license(license),
            Command::RemoveLicense { license } => self.remove_license(license),
            Command::Allocate(allocate) => self.allocate(allocate),
            Command::Heartbeat { node } => self.heartbeat(node),
            Command::Release { node } => Ok(Outcome::Released {
                node: node.clone(),
                freed: self.remove_allocation(node),
            }),
            // A tick is idempotent by nature, so it is not remembered.
            Command::Tick => return Ok(Outcome::Ticked { expired }),
        };
        self.dedup.insert(
            request.request_id.clone(),
            Applied {
                at: self.clock,
                command: request.command.clone(),
                response: response.clone(),
            },
        );
        response
    }

    /// Ends every lease whose expiry is at or before the clock; returns the servers.
    fn expire_leases(&mut self) -> Vec<NodeName> {
        let mut expired = Vec::new();
        while let Some((at, node)) = self.lease_order.first().cloned() {
            if at > self.clock {
                break;
            }
            self.remove_allocation(&node);
            expired.push(node);
        }
        expired
    }

    fn install_license(&mut self, license: &License) -> Response {
        if let Err(e) = license.validate() {
            return Err(Rejection::with_message(Code::InvalidLicense, e.to_string()));
        }
        if license.is_expired_at(self.clock) {
            return Err(Rejection::new(Code::LicenseExpired));
        }
        let replaced = match self.licenses.get(&license.id) {
            None => false,
            Some(installed) if installed == license => {
                return Ok(Outcome::LicenseInstalled {
                    license: license.id.clone(),
                    replaced: false,
                    unchanged: true,
                    dropped: Vec::new(),
                });
            }
            Some(installed) if installed.version() == license.version() => {
                return Err(Rejection::new(Code::LicenseConflict));
            }
            Some(installed) if installed.version() > license.version() => {
                return Err(Rejection::new(Code::LicenseOutdated));
            }
            Some(_) => true,
        };
        self.licenses.insert(license.id.clone(), license.clone());
        let dropped = if replaced {
            self.refit_allocations(license)
        } else {
            Vec::new()
        };
        Ok(Outcome::LicenseInstalled {
            license: license.id.clone(),
            replaced,
            unchanged: false,
            dropped,
        })
    }

    /// After a license was replaced, keeps its allocations that the new issue still allows,
    /// oldest first (by allocation time, then server name), and releases the others.
    fn refit_allocations(&mut self, license: &License) -> Vec<DroppedAllocation> {
        let mut held: Vec<(Timestamp, NodeName)> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.license == license.id)
            .map(|(node, a)| (a.allocated_at, node.clone()))
            .collect();
        held.sort();
        // Take them all out first, so that each one is measured against the kept ones only.
        let held: Vec<(NodeName, Allocation)> = held
            .into_iter()
            .filter_map(|(_, node)| self.remove_allocation(&node).map(|a| (node, a)))
            .collect();
        let mut dropped = Vec::new();
        for (node, mut allocation) in held {
            let counted = license.counted_cores(allocation.cores.get());
            let code = if !license.allowed_macs.contains(&allocation.mac) {
                Some(Code::InvalidMultiServerLicense)
            } else if self.counted_cores(&license.id) + u64::from(counted)
                > u64::from(license.max_cores)
            {
                Some(Code::CpuLimitExhausted)
            } else {
                None
            };
            match code {
                Some(code) => dropped.push(DroppedAllocation { node, code }),
                None => {
                    allocation.counted_cores = counted;
                    self.insert_allocation(node, allocation);
                }
            }
        }
        dropped
    }

    fn remove_license(&mut self, id: &LicenseId) -> Response {
        if self.licenses.remove(id).is_none() {
            return Err(Rejection::new(Code::LicenseNotFound));
        }
        let released: Vec<NodeName> = self
            .allocations
            .iter()
            .filter(|(_, a)| &a.license == id)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &released {
            self.remove_allocation(node);
        }
        Ok(Outcome::LicenseRemoved {
            license: id.clone(),
            released,
        })
    }

    /// The license a request names, or the only one installed when it names none.
    pub(crate) fn resolve_license(&self, id: Option<&LicenseId>) -> Result<&License, Rejection> {
        match id {
            Some(id) => self
                .licenses
                .get(id)
                .ok_or_else(|| Rejection::new(Code::LicenseNotFound)),
            None => {
                let mut all = self.licenses.values();
                match (all.next(), all.next()) {
                    (None, _) => Err(Rejection::new(Code::NoLicense)),
                    (Some(only), None) => Ok(only),
                    (Some(_), Some(_)) => Err(Rejection::new(Code::LicenseRequired)),
                }
            }
        }
    }

    fn allocate(&mut self, req: &Allocate) -> Response {
        let license = self.resolve_license(req.license.as_ref())?;
        if license.is_expired_at(self.clock) {
            return Err(Rejection::new(Code::LicenseExpired));
        }
        if !license.allowed_macs.contains(&req.mac) {
            return Err(Rejection::new(Code::InvalidMultiServerLicense));
        }
        let counted = license.counted_cores(req.cores.get());
        let held_here = self
            .allocations
            .get(&req.node)
            .filter(|a| a.license == license.id)
            .map_or(0, |a| u64::from(a.counted_cores));
        let others = self.counted_cores(&license.id) - held_here;
        let max = u64::from(license.max_cores);
        if others + u64::from(counted) > max {
            return Err(Rejection {
                figures: Some(CoreFigures {
                    requested: counted,
                    available: max.saturating_sub(others),
                    licensed: license.max_cores,
                }),
                ..Rejection::new(Code::CpuLimitExhausted)
            });
        }
        let (license_id, licensed_cores) = (license.id.clone(), license.max_cores);
        let replaced = self.remove_allocation(&req.node).is_some();
        let allocation = Allocation {
            license: license_id.clone(),
            mac: req.mac,
            cores: req.cores,
            counted_cores: counted,
            lease_ttl: req.lease_ttl,
            allocated_at: self.clock,
            lease_expires_at: self.clock.plus_millis(req.lease_ttl.as_millis()),
        };
        self.insert_allocation(req.node.clone(), allocation.clone());
        Ok(Outcome::Allocated(Grant {
            node: req.node.clone(),
            allocation,
            replaced,
            allocated_cores: self.counted_cores(&license_id),
            licensed_cores,
        }))
    }

    fn heartbeat(&mut self, node: &NodeName) -> Response {
        let Some(allocation) = self.allocations.get(node) else {
            return Err(Rejection::new(Code::NotAllocated));
        };
        let license = self
            .licenses
            .get(&allocation.license)
            .ok_or_else(|| Rejection::new(Code::LicenseNotFound))?;
        if license.is_expired_at(self.clock) {
            return Err(Rejection::new(Code::LicenseExpired));
        }
        let licensed_cores = license.max_cores;
        let Some(mut allocation) = self.remove_allocation(node) else {
            return Err(Rejection::new(Code::NotAllocated));
        };
        allocation.lease_expires_at = self.clock.plus_millis(allocation.lease_ttl.as_millis());
        let license_id = allocation.license.clone();
        self.insert_allocation(node.clone(), allocation.clone());
        Ok(Outcome::Renewed(Grant {
            node: node.clone(),
            allocation,
            replaced: false,
            allocated_cores: self.counted_cores(&license_id),
            licensed_cores,
        }))
    }

    /// Adds an allocation and its index entries. The server must hold none.
    fn insert_allocation(&mut self, node: NodeName, allocation: Allocation) {
        self.lease_order
            .insert((allocation.lease_expires_at, node.clone()));
        *self.counted.entry(allocation.license.clone()).or_default() +=
            u64::from(allocation.counted_cores);
        self.allocations.insert(node, allocation);
    }

    /// Removes a server's allocation and its index entries; returns what it held.
    fn remove_allocation(&mut self, node: &NodeName) -> Option<Allocation> {
        let allocation = self.allocations.remove(node)?;
        self.lease_order
            .remove(&(allocation.lease_expires_at, node.clone()));
        if let Some(total) = self.counted.get_mut(&allocation.license) {
            *total -= u64::from(allocation.counted_cores);
            if *total == 0 {
                self.counted.remove(&allocation.license);
            }
        }
        Some(allocation)
    }

    /// Rebuilds the derived indexes from the allocations.
    fn rebuild_indexes(&mut self) {
        self.lease_order.clear();
        self.counted.clear();
        for (node, a) in &self.allocations {
            self.lease_order.insert((a.lease_expires_at, node.clone()));
            *self.counted.entry(a.license.clone()).or_default() += u64::from(a.counted_cores);
        }
    }
}

/// The serialized form of [`LicenseState`]: everything but the derived indexes.
#[derive(Serialize)]
struct StateRef<'a> {
    clock: &'a Timestamp,
    licenses: &'a BTreeMap<LicenseId, License>,
    allocations: &'a BTreeMap<NodeName, Allocation>,
    dedup: &'a DedupTable,
}

/// The deserialized form of [`LicenseState`]; the field order matches [`StateRef`].
#[derive(Deserialize)]
struct StateOwned {
    clock: Timestamp,
    licenses: BTreeMap<LicenseId, License>,
    allocations: BTreeMap<NodeName, Allocation>,
    dedup: DedupTable,
}

impl Serialize for LicenseState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StateRef {
            clock: &self.clock,
            licenses: &self.licenses,
            allocations: &self.allocations,
            dedup: &self.dedup,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LicenseState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let owned = StateOwned::deserialize(d)?;
        let mut state = LicenseState {
            clock: owned.clock,
            licenses: owned.licenses,
            allocations: owned.allocations,
            dedup: owned.dedup,
            lease_order: BTreeSet::new(),
            counted: BTreeMap::new(),
        };
        state.rebuild_indexes();
        Ok(state)
    }
}

#[cfg(test)]
mod tests;
