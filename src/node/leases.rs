//! The leader's side of leases and dates on a [`Node`]: renewing a lease without a log write,
//! reading the state together with the leader's lease times, and the cluster's calendar time.

use std::time::Instant;

use licd_raft::command::{Allocation, Rejection};
use licd_raft::types::{LicenseId, NodeName, Timestamp};
use licd_raft::{Code, LicenseState};

use crate::lease_token::{LeaseToken, check_presented};

use super::calendar::{Agreement, SAMPLE_FRESHNESS, agree};
use super::lessor::Lessor;
use super::{Node, NodeError, now};

/// A renewed lease.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The server's allocation.
    pub allocation: Allocation,
    /// Lease time left after the renewal, in milliseconds: the whole ttl.
    pub remaining_ms: u64,
    /// The license's counted cores over all servers.
    pub allocated_cores: u64,
    /// The license's `max_cores`.
    pub licensed_cores: u32,
    /// Calendar time left until the license expires, in milliseconds, if it ever does.
    pub license_expires_in_ms: Option<u64>,
}

/// What a lease-aware read sees: the applied state, the leader's lease table brought in step
/// with it, the calendar time, and the monotonic instant of the read.
pub struct LeaseView<'a> {
    /// The applied license state.
    pub state: &'a LicenseState,
    /// The leader's lease table.
    pub lessor: &'a mut Lessor,
    /// The cluster's calendar time (never earlier than the cluster clock).
    pub today: Timestamp,
    /// The instant lease times are measured at.
    pub at: Instant,
}

impl LeaseView<'_> {
    /// Lease time left of `node`'s allocation `a` that every leader honours (0 once the
    /// lease is over by this leader's measure).
    pub fn remaining(&self, node: &NodeName, a: &Allocation) -> u64 {
        if self.lessor.is_live(node, a.grant, self.at) {
            self.lessor.remaining(node, a.grant, self.at).max(1)
        } else {
            0
        }
    }
}

/// Calendar time from `today` until `license` expires, in milliseconds (`None`: never, or no
/// such license).
pub fn expires_in(state: &LicenseState, license: &LicenseId, today: Timestamp) -> Option<u64> {
    let at = state.licenses().get(license)?.expires_at?;
    Some(at.0.saturating_sub(today.0))
}

impl Node {
    /// Calendar time left until `license` expires, from this node's applied state (not a
    /// confirmed read: for the answer of a write that just used the license).
    pub fn license_expires_in(&self, license: &LicenseId) -> Option<u64> {
        let today = self.calendar_now();
        self.read_local(|s| {
            let today = today.map_or(s.licenses.clock(), |t| t.max(s.licenses.clock()));
            expires_in(&s.licenses, license, today)
        })
    }

    /// How the voters' clocks stand, from the samples of this node's Raft traffic.
    pub fn agreement(&self) -> Agreement {
        // Only the voter ids: this runs on every write and lease-aware read, so the metrics
        // are not cloned.
        let voters: Vec<_> = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        let samples = self.inner.contacts.clock_offsets(SAMPLE_FRESHNESS);
        agree(
            self.inner.id,
            &voters,
            &samples,
            self.inner.clock_skew_bound,
        )
    }

    /// The cluster's calendar time now, or `None` before the voters' clocks ever agreed
    /// (see [`super::calendar`]).
    pub fn calendar_now(&self) -> Option<Timestamp> {
        let agreement = self.agreement();
        let mut calendar = self
            .inner
            .calendar
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        calendar.now(now(), &agreement, Instant::now())
    }

    /// Confirms leadership like [`Node::read`], then runs `f` on the state and the lease
    /// table, brought in step with each other for this term.
    pub async fn read_leases<T>(&self, f: impl FnOnce(LeaseView<'_>) -> T) -> Result<T, NodeError> {
        let today = self.calendar_now();
        let confirmed = Instant::now();
        self.read(|applied| {
            // The term of the confirmed leadership: read after the confirmation, so a node
            // deposed and elected again meanwhile rebuilds its table for the new term.
            let term = self.term();
            let state = &applied.licenses;
            let at = Instant::now();
            let mut lessor = self.inner.lessor.lock().unwrap_or_else(|p| p.into_inner());
            let promoting = lessor.term() != Some(term);
            lessor.sync(term, state, confirmed, at);
            if cfg!(feature = "bug-wall-clock-leases") && promoting {
                // Fault injection: lease time measured against this node's wall clock.
                let behind = now().0.saturating_sub(state.clock().0);
                lessor.shorten_all(std::time::Duration::from_millis(behind), at);
            }
            let today = today.map_or(state.clock(), |t| t.max(state.clock()));
            f(LeaseView {
                state,
                lessor: &mut lessor,
                today,
                at,
            })
        })
        .await
    }

    /// Records that a checkpoint computed at `at` was committed (see [`Lessor::checkpointed`]).
    pub fn lease_checkpoint_committed(
        &self,
        checkpoint: &[licd_raft::command::LeaseCheckpoint],
        at: Instant,
    ) {
        let mut lessor = self.inner.lessor.lock().unwrap_or_else(|p| p.into_inner());
        lessor.checkpointed(checkpoint, at);
    }

    /// Renews `node`'s lease for its whole ttl, after confirming leadership, without a log
    /// write. Refused with `NOT_ALLOCATED` when the server holds no allocation or its lease
    /// is already over, `LICENSE_EXPIRED` when its license has expired, and
    /// `LEASE_TOKEN_REQUIRED` / `LEASE_TOKEN_MISMATCH` when `token` is not the allocation's
    /// (an allocation stored before lease tokens is renewed without one).
    pub async fn heartbeat(
        &self,
        node: &NodeName,
        token: Option<&LeaseToken>,
    ) -> Result<Renewal, NodeError> {
        let answer = self
            .read_leases(|view| {
                let (allocation, licensed_cores) = view.state.renewable(node, view.today)?;
                check_presented(allocation.token_hash.as_ref(), token)?;
                let remaining_ms = view
                    .lessor
                    .renew(node, allocation.grant, view.at)
                    .ok_or_else(|| Rejection::new(Code::NotAllocated))?;
                Ok::<_, Rejection>(Renewal {
                    allocation: allocation.clone(),
                    remaining_ms,
                    allocated_cores: view.state.counted_cores(&allocation.license),
                    licensed_cores,
                    license_expires_in_ms: expires_in(view.state, &allocation.license, view.today),
                })
            })
            .await?;
        Ok(answer?)
    }
}
