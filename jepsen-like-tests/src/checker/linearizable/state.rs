//! The model state as the search keeps it: one slot per interned node, the total, and the
//! state's fingerprint, all updated in place by one [`Change`] at a time and undone the same
//! way when the search backtracks.
//!
//! It follows the same rules as the readable [`ModelState`] (which
//! [`State::to_model`] converts to for explanations), without allocating.

use super::super::{License, ModelState};
use super::fingerprint::slot_fp;
use super::problem::{AllocExpect, Step};

/// The compact model state.
pub(super) struct State {
    /// The counted cores of each node slot, `None` when it holds no allocation.
    slots: Vec<Option<u32>>,
    /// The sum of the slots.
    total: u64,
    /// The XOR of [`slot_fp`] over the slots.
    pub(super) fp: u128,
}

/// One change of the state: `node`'s slot goes from `old` to `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Change {
    /// The node's slot.
    pub(super) node: usize,
    /// Its value before.
    pub(super) old: Option<u32>,
    /// Its value after.
    pub(super) new: Option<u32>,
}

impl State {
    /// The empty state over `nodes` slots.
    pub(super) fn new(nodes: usize) -> Self {
        State {
            slots: vec![None; nodes],
            total: 0,
            fp: 0,
        }
    }

    /// The change `step` makes, or `None` if the model cannot produce the observed output
    /// here. `Some(None)` means it fits without changing anything.
    pub(super) fn try_step(&self, license: &License, step: &Step) -> Option<Option<Change>> {
        match step {
            Step::Allocate {
                node,
                counted,
                expect,
            } => {
                let old = self.slots[*node];
                let others = self.total - old.map_or(0, u64::from);
                let after = others + u64::from(*counted);
                let refused = after > license.max_cores;
                let change = Change {
                    node: *node,
                    old,
                    new: Some(*counted),
                };
                match *expect {
                    AllocExpect::Granted { counted: c, total } => {
                        (!refused && c == *counted && total == after).then_some(Some(change))
                    }
                    AllocExpect::Refused => refused.then_some(None),
                    AllocExpect::InUse => old.is_some().then_some(None),
                    AllocExpect::Impossible => None,
                    AllocExpect::Unknown => Some((!refused).then_some(change)),
                }
            }
            Step::Release {
                node,
                refused: true,
                ..
            } => self.slots[*node].is_some().then_some(None),
            Step::Release { node, expect, .. } => {
                let old = self.slots[*node];
                if expect.is_some_and(|released| released != old.is_some()) {
                    return None;
                }
                Some(old.map(|_| Change {
                    node: *node,
                    old,
                    new: None,
                }))
            }
            Step::Check { node, valid } => (self.slots[*node].is_some() == *valid).then_some(None),
            Step::Usage { nodes, total } => {
                (*total == self.total && *nodes == self.slots).then_some(None)
            }
        }
    }

    /// The fingerprint the state would have after `change`.
    pub(super) fn fp_after(&self, change: Option<Change>) -> u128 {
        match change {
            None => self.fp,
            Some(c) => self.fp ^ slot_fp(c.node, c.old) ^ slot_fp(c.node, c.new),
        }
    }

    /// Applies `c`, or with `undo` reverts it.
    pub(super) fn apply(&mut self, c: Change, undo: bool) {
        let (from, to) = if undo { (c.new, c.old) } else { (c.old, c.new) };
        self.fp ^= slot_fp(c.node, from) ^ slot_fp(c.node, to);
        self.total = self.total - from.map_or(0, u64::from) + to.map_or(0, u64::from);
        self.slots[c.node] = to;
    }

    /// The readable model state, slot i named `names[i]`.
    pub(super) fn to_model(&self, names: &[String]) -> ModelState {
        ModelState {
            nodes: self
                .slots
                .iter()
                .zip(names)
                .filter_map(|(s, n)| s.map(|c| (n.clone(), c)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::test_support::LICENSE;

    fn allocate(node: usize, counted: u32, expect: AllocExpect) -> Step {
        Step::Allocate {
            node,
            counted,
            expect,
        }
    }

    fn granted(state: &State, node: usize, counted: u32, total: u64) -> Change {
        let step = allocate(node, counted, AllocExpect::Granted { counted, total });
        state
            .try_step(&LICENSE, &step)
            .expect("fits")
            .expect("a change")
    }

    #[test]
    fn the_fingerprint_follows_the_slots_whatever_the_order() {
        let mut a = State::new(3);
        let c0 = granted(&a, 0, 6, 6);
        assert_eq!(a.fp_after(Some(c0)), slot_fp(0, Some(6)));
        a.apply(c0, false);
        let c2 = granted(&a, 2, 4, 10);
        a.apply(c2, false);
        // The same slots reached in the other order: the same fingerprint.
        let mut b = State::new(3);
        let d2 = granted(&b, 2, 4, 4);
        b.apply(d2, false);
        let d0 = granted(&b, 0, 6, 10);
        b.apply(d0, false);
        assert_eq!(a.fp, b.fp);
        assert_eq!(a.slots, b.slots);
        // Replacing a value is one change, and so is its undo.
        let c = granted(&a, 0, 5, 9);
        assert_eq!(c.old, Some(6));
        let before = a.fp;
        a.apply(c, false);
        assert_ne!(a.fp, before);
        a.apply(c, true);
        assert_eq!((a.fp, a.total), (before, 10));
        // Undoing everything gives the empty state back.
        a.apply(c2, true);
        a.apply(c0, true);
        assert_eq!((a.fp, a.total, a.slots), (0, 0, vec![None; 3]));
    }

    #[test]
    fn steps_fit_only_what_the_model_would_answer() {
        let mut s = State::new(2);
        s.apply(granted(&s, 0, 12, 12), false);
        // 12 + 6 > 16: refused, nothing changes; a grant or another code does not fit.
        assert_eq!(
            s.try_step(&LICENSE, &allocate(1, 6, AllocExpect::Refused)),
            Some(None)
        );
        let grant = AllocExpect::Granted {
            counted: 6,
            total: 18,
        };
        assert_eq!(s.try_step(&LICENSE, &allocate(1, 6, grant)), None);
        assert_eq!(
            s.try_step(&LICENSE, &allocate(1, 4, AllocExpect::Impossible)),
            None
        );
        // An info allocate fits either way: a change when it fits the cap, none otherwise.
        assert_eq!(
            s.try_step(&LICENSE, &allocate(1, 6, AllocExpect::Unknown)),
            Some(None)
        );
        assert!(matches!(
            s.try_step(&LICENSE, &allocate(1, 4, AllocExpect::Unknown)),
            Some(Some(_))
        ));
        let release = |node, expect| Step::Release {
            node,
            expect,
            refused: false,
        };
        assert_eq!(s.try_step(&LICENSE, &release(1, Some(true))), None);
        assert_eq!(s.try_step(&LICENSE, &release(1, Some(false))), Some(None));
        assert!(matches!(
            s.try_step(&LICENSE, &release(0, None)),
            Some(Some(_))
        ));
        // Refusals for a lease token fit only an occupied node, and change nothing.
        let in_use = allocate(1, 4, AllocExpect::InUse);
        assert_eq!(s.try_step(&LICENSE, &in_use), None);
        assert_eq!(
            s.try_step(&LICENSE, &allocate(0, 4, AllocExpect::InUse)),
            Some(None)
        );
        let refused = |node| Step::Release {
            node,
            expect: Some(false),
            refused: true,
        };
        assert_eq!(s.try_step(&LICENSE, &refused(0)), Some(None));
        assert_eq!(s.try_step(&LICENSE, &refused(1)), None);
        let check = |node, valid| Step::Check { node, valid };
        assert_eq!(s.try_step(&LICENSE, &check(0, true)), Some(None));
        assert_eq!(s.try_step(&LICENSE, &check(1, true)), None);
        let usage = |nodes: Vec<Option<u32>>, total| Step::Usage { nodes, total };
        assert_eq!(
            s.try_step(&LICENSE, &usage(vec![Some(12), None], 12)),
            Some(None)
        );
        assert_eq!(s.try_step(&LICENSE, &usage(vec![Some(12), None], 13)), None);
        assert_eq!(s.try_step(&LICENSE, &usage(vec![None, None], 12)), None);
        let names = ["app-1".to_string(), "app-2".to_string()];
        assert_eq!(
            s.to_model(&names).nodes.into_iter().collect::<Vec<_>>(),
            [("app-1".to_string(), 12)]
        );
    }
}
