//! The typed `value` of an event: what a client asked ([`Input`]), what it got back
//! ([`Output`]), why it failed ([`ErrorValue`]), and which fault the nemesis started or
//! stopped ([`FaultValue`]).
//!
//! Each type serializes to the JSON object the history format documents for it; the
//! `Display` forms are the short ones the checkers' explanations use, such as
//! `allocate(app-1, 6)` and `granted 6 (total 14)`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::CPU_LIMIT_EXHAUSTED;
use super::event::F;

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
    /// An operation or marker of the lease workload, with its function.
    Lease(F, LeaseInput),
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
            Input::Lease(f, _) => *f,
        }
    }

    /// The node the operation is about (none for `usage`).
    pub fn node(&self) -> Option<&str> {
        match self {
            Input::Allocate(a) => Some(&a.node),
            Input::Release(n) | Input::Check(n) => Some(&n.node),
            Input::Usage => None,
            Input::Lease(_, l) => l.node.as_deref(),
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
            Input::Lease(name, l) => {
                write!(f, "{name}({}", l.node.as_deref().unwrap_or(""))?;
                if let Some(c) = l.cores {
                    write!(f, ", {c}")?;
                }
                if let Some(t) = l.ttl_ms {
                    write!(f, ", ttl {t} ms")?;
                }
                f.write_str(")")
            }
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
    /// True when licd refused the release for its lease token (`LEASE_TOKEN_REQUIRED` or
    /// `LEASE_TOKEN_MISMATCH`): a definite refusal, nothing changed (the node held an
    /// allocation, of another token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
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

/// The input of a lease workload operation or marker: which server, and for
/// `lease-allocate` its cores and lease. `lease-usage` and `leader` carry none of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LeaseInput {
    /// The application server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The cores a `lease-allocate` asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// The lease a `lease-allocate` asks for, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

impl LeaseInput {
    /// The input naming only a server (heartbeat, check, markers).
    pub fn node(node: &str) -> Self {
        LeaseInput {
            node: Some(node.to_string()),
            ..LeaseInput::default()
        }
    }
}

/// What a lease workload operation was told. One shape for every lease function; the fields
/// an answer does not carry are absent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LeaseOutput {
    /// `held` (granted, renewed, or checked valid), `rejected` (`CPU_LIMIT_EXHAUSTED`),
    /// `not_allocated`, `lease_expired`, or `read` for `lease-usage` and `leader`.
    pub outcome: String,
    /// The lease time the answer promised, in milliseconds (`held` answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_ms: Option<u64>,
    /// The cores the server counts (`held` answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_cores: Option<u32>,
    /// The license's counted cores over all servers, when the answer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_cores: Option<u64>,
    /// The leader that answered, when the answer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// Its term, when the answer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<u64>,
    /// `lease-usage`: server -> counted cores, for every server holding cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<BTreeMap<String, u32>>,
}

/// The `outcome` of an answer that promised a lease.
pub const HELD: &str = "held";
/// The `outcome` of an allocation refused by the cap.
pub const REJECTED: &str = "rejected";
/// The `outcome` of an answer saying the server holds nothing.
pub const NOT_ALLOCATED: &str = "not_allocated";
/// The `outcome` of a check made after the leader measured the lease as over.
pub const LEASE_EXPIRED: &str = "lease_expired";
/// The `outcome` of `lease-usage` and `leader` reads.
pub const READ: &str = "read";

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
    /// The answer to a lease workload operation, with its function.
    Lease(F, LeaseOutput),
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
        Output::Release(ReleaseOutput {
            released,
            refused: false,
        })
    }

    /// A release refused for its lease token.
    pub fn release_refused() -> Self {
        Output::Release(ReleaseOutput {
            released: false,
            refused: true,
        })
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
            Output::Lease(f, _) => *f,
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
            Output::Release(r) if r.refused => write!(f, "refused (lease token)"),
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
            Output::Lease(_, l) => {
                write!(f, "{}", l.outcome)?;
                if let Some(r) = l.remaining_ms {
                    write!(f, " {r} ms")?;
                }
                if let Some(nodes) = &l.nodes {
                    write!(f, " {nodes:?}")?;
                }
                if let (Some(leader), Some(term)) = (l.leader, l.term) {
                    write!(f, " (leader {leader}, term {term})")?;
                }
                Ok(())
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
