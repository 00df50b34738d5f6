//! Recovery and availability.
//!
//! The heal is the last nemesis `stop`. Within the bound B after it, a write (`allocate` or
//! `release` completing `ok`, a `CPU_LIMIT_EXHAUSTED` rejection included: the state machine
//! answered) and a `check` completing `ok` must both have completed. An operation counts
//! from its completion time, whenever it was invoked. The verdict is valid when both happen
//! within B, vacuously valid when the history has no fault, and not valid when a fault was
//! never stopped.
//!
//! Also reported, over client operations (every process but the nemesis and [`FINAL`]):
//! availability = share of operations that completed `ok` (incomplete ones count as not
//! ok), and the longest stretch of time while some fault was active without any `ok`
//! completion.

use serde::{Deserialize, Serialize};

use crate::history::{F, FINAL, FaultInterval, History, Operation, Outcome};

use super::OpRef;

/// Counts of client operations by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOpCounts {
    /// All client operations (except the final reads).
    pub total: usize,
    /// Completed `ok`.
    pub ok: usize,
    /// Completed `fail`.
    pub fail: usize,
    /// Completed `info`.
    pub info: usize,
    /// Never completed.
    pub incomplete: usize,
}

/// A stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Its length in milliseconds.
    pub ms: f64,
    /// Where it starts (a fault's start or an `ok` completion), in `time_ns`.
    pub from_ns: u64,
    /// Where it ends (an `ok` completion or a fault's stop), in `time_ns`.
    pub to_ns: u64,
}

/// The recovery checker's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryVerdict {
    /// True when a write and a check succeeded within the bound after the heal (or there
    /// was no fault).
    pub valid: bool,
    /// Why it is not valid, if it is not.
    pub error: Option<String>,
    /// The bound B in milliseconds.
    pub bound_ms: f64,
    /// The faults, in start order.
    pub faults: Vec<FaultInterval>,
    /// The last `stop`'s time.
    pub heal_time_ns: Option<u64>,
    /// Time from the heal to the first `ok` write completion.
    pub first_ok_write_after_heal_ms: Option<f64>,
    /// That write.
    pub first_ok_write: Option<OpRef>,
    /// Time from the heal to the first `ok` check completion.
    pub first_ok_check_after_heal_ms: Option<f64>,
    /// That check.
    pub first_ok_check: Option<OpRef>,
    /// `ok` / `total` client operations; `None` without client operations.
    pub availability: Option<f64>,
    /// Client operations by outcome.
    pub client_ops: ClientOpCounts,
    /// The longest stretch without an `ok` completion while a fault was active, in ms
    /// (0 without faults).
    pub longest_gap_during_faults_ms: f64,
    /// Where that stretch is.
    pub longest_gap_during_faults: Option<Gap>,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Checks recovery after the last fault with bound `bound_ns`, and measures availability.
pub fn check_recovery(history: &History, bound_ns: u64) -> RecoveryVerdict {
    let clients: Vec<&Operation> = history.ops.iter().filter(|o| o.process != FINAL).collect();
    let mut counts = ClientOpCounts {
        total: clients.len(),
        ..ClientOpCounts::default()
    };
    for o in &clients {
        match (o.outcome, o.complete_index) {
            (Outcome::Ok, _) => counts.ok += 1,
            (Outcome::Fail, _) => counts.fail += 1,
            (Outcome::Info, Some(_)) => counts.info += 1,
            (Outcome::Info, None) => counts.incomplete += 1,
        }
    }
    let mut ok_times: Vec<u64> = clients
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .filter_map(|o| o.complete_time_ns)
        .collect();
    ok_times.sort_unstable();

    let mut v = RecoveryVerdict {
        valid: false,
        error: None,
        bound_ms: ms(bound_ns),
        faults: history.faults.clone(),
        heal_time_ns: None,
        first_ok_write_after_heal_ms: None,
        first_ok_write: None,
        first_ok_check_after_heal_ms: None,
        first_ok_check: None,
        availability: (counts.total > 0).then(|| counts.ok as f64 / counts.total as f64),
        client_ops: counts,
        longest_gap_during_faults_ms: 0.0,
        longest_gap_during_faults: None,
    };

    let end = history.end_time_ns();
    v.longest_gap_during_faults = longest_gap(&history.faults, &ok_times, end);
    v.longest_gap_during_faults_ms = v.longest_gap_during_faults.map_or(0.0, |g| g.ms);

    if history.faults.is_empty() {
        v.valid = true;
        return v;
    }
    if let Some(open) = history.faults.iter().find(|f| f.stop_index.is_none()) {
        v.error = Some(format!(
            "fault {:?} started at event {} never stopped",
            open.fault, open.start_index
        ));
        return v;
    }
    let heal = history
        .faults
        .iter()
        .filter_map(|f| f.stop_time_ns)
        .max()
        .unwrap_or(0);
    v.heal_time_ns = Some(heal);

    let first_after = |pred: &dyn Fn(&Operation) -> bool| {
        clients
            .iter()
            .filter(|o| o.outcome == Outcome::Ok && pred(o))
            .filter_map(|o| o.complete_time_ns.filter(|&t| t >= heal).map(|t| (t, *o)))
            .min_by_key(|(t, o)| (*t, o.complete_index))
    };
    let write = first_after(&|o| o.f.is_write());
    let check = first_after(&|o| o.f == F::Check);
    v.first_ok_write_after_heal_ms = write.map(|(t, _)| ms(t - heal));
    v.first_ok_write = write.map(|(_, o)| OpRef::from(o));
    v.first_ok_check_after_heal_ms = check.map(|(t, _)| ms(t - heal));
    v.first_ok_check = check.map(|(_, o)| OpRef::from(o));

    let mut problems = Vec::new();
    for (what, found) in [("write", write), ("check", check)] {
        match found {
            None => problems.push(format!("no ok {what} completed after the heal")),
            Some((t, _)) if t - heal > bound_ns => problems.push(format!(
                "the first ok {what} completed {:.1} ms after the heal, beyond the bound of \
                 {:.1} ms",
                ms(t - heal),
                ms(bound_ns)
            )),
            Some(_) => {}
        }
    }
    v.valid = problems.is_empty();
    if !problems.is_empty() {
        v.error = Some(problems.join("; "));
    }
    v
}

/// The longest stretch inside the union of the fault intervals (open ones end at `end`)
/// containing no `ok` completion time.
fn longest_gap(faults: &[FaultInterval], ok_times: &[u64], end: u64) -> Option<Gap> {
    let mut spans: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| {
            (
                f.start_time_ns,
                f.stop_time_ns.unwrap_or(end).max(f.start_time_ns),
            )
        })
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let mut best: Option<(u64, u64)> = None;
    let mut consider = |a: u64, b: u64| {
        if best.is_none_or(|(x, y)| b - a > y - x) {
            best = Some((a, b));
        }
    };
    for (s, e) in merged {
        let lo = ok_times.partition_point(|&t| t < s);
        let hi = ok_times.partition_point(|&t| t <= e);
        let mut prev = s;
        for &t in &ok_times[lo..hi] {
            consider(prev, t);
            prev = t;
        }
        consider(prev, e);
    }
    best.map(|(a, b)| Gap {
        ms: ms(b - a),
        from_ns: a,
        to_ns: b,
    })
}
