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

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::history::{Input, Output};

    const B: u64 = 10_000_000_000; // 10 s

    #[test]
    fn recovery_within_the_bound() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .at(1_000)
            .start("partition-leader")
            .at(5_000)
            .stop("partition-leader")
            .at(5_400)
            .invoke("c1", Input::check("app-1"))
            .at(5_500)
            .ok("c1", Output::check(true))
            .at(7_000)
            .invoke("c0", Input::release("app-1"))
            .at(7_250)
            .ok("c0", Output::released(true))
            .build();
        let v = check_recovery(&h, B);
        assert!(v.valid, "{v:#?}");
        assert_eq!(v.heal_time_ns, Some(5_000_000_000));
        assert_eq!(v.first_ok_check_after_heal_ms, Some(500.0));
        assert_eq!(v.first_ok_write_after_heal_ms, Some(2_250.0));
        assert_eq!(v.first_ok_write.unwrap().f, F::Release);
        assert_eq!(v.availability, Some(1.0));
        // Nothing succeeded during the fault: the whole fault is the gap.
        assert_eq!(v.longest_gap_during_faults_ms, 4_000.0);
    }

    #[test]
    fn recovery_beyond_the_bound_is_reported() {
        let h = Hb::new()
            .at(1_000)
            .start("kill-leader")
            .at(2_000)
            .stop("kill-leader")
            .at(2_100)
            .invoke("c1", Input::check("app-1"))
            .at(2_200)
            .ok("c1", Output::check(false))
            .at(2_300)
            .invoke("c0", Input::allocate("app-1", 4))
            .at(9_000)
            .info("c0")
            .at(12_500)
            .invoke("c0", Input::allocate("app-1", 4))
            .at(12_600)
            .ok("c0", Output::granted(4, 4))
            .build();
        let v = check_recovery(&h, B);
        assert!(!v.valid);
        assert_eq!(v.first_ok_write_after_heal_ms, Some(10_600.0));
        assert!(v.error.unwrap().contains("beyond the bound"));
        assert_eq!(v.client_ops.info, 1);
        assert_eq!(v.availability, Some(2.0 / 3.0));
    }

    #[test]
    fn no_success_after_heal_is_reported() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 4), Output::granted(4, 4))
            .start("partition")
            .stop("partition")
            .invoke("c0", Input::check("app-1"))
            .info("c0")
            .invoke("c1", Input::release("app-1"))
            .build();
        let v = check_recovery(&h, B);
        assert!(!v.valid);
        let e = v.error.unwrap();
        assert!(
            e.contains("no ok write") && e.contains("no ok check"),
            "{e}"
        );
        assert_eq!(v.client_ops.incomplete, 1);
        assert_eq!(v.availability, Some(1.0 / 3.0));
    }

    #[test]
    fn rejection_counts_as_a_successful_write() {
        let h = Hb::new()
            .start("partition")
            .stop("partition")
            .op("c0", Input::allocate("app-1", 40), Output::rejected())
            .op("c1", Input::check("app-1"), Output::check(false))
            .build();
        assert!(check_recovery(&h, B).valid);
    }

    #[test]
    fn fault_never_stopped_is_not_valid() {
        let h = Hb::new()
            .start("partition")
            .op("c0", Input::allocate("app-1", 4), Output::granted(4, 4))
            .op("c1", Input::check("app-1"), Output::check(true))
            .build();
        let v = check_recovery(&h, B);
        assert!(!v.valid);
        assert!(v.error.unwrap().contains("never stopped"));
    }

    #[test]
    fn no_faults_is_vacuously_valid() {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 4), Output::granted(4, 4))
            .build();
        let v = check_recovery(&h, B);
        assert!(v.valid);
        assert_eq!(v.longest_gap_during_faults, None);
    }

    #[test]
    fn longest_gap_spans_overlapping_faults_and_skips_final_reads() {
        let h = Hb::new()
            .at(1_000)
            .start("a")
            .at(1_500)
            .start("b")
            .at(2_000)
            .invoke("c0", Input::check("x"))
            .at(2_100)
            .ok("c0", Output::check(false))
            .at(3_000)
            .stop("a")
            .at(3_500)
            .invoke("final", Input::Usage)
            .at(3_600)
            .ok("final", Output::usage([]))
            .at(6_000)
            .stop("b")
            .at(6_100)
            .invoke("c0", Input::allocate("x", 4))
            .at(6_200)
            .ok("c0", Output::granted(4, 4))
            .at(6_300)
            .invoke("c0", Input::check("x"))
            .at(6_400)
            .ok("c0", Output::check(true))
            .build();
        let v = check_recovery(&h, B);
        assert!(v.valid, "{v:#?}");
        let g = v.longest_gap_during_faults.unwrap();
        // The faults cover 1 s .. 6 s as one span; the only client ok inside is at 2.1 s.
        assert_eq!((g.from_ns, g.to_ns), (2_100_000_000, 6_000_000_000));
        assert_eq!(v.longest_gap_during_faults_ms, 3_900.0);
        assert_eq!(v.client_ops.total, 3);
    }
}
