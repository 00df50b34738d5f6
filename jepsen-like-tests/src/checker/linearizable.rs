//! Linearizability of the whole history against the sequential license model.
//!
//! The search is Wing & Gong's, with Lowe's memoization (as in Knossos' `wgl` and Porcupine):
//!
//! - Every operation that matters becomes a *call* entry (at its invocation) and a *return*
//!   entry (at its completion) in one doubly linked list ordered as the events happened.
//!   `ok` operations return at their completion; `info` writes (and writes that never
//!   completed) return at infinity, after every other entry, because they may take effect
//!   at any time after their invocation. `fail` operations and `info` reads are dropped: they
//!   had no effect / observed nothing.
//! - The search walks the list from its head. At a call entry it tries to linearize the
//!   operation now: if the model accepts the observed output (or, for an `info` write,
//!   whatever the model does), the entry and its return are *lifted* out of the list and the
//!   walk restarts at the head. At a return entry, the operation was not linearized before
//!   it completed: the search backtracks (pops the last linearized operation, *unlifts* it
//!   and tries the next call after it).
//! - The history is linearizable as soon as every `ok` operation is linearized: the `info`
//!   writes still in the list simply never took effect.
//! - Memoization: a configuration is the set of linearized `ok` operations, the model state
//!   and the set of applied `info` writes. They are fingerprinted incrementally (a Zobrist
//!   hash of the bitset of resolved operations XOR a hash of the state, 128 bits) and a
//!   configuration seen before is not explored again (the second pass below keeps the
//!   applied `info` writes as a sorted list instead). A fingerprint collision could only
//!   prune a branch, that is make a valid history look invalid, never accept an invalid one;
//!   with 128 bits its probability is negligible (about n²/2¹²⁸ for n configurations).
//! - The first pass is that plain search, with the budget's first quarter. Pending
//!   operations are tried in invocation order, so `info` writes (which linger at the head of
//!   the list) are applied early: quick when a linearization exists and they mostly took
//!   effect.
//! - If it does not settle the question, a second pass with the rest of the budget tries
//!   the pending `ok` operations before the `info` writes at each configuration, and prunes
//!   harder: an `info` write that would change nothing where it is tried is not applied (it
//!   may as well never take effect); `info` writes with the same effect (release of n;
//!   allocate of n counting c) are applied in invocation order only (they are
//!   interchangeable); and a configuration is skipped when one with the same `ok`
//!   operations and state but a *subset* of its `info` writes applied was entered before
//!   (subsumption: an `info` write need never take effect, so the configuration with fewer
//!   of them applied can do everything the other can). Entering configurations with fewer
//!   `info` writes applied first makes subsumption bite: quick to refute.
//! - Each step (one list entry visited) counts against the budget; when it runs out the
//!   result is [`LinearizabilityResult::Unknown`].
//! - Optionally ([`LinearizabilityOptions::info_horizon_ns`]) an `info` write is assumed to
//!   take effect, if ever, within a horizon after its completion; its return entry then sits
//!   just before the first event past the horizon, where the search must have applied it or
//!   lets it *expire*. This assumption makes refuting long histories with many `info` writes
//!   cheaper; subsumption is then off (a pending write that may still expire constrains the
//!   order, so fewer applied is no longer more freedom).
//!
//! On a violation the verdict carries the deepest point the search reached (the most `ok`
//! operations linearized): the operation that could not be linearized before its completion,
//! the operations pending at that point with why each one does not fit, the last few
//! linearized operations and the model state after them.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::history::{AllocateOutput, CPU_LIMIT_EXHAUSTED, Input, Operation, Outcome, Output};

use super::{License, ModelState, OpRef, output_matches};

/// The default step budget: enough for histories of many thousands of operations with ten
/// concurrent processes, a few seconds at most.
pub const DEFAULT_STEP_BUDGET: u64 = 20_000_000;

/// How many linearized operations a counterexample shows before the stuck point.
const SHOWN_LINEARIZED: usize = 8;
/// How many pending `info` writes a counterexample lists (it counts the rest).
const SHOWN_PENDING_INFO: usize = 8;

/// Options of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearizabilityOptions {
    /// How many steps the search may take before giving up with `unknown`.
    pub step_budget: u64,
    /// An assumption, off by default: an `info` write takes effect, if ever, no later than
    /// this many nanoseconds after its `info` completion was recorded. Without it (`None`,
    /// the strict reading) an `info` write may take effect at any time after its invocation,
    /// which makes refuting long histories with many `info` writes expensive. Writes that
    /// never completed may always take effect at any time.
    pub info_horizon_ns: Option<u64>,
}

impl Default for LinearizabilityOptions {
    fn default() -> Self {
        LinearizabilityOptions {
            step_budget: DEFAULT_STEP_BUDGET,
            info_horizon_ns: None,
        }
    }
}

/// The result of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearizabilityResult {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    NotLinearizable,
    /// The step budget ran out: neither proven nor refuted.
    Unknown,
}

/// One operation pending at the point the search got stuck, and why it does not fit there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOp {
    /// The operation.
    pub op: OpRef,
    /// Why it cannot be (or was not successfully) linearized at this point.
    pub why: String,
}

/// The deepest point the search reached: on a violation, the smallest window of operations
/// that cannot be ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counterexample {
    /// A one-paragraph explanation.
    pub message: String,
    /// How many `ok` operations were linearized at that point.
    pub linearized_ok_ops: usize,
    /// The `ok` operation that completed without any order letting it take effect first.
    pub stuck: OpRef,
    /// Why the stuck operation does not fit the state at that point.
    pub stuck_why: String,
    /// The model state at that point (after `last_linearized`).
    pub state: ModelState,
    /// The state's sum of counted cores.
    pub state_allocated_cores: u64,
    /// The last few linearized operations, in linearization order.
    pub last_linearized: Vec<OpRef>,
    /// The operations invoked before the stuck operation completed and not linearized yet
    /// (the candidates for the next step), each with why it does not fit.
    pub pending: Vec<PendingOp>,
    /// Pending `info` writes not listed in `pending`.
    pub pending_info_omitted: usize,
    /// The lowest and highest event index among the operations shown.
    pub window: (u64, u64),
}

/// The linearizability checker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearizabilityVerdict {
    /// True only when a linearization was found.
    pub valid: bool,
    /// Linearizable, not linearizable, or unknown.
    pub result: LinearizabilityResult,
    /// The model's M.
    pub max_cores: u64,
    /// The model's m.
    pub min_cores_per_node: u32,
    /// Client operations in the history.
    pub operations: usize,
    /// `ok` operations checked.
    pub ok_ops: usize,
    /// `info` (or never completed) writes checked: they may or may not have taken effect.
    pub info_writes: usize,
    /// `info` reads dropped (they observed nothing).
    pub dropped_info_reads: usize,
    /// `fail` operations dropped (they had no effect).
    pub dropped_fail: usize,
    /// Steps taken.
    pub steps: u64,
    /// The budget.
    pub step_budget: u64,
    /// The `info` horizon assumed, if any (see [`LinearizabilityOptions::info_horizon_ns`]).
    pub info_horizon_ns: Option<u64>,
    /// Configurations memoized.
    pub memo_entries: usize,
    /// Wall-clock time of the search, in milliseconds.
    pub elapsed_ms: f64,
    /// On a violation, the counterexample; on `unknown`, the deepest point reached so far.
    pub counterexample: Option<Counterexample>,
}

/// What the model must see for one operation, with nodes interned.
#[derive(Debug, Clone)]
enum Step {
    Allocate {
        node: usize,
        counted: u32,
        expect: AllocExpect,
    },
    Release {
        node: usize,
        /// `None` for an info release.
        expect: Option<bool>,
    },
    Check {
        node: usize,
        valid: bool,
    },
    Usage {
        nodes: Vec<Option<u32>>,
        total: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum AllocExpect {
    Granted {
        counted: u32,
        total: u64,
    },
    /// Rejected with `CPU_LIMIT_EXHAUSTED`.
    Refused,
    /// Rejected with another code: the model never answers that.
    Impossible,
    /// Info: whatever the model does.
    Unknown,
}

/// The model state as the search keeps it: one slot per interned node.
struct State {
    slots: Vec<Option<u32>>,
    total: u64,
    fp: u128,
}

/// One change of the state: `node`'s slot becomes `new`.
#[derive(Clone, Copy)]
struct Change {
    node: usize,
    old: Option<u32>,
    new: Option<u32>,
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e9b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The fingerprint contribution of `node` holding `value` (none contributes nothing).
fn slot_fp(node: usize, value: Option<u32>) -> u128 {
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

impl State {
    fn new(nodes: usize) -> Self {
        State {
            slots: vec![None; nodes],
            total: 0,
            fp: 0,
        }
    }

    /// The change `step` makes, or `None` if the model cannot produce the observed output
    /// here. `Some(None)` means it fits without changing anything.
    fn try_step(&self, license: &License, step: &Step) -> Option<Option<Change>> {
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
                    AllocExpect::Impossible => None,
                    AllocExpect::Unknown => Some((!refused).then_some(change)),
                }
            }
            Step::Release { node, expect } => {
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

    fn fp_after(&self, change: Option<Change>) -> u128 {
        match change {
            None => self.fp,
            Some(c) => self.fp ^ slot_fp(c.node, c.old) ^ slot_fp(c.node, c.new),
        }
    }

    fn apply(&mut self, c: Change, undo: bool) {
        let (from, to) = if undo { (c.new, c.old) } else { (c.old, c.new) };
        self.fp ^= slot_fp(c.node, from) ^ slot_fp(c.node, to);
        self.total = self.total - from.map_or(0, u64::from) + to.map_or(0, u64::from);
        self.slots[c.node] = to;
    }

    fn to_model(&self, names: &[String]) -> ModelState {
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

/// A hasher for keys that are already uniformly random.
#[derive(Default)]
struct FoldHasher(u64);

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

/// How many stored sets of one key a lookup compares at most (comparing fewer only prunes
/// less, which is always sound).
const MAX_CHAIN_SCAN: usize = 64;

/// The subsuming memo: for each fingerprint of (linearized `ok` operations, model state),
/// the sets of applied `info` writes it was entered with, each a sorted run in `data` with a
/// 64-bit signature, chained from the newest.
#[derive(Default)]
struct SubsumingMemo {
    heads: HashMap<u128, u32, BuildHasherDefault<FoldHasher>>,
    /// (next in chain or `u32::MAX`, start in `data`, length, signature).
    nodes: Vec<(u32, u32, u32, u64)>,
    data: Vec<u32>,
}

fn signature(set: &[u32]) -> u64 {
    set.iter()
        .fold(0, |sig, &x| sig | 1 << (mix64(u64::from(x)) & 63))
}

impl SubsumingMemo {
    /// Records the configuration unless one with the same key and a subset of its applied
    /// `info` writes was entered before; returns whether it was recorded (is new).
    fn enter(&mut self, key: u128, applied: &[u32]) -> bool {
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
enum Memo {
    Exact(HashSet<u128, BuildHasherDefault<FoldHasher>>),
    Subsuming(SubsumingMemo),
}

impl Memo {
    fn len(&self) -> usize {
        match self {
            Memo::Exact(set) => set.len(),
            Memo::Subsuming(m) => m.nodes.len(),
        }
    }
}

/// The doubly linked list of call and return entries. Entry 0 is the head, entry `len - 1`
/// the tail; entries in between alternate by event order.
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation (index into the checked operations) of each entry.
    op: Vec<usize>,
    is_call: Vec<bool>,
    /// The call entry's return entry and back.
    partner: Vec<usize>,
}

const HEAD: usize = 0;

impl Entries {
    /// `keys[i]` = (call position, return position) of checked operation i.
    fn new(keys: &[(u128, u128)]) -> Self {
        let mut order: Vec<(u128, bool, usize)> = Vec::with_capacity(keys.len() * 2);
        for (i, &(call, ret)) in keys.iter().enumerate() {
            order.push((call, true, i));
            order.push((ret, false, i));
        }
        // Returns at the same position (only at infinity) keep operation order; a call and
        // a return never share a position.
        order.sort_by_key(|&(pos, is_call, i)| (pos, !is_call, i));
        let len = order.len() + 2;
        let tail = len - 1;
        let mut e = Entries {
            next: (1..=len).collect(),
            prev: (0..len).map(|i| i.saturating_sub(1)).collect(),
            op: vec![usize::MAX; len],
            is_call: vec![false; len],
            partner: vec![0; len],
        };
        e.next[tail] = tail;
        let mut call_entry = vec![0; keys.len()];
        for (k, &(_, is_call, i)) in order.iter().enumerate() {
            let id = k + 1;
            e.op[id] = i;
            e.is_call[id] = is_call;
            if is_call {
                call_entry[i] = id;
            } else {
                e.partner[id] = call_entry[i];
                e.partner[call_entry[i]] = id;
            }
        }
        e
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    fn lift(&mut self, call: usize) {
        let ret = self.partner[call];
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = n;
        self.prev[n] = p;
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn unlift(&mut self, call: usize) {
        let ret = self.partner[call];
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = ret;
        self.prev[n] = ret;
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = call;
        self.prev[n] = call;
    }
}

/// A linearized operation on the search stack.
struct Frame {
    entry: usize,
    change: Option<Change>,
    /// The phase the entry was tried in, to resume the walk after backtracking.
    phase: bool,
    /// An info write that never took effect (its horizon passed).
    expired: bool,
}

/// The raw snapshot of the deepest stuck point.
struct Deepest {
    progress: usize,
    stuck: usize,
    state: ModelState,
    last: Vec<usize>,
    pending: Vec<usize>,
}

/// Checks that the `ok` operations, and possibly some `info` writes, can be put in one order
/// consistent with real time in which the model produces every observed output.
pub fn check_linearizable(
    ops: &[Operation],
    license: &License,
    options: &LinearizabilityOptions,
) -> LinearizabilityVerdict {
    check_with_first_pass(ops, license, options, options.step_budget / 4)
}

/// [`check_linearizable`] with the first (eager) pass's share of the budget given.
fn check_with_first_pass(
    ops: &[Operation],
    license: &License,
    options: &LinearizabilityOptions,
    first_pass_budget: u64,
) -> LinearizabilityVerdict {
    let started = Instant::now();
    let mut verdict = LinearizabilityVerdict {
        valid: false,
        result: LinearizabilityResult::Unknown,
        max_cores: license.max_cores,
        min_cores_per_node: license.min_cores_per_node,
        operations: ops.len(),
        ok_ops: 0,
        info_writes: 0,
        dropped_info_reads: 0,
        dropped_fail: 0,
        steps: 0,
        step_budget: options.step_budget,
        info_horizon_ns: options.info_horizon_ns,
        memo_entries: 0,
        elapsed_ms: 0.0,
        counterexample: None,
    };

    // Choose the operations and intern the nodes.
    let mut checked: Vec<&Operation> = Vec::new();
    for op in ops {
        match op.outcome {
            Outcome::Ok if op.output.is_some() => {
                verdict.ok_ops += 1;
                checked.push(op);
            }
            Outcome::Info if op.is_write() => {
                verdict.info_writes += 1;
                checked.push(op);
            }
            Outcome::Info => verdict.dropped_info_reads += 1,
            _ => verdict.dropped_fail += 1,
        }
    }
    let mut names: Vec<String> = Vec::new();
    {
        let mut seen = std::collections::BTreeSet::new();
        for op in &checked {
            if let Some(n) = op.input.node() {
                seen.insert(n.to_string());
            }
            if let Some(Output::Usage(u)) = &op.output {
                seen.extend(u.nodes.keys().cloned());
            }
        }
        names.extend(seen);
    }
    let node_id = |n: &str| names.binary_search_by(|x| x.as_str().cmp(n)).unwrap_or(0);
    let steps: Vec<Step> = checked
        .iter()
        .map(|op| to_step(op, license, &names, &node_id))
        .collect();
    let is_ok: Vec<bool> = checked.iter().map(|op| op.outcome == Outcome::Ok).collect();
    let keys = entry_keys(ops, &checked, options.info_horizon_ns);

    // Info writes with the same effect (release of n, or allocate of n counting c) are
    // interchangeable: the search applies them in invocation order only.
    let mut prev_same_effect: Vec<Option<usize>> = vec![None; checked.len()];
    {
        let mut last: HashMap<(usize, Option<u32>), usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            if is_ok[i] {
                continue;
            }
            let effect = match step {
                Step::Allocate { node, counted, .. } => (*node, Some(*counted)),
                Step::Release { node, .. } => (*node, None),
                _ => continue,
            };
            // Only when the earlier one's deadline is not later: then swapping which of the
            // two takes effect where is always possible.
            prev_same_effect[i] = last.insert(effect, i).filter(|&j| keys[j].1 <= keys[i].1);
        }
    }
    let problem = Problem {
        license,
        names: &names,
        steps: &steps,
        is_ok: &is_ok,
        keys: &keys,
        prev_same_effect: &prev_same_effect,
        ok_ops: verdict.ok_ops,
    };
    // First plain WGL, which applies info writes early: the quick way to a linearization
    // when they mostly took effect, and an exhaustive search like any other. If a quarter of
    // the budget does not settle it, spend the rest applying them as late as possible, with
    // the reductions and subsumption that prune the alternatives when no linearization
    // exists.
    let first = search(
        &problem,
        Mode::Eager,
        first_pass_budget.min(options.step_budget),
    );
    let mut outcome = first;
    if outcome.result == LinearizabilityResult::Unknown {
        let second = search(&problem, Mode::Lazy, options.step_budget - outcome.steps);
        // A refutation's own deepest point is the counterexample; otherwise the deeper one.
        let deepest = match (outcome.deepest, second.deepest) {
            (_, Some(b)) if second.result == LinearizabilityResult::NotLinearizable => Some(b),
            (Some(a), Some(b)) => Some(if a.progress >= b.progress { a } else { b }),
            (a, b) => a.or(b),
        };
        outcome = SearchOutcome {
            result: second.result,
            steps: outcome.steps + second.steps,
            memo_entries: outcome.memo_entries.max(second.memo_entries),
            deepest,
        };
    }

    verdict.result = outcome.result;
    verdict.steps = outcome.steps;
    verdict.valid = outcome.result == LinearizabilityResult::Linearizable;
    verdict.memo_entries = outcome.memo_entries;
    if !verdict.valid {
        verdict.counterexample = outcome
            .deepest
            .map(|d| explain(d, &checked, license, outcome.result));
    }
    verdict.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    verdict
}

/// The prepared history.
struct Problem<'a> {
    license: &'a License,
    names: &'a [String],
    steps: &'a [Step],
    is_ok: &'a [bool],
    /// (call position, return position) per operation.
    keys: &'a [(u128, u128)],
    /// For an info write, the previous info write (by invocation) with the same effect.
    prev_same_effect: &'a [Option<usize>],
    ok_ops: usize,
}

/// How one search pass explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain WGL: pending operations are tried in invocation order (so `info` writes, which
    /// linger at the head of the list, are applied early), with exact memoization. Quick to
    /// find a linearization.
    Eager,
    /// At each configuration the pending `ok` operations first, then the `info` writes,
    /// with the `info` reductions and, without a horizon, subsumption. Quick to refute.
    Lazy,
}

struct SearchOutcome {
    result: LinearizabilityResult,
    steps: u64,
    memo_entries: usize,
    deepest: Option<Deepest>,
}

/// One WGL search; see the module documentation.
fn search(p: &Problem<'_>, mode: Mode, budget: u64) -> SearchOutcome {
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
    let mut rng = 0x243f_6a88_85a3_08d3_u64;
    let mut fingerprint = || {
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let hi = mix64(rng);
        rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        (u128::from(hi) << 64) | u128::from(mix64(rng))
    };
    let is_ok = p.is_ok;
    let zobrist: Vec<u128> = is_ok
        .iter()
        .map(|&ok| {
            let fp = fingerprint();
            if ok || !subsume { fp } else { 0 }
        })
        .collect();

    let mut entries = Entries::new(p.keys);
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
                deepest = Some(snapshot(&entries, entry, &stack, &state, p.names, progress));
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

/// The list positions of each checked operation's call and return: event `index` × 2 for
/// events; an `info` write returns at infinity, or with a horizon just before the first event
/// later than its completion time plus the horizon (× 2 − 1, so before that event).
fn entry_keys(
    ops: &[Operation],
    checked: &[&Operation],
    horizon: Option<u64>,
) -> Vec<(u128, u128)> {
    let mut times: Vec<(u64, u64)> = Vec::new();
    if horizon.is_some() {
        for op in ops {
            times.push((op.invoke_index, op.invoke_time_ns));
            if let (Some(i), Some(t)) = (op.complete_index, op.complete_time_ns) {
                times.push((i, t));
            }
        }
        times.sort_unstable();
    }
    checked
        .iter()
        .map(|op| {
            let call = u128::from(op.invoke_index) * 2;
            let ret = match (op.outcome, horizon, op.complete_time_ns) {
                (Outcome::Info, Some(h), Some(t)) => {
                    let deadline = t.saturating_add(h);
                    // Times never decrease along indices.
                    let k = times.partition_point(|&(_, time)| time <= deadline);
                    times
                        .get(k)
                        .map_or(u128::MAX, |&(index, _)| u128::from(index) * 2 - 1)
                }
                (Outcome::Info, _, _) => u128::MAX,
                _ => u128::from(op.complete_or_max()) * 2,
            };
            (call, ret)
        })
        .collect()
}

fn to_step(
    op: &Operation,
    license: &License,
    names: &[String],
    node_id: &impl Fn(&str) -> usize,
) -> Step {
    match (&op.input, &op.output) {
        (Input::Allocate(a), out) => Step::Allocate {
            node: node_id(&a.node),
            counted: license.counted(a.cores),
            expect: match out {
                Some(Output::Allocate(AllocateOutput::Granted {
                    counted_cores,
                    allocated_cores,
                })) => AllocExpect::Granted {
                    counted: *counted_cores,
                    total: *allocated_cores,
                },
                Some(Output::Allocate(AllocateOutput::Rejected { code }))
                    if code == CPU_LIMIT_EXHAUSTED =>
                {
                    AllocExpect::Refused
                }
                Some(_) => AllocExpect::Impossible,
                None => AllocExpect::Unknown,
            },
        },
        (Input::Release(n), out) => Step::Release {
            node: node_id(&n.node),
            expect: match out {
                Some(Output::Release(r)) => Some(r.released),
                _ => None,
            },
        },
        (Input::Check(n), out) => Step::Check {
            node: node_id(&n.node),
            valid: matches!(out, Some(Output::Check(c)) if c.valid),
        },
        (Input::Usage, out) => {
            let mut nodes = vec![None; names.len()];
            let mut total = 0;
            if let Some(Output::Usage(u)) = out {
                for (n, &c) in &u.nodes {
                    nodes[node_id(n)] = Some(c);
                }
                total = u.allocated_cores;
            }
            Step::Usage { nodes, total }
        }
    }
}

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

/// Why `op` does not fit `state`.
fn why(op: &Operation, state: &ModelState, license: &License) -> String {
    let mut s = state.clone();
    let expected = s.apply(license, &op.input);
    match &op.output {
        None => "outcome unknown: may take effect here, later, or never".to_string(),
        Some(observed) if output_matches(&expected, observed) => {
            "fits the model here, but no order of the remaining operations works after it"
                .to_string()
        }
        Some(observed) => match (&expected, observed) {
            (_, Output::Allocate(AllocateOutput::Rejected { code }))
                if code != CPU_LIMIT_EXHAUSTED =>
            {
                format!("observed rejection code {code}, which the model never gives")
            }
            _ => format!("the model here gives {expected}, observed {observed}"),
        },
    }
}

fn explain(
    d: Deepest,
    checked: &[&Operation],
    license: &License,
    result: LinearizabilityResult,
) -> Counterexample {
    let stuck = checked[d.stuck];
    let stuck_why = why(stuck, &d.state, license);
    let mut pending = Vec::new();
    let mut omitted = 0;
    let mut shown_info = 0;
    for &i in &d.pending {
        let op = checked[i];
        if op.outcome != Outcome::Ok {
            if shown_info >= SHOWN_PENDING_INFO {
                omitted += 1;
                continue;
            }
            shown_info += 1;
        }
        pending.push(PendingOp {
            op: OpRef::from(op),
            why: why(op, &d.state, license),
        });
    }
    let last_linearized: Vec<OpRef> = d.last.iter().map(|&i| OpRef::from(checked[i])).collect();
    let mut lo = stuck.invoke_index;
    let mut hi = stuck.complete_or_max();
    for r in last_linearized.iter().chain(pending.iter().map(|p| &p.op)) {
        lo = lo.min(r.invoke_index);
        hi = hi.max(r.complete_index.unwrap_or(r.invoke_index));
    }
    let state_allocated_cores = d.state.allocated_cores();
    let message = format!(
        "{}: {} completed at event {}, but with {} of the ok operations linearized (the \
         deepest point reached) it fits no order of the operations pending before it: {}. \
         State there: {:?} (total {}).",
        match result {
            LinearizabilityResult::Unknown => "search budget exhausted; deepest point",
            _ => "not linearizable",
        },
        stuck,
        stuck.complete_or_max(),
        d.progress,
        stuck_why,
        d.state.nodes,
        state_allocated_cores,
    );
    Counterexample {
        message,
        linearized_ok_ops: d.progress,
        stuck: OpRef::from(stuck),
        stuck_why,
        state: d.state,
        state_allocated_cores,
        last_linearized,
        pending,
        pending_info_omitted: omitted,
        window: (lo, hi),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::super::test_support::*;
    use super::*;
    use crate::history::{History, Input, Output};

    fn check(h: &History) -> LinearizabilityVerdict {
        check_linearizable(&h.ops, &LICENSE, &LinearizabilityOptions::default())
    }

    fn assert_valid(h: &History) {
        let v = check(h);
        assert_eq!(v.result, LinearizabilityResult::Linearizable, "{v:#?}");
        assert!(v.valid);
    }

    fn assert_violation(h: &History) -> Counterexample {
        let v = check(h);
        assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{v:#?}");
        assert!(!v.valid);
        v.counterexample.expect("a counterexample")
    }

    // ---- known-bad histories ----

    #[test]
    fn stale_check_after_acknowledged_allocation_is_caught() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c1", Input::check("app-1"), Output::check(false))
            .build();
        let cx = assert_violation(&h);
        assert_eq!(cx.stuck.process, "c1");
        assert_eq!(cx.stuck.invoke_index, 2);
        assert_eq!(cx.linearized_ok_ops, 1);
        assert_eq!(cx.last_linearized.len(), 1);
        assert_eq!(cx.last_linearized[0].invoke_index, 0);
        assert!(cx.stuck_why.contains("valid=true"), "{}", cx.stuck_why);
        assert_eq!(cx.window, (0, 3));
    }

    #[test]
    fn stale_usage_missing_an_acknowledged_allocation_is_caught() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c0", Input::allocate("app-2", 2), Output::granted(4, 10))
            .op("c1", Input::Usage, Output::usage([("app-1", 6)]))
            .build();
        let cx = assert_violation(&h);
        assert_eq!(cx.stuck.f, crate::history::F::Usage);
        assert_eq!(cx.state_allocated_cores, 10);
    }

    #[test]
    fn stale_check_after_release_is_caught() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c0", Input::release("app-1"), Output::released(true))
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn double_grant_over_the_cap_is_caught() {
        // M = 16: two grants of 10 cannot both stand; each reports a plausible total.
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 10))
            .invoke("c1", Input::allocate("app-2", 10))
            .ok("c0", Output::granted(10, 10))
            .ok("c1", Output::granted(10, 10))
            .build();
        let cx = assert_violation(&h);
        // Both grants are in the window.
        let shown: BTreeSet<u64> = cx
            .pending
            .iter()
            .map(|p| p.op.invoke_index)
            .chain(cx.last_linearized.iter().map(|o| o.invoke_index))
            .chain([cx.stuck.invoke_index])
            .collect();
        assert!(shown.contains(&0) && shown.contains(&1), "{cx:#?}");
    }

    #[test]
    fn usage_above_the_cap_is_caught() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 10), Output::granted(10, 10))
            .op(
                "c1",
                Input::Usage,
                Output::usage([("app-1", 10), ("app-2", 10)]),
            )
            .build();
        assert_violation(&h);
    }

    #[test]
    fn rejected_allocation_that_should_have_succeeded_is_caught() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c1", Input::allocate("app-2", 8), Output::rejected())
            .build();
        let cx = assert_violation(&h);
        assert!(
            cx.stuck_why.contains("granted 8 (total 14)"),
            "{}",
            cx.stuck_why
        );
    }

    #[test]
    fn rejection_is_legal_only_when_the_model_refuses() {
        // 12 held, 6 more would be 18 > 16: the rejection is right.
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 12), Output::granted(12, 12))
            .op("c1", Input::allocate("app-2", 6), Output::rejected())
            .op("c1", Input::check("app-2"), Output::check(false))
            .build();
        assert_valid(&h);
        // A grant there is not.
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 12), Output::granted(12, 12))
            .op("c1", Input::allocate("app-2", 6), Output::granted(6, 18))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn wrong_counted_cores_or_total_is_caught() {
        // m = 4: an allocation of 2 counts 4.
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 2), Output::granted(2, 2))
            .build();
        assert_violation(&h);
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c0", Input::allocate("app-1", 8), Output::granted(8, 14))
            .build();
        let cx = assert_violation(&h);
        assert!(
            cx.stuck_why.contains("granted 8 (total 8)"),
            "{}",
            cx.stuck_why
        );
    }

    #[test]
    fn wrong_released_flag_is_caught() {
        let h = Hb::new()
            .op("c0", Input::release("app-1"), Output::released(true))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn other_rejection_codes_never_match() {
        let h = Hb::new()
            .op(
                "c0",
                Input::allocate("app-1", 6),
                Output::Allocate(AllocateOutput::Rejected {
                    code: "LICENSE_EXPIRED".into(),
                }),
            )
            .build();
        let cx = assert_violation(&h);
        assert!(cx.stuck_why.contains("never gives"), "{}", cx.stuck_why);
    }

    #[test]
    fn lost_info_write_cannot_explain_a_read_before_its_invocation() {
        // The check at [0..1] says valid, but the only allocate is invoked after it.
        let h = Hb::new()
            .op("c1", Input::check("app-1"), Output::check(true))
            .invoke("c0", Input::allocate("app-1", 6))
            .info("c0")
            .build();
        assert_violation(&h);
    }

    #[test]
    fn counterexample_names_the_concurrent_window() {
        // Many good operations, then two concurrent checks that contradict each other
        // around an allocation that was never invoked before the first.
        let mut b = Hb::new();
        for k in 0..10 {
            let node = format!("app-{}", k % 3);
            b = b
                .op(
                    "c0",
                    Input::allocate(node.clone(), 4),
                    Output::granted(4, 4 * ((k.min(2)) + 1)),
                )
                .op("c1", Input::check(node), Output::check(true));
        }
        let h = b
            .invoke("c2", Input::release("app-0"))
            .invoke("c3", Input::check("app-1"))
            .ok("c2", Output::released(true))
            .ok("c3", Output::check(false))
            .build();
        let cx = assert_violation(&h);
        assert_eq!(cx.stuck.process, "c3");
        assert!(cx.linearized_ok_ops >= 20, "{cx:#?}");
        assert_eq!(cx.last_linearized.len(), SHOWN_LINEARIZED);
        assert!(cx.window.0 >= 40 - 2 * SHOWN_LINEARIZED as u64, "{cx:#?}");
        assert!(cx.message.contains("c3 check(app-1)"), "{}", cx.message);
    }

    // ---- legal histories ----

    #[test]
    fn overlapping_allocate_and_check_pass_in_either_order() {
        for valid in [true, false] {
            let h = Hb::new()
                .invoke("c0", Input::allocate("app-1", 6))
                .invoke("c1", Input::check("app-1"))
                .ok("c1", Output::check(valid))
                .ok("c0", Output::granted(6, 6))
                .build();
            assert_valid(&h);
        }
    }

    #[test]
    fn overlapping_release_and_check_pass_in_either_order() {
        for valid in [true, false] {
            let h = Hb::new()
                .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
                .invoke("c0", Input::release("app-1"))
                .invoke("c1", Input::check("app-1"))
                .ok("c0", Output::released(true))
                .ok("c1", Output::check(valid))
                .build();
            assert_valid(&h);
        }
    }

    #[test]
    fn concurrent_allocations_racing_for_the_last_cores() {
        // 8 held; app-2 and app-3 both want 8: exactly one may win, in either order.
        for first in ["c1", "c2"] {
            let (winner, loser) = if first == "c1" {
                ("c1", "c2")
            } else {
                ("c2", "c1")
            };
            let h = Hb::new()
                .op("c0", Input::allocate("app-1", 8), Output::granted(8, 8))
                .invoke("c1", Input::allocate("app-2", 8))
                .invoke("c2", Input::allocate("app-3", 8))
                .ok(loser, Output::rejected())
                .ok(winner, Output::granted(8, 16))
                .build();
            assert_valid(&h);
        }
        // Both winning is the double grant.
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 8), Output::granted(8, 8))
            .invoke("c1", Input::allocate("app-2", 8))
            .invoke("c2", Input::allocate("app-3", 8))
            .ok("c1", Output::granted(8, 16))
            .ok("c2", Output::granted(8, 16))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn usage_concurrent_with_writes_may_see_either_state() {
        for seen in [
            Output::usage([("app-1", 6)]),
            Output::usage([("app-1", 6), ("app-2", 4)]),
            Output::usage([("app-2", 4)]),
        ] {
            let h = Hb::new()
                .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
                .invoke("c0", Input::allocate("app-2", 1))
                .invoke("c1", Input::release("app-1"))
                .invoke("c2", Input::Usage)
                .ok("c2", seen.clone())
                .ok("c0", Output::granted(4, 10))
                .ok("c1", Output::released(true))
                .build();
            let v = check(&h);
            // The grant's total of 10 puts the allocate before the release; the read may
            // fall before, between or after them.
            assert!(v.valid, "{seen}: {v:#?}");
        }
    }

    #[test]
    fn info_write_that_took_effect_explains_later_reads() {
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .info("c0")
            .op("c1", Input::check("app-1"), Output::check(true))
            .op("c1", Input::Usage, Output::usage([("app-1", 6)]))
            .build();
        assert_valid(&h);
    }

    #[test]
    fn info_write_that_never_took_effect_is_fine() {
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .info("c0")
            .op("c1", Input::check("app-1"), Output::check(false))
            .op("c1", Input::allocate("app-2", 16), Output::granted(16, 16))
            .build();
        assert_valid(&h);
    }

    #[test]
    fn info_write_may_take_effect_long_after_its_timeout() {
        // The info allocate lands after the check that did not see it.
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .info("c0")
            .op("c1", Input::check("app-1"), Output::check(false))
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        assert_valid(&h);
        // ... but it cannot take effect twice: seen, then gone, without any release.
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .info("c0")
            .op("c1", Input::check("app-1"), Output::check(true))
            .op("c1", Input::check("app-1"), Output::check(false))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn incomplete_invocations_are_treated_as_info() {
        let h = Hb::new()
            .invoke("c0", Input::release("app-1"))
            .op("c1", Input::allocate("app-1", 6), Output::granted(6, 6))
            .op("c1", Input::check("app-1"), Output::check(false))
            .invoke("c2", Input::check("app-1"))
            .build();
        // The never-completed release lands after the allocation.
        assert_valid(&h);
    }

    #[test]
    fn info_horizon_bounds_when_an_info_write_may_take_effect() {
        let h = Hb::new()
            .at(1)
            .invoke("c0", Input::allocate("app-1", 6))
            .at(2)
            .info("c0")
            .at(50)
            .op("c1", Input::check("app-1"), Output::check(false))
            .at(100)
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        let with = |horizon_ms: Option<u64>| {
            check_linearizable(
                &h.ops,
                &LICENSE,
                &LinearizabilityOptions {
                    info_horizon_ns: horizon_ms.map(|ms| ms * 1_000_000),
                    ..Default::default()
                },
            )
        };
        // Strictly, the allocate may land any time, e.g. at 60 ms.
        assert!(with(None).valid);
        assert!(with(Some(1_000)).valid);
        // With a 10 ms horizon it landed by 12 ms or never: the checks contradict.
        let v = with(Some(10));
        assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{v:#?}");
        assert_eq!(v.info_horizon_ns, Some(10_000_000));
        // Never taking effect is still allowed within the horizon.
        let h = Hb::new()
            .at(1)
            .invoke("c0", Input::allocate("app-1", 6))
            .at(2)
            .info("c0")
            .at(100)
            .op("c1", Input::check("app-1"), Output::check(false))
            .build();
        let v = check_linearizable(
            &h.ops,
            &LICENSE,
            &LinearizabilityOptions {
                info_horizon_ns: Some(0),
                ..Default::default()
            },
        );
        assert!(v.valid, "{v:#?}");
    }

    #[test]
    fn info_horizon_does_not_apply_to_writes_that_never_completed() {
        let h = Hb::new()
            .at(1)
            .invoke("c0", Input::allocate("app-1", 6))
            .at(3)
            .op("c1", Input::check("app-1"), Output::check(false))
            .at(100)
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        let v = check_linearizable(
            &h.ops,
            &LICENSE,
            &LinearizabilityOptions {
                info_horizon_ns: Some(0),
                ..Default::default()
            },
        );
        assert!(v.valid, "{v:#?}");
    }

    #[test]
    fn fail_ops_and_info_reads_are_dropped() {
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .fail("c0")
            .invoke("c1", Input::Usage)
            .info("c1")
            .op("c1", Input::check("app-1"), Output::check(false))
            .build();
        let v = check(&h);
        assert!(v.valid);
        assert_eq!((v.dropped_fail, v.dropped_info_reads, v.ok_ops), (1, 1, 1));
        // A fail allocate can't explain a later valid check.
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .fail("c0")
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        assert_violation(&h);
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_valid(&Hb::new().build());
    }

    #[test]
    fn budget_exhaustion_reports_unknown() {
        let mut rng = Rng(3);
        let plan = random_plan(&mut rng, 200, 6, 4, 4, true);
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let v = check_linearizable(
            &h.ops,
            &LICENSE,
            &LinearizabilityOptions {
                step_budget: 50,
                info_horizon_ns: None,
            },
        );
        assert_eq!(v.result, LinearizabilityResult::Unknown);
        assert!(!v.valid);
        assert_eq!(v.steps, 50);
    }

    // ---- generated histories ----

    /// Brute force: every order of the ok operations and of any subset of the info writes,
    /// each operation placed at a point inside its window (in units of half events).
    fn oracle(h: &History, horizon: Option<u64>) -> bool {
        let ops: Vec<&Operation> = h
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok || (o.outcome == Outcome::Info && o.is_write()))
            .collect();
        let window = |o: &Operation| -> (u128, u128) {
            let lo = u128::from(o.invoke_index) * 2 + 1;
            let hi = match (o.outcome, o.complete_time_ns, horizon) {
                (Outcome::Ok, _, _) => u128::from(o.complete_index.unwrap()) * 2,
                (_, Some(t), Some(hz)) => h
                    .events
                    .iter()
                    .find(|e| e.time_ns > t + hz)
                    .map_or(u128::MAX, |e| u128::from(e.index) * 2),
                _ => u128::MAX,
            };
            (lo, hi)
        };
        let windows: Vec<(u128, u128)> = ops.iter().map(|o| window(o)).collect();
        fn go(
            ops: &[&Operation],
            windows: &[(u128, u128)],
            done: &mut Vec<bool>,
            cur: u128,
            state: &ModelState,
        ) -> bool {
            if ops
                .iter()
                .zip(done.iter())
                .all(|(o, d)| *d || o.outcome != Outcome::Ok)
            {
                return true;
            }
            for i in 0..ops.len() {
                let (lo, hi) = windows[i];
                let point = cur.max(lo);
                if done[i] || point >= hi {
                    continue;
                }
                let mut s = state.clone();
                let out = s.apply(&LICENSE, &ops[i].input);
                if let Some(obs) = &ops[i].output {
                    if !output_matches(&out, obs) {
                        continue;
                    }
                }
                done[i] = true;
                let ok = go(ops, windows, done, point, &s);
                done[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }
        go(
            &ops,
            &windows,
            &mut vec![false; ops.len()],
            0,
            &ModelState::default(),
        )
    }

    /// Changes one ok output so the observable result differs.
    fn mutate(out: &Output, pick: u64) -> Output {
        match out {
            Output::Allocate(AllocateOutput::Granted {
                counted_cores,
                allocated_cores,
            }) => match pick % 3 {
                0 => Output::granted(*counted_cores + 1, *allocated_cores + 1),
                1 => Output::granted(*counted_cores, *allocated_cores + 1),
                _ => Output::rejected(),
            },
            Output::Allocate(AllocateOutput::Rejected { .. }) => Output::granted(4, 16),
            Output::Release(r) => Output::released(!r.released),
            Output::Check(c) => Output::check(!c.valid),
            Output::Usage(u) => {
                let mut nodes = u.nodes.clone();
                if pick % 2 == 0 && !nodes.is_empty() {
                    let k = nodes.keys().next().cloned().unwrap_or_default();
                    nodes.remove(&k);
                } else {
                    *nodes.entry("app-0".into()).or_insert(0) += 1;
                }
                Output::Usage(crate::history::UsageOutput {
                    allocated_cores: nodes.values().map(|&c| u64::from(c)).sum(),
                    nodes,
                })
            }
        }
    }

    fn mutate_one(h: &History, which: usize, pick: u64) -> Option<History> {
        let oks: Vec<usize> = h
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.value, crate::history::Value::Output(_)))
            .map(|(i, _)| i)
            .collect();
        let &i = oks.get(which % oks.len().max(1))?;
        let mut events = h.events.clone();
        if let crate::history::Value::Output(out) = &events[i].value {
            events[i].value = crate::history::Value::Output(mutate(out, pick));
        }
        Some(History::from_events(events).unwrap())
    }

    fn plan_strategy(
        max_ops: usize,
        procs: usize,
        nodes: usize,
        window: u64,
        faults: bool,
    ) -> impl Strategy<Value = Vec<Planned>> {
        (any::<u64>(), 1..=max_ops)
            .prop_map(move |(seed, n)| random_plan(&mut Rng(seed), n, procs, nodes, window, faults))
    }

    proptest! {
        // No regression files: a failure prints its minimal input, to be turned into a test.
        #![proptest_config(ProptestConfig {
            cases: 200,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A sequential execution of the model, with invocations and completions shifted so
        /// operations overlap (keeping the execution order a valid linearization), some
        /// completions turned into info/fail/missing, is accepted.
        #[test]
        fn generated_valid_histories_pass(
            plan in plan_strategy(60, 6, 4, 4, true),
            horizon in prop_oneof![Just(None), Just(Some(0))],
        ) {
            // Info writes of the plan take effect before their completion, so within any
            // horizon.
            let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
            let options = LinearizabilityOptions { info_horizon_ns: horizon, ..Default::default() };
            let v = check_linearizable(&h.ops, &LICENSE, &options);
            prop_assert_eq!(v.result, LinearizabilityResult::Linearizable, "{:#?}", v);
            // The lazy pass alone finds it too.
            let v = check_with_first_pass(&h.ops, &LICENSE, &options, 0);
            prop_assert_eq!(v.result, LinearizabilityResult::Linearizable, "{:#?}", v);
        }

        /// Without overlap the only order is the real-time order, so any change of an
        /// observable result must be rejected.
        #[test]
        fn mutated_sequential_histories_fail(
            plan in plan_strategy(40, 3, 3, 0, false),
            which in any::<usize>(),
            pick in any::<u64>(),
        ) {
            let plan: Vec<Planned> = plan
                .into_iter()
                .map(|p| Planned { before: 0, after: 0, ..p })
                .collect();
            let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
            prop_assert!(check(&h).valid);
            let m = mutate_one(&h, which, pick).unwrap();
            let v = check(&m);
            prop_assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{:#?}", v);
            prop_assert!(v.counterexample.is_some());
        }

        /// On small concurrent histories (with info, fail and missing completions), mutated or
        /// not, the checker agrees with a brute-force search over all orders.
        #[test]
        fn agrees_with_brute_force_on_small_histories(
            plan in plan_strategy(7, 4, 2, 3, true),
            mutate_it in any::<bool>(),
            which in any::<usize>(),
            pick in any::<u64>(),
            horizon in prop_oneof![Just(None), Just(Some(0)), Just(Some(1_500)), Just(Some(4_000))],
        ) {
            let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
            let h = if mutate_it { mutate_one(&h, which, pick).unwrap_or(h) } else { h };
            let options = LinearizabilityOptions { info_horizon_ns: horizon, ..Default::default() };
            let expected = oracle(&h, horizon);
            // The default, the eager pass alone, the lazy pass alone.
            for first_pass in [options.step_budget / 4, options.step_budget, 0] {
                let v = check_with_first_pass(&h.ops, &LICENSE, &options, first_pass);
                prop_assert_ne!(v.result, LinearizabilityResult::Unknown);
                prop_assert_eq!(v.valid, expected, "first pass {}: {:#?}", first_pass, h.ops);
            }
        }
    }

    /// The same agreement on a fixed set of slightly larger histories (3 to 8 operations),
    /// for both passes alone and under every horizon.
    #[test]
    fn agrees_with_brute_force_on_seeded_histories() {
        let (mut valid, mut invalid) = (0, 0);
        for seed in 0..1_500u64 {
            let mut rng = Rng(seed);
            let n = 3 + (seed % 6) as usize;
            let plan = random_plan(&mut rng, n, 4, 2 + (seed % 2) as usize, 3, true);
            let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
            let h = if seed % 2 == 0 {
                mutate_one(&h, rng.next() as usize, rng.next()).unwrap_or(h)
            } else {
                h
            };
            for horizon in [None, Some(0), Some(1_500), Some(4_000)] {
                let expected = oracle(&h, horizon);
                if expected {
                    valid += 1
                } else {
                    invalid += 1
                }
                let options = LinearizabilityOptions {
                    info_horizon_ns: horizon,
                    ..Default::default()
                };
                for first_pass in [u64::MAX, 0] {
                    let v = check_with_first_pass(&h.ops, &LICENSE, &options, first_pass);
                    assert_eq!(v.valid, expected, "seed {seed} {horizon:?} {first_pass}");
                }
            }
        }
        // Both kinds are well represented.
        assert!(
            valid > 1_500 && invalid > 1_500,
            "{valid} valid, {invalid} invalid"
        );
    }

    /// A larger generated history: the checker must stay fast.
    #[test]
    fn generated_history_of_2000_ops_checks_quickly() {
        let mut rng = Rng(11);
        let plan = random_plan(&mut rng, 2000, 8, 6, 4, true);
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let v = check(&h);
        assert!(v.valid, "{v:#?}");
        assert!(v.steps < 1_000_000, "{} steps", v.steps);
    }

    /// Timing: `cargo test --release -p licd-jepsen -- --ignored --nocapture perf`.
    #[test]
    #[ignore]
    fn perf_linearizability_on_generated_histories() {
        // (operations, processes, overlap window in operation slots, faults)
        for &(n, procs, window, faults) in &[
            (5_000, 5, 3, true),
            (5_000, 10, 6, true),
            (10_000, 10, 6, true),
            (20_000, 10, 6, true),
            (5_000, 10, 6, false),
            (20_000, 10, 6, false),
        ] {
            let mut rng = Rng(n as u64 + procs as u64);
            let plan = random_plan(&mut rng, n, procs, 8, window, faults);
            let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
            let max_conc = max_concurrency(&h);
            let v = check(&h);
            println!(
                "{n} ops, {procs} processes (max {max_conc} concurrent), {} ok, {} info \
                 writes: valid history: {:?} in {:.1} ms, {} steps, {} memo entries",
                v.ok_ops, v.info_writes, v.result, v.elapsed_ms, v.steps, v.memo_entries
            );
            assert!(v.valid);
            for at in [n / 10, n / 2] {
                let m = mutate_one(&h, at, 1).unwrap();
                let strict = check(&m);
                let horizon = check_linearizable(
                    &m.ops,
                    &LICENSE,
                    &LinearizabilityOptions {
                        // five operation slots of the generator
                        info_horizon_ns: Some(5_000),
                        ..Default::default()
                    },
                );
                let changed = h
                    .events
                    .iter()
                    .zip(&m.events)
                    .find(|(a, b)| a != b)
                    .map(|(a, _)| a.index);
                let stuck = |v: &LinearizabilityVerdict| {
                    v.counterexample
                        .as_ref()
                        .and_then(|c| c.stuck.complete_index)
                };
                println!(
                    "    event {changed:?} (ok op #{at}) mutated: strict {:?} in {:.1} ms ({} \
                     steps, stuck at {:?}); with horizon {:?} in {:.1} ms ({} steps, stuck at \
                     {:?})",
                    strict.result,
                    strict.elapsed_ms,
                    strict.steps,
                    stuck(&strict),
                    horizon.result,
                    horizon.elapsed_ms,
                    horizon.steps,
                    stuck(&horizon),
                );
            }
        }
    }

    fn max_concurrency(h: &History) -> usize {
        let mut open = 0usize;
        let mut max = 0;
        let mut pending = std::collections::HashSet::new();
        for e in &h.events {
            if e.kind == crate::history::EventKind::Invoke {
                pending.insert(e.process.clone());
                open += 1;
                max = max.max(open);
            } else if pending.remove(&e.process) {
                open -= 1;
            }
        }
        max
    }
}
