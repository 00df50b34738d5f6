//! The rules of the license state machine, one test (or a few) per rule, and property tests
//! over random command sequences.
//!
//! Times in the unit tests are small numbers of milliseconds; the sample license is valid
//! until 1 000 000 000, so it only expires where a test builds a shorter one.

use super::*;
use crate::codec::{decode, encode};
use crate::dedup::{DEDUP_MIN_KEPT, DEDUP_WINDOW_MS};
use crate::license::tests::sample;
use crate::query::{CheckResult, LicenseSummary, NodeUsage, Usage};
use crate::types::{Cores, LeaseTtl, MacAddr, RequestId};

/// The time most tests install the license at.
const T0: u64 = 10_000;
/// The lease most tests allocate with: one minute.
const TTL: u64 = 60_000;

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn lid(id: &str) -> LicenseId {
    LicenseId::new(id).unwrap()
}

fn rid(id: &str) -> RequestId {
    RequestId::new(id).unwrap()
}

/// `02:00:00:00:00:<last>`; the sample license allows 1, 2 and 3.
fn mac(last: u8) -> MacAddr {
    MacAddr::from_bytes([2, 0, 0, 0, 0, last])
}

/// The sample license under another id.
fn license(id: &str) -> License {
    License {
        id: lid(id),
        ..sample()
    }
}

/// The sample license, expiring at `at`.
fn expiring_at(at: u64) -> License {
    License {
        expires_at: Some(Timestamp(at)),
        ..sample()
    }
}

/// An allocation request from the only license, leased for [`TTL`].
fn alloc(node_name: &str, mac_last: u8, cores: u32) -> Allocate {
    Allocate {
        node: node(node_name),
        license: None,
        mac: mac(mac_last),
        cores: Cores::new(cores).unwrap(),
        lease_ttl: LeaseTtl::from_millis(TTL).unwrap(),
    }
}

fn allocate(node_name: &str, mac_last: u8, cores: u32) -> Command {
    Command::Allocate(alloc(node_name, mac_last, cores))
}

fn allocate_on(license: &str, node_name: &str, mac_last: u8, cores: u32) -> Command {
    Command::Allocate(Allocate {
        license: Some(lid(license)),
        ..alloc(node_name, mac_last, cores)
    })
}

fn allocate_for(node_name: &str, mac_last: u8, cores: u32, ttl: u64) -> Command {
    Command::Allocate(Allocate {
        lease_ttl: LeaseTtl::from_millis(ttl).unwrap(),
        ..alloc(node_name, mac_last, cores)
    })
}

fn install(license: License) -> Command {
    Command::InstallLicense(license)
}

fn heartbeat(node_name: &str) -> Command {
    Command::Heartbeat {
        node: node(node_name),
    }
}

fn release(node_name: &str) -> Command {
    Command::Release {
        node: node(node_name),
    }
}

fn remove(license: &str) -> Command {
    Command::RemoveLicense {
        license: lid(license),
    }
}

fn granted(response: Response) -> Grant {
    match response {
        Ok(Outcome::Allocated(grant)) => grant,
        other => panic!("expected an allocation, got {other:?}"),
    }
}

fn renewed(response: Response) -> Grant {
    match response {
        Ok(Outcome::Renewed(grant)) => grant,
        other => panic!("expected a renewal, got {other:?}"),
    }
}

fn rejected(response: Response) -> Rejection {
    match response {
        Err(rejection) => rejection,
        Ok(outcome) => panic!("expected a rejection, got {outcome:?}"),
    }
}

fn installed(license: &str, replaced: bool, dropped: Vec<DroppedAllocation>) -> Response {
    Ok(Outcome::LicenseInstalled {
        license: lid(license),
        replaced,
        unchanged: false,
        dropped,
    })
}

fn dropped(node_name: &str, code: Code) -> DroppedAllocation {
    DroppedAllocation {
        node: node(node_name),
        code,
    }
}

/// Asserts that `after` is `before` except for the exactly-once table, which remembers the
/// refused request (a rejection changes nothing but the clock, which these tests keep still).
fn assert_unchanged_but_remembered(before: &LicenseState, after: &LicenseState) {
    assert_eq!(
        after.remembered_requests(),
        before.remembered_requests() + 1
    );
    let mut after = after.clone();
    after.dedup = before.dedup.clone();
    assert_eq!(&after, before);
}

/// A state machine under test that numbers its request ids itself.
struct Sm {
    state: LicenseState,
    requests: u32,
}

impl Sm {
    fn new() -> Self {
        Sm {
            state: LicenseState::new(),
            requests: 0,
        }
    }

    /// A state with the sample license installed at [`T0`].
    fn licensed() -> Self {
        let mut sm = Sm::new();
        assert_eq!(
            sm.apply(T0, install(sample())),
            installed("lic-1", false, vec![])
        );
        sm
    }

    /// Applies `command` at `time` under a fresh request id.
    fn apply(&mut self, time: u64, command: Command) -> Response {
        self.requests += 1;
        let id = format!("req-{}", self.requests);
        self.apply_as(&id, time, command)
    }

    /// Applies `command` at `time` under the request id `id`.
    fn apply_as(&mut self, id: &str, time: u64, command: Command) -> Response {
        self.state.apply(&Request {
            time: Timestamp(time),
            request_id: rid(id),
            command,
        })
    }

    fn allocation(&self, node_name: &str) -> Option<&Allocation> {
        self.state.allocations().get(&node(node_name))
    }

    fn counted(&self, license: &str) -> u64 {
        self.state.counted_cores(&lid(license))
    }

    fn nodes(&self) -> Vec<&str> {
        self.state
            .allocations()
            .keys()
            .map(NodeName::as_str)
            .collect()
    }
}

// Rule 1: the cluster clock is max(previous clock, entry time).

#[test]
fn the_cluster_clock_is_the_latest_entry_time_and_never_goes_back() {
    let mut sm = Sm::new();
    assert_eq!(sm.state.clock(), Timestamp(0));
    sm.apply(50_000, install(sample())).unwrap();
    assert_eq!(sm.state.clock(), Timestamp(50_000));

    // An entry stamped earlier (a leader whose wall clock is behind) leaves the clock alone,
    // and its lease is measured from the cluster clock, not from the entry's time.
    let grant = granted(sm.apply(20_000, allocate("a", 1, 6)));
    assert_eq!(sm.state.clock(), Timestamp(50_000));
    assert_eq!(grant.allocation.allocated_at, Timestamp(50_000));
    assert_eq!(grant.allocation.lease_expires_at, Timestamp(50_000 + TTL));

    // A heartbeat stamped earlier renews from the cluster clock too.
    assert_eq!(
        sm.apply(80_000, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(sm.state.clock(), Timestamp(80_000));
    let renewal = renewed(sm.apply(60_000, heartbeat("a")));
    assert_eq!(renewal.allocation.lease_expires_at, Timestamp(80_000 + TTL));
    assert_eq!(sm.state.clock(), Timestamp(80_000));

    // An early tick moves nothing and ends nothing.
    assert_eq!(
        sm.apply(0, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(sm.state.clock(), Timestamp(80_000));
    assert!(sm.allocation("a").is_some());

    // A refused entry still advances the clock.
    let refusal = rejected(sm.apply(90_000, heartbeat("nobody")));
    assert_eq!(refusal.code, Code::NotAllocated);
    assert_eq!(sm.state.clock(), Timestamp(90_000));
}

// Rule 2: a node counts max(cores, min_cores_per_node).

#[test]
fn a_node_counts_at_least_min_cores_per_node() {
    let mut sm = Sm::licensed();
    let small = granted(sm.apply(T0, allocate("small", 1, 1)));
    assert_eq!(small.allocation.cores.get(), 1);
    assert_eq!(small.allocation.counted_cores, 4);
    assert_eq!(small.allocated_cores, 4);
    assert_eq!(small.licensed_cores, 16);

    let exact = granted(sm.apply(T0, allocate("exact", 2, 4)));
    assert_eq!(exact.allocation.counted_cores, 4);
    assert_eq!(exact.allocated_cores, 8);

    let big = granted(sm.apply(T0, allocate("big", 3, 7)));
    assert_eq!(big.allocation.counted_cores, 7);
    assert_eq!(big.allocated_cores, 15);
    assert_eq!(sm.counted("lic-1"), 15);
}

// Rule 3: an allocation over max_cores is CPU_LIMIT_EXHAUSTED, with figures.

#[test]
fn allocating_beyond_max_cores_is_cpu_limit_exhausted_with_figures() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    granted(sm.apply(T0, allocate("b", 2, 6)));

    let before = sm.state.clone();
    let refusal = rejected(sm.apply(T0, allocate("c", 3, 5)));
    assert_eq!(refusal.code, Code::CpuLimitExhausted);
    assert_eq!(
        refusal.message,
        "CPU limit exhausted. Can't allocate more CPUs."
    );
    assert_eq!(
        refusal.figures,
        Some(CoreFigures {
            requested: 5,
            available: 4,
            licensed: 16
        })
    );
    assert_unchanged_but_remembered(&before, &sm.state);

    // Exactly filling the license fits: one core counts the minimum of four.
    let fill = granted(sm.apply(T0, allocate("c", 3, 1)));
    assert_eq!(fill.allocated_cores, 16);

    // The figures report counted cores: one core asks for four, and nothing is left.
    let before = sm.state.clone();
    let refusal = rejected(sm.apply(T0, allocate("d", 1, 1)));
    assert_eq!(
        refusal,
        Rejection {
            code: Code::CpuLimitExhausted,
            message: "CPU limit exhausted. Can't allocate more CPUs.".into(),
            figures: Some(CoreFigures {
                requested: 4,
                available: 0,
                licensed: 16
            }),
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);
}

#[test]
fn reallocating_beyond_max_cores_keeps_the_old_allocation() {
    let mut sm = Sm::licensed();
    let a = granted(sm.apply(T0, allocate("a", 1, 6)));
    granted(sm.apply(T0, allocate("b", 2, 6)));
    granted(sm.apply(T0, allocate("c", 3, 1)));

    // `available` leaves out the server's own allocation: 16 - (6 + 4).
    let before = sm.state.clone();
    let refusal = rejected(sm.apply(T0 + 1_000, allocate("a", 1, 11)));
    assert_eq!(refusal.code, Code::CpuLimitExhausted);
    assert_eq!(
        refusal.figures,
        Some(CoreFigures {
            requested: 11,
            available: 6,
            licensed: 16
        })
    );
    assert_eq!(sm.allocation("a"), Some(&a.allocation));
    assert_eq!(sm.counted("lic-1"), 16);
    let mut expected = before;
    expected.clock = Timestamp(T0 + 1_000);
    assert_unchanged_but_remembered(&expected, &sm.state);
}

// Rule 4: a MAC outside allowed_macs is INVALID_MULTI_SERVER_LICENSE.

#[test]
fn a_mac_outside_the_license_is_invalid_multi_server_license() {
    let mut sm = Sm::licensed();
    let a = granted(sm.apply(T0, allocate("a", 1, 6)));
    let expected = Rejection {
        code: Code::InvalidMultiServerLicense,
        message: "Invalid license for multi-server environment setup.".into(),
        figures: None,
    };

    let before = sm.state.clone();
    assert_eq!(rejected(sm.apply(T0, allocate("b", 9, 4))), expected);
    assert_unchanged_but_remembered(&before, &sm.state);

    // A known server asking again with a foreign MAC keeps what it holds.
    let before = sm.state.clone();
    assert_eq!(rejected(sm.apply(T0, allocate("a", 9, 4))), expected);
    assert_eq!(sm.allocation("a"), Some(&a.allocation));
    assert_unchanged_but_remembered(&before, &sm.state);
}

// Rule 5: which license an allocation uses, and when there is none to use.

#[test]
fn an_expired_license_refuses_allocations() {
    let mut sm = Sm::new();
    sm.apply(T0, install(expiring_at(100_000))).unwrap();
    granted(sm.apply(99_999, allocate("a", 1, 4)));
    let before = {
        let mut s = sm.state.clone();
        s.clock = Timestamp(100_000);
        s
    };
    assert_eq!(
        rejected(sm.apply(100_000, allocate("b", 2, 4))),
        Rejection {
            code: Code::LicenseExpired,
            message: "The license has expired.".into(),
            figures: None
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);
}

#[test]
fn an_expired_license_refuses_heartbeats() {
    let mut sm = Sm::new();
    sm.apply(T0, install(expiring_at(100_000))).unwrap();
    let a = granted(sm.apply(50_000, allocate_for("a", 1, 4, 3_600_000)));
    renewed(sm.apply(99_999, heartbeat("a")));
    let before = sm.state.clone();
    assert_eq!(
        rejected(sm.apply(100_000, heartbeat("a"))),
        Rejection::new(Code::LicenseExpired)
    );
    // The lease is neither renewed nor ended by the refusal.
    let held = sm.allocation("a").unwrap();
    assert_eq!(held.lease_expires_at, Timestamp(99_999 + 3_600_000));
    assert_eq!(held.allocated_at, a.allocation.allocated_at);
    let mut expected = before;
    expected.clock = Timestamp(100_000);
    assert_unchanged_but_remembered(&expected, &sm.state);
}

#[test]
fn installing_an_expired_license_is_refused() {
    let mut sm = Sm::new();
    sm.apply(100_000, Command::Tick).unwrap();
    assert_eq!(
        rejected(sm.apply(100_000, install(expiring_at(100_000)))),
        Rejection::new(Code::LicenseExpired)
    );
    assert!(sm.state.licenses().is_empty());
    assert_eq!(
        sm.apply(100_000, install(expiring_at(100_001))),
        installed("lic-1", false, vec![])
    );
}

#[test]
fn an_unknown_license_id_is_license_not_found() {
    let mut sm = Sm::licensed();
    let before = sm.state.clone();
    assert_eq!(
        rejected(sm.apply(T0, allocate_on("lic-9", "a", 1, 4))),
        Rejection {
            code: Code::LicenseNotFound,
            message: "No license with this id is installed.".into(),
            figures: None
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);
}

#[test]
fn allocating_with_no_license_installed_is_no_license() {
    let mut sm = Sm::new();
    assert_eq!(
        rejected(sm.apply(T0, allocate("a", 1, 4))),
        Rejection {
            code: Code::NoLicense,
            message: "No license is installed.".into(),
            figures: None
        }
    );
    // Naming a license that is not there is not found, whether or not any is installed.
    assert_eq!(
        rejected(sm.apply(T0, allocate_on("lic-1", "a", 1, 4))).code,
        Code::LicenseNotFound
    );
    assert!(sm.state.allocations().is_empty());
}

#[test]
fn omitting_the_license_with_two_installed_is_license_required() {
    let mut sm = Sm::licensed();
    sm.apply(T0, install(license("lic-2"))).unwrap();
    let before = sm.state.clone();
    assert_eq!(
        rejected(sm.apply(T0, allocate("a", 1, 4))),
        Rejection {
            code: Code::LicenseRequired,
            message: "Several licenses are installed: the request must name one.".into(),
            figures: None
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);

    let grant = granted(sm.apply(T0, allocate_on("lic-2", "a", 1, 4)));
    assert_eq!(grant.allocation.license, lid("lic-2"));
    assert_eq!(sm.counted("lic-1"), 0);
    assert_eq!(sm.counted("lic-2"), 4);
}

#[test]
fn omitting_the_license_with_exactly_one_installed_uses_it() {
    let mut sm = Sm::licensed();
    let grant = granted(sm.apply(T0, allocate("a", 1, 4)));
    assert_eq!(grant.allocation.license, lid("lic-1"));
    assert_eq!(grant.licensed_cores, 16);

    // With a second license and the first one removed again, the second is the only one.
    sm.apply(T0, install(license("lic-2"))).unwrap();
    sm.apply(T0, remove("lic-1")).unwrap();
    let grant = granted(sm.apply(T0, allocate("b", 2, 4)));
    assert_eq!(grant.allocation.license, lid("lic-2"));
}

// Rule 6: re-allocating a server replaces its allocation.

#[test]
fn reallocating_a_node_replaces_its_allocation() {
    let mut sm = Sm::licensed();
    let first = granted(sm.apply(T0, allocate("a", 1, 6)));
    assert!(!first.replaced);
    assert_eq!(first.allocated_cores, 6);

    let second = granted(sm.apply(T0 + 5_000, allocate("a", 2, 12)));
    assert!(second.replaced);
    // 12, not 6 + 12: the old allocation no longer counts.
    assert_eq!(second.allocated_cores, 12);
    assert_eq!(sm.counted("lic-1"), 12);
    assert_eq!(sm.nodes(), ["a"]);
    assert_eq!(
        second.allocation,
        Allocation {
            license: lid("lic-1"),
            mac: mac(2),
            cores: Cores::new(12).unwrap(),
            counted_cores: 12,
            lease_ttl: LeaseTtl::from_millis(TTL).unwrap(),
            allocated_at: Timestamp(T0 + 5_000),
            lease_expires_at: Timestamp(T0 + 5_000 + TTL),
        }
    );
    // Only the new lease is indexed: the old expiry frees nothing.
    assert_eq!(
        sm.apply(T0 + TTL, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(sm.counted("lic-1"), 12);

    // Re-allocating into a full license fits when only the server's own cores fill it.
    let third = granted(sm.apply(T0 + TTL, allocate("a", 2, 16)));
    assert!(third.replaced);
    assert_eq!(third.allocated_cores, 16);
}

#[test]
fn moving_a_node_to_another_license_moves_its_cores() {
    let mut sm = Sm::licensed();
    sm.apply(T0, install(license("lic-2"))).unwrap();
    granted(sm.apply(T0, allocate_on("lic-1", "a", 1, 6)));
    granted(sm.apply(T0, allocate_on("lic-1", "b", 2, 4)));
    assert_eq!(sm.counted("lic-1"), 10);

    let moved = granted(sm.apply(T0, allocate_on("lic-2", "a", 1, 5)));
    assert!(moved.replaced);
    assert_eq!(moved.allocation.license, lid("lic-2"));
    assert_eq!(moved.allocated_cores, 5);
    assert_eq!(sm.counted("lic-1"), 4);
    assert_eq!(sm.counted("lic-2"), 5);
    assert_eq!(sm.nodes(), ["a", "b"]);
}

// Rule 7: leases end at their expiry, heartbeats renew live leases.

#[test]
fn a_lease_ends_at_its_expiry_time_on_a_tick() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    granted(sm.apply(T0 + 1, allocate("b", 2, 4)));

    assert_eq!(
        sm.apply(T0 + TTL - 1, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(sm.nodes(), ["a", "b"]);
    assert_eq!(sm.counted("lic-1"), 10);

    assert_eq!(
        sm.apply(T0 + TTL, Command::Tick),
        Ok(Outcome::Ticked {
            expired: vec![node("a")]
        })
    );
    assert_eq!(sm.nodes(), ["b"]);
    assert_eq!(sm.counted("lic-1"), 4);

    assert_eq!(
        sm.apply(T0 + TTL + 1, Command::Tick),
        Ok(Outcome::Ticked {
            expired: vec![node("b")]
        })
    );
    assert!(sm.state.allocations().is_empty());
    assert_eq!(sm.counted("lic-1"), 0);
    assert!(sm.state.lease_order.is_empty());
    assert!(sm.state.counted.is_empty());
}

#[test]
fn any_later_entry_frees_an_expired_lease() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 16)));
    // The license is full until the lease ends; the entry that reaches its expiry frees the
    // cores before its own command runs.
    let grant = granted(sm.apply(T0 + TTL, allocate("b", 2, 16)));
    assert!(!grant.replaced);
    assert_eq!(grant.allocated_cores, 16);
    assert_eq!(sm.nodes(), ["b"]);

    // Even a refused entry ends the leases it reaches.
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 16)));
    assert_eq!(
        rejected(sm.apply(T0 + TTL, allocate("c", 9, 4))).code,
        Code::InvalidMultiServerLicense
    );
    assert!(sm.state.allocations().is_empty());
    assert_eq!(sm.counted("lic-1"), 0);
}

#[test]
fn a_heartbeat_renews_a_live_lease_from_the_cluster_clock() {
    let mut sm = Sm::licensed();
    let a = granted(sm.apply(T0, allocate("a", 1, 1)));
    granted(sm.apply(T0, allocate("b", 2, 6)));

    let renewal = renewed(sm.apply(T0 + 30_000, heartbeat("a")));
    assert_eq!(
        renewal,
        Grant {
            node: node("a"),
            allocation: Allocation {
                lease_expires_at: Timestamp(T0 + 30_000 + TTL),
                ..a.allocation.clone()
            },
            replaced: false,
            allocated_cores: 10,
            licensed_cores: 16,
        }
    );
    assert_eq!(sm.allocation("a"), Some(&renewal.allocation));

    // The renewed lease outlives the original expiry and ends at the new one.
    assert_eq!(
        sm.apply(T0 + TTL, Command::Tick),
        Ok(Outcome::Ticked {
            expired: vec![node("b")]
        })
    );
    assert_eq!(
        sm.apply(T0 + 30_000 + TTL - 1, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(
        sm.apply(T0 + 30_000 + TTL, Command::Tick),
        Ok(Outcome::Ticked {
            expired: vec![node("a")]
        })
    );
}

#[test]
fn a_heartbeat_without_a_live_lease_is_not_allocated() {
    let mut sm = Sm::licensed();
    let not_allocated = Rejection {
        code: Code::NotAllocated,
        message: "The server holds no core allocation.".into(),
        figures: None,
    };
    assert_eq!(rejected(sm.apply(T0, heartbeat("a"))), not_allocated);

    granted(sm.apply(T0, allocate("a", 1, 6)));
    // The heartbeat arrives in the entry that reaches the expiry: too late.
    assert_eq!(rejected(sm.apply(T0 + TTL, heartbeat("a"))), not_allocated);
    assert!(sm.state.allocations().is_empty());
    assert_eq!(sm.counted("lic-1"), 0);
}

// Rule 8: release.

#[test]
fn release_frees_the_cores() {
    let mut sm = Sm::licensed();
    let a = granted(sm.apply(T0, allocate("a", 1, 6)));
    granted(sm.apply(T0, allocate("b", 2, 4)));
    assert_eq!(
        sm.apply(T0 + 1, release("a")),
        Ok(Outcome::Released {
            node: node("a"),
            freed: Some(a.allocation),
        })
    );
    assert_eq!(sm.nodes(), ["b"]);
    assert_eq!(sm.counted("lic-1"), 4);
    // The freed cores can be allocated again at once.
    assert_eq!(
        granted(sm.apply(T0 + 1, allocate("c", 3, 12))).allocated_cores,
        16
    );
}

#[test]
fn releasing_an_unallocated_node_succeeds_with_nothing_freed() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    let before = sm.state.clone();
    assert_eq!(
        sm.apply(T0, release("nobody")),
        Ok(Outcome::Released {
            node: node("nobody"),
            freed: None,
        })
    );
    assert_unchanged_but_remembered(&before, &sm.state);

    // Releasing twice (under two request ids) frees once.
    assert!(matches!(
        sm.apply(T0, release("a")),
        Ok(Outcome::Released { freed: Some(_), .. })
    ));
    assert_eq!(
        sm.apply(T0, release("a")),
        Ok(Outcome::Released {
            node: node("a"),
            freed: None,
        })
    );
    // Without any license it succeeds too.
    assert_eq!(
        Sm::new().apply(T0, release("a")),
        Ok(Outcome::Released {
            node: node("a"),
            freed: None,
        })
    );
}

// Rule 9: installing over an installed license.

#[test]
fn a_newer_issue_keeps_the_allocations_that_still_fit_oldest_first() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("c", 3, 5)));
    granted(sm.apply(T0 + 1_000, allocate("b", 2, 4)));
    granted(sm.apply(T0 + 2_000, allocate("a", 1, 6)));
    assert_eq!(sm.counted("lic-1"), 15);

    // Issue 2 drops MAC 2 and lowers the maximum to 10.
    let issue2 = License {
        serial: 2,
        max_cores: 10,
        allowed_macs: [mac(1), mac(3)].into(),
        ..sample()
    };
    // c, the oldest, is kept (5); b lost its MAC; a (6) no longer fits beside c, although by
    // name it would have come first.
    assert_eq!(
        sm.apply(T0 + 3_000, install(issue2.clone())),
        installed(
            "lic-1",
            true,
            vec![
                dropped("b", Code::InvalidMultiServerLicense),
                dropped("a", Code::CpuLimitExhausted),
            ]
        )
    );
    assert_eq!(sm.state.licenses().get(&lid("lic-1")), Some(&issue2));
    assert_eq!(sm.nodes(), ["c"]);
    assert_eq!(sm.counted("lic-1"), 5);
    let c = sm.allocation("c").unwrap();
    assert_eq!(c.allocated_at, Timestamp(T0));
    assert_eq!(c.lease_expires_at, Timestamp(T0 + TTL));
    let mut rebuilt = sm.state.clone();
    rebuilt.rebuild_indexes();
    assert_eq!(rebuilt, sm.state);
}

#[test]
fn a_reallocation_makes_an_allocation_the_youngest() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("x", 1, 6)));
    granted(sm.apply(T0 + 1_000, allocate("y", 2, 6)));
    // x allocates again: it is now younger than y. (A heartbeat would not change its age.)
    granted(sm.apply(T0 + 2_000, allocate("x", 1, 6)));
    renewed(sm.apply(T0 + 3_000, heartbeat("y")));
    let issue2 = License {
        serial: 2,
        max_cores: 8,
        ..sample()
    };
    assert_eq!(
        sm.apply(T0 + 4_000, install(issue2)),
        installed("lic-1", true, vec![dropped("x", Code::CpuLimitExhausted)])
    );
    assert_eq!(sm.nodes(), ["y"]);
}

#[test]
fn raising_the_minimum_per_node_drops_what_no_longer_fits() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 1)));
    granted(sm.apply(T0 + 1, allocate("b", 2, 1)));
    granted(sm.apply(T0 + 2, allocate("c", 3, 2)));
    assert_eq!(sm.counted("lic-1"), 12);

    let issue2 = License {
        serial: 2,
        min_cores_per_node: 6,
        ..sample()
    };
    assert_eq!(
        sm.apply(T0 + 3, install(issue2)),
        installed("lic-1", true, vec![dropped("c", Code::CpuLimitExhausted)])
    );
    // The kept servers count the new minimum.
    assert_eq!(sm.nodes(), ["a", "b"]);
    assert_eq!(sm.allocation("a").unwrap().counted_cores, 6);
    assert_eq!(sm.allocation("b").unwrap().counted_cores, 6);
    assert_eq!(sm.allocation("a").unwrap().cores.get(), 1);
    assert_eq!(sm.counted("lic-1"), 12);

    // Lowering it again frees cores for the kept servers.
    let issue3 = License {
        serial: 3,
        min_cores_per_node: 1,
        ..sample()
    };
    assert_eq!(
        sm.apply(T0 + 4, install(issue3)),
        installed("lic-1", true, vec![])
    );
    assert_eq!(sm.counted("lic-1"), 2);
}

#[test]
fn an_older_issue_is_license_outdated() {
    let mut sm = Sm::new();
    let issue2 = License {
        serial: 2,
        ..sample()
    };
    sm.apply(T0, install(issue2.clone())).unwrap();
    let before = sm.state.clone();
    assert_eq!(
        rejected(sm.apply(T0, install(sample()))),
        Rejection {
            code: Code::LicenseOutdated,
            message: "An issue of this license that is not older is installed.".into(),
            figures: None
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);

    // Same serial, issued earlier: older too.
    let earlier = License {
        serial: 2,
        issued_at: Timestamp(500),
        ..sample()
    };
    assert_eq!(
        rejected(sm.apply(T0, install(earlier))).code,
        Code::LicenseOutdated
    );
    assert_eq!(sm.state.licenses().get(&lid("lic-1")), Some(&issue2));

    // Same serial, issued later: newer.
    let later = License {
        serial: 2,
        issued_at: Timestamp(2_000),
        ..sample()
    };
    assert_eq!(
        sm.apply(T0, install(later.clone())),
        installed("lic-1", true, vec![])
    );
    assert_eq!(sm.state.licenses().get(&lid("lic-1")), Some(&later));
}

#[test]
fn same_version_different_content_is_license_conflict() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    let before = sm.state.clone();
    let rival = License {
        max_cores: 20,
        ..sample()
    };
    assert_eq!(
        rejected(sm.apply(T0, install(rival))),
        Rejection {
            code: Code::LicenseConflict,
            message: "A different license with the same id and serial is installed.".into(),
            figures: None
        }
    );
    assert_unchanged_but_remembered(&before, &sm.state);
    assert_eq!(sm.state.licenses().get(&lid("lic-1")), Some(&sample()));
}

#[test]
fn installing_the_identical_license_changes_nothing() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    let before = sm.state.clone();
    assert_eq!(
        sm.apply(T0, install(sample())),
        Ok(Outcome::LicenseInstalled {
            license: lid("lic-1"),
            replaced: false,
            unchanged: true,
            dropped: vec![],
        })
    );
    assert_unchanged_but_remembered(&before, &sm.state);
}

#[test]
fn an_inconsistent_license_is_invalid_license() {
    let mut sm = Sm::new();
    let zero = License {
        max_cores: 0,
        ..sample()
    };
    assert_eq!(
        rejected(sm.apply(T0, install(zero))),
        Rejection {
            code: Code::InvalidLicense,
            message: "invalid license: max_cores 0 is out of range 1..=1000000".into(),
            figures: None
        }
    );
    let mut no_macs = sample();
    no_macs.allowed_macs.clear();
    assert_eq!(
        rejected(sm.apply(T0, install(no_macs))).message,
        "invalid license: allowed_macs is empty: the license must name the servers it is bound to"
    );
    assert!(sm.state.licenses().is_empty());

    // An invalid newer issue does not replace a valid installed one.
    let mut sm = Sm::licensed();
    let bad_issue = License {
        serial: 2,
        min_cores_per_node: 17,
        ..sample()
    };
    assert_eq!(
        rejected(sm.apply(T0, install(bad_issue))).code,
        Code::InvalidLicense
    );
    assert_eq!(sm.state.licenses().get(&lid("lic-1")), Some(&sample()));
}

// Rule 10: removing a license.

#[test]
fn removing_a_license_releases_all_its_allocations() {
    let mut sm = Sm::licensed();
    sm.apply(T0, install(license("lic-2"))).unwrap();
    granted(sm.apply(T0, allocate_on("lic-1", "b", 2, 4)));
    granted(sm.apply(T0, allocate_on("lic-2", "c", 3, 5)));
    granted(sm.apply(T0, allocate_on("lic-1", "a", 1, 6)));

    assert_eq!(
        sm.apply(T0 + 1, remove("lic-1")),
        Ok(Outcome::LicenseRemoved {
            license: lid("lic-1"),
            released: vec![node("a"), node("b")],
        })
    );
    assert_eq!(
        sm.state.licenses().keys().collect::<Vec<_>>(),
        [&lid("lic-2")]
    );
    assert_eq!(sm.nodes(), ["c"]);
    assert_eq!(sm.counted("lic-1"), 0);
    assert_eq!(sm.counted("lic-2"), 5);
    let mut rebuilt = sm.state.clone();
    rebuilt.rebuild_indexes();
    assert_eq!(rebuilt, sm.state);
}

#[test]
fn removing_an_unknown_license_is_license_not_found() {
    let mut sm = Sm::licensed();
    let before = sm.state.clone();
    assert_eq!(
        rejected(sm.apply(T0, remove("lic-9"))),
        Rejection::new(Code::LicenseNotFound)
    );
    assert_unchanged_but_remembered(&before, &sm.state);
    // Removed once, gone: a second removal is not found either.
    sm.apply(T0, remove("lic-1")).unwrap();
    assert_eq!(
        rejected(sm.apply(T0, remove("lic-1"))).code,
        Code::LicenseNotFound
    );
}

// Rule 11: exactly-once request ids.

#[test]
fn a_repeated_request_id_returns_the_first_outcome_and_changes_nothing() {
    let mut sm = Sm::licensed();
    let first = sm.apply_as("alloc-a", T0, allocate("a", 1, 6));
    let grant = granted(first.clone());
    assert!(!grant.replaced);

    // The state moves on: a is released, b takes cores.
    sm.apply(T0 + 1_000, release("a")).unwrap();
    granted(sm.apply(T0 + 1_000, allocate("b", 2, 4)));

    let before = sm.state.clone();
    let retry = sm.apply_as("alloc-a", T0 + 2_000, allocate("a", 1, 6));
    assert_eq!(retry, first);
    assert!(sm.allocation("a").is_none());
    let mut expected = before;
    expected.clock = Timestamp(T0 + 2_000);
    assert_eq!(sm.state, expected);
}

#[test]
fn a_repeated_rejection_is_returned_again_even_when_it_would_now_succeed() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    granted(sm.apply(T0, allocate("b", 2, 6)));
    granted(sm.apply(T0, allocate("c", 3, 4)));
    let first = sm.apply_as("alloc-d", T0, allocate("d", 1, 5));
    assert_eq!(
        rejected(first.clone()).figures,
        Some(CoreFigures {
            requested: 5,
            available: 0,
            licensed: 16
        })
    );

    sm.apply(T0, release("a")).unwrap();
    sm.apply(T0, release("b")).unwrap();
    let before = sm.state.clone();
    assert_eq!(sm.apply_as("alloc-d", T0, allocate("d", 1, 5)), first);
    assert_eq!(sm.state, before);
    assert!(sm.allocation("d").is_none());
}

#[test]
fn reusing_a_request_id_for_another_command_is_request_id_reused() {
    let mut sm = Sm::licensed();
    let first = sm.apply_as("x", T0, allocate("a", 1, 6));
    granted(first.clone());
    let before = sm.state.clone();
    assert_eq!(
        sm.apply_as("x", T0, release("a")),
        Err(Rejection {
            code: Code::RequestIdReused,
            message: "The request id was already used for a different request.".into(),
            figures: None
        })
    );
    // A different allocation under the same id is another command too.
    assert_eq!(
        rejected(sm.apply_as("x", T0, allocate("a", 1, 7))).code,
        Code::RequestIdReused
    );
    // Nothing changed, not even the remembered outcome of the id.
    assert_eq!(sm.state, before);
    assert_eq!(sm.apply_as("x", T0, allocate("a", 1, 6)), first);
    // A tick under a used id is refused the same way.
    assert_eq!(
        rejected(sm.apply_as("x", T0, Command::Tick)).code,
        Code::RequestIdReused
    );
}

#[test]
fn a_remembered_request_id_ages_out_after_the_window_and_enough_newer_requests() {
    let mut sm = Sm::new();
    let start = 100_000;
    sm.apply_as("install", start, install(sample())).unwrap();
    let first = sm.apply_as("alloc-a", start, allocate("a", 1, 6));
    granted(first.clone());
    sm.apply_as("release-a", start + 1_000, release("a"))
        .unwrap();
    for _ in 0..DEDUP_MIN_KEPT {
        sm.apply(start + 2_000, release("b")).unwrap();
    }
    assert_eq!(sm.state.remembered_requests(), DEDUP_MIN_KEPT + 3);

    // Just inside the window the retry is still answered from memory.
    let retry = sm.apply_as("alloc-a", start + DEDUP_WINDOW_MS - 1, allocate("a", 1, 6));
    assert_eq!(retry, first);
    assert!(sm.allocation("a").is_none());
    assert_eq!(sm.state.remembered_requests(), DEDUP_MIN_KEPT + 3);

    // At the end of the window it is forgotten and applies anew.
    let now = start + DEDUP_WINDOW_MS;
    let fresh = granted(sm.apply_as("alloc-a", now, allocate("a", 1, 6)));
    assert_eq!(fresh.allocation.allocated_at, Timestamp(now));
    assert_eq!(fresh.allocation.lease_expires_at, Timestamp(now + TTL));
    assert_eq!(sm.allocation("a"), Some(&fresh.allocation));
    // "install" aged out with it, "release-a" is still remembered, "alloc-a" is new.
    assert_eq!(sm.state.remembered_requests(), DEDUP_MIN_KEPT + 2);
    assert!(sm.state.dedup.get(&rid("install")).is_none());
    assert!(sm.state.dedup.get(&rid("release-a")).is_some());
    assert_eq!(
        sm.state.dedup.get(&rid("alloc-a")).map(|a| a.at),
        Some(Timestamp(now))
    );

    // An aged-out id can also carry a different command now.
    assert_eq!(
        sm.apply_as("install", now, release("b")),
        Ok(Outcome::Released {
            node: node("b"),
            freed: None
        })
    );
}

#[test]
fn within_the_most_recent_requests_an_id_is_remembered_past_the_window() {
    let mut sm = Sm::licensed();
    let first = sm.apply_as("alloc-a", T0, allocate("a", 1, 6));
    granted(first.clone());
    sm.apply(T0 + 1_000, release("a")).unwrap();
    // Days later in cluster time, with few requests in between, the retry is still known.
    let later = T0 + 3 * 24 * 60 * 60 * 1_000;
    let before = sm.state.remembered_requests();
    assert_eq!(sm.apply_as("alloc-a", later, allocate("a", 1, 6)), first);
    assert!(sm.allocation("a").is_none());
    assert_eq!(sm.state.remembered_requests(), before);
}

/// Regression: a leader whose wall clock ran two hours ahead moved the cluster clock past the
/// window at once, every remembered id was forgotten, and a client's retry of a release that
/// had already applied released the server's next allocation.
#[test]
fn a_retry_across_a_forward_clock_jump_returns_the_first_outcome() {
    let mut sm = Sm::licensed();
    granted(sm.apply_as("alloc-a-1", T0, allocate("a", 1, 6)));
    let first = sm.apply_as("release-a", T0 + 1_000, release("a"));
    assert!(matches!(
        first,
        Ok(Outcome::Released { freed: Some(_), .. })
    ));
    // The next leader's clock is two hours ahead; another client allocates "a" again.
    let skewed = T0 + 2 * 60 * 60 * 1_000;
    let again = granted(sm.apply_as("alloc-a-2", skewed, allocate("a", 1, 6)));
    // The first client's retry of its release is answered from memory and frees nothing.
    let before = sm.state.clone();
    assert_eq!(sm.apply_as("release-a", skewed, release("a")), first);
    assert_eq!(sm.allocation("a"), Some(&again.allocation));
    assert_eq!(sm.state, before);
}

#[test]
fn ticks_are_not_remembered() {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 6)));
    let remembered = sm.state.remembered_requests();
    assert_eq!(
        sm.apply_as("tick", T0 + 1, Command::Tick),
        Ok(Outcome::Ticked { expired: vec![] })
    );
    assert_eq!(
        sm.apply_as("tick", T0 + TTL, Command::Tick),
        Ok(Outcome::Ticked {
            expired: vec![node("a")]
        })
    );
    assert_eq!(sm.state.remembered_requests(), remembered);
}

// Rule 12: the license check.

fn sample_summary() -> LicenseSummary {
    LicenseSummary {
        id: lid("lic-1"),
        customer: "Example Corp".into(),
        serial: 1,
        issued_at: Timestamp(1_000),
        expires_at: Some(Timestamp(1_000_000_000)),
        max_cores: 16,
        min_cores_per_node: 4,
        features: vec!["ocr".into()],
    }
}

/// The sample license with a (1 core, MAC 1, leased until T0 + TTL) and b (6 cores, MAC 2).
fn checked_state() -> Sm {
    let mut sm = Sm::licensed();
    granted(sm.apply(T0, allocate("a", 1, 1)));
    granted(sm.apply(T0, allocate("b", 2, 6)));
    sm
}

fn check_of_a(code: Code, checked_at: u64) -> CheckResult {
    CheckResult {
        node: node("a"),
        valid: code == Code::Valid,
        code,
        message: code.default_message().into(),
        license: Some(sample_summary()),
        counted_cores: Some(4),
        allocated_cores: Some(10),
        licensed_cores: Some(16),
        lease_expires_at: Some(Timestamp(T0 + TTL)),
        checked_at: Timestamp(checked_at),
    }
}

fn check_without_allocation(name: &str, code: Code, checked_at: u64) -> CheckResult {
    CheckResult {
        node: node(name),
        valid: false,
        code,
        message: code.default_message().into(),
        license: None,
        counted_cores: None,
        allocated_cores: None,
        licensed_cores: None,
        lease_expires_at: None,
        checked_at: Timestamp(checked_at),
    }
}

#[test]
fn check_of_a_live_allocation_is_valid() {
    let sm = checked_state();
    let result = sm.state.check(&node("a"), Some(mac(1)), Timestamp(30_000));
    assert_eq!(result, check_of_a(Code::Valid, 30_000));
    assert!(result.valid);
    assert_eq!(result.message, "The server is licensed.");
    assert_eq!(
        sm.state.check(&node("a"), None, Timestamp(T0 + TTL - 1)),
        check_of_a(Code::Valid, T0 + TTL - 1)
    );
}

#[test]
fn check_of_an_unallocated_node_is_not_allocated() {
    let sm = checked_state();
    for given in [None, Some(mac(3)), Some(mac(1))] {
        let result = sm.state.check(&node("c"), given, Timestamp(30_000));
        assert_eq!(
            result,
            check_without_allocation("c", Code::NotAllocated, 30_000),
            "{given:?}"
        );
        assert_eq!(result.message, "The server holds no core allocation.");
    }
}

#[test]
fn check_after_the_lease_passed_is_lease_expired_until_an_entry_ends_it() {
    let mut sm = checked_state();
    let result = sm
        .state
        .check(&node("a"), Some(mac(1)), Timestamp(T0 + TTL));
    assert_eq!(result, check_of_a(Code::LeaseExpired, T0 + TTL));
    assert_eq!(
        result.message,
        "The server's lease expired without a heartbeat."
    );
    // Once an entry reaches the expiry, the allocation is gone.
    sm.apply(T0 + TTL, Command::Tick).unwrap();
    assert_eq!(
        sm.state
            .check(&node("a"), Some(mac(1)), Timestamp(T0 + TTL)),
        check_without_allocation("a", Code::NotAllocated, T0 + TTL)
    );
}

#[test]
fn check_under_an_expired_license_is_license_expired() {
    let mut sm = Sm::new();
    sm.apply(T0, install(expiring_at(100_000))).unwrap();
    granted(sm.apply(50_000, allocate_for("a", 1, 4, 3_600_000)));
    let at = |code: Code, checked_at: u64| CheckResult {
        node: node("a"),
        valid: code == Code::Valid,
        code,
        message: code.default_message().into(),
        license: Some(LicenseSummary {
            expires_at: Some(Timestamp(100_000)),
            ..sample_summary()
        }),
        counted_cores: Some(4),
        allocated_cores: Some(4),
        licensed_cores: Some(16),
        lease_expires_at: Some(Timestamp(50_000 + 3_600_000)),
        checked_at: Timestamp(checked_at),
    };
    assert_eq!(
        sm.state.check(&node("a"), None, Timestamp(99_999)),
        at(Code::Valid, 99_999)
    );
    let result = sm.state.check(&node("a"), None, Timestamp(100_000));
    assert_eq!(result, at(Code::LicenseExpired, 100_000));
    assert_eq!(result.message, "The license has expired.");
}

#[test]
fn check_without_any_license_is_no_license() {
    let sm = Sm::new();
    for given in [None, Some(mac(1)), Some(mac(9))] {
        let result = sm.state.check(&node("a"), given, Timestamp(5));
        assert_eq!(
            result,
            check_without_allocation("a", Code::NoLicense, 5),
            "{given:?}"
        );
        assert_eq!(result.message, "No license is installed.");
    }
}

#[test]
fn check_with_a_foreign_mac_is_invalid_multi_server_license() {
    let sm = checked_state();
    // Allocated, but asked about with another MAC, even one the license allows.
    for other in [mac(2), mac(9)] {
        let result = sm.state.check(&node("a"), Some(other), Timestamp(30_000));
        assert_eq!(
            result,
            check_of_a(Code::InvalidMultiServerLicense, 30_000),
            "{other}"
        );
        assert_eq!(
            result.message,
            "Invalid license for multi-server environment setup."
        );
    }
    // Unallocated, with a MAC that no license allows.
    assert_eq!(
        sm.state.check(&node("c"), Some(mac(9)), Timestamp(30_000)),
        check_without_allocation("c", Code::InvalidMultiServerLicense, 30_000)
    );
}

#[test]
fn check_raises_now_to_the_cluster_clock() {
    let mut sm = checked_state();
    sm.apply(50_000, Command::Tick).unwrap();
    assert_eq!(
        sm.state.check(&node("a"), None, Timestamp(0)),
        check_of_a(Code::Valid, 50_000)
    );
    assert_eq!(
        sm.state.check(&node("c"), None, Timestamp(0)).checked_at,
        Timestamp(50_000)
    );

    // A caller whose clock is behind the cluster's sees the license expired all the same.
    let mut sm = Sm::new();
    sm.apply(T0, install(expiring_at(100_000))).unwrap();
    granted(sm.apply(50_000, allocate_for("a", 1, 4, 3_600_000)));
    sm.apply(100_000, Command::Tick).unwrap();
    let result = sm.state.check(&node("a"), None, Timestamp(60_000));
    assert_eq!(result.code, Code::LicenseExpired);
    assert_eq!(result.checked_at, Timestamp(100_000));
}

// Rule 13: usage.

#[test]
fn usage_reports_a_licenses_consumption() {
    let mut sm = Sm::licensed();
    sm.apply(T0, install(license("lic-2"))).unwrap();
    granted(sm.apply(T0, allocate_on("lic-1", "b", 2, 6)));
    granted(sm.apply(T0 + 1_000, allocate_on("lic-1", "a", 1, 1)));
    granted(sm.apply(T0, allocate_on("lic-2", "c", 3, 8)));

    assert_eq!(
        sm.state.usage(&lid("lic-1"), Timestamp(30_000)),
        Some(Usage {
            license: sample_summary(),
            licensed_cores: 16,
            allocated_cores: 10,
            free_cores: 6,
            expired: false,
            nodes: vec![
                NodeUsage {
                    node: node("a"),
                    mac: mac(1),
                    cores: Cores::new(1).unwrap(),
                    counted_cores: 4,
                    lease_expires_at: Timestamp(T0 + 1_000 + TTL),
                },
                NodeUsage {
                    node: node("b"),
                    mac: mac(2),
                    cores: Cores::new(6).unwrap(),
                    counted_cores: 6,
                    lease_expires_at: Timestamp(T0 + TTL),
                },
            ],
        })
    );
    let lic2 = sm.state.usage(&lid("lic-2"), Timestamp(30_000)).unwrap();
    assert_eq!(
        (lic2.allocated_cores, lic2.free_cores, lic2.nodes.len()),
        (8, 8, 1)
    );
    assert!(
        sm.state
            .usage(&lid("lic-1"), Timestamp(1_000_000_000))
            .unwrap()
            .expired
    );
    let all = sm.state.usage_all(Timestamp(30_000));
    assert_eq!(
        all.iter()
            .map(|u| u.license.id.as_str())
            .collect::<Vec<_>>(),
        ["lic-1", "lic-2"]
    );
}

#[test]
fn usage_of_a_license_without_allocations_is_all_free() {
    let sm = Sm::licensed();
    let usage = sm.state.usage(&lid("lic-1"), Timestamp(T0)).unwrap();
    assert_eq!(
        (
            usage.licensed_cores,
            usage.allocated_cores,
            usage.free_cores
        ),
        (16, 0, 16)
    );
    assert!(usage.nodes.is_empty());
}

#[test]
fn usage_of_an_unknown_license_is_none() {
    let sm = Sm::licensed();
    assert_eq!(sm.state.usage(&lid("lic-9"), Timestamp(T0)), None);
    assert_eq!(Sm::new().state.usage(&lid("lic-1"), Timestamp(T0)), None);
}

// Rule 14: snapshots.

/// A state with two licenses, live allocations, a renewed lease and remembered outcomes,
/// including a rejection.
fn busy_state() -> Sm {
    let mut sm = Sm::licensed();
    let small = License {
        id: lid("lic-2"),
        max_cores: 8,
        min_cores_per_node: 2,
        allowed_macs: [mac(3), mac(4)].into(),
        ..sample()
    };
    sm.apply(T0, install(small)).unwrap();
    sm.apply_as("alloc-a", T0, allocate_on("lic-1", "a", 1, 1))
        .unwrap();
    sm.apply_as(
        "alloc-b",
        T0,
        Command::Allocate(Allocate {
            license: Some(lid("lic-1")),
            lease_ttl: LeaseTtl::from_millis(3_600_000).unwrap(),
            ..alloc("b", 2, 6)
        }),
    )
    .unwrap();
    sm.apply_as("alloc-c", T0, allocate_on("lic-2", "c", 3, 3))
        .unwrap();
    sm.apply_as("alloc-d", T0, allocate_on("lic-2", "d", 1, 3))
        .unwrap_err();
    sm.apply(T0 + 10_000, heartbeat("a")).unwrap();
    sm
}

#[test]
fn the_state_survives_a_bincode_round_trip_with_its_indexes_rebuilt() {
    let sm = busy_state();
    let bytes = encode(&sm.state).unwrap();
    let restored: LicenseState = decode(&bytes).unwrap();
    assert_eq!(restored, sm.state);
    assert_eq!(restored.lease_order, sm.state.lease_order);
    assert_eq!(restored.counted, sm.state.counted);
    assert_eq!(restored.lease_order.len(), 3);
    assert_eq!(restored.counted_cores(&lid("lic-1")), 10);
    assert_eq!(restored.counted_cores(&lid("lic-2")), 3);
    assert_eq!(encode(&restored).unwrap(), bytes);

    // The indexes are not part of the snapshot.
    let mut stripped = sm.state.clone();
    stripped.lease_order.clear();
    stripped.counted.clear();
    assert_eq!(encode(&stripped).unwrap(), bytes);
}

#[test]
fn a_restored_state_behaves_like_the_original() {
    let mut original = busy_state().state;
    let mut restored: LicenseState = decode(&encode(&original).unwrap()).unwrap();

    let at = |time: u64, id: &str, command: Command| Request {
        time: Timestamp(time),
        request_id: rid(id),
        command,
    };
    let log = [
        // Retries answered from the remembered outcomes, a rejection included.
        at(T0 + 20_000, "alloc-a", allocate_on("lic-1", "a", 1, 1)),
        at(T0 + 20_000, "alloc-d", allocate_on("lic-2", "d", 1, 3)),
        at(T0 + 20_000, "alloc-c", release("c")),
        // Leases end in index order: c at T0 + TTL, a (renewed) at T0 + 10 000 + TTL.
        at(T0 + TTL + 10_000, "tick-1", Command::Tick),
        at(T0 + TTL + 10_000, "e", allocate_on("lic-1", "e", 3, 10)),
        at(T0 + TTL + 10_000, "f", allocate_on("lic-1", "f", 1, 1)),
        at(T0 + TTL + 20_000, "hb-b", heartbeat("b")),
        at(
            T0 + TTL + 20_000,
            "issue2",
            install(License {
                serial: 2,
                max_cores: 12,
                ..sample()
            }),
        ),
        at(T0 + TTL + 30_000, "rm-2", remove("lic-2")),
        at(
            T0 + DEDUP_WINDOW_MS + 1,
            "alloc-a",
            allocate_on("lic-1", "a", 1, 1),
        ),
    ];
    let mut responses = Vec::new();
    for request in &log {
        let expected = original.apply(request);
        assert_eq!(restored.apply(request), expected, "{request:?}");
        assert_eq!(restored, original, "{request:?}");
        responses.push(expected);
    }
    // The log exercised what it meant to.
    assert_eq!(
        granted(responses[0].clone()).allocation.allocated_at,
        Timestamp(T0)
    );
    assert_eq!(
        rejected(responses[1].clone()).code,
        Code::InvalidMultiServerLicense
    );
    assert_eq!(rejected(responses[2].clone()).code, Code::RequestIdReused);
    assert_eq!(
        responses[3],
        Ok(Outcome::Ticked {
            expired: vec![node("c"), node("a")]
        })
    );
    assert_eq!(granted(responses[4].clone()).allocated_cores, 16);
    assert_eq!(rejected(responses[5].clone()).code, Code::CpuLimitExhausted);
    assert_eq!(
        responses[7],
        installed("lic-1", true, vec![dropped("e", Code::CpuLimitExhausted)])
    );
    renewed(responses[6].clone());
    assert_eq!(
        responses[8],
        Ok(Outcome::LicenseRemoved {
            license: lid("lic-2"),
            released: vec![],
        })
    );
    // Past the window, alloc-a is still among the most recent ids: its first outcome again.
    assert_eq!(
        granted(responses[9].clone()).allocation.allocated_at,
        Timestamp(T0)
    );
    for name in ["a", "b", "e", "f"] {
        assert_eq!(
            restored.check(&node(name), None, Timestamp(0)),
            original.check(&node(name), None, Timestamp(0))
        );
    }
    assert_eq!(
        restored.usage_all(Timestamp(0)),
        original.usage_all(Timestamp(0))
    );
}

// Properties over random logs.

mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::{lid, mac, node, rid};
    use crate::codec::{decode, encode};
    use crate::command::{Allocate, Command, Request, Response};
    use crate::license::License;
    use crate::state::LicenseState;
    use crate::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, Timestamp};

    /// The time of the first entry of every generated log.
    const START: u64 = 1_000_000;

    /// How many servers the logs talk about.
    const NODES: u8 = 6;

    fn arb_node() -> impl Strategy<Value = NodeName> {
        (0..NODES).prop_map(|n| node(&format!("n{n}")))
    }

    /// MACs 1 to 4: licenses allow some of them.
    fn arb_mac() -> impl Strategy<Value = MacAddr> {
        (1..=4u8).prop_map(mac)
    }

    /// A server and the MAC it asks with: mostly its own (server `n` has MAC `n % 4 + 1`, so
    /// two servers share one), sometimes any.
    fn arb_node_and_mac() -> impl Strategy<Value = (NodeName, MacAddr)> {
        prop_oneof![
            4 => (0..NODES).prop_map(|n| (node(&format!("n{n}")), mac(n % 4 + 1))),
            1 => (arb_node(), arb_mac()),
        ]
    }

    /// Two license ids, the first more common, so that allocations naming one mostly find it.
    fn arb_license_id() -> impl Strategy<Value = LicenseId> {
        prop_oneof![3 => Just(lid("lic-a")), 1 => Just(lid("lic-b"))]
    }

    /// Issues of two license ids, with random limits and MACs; a few are invalid (minimum
    /// above maximum) or expire within the log's time span.
    fn arb_license() -> impl Strategy<Value = License> {
        (
            arb_license_id(),
            1..=3u64,
            0..=2u64,
            1..=40u32,
            1..=8u32,
            prop::sample::subsequence(vec![mac(1), mac(2), mac(3), mac(4)], 1..=4),
            prop::option::weighted(0.3, 0..=1_000_000u64),
        )
            .prop_map(
                |(id, serial, issued, max_cores, min_cores_per_node, allowed_macs, expires)| {
                    License {
                        id,
                        customer: "Property Test".into(),
                        issued_at: Timestamp(1_000 + issued),
                        expires_at: expires.map(|e| Timestamp(START + e)),
                        max_cores,
                        min_cores_per_node,
                        allowed_macs: allowed_macs.into_iter().collect(),
                        features: BTreeSet::new(),
                        serial,
                    }
                },
            )
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop_oneof![
            4 => arb_license().prop_map(Command::InstallLicense),
            1 => arb_license_id().prop_map(|license| Command::RemoveLicense { license }),
            16 => (
                arb_node_and_mac(),
                prop::option::of(arb_license_id()),
                1..=12u32,
                5_000..=300_000u64,
            )
                .prop_map(|((node, mac), license, cores, ttl)| {
                    Command::Allocate(Allocate {
                        node,
                        license,
                        mac,
                        cores: Cores::new(cores).unwrap(),
                        lease_ttl: LeaseTtl::from_millis(ttl).unwrap(),
                    })
                }),
            6 => arb_node().prop_map(|node| Command::Heartbeat { node }),
            3 => arb_node().prop_map(|node| Command::Release { node }),
            3 => Just(Command::Tick),
        ]
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A new request under a fresh id.
        Fresh(Command),
        /// A retry of an earlier entry: its id and command again.
        Retry(Index),
        /// An earlier entry's id carrying another command.
        Reuse(Index, Command),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => arb_command().prop_map(Step::Fresh),
            2 => any::<Index>().prop_map(Step::Retry),
            1 => (any::<Index>(), arb_command()).prop_map(|(i, c)| Step::Reuse(i, c)),
        ]
    }

    /// How far the leader's clock moves between entries: mostly forward by up to 20 seconds,
    /// sometimes back, sometimes far enough forward for request ids to age out.
    fn arb_delta() -> impl Strategy<Value = i64> {
        prop_oneof![
            24 => 0..=20_000i64,
            5 => -30_000..0i64,
            1 => 300_000..=1_000_000i64,
        ]
    }

    fn build_log(setup: Vec<License>, steps: Vec<(i64, Step)>) -> Vec<Request> {
        let setup = setup
            .into_iter()
            .map(|license| (0, Step::Fresh(Command::InstallLicense(license))));
        let mut log: Vec<Request> = Vec::with_capacity(steps.len() + 2);
        let mut time = START;
        for (i, (delta, step)) in setup.chain(steps).enumerate() {
            time = time.saturating_add_signed(delta);
            let fresh = rid(&format!("r{i}"));
            let (request_id, command) = match step {
                Step::Fresh(command) => (fresh, command),
                Step::Retry(ix) if !log.is_empty() => {
                    let earlier = &log[ix.index(log.len())];
                    (earlier.request_id.clone(), earlier.command.clone())
                }
                Step::Retry(_) => (fresh, Command::Tick),
                Step::Reuse(ix, command) if !log.is_empty() => {
                    (log[ix.index(log.len())].request_id.clone(), command)
                }
                Step::Reuse(_, command) => (fresh, command),
            };
            log.push(Request {
                time: Timestamp(time),
                request_id,
                command,
            });
        }
        log
    }

    /// Up to two license installs, then up to 60 random steps.
    fn arb_log() -> impl Strategy<Value = Vec<Request>> {
        (
            prop::collection::vec(arb_license(), 0..=2),
            prop::collection::vec((arb_delta(), arb_step()), 0..=60),
        )
            .prop_map(|(setup, steps)| build_log(setup, steps))
    }

    fn run(mut state: LicenseState, log: &[Request]) -> (LicenseState, Vec<Response>) {
        let responses = log.iter().map(|request| state.apply(request)).collect();
        (state, responses)
    }

    /// The counted cores of each license, summed from the allocations themselves, match the
    /// index and stay within the license; every allocation is one its license allows now.
    fn check_invariants(state: &LicenseState) -> Result<(), TestCaseError> {
        for (id, license) in state.licenses() {
            let sum: u64 = state
                .allocations()
                .values()
                .filter(|a| &a.license == id)
                .map(|a| u64::from(a.counted_cores))
                .sum();
            prop_assert_eq!(sum, state.counted_cores(id), "license {}", id);
            prop_assert!(
                sum <= u64::from(license.max_cores),
                "license {} counts {} of {} cores",
                id,
                sum,
                license.max_cores
            );
        }
        for (name, a) in state.allocations() {
            let license = state.licenses().get(&a.license);
            prop_assert!(
                license.is_some(),
                "{} is allocated under a removed license",
                name
            );
            let license = license.unwrap();
            prop_assert_eq!(a.counted_cores, license.counted_cores(a.cores.get()));
            prop_assert!(license.allowed_macs.contains(&a.mac));
            prop_assert!(
                a.lease_expires_at > state.clock(),
                "{} outlived its lease",
                name
            );
            prop_assert!(a.allocated_at <= state.clock());
        }
        let mut rebuilt = state.clone();
        rebuilt.rebuild_indexes();
        prop_assert_eq!(&rebuilt, state, "the derived indexes drifted");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            ..ProptestConfig::default()
        })]

        #[test]
        fn counted_cores_match_the_allocations_and_never_exceed_max_cores(log in arb_log()) {
            let mut state = LicenseState::new();
            for request in &log {
                let clock = state.clock();
                let _response = state.apply(request);
                prop_assert_eq!(state.clock(), clock.max(request.time));
                check_invariants(&state)?;
            }
        }

        #[test]
        fn replaying_a_log_gives_the_same_state_and_responses(log in arb_log()) {
            let (first, first_responses) = run(LicenseState::new(), &log);
            let (second, second_responses) = run(LicenseState::new(), &log);
            prop_assert_eq!(first_responses, second_responses);
            prop_assert_eq!(first, second);
        }

        #[test]
        fn a_snapshot_restored_midway_continues_like_the_uninterrupted_state(
            (log, k) in arb_log().prop_flat_map(|log| {
                let len = log.len();
                (Just(log), 0..=len)
            })
        ) {
            let (whole, whole_responses) = run(LicenseState::new(), &log);

            let (head, mut responses) = run(LicenseState::new(), &log[..k]);
            let restored: LicenseState = decode(&encode(&head).unwrap()).unwrap();
            prop_assert_eq!(&restored, &head);
            let (resumed, tail_responses) = run(restored, &log[k..]);
            responses.extend(tail_responses);

            prop_assert_eq!(responses, whole_responses);
            prop_assert_eq!(resumed, whole);
        }
    }
}
