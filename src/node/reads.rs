//! Linearizable reads that share heartbeat rounds.
//!
//! Every license check must be answered by a node that has just confirmed, with a majority,
//! that it still leads (openraft's `ensure_linearizable`, the ReadIndex of the Raft paper).
//! A round per check would cost a heartbeat round trip per check; instead, checks that arrive
//! while a round is running wait for the *next* round, which starts after they arrived, so
//! each check is still covered by a confirmation that began after its arrival. A round serves
//! everyone who queued before it started.
//!
//! **After a restart** ([`StartupGate`]). openraft 0.9 lets a leader that restarts within
//! its term resume leading at once, and takes `max(first entry of its term, committed id)`
//! as the index of its reads. The committed id it starts from is the one last saved, which
//! is not flushed (`licd_storage::LogStore::save_committed`) and may be older than writes
//! the node had applied and acknowledged before the crash. So until the node has applied
//! its whole log as it was at start-up, a read confirmed in the term it started in also
//! waits for that: every write acknowledged before the crash is in that log (a leader
//! acknowledges only what it has appended and flushed; and when it leads, what earlier
//! leaders committed). A read confirmed in a later term needs no wait: the new term's first
//! entry comes after everything committed before it. The gate opens for good at the first
//! of the two.
//!
//! The rounds run in one task owned by a [`TaskGuard`]: it ends with the node. The queue is
//! bounded ([`MAX_WAITING`]): past it, a read waits for room rather than the node's memory
//! growing without limit under a flood of checks.

use std::future::Future;
use std::time::Duration;

use licd_raft::RaftNodeId;
use openraft::error::{CheckIsLeaderError, Fatal, RaftError};
use openraft::metrics::WaitError;
use openraft::storage::RaftLogStorage;
use openraft::{BasicNode, LogId};
use tokio::sync::{mpsc, oneshot};

use super::LicdRaft;
use super::tasks::TaskGuard;

type ReadError = RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>;

/// A confirmed read: the log index the applied state has reached at least (none in a
/// cluster without entries).
type ReadResult = Result<Option<u64>, ReadError>;

/// How long a round waits for the start-up log to be applied before it confirms again.
const GATE_WAIT: Duration = Duration::from_millis(200);

/// The most reads queued for the next round.
pub const MAX_WAITING: usize = 16_384;

/// The handle through which requests join a read round.
#[derive(Clone)]
pub struct ReadBatcher {
    tx: mpsc::Sender<oneshot::Sender<ReadResult>>,
}

impl ReadBatcher {
    /// Starts the task that runs the rounds, held by `gate` until the log as it was at
    /// start-up is applied; it stops when the guard is dropped.
    pub fn spawn(raft: LicdRaft, gate: StartupGate) -> (Self, TaskGuard) {
        Self::spawn_on(raft, gate)
    }

    fn spawn_on(raft: impl ReadIndex, gate: StartupGate) -> (Self, TaskGuard) {
        let (tx, rx) = mpsc::channel(MAX_WAITING);
        let guard = TaskGuard::spawn("read rounds", run(raft, gate, rx));
        (ReadBatcher { tx }, guard)
    }

    /// Waits for a round that started after this call, and returns its outcome: the index
    /// the applied state covers.
    pub async fn confirm(&self) -> ReadResult {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).await.is_err() {
            return Err(RaftError::Fatal(Fatal::Stopped));
        }
        rx.await.unwrap_or(Err(RaftError::Fatal(Fatal::Stopped)))
    }
}

/// Holds the reads of a restarted node until it has applied its log as it was at start-up,
/// unless they are confirmed in a later term (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartupGate {
    /// The term of the vote the node started with.
    term: u64,
    /// The last log index at start-up; `None` once the gate is open.
    hold_until: Option<u64>,
}

impl StartupGate {
    /// The gate for a node that starts with this vote term and last log index.
    pub fn new(term: u64, last_log_index: Option<u64>) -> Self {
        StartupGate {
            term,
            hold_until: last_log_index,
        }
    }

    /// Reads the vote and the last log id from the node's log store, before Raft starts.
    pub async fn of_store<S: RaftLogStorage<licd_raft::TypeConfig>>(
        store: &mut S,
    ) -> Result<Self, openraft::StorageError<RaftNodeId>> {
        let term = store.read_vote().await?.map_or(0, |v| v.leader_id().term);
        let last = store.get_log_state().await?.last_log_id.map(|l| l.index);
        if last.is_some() {
            tracing::debug!(
                term,
                last_log_index = last,
                "reads wait for the start-up log"
            );
        }
        Ok(StartupGate::new(term, last))
    }

    /// The index a read confirmed at `read` must also wait for, or `None` when it may be
    /// served; a read confirmed in a later term opens the gate.
    fn must_apply(&mut self, read: Option<&LogId<RaftNodeId>>) -> Option<u64> {
        let held = self.hold_until?;
        if read.is_some_and(|r| r.leader_id.term > self.term) {
            self.hold_until = None;
            return None;
        }
        Some(held)
    }

    fn open(&mut self) {
        self.hold_until = None;
    }
}

/// How a wait for the start-up log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaughtUp {
    /// The state machine applied that far.
    Applied,
    /// The term moved on (the node was deposed or elected again): confirm again.
    TermMoved,
    /// Neither within the wait: confirm again.
    NotYet,
    /// The node is shutting down.
    Stopped,
}

/// What a read round asks of Raft (a trait so that the rounds are tested without a cluster).
trait ReadIndex: Send + Sync + 'static {
    /// Confirms leadership with a majority and waits until the state machine applied the
    /// returned read index (openraft's `ensure_linearizable`).
    fn confirm(&self) -> impl Future<Output = Result<Option<LogId<RaftNodeId>>, ReadError>> + Send;

    /// Waits up to `within` for the state machine to apply `index`, or the term to pass `term`.
    fn caught_up(
        &self,
        index: u64,
        term: u64,
        within: Duration,
    ) -> impl Future<Output = CaughtUp> + Send;
}

impl ReadIndex for LicdRaft {
    fn confirm(&self) -> impl Future<Output = Result<Option<LogId<RaftNodeId>>, ReadError>> + Send {
        self.ensure_linearizable()
    }

    async fn caught_up(&self, index: u64, term: u64, within: Duration) -> CaughtUp {
        let applied = |m: &openraft::RaftMetrics<RaftNodeId, BasicNode>| {
            m.last_applied.is_some_and(|l| l.index >= index)
        };
        let waited = self
            .wait(Some(within))
            .metrics(
                |m| applied(m) || m.current_term > term,
                "the start-up log applied",
            )
            .await;
        match waited {
            Ok(m) if applied(&m) => CaughtUp::Applied,
            Ok(_) => CaughtUp::TermMoved,
            Err(WaitError::Timeout(..)) => CaughtUp::NotYet,
            Err(WaitError::ShuttingDown) => CaughtUp::Stopped,
        }
    }
}

async fn run(
    raft: impl ReadIndex,
    mut gate: StartupGate,
    mut rx: mpsc::Receiver<oneshot::Sender<ReadResult>>,
) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        // Everyone queued so far arrived before this round starts.
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let result = round(&raft, &mut gate).await;
        for waiter in waiting.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}

/// One confirmed read, held by the gate while it is shut.
async fn round(raft: &impl ReadIndex, gate: &mut StartupGate) -> ReadResult {
    loop {
        let read = raft.confirm().await?;
        let Some(index) = gate.must_apply(read.as_ref()) else {
            return Ok(read.map(|l| l.index));
        };
        match raft.caught_up(index, gate.term, GATE_WAIT).await {
            CaughtUp::Applied => {
                gate.open();
                tracing::debug!(index, "the start-up log is applied; reads are served");
                return Ok(Some(read.map_or(index, |l| l.index.max(index))));
            }
            CaughtUp::Stopped => return Err(RaftError::Fatal(Fatal::Stopped)),
            // Confirmed in the start-up term but not caught up, or deposed meanwhile: the
            // confirmation is stale either way, so take a new one.
            CaughtUp::TermMoved | CaughtUp::NotYet => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use openraft::CommittedLeaderId;
    use openraft::error::ForwardToLeader;
    use tokio::sync::watch;

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId<RaftNodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// A Raft whose confirmations answer `read`, and whose applied index and term are set by
    /// the test.
    struct FakeRaft {
        read: Mutex<Result<Option<LogId<RaftNodeId>>, ReadError>>,
        /// (applied index, current term)
        progress: watch::Sender<(u64, u64)>,
        confirms: AtomicUsize,
    }

    impl FakeRaft {
        fn new(read: LogId<RaftNodeId>, applied: u64) -> std::sync::Arc<Self> {
            std::sync::Arc::new(FakeRaft {
                read: Mutex::new(Ok(Some(read))),
                progress: watch::Sender::new((applied, read.leader_id.term)),
                confirms: AtomicUsize::new(0),
            })
        }
    }

    impl ReadIndex for std::sync::Arc<FakeRaft> {
        async fn confirm(&self) -> Result<Option<LogId<RaftNodeId>>, ReadError> {
            self.confirms.fetch_add(1, Ordering::SeqCst);
            self.read.lock().unwrap().clone()
        }

        async fn caught_up(&self, index: u64, term: u64, within: Duration) -> CaughtUp {
            let mut rx = self.progress.subscribe();
            let done = rx.wait_for(|&(applied, t)| applied >= index || t > term);
            match tokio::time::timeout(within, done).await {
                Ok(Ok(p)) if p.0 >= index => CaughtUp::Applied,
                Ok(Ok(_)) => CaughtUp::TermMoved,
                Ok(Err(_)) => CaughtUp::Stopped,
                Err(_) => CaughtUp::NotYet,
            }
        }
    }

    /// Long enough for several rounds of [`GATE_WAIT`].
    const HELD: Duration = Duration::from_millis(700);
    const SOON: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_leader_resumed_in_its_term_serves_no_read_before_its_start_up_log_is_applied() {
        // Started in term 3 with entries up to 10; it resumes leading in term 3, where its
        // first entry is 4 and its saved committed id older still: openraft would serve reads
        // at 4.
        let raft = FakeRaft::new(log_id(3, 4), 4);
        let (reads, _guard) = ReadBatcher::spawn_on(raft.clone(), StartupGate::new(3, Some(10)));
        let read = tokio::spawn(async move { reads.confirm().await.map(|r| (r, reads)) });
        tokio::time::sleep(HELD).await;
        assert!(
            !read.is_finished(),
            "a read was served below the start-up log"
        );
        assert!(
            raft.confirms.load(Ordering::SeqCst) >= 2,
            "a held round confirms again"
        );

        raft.progress.send_replace((10, 3));
        let (covered, reads) = tokio::time::timeout(SOON, read)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(covered, Some(10));

        // Open for good: a later read is served at openraft's index without waiting.
        raft.progress.send_replace((4, 3));
        let later = tokio::time::timeout(SOON, reads.confirm()).await.unwrap();
        assert_eq!(later.unwrap(), Some(4));
    }

    #[tokio::test]
    async fn a_read_confirmed_in_a_later_term_is_served_at_once() {
        let raft = FakeRaft::new(log_id(4, 7), 7);
        let (reads, _guard) = ReadBatcher::spawn_on(raft.clone(), StartupGate::new(3, Some(10)));
        let read = tokio::time::timeout(SOON, reads.confirm()).await.unwrap();
        assert_eq!(read.unwrap(), Some(7));
        assert_eq!(raft.confirms.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_held_leader_that_is_deposed_answers_that_it_does_not_lead() {
        let raft = FakeRaft::new(log_id(3, 4), 4);
        let (reads, _guard) = ReadBatcher::spawn_on(raft.clone(), StartupGate::new(3, Some(10)));
        let read = tokio::spawn(async move { reads.confirm().await });
        tokio::time::sleep(HELD).await;
        assert!(!read.is_finished());

        *raft.read.lock().unwrap() = Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(
            ForwardToLeader::empty(),
        )));
        raft.progress.send_replace((4, 5));
        let result = tokio::time::timeout(SOON, read).await.unwrap().unwrap();
        assert!(
            matches!(
                result,
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))
            ),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn a_node_that_started_without_entries_is_not_held() {
        let raft = FakeRaft::new(log_id(1, 1), 0);
        let (reads, _guard) = ReadBatcher::spawn_on(raft.clone(), StartupGate::new(0, None));
        let read = tokio::time::timeout(SOON, reads.confirm()).await.unwrap();
        assert_eq!(read.unwrap(), Some(1));
    }

    #[test]
    fn the_gate_holds_reads_of_the_start_up_term_and_opens_for_a_later_one() {
        let mut gate = StartupGate::new(3, Some(10));
        assert_eq!(gate.must_apply(None), Some(10));
        assert_eq!(gate.must_apply(Some(&log_id(2, 12))), Some(10));
        assert_eq!(gate.must_apply(Some(&log_id(3, 12))), Some(10));
        assert_eq!(gate.must_apply(Some(&log_id(4, 2))), None);
        // Open for good.
        assert_eq!(gate.must_apply(Some(&log_id(3, 1))), None);
    }
}
