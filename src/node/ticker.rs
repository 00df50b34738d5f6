//! The lease keeper: while this node leads, every tick it confirms its leadership, proposes
//! an `Expire` entry for the leases it measured as over, and, every checkpoint interval (and
//! at the first tick of a new term), a `Checkpoint` of every live lease's remaining time.
//!
//! It proposes nothing while no lease is over and none is held, so an idle cluster does not
//! grow its log. Whether this node leads is decided by [`super::status::leads`], the rule
//! every part of the node uses. The task holds only a weak handle on the node and is owned
//! by the node's [`super::tasks::TaskGuard`]: it ends with the node.

use std::sync::Weak;
use std::time::{Duration, Instant};

use licd_raft::Command;
use licd_raft::types::RequestId;

use super::{Inner, Node};

/// When the keeper acts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Schedule {
    /// How often it looks for leases that are over.
    pub every: Duration,
    /// How often it checkpoints the remaining times.
    pub checkpoint_every: Duration,
}

pub(super) async fn run(node: Weak<Inner>, schedule: Schedule) {
    let mut interval = tokio::time::interval(schedule.every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    // The term and the time of the last checkpoint this node proposed.
    let mut checkpointed: Option<(u64, Instant)> = None;
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
        let due = checkpointed
            .is_none_or(|(t, at)| t != term || at.elapsed() >= schedule.checkpoint_every);
        let Ok((expired, checkpoint)) = node
            .read_leases(|view| {
                let expired = view.lessor.expired(view.at);
                let checkpoint = if due && !view.lessor.is_empty() {
                    view.lessor.checkpoint(view.at)
                } else {
                    Vec::new()
                };
                (expired, checkpoint)
            })
            .await
        else {
            continue;
        };
        if !expired.is_empty() {
            seq += 1;
            propose(
                &node,
                "expire",
                term,
                seq,
                Command::Expire { leases: expired },
            )
            .await;
        }
        if due {
            checkpointed = Some((term, Instant::now()));
            if !checkpoint.is_empty() {
                seq += 1;
                let command = Command::Checkpoint { leases: checkpoint };
                propose(&node, "checkpoint", term, seq, command).await;
            }
        }
        drop(node);
    }
}

/// Proposes a keeper entry. These are not deduplicated; the id only needs to be valid, and is
/// unique per node and term for readable logs.
async fn propose(node: &Node, kind: &str, term: u64, seq: u64, command: Command) {
    let Ok(request_id) = RequestId::new(format!("{kind}-{}-{term}-{seq}", node.id())) else {
        return;
    };
    if let Err(e) = node.propose(request_id, command).await {
        tracing::debug!(error = %e, kind, "lease keeper entry not applied");
    }
}
