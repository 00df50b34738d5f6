//! licd-jepsen: runs licd under faults and checks every run's history.
//!
//! - [`harness`]: real licd processes in a network namespace, the nemeses, the workload and
//!   the run report; the `licd-jepsen` binary drives it (see `docs/jepsen.md`).
//!
//! The pure part of the fault-injection tests:
//!
//! - [`history`]: the JSON-lines history format (one [`history::Event`] per line), its reader
//!   and writer, and the pairing of invocations with completions into
//!   [`history::Operation`]s and of nemesis events into [`history::FaultInterval`]s.
//! - [`checker`]: the checkers a run's history must pass — linearizability against the
//!   sequential license model, the core cap, durability of acknowledged grants, recovery
//!   after the faults heal, and the promises of short leases — each returning a verdict
//!   serializable to JSON, and [`checker::check_all`] to run them all.
//!
//! The format and the checkers' rules are described in `docs/jepsen-history.md`.
//!
//! ```
//! use licd_jepsen::checker::{CheckConfig, License, check_all};
//! use licd_jepsen::history::History;
//!
//! let text = r#"
//! {"index": 0, "time_ns": 10, "process": "c0", "type": "invoke", "f": "allocate", "value": {"node": "app-1", "cores": 6}}
//! {"index": 1, "time_ns": 20, "process": "c0", "type": "ok", "f": "allocate", "value": {"outcome": "granted", "counted_cores": 6, "allocated_cores": 6}}
//! {"index": 2, "time_ns": 30, "process": "final", "type": "invoke", "f": "usage", "value": {}}
//! {"index": 3, "time_ns": 40, "process": "final", "type": "ok", "f": "usage", "value": {"allocated_cores": 6, "nodes": {"app-1": 6}}}
//! "#;
//! let history = History::parse(text).unwrap();
//! let config = CheckConfig::new(License { max_cores: 16, min_cores_per_node: 4 });
//! let report = check_all(&history, &config);
//! assert!(report.valid);
//! let results_json = serde_json::to_string_pretty(&report).unwrap();
//! # let _ = results_json;
//! ```

pub mod checker;
pub mod harness;
pub mod history;
