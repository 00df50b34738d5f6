//! The lease keeper: while this node leads, every tick it confirms its leadership, proposes
//! an `Expire` entry for the leases it measured as over, and a `Checkpoint` of the leases
//! whose logged time is stale or whose floor lags ([`super::lessor::Lessor::due`]). Once a
//! checkpoint is committed the lease table learns it.
//!
//! It also proposes the node's configured usage history retention when the one in force
//! differs (after a change of leader or of the setting: `licd_raft::events`).
//!
//! It proposes nothing while no lease is over and none is held, so an idle cluster does not
//! grow its log. Whether this node leads is decided by [`super::status::leads`], the rule
//! every part of the node uses. The task holds only a weak handle on the node and is owned
//! by the node's [`super::tasks::TaskGuard`]: it ends with the node.

use std::sync::Weak;
use std::time::Duration;

use licd_raft::types::RequestId;
use licd_raft::{Command, Outcome, Rejection};

use super::{Inner, Node};

/// When the keeper acts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// How often it looks for leases that are over.
    pub every: Duration,
    /// How far the logged time of a lease may run ahead of what is left before it is
    /// checkpointed.
    pub checkpoint_every: Duration,
}

pub(super) async fn run(node: Weak<Inner>, schedule: Schedule) {
    let mut interval = tokio::time::interval(schedule.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        interval.tick().await;
        let Some(inner) = node.upgrade() else {
            return;
        };
        let node = Node { inner };
        if !node.is_leader() {
            continue;
        }
        let term = node.term();
        sync_event_retention(&node).await;
        let Ok((expired, checkpoint, at)) = node
            .read_leases(|view| {
                let expired = view.lessor.expired(view.at);
                let checkpoint = view.lessor.due(view.at, schedule.checkpoint_every);
                (expired, checkpoint, view.at)
            })
            .await
        else {
            continue;
        };
        if !expired.is_empty() {
            seq += 1;
            let command = Command::Expire { leases: expired };
            if let Some(Ok(Outcome::Expired { expired })) =
                propose(&node, "expire", term, seq, command).await
            {
                node.meter().leases_expired(expired.len());
            }
        }
        if !checkpoint.is_empty() {
            seq += 1;
            let command = Command::Checkpoint {
                leases: checkpoint.clone(),
            };
            if propose(&node, "checkpoint", term, seq, command)
                .await
                .is_some()
            {
                node.lease_checkpoint_committed(&checkpoint, at);
            }
        }
        drop(node);
    }
}

/// Proposes this node's configured usage history retention when the one in force differs:
/// the leader's `[events]` setting is the cluster's. A history that has not started is left
/// to the first write ([`Node::propose`] starts it), so that an idle cluster's log does not
/// grow.
async fn sync_event_retention(node: &Node) {
    let wanted = node.configured_event_retention();
    match node.read_local(|s| s.events.retention()) {
        Some(current) if current != wanted => {}
        _ => return,
    }
    if let Err(e) = node.propose_event_retention().await {
        tracing::debug!(error = %e, "event retention entry not applied");
    }
}

/// Proposes a keeper entry. These are not deduplicated; the id only needs to be valid, and is
/// unique per node and term for readable logs.
/// Returns the entry's outcome once it was committed and applied.
async fn propose(
    node: &Node,
    kind: &str,
    term: u64,
    seq: u64,
    command: Command,
) -> Option<Result<Outcome, Rejection>> {
    let request_id = RequestId::new(format!("{kind}-{}-{term}-{seq}", node.id())).ok()?;
    match node.propose(request_id, command).await {
        Ok(proposed) => Some(proposed.result),
        Err(e) => {
            tracing::debug!(error = %e, kind, "lease keeper entry not applied");
            None
        }
    }
}
