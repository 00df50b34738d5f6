//! The linearizability checker on generated histories: valid by construction, mutated
//! into invalid ones, compared with a brute-force search, and timed.
//!
//! The hand-written histories, each with its expected verdict, are data:
//! `testdata/linearizable/` (see `checker::cases`).

use proptest::prelude::*;

use super::*;
use crate::checker::test_support::*;
use crate::checker::{ModelState, output_matches};
use crate::history::{AllocateOutput, History, Operation, Outcome, Output};

fn check(h: &History) -> LinearizabilityVerdict {
    check_linearizable(&h.ops, &LICENSE, &LinearizabilityOptions::default())
}

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
        // Generated histories have no lease operations.
        Output::Lease(..) => unreachable!("no lease operations in generated histories"),
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
