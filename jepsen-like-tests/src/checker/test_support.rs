//! Helpers for the checkers' tests: the license of the test histories and a generator of
//! valid histories (a sequential execution of the model, stretched so operations overlap).

use std::collections::HashMap;

use crate::history::{ErrorValue, Event, EventKind, Input, Output};

use super::{License, ModelState};

/// M = 16, m = 4: the license of the test histories (`testdata/` and generated).
pub const LICENSE: License = License {
    max_cores: 16,
    min_cores_per_node: 4,
};

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
