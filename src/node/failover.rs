//! Prompt elections: a follower whose leader went silent stands for election as soon as the
//! other voters will vote, instead of a random election timeout later.
//!
//! openraft 0.9 has a follower that knows a leader wait its leader lease (fixed at
//! `election_timeout_max`) *plus* an election timeout drawn from `[min, max)` after the last
//! message from the leader before it stands: 750-1000 ms with licd's default timing. The two
//! parts do different jobs. Until the lease ends every voter refuses to vote
//! (`Engine::handle_vote_req`), so a leader that is only slow keeps its leadership; no
//! election can succeed before it, and nothing here changes that. The random part after it
//! keeps candidates from standing at the same moment and splitting the vote, at the cost of
//! up to one more `election_timeout_max` of no leader.
//!
//! Here the followers take turns instead of drawing lots. Each voter other than the leader
//! has a rank, its place among them by id, and stands once `lease + (1 + 2 × rank)`
//! heartbeat intervals passed since the last append it accepted from the leader: the first
//! one heartbeat after the lease, the next three after it, and so on. A follower that gave
//! its vote since that append does not stand (the candidate it voted for will lead); one
//! that stood does not stand again until it hears from a leader. A follower that *refused*
//! a candidate (whose log was behind its own, or who stood before this follower's lease
//! ran out) stands at its turn all the same, in a term above the refused candidate's: in
//! the same term the candidate, who voted for itself, would refuse it in turn. A candidate
//! refused leaves it to openraft's own timer, as before. Standing is always safe in Raft;
//! only when it happens changes.
//!
//! What it costs: a follower stands after `lease + heartbeat` of silence instead of at least
//! `lease + election_timeout_min`, so a leader stalled that long (a paused process, a disk
//! that stops every write) is replaced sooner than openraft alone would replace it.
//!
//! The task holds a weak handle on the node and ends with it.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use licd_raft::RaftNodeId;
use openraft::ServerState;

use super::Inner;

/// When this node last accepted an append from a leader and last gave its vote, as offsets
/// from its start (0: never), and the highest term of a vote request it refused.
#[derive(Debug)]
pub struct Contact {
    started: Instant,
    append_us: AtomicU64,
    granted_us: AtomicU64,
    refused_term: AtomicU64,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            started: Instant::now(),
            append_us: AtomicU64::new(0),
            granted_us: AtomicU64::new(0),
            refused_term: AtomicU64::new(0),
        }
    }
}

impl Contact {
    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Records an append accepted from a leader (its vote was not refused as older).
    pub fn appended(&self) {
        self.append_us.store(self.now_us(), Ordering::Relaxed);
    }

    /// Records the answer to a vote request in `term`.
    pub fn voted(&self, term: u64, granted: bool) {
        if granted {
            self.granted_us.store(self.now_us(), Ordering::Relaxed);
        } else {
            self.refused_term.fetch_max(term, Ordering::Relaxed);
        }
    }
}

/// The timing the watch works with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// openraft's leader lease: `election_timeout_max`.
    pub lease: Duration,
    /// The leader's heartbeat interval.
    pub heartbeat: Duration,
}

/// How long a follower of `rank` waits after its leader's last append before it stands.
pub(super) fn patience(timing: Timing, rank: usize) -> Duration {
    let turns = 1 + 2 * u32::try_from(rank).unwrap_or(u32::MAX / 4);
    timing.lease + timing.heartbeat.saturating_mul(turns)
}

/// The place of `me` among the voters other than `leader`, by id (`None`: not such a voter).
pub(super) fn rank(
    me: RaftNodeId,
    leader: RaftNodeId,
    voters: impl Iterator<Item = RaftNodeId>,
) -> Option<usize> {
    let mut others: Vec<RaftNodeId> = voters.filter(|v| *v != leader).collect();
    others.sort_unstable();
    others.dedup();
    others.iter().position(|v| *v == me)
}

/// What the watch decides on one look.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing to do.
    Wait,
    /// Stand for election now.
    Stand,
}

/// Decides from what the node knows, with every time an offset from its start in
/// microseconds (0: never): the last append accepted, the last vote given, the last time
/// this node stood, and now.
pub(super) fn decide(
    patience: Duration,
    append_us: u64,
    granted_us: u64,
    stood_us: u64,
    now_us: u64,
) -> Decision {
    let patience_us = u64::try_from(patience.as_micros()).unwrap_or(u64::MAX);
    let silent = append_us != 0 && now_us.saturating_sub(append_us) >= patience_us;
    let voted_for_another = granted_us > append_us;
    let already_stood = stood_us > append_us;
    if silent && !voted_for_another && !already_stood {
        Decision::Stand
    } else {
        Decision::Wait
    }
}

/// Looks every half heartbeat whether this follower should stand, and triggers the election
/// when it should.
pub(super) async fn run(node: Weak<Inner>, timing: Timing) {
    let mut interval = tokio::time::interval((timing.heartbeat / 2).max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stood_us = 0;
    loop {
        interval.tick().await;
        let Some(inner) = node.upgrade() else {
            return;
        };
        let rank = {
            let metrics = inner.raft.metrics();
            let m = metrics.borrow();
            match (m.state, m.current_leader) {
                (ServerState::Follower, Some(leader)) if leader != inner.id => rank(
                    inner.id,
                    leader,
                    m.membership_config.membership().voter_ids(),
                )
                .map(|rank| (rank, leader)),
                _ => None,
            }
        };
        let Some((rank, leader)) = rank else {
            continue;
        };
        let contact = &inner.contact;
        let append_us = contact.append_us.load(Ordering::Relaxed);
        let now_us = contact.now_us();
        let decision = decide(
            patience(timing, rank),
            append_us,
            contact.granted_us.load(Ordering::Relaxed),
            stood_us,
            now_us,
        );
        if decision == Decision::Stand {
            stood_us = now_us;
            let silent = Duration::from_micros(now_us.saturating_sub(append_us));
            tracing::info!(
                leader,
                silent_ms = silent.as_millis() as u64,
                rank,
                "no append from the leader past its lease: standing for election"
            );
            inner.meter.prompt_election();
            stand(&inner, contact.refused_term.load(Ordering::Relaxed)).await;
        }
    }
}

/// Stands for election in a term above `refused` (each election is one term above the
/// node's current one; a few at most are needed, and Raft is safe whatever the term).
async fn stand(inner: &Inner, refused: u64) {
    for _ in 0..3 {
        if inner.raft.trigger().elect().await.is_err() {
            return;
        }
        // The trigger returns once the core took the order; the term it stood in shows in
        // the vote.
        let mut metrics = inner.raft.metrics();
        let term = metrics.borrow().vote.leader_id().term;
        if term > refused {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(20), metrics.changed()).await;
        if metrics.borrow().vote.leader_id().term > refused {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        lease: Duration::from_millis(500),
        heartbeat: Duration::from_millis(50),
    };

    #[test]
    fn followers_take_turns_after_the_lease() {
        assert_eq!(patience(TIMING, 0), Duration::from_millis(550));
        assert_eq!(patience(TIMING, 1), Duration::from_millis(650));
        assert_eq!(patience(TIMING, 2), Duration::from_millis(750));
        // Ranked among the voters other than the leader, by id.
        assert_eq!(rank(3, 1, [1, 2, 3].into_iter()), Some(1));
        assert_eq!(rank(2, 1, [3, 1, 2].into_iter()), Some(0));
        assert_eq!(rank(1, 2, [1, 2, 3].into_iter()), Some(0));
        // A learner, or the leader itself, has no rank.
        assert_eq!(rank(4, 1, [1, 2, 3].into_iter()), None);
        assert_eq!(rank(1, 1, [1, 2, 3].into_iter()), None);
    }

    #[test]
    fn a_follower_stands_once_after_its_leader_fell_silent() {
        let patience = Duration::from_millis(550);
        let ms = |ms: u64| ms * 1_000;
        // Heard 549 ms ago: wait; 550 ms: stand.
        assert_eq!(decide(patience, ms(1_000), 0, 0, ms(1_549)), Decision::Wait);
        assert_eq!(
            decide(patience, ms(1_000), 0, 0, ms(1_550)),
            Decision::Stand
        );
        // Never heard from a leader since the start: openraft's timer decides.
        assert_eq!(decide(patience, 0, 0, 0, ms(60_000)), Decision::Wait);
        // Voted for a candidate since the last append: it will lead.
        assert_eq!(
            decide(patience, ms(1_000), ms(1_400), 0, ms(2_000)),
            Decision::Wait
        );
        // A vote given before the last append does not count.
        assert_eq!(
            decide(patience, ms(1_000), ms(900), 0, ms(2_000)),
            Decision::Stand
        );
        // Stood already since the last append: not again; after another append, yes.
        assert_eq!(
            decide(patience, ms(1_000), 0, ms(1_600), ms(3_000)),
            Decision::Wait
        );
        assert_eq!(
            decide(patience, ms(2_000), 0, ms(1_600), ms(3_000)),
            Decision::Stand
        );
    }
}
