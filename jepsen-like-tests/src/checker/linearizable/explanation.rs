//! The counterexample: the deepest point the search reached, and its human explanation.
//!
//! The search keeps a raw [`Deepest`] snapshot (operation numbers and the model state) of
//! the configuration where the most `ok` operations were linearized when it got stuck.
//! [`explain`] turns it into the verdict's [`Counterexample`]: the stuck operation and why
//! it does not fit, the pending operations and why each does not fit, the last few
//! linearized ones, the state and the window of events they span.

use crate::history::{
    AllocateOutput, CPU_LIMIT_EXHAUSTED, NODE_IN_USE, Operation, Outcome, Output,
};

use super::super::{License, ModelState, OpRef, output_matches};
use super::{Counterexample, LinearizabilityResult, PendingOp};

/// How many linearized operations a counterexample shows before the stuck point.
pub(super) const SHOWN_LINEARIZED: usize = 8;
/// How many pending `info` writes a counterexample lists (it counts the rest).
const SHOWN_PENDING_INFO: usize = 8;

/// The raw snapshot of the deepest stuck point; operations are indices into the checked
/// operations.
pub(super) struct Deepest {
    /// How many `ok` operations were linearized.
    pub(super) progress: usize,
    /// The `ok` operation whose return entry the search could not get past.
    pub(super) stuck: usize,
    /// The model state there.
    pub(super) state: ModelState,
    /// The last [`SHOWN_LINEARIZED`] linearized operations, oldest first.
    pub(super) last: Vec<usize>,
    /// The operations invoked before the stuck one returned and not linearized.
    pub(super) pending: Vec<usize>,
}

/// Why `op` does not fit `state`.
fn why(op: &Operation, state: &ModelState, license: &License) -> String {
    let mut s = state.clone();
    let expected = s.apply(license, &op.input);
    // A refusal for a lease token fits exactly when the node holds an allocation (the
    // model keeps no tokens).
    let token_refusal = match &op.output {
        Some(Output::Allocate(AllocateOutput::Rejected { code })) => code == NODE_IN_USE,
        Some(Output::Release(r)) => r.refused,
        _ => false,
    };
    if token_refusal {
        let held = op.input.node().is_some_and(|n| state.nodes.contains_key(n));
        return if held {
            "a refusal for its lease token fits here (the node holds an allocation), but no \
             order of the remaining operations works after it"
                .to_string()
        } else {
            "refused for its lease token, but the node holds no allocation here".to_string()
        };
    }
    match &op.output {
        None => "outcome unknown: may take effect here, later, or never".to_string(),
        Some(observed) if output_matches(&expected, observed) => {
            "fits the model here, but no order of the remaining operations works after it"
                .to_string()
        }
        Some(observed) => match (&expected, observed) {
            (_, Output::Allocate(AllocateOutput::Rejected { code }))
                if code != CPU_LIMIT_EXHAUSTED =>
            {
                format!("observed rejection code {code}, which the model never gives")
            }
            _ => format!("the model here gives {expected}, observed {observed}"),
        },
    }
}

/// The counterexample of snapshot `d` over the `checked` operations; `result` says whether
/// the search refuted the history or ran out of budget.
pub(super) fn explain(
    d: Deepest,
    checked: &[&Operation],
    license: &License,
    result: LinearizabilityResult,
) -> Counterexample {
    let stuck = checked[d.stuck];
    let stuck_why = why(stuck, &d.state, license);
    let mut pending = Vec::new();
    let mut omitted = 0;
    let mut shown_info = 0;
    for &i in &d.pending {
        let op = checked[i];
        if op.outcome != Outcome::Ok {
            if shown_info >= SHOWN_PENDING_INFO {
                omitted += 1;
                continue;
            }
            shown_info += 1;
        }
        pending.push(PendingOp {
            op: OpRef::from(op),
            why: why(op, &d.state, license),
        });
    }
    let last_linearized: Vec<OpRef> = d.last.iter().map(|&i| OpRef::from(checked[i])).collect();
    let mut lo = stuck.invoke_index;
    let mut hi = stuck.complete_or_max();
    for r in last_linearized.iter().chain(pending.iter().map(|p| &p.op)) {
        lo = lo.min(r.invoke_index);
        hi = hi.max(r.complete_index.unwrap_or(r.invoke_index));
    }
    let state_allocated_cores = d.state.allocated_cores();
    let message = format!(
        "{}: {} completed at event {}, but with {} of the ok operations linearized (the \
         deepest point reached) it fits no order of the operations pending before it: {}. \
         State there: {:?} (total {}).",
        match result {
            LinearizabilityResult::Unknown => "search budget exhausted; deepest point",
            _ => "not linearizable",
        },
        stuck,
        stuck.complete_or_max(),
        d.progress,
        stuck_why,
        d.state.nodes,
        state_allocated_cores,
    );
    Counterexample {
        message,
        linearized_ok_ops: d.progress,
        stuck: OpRef::from(stuck),
        stuck_why,
        state: d.state,
        state_allocated_cores,
        last_linearized,
        pending,
        pending_info_omitted: omitted,
        window: (lo, hi),
    }
}
