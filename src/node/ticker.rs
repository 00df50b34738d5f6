//! The lease ticker: while this node leads, it proposes a `Tick` whenever a lease has expired
//! by its wall clock, so that expired leases free their cores even when nobody writes.
//!
//! It proposes nothing while no lease has expired, so an idle cluster does not grow its log.
//! Whether this node leads is decided by [`super::status::leads`], the rule every part of the
//! node uses; the task is owned by the node's [`super::tasks::TaskGuard`] and ends with it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use licd_raft::types::RequestId;
use licd_raft::{Command, RaftNodeId, Request};
use licd_storage::AppliedState;

use super::{LicdRaft, now};

pub(super) async fn run(
    raft: LicdRaft,
    state: Arc<RwLock<AppliedState>>,
    id: RaftNodeId,
    every: Duration,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        interval.tick().await;
        let (leading, term) = {
            let m = raft.metrics();
            let m = m.borrow();
            (super::status::leads(&m, id), m.current_term)
        };
        if !leading {
            continue;
        }
        let time = now();
        let due = {
            let s = state.read().unwrap_or_else(|p| p.into_inner());
            s.licenses.next_lease_expiry().is_some_and(|at| at <= time)
        };
        if !due {
            continue;
        }
        seq += 1;
        // Ticks are not deduplicated; the id only needs to be valid and is unique per leader
        // term for readable logs.
        let Ok(request_id) = RequestId::new(format!("tick-{id}-{term}-{seq}")) else {
            continue;
        };
        let request = Request {
            time,
            request_id,
            command: Command::Tick,
        };
        if let Err(e) = raft.client_write(request).await {
            tracing::debug!(error = %e, "tick not applied");
        }
    }
}
