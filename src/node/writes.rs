//! Group commit: the writes that arrive while earlier ones are on their way into the log share
//! one log entry.
//!
//! openraft 0.9's Raft core appends each proposal as an entry of its own and awaits that
//! append's flush before it reads the next proposal, so N writes proposed at once cost N
//! flushes in a row on the leader, each followed by its own replication round and its own
//! flush on every follower. Here every write goes through one queue instead; a task takes
//! everything queued when it takes the first (at most [`MAX_BATCH`]) and proposes it as one
//! entry: the command itself when it is alone, a [`Command::Batch`] otherwise, which every
//! replica applies request by request exactly as it would apply one entry each
//! (`licd_raft::state`). A license install, the one large command, always has an entry of
//! its own. At most [`IN_FLIGHT`] entries are proposed and not yet answered at a
//! time, so that while one is being flushed and replicated the writes arriving meanwhile
//! gather for the next, rather than each becoming an entry of its own.
//!
//! Every request keeps its own request id inside the batch (the exactly-once table
//! remembers each), and each caller gets its own response, with the batch entry's log id.
//! The entry is stamped with the cluster's calendar time when the batch is proposed.
//!
//! The task is owned by a [`TaskGuard`](super::TaskGuard) and ends with the node; the queue is
//! bounded ([`MAX_WAITING`]).

use std::sync::{Arc, Weak};

use licd_raft::command::Batched;
use licd_raft::types::{RequestId, Timestamp};
use licd_raft::{Command, Outcome, RaftNodeId, Request};
use openraft::BasicNode;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Inner, LicdRaft, Node, Proposed};

type WriteError = RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>;
type WriteResult = Result<Proposed, WriteError>;

/// The most requests in one log entry.
pub const MAX_BATCH: usize = 256;

/// The most entries proposed through the queue and not yet answered.
pub const IN_FLIGHT: usize = 2;

/// The most writes queued for the next entry.
pub const MAX_WAITING: usize = 16_384;

/// A write waiting for its entry.
pub struct Pending {
    request_id: RequestId,
    command: Command,
    reply: oneshot::Sender<WriteResult>,
}

/// The handle through which writes join the next entry.
#[derive(Clone)]
pub struct WriteBatcher {
    tx: mpsc::Sender<Pending>,
}

impl WriteBatcher {
    /// The handle and the queue [`run`] serves.
    pub fn channel() -> (Self, mpsc::Receiver<Pending>) {
        let (tx, rx) = mpsc::channel(MAX_WAITING);
        (WriteBatcher { tx }, rx)
    }

    /// Proposes `command` under `request_id` in the next entry and waits until it is applied.
    pub async fn propose(&self, request_id: RequestId, command: Command) -> WriteResult {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            request_id,
            command,
            reply,
        };
        if self.tx.send(pending).await.is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

/// Serves the queue until it closes or the node is gone: takes what is queued, proposes it as
/// one entry stamped with the node's calendar time, and answers each write.
pub async fn run(mut rx: mpsc::Receiver<Pending>, node: Weak<Inner>) {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    // A license install taken from the queue while a batch was being filled: it goes first
    // into the next entry, on its own.
    let mut carried: Option<Pending> = None;
    loop {
        // Room first, then the writes: those that arrive while every slot is taken gather.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while !alone(&batch[0].command) && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(more) if alone(&more.command) => {
                    carried = Some(more);
                    break;
                }
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let Some(inner) = node.upgrade() else {
            return;
        };
        let node = Node { inner };
        let time = node.calendar_now();
        node.meter().write_entry(batch.len());
        let raft = node.inner.raft.clone();
        drop(node);
        tokio::spawn(async move {
            propose(&raft, time, batch).await;
            drop(slot);
        });
    }
}

/// Whether `command` gets an entry of its own: a license install, which can be as large as
/// the API's body limit, so that a batch (and an append of many batches to a follower) stays
/// well within the size a Raft message may have. Every other command is a few hundred bytes
/// at most, or a lease checkpoint, one line per lease.
fn alone(command: &Command) -> bool {
    matches!(command, Command::InstallLicense(_))
}

/// Proposes `batch` as one entry (a lone write as itself) and answers each of its writes.
async fn propose(raft: &LicdRaft, time: Option<Timestamp>, batch: Vec<Pending>) {
    let lone = batch.len() == 1;
    let (mut requests, replies): (Vec<Batched>, Vec<_>) = batch
        .into_iter()
        .map(|p| {
            let request = Batched {
                request_id: p.request_id,
                command: p.command,
            };
            (request, p.reply)
        })
        .unzip();
    let entry = match requests.pop() {
        Some(only) if lone => Request {
            time,
            request_id: only.request_id,
            command: only.command,
        },
        last => Request {
            time,
            // Not remembered: the exactly-once table keeps each request's own id.
            request_id: RequestId::new("batch").expect("a valid request id"),
            command: Command::Batch(requests.into_iter().chain(last).collect()),
        },
    };
    let written = match raft.client_write(entry).await {
        Ok(written) => written,
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    let results = match written.data {
        result if lone => vec![result],
        Ok(Outcome::Batch(results)) if results.len() == replies.len() => results,
        other => {
            // Applying a batch answers a batch of the same length (licd_raft::state).
            tracing::error!(answer = ?other, "a batch entry was answered out of shape");
            return;
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        let _ = reply.send(Ok(Proposed {
            result,
            log_id: written.log_id,
        }));
    }
}
