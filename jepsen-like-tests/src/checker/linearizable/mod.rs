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
//!
//! The code follows those steps: `problem` prepares the history (which operations are
//! checked, their list positions, the model step each must fit), `entries` is the list,
//! `state` the compact model state, `fingerprint` and `memo` the memoization,
//! `search` one pass, and `explanation` turns the deepest point into the
//! [`Counterexample`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::history::Operation;

use super::{License, ModelState, OpRef};

mod entries;
mod explanation;
mod fingerprint;
mod memo;
mod problem;
mod search;
mod state;
#[cfg(test)]
mod tests;

use explanation::explain;
use problem::Problem;
use search::{Mode, SearchOutcome, search};

/// The default step budget: enough for histories of many thousands of operations with ten
/// concurrent processes, a few seconds at most.
pub const DEFAULT_STEP_BUDGET: u64 = 20_000_000;

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
    let problem = Problem::new(ops, license, options.info_horizon_ns);
    // First plain WGL, which applies info writes early: the quick way to a linearization
    // when they mostly took effect, and an exhaustive search like any other. If a quarter of
    // the budget does not settle it, spend the rest applying them as late as possible, with
    // the reductions and subsumption that prune the alternatives when no linearization
    // exists.
    let mut outcome = search(
        &problem,
        Mode::Eager,
        first_pass_budget.min(options.step_budget),
    );
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

    let valid = outcome.result == LinearizabilityResult::Linearizable;
    let counterexample = if valid {
        None
    } else {
        outcome
            .deepest
            .map(|d| explain(d, &problem.checked, license, outcome.result))
    };
    LinearizabilityVerdict {
        valid,
        result: outcome.result,
        max_cores: license.max_cores,
        min_cores_per_node: license.min_cores_per_node,
        operations: ops.len(),
        ok_ops: problem.ok_ops,
        info_writes: problem.info_writes,
        dropped_info_reads: problem.dropped_info_reads,
        dropped_fail: problem.dropped_fail,
        steps: outcome.steps,
        step_budget: options.step_budget,
        info_horizon_ns: options.info_horizon_ns,
        memo_entries: outcome.memo_entries,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        counterexample,
    }
}
