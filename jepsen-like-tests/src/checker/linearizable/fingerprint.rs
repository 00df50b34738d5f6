//! The 128-bit fingerprints the search memoizes its configurations by.
//!
//! A configuration's fingerprint is the XOR of one random (Zobrist) key per resolved
//! operation and one key per node slot of the model state, so linearizing an operation or
//! undoing it changes the fingerprint by a few XORs instead of a rehash. The keys come from
//! fixed seeds: the search is deterministic. What a collision costs (a pruned branch, never
//! an accepted invalid history) is in the parent module's documentation.

use std::hash::Hasher;

/// SplitMix64's finalizer: a cheap 64-bit permutation whose output bits all depend on every
/// input bit.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e9b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fingerprint contribution of `node` holding `value` (none contributes nothing).
pub(super) fn slot_fp(node: usize, value: Option<u32>) -> u128 {
    match value {
        None => 0,
        Some(v) => {
            let x = ((node as u64) << 33) ^ (u64::from(v) << 1) ^ 1;
            let hi = mix64(x ^ 0x5851_f42d_4c95_7f2d);
            let lo = mix64(x.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x1405_7b7e_f767_814f);
            (u128::from(hi) << 64) | u128::from(lo)
        }
    }
}

/// One Zobrist key per checked operation (`is_ok[i]` says whether operation i is an `ok`
/// one). With `subsume` the `info` writes get key 0: the subsuming memo keeps the set of
/// applied `info` writes as a list beside the fingerprint instead.
pub(super) fn operation_keys(is_ok: &[bool], subsume: bool) -> Vec<u128> {
    let mut rng = 0x243f_6a88_85a3_08d3_u64;
    let mut next_key = || {
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let hi = mix64(rng);
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        (u128::from(hi) << 64) | u128::from(mix64(rng))
    };
    is_ok
        .iter()
        .map(|&ok| {
            let key = next_key();
            if ok || !subsume { key } else { 0 }
        })
        .collect()
}

/// A hasher for keys that are already uniformly random: folding is enough.
#[derive(Default)]
pub(super) struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::Hash;

    use super::*;

    #[test]
    fn an_empty_slot_contributes_nothing_and_filled_slots_differ() {
        assert_eq!(slot_fp(3, None), 0);
        let mut seen = HashSet::new();
        for node in 0..20 {
            for cores in 0..20 {
                assert!(seen.insert(slot_fp(node, Some(cores))), "{node} {cores}");
            }
        }
        assert!(!seen.contains(&0));
    }

    #[test]
    fn operation_keys_are_fixed_distinct_and_zero_for_subsumed_info_writes() {
        let is_ok = [true, false, true, false];
        let exact = operation_keys(&is_ok, false);
        assert_eq!(exact, operation_keys(&is_ok, false));
        assert_eq!(exact.iter().collect::<HashSet<_>>().len(), 4);
        let subsuming = operation_keys(&is_ok, true);
        // The same key sequence: only the info writes' keys are dropped.
        assert_eq!(subsuming, vec![exact[0], 0, exact[2], 0]);
    }

    #[test]
    fn fold_hasher_folds_a_u128_key_into_its_two_halves() {
        let mut h = FoldHasher::default();
        h.write_u128((7u128 << 64) | 5);
        assert_eq!(h.finish(), 7 ^ 5);
        // Hashing a u128 key goes through `write_u128`.
        let mut h = FoldHasher::default();
        ((9u128 << 64) | 1).hash(&mut h);
        assert_eq!(h.finish(), 9 ^ 1);
    }
}
