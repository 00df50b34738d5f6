//! Checkers for licd histories, and the sequential model they share.
//!
//! - [`linearizable`]: the whole history against the sequential license model (WGL search).
//! - [`cap`]: no read or grant shows more than `max_cores`, and acknowledged grants that
//!   certainly stood at the same time never sum above it.
//! - [`durability`]: every node whose acknowledged grant was never possibly released appears
//!   in the final read.
//! - [`lease`]: the lease workload's promises: no lease ends before the time it was
//!   promised, a dead server's cores are freed within the bound, no grant beside certainly
//!   held leases exceeds the lease license's cap.
//! - [`recovery`]: after the last fault healed, a write and a check succeed within a bound;
//!   availability and the longest gap without success during faults.
//!
//! Each checker returns its own verdict (`valid` plus details, serializable to JSON);
//! [`check_all`] runs them all into one [`Report`] for `results.json`.
//!
//! Each checker's hand-written test histories are data: `testdata/<checker>/*.jsonl`, each
//! with an `.expect` file beside it giving the verdict it must reach and the facts its
//! verdict must show (`testdata/README.md`). Tests that need code — generated histories,
//! the brute-force comparison, the model's rules — stay next to what they test.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{
    AllocateOutput, CPU_LIMIT_EXHAUSTED, CheckOutput, F, History, Input, Operation, Outcome,
    Output, ReleaseOutput, UsageOutput,
};

pub mod cap;
pub mod durability;
pub mod lease;
pub mod linearizable;
pub mod recovery;

pub use cap::{CapVerdict, CapViolation, check_cap};
pub use durability::{DurabilityVerdict, LostNode, ValueMismatch, check_durability};
pub use lease::{HeldAfterDeath, LeaseConfig, LeaseVerdict, LeaseViolation, check_lease};
pub use linearizable::{
    Counterexample, DEFAULT_STEP_BUDGET, LinearizabilityOptions, LinearizabilityResult,
    LinearizabilityVerdict, PendingOp, check_linearizable,
};
pub use recovery::{ClientOpCounts, Gap, RecoveryVerdict, check_recovery};

#[cfg(test)]
mod cases;
#[cfg(test)]
pub(crate) mod test_support;

/// The one license of a test run, as far as the model needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// The license's `max_cores` (M).
    pub max_cores: u64,
    /// The license's `min_cores_per_node` (m).
    pub min_cores_per_node: u32,
}

impl License {
    /// The cores an allocation of `cores` counts: max(cores, m).
    pub fn counted(&self, cores: u32) -> u32 {
        cores.max(self.min_cores_per_node)
    }
}

/// The sequential model: node -> counted cores.
///
/// This is the readable reference the linearizability checker's compact state agrees with;
/// the checkers use it to explain violations, and tests use it to generate histories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelState {
    /// Node -> counted cores, for every node holding an allocation.
    pub nodes: BTreeMap<String, u32>,
}

impl ModelState {
    /// The sum of counted cores.
    pub fn allocated_cores(&self) -> u64 {
        self.nodes.values().map(|&c| u64::from(c)).sum()
    }

    /// Applies one operation and returns what licd answers.
    ///
    /// - allocate: counted = max(cores, m); others = the counted cores of all other nodes; if
    ///   others + counted > M it is rejected with `CPU_LIMIT_EXHAUSTED` and nothing changes,
    ///   otherwise the node's allocation becomes `counted`.
    /// - release: removes the node's allocation; `released` says whether it held one.
    /// - check: valid iff the node holds an allocation.
    /// - usage: the map and its sum.
    pub fn apply(&mut self, license: &License, input: &Input) -> Output {
        match input {
            Input::Allocate(a) => {
                let counted = license.counted(a.cores);
                let held = self.nodes.get(&a.node).map_or(0, |&c| u64::from(c));
                let others = self.allocated_cores() - held;
                if others + u64::from(counted) > license.max_cores {
                    Output::rejected()
                } else {
                    self.nodes.insert(a.node.clone(), counted);
                    Output::granted(counted, others + u64::from(counted))
                }
            }
            Input::Release(n) => Output::released(self.nodes.remove(&n.node).is_some()),
            Input::Check(n) => Output::check(self.nodes.contains_key(&n.node)),
            Input::Usage => Output::Usage(UsageOutput {
                allocated_cores: self.allocated_cores(),
                nodes: self.nodes.clone(),
            }),
            // Lease operations never reach the model (`History::lease_ops`); it has no
            // answer for them.
            Input::Lease(f, _) => Output::Lease(*f, Default::default()),
        }
    }
}

/// Whether an observed output is what the model answered. Only the observable result counts:
/// a check's `code` and extra fields are ignored; a rejection matches only with code
/// `CPU_LIMIT_EXHAUSTED`.
pub fn output_matches(expected: &Output, observed: &Output) -> bool {
    match (expected, observed) {
        (Output::Allocate(e), Output::Allocate(o)) => match (e, o) {
            (AllocateOutput::Rejected { .. }, AllocateOutput::Rejected { code }) => {
                code == CPU_LIMIT_EXHAUSTED
            }
            (a, b) => a == b,
        },
        (
            Output::Release(ReleaseOutput { released: a, .. }),
            Output::Release(ReleaseOutput { released: b, .. }),
        ) => a == b,
        (
            Output::Check(CheckOutput { valid: a, .. }),
            Output::Check(CheckOutput { valid: b, .. }),
        ) => a == b,
        (Output::Usage(a), Output::Usage(b)) => a == b,
        _ => false,
    }
}

/// A reference to one operation in a verdict: where it is in the history and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    /// The client process.
    pub process: String,
    /// The function.
    pub f: F,
    /// The `index` of its invocation.
    pub invoke_index: u64,
    /// The `index` of its completion, if it completed.
    pub complete_index: Option<u64>,
    /// The `time_ns` of its invocation.
    pub invoke_time_ns: u64,
    /// The `time_ns` of its completion, if it completed.
    pub complete_time_ns: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// Human-readable: `c3 allocate(app-2, 6) -> granted 6 (total 14) [17..18]`.
    pub op: String,
}

impl From<&Operation> for OpRef {
    fn from(op: &Operation) -> Self {
        OpRef {
            process: op.process.clone(),
            f: op.f,
            invoke_index: op.invoke_index,
            complete_index: op.complete_index,
            invoke_time_ns: op.invoke_time_ns,
            complete_time_ns: op.complete_time_ns,
            outcome: op.outcome,
            op: op.to_string(),
        }
    }
}

/// Parameters of all checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// The license the run used.
    pub license: License,
    /// The linearizability search's step budget ([`DEFAULT_STEP_BUDGET`]).
    pub step_budget: u64,
    /// The recovery bound B in nanoseconds (for example 10 s).
    pub recovery_bound_ns: u64,
    /// See [`LinearizabilityOptions::info_horizon_ns`]; `None` (the default) assumes nothing.
    pub info_horizon_ns: Option<u64>,
    /// The lease license's cap and licd's lease timing, for the lease checker.
    #[serde(default)]
    pub lease: LeaseConfig,
}

impl CheckConfig {
    /// The default budget and a 10 s recovery bound.
    pub fn new(license: License) -> Self {
        CheckConfig {
            license,
            step_budget: DEFAULT_STEP_BUDGET,
            recovery_bound_ns: 10_000_000_000,
            info_horizon_ns: None,
            lease: LeaseConfig::default(),
        }
    }
}

/// All verdicts of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// True when every checker's verdict is valid (an `unknown` linearizability result is
    /// not valid).
    pub valid: bool,
    /// The linearizability verdict.
    pub linearizable: LinearizabilityVerdict,
    /// The cap verdict.
    pub cap: CapVerdict,
    /// The durability verdict.
    pub durability: DurabilityVerdict,
    /// The recovery verdict.
    pub recovery: RecoveryVerdict,
    /// The lease verdict (trivially valid without a lease workload).
    pub lease: LeaseVerdict,
}

/// Runs every checker on a history.
pub fn check_all(history: &History, config: &CheckConfig) -> Report {
    let linearizable = check_linearizable(
        &history.ops,
        &config.license,
        &LinearizabilityOptions {
            step_budget: config.step_budget,
            info_horizon_ns: config.info_horizon_ns,
        },
    );
    let cap = check_cap(&history.ops, &config.license);
    let durability = check_durability(&history.ops);
    let recovery = check_recovery(history, config.recovery_bound_ns);
    let lease = check_lease(history, &config.lease);
    Report {
        valid: linearizable.valid && cap.valid && durability.valid && recovery.valid && lease.valid,
        linearizable,
        cap,
        durability,
        recovery,
        lease,
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn model_follows_the_license_rules() {
        let l = LICENSE;
        let mut s = ModelState::default();
        // counted = max(cores, m)
        assert_eq!(s.apply(&l, &Input::allocate("a", 2)), Output::granted(4, 4));
        assert_eq!(
            s.apply(&l, &Input::allocate("b", 10)),
            Output::granted(10, 14)
        );
        // others (14) + 4 > 16: refused, nothing changes
        assert_eq!(s.apply(&l, &Input::allocate("c", 1)), Output::rejected());
        assert_eq!(s.allocated_cores(), 14);
        // re-allocating replaces: others = 4, 4 + 12 = 16 fits
        assert_eq!(
            s.apply(&l, &Input::allocate("b", 12)),
            Output::granted(12, 16)
        );
        assert_eq!(s.apply(&l, &Input::check("b")), Output::check(true));
        assert_eq!(s.apply(&l, &Input::release("b")), Output::released(true));
        assert_eq!(s.apply(&l, &Input::release("b")), Output::released(false));
        assert_eq!(s.apply(&l, &Input::check("b")), Output::check(false));
        assert_eq!(s.apply(&l, &Input::Usage), Output::usage([("a", 4)]));
    }

    #[test]
    fn generated_histories_are_well_formed() {
        let mut rng = Rng(7);
        for _ in 0..50 {
            let plan = random_plan(&mut rng, 40, 5, 4, 3, true);
            let events = build_from_plan(&LICENSE, &plan);
            History::from_events(events).unwrap();
        }
    }
}
