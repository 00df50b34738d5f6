//! From events to what the checkers reason about: client [`Operation`]s (an invocation
//! paired with its completion) and [`FaultInterval`]s (a nemesis `start` paired with its
//! `stop`).
//!
//! Pairing also checks the history's structure: indices strictly increase, times never go
//! back, a process has at most one operation outstanding, and every completion and every
//! `stop` has something to close.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::HistoryError;
use super::event::{Event, EventKind, F};
use super::value::{AllocateOutput, ErrorValue, Input, Output, Value};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Completed with a known result.
    Ok,
    /// Certainly had no effect.
    Fail,
    /// Unknown: an `info` completion, or no completion at all.
    Info,
}

/// One client operation: an invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client process.
    pub process: String,
    /// The function.
    pub f: F,
    /// The `index` of the invoke event.
    pub invoke_index: u64,
    /// The `time_ns` of the invoke event.
    pub invoke_time_ns: u64,
    /// The `index` of the completion, `None` if the history ended first.
    pub complete_index: Option<u64>,
    /// The `time_ns` of the completion, `None` if the history ended first.
    pub complete_time_ns: Option<u64>,
    /// How it ended (an incomplete operation is `Info`).
    pub outcome: Outcome,
    /// The input.
    pub input: Input,
    /// The result, for `Ok` operations.
    pub output: Option<Output>,
    /// The error, for `fail` and `info` completions.
    pub error: Option<ErrorValue>,
}

impl Operation {
    /// True for `allocate` and `release`.
    pub fn is_write(&self) -> bool {
        self.f.is_write()
    }

    /// The completion index, or `u64::MAX` when the operation never completed.
    pub fn complete_or_max(&self) -> u64 {
        self.complete_index.unwrap_or(u64::MAX)
    }

    /// The last event index at which the operation may still take effect: its completion
    /// for `ok` and `fail`, infinity (`u64::MAX`) for `info`.
    pub fn effect_deadline(&self) -> u64 {
        match self.outcome {
            Outcome::Info => u64::MAX,
            _ => self.complete_or_max(),
        }
    }

    /// The granted allocation `(node, counted_cores, allocated_cores)`, if this is an `ok`
    /// allocate that was granted.
    pub fn granted(&self) -> Option<(&str, u32, u64)> {
        match (&self.input, &self.output) {
            (
                Input::Allocate(a),
                Some(Output::Allocate(AllocateOutput::Granted {
                    counted_cores,
                    allocated_cores,
                })),
            ) => Some((&a.node, *counted_cores, *allocated_cores)),
            _ => None,
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.process, self.input)?;
        match (&self.outcome, &self.output) {
            (Outcome::Ok, Some(out)) => write!(f, " -> {out}")?,
            (Outcome::Fail, _) => write!(f, " -> fail")?,
            (_, _) if self.complete_index.is_none() => write!(f, " -> (never completed)")?,
            _ => write!(f, " -> info")?,
        }
        match self.complete_index {
            Some(c) => write!(f, " [{}..{}]", self.invoke_index, c),
            None => write!(f, " [{}..]", self.invoke_index),
        }
    }
}

/// One fault: from a nemesis `start` to the `stop` of the same fault name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultInterval {
    /// The fault's name.
    pub fault: String,
    /// The `start`'s detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The `index` of the `start`.
    pub start_index: u64,
    /// The `time_ns` of the `start`.
    pub start_time_ns: u64,
    /// The `index` of the `stop`; `None` if the fault never stopped.
    pub stop_index: Option<u64>,
    /// The `time_ns` of the `stop`; `None` if the fault never stopped.
    pub stop_time_ns: Option<u64>,
}

/// Checks that indices strictly increase and times never decrease.
pub fn check_order(events: &[Event]) -> Result<(), HistoryError> {
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if b.index <= a.index {
            return Err(HistoryError::structure(
                b.index,
                format!("index does not increase (previous event has {})", a.index),
            ));
        }
        if b.time_ns < a.time_ns {
            return Err(HistoryError::structure(
                b.index,
                format!(
                    "time_ns {} is earlier than the previous event's {}",
                    b.time_ns, a.time_ns
                ),
            ));
        }
    }
    Ok(())
}

/// Pairs each client invocation with its completion, in invocation order. Nemesis events and
/// lease markers are skipped. An invocation without completion becomes an `Info` operation without
/// `complete_index`. Errors: an invocation while the process has one outstanding, a
/// completion without an invocation, a completion whose `f` differs from the invocation's,
/// or indices/times out of order.
pub fn pair_operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    check_order(events)?;
    let mut ops: Vec<Operation> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for e in events {
        if e.is_nemesis() || e.f.is_marker() {
            continue;
        }
        match (&e.kind, &e.value) {
            (EventKind::Invoke, Value::Input(input)) => {
                if let Some(&i) = open.get(e.process.as_str()) {
                    return Err(HistoryError::structure(
                        e.index,
                        format!(
                            "process {} invokes while its invocation at {} is outstanding",
                            e.process, ops[i].invoke_index
                        ),
                    ));
                }
                open.insert(&e.process, ops.len());
                ops.push(Operation {
                    process: e.process.clone(),
                    f: e.f,
                    invoke_index: e.index,
                    invoke_time_ns: e.time_ns,
                    complete_index: None,
                    complete_time_ns: None,
                    outcome: Outcome::Info,
                    input: input.clone(),
                    output: None,
                    error: None,
                });
            }
            (kind, value) => {
                let Some(i) = open.remove(e.process.as_str()) else {
                    return Err(HistoryError::structure(
                        e.index,
                        format!(
                            "`{kind}` completion for process {} without an invocation",
                            e.process
                        ),
                    ));
                };
                let op = &mut ops[i];
                if op.f != e.f {
                    return Err(HistoryError::structure(
                        e.index,
                        format!(
                            "completion `{}` does not match the invocation `{}` at {}",
                            e.f, op.f, op.invoke_index
                        ),
                    ));
                }
                op.complete_index = Some(e.index);
                op.complete_time_ns = Some(e.time_ns);
                match (kind, value) {
                    (EventKind::Ok, Value::Output(out)) => {
                        op.outcome = Outcome::Ok;
                        op.output = Some(out.clone());
                    }
                    (EventKind::Fail, Value::Error(err)) => {
                        op.outcome = Outcome::Fail;
                        op.error = Some(err.clone());
                    }
                    (EventKind::Info, Value::Error(err)) => {
                        op.outcome = Outcome::Info;
                        op.error = Some(err.clone());
                    }
                    _ => {
                        return Err(HistoryError::structure(
                            e.index,
                            format!("`{kind}` event with a value of the wrong shape"),
                        ));
                    }
                }
            }
        }
    }
    Ok(ops)
}

/// Pairs nemesis `start` and `stop` events by fault name, first-in first-out, in `start`
/// order. A `start` that is never stopped gives an interval without `stop_index`; a `stop`
/// without an open `start` of its name is an error.
pub fn fault_intervals(events: &[Event]) -> Result<Vec<FaultInterval>, HistoryError> {
    let mut intervals: Vec<FaultInterval> = Vec::new();
    let mut open: HashMap<&str, VecDeque<usize>> = HashMap::new();
    for e in events.iter().filter(|e| e.is_nemesis()) {
        let Value::Fault(fault) = &e.value else {
            return Err(HistoryError::structure(
                e.index,
                "nemesis event without a fault",
            ));
        };
        match e.f {
            F::Start => {
                open.entry(&fault.fault)
                    .or_default()
                    .push_back(intervals.len());
                intervals.push(FaultInterval {
                    fault: fault.fault.clone(),
                    detail: fault.detail.clone(),
                    start_index: e.index,
                    start_time_ns: e.time_ns,
                    stop_index: None,
                    stop_time_ns: None,
                });
            }
            _ => {
                let Some(i) = open
                    .get_mut(fault.fault.as_str())
                    .and_then(VecDeque::pop_front)
                else {
                    return Err(HistoryError::structure(
                        e.index,
                        format!("stop of fault {:?} that is not active", fault.fault),
                    ));
                };
                intervals[i].stop_index = Some(e.index);
                intervals[i].stop_time_ns = Some(e.time_ns);
            }
        }
    }
    Ok(intervals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{FaultValue, History};

    #[test]
    fn structural_errors_are_reported() {
        let inv = |i, p: &str| Event::invoke(i, i, p, Input::check("a"));
        let ok = |i, p: &str| Event::ok(i, i, p, Output::check(true));
        let cases: Vec<(Vec<Event>, &str)> = vec![
            (vec![ok(1, "c0")], "without an invocation"),
            (vec![inv(1, "c0"), inv(2, "c0")], "outstanding"),
            (
                vec![inv(1, "c0"), Event::ok(2, 2, "c0", Output::released(true))],
                "does not match",
            ),
            (vec![inv(2, "c0"), ok(2, "c0")], "index does not increase"),
            (
                vec![inv(1, "c0"), Event::ok(2, 0, "c0", Output::check(true))],
                "earlier",
            ),
            (
                vec![Event::nemesis(
                    1,
                    1,
                    F::Stop,
                    FaultValue {
                        fault: "kill".into(),
                        detail: None,
                    },
                )],
                "not active",
            ),
        ];
        for (events, needle) in cases {
            match History::from_events(events) {
                Err(e @ HistoryError::Structure { .. }) => {
                    assert!(e.to_string().contains(needle), "{e}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn faults_pair_by_name_and_may_stay_open() {
        let fv = |n: &str| FaultValue {
            fault: n.into(),
            detail: None,
        };
        let events = vec![
            Event::nemesis(1, 1, F::Start, fv("a")),
            Event::nemesis(2, 2, F::Start, fv("b")),
            Event::nemesis(3, 3, F::Stop, fv("a")),
        ];
        let f = fault_intervals(&events).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].fault.as_str(), f[0].stop_index), ("a", Some(3)));
        assert_eq!((f[1].fault.as_str(), f[1].stop_index), ("b", None));
    }
}
