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

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The process name of the fault injector.
pub const NEMESIS: &str = "nemesis";

/// The process name the harness uses for the final usage reads, taken after every fault
/// healed (see the durability checker).
pub const FINAL: &str = "final";

/// The code of the one license refusal the model knows.
pub const CPU_LIMIT_EXHAUSTED: &str = "CPU_LIMIT_EXHAUSTED";

/// What went wrong while reading or interpreting a history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The history file could not be read.
    #[error("reading the history: {0}")]
    Io(#[from] io::Error),
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

/// The `type` of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A client starts an operation.
    Invoke,
    /// The operation completed with a known result.
    Ok,
    /// The operation certainly had no effect.
    Fail,
    /// The outcome is unknown (and, for the nemesis, a fault event).
    Info,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventKind::Invoke => "invoke",
            EventKind::Ok => "ok",
            EventKind::Fail => "fail",
            EventKind::Info => "info",
        })
    }
}

/// The function of an event: the four client operations and the two nemesis events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Allocate cores to a node.
    Allocate,
    /// Release a node's allocation.
    Release,
    /// Check whether a node holds an allocation.
    Check,
    /// Read the whole allocation map.
    Usage,
    /// Nemesis: a fault starts.
    Start,
    /// Nemesis: a fault stops.
    Stop,
}

impl F {
    /// The client functions.
    pub const CLIENT: [F; 4] = [F::Allocate, F::Release, F::Check, F::Usage];

    /// True for `allocate` and `release`, the functions that may change the state.
    pub fn is_write(self) -> bool {
        matches!(self, F::Allocate | F::Release)
    }

    /// True for the client functions.
    pub fn is_client(self) -> bool {
        !matches!(self, F::Start | F::Stop)
    }

    /// The name as it appears in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            F::Allocate => "allocate",
            F::Release => "release",
            F::Check => "check",
            F::Usage => "usage",
            F::Start => "start",
            F::Stop => "stop",
        }
    }
}

impl fmt::Display for F {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The input of an `allocate`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AllocateInput {
    /// The application server.
    pub node: String,
    /// The cores it asks for (before the per-node minimum).
    pub cores: u32,
    /// The request id the client sent, if any (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The input of a `release` or a `check`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInput {
    /// The application server.
    pub node: String,
}

/// The input of an operation: the `value` of its `invoke` event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Input {
    /// `{"node": "app-1", "cores": 6, "request_id": "..."}`
    Allocate(AllocateInput),
    /// `{"node": "app-1"}`
    Release(NodeInput),
    /// `{"node": "app-1"}`
    Check(NodeInput),
    /// `{}`
    Usage,
}

impl Input {
    /// An allocate input without a request id.
    pub fn allocate(node: impl Into<String>, cores: u32) -> Self {
        Input::Allocate(AllocateInput {
            node: node.into(),
            cores,
            request_id: None,
        })
    }

    /// A release input.
    pub fn release(node: impl Into<String>) -> Self {
        Input::Release(NodeInput { node: node.into() })
    }

    /// A check input.
    pub fn check(node: impl Into<String>) -> Self {
        Input::Check(NodeInput { node: node.into() })
    }

    /// The function this input belongs to.
    pub fn f(&self) -> F {
        match self {
            Input::Allocate(_) => F::Allocate,
            Input::Release(_) => F::Release,
            Input::Check(_) => F::Check,
            Input::Usage => F::Usage,
        }
    }

    /// The node the operation is about (none for `usage`).
    pub fn node(&self) -> Option<&str> {
        match self {
            Input::Allocate(a) => Some(&a.node),
            Input::Release(n) | Input::Check(n) => Some(&n.node),
            Input::Usage => None,
        }
    }
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Input::Allocate(a) => write!(f, "allocate({}, {})", a.node, a.cores),
            Input::Release(n) => write!(f, "release({})", n.node),
            Input::Check(n) => write!(f, "check({})", n.node),
            Input::Usage => f.write_str("usage()"),
        }
    }
}

/// The result of an `ok` allocate, tagged by `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum AllocateOutput {
    /// `{"outcome": "granted", "counted_cores": 6, "allocated_cores": 14}`: the node now
    /// counts `counted_cores`; the license counts `allocated_cores` over all nodes.
    Granted {
        /// max(cores, min_cores_per_node).
        counted_cores: u32,
        /// The sum of counted cores over all nodes after the allocation.
        allocated_cores: u64,
    },
    /// `{"outcome": "rejected", "code": "CPU_LIMIT_EXHAUSTED"}`: a license refusal; nothing
    /// changed.
    Rejected {
        /// The refusal code.
        code: String,
    },
}

/// The result of an `ok` release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReleaseOutput {
    /// True when the node held an allocation that is now gone.
    pub released: bool,
}

/// The result of an `ok` check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckOutput {
    /// True when the node holds an allocation.
    pub valid: bool,
    /// The check's code, such as `VALID` or `NOT_ALLOCATED` (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The result of an `ok` usage read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageOutput {
    /// The sum of counted cores over all nodes.
    pub allocated_cores: u64,
    /// Node -> counted cores, for every node that holds an allocation.
    pub nodes: BTreeMap<String, u32>,
}

/// The result of an operation: the `value` of its `ok` event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Output {
    /// Granted or rejected.
    Allocate(AllocateOutput),
    /// Whether something was released.
    Release(ReleaseOutput),
    /// Whether the node holds an allocation.
    Check(CheckOutput),
    /// The allocation map.
    Usage(UsageOutput),
}

impl Output {
    /// A granted allocate.
    pub fn granted(counted_cores: u32, allocated_cores: u64) -> Self {
        Output::Allocate(AllocateOutput::Granted {
            counted_cores,
            allocated_cores,
        })
    }

    /// An allocate refused with `CPU_LIMIT_EXHAUSTED`.
    pub fn rejected() -> Self {
        Output::Allocate(AllocateOutput::Rejected {
            code: CPU_LIMIT_EXHAUSTED.to_string(),
        })
    }

    /// A release result.
    pub fn released(released: bool) -> Self {
        Output::Release(ReleaseOutput { released })
    }

    /// A check result, with the code licd would give.
    pub fn check(valid: bool) -> Self {
        Output::Check(CheckOutput {
            valid,
            code: Some(if valid { "VALID" } else { "NOT_ALLOCATED" }.to_string()),
        })
    }

    /// A usage result; `allocated_cores` is the sum of the map.
    pub fn usage<'a>(nodes: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        let nodes: BTreeMap<String, u32> =
            nodes.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
        Output::Usage(UsageOutput {
            allocated_cores: nodes.values().map(|&c| u64::from(c)).sum(),
            nodes,
        })
    }

    /// The function this output belongs to.
    pub fn f(&self) -> F {
        match self {
            Output::Allocate(_) => F::Allocate,
            Output::Release(_) => F::Release,
            Output::Check(_) => F::Check,
            Output::Usage(_) => F::Usage,
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Allocate(AllocateOutput::Granted {
                counted_cores,
                allocated_cores,
            }) => write!(f, "granted {counted_cores} (total {allocated_cores})"),
            Output::Allocate(AllocateOutput::Rejected { code }) => write!(f, "rejected {code}"),
            Output::Release(r) => write!(f, "released={}", r.released),
            Output::Check(c) => write!(f, "valid={}", c.valid),
            Output::Usage(u) => {
                write!(f, "{{")?;
                for (i, (n, c)) in u.nodes.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{n}: {c}")?;
                }
                write!(f, "}} (total {})", u.allocated_cores)
            }
        }
    }
}

/// The `value` of a `fail` or `info` completion: `{"error": "deadline passed"}`, optionally
/// with the error's `code`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ErrorValue {
    /// What went wrong.
    #[serde(default)]
    pub error: String,
    /// A machine-readable code, if the server sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorValue {
    /// An error without a code.
    pub fn new(error: impl Into<String>) -> Self {
        ErrorValue {
            error: error.into(),
            code: None,
        }
    }
}

/// The `value` of a nemesis event: `{"fault": "partition-leader", "detail": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultValue {
    /// The fault's name; a `stop` closes the open `start` of the same name.
    pub fault: String,
    /// Free text: which nodes, which links, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The typed `value` of an event. Which variant an event carries follows from its process,
/// `type` and `f`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A client `invoke`.
    Input(Input),
    /// A client `ok`.
    Output(Output),
    /// A client `fail` or `info`.
    Error(ErrorValue),
    /// A nemesis `start` or `stop`.
    Fault(FaultValue),
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawEvent", into = "RawEvent")]
pub struct Event {
    /// Strictly increasing over the history (not necessarily contiguous).
    pub index: u64,
    /// A monotonic timestamp in nanoseconds (any origin); non-decreasing over the history.
    pub time_ns: u64,
    /// `"c0"`, `"c1"`, ... for clients, [`FINAL`] for the final reads, [`NEMESIS`] for faults.
    pub process: String,
    /// The event's `type`.
    pub kind: EventKind,
    /// The function.
    pub f: F,
    /// The typed value.
    pub value: Value,
}

impl Event {
    /// A client invocation.
    pub fn invoke(index: u64, time_ns: u64, process: impl Into<String>, input: Input) -> Self {
        Event {
            index,
            time_ns,
            process: process.into(),
            kind: EventKind::Invoke,
            f: input.f(),
            value: Value::Input(input),
        }
    }

    /// A client `ok` completion.
    pub fn ok(index: u64, time_ns: u64, process: impl Into<String>, output: Output) -> Self {
        Event {
            index,
            time_ns,
            process: process.into(),
            kind: EventKind::Ok,
            f: output.f(),
            value: Value::Output(output),
        }
    }

    /// A client `fail` or `info` completion (`kind` must be one of those two).
    pub fn error(
        index: u64,
        time_ns: u64,
        process: impl Into<String>,
        kind: EventKind,
        f: F,
        error: ErrorValue,
    ) -> Self {
        Event {
            index,
            time_ns,
            process: process.into(),
            kind,
            f,
            value: Value::Error(error),
        }
    }

    /// A nemesis `start` (`f` = [`F::Start`]) or `stop` (`f` = [`F::Stop`]).
    pub fn nemesis(index: u64, time_ns: u64, f: F, fault: FaultValue) -> Self {
        Event {
            index,
            time_ns,
            process: NEMESIS.to_string(),
            kind: EventKind::Info,
            f,
            value: Value::Fault(fault),
        }
    }

    /// True for events of the nemesis.
    pub fn is_nemesis(&self) -> bool {
        self.process == NEMESIS
    }

    /// The event as one JSON line, without the newline.
    pub fn to_json_line(&self) -> String {
        // Serializing a `RawEvent` (strings, numbers, maps) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The wire form of an event: the value still raw JSON.
#[derive(Serialize, Deserialize)]
struct RawEvent {
    index: u64,
    time_ns: u64,
    process: String,
    #[serde(rename = "type")]
    kind: EventKind,
    f: F,
    #[serde(default)]
    value: serde_json::Value,
}

fn decode<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| format!("bad value for {what}: {e}"))
}

impl TryFrom<RawEvent> for Event {
    type Error = String;

    fn try_from(raw: RawEvent) -> Result<Self, String> {
        let RawEvent {
            index,
            time_ns,
            process,
            kind,
            f,
            value,
        } = raw;
        let what = format!("{kind} {f}");
        let value = if process == NEMESIS {
            if kind != EventKind::Info || f.is_client() {
                return Err(format!(
                    "nemesis events must be `info` `start` or `stop`, not `{kind}` `{f}`"
                ));
            }
            Value::Fault(decode(&what, value)?)
        } else {
            if !f.is_client() {
                return Err(format!(
                    "`{f}` is a nemesis function but the process is {process:?} (expected {NEMESIS:?})"
                ));
            }
            match kind {
                EventKind::Invoke => Value::Input(match f {
                    F::Allocate => Input::Allocate(decode(&what, value)?),
                    F::Release => Input::Release(decode(&what, value)?),
                    F::Check => Input::Check(decode(&what, value)?),
                    _ => Input::Usage,
                }),
                EventKind::Ok => Value::Output(match f {
                    F::Allocate => Output::Allocate(decode(&what, value)?),
                    F::Release => Output::Release(decode(&what, value)?),
                    F::Check => Output::Check(decode(&what, value)?),
                    _ => Output::Usage(decode(&what, value)?),
                }),
                EventKind::Fail | EventKind::Info => Value::Error(if value.is_null() {
                    ErrorValue::default()
                } else {
                    decode(&what, value)?
                }),
            }
        };
        Ok(Event {
            index,
            time_ns,
            process,
            kind,
            f,
            value,
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

impl From<Event> for RawEvent {
    fn from(e: Event) -> Self {
        let value = match &e.value {
            Value::Input(Input::Allocate(a)) => to_json(a),
            Value::Input(Input::Release(n) | Input::Check(n)) => to_json(n),
            Value::Input(Input::Usage) => serde_json::Value::Object(Default::default()),
            Value::Output(Output::Allocate(a)) => to_json(a),
            Value::Output(Output::Release(r)) => to_json(r),
            Value::Output(Output::Check(c)) => to_json(c),
            Value::Output(Output::Usage(u)) => to_json(u),
            Value::Error(err) => to_json(err),
            Value::Fault(fault) => to_json(fault),
        };
        RawEvent {
            index: e.index,
            time_ns: e.time_ns,
            process: e.process,
            kind: e.kind,
            f: e.f,
            value,
        }
    }
}

/// Parses one JSON line into an event.
pub fn parse_event(line: &str) -> Result<Event, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

/// Parses a whole JSON-lines history. Blank lines are skipped; the first malformed line is
/// reported with its line number (from 1). Never panics.
pub fn parse_history(text: &str) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(line).map_err(|message| HistoryError::Parse {
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads a JSON-lines history from any reader.
pub fn read_history_from(reader: impl BufRead) -> Result<Vec<Event>, HistoryError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event = parse_event(&line).map_err(|message| HistoryError::Parse {
            line: i + 1,
            message,
        })?;
        events.push(event);
    }
    Ok(events)
}

/// Reads a JSON-lines history file.
pub fn read_history(path: impl AsRef<Path>) -> Result<Vec<Event>, HistoryError> {
    let file = std::fs::File::open(path)?;
    read_history_from(io::BufReader::new(file))
}

/// Writes one event as one JSON line (with the newline).
pub fn write_event(w: &mut impl Write, event: &Event) -> io::Result<()> {
    let mut line = event.to_json_line();
    line.push('\n');
    w.write_all(line.as_bytes())
}

/// Writes events as JSON lines.
pub fn write_history(w: &mut impl Write, events: &[Event]) -> io::Result<()> {
    for e in events {
        write_event(w, e)?;
    }
    Ok(())
}

/// The events as a JSON-lines string.
pub fn to_json_lines(events: &[Event]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&e.to_json_line());
        out.push('\n');
    }
    out
}

/// Appends events to a JSON-lines sink, numbering them: it assigns `index` (0, 1, 2, ...)
/// and refuses a timestamp earlier than the previous one. The harness calls it under the
/// one lock that orders its events, taking the timestamp under that lock.
#[derive(Debug)]
pub struct HistoryWriter<W: Write> {
    out: W,
    next_index: u64,
    last_time_ns: u64,
}

impl<W: Write> HistoryWriter<W> {
    /// A writer whose first event gets index 0.
    pub fn new(out: W) -> Self {
        HistoryWriter {
            out,
            next_index: 0,
            last_time_ns: 0,
        }
    }

    /// Writes one event built from its parts; returns it with its index.
    pub fn append(
        &mut self,
        time_ns: u64,
        process: &str,
        kind: EventKind,
        f: F,
        value: Value,
    ) -> io::Result<Event> {
        if time_ns < self.last_time_ns {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "time_ns {time_ns} is earlier than the previous event's {}",
                    self.last_time_ns
                ),
            ));
        }
        let event = Event {
            index: self.next_index,
            time_ns,
            process: process.to_string(),
            kind,
            f,
            value,
        };
        write_event(&mut self.out, &event)?;
        self.next_index += 1;
        self.last_time_ns = time_ns;
        Ok(event)
    }

    /// Flushes the sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The sink.
    pub fn into_inner(self) -> W {
        self.out
    }
}

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

/// Pairs each client invocation with its completion, in invocation order. Nemesis events are
/// skipped. An invocation without completion becomes an `Info` operation without
/// `complete_index`. Errors: an invocation while the process has one outstanding, a
/// completion without an invocation, a completion whose `f` differs from the invocation's,
/// or indices/times out of order.
pub fn pair_operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    check_order(events)?;
    let mut ops: Vec<Operation> = Vec::new();
    let mut open: HashMap<&str, usize> = HashMap::new();
    for e in events {
        if e.is_nemesis() {
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

/// A parsed and paired history: what the checkers take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// Every event, in order.
    pub events: Vec<Event>,
    /// The client operations, in invocation order.
    pub ops: Vec<Operation>,
    /// The faults, in start order.
    pub faults: Vec<FaultInterval>,
}

impl History {
    /// Pairs operations and faults (see [`pair_operations`] and [`fault_intervals`]).
    pub fn from_events(events: Vec<Event>) -> Result<History, HistoryError> {
        let ops = pair_operations(&events)?;
        let faults = fault_intervals(&events)?;
        Ok(History {
            events,
            ops,
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

    const EXAMPLE: &str = r#"
{"index": 17, "time_ns": 1234567, "process": "c3", "type": "invoke", "f": "allocate", "value": {"node": "app-2", "cores": 6, "request_id": "r-17"}}
{"index": 18, "time_ns": 1299999, "process": "c3", "type": "ok", "f": "allocate", "value": {"outcome": "granted", "counted_cores": 6, "allocated_cores": 14}}
{"index": 19, "time_ns": 1300000, "process": "c1", "type": "invoke", "f": "allocate", "value": {"node": "app-3", "cores": 8}}
{"index": 20, "time_ns": 1300001, "process": "c1", "type": "ok", "f": "allocate", "value": {"outcome": "rejected", "code": "CPU_LIMIT_EXHAUSTED"}}
{"index": 21, "time_ns": 1300002, "process": "c2", "type": "invoke", "f": "release", "value": {"node": "app-1"}}
{"index": 22, "time_ns": 1300003, "process": "c2", "type": "info", "f": "release", "value": {"error": "deadline passed"}}
{"index": 23, "time_ns": 1300004, "process": "c0", "type": "invoke", "f": "check", "value": {"node": "app-2"}}
{"index": 24, "time_ns": 1300005, "process": "c0", "type": "ok", "f": "check", "value": {"valid": true, "code": "VALID"}}
{"index": 25, "time_ns": 1300006, "process": "c4", "type": "invoke", "f": "usage", "value": {}}
{"index": 26, "time_ns": 1300007, "process": "c4", "type": "ok", "f": "usage", "value": {"allocated_cores": 14, "nodes": {"app-1": 8, "app-2": 6}}}
{"index": 27, "time_ns": 1300008, "process": "c0", "type": "invoke", "f": "release", "value": {"node": "app-2"}}
{"index": 28, "time_ns": 1300009, "process": "c0", "type": "ok", "f": "release", "value": {"released": true}}
{"index": 29, "time_ns": 1300010, "process": "nemesis", "type": "info", "f": "start", "value": {"fault": "partition-leader", "detail": "n1 | n2 n3"}}
{"index": 30, "time_ns": 1300011, "process": "c5", "type": "invoke", "f": "allocate", "value": {"node": "app-9", "cores": 0}}
{"index": 31, "time_ns": 1300012, "process": "c5", "type": "fail", "f": "allocate", "value": {"error": "cores out of range", "code": "BAD_REQUEST"}}
{"index": 32, "time_ns": 1300013, "process": "nemesis", "type": "info", "f": "stop", "value": {"fault": "partition-leader"}}
{"index": 33, "time_ns": 1300014, "process": "c6", "type": "invoke", "f": "check", "value": {"node": "app-1"}}
"#;

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

    #[test]
    fn round_trips_through_json_lines() {
        let events = parse_history(EXAMPLE).unwrap();
        let text = to_json_lines(&events);
        assert_eq!(text.lines().count(), events.len());
        assert_eq!(parse_history(&text).unwrap(), events);
        let mut buf = Vec::new();
        write_history(&mut buf, &events).unwrap();
        let back = read_history_from(io::Cursor::new(buf)).unwrap();
        assert_eq!(back, events);
    }

    #[test]
    fn event_line_has_the_documented_field_names() {
        let e = Event::ok(18, 5, "c3", Output::granted(6, 14));
        let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"index": 18, "time_ns": 5, "process": "c3", "type": "ok",
                "f": "allocate", "value": {"outcome": "granted", "counted_cores": 6,
                "allocated_cores": 14}})
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_line_number() {
        let cases = [
            ("not json", "expected"),
            (r#"{"index": 1}"#, "missing field"),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "frobnicate", "value": {}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "done", "f": "check", "value": {}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "allocate", "value": {"node": "a"}}"#,
                "missing field `cores`",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "allocate", "value": {"node": "a", "cores": -1}}"#,
                "bad value",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "ok", "f": "allocate", "value": {"outcome": "maybe"}}"#,
                "unknown variant",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "ok", "f": "usage", "value": {"nodes": {}}}"#,
                "allocated_cores",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "info", "f": "start", "value": {"fault": "x"}}"#,
                "nemesis function",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "nemesis", "type": "ok", "f": "start", "value": {"fault": "x"}}"#,
                "nemesis events must be",
            ),
            (
                r#"{"index": 1, "time_ns": 1, "process": "nemesis", "type": "info", "f": "stop", "value": {}}"#,
                "missing field `fault`",
            ),
            (
                r#"{"index": 18446744073709551616, "time_ns": 1, "process": "c0", "type": "invoke", "f": "usage"}"#,
                "",
            ),
        ];
        for (line, needle) in cases {
            let text = format!(
                "{}\n\n{line}\n",
                Event::invoke(0, 0, "c9", Input::Usage).to_json_line()
            );
            match parse_history(&text) {
                Err(HistoryError::Parse { line: 3, message }) => {
                    assert!(message.contains(needle), "{line}: {message}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn fail_and_info_values_are_lenient() {
        let text = r#"{"index": 1, "time_ns": 1, "process": "c0", "type": "invoke", "f": "usage"}
{"index": 2, "time_ns": 2, "process": "c0", "type": "info", "f": "usage"}
{"index": 3, "time_ns": 3, "process": "c0", "type": "invoke", "f": "check", "value": {"node": "a"}}
{"index": 4, "time_ns": 4, "process": "c0", "type": "fail", "f": "check", "value": {"code": "BAD_REQUEST", "extra": 1}}"#;
        let h = History::parse(text).unwrap();
        assert_eq!(h.ops[0].outcome, Outcome::Info);
        assert_eq!(h.ops[0].error, Some(ErrorValue::default()));
        assert_eq!(h.ops[1].outcome, Outcome::Fail);
    }

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
    fn history_writer_numbers_events_and_refuses_time_going_back() {
        let mut w = HistoryWriter::new(Vec::new());
        let e = w
            .append(
                10,
                "c0",
                EventKind::Invoke,
                F::Usage,
                Value::Input(Input::Usage),
            )
            .unwrap();
        assert_eq!(e.index, 0);
        let e = w
            .append(
                10,
                "c0",
                EventKind::Ok,
                F::Usage,
                Value::Output(Output::usage([])),
            )
            .unwrap();
        assert_eq!(e.index, 1);
        assert!(
            w.append(
                9,
                "c0",
                EventKind::Invoke,
                F::Usage,
                Value::Input(Input::Usage)
            )
            .is_err()
        );
        let text = String::from_utf8(w.into_inner()).unwrap();
        let h = History::parse(&text).unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].output, Some(Output::usage([])));
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
