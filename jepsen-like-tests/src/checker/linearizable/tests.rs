//! The linearizability checker on hand-written and generated histories.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::explanation::SHOWN_LINEARIZED;
use super::*;
use crate::checker::test_support::*;
use crate::checker::{ModelState, output_matches};
use crate::history::{AllocateOutput, History, Input, Operation, Outcome, Output};

fn check(h: &History) -> LinearizabilityVerdict {
    check_linearizable(&h.ops, &LICENSE, &LinearizabilityOptions::default())
}

fn assert_valid(h: &History) {
    let v = check(h);
    assert_eq!(v.result, LinearizabilityResult::Linearizable, "{v:#?}");
    assert!(v.valid);
}

fn assert_violation(h: &History) -> Counterexample {
    let v = check(h);
    assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{v:#?}");
    assert!(!v.valid);
    v.counterexample.expect("a counterexample")
}

// ---- known-bad histories ----

#[test]
fn stale_check_after_acknowledged_allocation_is_caught() {
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c1", Input::check("app-1"), Output::check(false))
        .build();
    let cx = assert_violation(&h);
    assert_eq!(cx.stuck.process, "c1");
    assert_eq!(cx.stuck.invoke_index, 2);
    assert_eq!(cx.linearized_ok_ops, 1);
    assert_eq!(cx.last_linearized.len(), 1);
    assert_eq!(cx.last_linearized[0].invoke_index, 0);
    assert!(cx.stuck_why.contains("valid=true"), "{}", cx.stuck_why);
    assert_eq!(cx.window, (0, 3));
}

#[test]
fn stale_usage_missing_an_acknowledged_allocation_is_caught() {
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c0", Input::allocate("app-2", 2), Output::granted(4, 10))
        .op("c1", Input::Usage, Output::usage([("app-1", 6)]))
        .build();
    let cx = assert_violation(&h);
    assert_eq!(cx.stuck.f, crate::history::F::Usage);
    assert_eq!(cx.state_allocated_cores, 10);
}

#[test]
fn stale_check_after_release_is_caught() {
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c0", Input::release("app-1"), Output::released(true))
        .op("c1", Input::check("app-1"), Output::check(true))
        .build();
    assert_violation(&h);
}

#[test]
fn double_grant_over_the_cap_is_caught() {
    // M = 16: two grants of 10 cannot both stand; each reports a plausible total.
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 10))
        .invoke("c1", Input::allocate("app-2", 10))
        .ok("c0", Output::granted(10, 10))
        .ok("c1", Output::granted(10, 10))
        .build();
    let cx = assert_violation(&h);
    // Both grants are in the window.
    let shown: BTreeSet<u64> = cx
        .pending
        .iter()
        .map(|p| p.op.invoke_index)
        .chain(cx.last_linearized.iter().map(|o| o.invoke_index))
        .chain([cx.stuck.invoke_index])
        .collect();
    assert!(shown.contains(&0) && shown.contains(&1), "{cx:#?}");
}

#[test]
fn usage_above_the_cap_is_caught() {
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 10), Output::granted(10, 10))
        .op(
            "c1",
            Input::Usage,
            Output::usage([("app-1", 10), ("app-2", 10)]),
        )
        .build();
    assert_violation(&h);
}

#[test]
fn rejected_allocation_that_should_have_succeeded_is_caught() {
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c1", Input::allocate("app-2", 8), Output::rejected())
        .build();
    let cx = assert_violation(&h);
    assert!(
        cx.stuck_why.contains("granted 8 (total 14)"),
        "{}",
        cx.stuck_why
    );
}

#[test]
fn rejection_is_legal_only_when_the_model_refuses() {
    // 12 held, 6 more would be 18 > 16: the rejection is right.
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 12), Output::granted(12, 12))
        .op("c1", Input::allocate("app-2", 6), Output::rejected())
        .op("c1", Input::check("app-2"), Output::check(false))
        .build();
    assert_valid(&h);
    // A grant there is not.
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 12), Output::granted(12, 12))
        .op("c1", Input::allocate("app-2", 6), Output::granted(6, 18))
        .build();
    assert_violation(&h);
}

#[test]
fn wrong_counted_cores_or_total_is_caught() {
    // m = 4: an allocation of 2 counts 4.
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 2), Output::granted(2, 2))
        .build();
    assert_violation(&h);
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c0", Input::allocate("app-1", 8), Output::granted(8, 14))
        .build();
    let cx = assert_violation(&h);
    assert!(
        cx.stuck_why.contains("granted 8 (total 8)"),
        "{}",
        cx.stuck_why
    );
}

#[test]
fn wrong_released_flag_is_caught() {
    let h = Hb::new()
        .op("c0", Input::release("app-1"), Output::released(true))
        .build();
    assert_violation(&h);
}

#[test]
fn other_rejection_codes_never_match() {
    let h = Hb::new()
        .op(
            "c0",
            Input::allocate("app-1", 6),
            Output::Allocate(AllocateOutput::Rejected {
                code: "LICENSE_EXPIRED".into(),
            }),
        )
        .build();
    let cx = assert_violation(&h);
    assert!(cx.stuck_why.contains("never gives"), "{}", cx.stuck_why);
}

#[test]
fn lost_info_write_cannot_explain_a_read_before_its_invocation() {
    // The check at [0..1] says valid, but the only allocate is invoked after it.
    let h = Hb::new()
        .op("c1", Input::check("app-1"), Output::check(true))
        .invoke("c0", Input::allocate("app-1", 6))
        .info("c0")
        .build();
    assert_violation(&h);
}

#[test]
fn counterexample_names_the_concurrent_window() {
    // Many good operations, then two concurrent checks that contradict each other
    // around an allocation that was never invoked before the first.
    let mut b = Hb::new();
    for k in 0..10 {
        let node = format!("app-{}", k % 3);
        b = b
            .op(
                "c0",
                Input::allocate(node.clone(), 4),
                Output::granted(4, 4 * ((k.min(2)) + 1)),
            )
            .op("c1", Input::check(node), Output::check(true));
    }
    let h = b
        .invoke("c2", Input::release("app-0"))
        .invoke("c3", Input::check("app-1"))
        .ok("c2", Output::released(true))
        .ok("c3", Output::check(false))
        .build();
    let cx = assert_violation(&h);
    assert_eq!(cx.stuck.process, "c3");
    assert!(cx.linearized_ok_ops >= 20, "{cx:#?}");
    assert_eq!(cx.last_linearized.len(), SHOWN_LINEARIZED);
    assert!(cx.window.0 >= 40 - 2 * SHOWN_LINEARIZED as u64, "{cx:#?}");
    assert!(cx.message.contains("c3 check(app-1)"), "{}", cx.message);
}

// ---- legal histories ----

#[test]
fn overlapping_allocate_and_check_pass_in_either_order() {
    for valid in [true, false] {
        let h = Hb::new()
            .invoke("c0", Input::allocate("app-1", 6))
            .invoke("c1", Input::check("app-1"))
            .ok("c1", Output::check(valid))
            .ok("c0", Output::granted(6, 6))
            .build();
        assert_valid(&h);
    }
}

#[test]
fn overlapping_release_and_check_pass_in_either_order() {
    for valid in [true, false] {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .invoke("c0", Input::release("app-1"))
            .invoke("c1", Input::check("app-1"))
            .ok("c0", Output::released(true))
            .ok("c1", Output::check(valid))
            .build();
        assert_valid(&h);
    }
}

#[test]
fn concurrent_allocations_racing_for_the_last_cores() {
    // 8 held; app-2 and app-3 both want 8: exactly one may win, in either order.
    for first in ["c1", "c2"] {
        let (winner, loser) = if first == "c1" {
            ("c1", "c2")
        } else {
            ("c2", "c1")
        };
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 8), Output::granted(8, 8))
            .invoke("c1", Input::allocate("app-2", 8))
            .invoke("c2", Input::allocate("app-3", 8))
            .ok(loser, Output::rejected())
            .ok(winner, Output::granted(8, 16))
            .build();
        assert_valid(&h);
    }
    // Both winning is the double grant.
    let h = Hb::new()
        .op("c0", Input::allocate("app-1", 8), Output::granted(8, 8))
        .invoke("c1", Input::allocate("app-2", 8))
        .invoke("c2", Input::allocate("app-3", 8))
        .ok("c1", Output::granted(8, 16))
        .ok("c2", Output::granted(8, 16))
        .build();
    assert_violation(&h);
}

#[test]
fn usage_concurrent_with_writes_may_see_either_state() {
    for seen in [
        Output::usage([("app-1", 6)]),
        Output::usage([("app-1", 6), ("app-2", 4)]),
        Output::usage([("app-2", 4)]),
    ] {
        let h = Hb::new()
            .op("c0", Input::allocate("app-1", 6), Output::granted(6, 6))
            .invoke("c0", Input::allocate("app-2", 1))
            .invoke("c1", Input::release("app-1"))
            .invoke("c2", Input::Usage)
            .ok("c2", seen.clone())
            .ok("c0", Output::granted(4, 10))
            .ok("c1", Output::released(true))
            .build();
        let v = check(&h);
        // The grant's total of 10 puts the allocate before the release; the read may
        // fall before, between or after them.
        assert!(v.valid, "{seen}: {v:#?}");
    }
}

#[test]
fn info_write_that_took_effect_explains_later_reads() {
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .info("c0")
        .op("c1", Input::check("app-1"), Output::check(true))
        .op("c1", Input::Usage, Output::usage([("app-1", 6)]))
        .build();
    assert_valid(&h);
}

#[test]
fn info_write_that_never_took_effect_is_fine() {
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .info("c0")
        .op("c1", Input::check("app-1"), Output::check(false))
        .op("c1", Input::allocate("app-2", 16), Output::granted(16, 16))
        .build();
    assert_valid(&h);
}

#[test]
fn info_write_may_take_effect_long_after_its_timeout() {
    // The info allocate lands after the check that did not see it.
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .info("c0")
        .op("c1", Input::check("app-1"), Output::check(false))
        .op("c1", Input::check("app-1"), Output::check(true))
        .build();
    assert_valid(&h);
    // ... but it cannot take effect twice: seen, then gone, without any release.
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .info("c0")
        .op("c1", Input::check("app-1"), Output::check(true))
        .op("c1", Input::check("app-1"), Output::check(false))
        .build();
    assert_violation(&h);
}

#[test]
fn incomplete_invocations_are_treated_as_info() {
    let h = Hb::new()
        .invoke("c0", Input::release("app-1"))
        .op("c1", Input::allocate("app-1", 6), Output::granted(6, 6))
        .op("c1", Input::check("app-1"), Output::check(false))
        .invoke("c2", Input::check("app-1"))
        .build();
    // The never-completed release lands after the allocation.
    assert_valid(&h);
}

#[test]
fn info_horizon_bounds_when_an_info_write_may_take_effect() {
    let h = Hb::new()
        .at(1)
        .invoke("c0", Input::allocate("app-1", 6))
        .at(2)
        .info("c0")
        .at(50)
        .op("c1", Input::check("app-1"), Output::check(false))
        .at(100)
        .op("c1", Input::check("app-1"), Output::check(true))
        .build();
    let with = |horizon_ms: Option<u64>| {
        check_linearizable(
            &h.ops,
            &LICENSE,
            &LinearizabilityOptions {
                info_horizon_ns: horizon_ms.map(|ms| ms * 1_000_000),
                ..Default::default()
            },
        )
    };
    // Strictly, the allocate may land any time, e.g. at 60 ms.
    assert!(with(None).valid);
    assert!(with(Some(1_000)).valid);
    // With a 10 ms horizon it landed by 12 ms or never: the checks contradict.
    let v = with(Some(10));
    assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{v:#?}");
    assert_eq!(v.info_horizon_ns, Some(10_000_000));
    // Never taking effect is still allowed within the horizon.
    let h = Hb::new()
        .at(1)
        .invoke("c0", Input::allocate("app-1", 6))
        .at(2)
        .info("c0")
        .at(100)
        .op("c1", Input::check("app-1"), Output::check(false))
        .build();
    let v = check_linearizable(
        &h.ops,
        &LICENSE,
        &LinearizabilityOptions {
            info_horizon_ns: Some(0),
            ..Default::default()
        },
    );
    assert!(v.valid, "{v:#?}");
}

#[test]
fn info_horizon_does_not_apply_to_writes_that_never_completed() {
    let h = Hb::new()
        .at(1)
        .invoke("c0", Input::allocate("app-1", 6))
        .at(3)
        .op("c1", Input::check("app-1"), Output::check(false))
        .at(100)
        .op("c1", Input::check("app-1"), Output::check(true))
        .build();
    let v = check_linearizable(
        &h.ops,
        &LICENSE,
        &LinearizabilityOptions {
            info_horizon_ns: Some(0),
            ..Default::default()
        },
    );
    assert!(v.valid, "{v:#?}");
}

#[test]
fn fail_ops_and_info_reads_are_dropped() {
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .fail("c0")
        .invoke("c1", Input::Usage)
        .info("c1")
        .op("c1", Input::check("app-1"), Output::check(false))
        .build();
    let v = check(&h);
    assert!(v.valid);
    assert_eq!((v.dropped_fail, v.dropped_info_reads, v.ok_ops), (1, 1, 1));
    // A fail allocate can't explain a later valid check.
    let h = Hb::new()
        .invoke("c0", Input::allocate("app-1", 6))
        .fail("c0")
        .op("c1", Input::check("app-1"), Output::check(true))
        .build();
    assert_violation(&h);
}

#[test]
fn empty_history_is_linearizable() {
    assert_valid(&Hb::new().build());
}

#[test]
fn budget_exhaustion_reports_unknown() {
    let mut rng = Rng(3);
    let plan = random_plan(&mut rng, 200, 6, 4, 4, true);
    let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
    let v = check_linearizable(
        &h.ops,
        &LICENSE,
        &LinearizabilityOptions {
            step_budget: 50,
            info_horizon_ns: None,
        },
    );
    assert_eq!(v.result, LinearizabilityResult::Unknown);
    assert!(!v.valid);
    assert_eq!(v.steps, 50);
}

// ---- generated histories ----

/// Brute force: every order of the ok operations and of any subset of the info writes,
/// each operation placed at a point inside its window (in units of half events).
fn oracle(h: &History, horizon: Option<u64>) -> bool {
    let ops: Vec<&Operation> = h
        .ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok || (o.outcome == Outcome::Info && o.is_write()))
        .collect();
    let window = |o: &Operation| -> (u128, u128) {
        let lo = u128::from(o.invoke_index) * 2 + 1;
        let hi = match (o.outcome, o.complete_time_ns, horizon) {
            (Outcome::Ok, _, _) => u128::from(o.complete_index.unwrap()) * 2,
            (_, Some(t), Some(hz)) => h
                .events
                .iter()
                .find(|e| e.time_ns > t + hz)
                .map_or(u128::MAX, |e| u128::from(e.index) * 2),
            _ => u128::MAX,
        };
        (lo, hi)
    };
    let windows: Vec<(u128, u128)> = ops.iter().map(|o| window(o)).collect();
    fn go(
        ops: &[&Operation],
        windows: &[(u128, u128)],
        done: &mut Vec<bool>,
        cur: u128,
        state: &ModelState,
    ) -> bool {
        if ops
            .iter()
            .zip(done.iter())
            .all(|(o, d)| *d || o.outcome != Outcome::Ok)
        {
            return true;
        }
        for i in 0..ops.len() {
            let (lo, hi) = windows[i];
            let point = cur.max(lo);
            if done[i] || point >= hi {
                continue;
            }
            let mut s = state.clone();
            let out = s.apply(&LICENSE, &ops[i].input);
            if let Some(obs) = &ops[i].output {
                if !output_matches(&out, obs) {
                    continue;
                }
            }
            done[i] = true;
            let ok = go(ops, windows, done, point, &s);
            done[i] = false;
            if ok {
                return true;
            }
        }
        false
    }
    go(
        &ops,
        &windows,
        &mut vec![false; ops.len()],
        0,
        &ModelState::default(),
    )
}

/// Changes one ok output so the observable result differs.
fn mutate(out: &Output, pick: u64) -> Output {
    match out {
        Output::Allocate(AllocateOutput::Granted {
            counted_cores,
            allocated_cores,
        }) => match pick % 3 {
            0 => Output::granted(*counted_cores + 1, *allocated_cores + 1),
            1 => Output::granted(*counted_cores, *allocated_cores + 1),
            _ => Output::rejected(),
        },
        Output::Allocate(AllocateOutput::Rejected { .. }) => Output::granted(4, 16),
        Output::Release(r) => Output::released(!r.released),
        Output::Check(c) => Output::check(!c.valid),
        Output::Usage(u) => {
            let mut nodes = u.nodes.clone();
            if pick % 2 == 0 && !nodes.is_empty() {
                let k = nodes.keys().next().cloned().unwrap_or_default();
                nodes.remove(&k);
            } else {
                *nodes.entry("app-0".into()).or_insert(0) += 1;
            }
            Output::Usage(crate::history::UsageOutput {
                allocated_cores: nodes.values().map(|&c| u64::from(c)).sum(),
                nodes,
            })
        }
    }
}

fn mutate_one(h: &History, which: usize, pick: u64) -> Option<History> {
    let oks: Vec<usize> = h
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.value, crate::history::Value::Output(_)))
        .map(|(i, _)| i)
        .collect();
    let &i = oks.get(which % oks.len().max(1))?;
    let mut events = h.events.clone();
    if let crate::history::Value::Output(out) = &events[i].value {
        events[i].value = crate::history::Value::Output(mutate(out, pick));
    }
    Some(History::from_events(events).unwrap())
}

fn plan_strategy(
    max_ops: usize,
    procs: usize,
    nodes: usize,
    window: u64,
    faults: bool,
) -> impl Strategy<Value = Vec<Planned>> {
    (any::<u64>(), 1..=max_ops)
        .prop_map(move |(seed, n)| random_plan(&mut Rng(seed), n, procs, nodes, window, faults))
}

proptest! {
    // No regression files: a failure prints its minimal input, to be turned into a test.
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A sequential execution of the model, with invocations and completions shifted so
    /// operations overlap (keeping the execution order a valid linearization), some
    /// completions turned into info/fail/missing, is accepted.
    #[test]
    fn generated_valid_histories_pass(
        plan in plan_strategy(60, 6, 4, 4, true),
        horizon in prop_oneof![Just(None), Just(Some(0))],
    ) {
        // Info writes of the plan take effect before their completion, so within any
        // horizon.
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let options = LinearizabilityOptions { info_horizon_ns: horizon, ..Default::default() };
        let v = check_linearizable(&h.ops, &LICENSE, &options);
        prop_assert_eq!(v.result, LinearizabilityResult::Linearizable, "{:#?}", v);
        // The lazy pass alone finds it too.
        let v = check_with_first_pass(&h.ops, &LICENSE, &options, 0);
        prop_assert_eq!(v.result, LinearizabilityResult::Linearizable, "{:#?}", v);
    }

    /// Without overlap the only order is the real-time order, so any change of an
    /// observable result must be rejected.
    #[test]
    fn mutated_sequential_histories_fail(
        plan in plan_strategy(40, 3, 3, 0, false),
        which in any::<usize>(),
        pick in any::<u64>(),
    ) {
        let plan: Vec<Planned> = plan
            .into_iter()
            .map(|p| Planned { before: 0, after: 0, ..p })
            .collect();
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        prop_assert!(check(&h).valid);
        let m = mutate_one(&h, which, pick).unwrap();
        let v = check(&m);
        prop_assert_eq!(v.result, LinearizabilityResult::NotLinearizable, "{:#?}", v);
        prop_assert!(v.counterexample.is_some());
    }

    /// On small concurrent histories (with info, fail and missing completions), mutated or
    /// not, the checker agrees with a brute-force search over all orders.
    #[test]
    fn agrees_with_brute_force_on_small_histories(
        plan in plan_strategy(7, 4, 2, 3, true),
        mutate_it in any::<bool>(),
        which in any::<usize>(),
        pick in any::<u64>(),
        horizon in prop_oneof![Just(None), Just(Some(0)), Just(Some(1_500)), Just(Some(4_000))],
    ) {
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let h = if mutate_it { mutate_one(&h, which, pick).unwrap_or(h) } else { h };
        let options = LinearizabilityOptions { info_horizon_ns: horizon, ..Default::default() };
        let expected = oracle(&h, horizon);
        // The default, the eager pass alone, the lazy pass alone.
        for first_pass in [options.step_budget / 4, options.step_budget, 0] {
            let v = check_with_first_pass(&h.ops, &LICENSE, &options, first_pass);
            prop_assert_ne!(v.result, LinearizabilityResult::Unknown);
            prop_assert_eq!(v.valid, expected, "first pass {}: {:#?}", first_pass, h.ops);
        }
    }
}

/// The same agreement on a fixed set of slightly larger histories (3 to 8 operations),
/// for both passes alone and under every horizon.
#[test]
fn agrees_with_brute_force_on_seeded_histories() {
    let (mut valid, mut invalid) = (0, 0);
    for seed in 0..1_500u64 {
        let mut rng = Rng(seed);
        let n = 3 + (seed % 6) as usize;
        let plan = random_plan(&mut rng, n, 4, 2 + (seed % 2) as usize, 3, true);
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let h = if seed % 2 == 0 {
            mutate_one(&h, rng.next() as usize, rng.next()).unwrap_or(h)
        } else {
            h
        };
        for horizon in [None, Some(0), Some(1_500), Some(4_000)] {
            let expected = oracle(&h, horizon);
            if expected {
                valid += 1
            } else {
                invalid += 1
            }
            let options = LinearizabilityOptions {
                info_horizon_ns: horizon,
                ..Default::default()
            };
            for first_pass in [u64::MAX, 0] {
                let v = check_with_first_pass(&h.ops, &LICENSE, &options, first_pass);
                assert_eq!(v.valid, expected, "seed {seed} {horizon:?} {first_pass}");
            }
        }
    }
    // Both kinds are well represented.
    assert!(
        valid > 1_500 && invalid > 1_500,
        "{valid} valid, {invalid} invalid"
    );
}

/// A larger generated history: the checker must stay fast.
#[test]
fn generated_history_of_2000_ops_checks_quickly() {
    let mut rng = Rng(11);
    let plan = random_plan(&mut rng, 2000, 8, 6, 4, true);
    let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
    let v = check(&h);
    assert!(v.valid, "{v:#?}");
    assert!(v.steps < 1_000_000, "{} steps", v.steps);
}

/// Timing: `cargo test --release -p licd-jepsen -- --ignored --nocapture perf`.
#[test]
#[ignore]
fn perf_linearizability_on_generated_histories() {
    // (operations, processes, overlap window in operation slots, faults)
    for &(n, procs, window, faults) in &[
        (5_000, 5, 3, true),
        (5_000, 10, 6, true),
        (10_000, 10, 6, true),
        (20_000, 10, 6, true),
        (5_000, 10, 6, false),
        (20_000, 10, 6, false),
    ] {
        let mut rng = Rng(n as u64 + procs as u64);
        let plan = random_plan(&mut rng, n, procs, 8, window, faults);
        let h = History::from_events(build_from_plan(&LICENSE, &plan)).unwrap();
        let max_conc = max_concurrency(&h);
        let v = check(&h);
        println!(
            "{n} ops, {procs} processes (max {max_conc} concurrent), {} ok, {} info \
             writes: valid history: {:?} in {:.1} ms, {} steps, {} memo entries",
            v.ok_ops, v.info_writes, v.result, v.elapsed_ms, v.steps, v.memo_entries
        );
        assert!(v.valid);
        for at in [n / 10, n / 2] {
            let m = mutate_one(&h, at, 1).unwrap();
            let strict = check(&m);
            let horizon = check_linearizable(
                &m.ops,
                &LICENSE,
                &LinearizabilityOptions {
                    // five operation slots of the generator
                    info_horizon_ns: Some(5_000),
                    ..Default::default()
                },
            );
            let changed = h
                .events
                .iter()
                .zip(&m.events)
                .find(|(a, b)| a != b)
                .map(|(a, _)| a.index);
            let stuck = |v: &LinearizabilityVerdict| {
                v.counterexample
                    .as_ref()
                    .and_then(|c| c.stuck.complete_index)
            };
            println!(
                "    event {changed:?} (ok op #{at}) mutated: strict {:?} in {:.1} ms ({} \
                 steps, stuck at {:?}); with horizon {:?} in {:.1} ms ({} steps, stuck at \
                 {:?})",
                strict.result,
                strict.elapsed_ms,
                strict.steps,
                stuck(&strict),
                horizon.result,
                horizon.elapsed_ms,
                horizon.steps,
                stuck(&horizon),
            );
        }
    }
}

fn max_concurrency(h: &History) -> usize {
    let mut open = 0usize;
    let mut max = 0;
    let mut pending = std::collections::HashSet::new();
    for e in &h.events {
        if e.kind == crate::history::EventKind::Invoke {
            pending.insert(e.process.clone());
            open += 1;
            max = max.max(open);
        } else if pending.remove(&e.process) {
            open -= 1;
        }
    }
    max
}
