//! The history of one test run: a JSON-lines file with one [`Event`] per line, in the order the
//! events happened.
//!
//! Client processes (`"c0"`, `"c1"`, ...) each have at most one operation outstanding: an
//! [`EventKind::Invoke`] followed later by exactly one completion for the same process and `f`:
//!
//! - [`EventKind::Ok`]: the operation completed with a known result. A license refusal such as
//!   `CPU_LIMIT_EXHAUSTED` is an `ok` allocate with outcome `rejected`: the operation happened
//!   and observed the state.
//! - [`EventKind::Fail`]: the operation certainly had no effect.
//! - [`EventKind::Info`]: the outcome is unknown; the operation may take effect at any time
//!   after its invocation, or never.
//!
//! An invocation that never completed is treated as `info`. Events of the process
//! [`NEMESIS`] mark the start and the stop of faults.
//!
//! [`parse_history`] and [`read_history`] read a history, [`write_event`] and
//! [`HistoryWriter`] write one, [`pair_operations`] turns events into [`Operation`]s and
//! [`fault_intervals`] turns nemesis events into [`FaultInterval`]s. [`History::from_events`]
//! does all of it and is what the checkers take. The format is described in
//! `docs/jepsen-history.md`.
//!
//! The module is split by concern: `event` holds the event line and its JSON form,
//! `value` the typed values of events (inputs, outputs, errors, faults), `io` reading and
//! writing JSON lines, and `operation` the pairing into operations and fault intervals.

use std::path::Path;

mod event;
mod io;
mod operation;
mod value;

pub use event::{Event, EventKind, F};
pub use io::{
    HistoryWriter, parse_event, parse_history, read_history, read_history_from, to_json_lines,
    write_event, write_history,
};
pub use operation::{
    FaultInterval, Operation, Outcome, check_order, fault_intervals, pair_operations,
};
pub use value::{
    AllocateInput, AllocateOutput, CheckOutput, ErrorValue, FaultValue, HELD, Input, LEASE_EXPIRED,
    LeaseInput, LeaseOutput, NOT_ALLOCATED, NodeInput, Output, READ, REJECTED, ReleaseOutput,
    UsageOutput, Value,
};

/// The process name of the fault injector.
pub const NEMESIS: &str = "nemesis";

/// The process name the harness uses for the final usage reads, taken after every fault
/// healed (see the durability checker).
pub const FINAL: &str = "final";

/// The code of the one license refusal the model knows.
pub const CPU_LIMIT_EXHAUSTED: &str = "CPU_LIMIT_EXHAUSTED";
/// The code of an allocate refused because the name holds an allocation of another lease
/// token: a definite refusal, nothing changed.
pub const NODE_IN_USE: &str = "NODE_IN_USE";

/// What went wrong while reading or interpreting a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The history file could not be read.
    #[error("reading the history: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a valid event. `line` counts from 1.
    #[error("line {line}: {message}")]
    Parse {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The events are valid one by one but do not form a history (for example a completion
    /// without an invocation). `index` is the offending event's `index`.
    #[error("event {index}: {message}")]
    Structure {
        /// The offending event's `index`.
        index: u64,
        /// What is wrong with it.
        message: String,
    },
}

impl HistoryError {
    fn structure(index: u64, message: impl Into<String>) -> Self {
        HistoryError::Structure {
            index,
            message: message.into(),
        }
    }
}

/// A `die` or `revive` of the lease workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The server's process.
    pub process: String,
    /// The server.
    pub node: String,
    /// [`F::Die`] or [`F::Revive`].
    pub f: F,
    /// The event's `index`.
    pub index: u64,
    /// The event's `time_ns`.
    pub time_ns: u64,
}

/// A parsed and paired history: what the checkers take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The client operations of the license model, in invocation order.
    pub ops: Vec<Operation>,
    /// The operations of the lease workload (`F::is_lease`), in invocation order: kept
    /// apart, since the license model ignores lease expiry.
    pub lease_ops: Vec<Operation>,
    /// The `die` and `revive` markers of the lease workload, in order.
    pub markers: Vec<Marker>,
    /// The faults, in start order.
    pub faults: Vec<FaultInterval>,
}

impl History {
    /// Pairs operations and faults (see [`pair_operations`] and [`fault_intervals`]).
    pub fn from_events(events: Vec<Event>) -> Result<History, HistoryError> {
        let (lease_ops, ops) = pair_operations(&events)?
            .into_iter()
            .partition(|op| op.f.is_lease());
        let faults = fault_intervals(&events)?;
        let markers = events
            .iter()
            .filter(|e| e.f.is_marker())
            .map(|e| Marker {
                process: e.process.clone(),
                node: match &e.value {
                    Value::Input(input) => input.node().unwrap_or_default().to_string(),
                    _ => String::new(),
                },
                f: e.f,
                index: e.index,
                time_ns: e.time_ns,
            })
            .collect();
        Ok(History {
            events,
            ops,
            lease_ops,
            markers,
            faults,
        })
    }

    /// Parses and pairs a JSON-lines history.
    pub fn parse(text: &str) -> Result<History, HistoryError> {
        History::from_events(parse_history(text)?)
    }

    /// Reads and pairs a JSON-lines history file.
    pub fn read(path: impl AsRef<Path>) -> Result<History, HistoryError> {
        History::from_events(read_history(path)?)
    }

    /// The time of the last event (0 for an empty history).
    pub fn end_time_ns(&self) -> u64 {
        self.events.last().map_or(0, |e| e.time_ns)
    }

    /// The time of the first event (0 for an empty history).
    pub fn start_time_ns(&self) -> u64 {
        self.events.first().map_or(0, |e| e.time_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example history.
    pub(super) const EXAMPLE: &str = include_str!("../../testdata/history/example.jsonl");

    #[test]
    fn parses_the_documented_example() {
        let h = History::parse(EXAMPLE).unwrap();
        assert_eq!(h.events.len(), 17);
        assert_eq!(h.ops.len(), 8);
        let a = &h.ops[0];
        assert_eq!(a.process, "c3");
        assert_eq!(a.outcome, Outcome::Ok);
        assert_eq!(a.invoke_index, 17);
        assert_eq!(a.complete_index, Some(18));
        assert_eq!(a.complete_time_ns, Some(1299999));
        assert_eq!(a.granted(), Some(("app-2", 6, 14)));
        match &a.input {
            Input::Allocate(i) => assert_eq!(i.request_id.as_deref(), Some("r-17")),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.ops[1].output, Some(Output::rejected()));
        assert_eq!(h.ops[2].outcome, Outcome::Info);
        assert_eq!(h.ops[2].error, Some(ErrorValue::new("deadline passed")));
        assert_eq!(h.ops[3].output, Some(Output::check(true)));
        assert_eq!(
            h.ops[4].output,
            Some(Output::usage([("app-1", 8), ("app-2", 6)]))
        );
        assert_eq!(h.ops[5].output, Some(Output::released(true)));
        assert_eq!(h.ops[6].outcome, Outcome::Fail);
        assert_eq!(
            h.ops[6].error.as_ref().unwrap().code.as_deref(),
            Some("BAD_REQUEST")
        );
        // The trailing invocation never completed: info without completion.
        assert_eq!(h.ops[7].outcome, Outcome::Info);
        assert_eq!(h.ops[7].complete_index, None);
        assert_eq!(h.faults.len(), 1);
        assert_eq!(h.faults[0].fault, "partition-leader");
        assert_eq!(h.faults[0].detail.as_deref(), Some("n1 | n2 n3"));
        assert_eq!(h.faults[0].stop_index, Some(32));
    }
}
