//! The read side of [`LicenseState`]: the license check and the usage report.
//!
//! Queries never change the state. The node answers them only after confirming it still leads
//! (a linearizable read); what they compute is a pure function of the state, of `now`, the
//! cluster's calendar time as the leader knows it (never earlier than the cluster clock), and
//! of the lease times the leader measured, which the caller passes in: the state itself knows
//! only each lease's checkpointed remaining time.

use serde::{Deserialize, Serialize};

use crate::command::{Allocation, Code, Rejection};
use crate::license::License;
use crate::state::LicenseState;
use crate::types::{Cores, LicenseId, MacAddr, NodeName, Timestamp};

/// What a license check answers for one application server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The server asked about.
    pub node: NodeName,
    /// True exactly when `code` is [`Code::Valid`].
    pub valid: bool,
    /// [`Code::Valid`], [`Code::NotAllocated`], [`Code::LeaseExpired`],
    /// [`Code::LicenseExpired`], [`Code::NoLicense`] or [`Code::InvalidMultiServerLicense`].
    pub code: Code,
    /// A human-readable explanation.
    pub message: String,
    /// The license the server is allocated under, if any.
    pub license: Option<LicenseSummary>,
    /// The cores the server counts against the license, if allocated.
    pub counted_cores: Option<u32>,
    /// The license's counted cores over all servers.
    pub allocated_cores: Option<u64>,
    /// The license's `max_cores`.
    pub licensed_cores: Option<u32>,
    /// Lease time left, in milliseconds, as the leader measures it (0 once it is over).
    pub lease_remaining_ms: Option<u64>,
    /// The calendar time the check was evaluated at.
    pub checked_at: Timestamp,
}

/// The parts of a license an application or an operator looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
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

impl From<&License> for LicenseSummary {
    fn from(l: &License) -> Self {
        LicenseSummary {
            id: l.id.clone(),
            customer: l.customer.clone(),
            serial: l.serial,
            issued_at: l.issued_at,
            expires_at: l.expires_at,
            max_cores: l.max_cores,
            min_cores_per_node: l.min_cores_per_node,
            features: l.features.iter().cloned().collect(),
        }
    }
}

/// A license's consumption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The license.
    pub license: LicenseSummary,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// Counted cores over all servers.
    pub allocated_cores: u64,
    /// `licensed_cores - allocated_cores`.
    pub free_cores: u64,
    /// Whether the license has expired at the time of the report.
    pub expired: bool,
    /// Each allocated server, by name.
    pub nodes: Vec<NodeUsage>,
}

/// One server's share of a license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
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

impl LicenseState {
    /// Is `node` licensed at `now`? When `mac` is given, it must be the MAC the server was
    /// allocated with and one the license allows. `remaining` gives the lease time left of an
    /// allocation (the leader's measure); a lease with none left is `LEASE_EXPIRED`.
    ///
    /// `now` is raised to the cluster clock if it is earlier, so a calendar behind the cluster's
    /// never revives an expired license.
    pub fn check(
        &self,
        node: &NodeName,
        mac: Option<MacAddr>,
        now: Timestamp,
        remaining: impl FnOnce(&NodeName, &Allocation) -> u64,
    ) -> CheckResult {
        let now = now.max(self.clock);
        let mut result = CheckResult {
            node: node.clone(),
            valid: false,
            code: Code::NoLicense,
            message: String::new(),
            license: None,
            counted_cores: None,
            allocated_cores: None,
            licensed_cores: None,
            lease_remaining_ms: None,
            checked_at: now,
        };
        let allocated = self
            .allocations
            .get(node)
            .and_then(|a| self.licenses.get(&a.license).map(|l| (a, l)));
        result.code = match allocated {
            _ if self.licenses.is_empty() => Code::NoLicense,
            None => {
                let known_mac = mac.is_none_or(|mac| {
                    self.licenses
                        .values()
                        .any(|l| l.allowed_macs.contains(&mac))
                });
                if known_mac {
                    Code::NotAllocated
                } else {
                    Code::InvalidMultiServerLicense
                }
            }
            Some((allocation, license)) => {
                result.license = Some(license.into());
                result.counted_cores = Some(allocation.counted_cores);
                result.allocated_cores = Some(self.counted_cores(&license.id));
                result.licensed_cores = Some(license.max_cores);
                let left = remaining(node, allocation);
                result.lease_remaining_ms = Some(left);
                if mac.is_some_and(|mac| {
                    mac != allocation.mac || !license.allowed_macs.contains(&mac)
                }) {
                    Code::InvalidMultiServerLicense
                } else if license.is_expired_at(now) {
                    Code::LicenseExpired
                } else if left == 0 {
                    Code::LeaseExpired
                } else {
                    Code::Valid
                }
            }
        };
        result.valid = result.code == Code::Valid;
        result.message = result.code.default_message().to_string();
        result
    }

    /// The consumption of one license at `now`, or `None` if no such license is installed;
    /// `remaining` gives each allocation's lease time left.
    pub fn usage(
        &self,
        id: &LicenseId,
        now: Timestamp,
        remaining: impl Fn(&NodeName, &Allocation) -> u64,
    ) -> Option<Usage> {
        let license = self.licenses.get(id)?;
        let allocated_cores = self.counted_cores(id);
        let nodes = self
            .allocations
            .iter()
            .filter(|(_, a)| &a.license == id)
            .map(|(node, a)| NodeUsage {
                node: node.clone(),
                mac: a.mac,
                cores: a.cores,
                counted_cores: a.counted_cores,
                lease_remaining_ms: remaining(node, a),
            })
            .collect();
        Some(Usage {
            license: license.into(),
            licensed_cores: license.max_cores,
            allocated_cores,
            free_cores: u64::from(license.max_cores).saturating_sub(allocated_cores),
            expired: license.is_expired_at(now.max(self.clock)),
            nodes,
        })
    }

    /// The consumption of every installed license at `now`, by license id.
    pub fn usage_all(
        &self,
        now: Timestamp,
        remaining: impl Fn(&NodeName, &Allocation) -> u64,
    ) -> Vec<Usage> {
        self.licenses
            .keys()
            .filter_map(|id| self.usage(id, now, &remaining))
            .collect()
    }

    /// Whether `node`'s lease may be renewed at `now`: it holds an allocation under a
    /// license that has not expired. Returns the allocation and its license's `max_cores`.
    pub fn renewable(
        &self,
        node: &NodeName,
        now: Timestamp,
    ) -> Result<(&Allocation, u32), Rejection> {
        let allocation = self
            .allocations
            .get(node)
            .ok_or_else(|| Rejection::new(Code::NotAllocated))?;
        let license = self
            .licenses
            .get(&allocation.license)
            .ok_or_else(|| Rejection::new(Code::LicenseNotFound))?;
        if license.is_expired_at(now.max(self.clock)) {
            return Err(Rejection::new(Code::LicenseExpired));
        }
        Ok((allocation, license.max_cores))
    }
}
