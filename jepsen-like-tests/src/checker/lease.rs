//! The lease checker: the promises of short leases, judged on the client's clock.
//!
//! The lease workload (`History::lease_ops` and `History::markers`) has application servers
//! that allocate with a short lease and heartbeat to keep it, die on purpose (stop
//! heartbeating) and revive, and an observer that reads the lease license's usage. Times are
//! the history's `time_ns`, one monotonic clock on the client's side. Three rules:
//!
//! - **(a) no lease ends early** (`lease-ended-early`): an `ok` `lease-allocate` or
//!   `heartbeat` S answered `held` with `remaining_ms = r` promises the server's lease until
//!   `invoke(S) + r`. No `heartbeat` or `lease-check` of that server invoked after S
//!   completed and completed before `invoke(S) + r` may be answered `not_allocated` or
//!   `lease_expired`. (The workload never releases a lease server, so nothing in between
//!   may end the lease.)
//! - **(b) a dead server's cores are freed in time** (`held-after-death`): after a `die`
//!   marker, let L be the server's last `held` answer before it. No `lease-usage` read
//!   invoked later than `complete(L) + bound` and completed before the server's `revive` may
//!   show the server. The bound is `ttl + max(checkpoint, ttl/16) + election_timeout_max +
//!   tick` when leadership does not move, plus `2 × election_timeout_max` for each change
//!   of leader (the time without a leader an election takes: see [`LeaseConfig::bound_ms`])
//!   and `max(checkpoint, ttl/16) + election_timeout_max` for every change after the
//!   first, counting changes as the distinct terms
//!   above L's that leaders' answers (naming their leader, or allocations) completed
//!   between L's invocation and the read's completion carry. An `info` heartbeat after L moves the start to its completion; an `info`
//!   allocate after L may take effect at any later time, so that death is not judged. The
//!   verdict reports the longest a dead server was seen holding cores, against its bound.
//! - **(c) no grant over the cap** (`grant-over-cap`): a granted `lease-allocate` G must
//!   fit beside the servers whose leases certainly hold throughout it: another server
//!   counts when one of its `held` answers S completed before G was invoked and promised a
//!   lease past G's completion (`invoke(S) + r`). Their counted cores plus G's must not
//!   exceed the lease license's cap, and neither may G's `allocated_cores`.
//!
//! What it leaves out: the license model's rules (the lease workload's operations are not
//! in the linearizability checker's history), and leases of servers it never saw granted.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::OpRef;
use crate::history::{
    F, HELD, History, LEASE_EXPIRED, LeaseOutput, Marker, NOT_ALLOCATED, Operation, Outcome, Output,
};

/// What the lease checker needs of the lease license and of licd's timing (`[raft]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// The lease license's `max_cores`.
    pub max_cores: u64,
    /// `raft.lease_checkpoint_ms`.
    pub checkpoint_ms: u64,
    /// `raft.election_timeout_max_ms`.
    pub election_timeout_max_ms: u64,
    /// `raft.tick_ms`.
    pub tick_ms: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig::DEFAULT
    }
}

impl LeaseConfig {
    /// licd's default timing and a cap of 16.
    pub const DEFAULT: LeaseConfig = LeaseConfig {
        max_cores: 16,
        checkpoint_ms: 5_000,
        election_timeout_max_ms: 500,
        tick_ms: 500,
    };

    /// The longest a server with lease `ttl_ms` may stay allocated after its last renewal,
    /// with `changes` changes of leader meanwhile.
    ///
    /// What licd promises (docs/operations.md, `lease_checkpoint_ms`): `ttl + max(checkpoint,
    /// ttl/16) + election_timeout_max + tick`, plus `max(checkpoint, ttl/16) +
    /// election_timeout_max` for each further change of leader, plus the time the cluster had
    /// no leader. That last part is not in the answers, so each change is allowed what an
    /// election after a leader's death takes in openraft 0.9: its followers refuse votes for
    /// `election_timeout_max` after the last heartbeat (the leader lease), then a candidate
    /// campaigns within its election timeout, at most `election_timeout_max` again.
    pub fn bound_ms(&self, ttl_ms: u64, changes: u64) -> u64 {
        let per_change = self.checkpoint_ms.max(ttl_ms / 16) + self.election_timeout_max_ms;
        let leaderless = 2 * self.election_timeout_max_ms;
        ttl_ms
            + per_change
            + self.tick_ms
            + changes.saturating_sub(1) * per_change
            + changes * leaderless
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseViolation {
    /// `lease-ended-early`, `held-after-death` or `grant-over-cap`.
    pub kind: String,
    /// The server concerned.
    pub node: String,
    /// What happened, in words.
    pub message: String,
    /// The operations involved: the promise (or grant) first.
    pub ops: Vec<OpRef>,
}

/// The longest a dead server was seen holding cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldAfterDeath {
    /// The server.
    pub node: String,
    /// From its last renewal's completion to the invocation of the last read showing it.
    pub held_ms: f64,
    /// The bound at that read.
    pub bound_ms: u64,
    /// The changes of leader counted for that bound.
    pub leader_changes: u64,
}

/// The lease checker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseVerdict {
    /// True when no rule was broken.
    pub valid: bool,
    /// Servers with lease operations.
    pub servers: usize,
    /// `held` answers of allocations and heartbeats (the promises rule (a) checks).
    pub promises: usize,
    /// `not_allocated` and `lease_expired` answers.
    pub ended_answers: usize,
    /// `die` markers.
    pub deaths: usize,
    /// Deaths rule (b) judged (a server with a promise before it and no `info` allocate).
    pub deaths_judged: usize,
    /// Distinct terms seen in answers.
    pub terms_seen: usize,
    /// The longest a dead server was seen holding cores, against its bound.
    pub longest_held_after_death: Option<HeldAfterDeath>,
    /// Every broken rule, in history order of the offending operation.
    pub violations: Vec<LeaseViolation>,
}

fn lease_output(op: &Operation) -> Option<&LeaseOutput> {
    match &op.output {
        Some(Output::Lease(_, l)) if op.outcome == Outcome::Ok => Some(l),
        _ => None,
    }
}

/// A `held` answer of an allocation or a heartbeat: the promise it makes.
struct Promise<'a> {
    op: &'a Operation,
    node: &'a str,
    complete_ns: u64,
    until_ns: u64,
    counted: u32,
    term: Option<u64>,
}

fn promises(ops: &[Operation]) -> Vec<Promise<'_>> {
    ops.iter()
        .filter(|op| matches!(op.f, F::LeaseAllocate | F::Heartbeat))
        .filter_map(|op| {
            let out = lease_output(op)?;
            let remaining = out.remaining_ms?;
            (out.outcome == HELD).then_some(())?;
            Some(Promise {
                op,
                node: op.input.node()?,
                complete_ns: op.complete_time_ns?,
                until_ns: op
                    .invoke_time_ns
                    .saturating_add(remaining.saturating_mul(1_000_000)),
                counted: out.counted_cores.unwrap_or(0),
                term: out.term,
            })
        })
        .collect()
}

/// Checks the lease workload of a history.
pub fn check_lease(history: &History, config: &LeaseConfig) -> LeaseVerdict {
    let ops = &history.lease_ops;
    let promises = promises(ops);
    let mut violations = Vec::new();

    // (a) No lease ends before its promise.
    let ended: Vec<&Operation> = ops
        .iter()
        .filter(|op| matches!(op.f, F::Heartbeat | F::LeaseCheck))
        .filter(|op| {
            lease_output(op)
                .is_some_and(|o| o.outcome == NOT_ALLOCATED || o.outcome == LEASE_EXPIRED)
        })
        .collect();
    for o in &ended {
        let (Some(node), Some(done)) = (o.input.node(), o.complete_time_ns) else {
            continue;
        };
        let broken = promises
            .iter()
            .find(|p| p.node == node && o.invoke_time_ns > p.complete_ns && done < p.until_ns);
        if let Some(p) = broken {
            violations.push(LeaseViolation {
                kind: "lease-ended-early".into(),
                node: node.to_string(),
                message: format!(
                    "{node} was promised its lease until {:.3} s, but an operation invoked at \
                     {:.3} s and completed at {:.3} s was told its lease had ended",
                    p.until_ns as f64 / 1e9,
                    o.invoke_time_ns as f64 / 1e9,
                    done as f64 / 1e9
                ),
                ops: vec![OpRef::from(p.op), OpRef::from(*o)],
            });
        }
    }

    // (b) A dead server's cores are freed within the bound.
    let terms = answer_terms(ops);
    let reads: Vec<(&Operation, &BTreeMap<String, u32>)> = ops
        .iter()
        .filter(|op| op.f == F::LeaseUsage)
        .filter_map(|op| Some((op, lease_output(op)?.nodes.as_ref()?)))
        .collect();
    let mut deaths_judged = 0;
    let mut longest: Option<HeldAfterDeath> = None;
    let deaths: Vec<&Marker> = history.markers.iter().filter(|m| m.f == F::Die).collect();
    for death in &deaths {
        let node = death.node.as_str();
        let revive_ns = history
            .markers
            .iter()
            .find(|m| m.f == F::Revive && m.node == node && m.index > death.index)
            .map_or(u64::MAX, |m| m.time_ns);
        let Some(last) = promises
            .iter()
            .filter(|p| p.node == node && p.complete_ns <= death.time_ns)
            .max_by_key(|p| p.complete_ns)
        else {
            continue;
        };
        let after_last = ops.iter().filter(|op| {
            op.input.node() == Some(node)
                && op.outcome == Outcome::Info
                && op.invoke_time_ns > last.op.invoke_time_ns
                && op.invoke_time_ns < death.time_ns
        });
        let mut start_ns = last.complete_ns;
        let mut unknown = false;
        for op in after_last {
            match op.f {
                F::LeaseAllocate => unknown = true,
                F::Heartbeat => start_ns = start_ns.max(op.complete_time_ns.unwrap_or(u64::MAX)),
                _ => {}
            }
        }
        if unknown || start_ns == u64::MAX {
            continue;
        }
        deaths_judged += 1;
        let ttl = ttl_of(ops, node, last.op);
        let base_term = last.term.unwrap_or(0);
        for (read, nodes) in &reads {
            let Some(read_done) = read.complete_time_ns else {
                continue;
            };
            if !nodes.contains_key(node)
                || read.invoke_time_ns <= start_ns
                || read_done >= revive_ns
            {
                continue;
            }
            let changes = terms
                .iter()
                .filter(|(t, at)| {
                    *t > base_term && *at >= last.op.invoke_time_ns && *at <= read_done
                })
                .map(|(t, _)| *t)
                .collect::<BTreeSet<u64>>()
                .len() as u64;
            let bound = config.bound_ms(ttl, changes);
            let held_ms = (read.invoke_time_ns - start_ns) as f64 / 1e6;
            if longest.as_ref().is_none_or(|l| held_ms > l.held_ms) {
                longest = Some(HeldAfterDeath {
                    node: node.to_string(),
                    held_ms,
                    bound_ms: bound,
                    leader_changes: changes,
                });
            }
            if read.invoke_time_ns > start_ns.saturating_add(bound.saturating_mul(1_000_000)) {
                violations.push(LeaseViolation {
                    kind: "held-after-death".into(),
                    node: node.to_string(),
                    message: format!(
                        "{node} stopped heartbeating; its last renewal completed at {:.3} s, \
                         yet a read invoked {held_ms:.0} ms later still shows its cores (bound \
                         {bound} ms with a {ttl} ms lease and {changes} changes of leader)",
                        start_ns as f64 / 1e9
                    ),
                    ops: vec![OpRef::from(last.op), OpRef::from(*read)],
                });
            }
        }
    }

    // (c) No grant beside certainly held leases pushes the license over its cap.
    for grant in &promises {
        if grant.op.f != F::LeaseAllocate {
            continue;
        }
        let done = grant.complete_ns;
        let mut holding: BTreeMap<&str, &Promise> = BTreeMap::new();
        for p in &promises {
            if p.node != grant.node && p.complete_ns < grant.op.invoke_time_ns && p.until_ns > done
            {
                holding.entry(p.node).or_insert(p);
            }
        }
        let others: u64 = holding.values().map(|p| u64::from(p.counted)).sum();
        let total = others + u64::from(grant.counted);
        let reported = lease_output(grant.op)
            .and_then(|o| o.allocated_cores)
            .unwrap_or(0);
        if total > config.max_cores || reported > config.max_cores {
            let mut refs = vec![OpRef::from(grant.op)];
            refs.extend(holding.values().map(|p| OpRef::from(p.op)));
            violations.push(LeaseViolation {
                kind: "grant-over-cap".into(),
                node: grant.node.to_string(),
                message: format!(
                    "{} was granted {} cores while {:?} certainly held {others} (reported total \
                     {reported}); the cap is {}",
                    grant.node,
                    grant.counted,
                    holding.keys().collect::<Vec<_>>(),
                    config.max_cores
                ),
                ops: refs,
            });
        }
    }

    violations.sort_by_key(|v| v.ops.last().map_or(0, |o| o.invoke_index));
    let servers: BTreeSet<&str> = ops
        .iter()
        .filter(|op| op.f != F::LeaseUsage && op.f != F::Leader)
        .filter_map(|op| op.input.node())
        .collect();
    LeaseVerdict {
        valid: violations.is_empty(),
        servers: servers.len(),
        promises: promises.len(),
        ended_answers: ended.len(),
        deaths: deaths.len(),
        deaths_judged,
        terms_seen: terms.iter().map(|(t, _)| *t).collect::<BTreeSet<_>>().len(),
        longest_held_after_death: longest,
        violations,
    }
}

/// Every term a leader's answer carried, with the answer's completion time: answers that
/// name their leader, and allocations (the term of their log entry). A term a node reached
/// campaigning, with no leader, is no change of leader.
fn answer_terms(ops: &[Operation]) -> Vec<(u64, u64)> {
    ops.iter()
        .filter_map(|op| {
            let out = lease_output(op)?;
            (out.leader.is_some() || op.f == F::LeaseAllocate).then_some(())?;
            Some((out.term?, op.complete_time_ns?))
        })
        .collect()
}

/// The lease of `node` at `promise`: the `ttl_ms` of its latest allocation invoked no later.
fn ttl_of(ops: &[Operation], node: &str, promise: &Operation) -> u64 {
    ops.iter()
        .filter(|op| {
            op.f == F::LeaseAllocate
                && op.input.node() == Some(node)
                && op.invoke_time_ns <= promise.invoke_time_ns
        })
        .filter_map(|op| match &op.input {
            crate::history::Input::Lease(_, l) => l.ttl_ms,
            _ => None,
        })
        .next_back()
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
