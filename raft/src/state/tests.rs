//! What the scripts of the license rules (`tests/scripts/*.txt`, run by `tests/scripts.rs`)
//! cannot see: the derived index and the grant counter inside a snapshot, and properties that
//! hold over random command sequences rather than over one written case.
//!
//! Every rule of [`LicenseState::apply`], and the license check and usage report, is a case of
//! those scripts; after every request there the runner also checks that the state equals its
//! own snapshot round trip, which is how the scripts see that the index agrees with the
//! allocations.

use super::*;
use crate::codec::{decode, encode};
use crate::command::{LeaseCheckpoint, LeaseRef};
use crate::license::tests::sample;
use crate::types::{Cores, LeaseTtl, MacAddr, RequestId};

/// The time the snapshot state is built at.
const T0: u64 = 10_000;

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

fn allocate_on(license: &str, node_name: &str, mac_last: u8, cores: u32, ttl: u64) -> Command {
    Command::Allocate(Allocate {
        node: node(node_name),
        license: Some(lid(license)),
        mac: mac(mac_last),
        cores: Cores::new(cores).unwrap(),
        lease_ttl: LeaseTtl::from_millis(ttl).unwrap(),
        token_hash: Some(token(node_name)),
        presented: None,
    })
}

/// The token hash a test allocation of `node_name` issues.
fn token(node_name: &str) -> TokenHash {
    let mut bytes = [0; 32];
    bytes[..node_name.len()].copy_from_slice(node_name.as_bytes());
    TokenHash(bytes)
}

/// A state with two licenses, live allocations, a checkpointed lease, an expired one and
/// remembered outcomes, including a rejection: close to the state the snapshot script
/// (`snapshots.txt`) builds.
fn busy_state() -> LicenseState {
    let small = License {
        id: lid("lic-2"),
        max_cores: 8,
        min_cores_per_node: 2,
        allowed_macs: [mac(3), mac(4)].into(),
        ..sample()
    };
    let checkpoint = Command::Checkpoint {
        leases: vec![LeaseCheckpoint {
            node: node("a"),
            grant: 0,
            remaining_ms: 30_000,
        }],
    };
    let expire = Command::Expire {
        leases: vec![LeaseRef {
            node: node("e"),
            grant: 3,
        }],
    };
    let log = [
        (Some(T0), "install-1", Command::InstallLicense(sample())),
        (Some(T0), "install-2", Command::InstallLicense(small)),
        (Some(T0), "alloc-a", allocate_on("lic-1", "a", 1, 1, 60_000)),
        (
            Some(T0),
            "alloc-b",
            allocate_on("lic-1", "b", 2, 6, 3_600_000),
        ),
        (Some(T0), "alloc-c", allocate_on("lic-2", "c", 3, 3, 60_000)),
        (Some(T0), "alloc-d", allocate_on("lic-2", "d", 1, 3, 60_000)),
        (None, "alloc-e", allocate_on("lic-2", "e", 4, 2, 60_000)),
        (Some(T0 + 10_000), "checkpoint-a", checkpoint),
        (None, "expire-e", expire),
    ];
    let mut state = LicenseState::new();
    for (time, id, command) in log {
        let response = state.apply(&Request {
            time: time.map(Timestamp),
            request_id: rid(id),
            command,
        });
        // Every entry applies but d's, whose MAC lic-2 does not allow.
        assert_eq!(response.is_ok(), id != "alloc-d", "{id}: {response:?}");
    }
    assert_eq!(state.clock(), Timestamp(T0 + 10_000));
    assert_eq!(state.allocations()[&node("a")].remaining_ms, 30_000);
    assert!(!state.allocations().contains_key(&node("e")));
    state
}

#[test]
fn the_state_survives_a_bincode_round_trip_with_its_indexes_rebuilt() {
    let state = busy_state();
    let bytes = encode(&state).unwrap();
    let restored: LicenseState = decode(&bytes).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.counted, state.counted);
    assert_eq!(restored.macs, state.macs);
    assert_eq!(
        restored.macs.values().sum::<usize>(),
        state.allocations().len()
    );
    assert_eq!(restored.counted_cores(&lid("lic-1")), 10);
    assert_eq!(restored.counted_cores(&lid("lic-2")), 3);
    // The grant counter and the change count travel with the snapshot: a restored replica
    // numbers its next grant as the original does.
    assert_eq!(restored.next_grant, 4);
    assert_eq!(restored.allocation_changes(), 5);
    assert_eq!(restored.allocation_changes(), state.allocation_changes());
    assert_eq!(encode(&restored).unwrap(), bytes);

    // The index is not part of the snapshot.
    let mut stripped = state.clone();
    stripped.counted.clear();
    stripped.macs.clear();
    assert_eq!(encode(&stripped).unwrap(), bytes);
}

#[test]
fn renewable_refuses_an_allocation_whose_license_is_not_installed() {
    // No log reaches this state (removing a license releases its allocations), so it is
    // built by hand: the heartbeat scripts cannot show this refusal.
    let mut state = busy_state();
    assert!(state.renewable(&node("c"), Timestamp(T0)).is_ok());
    state.licenses.remove(&lid("lic-2"));
    let refused = state.renewable(&node("c"), Timestamp(T0)).unwrap_err();
    assert_eq!(refused.code, Code::LicenseNotFound);
    // The other refusals, for comparison: no allocation, and a license past its date.
    let refused = state.renewable(&node("z"), Timestamp(T0)).unwrap_err();
    assert_eq!(refused.code, Code::NotAllocated);
    let expiry = sample().expires_at.unwrap();
    let refused = state.renewable(&node("a"), expiry).unwrap_err();
    assert_eq!(refused.code, Code::LicenseExpired);
    let (allocation, max_cores) = state.renewable(&node("a"), Timestamp(T0)).unwrap();
    assert_eq!((allocation.grant, max_cores), (0, sample().max_cores));
}

// Properties over random logs.

mod properties {
    use std::collections::BTreeSet;

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::{lid, mac, node, rid};
    use crate::codec::{decode, encode};
    use crate::command::{
        Allocate, Batched, Code, Command, LeaseCheckpoint, LeaseRef, Outcome, Request, Response,
    };
    use crate::license::License;
    use crate::state::LicenseState;
    use crate::types::TokenHash;
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
                0..4u8,
                prop::option::of(0..4u8),
            )
                .prop_map(|((node, mac), license, cores, ttl, new, presented)| {
                    // A few tokens only, so that presented ones often match.
                    let hash = |n: u8| TokenHash([n; 32]);
                    Command::Allocate(Allocate {
                        node,
                        license,
                        mac,
                        cores: Cores::new(cores).unwrap(),
                        lease_ttl: LeaseTtl::from_millis(ttl).unwrap(),
                        token_hash: Some(hash(new)),
                        presented: presented.map(hash),
                    })
                }),
            2 => arb_node().prop_map(|node| Command::Release { node }),
            1 => (arb_node(), prop::option::of(0..4u8)).prop_map(|(node, presented)| {
                Command::ReleaseHeld {
                    node,
                    presented: presented.map(|n| TokenHash([n; 32])),
                }
            }),
            // Leases named blindly: mostly grants that are gone or never were.
            1 => prop::collection::vec(arb_lease_checkpoint(), 0..=3)
                .prop_map(|leases| Command::Checkpoint { leases }),
            1 => prop::collection::vec(arb_lease_ref(), 0..=3)
                .prop_map(|leases| Command::Expire { leases }),
        ]
    }

    /// A grant number in the range the logs reach, so that some name a live grant.
    fn arb_grant() -> impl Strategy<Value = u64> {
        prop_oneof![8 => 0..40u64, 1 => Just(u64::MAX)]
    }

    /// A remaining time, sometimes above any ttl (the state caps it), sometimes none left.
    fn arb_remaining() -> impl Strategy<Value = u64> {
        prop_oneof![1 => Just(0u64), 6 => 0..=400_000u64, 1 => Just(u64::MAX)]
    }

    fn arb_lease_checkpoint() -> impl Strategy<Value = LeaseCheckpoint> {
        (arb_node(), arb_grant(), arb_remaining()).prop_map(|(node, grant, remaining_ms)| {
            LeaseCheckpoint {
                node,
                grant,
                remaining_ms,
            }
        })
    }

    fn arb_lease_ref() -> impl Strategy<Value = LeaseRef> {
        (arb_node(), arb_grant()).prop_map(|(node, grant)| LeaseRef { node, grant })
    }

    /// A lease named the way the leader names it: one of the allocations the state holds when
    /// the log is built, by its grant (`age` 0) or by an earlier grant of that server (`age`
    /// above 0: a proposal that a re-allocation overtook).
    #[derive(Debug, Clone)]
    struct Aimed {
        pick: Index,
        age: u64,
        remaining_ms: u64,
    }

    fn arb_aimed() -> impl Strategy<Value = Aimed> {
        (
            any::<Index>(),
            prop_oneof![3 => Just(0u64), 1 => 1..=3u64],
            arb_remaining(),
        )
            .prop_map(|(pick, age, remaining_ms)| Aimed {
                pick,
                age,
                remaining_ms,
            })
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A new request under a fresh id.
        Fresh(Command),
        /// A retry of an earlier entry: its id and command again.
        Retry(Index),
        /// An earlier entry's id carrying another command.
        Reuse(Index, Command),
        /// A checkpoint of leases the state holds, under a fresh id.
        Checkpoint(Vec<Aimed>),
        /// An expiration of leases the state holds, under a fresh id.
        Expire(Vec<Aimed>),
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            8 => arb_command().prop_map(Step::Fresh),
            2 => any::<Index>().prop_map(Step::Retry),
            1 => (any::<Index>(), arb_command()).prop_map(|(i, c)| Step::Reuse(i, c)),
            2 => prop::collection::vec(arb_aimed(), 1..=3).prop_map(Step::Checkpoint),
            1 => prop::collection::vec(arb_aimed(), 1..=2).prop_map(Step::Expire),
        ]
    }

    /// How far the leader's clock moves between entries: mostly forward by up to 20 seconds,
    /// sometimes back, sometimes far enough forward for request ids to age out. `None`: the
    /// entry carries no time (the voters' clocks did not agree).
    fn arb_delta() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            24 => (0..=20_000i64).prop_map(Some),
            5 => (-30_000..0i64).prop_map(Some),
            1 => (300_000..=1_000_000i64).prop_map(Some),
            5 => Just(None),
        ]
    }

    /// The leases `aimed` names in `state`: the allocation each picks, by the grant `age`
    /// before its own (no lease when the state holds none).
    fn aimed_leases(state: &LicenseState, aimed: &[Aimed]) -> Vec<(NodeName, u64, u64)> {
        let held: Vec<(&NodeName, u64)> = state
            .allocations()
            .iter()
            .map(|(node, a)| (node, a.grant))
            .collect();
        if held.is_empty() {
            return Vec::new();
        }
        aimed
            .iter()
            .map(|a| {
                let (node, grant) = held[a.pick.index(held.len())];
                (node.clone(), grant.saturating_sub(a.age), a.remaining_ms)
            })
            .collect()
    }

    /// Builds the log, applying it to a state as it goes so that aimed steps name the grants
    /// that state holds; the log itself is then a fixed input, replayed by the properties.
    fn build_log(setup: Vec<License>, steps: Vec<(Option<i64>, Step)>) -> Vec<Request> {
        let setup = setup
            .into_iter()
            .map(|license| (Some(0), Step::Fresh(Command::InstallLicense(license))));
        let mut log: Vec<Request> = Vec::with_capacity(steps.len() + 2);
        let mut state = LicenseState::new();
        let mut time = START;
        for (i, (delta, step)) in setup.chain(steps).enumerate() {
            if let Some(delta) = delta {
                time = time.saturating_add_signed(delta);
            }
            let fresh = rid(&format!("r{i}"));
            let (request_id, command) = match step {
                Step::Fresh(command) => (fresh, command),
                Step::Retry(ix) if !log.is_empty() => {
                    let earlier = &log[ix.index(log.len())];
                    (earlier.request_id.clone(), earlier.command.clone())
                }
                Step::Retry(_) => (fresh, Command::Expire { leases: vec![] }),
                Step::Reuse(ix, command) if !log.is_empty() => {
                    (log[ix.index(log.len())].request_id.clone(), command)
                }
                Step::Reuse(_, command) => (fresh, command),
                Step::Checkpoint(aimed) => {
                    let leases = aimed_leases(&state, &aimed)
                        .into_iter()
                        .map(|(node, grant, remaining_ms)| LeaseCheckpoint {
                            node,
                            grant,
                            remaining_ms,
                        })
                        .collect();
                    (fresh, Command::Checkpoint { leases })
                }
                Step::Expire(aimed) => {
                    let leases = aimed_leases(&state, &aimed)
                        .into_iter()
                        .map(|(node, grant, _)| LeaseRef { node, grant })
                        .collect();
                    (fresh, Command::Expire { leases })
                }
            };
            let request = Request {
                time: delta.map(|_| Timestamp(time)),
                request_id,
                command,
            };
            let _response = state.apply(&request);
            log.push(request);
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
    /// index and stay within the license; every allocation is one its license allows now; no
    /// two allocations share a MAC.
    fn check_invariants(state: &LicenseState) -> Result<(), TestCaseError> {
        let macs: BTreeSet<_> = state.allocations().values().map(|a| a.mac).collect();
        prop_assert_eq!(
            macs.len(),
            state.allocations().len(),
            "a MAC holds two allocations"
        );
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
                a.remaining_ms <= a.lease_ttl.as_millis(),
                "{} has {} ms left of a {} ms lease",
                name,
                a.remaining_ms,
                a.lease_ttl.as_millis()
            );
            prop_assert!(
                a.grant < state.next_grant,
                "{} holds a grant not yet given",
                name
            );
            prop_assert!(a.allocated_at <= state.clock());
        }
        let grants: BTreeSet<u64> = state.allocations().values().map(|a| a.grant).collect();
        prop_assert_eq!(
            grants.len(),
            state.allocations().len(),
            "a grant is held twice"
        );
        let mut rebuilt = state.clone();
        rebuilt.rebuild_indexes();
        prop_assert_eq!(&rebuilt, state, "the derived indexes drifted");
        Ok(())
    }

    /// What a checkpoint or an expiration did, against what it names: a checkpoint sets the
    /// remaining time (capped at the ttl) of the named grants that exist and changes nothing
    /// else; an expiration removes exactly those and changes nothing else; neither is
    /// remembered. Under an id already used they are refused and change no allocation.
    fn check_lease_entry(
        before: &LicenseState,
        after: &LicenseState,
        request: &Request,
        response: &Response,
    ) -> Result<(), TestCaseError> {
        let named = |node: &NodeName, grant: u64| {
            before
                .allocations()
                .get(node)
                .is_some_and(|a| a.grant == grant)
        };
        let mut expected = before.allocations().clone();
        let expected_outcome = match &request.command {
            Command::Checkpoint { leases } => {
                let mut updated = 0;
                for c in leases {
                    if named(&c.node, c.grant) {
                        let a = expected.get_mut(&c.node).unwrap();
                        a.remaining_ms = c.remaining_ms.min(a.lease_ttl.as_millis());
                        updated += 1;
                    }
                }
                Outcome::Checkpointed { updated }
            }
            Command::Expire { leases } => {
                let mut expired = Vec::new();
                for l in leases {
                    if named(&l.node, l.grant) && expected.remove(&l.node).is_some() {
                        expired.push(l.node.clone());
                    }
                }
                Outcome::Expired { expired }
            }
            _ => return Ok(()),
        };
        prop_assert!(
            after.remembered_requests() <= before.remembered_requests(),
            "a lease entry was remembered"
        );
        prop_assert_eq!(after.licenses(), before.licenses());
        prop_assert_eq!(after.next_grant, before.next_grant);
        match response {
            Err(rejection) => {
                prop_assert_eq!(rejection.code, Code::RequestIdReused);
                prop_assert_eq!(after.allocations(), before.allocations());
            }
            Ok(outcome) => {
                prop_assert_eq!(outcome, &expected_outcome);
                prop_assert_eq!(after.allocations(), &expected);
                let removed = (before.allocations().len() - expected.len()) as u64;
                prop_assert_eq!(
                    after.allocation_changes(),
                    before.allocation_changes() + removed
                );
            }
        }
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
                let before = state.clone();
                let response = state.apply(request);
                // The clock moves only with a time, and never back.
                let clock = request.time.map_or(before.clock(), |t| before.clock().max(t));
                prop_assert_eq!(state.clock(), clock);
                check_invariants(&state)?;
                check_lease_entry(&before, &state, request, &response)?;
            }
        }

        #[test]
        fn a_batch_applies_like_its_requests_one_entry_each(
            log in arb_log(),
            sizes in prop::collection::vec(1usize..=8, 1..=60),
        ) {
            // The log cut into groups; each group's requests take the group's time (a batch
            // has one), both as separate entries and as one batch entry.
            let mut separate = Vec::new();
            let mut batched = Vec::new();
            let mut rest = &log[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (group, tail) = rest.split_at((*size).min(rest.len()));
                rest = tail;
                let time = group.iter().rev().find_map(|r| r.time);
                separate.extend(group.iter().map(|r| Request { time, ..r.clone() }));
                batched.push(Request {
                    time,
                    request_id: rid(&format!("batch-{}", batched.len())),
                    command: Command::Batch(
                        group
                            .iter()
                            .map(|r| Batched {
                                request_id: r.request_id.clone(),
                                command: r.command.clone(),
                            })
                            .collect(),
                    ),
                });
            }

            let mut one_each = LicenseState::new();
            let mut expected = (Vec::new(), Vec::new());
            for request in &separate {
                let (response, events) = one_each.apply_with_events(request);
                expected.0.push(response);
                expected.1.extend(events);
            }
            let mut in_batches = LicenseState::new();
            let mut got = (Vec::new(), Vec::new());
            for request in &batched {
                let (response, events) = in_batches.apply_with_events(request);
                let Ok(Outcome::Batch(responses)) = response else {
                    return Err(TestCaseError::fail(format!("not a batch outcome: {response:?}")));
                };
                let Command::Batch(requests) = &request.command else { unreachable!() };
                prop_assert_eq!(responses.len(), requests.len());
                got.0.extend(responses);
                got.1.extend(events);
            }
            prop_assert_eq!(got, expected);
            prop_assert_eq!(in_batches, one_each);
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
