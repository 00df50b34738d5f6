use super::*;

#[test]
fn the_bound_adds_one_term_per_further_change_of_leader() {
    let c = LeaseConfig::DEFAULT;
    // 3 s lease: max(5000, 187) = 5000; 3000 + 5000 + 500 + 500.
    assert_eq!(c.bound_ms(3_000, 0), 9_000);
    // Each change of leader adds the election's time without a leader (2 × 500 ms), each
    // after the first also a checkpoint interval and the new leader's grace (5000 + 500).
    assert_eq!(c.bound_ms(3_000, 1), 9_000 + 1_000);
    assert_eq!(c.bound_ms(3_000, 3), 9_000 + 2 * 5_500 + 3 * 1_000);
    // A long lease: its sixteenth outweighs the checkpoint interval.
    assert_eq!(c.bound_ms(160_000, 0), 160_000 + 10_000 + 500 + 500);
}

/// A grant with `remaining_ms`, then an `ended` answer, for server `a` in one process.
fn promise_then(ended: &str, invoke_ms: u64, complete_ms: u64) -> History {
    let ms = 1_000_000;
    let text = format!(
        r#"{{"index": 1, "time_ns": {}, "process": "s0", "type": "invoke", "f": "lease-allocate", "value": {{"node": "a", "cores": 4, "ttl_ms": 3000}}}}
{{"index": 2, "time_ns": {}, "process": "s0", "type": "ok", "f": "lease-allocate", "value": {{"outcome": "held", "remaining_ms": 3000, "counted_cores": 4, "term": 2}}}}
{{"index": 3, "time_ns": {}, "process": "s0", "type": "invoke", "f": "heartbeat", "value": {{"node": "a"}}}}
{{"index": 4, "time_ns": {}, "process": "s0", "type": "ok", "f": "heartbeat", "value": {{"outcome": "{ended}", "leader": 1, "term": 2}}}}"#,
        1_000 * ms,
        1_010 * ms,
        invoke_ms * ms,
        complete_ms * ms
    );
    History::parse(&text).unwrap()
}

#[test]
fn an_ended_answer_inside_the_promise_is_flagged_and_one_after_it_is_not() {
    let c = LeaseConfig::DEFAULT;
    for ended in [NOT_ALLOCATED, LEASE_EXPIRED] {
        let v = check_lease(&promise_then(ended, 2_000, 2_100), &c);
        assert!(!v.valid, "{ended}");
        assert_eq!(v.violations[0].kind, "lease-ended-early");
        // The promise runs from the grant's invocation (1 s) for 3 s: over at 4 s.
        assert!(check_lease(&promise_then(ended, 2_000, 4_000), &c).valid);
        assert!(check_lease(&promise_then(ended, 3_990, 4_001), &c).valid);
    }
    // An answer concurrent with the promise's own operation cannot break it.
    assert!(check_lease(&promise_then(NOT_ALLOCATED, 1_010, 1_020), &c).valid);
}

#[test]
fn a_history_without_lease_operations_is_trivially_valid() {
    let v = check_lease(&History::parse("").unwrap(), &LeaseConfig::DEFAULT);
    assert!(v.valid);
    assert_eq!((v.servers, v.promises, v.deaths), (0, 0, 0));
    assert_eq!(v.longest_held_after_death, None);
}
