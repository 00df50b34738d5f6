//! [`LicenseState`]: the replicated license state and the one function that changes it,
//! [`LicenseState::apply`].
//!
//! `apply` is deterministic: its only inputs are the state and the request, which carries the
//! cluster's agreed calendar time when the voters' clocks agreed. It reads no clock, does no I/O and draws no random number, so every replica
//! that applies the same log computes the same state, and a refused command is refused the
//! same way everywhere. It never fails: a refusal is a [`Rejection`] value in the response.
//!
//! The rules, in the order `apply` follows them:
//! 1. The cluster clock becomes `max(clock, request.time)` when the request carries a time: it
//!    never goes back. It decides license dates only.
//! 2. A request id already applied returns its first response and changes nothing.
//! 3. The command runs (see the table in docs/architecture.md).
//!
//! Allocations are bound to their holder by a lease token, of which the state holds only the
//! SHA-256 hash: a name with a live allocation changes hands only when the request presents
//! that token (`NODE_IN_USE` otherwise, whatever MAC it declares), and a MAC holds at most
//! one live allocation (`MAC_IN_USE`).
//!
//! Leases are not measured here: no clock in the state decides one. An allocation records
//! its ttl and the remaining time of its latest checkpoint; the leader measures leases on
//! its monotonic clock and proposes [`Command::Checkpoint`] and [`Command::Expire`] entries,
//! which apply records without comparing any time.

use std::collections::BTreeMap;

use imbl::OrdMap;
use serde::{Deserialize, Serialize};

use crate::command::{
    Allocate, Allocation, Batched, Code, Command, CoreFigures, DroppedAllocation, Grant,
    LeaseCheckpoint, LeaseRef, Outcome, Rejection, Request, Response,
};
use crate::dedup::{Applied, DedupTable};
use crate::events::{EventKind, FreedBy, Retention, freed_event, install_events, removal_events};
use crate::license::License;
use crate::types::{LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash};

/// The licenses, the allocations and the cluster clock, as every replica holds them.
///
/// Two indexes are derived from the allocations and kept in step with them: each license's
/// counted total, so that a check or an allocation does not sum every allocation, and the
/// number of allocations per MAC, so that an allocation does not walk them all. They are not
/// part of snapshots: deserializing rebuilds them.
///
/// The tables that grow with the number of servers and requests are persistent maps
/// (`imbl::OrdMap`): a clone shares their nodes and costs O(1), and the next change copies
/// only the path it touches. A snapshot therefore copies the state under the lock and
/// encodes the copy with the lock released. They serialize as `BTreeMap`s do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LicenseState {
    pub(crate) clock: Timestamp,
    pub(crate) licenses: OrdMap<LicenseId, License>,
    pub(crate) allocations: OrdMap<NodeName, Allocation>,
    pub(crate) dedup: DedupTable,
    /// The number the next grant gets.
    pub(crate) next_grant: u64,
    /// How many times an allocation was added or removed: equal counts mean equal
    /// allocations, so the leader's lease table knows when to look again.
    pub(crate) allocation_changes: u64,
    /// Derived: the counted cores of each license's allocations (licenses with none are absent).
    counted: BTreeMap<LicenseId, u64>,
    /// Derived: how many allocations use each MAC address (absent: none). One at most, but
    /// for allocations stored before lease tokens, which could share one.
    macs: OrdMap<MacAddr, usize>,
}

impl LicenseState {
    /// An empty state: no license, no allocation, the clock at the epoch.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cluster clock: the latest agreed calendar time carried by an applied entry.
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// The installed licenses by id.
    pub fn licenses(&self) -> &OrdMap<LicenseId, License> {
        &self.licenses
    }

    /// The current allocations by server.
    pub fn allocations(&self) -> &OrdMap<NodeName, Allocation> {
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

    /// Whether `id` names a request already applied and still remembered: a retry of it is
    /// answered its first outcome by the log, whatever the state is now.
    pub fn remembers(&self, id: &RequestId) -> bool {
        self.dedup.get(id).is_some()
    }

    /// How many times an allocation was added or removed since the state began. Two states
    /// of one log with the same count hold the same allocations.
    pub fn allocation_changes(&self) -> u64 {
        self.allocation_changes
    }

    /// Applies one request and returns its response. See the module documentation.
    pub fn apply(&mut self, request: &Request) -> Response {
        self.apply_with_events(request).0
    }

    /// Applies one request as [`LicenseState::apply`] does, and also returns the usage
    /// events it caused ([`crate::events`]): none for a retry answered from the
    /// exactly-once table, since it changed nothing.
    pub fn apply_with_events(&mut self, request: &Request) -> (Response, Vec<EventKind>) {
        if let Some(time) = request.time {
            self.clock = self.clock.max(time);
        }
        let mut events = Vec::new();
        let response = self.apply_command(&request.request_id, &request.command, &mut events);
        (response, events)
    }

    /// Applies one command under `request_id` at the current clock, adding the events it
    /// causes to `events`. A batch applies each of its requests in turn.
    fn apply_command(
        &mut self,
        request_id: &RequestId,
        command: &Command,
        events: &mut Vec<EventKind>,
    ) -> Response {
        // A batch is not looked up in (nor added to) the exactly-once table: its requests are.
        if let Command::Batch(requests) = command {
            return Ok(self.apply_batch(requests, events));
        }
        self.dedup.expire(self.clock);

        if let Some(earlier) = self.dedup.get(request_id) {
            return if &earlier.command == command {
                earlier.response.clone()
            } else {
                Err(Rejection::new(Code::RequestIdReused))
            };
        }

        let response = match command {
            Command::InstallLicense(license) => {
                let held = self.counted_of(&license.id);
                let response = self.install_license(license);
                events.extend(install_events(license, &response, &held));
                response
            }
            Command::RemoveLicense { license } => {
                let held = self.counted_of(license);
                let response = self.remove_license(license);
                events.extend(removal_events(license, &response, &held));
                response
            }
            Command::Allocate(allocate) => {
                let asked = allocate
                    .license
                    .clone()
                    .or_else(|| self.resolve_license(None).ok().map(|l| l.id.clone()));
                let response = self.allocate(allocate);
                match &response {
                    Ok(Outcome::Allocated(grant)) => events.push(EventKind::Allocated {
                        node: grant.node.clone(),
                        license: grant.allocation.license.clone(),
                        mac: grant.allocation.mac,
                        cores: grant.allocation.cores.get(),
                        counted_cores: grant.allocation.counted_cores,
                        replaced: grant.replaced,
                    }),
                    // `allocate` answers nothing else.
                    Ok(_) => {}
                    Err(rejection) => events.push(EventKind::Refused {
                        node: allocate.node.clone(),
                        license: asked,
                        cores: allocate.cores.get(),
                        code: rejection.code,
                    }),
                }
                response
            }
            Command::Release { node } => {
                let freed = self.remove_allocation(node);
                events.extend(freed_event(node, freed.as_ref(), FreedBy::Released));
                Ok(Outcome::Released {
                    node: node.clone(),
                    freed,
                })
            }
            Command::ReleaseHeld { node, presented } => self.holds(node, *presented).map(|()| {
                let freed = self.remove_allocation(node);
                events.extend(freed_event(node, freed.as_ref(), FreedBy::Released));
                Outcome::Released {
                    node: node.clone(),
                    freed,
                }
            }),
            // Checkpoints, expirations and retention changes are idempotent by nature (they
            // name grants, or a setting), so they are not remembered.
            Command::Checkpoint { leases } => return Ok(self.checkpoint(leases)),
            Command::Expire { leases } => return Ok(self.expire(leases, events)),
            Command::SetEventRetention { retention } => {
                let retention = Retention {
                    max_age_days: retention.max_age_days.max(1),
                    max_events: retention.max_events.max(1),
                };
                events.push(EventKind::RetentionChanged { retention });
                return Ok(Outcome::RetentionSet { retention });
            }
            Command::Batch(requests) => return Ok(self.apply_batch(requests, events)),
        };
        self.dedup.insert(
            request_id.clone(),
            Applied {
                at: self.clock,
                command: command.clone(),
                response: response.clone(),
            },
        );
        response
    }

    /// Applies the requests of a batch in order, each as an entry of its own would be.
    fn apply_batch(&mut self, requests: &[Batched], events: &mut Vec<EventKind>) -> Outcome {
        Outcome::Batch(
            requests
                .iter()
                .map(|r| self.apply_command(&r.request_id, &r.command, events))
                .collect(),
        )
    }

    /// The counted cores of each server allocated under `license`.
    fn counted_of(&self, license: &LicenseId) -> BTreeMap<NodeName, u32> {
        self.allocations
            .iter()
            .filter(|(_, a)| &a.license == license)
            .map(|(node, a)| (node.clone(), a.counted_cores))
            .collect()
    }

    /// Whether a request presenting the token hash `presented` speaks for `node`'s
    /// allocation: yes when the name holds none, when its allocation has no token (stored
    /// before lease tokens) or when the hashes are equal; otherwise `LEASE_TOKEN_REQUIRED`
    /// (none presented) or `LEASE_TOKEN_MISMATCH`.
    ///
    /// The leader checks heartbeats and releases with its own constant-time comparison of
    /// the token before anything reaches the log; this is the deterministic check of a
    /// release at apply, against the allocation the name holds by then.
    pub fn holds(&self, node: &NodeName, presented: Option<TokenHash>) -> Result<(), Rejection> {
        let Some(held) = self.allocations.get(node).and_then(|a| a.token_hash) else {
            return Ok(());
        };
        match presented {
            Some(presented) if presented == held => Ok(()),
            Some(_) => Err(Rejection::new(Code::LeaseTokenMismatch)),
            None => Err(Rejection::new(Code::LeaseTokenRequired)),
        }
    }

    /// Records the remaining time of the named grants that still exist.
    fn checkpoint(&mut self, leases: &[LeaseCheckpoint]) -> Outcome {
        let mut updated = 0;
        for c in leases {
            if let Some(a) = self.allocations.get_mut(&c.node)
                && a.grant == c.grant
            {
                a.remaining_ms = c.remaining_ms.min(a.lease_ttl.as_millis());
                updated += 1;
            }
        }
        Outcome::Checkpointed { updated }
    }

    /// Ends the named grants that still exist, with an event for each.
    fn expire(&mut self, leases: &[LeaseRef], events: &mut Vec<EventKind>) -> Outcome {
        let mut expired = Vec::new();
        for l in leases {
            if self
                .allocations
                .get(&l.node)
                .is_some_and(|a| a.grant == l.grant)
            {
                let freed = self.remove_allocation(&l.node);
                events.extend(freed_event(&l.node, freed.as_ref(), FreedBy::Expired));
                expired.push(l.node.clone());
            }
        }
        Outcome::Expired { expired }
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
    /// oldest grant first, and releases the others.
    fn refit_allocations(&mut self, license: &License) -> Vec<DroppedAllocation> {
        let mut held: Vec<(u64, NodeName)> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.license == license.id)
            .map(|(node, a)| (a.grant, node.clone()))
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
        let token_hash = self.holder_check(req)?;
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
            grant: self.next_grant,
            remaining_ms: req.lease_ttl.as_millis(),
            token_hash,
        };
        self.next_grant += 1;
        self.insert_allocation(req.node.clone(), allocation.clone());
        Ok(Outcome::Allocated(Grant {
            node: req.node.clone(),
            allocation,
            replaced,
            allocated_cores: self.counted_cores(&license_id),
            licensed_cores,
        }))
    }

    /// Who may allocate `req.node` with `req.mac`, and the token hash the allocation gets:
    /// - a name with a live allocation is re-allocated only when the request presents that
    ///   allocation's token (it keeps the token), otherwise `NODE_IN_USE`; an allocation
    ///   stored before tokens existed has none, and is replaced by a request from the same
    ///   MAC, which gets the new token;
    /// - a MAC that another name's live allocation uses is `MAC_IN_USE`;
    /// - otherwise the allocation is new and gets the request's new token.
    ///
    /// The hashes are compared plainly: they are SHA-256 of 128-bit random tokens, so the
    /// time a comparison takes tells nothing usable about a token.
    ///
    /// An entry of stored format 2 (no token hash) skips the check, as format 2 did.
    fn holder_check(&self, req: &Allocate) -> Result<Option<TokenHash>, Rejection> {
        if req.token_hash.is_none() {
            return Ok(None);
        }
        let token_hash = match self.allocations.get(&req.node) {
            None => req.token_hash,
            Some(held) => match held.token_hash {
                Some(held_hash) if req.presented == Some(held_hash) => Some(held_hash),
                Some(_) => return Err(Rejection::new(Code::NodeInUse)),
                None if held.mac == req.mac => req.token_hash,
                None => return Err(Rejection::new(Code::NodeInUse)),
            },
        };
        let users = self.macs.get(&req.mac).copied().unwrap_or(0);
        let own = self
            .allocations
            .get(&req.node)
            .is_some_and(|a| a.mac == req.mac);
        if users > usize::from(own) {
            return Err(Rejection::new(Code::MacInUse));
        }
        Ok(token_hash)
    }

    /// Adds an allocation and its index entries. The server must hold none.
    fn insert_allocation(&mut self, node: NodeName, allocation: Allocation) {
        self.allocation_changes += 1;
        *self.counted.entry(allocation.license.clone()).or_default() +=
            u64::from(allocation.counted_cores);
        *self.macs.entry(allocation.mac).or_default() += 1;
        self.allocations.insert(node, allocation);
    }

    /// Removes a server's allocation and its index entries; returns what it held.
    fn remove_allocation(&mut self, node: &NodeName) -> Option<Allocation> {
        let allocation = self.allocations.remove(node)?;
        self.allocation_changes += 1;
        if let Some(total) = self.counted.get_mut(&allocation.license) {
            *total -= u64::from(allocation.counted_cores);
            if *total == 0 {
                self.counted.remove(&allocation.license);
            }
        }
        if let Some(users) = self.macs.get_mut(&allocation.mac) {
            *users -= 1;
            if *users == 0 {
                self.macs.remove(&allocation.mac);
            }
        }
        Some(allocation)
    }

    /// Rebuilds the derived indexes from the allocations.
    fn rebuild_indexes(&mut self) {
        self.counted.clear();
        self.macs.clear();
        for a in self.allocations.values() {
            *self.counted.entry(a.license.clone()).or_default() += u64::from(a.counted_cores);
            *self.macs.entry(a.mac).or_default() += 1;
        }
    }
}

/// The serialized form of [`LicenseState`]: everything but the derived indexes.
#[derive(Serialize)]
struct StateRef<'a> {
    clock: &'a Timestamp,
    licenses: &'a OrdMap<LicenseId, License>,
    allocations: &'a OrdMap<NodeName, Allocation>,
    dedup: &'a DedupTable,
    next_grant: u64,
    allocation_changes: u64,
}

/// The deserialized form of [`LicenseState`]; the field order matches [`StateRef`].
#[derive(Deserialize)]
struct StateOwned {
    clock: Timestamp,
    licenses: OrdMap<LicenseId, License>,
    allocations: OrdMap<NodeName, Allocation>,
    dedup: DedupTable,
    next_grant: u64,
    allocation_changes: u64,
}

impl Serialize for LicenseState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StateRef {
            clock: &self.clock,
            licenses: &self.licenses,
            allocations: &self.allocations,
            dedup: &self.dedup,
            next_grant: self.next_grant,
            allocation_changes: self.allocation_changes,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LicenseState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let owned = StateOwned::deserialize(d)?;
        Ok(LicenseState::restored(
            owned.clock,
            owned.licenses,
            owned.allocations,
            owned.dedup,
            owned.next_grant,
            owned.allocation_changes,
        ))
    }
}

impl LicenseState {
    /// A state from its stored parts, with its derived index rebuilt.
    pub(crate) fn restored(
        clock: Timestamp,
        licenses: OrdMap<LicenseId, License>,
        allocations: OrdMap<NodeName, Allocation>,
        dedup: DedupTable,
        next_grant: u64,
        allocation_changes: u64,
    ) -> LicenseState {
        let mut state = LicenseState {
            clock,
            licenses,
            allocations,
            dedup,
            next_grant,
            allocation_changes,
            counted: BTreeMap::new(),
            macs: OrdMap::new(),
        };
        state.rebuild_indexes();
        state
    }
}

#[cfg(test)]
mod tests;
