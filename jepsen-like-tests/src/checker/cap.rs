//! The license cap: no one ever sees more than `max_cores` allocated.
//!
//! Three rules, each reported per offending operation:
//!
//! - `usage-above-cap`: an `ok` usage read whose `allocated_cores`, or the sum of whose
//!   `nodes` map, exceeds M.
//! - `grant-above-cap`: an `ok` granted allocate whose `allocated_cores` exceeds M.
//! - `concurrent-grants-above-cap`: acknowledged grants that *certainly* held at the same
//!   moment sum above M, even though each reported a total within the cap (a double grant by
//!   two leaders). A grant of node n certainly holds from its completion until the next
//!   write of n is invoked, provided no other write of n (other than `fail` ones and
//!   `CPU_LIMIT_EXHAUSTED` rejections, which change nothing) overlaps the grant itself; if
//!   one does, the grant is skipped. In every linearization, the state right after the
//!   later of two such overlapping grants holds both, so a sum above M there is a real cap
//!   violation, not an artefact of concurrency.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::history::{AllocateOutput, Operation, Outcome, Output};

use super::{License, OpRef};

/// How many violations a verdict lists (it counts the rest).
const MAX_LISTED: usize = 50;

/// One cap violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapViolation {
    /// `usage-above-cap`, `grant-above-cap` or `concurrent-grants-above-cap`.
    pub kind: String,
    /// The cores allocated according to the offending operation(s).
    pub allocated_cores: u64,
    /// The offending operation, or the grants that held together.
    pub ops: Vec<OpRef>,
    /// A one-line explanation.
    pub message: String,
}

/// The cap checker's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapVerdict {
    /// True when there is no violation.
    pub valid: bool,
    /// M.
    pub max_cores: u64,
    /// `ok` usage reads checked.
    pub usage_reads: usize,
    /// `ok` granted allocates checked.
    pub grants: usize,
    /// The highest `allocated_cores` any usage read or grant reported.
    pub max_observed_allocated_cores: u64,
    /// The highest sum of grants that certainly held at the same moment.
    pub max_standing_cores: u64,
    /// The violations, in history order (at most 50).
    pub violations: Vec<CapViolation>,
    /// Violations beyond the listed ones.
    pub violations_omitted: usize,
}

/// Checks the cap rules over the `ok` operations.
pub fn check_cap(ops: &[Operation], license: &License) -> CapVerdict {
    let max = license.max_cores;
    let mut v = CapVerdict {
        valid: true,
        max_cores: max,
        usage_reads: 0,
        grants: 0,
        max_observed_allocated_cores: 0,
        max_standing_cores: 0,
        violations: Vec::new(),
        violations_omitted: 0,
    };
    let mut found: Vec<(u64, CapViolation)> = Vec::new();

    for op in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        match &op.output {
            Some(Output::Usage(u)) => {
                v.usage_reads += 1;
                let sum: u64 = u.nodes.values().map(|&c| u64::from(c)).sum();
                let seen = u.allocated_cores.max(sum);
                v.max_observed_allocated_cores = v.max_observed_allocated_cores.max(seen);
                if seen > max {
                    found.push((
                        op.complete_or_max(),
                        CapViolation {
                            kind: "usage-above-cap".into(),
                            allocated_cores: seen,
                            ops: vec![OpRef::from(op)],
                            message: format!(
                                "usage read shows allocated_cores {} (nodes sum to {sum}) above \
                                 max_cores {max}",
                                u.allocated_cores
                            ),
                        },
                    ));
                }
            }
            Some(Output::Allocate(AllocateOutput::Granted {
                allocated_cores, ..
            })) => {
                v.grants += 1;
                v.max_observed_allocated_cores =
                    v.max_observed_allocated_cores.max(*allocated_cores);
                if *allocated_cores > max {
                    found.push((
                        op.complete_or_max(),
                        CapViolation {
                            kind: "grant-above-cap".into(),
                            allocated_cores: *allocated_cores,
                            ops: vec![OpRef::from(op)],
                            message: format!(
                                "grant reports allocated_cores {allocated_cores} above max_cores \
                                 {max}"
                            ),
                        },
                    ));
                }
            }
            _ => {}
        }
    }

    let (max_standing, standing) = standing_violations(ops, max);
    v.max_standing_cores = max_standing;
    found.extend(standing);

    found.sort_by_key(|(pos, _)| *pos);
    v.valid = found.is_empty();
    v.violations_omitted = found.len().saturating_sub(MAX_LISTED);
    v.violations = found.into_iter().take(MAX_LISTED).map(|(_, x)| x).collect();
    v
}

/// Whether `op` may change the allocation of its node.
fn may_change(op: &Operation) -> bool {
    op.is_write()
        && op.outcome != Outcome::Fail
        && !matches!(
            op.output,
            Some(Output::Allocate(AllocateOutput::Rejected { .. }))
        )
}

/// The sweep over grants that certainly held: returns the highest sum seen and the
/// violations (keyed by event position).
fn standing_violations(ops: &[Operation], max: u64) -> (u64, Vec<(u64, CapViolation)>) {
    let mut writes: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in ops.iter().filter(|o| may_change(o)) {
        if let Some(n) = op.input.node() {
            writes.entry(n).or_default().push(op);
        }
    }
    // (start, end, counted, op) of every grant that certainly held over [start, end).
    let mut intervals: Vec<(u64, u64, u64, &Operation)> = Vec::new();
    for op in ops {
        let Some((node, counted, _)) = op.granted() else {
            continue;
        };
        let Some(start) = op.complete_index else {
            continue;
        };
        let mut end = u64::MAX;
        let mut overlapped = false;
        for w in writes.get(node).into_iter().flatten() {
            if w.invoke_index == op.invoke_index {
                continue;
            }
            if w.invoke_index < start && op.invoke_index < w.effect_deadline() {
                overlapped = true;
                break;
            }
            if w.invoke_index > start {
                end = end.min(w.invoke_index);
            }
        }
        if !overlapped {
            intervals.push((start, end, u64::from(counted), op));
        }
    }
    // Sweep: at each start, the grants holding at that moment.
    let mut points: Vec<(u64, bool, usize)> = Vec::new();
    for (i, &(s, e, _, _)) in intervals.iter().enumerate() {
        points.push((s, true, i));
        if e != u64::MAX {
            points.push((e, false, i));
        }
    }
    points.sort_unstable();
    let mut active: BTreeMap<u64, usize> = BTreeMap::new();
    let mut sum = 0u64;
    let mut max_sum = 0u64;
    let mut out = Vec::new();
    for (pos, is_start, i) in points {
        let (s, _, c, _) = intervals[i];
        if is_start {
            active.insert(s, i);
            sum += c;
            max_sum = max_sum.max(sum);
            if sum > max {
                let ops: Vec<OpRef> = active
                    .values()
                    .map(|&j| OpRef::from(intervals[j].3))
                    .collect();
                let message = format!(
                    "{} acknowledged grants held at event {pos} summing to {sum} cores, above \
                     max_cores {max}",
                    ops.len()
                );
                out.push((
                    pos,
                    CapViolation {
                        kind: "concurrent-grants-above-cap".into(),
                        allocated_cores: sum,
                        ops,
                        message,
                    },
                ));
            }
        } else {
            active.remove(&s);
            sum -= c;
        }
    }
    (max_sum, out)
}
