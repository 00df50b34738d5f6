//! Checkers for licd histories, and the sequential model they share.
//!
//! - [`linearizable`]: the whole history against the sequential license model (WGL search).
//! - [`cap`]: no read or grant shows more than `max_cores`, and acknowledged grants that
//!   certainly stood at the same time never sum above it.
//! - [`durability`]: every node whose acknowledged grant was never possibly released appears
//!   in the final read.
//! - [`recovery`]: after the last fault healed, a write and a check succeed within a bound;
//!   availability and the longest gap without success during faults.
//!
//! Each checker returns its own verdict (`valid` plus details, serializable to JSON);
//! [`check_all`] runs them all into one [`Report`] for `results.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{
    AllocateOutput, CPU_LIMIT_EXHAUSTED, CheckOutput, F, History, Input, Operation, Outcome,
    Output, ReleaseOutput, UsageOutput,
};

pub mod cap;
pub mod durability;
pub mod linearizable;
pub mod recovery;

pub use cap::{CapVerdict, CapViolation, check_cap};
pub use durability::{DurabilityVerdict, LostNode, ValueMismatch, check_durability};
pub use linearizable::{
    Counterexample, DEFAULT_STEP_BUDGET, LinearizabilityOptions, LinearizabilityResult,
    LinearizabilityVerdict, PendingOp, check_linearizable,
};
pub use recovery::{ClientOpCounts, Gap, RecoveryVerdict, check_recovery};

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
            Output::Release(ReleaseOutput { released: a }),
            Output::Release(ReleaseOutput { released: b }),
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
}

impl CheckConfig {
    /// The default budget and a 10 s recovery bound.
    pub fn new(license: License) -> Self {
        CheckConfig {
            license,
            step_budget: DEFAULT_STEP_BUDGET,
            recovery_bound_ns: 10_000_000_000,
            info_horizon_ns: None,
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
    Report {
        valid: linearizable.valid && cap.valid && durability.valid && recovery.valid,
        linearizable,
        cap,
        durability,
        recovery,
    }
}

/// Helpers for the checkers' tests: a history builder and generators.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;

    use crate::history::{ErrorValue, Event, EventKind, F, FaultValue, History, Input, Output};

    use super::{License, ModelState};

    /// M = 16, m = 4: the license of the hand-written histories.
    pub const LICENSE: License = License {
        max_cores: 16,
        min_cores_per_node: 4,
    };

    /// Builds a history event by event; each event is 1 ms after the previous one unless
    /// `at` sets the clock.
    #[derive(Default)]
    pub struct Hb {
        events: Vec<Event>,
        time_ns: u64,
        open: HashMap<String, F>,
    }

    impl Hb {
        pub fn new() -> Self {
            Self::default()
        }

        fn next(&mut self) -> (u64, u64) {
            self.time_ns += 1_000_000;
            (self.events.len() as u64, self.time_ns)
        }

        /// Sets the time of the next event, in milliseconds.
        pub fn at(mut self, ms: u64) -> Self {
            self.time_ns = ms * 1_000_000 - 1_000_000;
            self
        }

        pub fn invoke(mut self, p: &str, input: Input) -> Self {
            let (i, t) = self.next();
            self.open.insert(p.to_string(), input.f());
            self.events.push(Event::invoke(i, t, p, input));
            self
        }

        pub fn ok(mut self, p: &str, output: Output) -> Self {
            let (i, t) = self.next();
            self.open.remove(p);
            self.events.push(Event::ok(i, t, p, output));
            self
        }

        fn err(mut self, p: &str, kind: EventKind) -> Self {
            let (i, t) = self.next();
            let f = self.open.remove(p).expect("no open invocation");
            self.events
                .push(Event::error(i, t, p, kind, f, ErrorValue::new("timeout")));
            self
        }

        pub fn info(self, p: &str) -> Self {
            self.err(p, EventKind::Info)
        }

        pub fn fail(self, p: &str) -> Self {
            self.err(p, EventKind::Fail)
        }

        pub fn start(mut self, fault: &str) -> Self {
            let (i, t) = self.next();
            self.events.push(Event::nemesis(
                i,
                t,
                F::Start,
                FaultValue {
                    fault: fault.into(),
                    detail: None,
                },
            ));
            self
        }

        pub fn stop(mut self, fault: &str) -> Self {
            let (i, t) = self.next();
            self.events.push(Event::nemesis(
                i,
                t,
                F::Stop,
                FaultValue {
                    fault: fault.into(),
                    detail: None,
                },
            ));
            self
        }

        /// A complete operation: invoke then ok.
        pub fn op(self, p: &str, input: Input, output: Output) -> Self {
            self.invoke(p, input).ok(p, output)
        }

        pub fn build(self) -> History {
            // Round-trip through JSON lines so every test also exercises the format.
            let text = crate::history::to_json_lines(&self.events);
            History::parse(&text).expect("test history is well formed")
        }
    }

    /// A tiny deterministic RNG for generators outside proptest.
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce5_e9b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// What happens to one generated operation's completion.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fate {
        /// Completes ok with the model's answer.
        Ok,
        /// Took effect, but the client saw `info`.
        InfoApplied,
        /// Never took effect; the client saw `info`.
        InfoLost,
        /// Never took effect; the client saw `fail`.
        Fail,
        /// Took effect; the history ends before the completion (writes only).
        IncompleteApplied,
    }

    /// One planned operation of a generated history.
    #[derive(Debug, Clone)]
    pub struct Planned {
        pub process: usize,
        pub input: Input,
        pub fate: Fate,
        /// How far the invocation is shifted before the linearization point, and the
        /// completion after it (in steps of 1/1000 of the spacing between points).
        pub before: u64,
        pub after: u64,
    }

    /// A random input over `nodes` application servers.
    pub fn random_input(rng: &mut Rng, nodes: usize) -> Input {
        let node = format!("app-{}", rng.below(nodes as u64));
        match rng.below(10) {
            0..=3 => Input::allocate(node, 1 + rng.below(9) as u32),
            4..=5 => Input::release(node),
            6..=7 => Input::check(node),
            _ => Input::Usage,
        }
    }

    /// Builds a history from a plan: operation k takes effect (if it does) at linearization
    /// point 10⁹ + 1000·k (ns); its invocation and completion are shifted around that point
    /// so that operations overlap, but a process's operations never overlap each other, and
    /// the sequence order stays a valid linearization.
    pub fn build_from_plan(license: &License, plan: &[Planned]) -> Vec<Event> {
        let mut state = ModelState::default();
        struct Slot {
            process: usize,
            invoke: u64,
            complete: u64,
            input: Input,
            output: Option<Output>,
            fate: Fate,
        }
        let mut slots: Vec<Slot> = Vec::new();
        // Linearization points, far enough from 0 for any shift.
        let point = |k: usize| 1_000_000_000 + 1000 * k as u64;
        for (k, p) in plan.iter().enumerate() {
            let point = point(k);
            let fate = match (p.fate, p.input.f().is_write()) {
                (Fate::IncompleteApplied, false) => Fate::InfoLost,
                (f, _) => f,
            };
            let output = match fate {
                Fate::Ok | Fate::InfoApplied | Fate::IncompleteApplied => {
                    Some(state.apply(license, &p.input))
                }
                Fate::InfoLost | Fate::Fail => None,
            };
            slots.push(Slot {
                process: p.process,
                invoke: point - 1 - p.before,
                complete: point + 1 + p.after,
                input: p.input.clone(),
                output,
                fate,
            });
        }
        // A process's operations must not overlap: clip at the midpoint between points.
        let mut last: HashMap<usize, usize> = HashMap::new();
        for k in 0..slots.len() {
            if let Some(&j) = last.get(&slots[k].process) {
                let incomplete_j = slots[j].fate == Fate::IncompleteApplied;
                if incomplete_j {
                    // The previous op never completes: this process can't invoke again.
                    // Turn the previous one into an info completion instead.
                    slots[j].fate = Fate::InfoApplied;
                }
                if slots[j].complete >= slots[k].invoke {
                    let mid = (point(j) + point(k)) / 2;
                    slots[j].complete = slots[j].complete.min(mid);
                    slots[k].invoke = slots[k].invoke.max(mid + 1);
                }
            }
            last.insert(slots[k].process, k);
        }
        let mut timed: Vec<(u64, u8, Event)> = Vec::new();
        for s in &slots {
            let p = format!("c{}", s.process);
            timed.push((s.invoke, 1, Event::invoke(0, 0, p.clone(), s.input.clone())));
            let f = s.input.f();
            let completion = match s.fate {
                Fate::Ok => Some(Event::ok(0, 0, p, s.output.clone().expect("output"))),
                Fate::InfoApplied | Fate::InfoLost => Some(Event::error(
                    0,
                    0,
                    p,
                    EventKind::Info,
                    f,
                    ErrorValue::new("timeout"),
                )),
                Fate::Fail => Some(Event::error(
                    0,
                    0,
                    p,
                    EventKind::Fail,
                    f,
                    ErrorValue::new("bad request"),
                )),
                Fate::IncompleteApplied => None,
            };
            if let Some(c) = completion {
                timed.push((s.complete, 0, c));
            }
        }
        timed.sort_by_key(|(t, tie, _)| (*t, *tie));
        timed
            .into_iter()
            .enumerate()
            .map(|(i, (t, _, mut e))| {
                e.index = i as u64;
                e.time_ns = t;
                e
            })
            .collect()
    }

    /// A random valid plan of `n` operations over `procs` processes and `nodes` nodes with
    /// overlap up to `window` linearization points.
    pub fn random_plan(
        rng: &mut Rng,
        n: usize,
        procs: usize,
        nodes: usize,
        window: u64,
        faults: bool,
    ) -> Vec<Planned> {
        (0..n)
            .map(|_| {
                let fate = if faults {
                    match rng.below(20) {
                        0 => Fate::InfoApplied,
                        1 => Fate::InfoLost,
                        2 => Fate::Fail,
                        3 => Fate::IncompleteApplied,
                        _ => Fate::Ok,
                    }
                } else {
                    Fate::Ok
                };
                Planned {
                    process: rng.below(procs as u64) as usize,
                    input: random_input(rng, nodes),
                    fate,
                    before: rng.below(window * 1000),
                    after: rng.below(window * 1000),
                }
            })
            .collect()
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
    fn check_all_on_a_clean_run_is_valid_and_serializes() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .start("partition")
            .op("c1", Input::check("app-1"), Output::check(true))
            .stop("partition")
            .op("c0", Input::release("app-1"), Output::released(true))
            .op("c1", Input::check("app-1"), Output::check(false))
            .op("final", Input::Usage, Output::usage([]))
            .build();
        let report = check_all(&h, &CheckConfig::new(LICENSE));
        assert!(report.valid, "{report:#?}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["linearizable"]["result"], "linearizable");
        assert_eq!(json["cap"]["valid"], true);
        assert_eq!(json["durability"]["valid"], true);
        assert_eq!(json["recovery"]["valid"], true);
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
