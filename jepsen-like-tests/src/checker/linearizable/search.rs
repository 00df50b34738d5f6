//! One pass of the Wing & Gong search over the prepared history, in either of its two
//! modes; the parent module describes the algorithm and how the passes combine.
//!
//! The walk keeps everything incremental: the list of entries (lift and unlift), the
//! compact state and its fingerprint (apply and undo), the fingerprint of the resolved
//! operations (one XOR each) and, with subsumption, the sorted list of applied `info`
//! writes. A pass ends with a linearization, a refutation (the stack is empty and the walk
//! is stuck) or when its budget of steps runs out.

use std::collections::HashSet;

use super::LinearizabilityResult;
use super::entries::{Entries, HEAD};
use super::explanation::{Deepest, SHOWN_LINEARIZED};
use super::fingerprint::operation_keys;
use super::memo::{Memo, SubsumingMemo};
use super::problem::Problem;
use super::state::{Change, State};

/// How one search pass explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Plain WGL: pending operations are tried in invocation order (so `info` writes, which
    /// linger at the head of the list, are applied early), with exact memoization. Quick to
    /// find a linearization.
    Eager,
    /// At each configuration the pending `ok` operations first, then the `info` writes,
    /// with the `info` reductions and, without a horizon, subsumption. Quick to refute.
    Lazy,
}

/// What one pass found.
pub(super) struct SearchOutcome {
    /// Linearizable, refuted, or out of budget.
    pub(super) result: LinearizabilityResult,
    /// Steps taken.
    pub(super) steps: u64,
    /// Configurations memoized.
    pub(super) memo_entries: usize,
    /// The deepest stuck point, if the walk got stuck at an `ok` operation's return.
    pub(super) deepest: Option<Deepest>,
}

/// A linearized operation on the search stack.
struct Frame {
    /// Its call entry.
    entry: usize,
    /// What it changed in the state.
    change: Option<Change>,
    /// The phase the entry was tried in, to resume the walk after backtracking.
    phase: bool,
    /// An info write that never took effect (its horizon passed).
    expired: bool,
}

/// One WGL search of at most `budget` steps; see the parent module's documentation.
pub(super) fn search(p: &Problem<'_>, mode: Mode, budget: u64) -> SearchOutcome {
    let lazy = mode == Mode::Lazy;
    // Subsumption relies on a pending info write never constraining the order, which is
    // true only when no info write expires.
    let subsume = lazy && p.keys.iter().all(|k| k.1 == u128::MAX || k.1 % 2 == 0);
    let mut memo = if subsume {
        Memo::Subsuming(SubsumingMemo::default())
    } else {
        Memo::Exact(HashSet::default())
    };
    // Fingerprints: the linearized ok operations always; the resolved (applied or expired)
    // info writes too with the exact memo. The subsuming memo keeps those as a sorted list.
    let is_ok = &p.is_ok;
    let zobrist = operation_keys(is_ok, subsume);

    let mut entries = Entries::new(&p.keys);
    let tail = entries.tail();
    let mut state = State::new(p.names.len());
    let mut set_fp: u128 = 0;
    // With the subsuming memo: the applied info writes, sorted.
    let mut applied: Vec<u32> = Vec::new();
    // Info writes applied or expired (for the same-effect order).
    let mut resolved = vec![false; is_ok.len()];
    let mut stack: Vec<Frame> = Vec::new();
    let mut remaining_ok = p.ok_ops;
    let mut deepest: Option<Deepest> = None;
    let mut steps = 0u64;
    let mut entry = entries.next[HEAD];
    // Lazy mode walks each configuration twice: phase 0 tries the ok operations, phase 1
    // the info writes. Eager mode tries everything in phase 0.
    let mut phase = false;
    // Set when backtracking out of an expiry: the configuration is exhausted.
    let mut expiry_tried = false;

    let result = loop {
        if remaining_ok == 0 {
            break LinearizabilityResult::Linearizable;
        }
        if steps >= budget {
            break LinearizabilityResult::Unknown;
        }
        steps += 1;
        if entry != tail && entries.is_call[entry] {
            let i = entries.op[entry];
            // Lazy: an info write is tried only if it changes the state (one that changes
            // nothing may as well never take effect) and after its predecessors of the same
            // effect.
            let eligible = if lazy {
                is_ok[i] != phase && (is_ok[i] || p.prev_same_effect[i].is_none_or(|j| resolved[j]))
            } else {
                !phase
            };
            let fits = if eligible {
                state
                    .try_step(p.license, &p.steps[i])
                    .filter(|c| !lazy || is_ok[i] || c.is_some_and(|c| c.old != c.new))
            } else {
                None
            };
            if let Some(change) = fits {
                let key = set_fp ^ zobrist[i] ^ state.fp_after(change);
                let is_new = match &mut memo {
                    Memo::Exact(set) => set.insert(key),
                    Memo::Subsuming(m) if is_ok[i] => m.enter(key, &applied),
                    Memo::Subsuming(m) => {
                        let at = applied.partition_point(|&x| x < i as u32);
                        applied.insert(at, i as u32);
                        let is_new = m.enter(key, &applied);
                        if !is_new {
                            applied.remove(at);
                        }
                        is_new
                    }
                };
                if is_new {
                    if let Some(c) = change {
                        state.apply(c, false);
                    }
                    set_fp ^= zobrist[i];
                    resolved[i] = true;
                    entries.lift(entry);
                    stack.push(Frame {
                        entry,
                        change,
                        phase,
                        expired: false,
                    });
                    if is_ok[i] {
                        remaining_ok -= 1;
                    }
                    entry = entries.next[HEAD];
                    phase = false;
                    continue;
                }
            }
            entry = entries.next[entry];
        } else if lazy && !phase {
            // The ok operations were tried: now the info writes.
            phase = true;
            entry = entries.next[HEAD];
        } else {
            if entry != tail && !is_ok[entries.op[entry]] && !expiry_tried {
                // An info write's horizon ends here: the last alternative is that it never
                // takes effect. (Only with a horizon, so with the exact memo.)
                let i = entries.op[entry];
                // Resolved is resolved: an expired write and one applied and overwritten
                // since leave the same future, so both count the same in the fingerprint.
                let key = set_fp ^ zobrist[i] ^ state.fp;
                if let Memo::Exact(set) = &mut memo
                    && set.insert(key)
                {
                    set_fp ^= zobrist[i];
                    resolved[i] = true;
                    let call = entries.partner[entry];
                    entries.lift(call);
                    stack.push(Frame {
                        entry: call,
                        change: None,
                        phase,
                        expired: true,
                    });
                    entry = entries.next[HEAD];
                    phase = false;
                    continue;
                }
            }
            // A return entry (or the end): the operation that returns here was not
            // linearized before its completion. Backtrack.
            expiry_tried = false;
            let progress = p.ok_ops - remaining_ok;
            if entry != tail
                && is_ok[entries.op[entry]]
                && deepest.as_ref().is_none_or(|d| progress > d.progress)
            {
                deepest = Some(snapshot(
                    &entries, entry, &stack, &state, &p.names, progress,
                ));
            }
            let Some(frame) = stack.pop() else {
                break LinearizabilityResult::NotLinearizable;
            };
            let i = entries.op[frame.entry];
            if let Some(c) = frame.change {
                state.apply(c, true);
            }
            set_fp ^= zobrist[i];
            resolved[i] = false;
            if is_ok[i] {
                remaining_ok += 1;
            } else if subsume && let Ok(at) = applied.binary_search(&(i as u32)) {
                applied.remove(at);
            }
            entries.unlift(frame.entry);
            if frame.expired {
                // Expiry was the configuration's last alternative: it is exhausted too.
                entry = entries.partner[frame.entry];
                expiry_tried = true;
                phase = true;
            } else {
                entry = entries.next[frame.entry];
                phase = frame.phase;
            }
        }
    };
    SearchOutcome {
        result,
        steps,
        memo_entries: memo.len(),
        deepest,
    }
}

/// The snapshot of the configuration stuck at the return entry `stuck_entry`.
fn snapshot(
    entries: &Entries,
    stuck_entry: usize,
    stack: &[Frame],
    state: &State,
    names: &[String],
    progress: usize,
) -> Deepest {
    let mut pending = Vec::new();
    let mut e = entries.next[HEAD];
    while e != stuck_entry {
        if entries.is_call[e] {
            pending.push(entries.op[e]);
        }
        e = entries.next[e];
    }
    Deepest {
        progress,
        stuck: entries.op[stuck_entry],
        state: state.to_model(names),
        last: stack
            .iter()
            .rev()
            .take(SHOWN_LINEARIZED)
            .rev()
            .map(|f| entries.op[f.entry])
            .collect(),
        pending,
    }
}
