//! One line of the history: the [`Event`], its [`EventKind`] and function [`F`], and its
//! JSON form.
//!
//! An event is written as a flat JSON object whose `value` depends on the process, `type`
//! and `f`; reading one decodes that `value` into the typed [`Value`] right away, so an
//! event in memory is always well formed (a nemesis event carries a fault, a client `ok`
//! an output of its own function, and so on).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::NEMESIS;
use super::value::{ErrorValue, FaultValue, Input, LeaseInput, Output, Value};

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

/// The function of an event: the four client operations of the license model, the
/// operations and markers of the lease workload, and the two nemesis events.
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
    /// Lease workload: allocate cores with a short lease (`ttl_ms`).
    #[serde(rename = "lease-allocate")]
    LeaseAllocate,
    /// Lease workload: renew a server's lease.
    Heartbeat,
    /// Lease workload: a server checks its own status.
    #[serde(rename = "lease-check")]
    LeaseCheck,
    /// Lease workload: the observer reads the lease license's usage.
    #[serde(rename = "lease-usage")]
    LeaseUsage,
    /// Lease workload: the observer reads the leader and its term.
    Leader,
    /// Lease workload marker: a server stops heartbeating on purpose.
    Die,
    /// Lease workload marker: a dead server comes back (and allocates again).
    Revive,
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

    /// True for the functions of the lease workload, operations and markers alike: the
    /// license model knows nothing of them, and only the lease checker reads them.
    pub fn is_lease(self) -> bool {
        matches!(
            self,
            F::LeaseAllocate
                | F::Heartbeat
                | F::LeaseCheck
                | F::LeaseUsage
                | F::Leader
                | F::Die
                | F::Revive
        )
    }

    /// True for `die` and `revive`: single `info` lines that mark a moment, not operations.
    pub fn is_marker(self) -> bool {
        matches!(self, F::Die | F::Revive)
    }

    /// The name as it appears in the history.
    pub fn as_str(self) -> &'static str {
        match self {
            F::Allocate => "allocate",
            F::Release => "release",
            F::Check => "check",
            F::Usage => "usage",
            F::LeaseAllocate => "lease-allocate",
            F::Heartbeat => "heartbeat",
            F::LeaseCheck => "lease-check",
            F::LeaseUsage => "lease-usage",
            F::Leader => "leader",
            F::Die => "die",
            F::Revive => "revive",
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

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawEvent", into = "RawEvent")]
pub struct Event {
    /// Strictly increasing over the history (not necessarily contiguous).
    pub index: u64,
    /// A monotonic timestamp in nanoseconds (any origin); non-decreasing over the history.
    pub time_ns: u64,
    /// `"c0"`, `"c1"`, ... for clients, [`FINAL`](super::FINAL) for the final reads,
    /// [`NEMESIS`] for faults.
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

    /// A lease workload marker (`f` = [`F::Die`] or [`F::Revive`]) for `node`.
    pub fn marker(index: u64, time_ns: u64, process: impl Into<String>, f: F, node: &str) -> Self {
        Event {
            index,
            time_ns,
            process: process.into(),
            kind: EventKind::Info,
            f,
            value: Value::Input(Input::Lease(f, LeaseInput::node(node))),
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
                _ if f.is_marker() => {
                    if kind != EventKind::Info {
                        return Err(format!("`{f}` markers must be `info`, not `{kind}`"));
                    }
                    Value::Input(Input::Lease(f, decode(&what, value)?))
                }
                EventKind::Invoke if f.is_lease() => {
                    Value::Input(Input::Lease(f, decode(&what, value)?))
                }
                EventKind::Ok if f.is_lease() => {
                    Value::Output(Output::Lease(f, decode(&what, value)?))
                }
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
            Value::Input(Input::Lease(_, l)) => to_json(l),
            Value::Output(Output::Lease(_, l)) => to_json(l),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ErrorValue, History, Outcome};

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
    fn lease_lines_round_trip_and_stay_out_of_the_model_operations() {
        let text = r#"{"index": 1, "time_ns": 1, "process": "s0", "type": "invoke", "f": "lease-allocate", "value": {"node": "lease-0", "cores": 4, "ttl_ms": 3000}}
{"index": 2, "time_ns": 2, "process": "s0", "type": "ok", "f": "lease-allocate", "value": {"outcome": "held", "remaining_ms": 3000, "counted_cores": 4, "term": 2}}
{"index": 3, "time_ns": 3, "process": "c0", "type": "invoke", "f": "check", "value": {"node": "app-1"}}
{"index": 4, "time_ns": 4, "process": "s0", "type": "info", "f": "die", "value": {"node": "lease-0"}}
{"index": 5, "time_ns": 5, "process": "c0", "type": "ok", "f": "check", "value": {"valid": false}}
{"index": 6, "time_ns": 6, "process": "obs", "type": "invoke", "f": "lease-usage", "value": {}}
{"index": 7, "time_ns": 7, "process": "obs", "type": "ok", "f": "lease-usage", "value": {"outcome": "read", "nodes": {"lease-0": 4}}}
{"index": 8, "time_ns": 8, "process": "s0", "type": "info", "f": "revive", "value": {"node": "lease-0"}}"#;
        let h = History::parse(text).unwrap();
        assert_eq!(h.ops.len(), 1);
        assert_eq!(h.ops[0].f, F::Check);
        assert_eq!(h.lease_ops.len(), 2);
        assert_eq!(h.lease_ops[0].input.node(), Some("lease-0"));
        let Some(Output::Lease(F::LeaseAllocate, out)) = &h.lease_ops[0].output else {
            panic!("{:?}", h.lease_ops[0].output);
        };
        assert_eq!(
            (out.outcome.as_str(), out.remaining_ms, out.term),
            ("held", Some(3000), Some(2))
        );
        let marks: Vec<(F, &str, u64)> = h
            .markers
            .iter()
            .map(|m| (m.f, m.node.as_str(), m.index))
            .collect();
        assert_eq!(marks, [(F::Die, "lease-0", 4), (F::Revive, "lease-0", 8)]);
        for (line, event) in text.lines().zip(&h.events) {
            let written: serde_json::Value = serde_json::from_str(&event.to_json_line()).unwrap();
            let read: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(written, read, "{line}");
        }
    }

    #[test]
    fn markers_must_be_info() {
        let text = r#"{"index": 1, "time_ns": 1, "process": "s0", "type": "ok", "f": "die", "value": {"node": "a"}}"#;
        let err = History::parse(text).unwrap_err().to_string();
        assert!(err.contains("markers must be `info`"), "{err}");
    }
}
