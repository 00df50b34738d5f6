//! Durability: acknowledged grants survive the faults.
//!
//! After every fault healed the harness reads the usage as process [`FINAL`]; the checker
//! takes the last `ok` one. A node must appear in that read when it has an acknowledged
//! (`ok`, granted) allocate that no release may have undone: no release of the node (`ok` or
//! `info` or never completed, that is anything but `fail`) was invoked after the grant's
//! invocation, or was still outstanding when the grant was invoked. A missing node is a
//! *lost* write.
//!
//! When, in addition, no other allocate of the node that may have been granted (`ok`
//! granted, `info`, never completed) was invoked after the grant's invocation or was still
//! outstanding then, the final read must also show the grant's `counted_cores`; a different
//! value is a lost update, reported in `value_mismatches`.
//!
//! A history without an `ok` final read is not valid: the check could not be made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::{AllocateOutput, F, FINAL, Operation, Outcome, Output, UsageOutput};

use super::OpRef;

/// A node the final read lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostNode {
    /// The node.
    pub node: String,
    /// Its last acknowledged grant.
    pub grant: OpRef,
    /// The cores that grant counted.
    pub counted_cores: u32,
}

/// A node whose final allocation differs from its last, unchallenged grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMismatch {
    /// The node.
    pub node: String,
    /// Its last acknowledged grant.
    pub grant: OpRef,
    /// The cores that grant counted.
    pub expected_cores: u32,
    /// The cores the final read shows.
    pub found_cores: u32,
}

/// The durability checker's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurabilityVerdict {
    /// True when a final read exists and lost nothing.
    pub valid: bool,
    /// Why the check could not be made, if it could not.
    pub error: Option<String>,
    /// The final read used.
    pub final_read: Option<OpRef>,
    /// What it showed.
    pub final_usage: Option<UsageOutput>,
    /// Nodes that had to appear in it.
    pub nodes_required: usize,
    /// Required nodes missing from it.
    pub lost: Vec<LostNode>,
    /// Nodes present with another core count than their unchallenged last grant.
    pub value_mismatches: Vec<ValueMismatch>,
}

/// Checks the final read against the acknowledged grants.
pub fn check_durability(ops: &[Operation]) -> DurabilityVerdict {
    let mut v = DurabilityVerdict {
        valid: false,
        error: None,
        final_read: None,
        final_usage: None,
        nodes_required: 0,
        lost: Vec::new(),
        value_mismatches: Vec::new(),
    };
    let final_read = ops
        .iter()
        .filter(|o| o.process == FINAL && o.outcome == Outcome::Ok)
        .filter_map(|o| match &o.output {
            Some(Output::Usage(u)) => Some((o, u)),
            _ => None,
        })
        .max_by_key(|(o, _)| o.complete_or_max());
    let Some((read, usage)) = final_read else {
        v.error = Some(format!(
            "no ok usage read by process {FINAL:?}: durability could not be checked"
        ));
        return v;
    };
    v.final_read = Some(OpRef::from(read));
    v.final_usage = Some(usage.clone());

    // The grant with the latest invocation, per node.
    let mut last_grant: BTreeMap<&str, &Operation> = BTreeMap::new();
    for op in ops {
        if let Some((node, _, _)) = op.granted() {
            let e = last_grant.entry(node).or_insert(op);
            if op.invoke_index > e.invoke_index {
                *e = op;
            }
        }
    }
    for (node, grant) in last_grant {
        // Anything that may take effect after the grant's linearization point: invoked
        // after it, or still outstanding when it was invoked.
        let may_follow = |o: &&Operation| {
            o.input.node() == Some(node)
                && o.invoke_index != grant.invoke_index
                && o.outcome != Outcome::Fail
                && o.effect_deadline() > grant.invoke_index
        };
        if ops.iter().filter(may_follow).any(|o| o.f == F::Release) {
            continue;
        }
        v.nodes_required += 1;
        let Some((_, counted, _)) = grant.granted() else {
            continue;
        };
        match usage.nodes.get(node) {
            None => v.lost.push(LostNode {
                node: node.to_string(),
                grant: OpRef::from(grant),
                counted_cores: counted,
            }),
            Some(&found) => {
                let challenged = ops.iter().filter(may_follow).any(|o| {
                    o.f == F::Allocate
                        && !matches!(
                            o.output,
                            Some(Output::Allocate(AllocateOutput::Rejected { .. }))
                        )
                });
                if !challenged && found != counted {
                    v.value_mismatches.push(ValueMismatch {
                        node: node.to_string(),
                        grant: OpRef::from(grant),
                        expected_cores: counted,
                        found_cores: found,
                    });
                }
            }
        }
    }
    v.valid = v.lost.is_empty() && v.value_mismatches.is_empty();
    v
}
