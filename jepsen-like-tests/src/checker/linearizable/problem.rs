//! The history prepared for the search: which operations are checked, what the model must
//! see for each, and where each one's call and return entries sit.
//!
//! `ok` operations and `info` writes (including writes that never completed) are checked;
//! `fail` operations and `info` reads are dropped and only counted. Node names are interned
//! into slot numbers, and each checked operation becomes a [`Step`] the compact state can
//! try in constant time (or, for a usage read, in one pass over the slots).

use std::collections::{BTreeSet, HashMap};

use crate::history::{
    AllocateOutput, CPU_LIMIT_EXHAUSTED, Input, NODE_IN_USE, Operation, Outcome, Output,
};

use super::super::License;

/// What the model must see for one operation, with nodes interned.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// An allocate of `counted` cores (after the per-node minimum) to slot `node`.
    Allocate {
        /// The node's slot.
        node: usize,
        /// The cores the allocation counts.
        counted: u32,
        /// What the client observed.
        expect: AllocExpect,
    },
    /// A release of slot `node`.
    Release {
        /// The node's slot.
        node: usize,
        /// The observed `released` flag; `None` for an info release.
        expect: Option<bool>,
        /// Refused for its lease token: fits only while the node holds an allocation, and
        /// changes nothing.
        refused: bool,
    },
    /// A check of slot `node`.
    Check {
        /// The node's slot.
        node: usize,
        /// The observed answer.
        valid: bool,
    },
    /// A usage read.
    Usage {
        /// The observed counted cores per slot.
        nodes: Vec<Option<u32>>,
        /// The observed sum.
        total: u64,
    },
}

/// What the client observed of an allocate.
#[derive(Debug, Clone, Copy)]
pub(super) enum AllocExpect {
    /// Granted, reporting the node's counted cores and the license's total.
    Granted {
        /// The reported `counted_cores`.
        counted: u32,
        /// The reported `allocated_cores`.
        total: u64,
    },
    /// Rejected with `CPU_LIMIT_EXHAUSTED`.
    Refused,
    /// Rejected with `NODE_IN_USE`: fits only while the node holds an allocation (the model
    /// keeps no tokens), and changes nothing.
    InUse,
    /// Rejected with another code: the model never answers that.
    Impossible,
    /// Info: whatever the model does.
    Unknown,
}

/// The prepared history.
pub(super) struct Problem<'a> {
    /// The license the model enforces.
    pub(super) license: &'a License,
    /// The checked operations, in invocation order; everything below is indexed like it.
    pub(super) checked: Vec<&'a Operation>,
    /// The interned node names, sorted: slot i is `names[i]`.
    pub(super) names: Vec<String>,
    /// What the model must see for each operation.
    pub(super) steps: Vec<Step>,
    /// Whether each operation is an `ok` one (else an `info` write).
    pub(super) is_ok: Vec<bool>,
    /// (call position, return position) per operation.
    pub(super) keys: Vec<(u128, u128)>,
    /// For an info write, the previous info write (by invocation) with the same effect.
    pub(super) prev_same_effect: Vec<Option<usize>>,
    /// `ok` operations checked.
    pub(super) ok_ops: usize,
    /// `info` writes checked.
    pub(super) info_writes: usize,
    /// `info` reads dropped.
    pub(super) dropped_info_reads: usize,
    /// `fail` operations dropped.
    pub(super) dropped_fail: usize,
}

impl<'a> Problem<'a> {
    /// Prepares `ops` for the search under `license`, with the `info` horizon if any.
    pub(super) fn new(ops: &'a [Operation], license: &'a License, horizon: Option<u64>) -> Self {
        let (mut ok_ops, mut info_writes, mut dropped_info_reads, mut dropped_fail) = (0, 0, 0, 0);
        let mut checked: Vec<&Operation> = Vec::new();
        // Lease operations are not the model's (`History::lease_ops`): skipped, not counted.
        for op in ops.iter().filter(|op| !op.f.is_lease()) {
            match op.outcome {
                Outcome::Ok if op.output.is_some() => {
                    ok_ops += 1;
                    checked.push(op);
                }
                Outcome::Info if op.is_write() => {
                    info_writes += 1;
                    checked.push(op);
                }
                Outcome::Info => dropped_info_reads += 1,
                _ => dropped_fail += 1,
            }
        }
        let mut seen = BTreeSet::new();
        for op in &checked {
            if let Some(n) = op.input.node() {
                seen.insert(n.to_string());
            }
            if let Some(Output::Usage(u)) = &op.output {
                seen.extend(u.nodes.keys().cloned());
            }
        }
        let names: Vec<String> = seen.into_iter().collect();
        let node_id = |n: &str| names.binary_search_by(|x| x.as_str().cmp(n)).unwrap_or(0);
        let steps: Vec<Step> = checked
            .iter()
            .map(|op| to_step(op, license, &names, &node_id))
            .collect();
        let is_ok: Vec<bool> = checked.iter().map(|op| op.outcome == Outcome::Ok).collect();
        let keys = entry_keys(ops, &checked, horizon);
        let prev_same_effect = same_effect_order(&steps, &is_ok, &keys);
        Problem {
            license,
            checked,
            names,
            steps,
            is_ok,
            keys,
            prev_same_effect,
            ok_ops,
            info_writes,
            dropped_info_reads,
            dropped_fail,
        }
    }
}

/// Info writes with the same effect (release of n, or allocate of n counting c) are
/// interchangeable: the search applies them in invocation order only. Returns, for each info
/// write, the previous one with its effect.
fn same_effect_order(steps: &[Step], is_ok: &[bool], keys: &[(u128, u128)]) -> Vec<Option<usize>> {
    let mut prev_same_effect: Vec<Option<usize>> = vec![None; steps.len()];
    let mut last: HashMap<(usize, Option<u32>), usize> = HashMap::new();
    for (i, step) in steps.iter().enumerate() {
        if is_ok[i] {
            continue;
        }
        let effect = match step {
            Step::Allocate { node, counted, .. } => (*node, Some(*counted)),
            Step::Release { node, .. } => (*node, None),
            _ => continue,
        };
        // Only when the earlier one's deadline is not later: then swapping which of the
        // two takes effect where is always possible.
        prev_same_effect[i] = last.insert(effect, i).filter(|&j| keys[j].1 <= keys[i].1);
    }
    prev_same_effect
}

/// The list positions of each checked operation's call and return: event `index` × 2 for
/// events; an `info` write returns at infinity, or with a horizon just before the first event
/// later than its completion time plus the horizon (× 2 − 1, so before that event).
fn entry_keys(
    ops: &[Operation],
    checked: &[&Operation],
    horizon: Option<u64>,
) -> Vec<(u128, u128)> {
    let mut times: Vec<(u64, u64)> = Vec::new();
    if horizon.is_some() {
        for op in ops {
            times.push((op.invoke_index, op.invoke_time_ns));
            if let (Some(i), Some(t)) = (op.complete_index, op.complete_time_ns) {
                times.push((i, t));
            }
        }
        times.sort_unstable();
    }
    checked
        .iter()
        .map(|op| {
            let call = u128::from(op.invoke_index) * 2;
            let ret = match (op.outcome, horizon, op.complete_time_ns) {
                (Outcome::Info, Some(h), Some(t)) => {
                    let deadline = t.saturating_add(h);
                    // Times never decrease along indices.
                    let k = times.partition_point(|&(_, time)| time <= deadline);
                    times
                        .get(k)
                        .map_or(u128::MAX, |&(index, _)| u128::from(index) * 2 - 1)
                }
                (Outcome::Info, _, _) => u128::MAX,
                _ => u128::from(op.complete_or_max()) * 2,
            };
            (call, ret)
        })
        .collect()
}

/// The step of one checked operation.
fn to_step(
    op: &Operation,
    license: &License,
    names: &[String],
    node_id: &impl Fn(&str) -> usize,
) -> Step {
    match (&op.input, &op.output) {
        (Input::Allocate(a), out) => Step::Allocate {
            node: node_id(&a.node),
            counted: license.counted(a.cores),
            expect: match out {
                Some(Output::Allocate(AllocateOutput::Granted {
                    counted_cores,
                    allocated_cores,
                })) => AllocExpect::Granted {
                    counted: *counted_cores,
                    total: *allocated_cores,
                },
                Some(Output::Allocate(AllocateOutput::Rejected { code }))
                    if code == CPU_LIMIT_EXHAUSTED =>
                {
                    AllocExpect::Refused
                }
                Some(Output::Allocate(AllocateOutput::Rejected { code }))
                    if code == NODE_IN_USE =>
                {
                    AllocExpect::InUse
                }
                Some(_) => AllocExpect::Impossible,
                None => AllocExpect::Unknown,
            },
        },
        (Input::Release(n), out) => Step::Release {
            node: node_id(&n.node),
            expect: match out {
                Some(Output::Release(r)) => Some(r.released),
                _ => None,
            },
            refused: matches!(out, Some(Output::Release(r)) if r.refused),
        },
        (Input::Check(n), out) => Step::Check {
            node: node_id(&n.node),
            valid: matches!(out, Some(Output::Check(c)) if c.valid),
        },
        (Input::Usage, out) => {
            let mut nodes = vec![None; names.len()];
            let mut total = 0;
            if let Some(Output::Usage(u)) = out {
                for (n, &c) in &u.nodes {
                    nodes[node_id(n)] = Some(c);
                }
                total = u.allocated_cores;
            }
            Step::Usage { nodes, total }
        }
        (Input::Lease(..), _) => unreachable!("lease operations are filtered out in Problem::new"),
    }
}
