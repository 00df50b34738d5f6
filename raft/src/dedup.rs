//! The table of applied request ids that makes client retries exactly-once (Raft dissertation,
//! section 6.3): a retried request finds its first outcome here and changes nothing.
//!
//! The table is bounded deterministically. An entry ages out once the cluster clock is
//! [`DEDUP_WINDOW_MS`] past the time it was applied *and* at least [`DEDUP_MIN_KEPT`] newer
//! requests were applied after it; and when more than [`DEDUP_CAPACITY`] entries are held the
//! oldest go first. Time alone is not enough: the cluster clock follows the leaders' wall
//! clocks, and a leader whose clock runs hours ahead moves it forward at once. Ageing by time
//! alone would then forget every id in one step, and a client still retrying a request it had
//! sent a moment before would have it applied twice. The count does not jump: a retry is
//! recognised as long as fewer than [`DEDUP_MIN_KEPT`] newer requests were applied, whatever
//! the clocks do. licd's client library stops retrying after 15 seconds.

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};

use crate::command::{Command, Response};
use crate::types::{RequestId, Timestamp};

/// How long, in cluster time, an applied request id is remembered: 15 minutes.
pub const DEDUP_WINDOW_MS: u64 = 15 * 60 * 1_000;
/// The most request ids remembered at once.
pub const DEDUP_CAPACITY: usize = 100_000;
/// How many of the most recently applied request ids are remembered however far the cluster
/// clock has moved.
pub const DEDUP_MIN_KEPT: usize = 10_000;

/// One remembered request: what it asked and what it was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Cluster time when it was applied.
    pub at: Timestamp,
    /// The command, to tell a retry from a reuse of the id for something else.
    pub command: Command,
    /// The first outcome, returned again to every retry.
    pub response: Response,
}

/// Applied request ids, oldest first.
///
/// Both collections are persistent (copy-on-write): cloning the table is O(1), so a snapshot
/// copies it under the state lock and encodes the copy without holding up apply. They
/// serialize exactly as a `BTreeMap` and a `VecDeque` do, so the stored format is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupTable {
    pub(crate) by_id: OrdMap<RequestId, Applied>,
    /// Request ids in the order they were applied; cluster time never goes back, so this is
    /// also the order of their `at` times.
    pub(crate) order: Vector<RequestId>,
}

impl DedupTable {
    /// The earlier application of `id`, if it is still remembered.
    pub fn get(&self, id: &RequestId) -> Option<&Applied> {
        self.by_id.get(id)
    }

    /// Remembers the outcome of a newly applied request.
    pub fn insert(&mut self, id: RequestId, applied: Applied) {
        if self.by_id.insert(id.clone(), applied).is_none() {
            self.order.push_back(id);
        }
        self.evict_over_capacity();
    }

    /// Forgets the requests applied [`DEDUP_WINDOW_MS`] or longer before `now`, except the
    /// [`DEDUP_MIN_KEPT`] most recent ones.
    pub fn expire(&mut self, now: Timestamp) {
        while self.order.len() > DEDUP_MIN_KEPT {
            let Some(oldest) = self.order.front() else {
                break;
            };
            let at = self.by_id.get(oldest).map_or(Timestamp(0), |a| a.at);
            if at.plus_millis(DEDUP_WINDOW_MS) > now {
                break;
            }
            self.pop_oldest();
        }
    }

    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no request id is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn evict_over_capacity(&mut self) {
        while self.by_id.len() > DEDUP_CAPACITY {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(id) = self.order.pop_front() {
            self.by_id.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Outcome;

    fn applied(at: u64) -> Applied {
        Applied {
            at: Timestamp(at),
            command: Command::Release {
                node: crate::types::NodeName::new("a").unwrap(),
            },
            response: Ok(Outcome::Noop),
        }
    }

    fn id(n: usize) -> RequestId {
        RequestId::new(format!("r{n}")).unwrap()
    }

    #[test]
    fn entries_beyond_the_most_recent_age_out_by_cluster_time() {
        let mut table = DedupTable::default();
        table.insert(id(0), applied(0));
        table.insert(id(1), applied(1_000));
        for n in 2..DEDUP_MIN_KEPT + 2 {
            table.insert(id(n), applied(2_000));
        }
        table.expire(Timestamp(DEDUP_WINDOW_MS - 1));
        assert_eq!(table.len(), DEDUP_MIN_KEPT + 2);
        table.expire(Timestamp(DEDUP_WINDOW_MS));
        assert!(table.get(&id(0)).is_none());
        assert!(table.get(&id(1)).is_some());
        table.expire(Timestamp(DEDUP_WINDOW_MS + 1_000));
        assert!(table.get(&id(1)).is_none());
        assert_eq!(table.len(), DEDUP_MIN_KEPT);
        // The most recent ids stay however far the clock moves.
        table.expire(Timestamp(u64::MAX));
        assert_eq!(table.len(), DEDUP_MIN_KEPT);
        assert!(table.get(&id(2)).is_some());
        assert!(table.get(&id(DEDUP_MIN_KEPT + 1)).is_some());
    }

    #[test]
    fn the_table_encodes_as_a_btreemap_and_a_vecdeque_do() {
        let mut table = DedupTable::default();
        for n in [3, 1, 2] {
            table.insert(id(n), applied(n as u64));
        }
        let by_id: std::collections::BTreeMap<_, _> = table
            .by_id
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let order: std::collections::VecDeque<_> = table.order.iter().cloned().collect();
        assert_eq!(
            crate::codec::encode(&table).unwrap(),
            crate::codec::encode(&(by_id, order)).unwrap()
        );
    }

    #[test]
    fn a_clock_jump_keeps_the_most_recent_ids() {
        let mut table = DedupTable::default();
        for n in 0..5 {
            table.insert(id(n), applied(1_000));
        }
        // A leader whose clock runs three hours ahead.
        table.expire(Timestamp(1_000 + 3 * 60 * 60 * 1_000));
        assert_eq!(table.len(), 5);
        assert!((0..5).all(|n| table.get(&id(n)).is_some()));
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_oldest_first() {
        let mut table = DedupTable::default();
        for n in 0..DEDUP_CAPACITY + 10 {
            table.insert(id(n), applied(5));
        }
        assert_eq!(table.len(), DEDUP_CAPACITY);
        assert!(table.get(&id(9)).is_none());
        assert!(table.get(&id(10)).is_some());
        assert!(table.get(&id(DEDUP_CAPACITY + 9)).is_some());
    }
}
