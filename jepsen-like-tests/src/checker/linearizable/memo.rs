//! The memo of one search pass: the configurations already entered, so none is explored
//! twice.
//!
//! [`Memo::Exact`] keeps the fingerprints of whole configurations (linearized `ok`
//! operations, resolved `info` writes, model state). [`Memo::Subsuming`] keys on the
//! linearized `ok` operations and the state only and keeps, per key, the sets of applied
//! `info` writes it was entered with: a configuration is skipped when one with the same key
//! and a *subset* of its `info` writes was entered before (see the parent module for why
//! that is sound).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;

use super::fingerprint::{FoldHasher, mix64};

/// How many stored sets of one key a lookup compares at most (comparing fewer only prunes
/// less, which is always sound).
const MAX_CHAIN_SCAN: usize = 64;

/// The subsuming memo: for each fingerprint of (linearized `ok` operations, model state),
/// the sets of applied `info` writes it was entered with, each a sorted run in `data` with a
/// 64-bit signature, chained from the newest.
#[derive(Default)]
pub(super) struct SubsumingMemo {
    heads: HashMap<u128, u32, BuildHasherDefault<FoldHasher>>,
    /// (next in chain or `u32::MAX`, start in `data`, length, signature).
    nodes: Vec<(u32, u32, u32, u64)>,
    data: Vec<u32>,
}

/// A 64-bit Bloom-style signature of a set: a stored set can only be a subset of `applied`
/// if its signature's bits are all in `applied`'s.
fn signature(set: &[u32]) -> u64 {
    set.iter()
        .fold(0, |sig, &x| sig | 1 << (mix64(u64::from(x)) & 63))
}

impl SubsumingMemo {
    /// Records the configuration unless one with the same key and a subset of its applied
    /// `info` writes was entered before; returns whether it was recorded (is new).
    pub(super) fn enter(&mut self, key: u128, applied: &[u32]) -> bool {
        let sig = signature(applied);
        let head = self.heads.get(&key).copied().unwrap_or(u32::MAX);
        let mut n = head;
        let mut scanned = 0;
        while n != u32::MAX && scanned < MAX_CHAIN_SCAN {
            let (next, start, len, stored_sig) = self.nodes[n as usize];
            if stored_sig & !sig == 0 && len as usize <= applied.len() {
                let stored = &self.data[start as usize..(start + len) as usize];
                if is_subset(stored, applied) {
                    return false;
                }
            }
            n = next;
            scanned += 1;
        }
        let id = self.nodes.len() as u32;
        self.nodes
            .push((head, self.data.len() as u32, applied.len() as u32, sig));
        self.data.extend_from_slice(applied);
        self.heads.insert(key, id);
        true
    }
}

/// Whether sorted `a` is a subset of sorted `b`.
fn is_subset(a: &[u32], b: &[u32]) -> bool {
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j == b.len() || b[j] != x {
            return false;
        }
        j += 1;
    }
    true
}

/// The memo of one search: exact (every resolved operation in the fingerprint) or
/// subsuming.
pub(super) enum Memo {
    /// Whole-configuration fingerprints.
    Exact(HashSet<u128, BuildHasherDefault<FoldHasher>>),
    /// Fingerprints without the `info` writes, each with its sets of applied ones.
    Subsuming(SubsumingMemo),
}

impl Memo {
    /// How many configurations were recorded (the verdict's `memo_entries`).
    pub(super) fn len(&self) -> usize {
        match self {
            Memo::Exact(set) => set.len(),
            Memo::Subsuming(m) => m.nodes.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_subset_of_sorted_sets() {
        assert!(is_subset(&[], &[]));
        assert!(is_subset(&[], &[1, 2]));
        assert!(is_subset(&[2, 5], &[1, 2, 3, 5]));
        assert!(!is_subset(&[2, 4], &[1, 2, 3, 5]));
        assert!(!is_subset(&[6], &[1, 2, 3, 5]));
        assert!(!is_subset(&[1, 2], &[1]));
    }

    #[test]
    fn a_configuration_with_more_info_writes_applied_is_subsumed() {
        let mut memo = SubsumingMemo::default();
        assert!(memo.enter(7, &[1, 4]));
        // Same key, a superset applied: nothing new to explore.
        assert!(!memo.enter(7, &[1, 3, 4]));
        assert!(!memo.enter(7, &[1, 4]));
        // A subset, another set, or another key is new.
        assert!(memo.enter(7, &[4]));
        assert!(memo.enter(7, &[2, 3]));
        assert!(memo.enter(8, &[1, 4]));
        // Now the empty set subsumes everything of key 9 entered after it.
        assert!(memo.enter(9, &[]));
        assert!(!memo.enter(9, &[0, 1, 2]));
        assert_eq!(Memo::Subsuming(memo).len(), 5);
    }

    #[test]
    fn the_exact_memo_counts_distinct_fingerprints() {
        let mut set = HashSet::default();
        assert!(set.insert(1u128));
        assert!(!set.insert(1u128));
        assert!(set.insert(2u128));
        assert_eq!(Memo::Exact(set).len(), 2);
    }
}
