//! [`Lessor`]: the leader's table of leases, measured on its monotonic clock.
//!
//! The replicated state records grants (with their ttl), releases, expirations and, now and
//! then, checkpoints of each lease's remaining time; it never compares times. The leader
//! holds the live deadlines here, in memory, as etcd's lessor does:
//! - a heartbeat renews a lease here, after the leader confirmed its leadership, without a
//!   log write;
//! - the leader proposes `Expire` for the leases whose deadline passed, and `Checkpoint`s of
//!   the remaining times, so that a later leader starts from recent figures;
//! - a newly elected leader ([`Lessor::sync`] in a new term) gives every lease its
//!   checkpointed remaining time **plus the election bound**, counted from its promotion, so
//!   an election never shortens a lease; a lease granted after the promotion starts with its
//!   whole ttl.
//!
//! The election bound is a grace of the term that granted it: checkpoints record a lease's
//! remaining time without it, so it does not pile up over elections, and a renewal ends it.
//! The leader checkpoints a lease whenever the time the log holds for it exceeds what is
//! really left by more than the checkpoint interval ([`Lessor::due`]; for leases longer than
//! 16 intervals, by a sixteenth of the ttl). What a change of leader can add to a dead
//! server's lease is that excess plus the time the election took: a dead server's cores are
//! freed at most `ttl + max(checkpoint interval, ttl/16) + election bound + tick` after its
//! last successful heartbeat when leadership moves once meanwhile, plus as much again for
//! each further change of leader during that time. An election is counted as taking at most
//! the election bound: time with no leader at all (a majority down) is measured by nobody and
//! lengthens a dead server's lease by as much.
//!
//! **What an answer promises.** A renewal restarts the lease here, but a successor knows
//! only the log: the latest committed checkpoint, plus the election bound, from its
//! promotion. So each lease also keeps a *floor*: the instant before which no successor can
//! end it (the promotion or grant instant plus what the log holds, or a committed
//! checkpoint's instant plus its value, each plus the election bound). Answers give the
//! remaining time up to the earlier of the deadline and the floor, so a client that counts
//! it down from its send time never holds a lease longer than any leader will honour, and a
//! failover never shortens a lease a client was told about.
//!
//! Every method takes the current instant, so the rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use licd_raft::LicenseState;
use licd_raft::command::{LeaseCheckpoint, LeaseRef};
use licd_raft::types::NodeName;

/// One live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lease {
    /// The grant it belongs to.
    grant: u64,
    /// Its renewal length.
    ttl: Duration,
    /// When it ends unless renewed, grace included.
    deadline: Instant,
    /// The election grace this term's promotion added (zero once renewed, and for grants of
    /// this term): not part of what a checkpoint records.
    grace: Duration,
    /// No leader after this one ends the lease before this instant (see the module essay).
    floor: Instant,
    /// The remaining time the log holds for the grant: what a successor would give (plus
    /// the election bound) from its promotion.
    logged: Duration,
}

/// The leader's leases.
#[derive(Debug)]
pub struct Lessor {
    /// The time an election may take: added to every lease at promotion.
    election_bound: Duration,
    /// The term the table was built for (`None` before the first promotion).
    term: Option<u64>,
    /// The state's allocation change count when the table was last brought in step.
    seen_changes: Option<u64>,
    leases: HashMap<NodeName, Lease>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Lessor {
    /// An empty table; `election_bound` is the longest an election may take.
    pub fn new(election_bound: Duration) -> Self {
        Lessor {
            election_bound,
            term: None,
            seen_changes: None,
            leases: HashMap::new(),
        }
    }

    /// Brings the table in step with the applied `state` while this node leads in `term`.
    ///
    /// Call it only after confirming leadership (so `state` has applied every entry of
    /// earlier terms), with `confirmed` the instant that confirmation started: no later
    /// leader can have been elected before it. In a new term the table is rebuilt: every
    /// allocation gets its checkpointed remaining time plus the election bound from `now`.
    /// Within a term, new grants start with their full ttl and leases whose grant is gone are
    /// dropped.
    pub fn sync(&mut self, term: u64, state: &LicenseState, confirmed: Instant, now: Instant) {
        let promoted = self.term != Some(term);
        if promoted {
            self.term = Some(term);
            self.leases.clear();
            self.seen_changes = None;
        } else if self.seen_changes == Some(state.allocation_changes()) {
            return;
        }
        let allocations = state.allocations();
        self.leases
            .retain(|node, l| allocations.get(node).is_some_and(|a| a.grant == l.grant));
        let extra = if promoted {
            self.election_bound
        } else {
            Duration::ZERO
        };
        let bound = self.election_bound;
        for (node, a) in allocations {
            let logged = Duration::from_millis(a.remaining_ms);
            self.leases.entry(node.clone()).or_insert_with(|| Lease {
                grant: a.grant,
                ttl: Duration::from_millis(a.lease_ttl.as_millis()),
                deadline: now + logged + extra,
                grace: extra,
                // A successor promotes after `confirmed` and gives at least what the log
                // holds for this grant (or a later checkpoint of this leader's, which
                // `checkpointed` accounts for) plus the bound.
                floor: confirmed.min(now) + logged + bound,
                logged,
            });
        }
        self.seen_changes = Some(state.allocation_changes());
    }

    /// Lease time left of `node`'s grant `grant` that every leader honours, in milliseconds:
    /// up to the earlier of this leader's deadline and the floor (0 when over or unknown).
    pub fn remaining(&self, node: &NodeName, grant: u64, now: Instant) -> u64 {
        self.leases
            .get(node)
            .filter(|l| l.grant == grant)
            .map_or(0, |l| {
                millis(l.deadline.min(l.floor).saturating_duration_since(now))
            })
    }

    /// Whether `node`'s grant `grant` is live by this leader's measure.
    pub fn is_live(&self, node: &NodeName, grant: u64, now: Instant) -> bool {
        self.leases
            .get(node)
            .is_some_and(|l| l.grant == grant && l.deadline > now)
    }

    /// Renews `node`'s live lease of grant `grant` for its whole ttl; returns the remaining
    /// time every leader honours (see [`Lessor::remaining`]), or `None` when the lease is
    /// over (or unknown): it cannot be renewed.
    pub fn renew(&mut self, node: &NodeName, grant: u64, now: Instant) -> Option<u64> {
        let lease = self.leases.get_mut(node).filter(|l| l.grant == grant)?;
        if lease.deadline <= now {
            return None;
        }
        lease.deadline = now + lease.ttl;
        lease.grace = Duration::ZERO;
        Some(self.remaining(node, grant, now))
    }

    /// Raises the floors after `checkpoint`, computed at `at`, was committed: a successor's
    /// log holds it (or a later one), and the successor promotes after `at`.
    pub fn checkpointed(&mut self, checkpoint: &[LeaseCheckpoint], at: Instant) {
        for c in checkpoint {
            if let Some(lease) = self.leases.get_mut(&c.node)
                && lease.grant == c.grant
            {
                let value = Duration::from_millis(c.remaining_ms);
                lease.floor = lease.floor.max(at + value + self.election_bound);
                lease.logged = value;
            }
        }
    }

    /// The leases whose deadline has passed: what an `Expire` entry should end.
    pub fn expired(&self, now: Instant) -> Vec<LeaseRef> {
        let mut over: Vec<LeaseRef> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(node, l)| LeaseRef {
                node: node.clone(),
                grant: l.grant,
            })
            .collect();
        over.sort_by(|a, b| a.node.cmp(&b.node));
        over
    }

    /// The remaining time of every live lease, without the election grace: what a
    /// `Checkpoint` entry should record.
    pub fn checkpoint(&self, now: Instant) -> Vec<LeaseCheckpoint> {
        self.live_where(now, |_, _| true)
    }

    /// The live leases a checkpoint should record now, with their remaining time (grace
    /// left out): those whose logged time a successor would give exceeds what is really
    /// left by more than `interval` (or a sixteenth of the ttl, for long leases), so a dead
    /// server's lease is not restarted from stale figures; and those whose floor is less
    /// than half a ttl away, so renewals keep promising most of a ttl.
    pub fn due(&self, now: Instant, interval: Duration) -> Vec<LeaseCheckpoint> {
        self.live_where(now, |l, left| {
            let stale = l.logged.saturating_sub(left) > interval.max(l.ttl / 16);
            let lagging = l.floor < now + l.ttl / 2;
            stale || lagging
        })
    }

    /// The live leases that `keep` (given a lease and its time left, grace left out)
    /// accepts, as checkpoint entries sorted by server.
    fn live_where(
        &self,
        now: Instant,
        keep: impl Fn(&Lease, Duration) -> bool,
    ) -> Vec<LeaseCheckpoint> {
        let mut live: Vec<LeaseCheckpoint> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline > now)
            .filter_map(|(node, l)| {
                let left = (l.deadline - now).saturating_sub(l.grace);
                keep(l, left).then(|| LeaseCheckpoint {
                    node: node.clone(),
                    grant: l.grant,
                    remaining_ms: millis(left),
                })
            })
            .collect();
        live.sort_by(|a, b| a.node.cmp(&b.node));
        live
    }

    /// The term the table was last brought in step for.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// Pulls every deadline `by` earlier (fault injection only: the `bug-wall-clock-leases`
    /// feature, which must be caught by the fault harness).
    pub fn shorten_all(&mut self, by: Duration, now: Instant) {
        for lease in self.leases.values_mut() {
            lease.deadline = lease.deadline.checked_sub(by).unwrap_or(now).max(now);
        }
    }

    /// How many leases the table holds.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether the table holds no lease.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }
}

#[cfg(test)]
mod tests;
