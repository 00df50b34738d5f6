//! Linearizable reads that share heartbeat rounds.
//!
//! Every license check must be answered by a node that has just confirmed, with a majority,
//! that it still leads (openraft's `ensure_linearizable`, the ReadIndex of the Raft paper).
//! A round per check would cost a heartbeat round trip per check; instead, checks that arrive
//! while a round is running wait for the *next* round, which starts after they arrived, so
//! each check is still covered by a confirmation that began after its arrival. A round serves
//! everyone who queued before it started.
//!
//! The rounds run in one task owned by a [`TaskGuard`]: it ends with the node. The queue is
//! bounded ([`MAX_WAITING`]): past it, a read waits for room rather than the node's memory
//! growing without limit under a flood of checks.

use licd_raft::RaftNodeId;
use openraft::BasicNode;
use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::LicdRaft;
use super::tasks::TaskGuard;

type ReadResult = Result<(), RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>>;

/// The most reads queued for the next round.
pub const MAX_WAITING: usize = 16_384;

/// The handle through which requests join a read round.
#[derive(Clone)]
pub struct ReadBatcher {
    tx: mpsc::Sender<oneshot::Sender<ReadResult>>,
}

impl ReadBatcher {
    /// Starts the task that runs the rounds; it stops when the guard is dropped.
    pub fn spawn(raft: LicdRaft) -> (Self, TaskGuard) {
        let (tx, rx) = mpsc::channel(MAX_WAITING);
        let guard = TaskGuard::spawn("read rounds", run(raft, rx));
        (ReadBatcher { tx }, guard)
    }

    /// Waits for a round that started after this call, and returns its outcome.
    pub async fn confirm(&self) -> ReadResult {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).await.is_err() {
            return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        }
        rx.await
            .unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped)))
    }
}

async fn run(raft: LicdRaft, mut rx: mpsc::Receiver<oneshot::Sender<ReadResult>>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        // Everyone queued so far arrived before this round starts.
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let result = raft.ensure_linearizable().await.map(|_| ());
        for waiter in waiting.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}
