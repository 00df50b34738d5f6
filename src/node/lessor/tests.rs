//! The lease table's rules, on instants made up by the test.

use std::time::{Duration, Instant};

use licd_raft::command::{Allocate, Command, LeaseCheckpoint, LeaseRef, Outcome};
use licd_raft::license::License;
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp};
use licd_raft::{LicenseState, Request};

use super::Lessor;

const TTL: u64 = 9_000;
const ELECTION: Duration = Duration::from_millis(500);

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A state with one 16-core license and the servers `names` allocated in order.
struct World {
    state: LicenseState,
    seq: u64,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            state: LicenseState::new(),
            seq: 0,
        };
        let license = License {
            id: LicenseId::new("lic").unwrap(),
            customer: "c".into(),
            issued_at: Timestamp(1),
            expires_at: None,
            max_cores: 16,
            min_cores_per_node: 1,
            allowed_macs: (1..=6u8)
                .map(|i| MacAddr::from_bytes([2, 0, 0, 0, 0, i]))
                .collect(),
            features: Default::default(),
            serial: 1,
        };
        w.apply(Command::InstallLicense(license));
        w
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.seq += 1;
        self.state
            .apply(&Request {
                time: Some(Timestamp(1_000)),
                request_id: RequestId::new(format!("r-{}", self.seq)).unwrap(),
                command,
            })
            .expect("applied")
    }

    /// Allocates `name` and returns its grant.
    fn allocate(&mut self, name: &str, mac: u8) -> u64 {
        let outcome = self.apply(Command::Allocate(Allocate {
            node: node(name),
            license: None,
            mac: MacAddr::from_bytes([2, 0, 0, 0, 0, mac]),
            cores: Cores::new(2).unwrap(),
            lease_ttl: LeaseTtl::from_millis(TTL).unwrap(),
            // The same token every time: a re-allocation of the name presents it.
            token_hash: Some(licd_raft::types::TokenHash([name.len() as u8; 32])),
            presented: Some(licd_raft::types::TokenHash([name.len() as u8; 32])),
        }));
        match outcome {
            Outcome::Allocated(g) => g.allocation.grant,
            other => panic!("{other:?}"),
        }
    }
}

/// A lessor promoted in `term` over `w`'s state at a fresh instant, and that instant.
fn promoted(w: &World, term: u64) -> (Lessor, Instant) {
    let mut lessor = Lessor::new(ELECTION);
    let t0 = Instant::now();
    lessor.sync(term, &w.state, t0, t0);
    (lessor, t0)
}

#[test]
fn a_new_grant_has_its_whole_ttl_and_a_renewal_restarts_it() {
    let mut w = World::new();
    let (mut lessor, t0) = promoted(&w, 1);
    let g = w.allocate("a", 1);
    lessor.sync(1, &w.state, t0 + ms(10), t0 + ms(10));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(10)), TTL);
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(4_010)), TTL - 4_000);
    // Renewed, but a successor honours only what the log holds: the grant, from when it was
    // synced, plus the election bound.
    assert_eq!(
        lessor.renew(&node("a"), g, t0 + ms(4_010)),
        Some(TTL + 500 - 4_000)
    );
    assert_eq!(
        lessor.remaining(&node("a"), g, t0 + ms(8_010)),
        TTL + 500 - 8_000
    );
    // Once a checkpoint of the renewed lease is committed, the renewal is honoured in full.
    let checkpoint = lessor.checkpoint(t0 + ms(4_010));
    lessor.checkpointed(&checkpoint, t0 + ms(4_010));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(8_010)), TTL - 4_000);
    // Past the renewed deadline the lease is over and cannot be renewed.
    let after = t0 + ms(4_010 + TTL);
    assert_eq!(lessor.remaining(&node("a"), g, after), 0);
    assert_eq!(lessor.renew(&node("a"), g, after), None);
    assert_eq!(
        lessor.expired(after),
        vec![LeaseRef {
            node: node("a"),
            grant: g
        }]
    );
}

#[test]
fn a_promotion_gives_the_checkpointed_time_plus_the_election_bound() {
    let mut w = World::new();
    let g = w.allocate("a", 1);
    w.apply(Command::Checkpoint {
        leases: vec![LeaseCheckpoint {
            node: node("a"),
            grant: g,
            remaining_ms: 2_000,
        }],
    });
    let mut lessor = Lessor::new(ELECTION);
    let t0 = Instant::now();
    lessor.sync(7, &w.state, t0, t0);
    assert_eq!(lessor.remaining(&node("a"), g, t0), 2_500);
    assert!(lessor.expired(t0 + ms(2_499)).is_empty());
    assert_eq!(lessor.expired(t0 + ms(2_500)).len(), 1);
}

#[test]
fn a_new_term_rebuilds_the_table_but_the_same_term_keeps_renewals() {
    let mut w = World::new();
    let g = w.allocate("a", 1);
    let (mut lessor, t0) = promoted(&w, 1);
    lessor.renew(&node("a"), g, t0 + ms(8_000));
    // Another allocation in the same term leaves the renewal alone.
    w.allocate("b", 2);
    lessor.sync(1, &w.state, t0 + ms(8_000), t0 + ms(8_000));
    assert!(lessor.is_live(&node("a"), g, t0 + ms(TTL + 7_999)));
    let checkpoint = lessor.checkpoint(t0 + ms(8_000));
    lessor.checkpointed(&checkpoint, t0 + ms(8_000));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(8_000)), TTL);
    // Leading again in a later term starts from the state's checkpoint (the ttl here).
    lessor.sync(3, &w.state, t0 + ms(20_000), t0 + ms(20_000));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(20_000)), TTL + 500);
}

#[test]
fn a_released_or_reallocated_grant_leaves_the_table() {
    let mut w = World::new();
    let a = w.allocate("a", 1);
    let b = w.allocate("b", 2);
    let (mut lessor, t0) = promoted(&w, 1);
    assert_eq!(lessor.len(), 2);
    w.apply(Command::Release { node: node("a") });
    let b2 = w.allocate("b", 3);
    assert_ne!(b, b2);
    lessor.sync(1, &w.state, t0 + ms(100), t0 + ms(100));
    assert_eq!(lessor.remaining(&node("a"), a, t0 + ms(100)), 0);
    assert_eq!(lessor.remaining(&node("b"), b, t0 + ms(100)), 0);
    assert_eq!(lessor.remaining(&node("b"), b2, t0 + ms(100)), TTL);
    assert_eq!(lessor.renew(&node("b"), b, t0 + ms(100)), None);
    assert_eq!(lessor.len(), 1);
}

#[test]
fn checkpoints_carry_each_live_lease_and_expirations_the_dead_ones() {
    let mut w = World::new();
    let a = w.allocate("a", 1);
    let b = w.allocate("b", 2);
    let (mut lessor, t0) = promoted(&w, 1);
    lessor.renew(&node("b"), b, t0 + ms(5_000));
    // The first sync of a term is a promotion: "a" got the election grace too.
    let at = t0 + ms(TTL) + ELECTION + ms(1);
    assert_eq!(
        lessor.checkpoint(at),
        vec![LeaseCheckpoint {
            node: node("b"),
            grant: b,
            remaining_ms: 5_000 - 500 - 1,
        }]
    );
    assert_eq!(
        lessor.expired(at),
        vec![LeaseRef {
            node: node("a"),
            grant: a
        }]
    );
    // The expiration applied, the table forgets the lease.
    w.apply(Command::Expire {
        leases: lessor.expired(at),
    });
    lessor.sync(1, &w.state, at, at);
    assert!(lessor.expired(at).is_empty());
    assert_eq!(lessor.len(), 1);
}

/// Flapping leadership cannot keep a dead lease alive: the election grace is not
/// checkpointed, so each term's checkpoint records less time, and the lease ends within
/// ttl + one interval + the bound (this model has no time between terms).
#[test]
fn flapping_leadership_with_checkpoints_ends_a_dead_lease() {
    let mut w = World::new();
    w.allocate("dead", 1);
    let t0 = Instant::now();
    let mut now = t0;
    let mut term = 1;
    let interval = ms(1_000);
    loop {
        let mut lessor = Lessor::new(ELECTION);
        lessor.sync(term, &w.state, now, now);
        now += interval;
        let over = lessor.expired(now);
        if !over.is_empty() {
            w.apply(Command::Expire { leases: over });
            break;
        }
        w.apply(Command::Checkpoint {
            leases: lessor.checkpoint(now),
        });
        term += 1;
        assert!(term < 100, "the lease never ended");
    }
    assert!(w.state.allocations().is_empty());
    let held = now - t0;
    assert!(
        held <= ms(TTL) + interval + ELECTION,
        "held {held:?} over {term} terms"
    );
    assert!(held >= ms(TTL), "ended early: {held:?}");
}

#[test]
fn a_lagging_floor_asks_for_a_checkpoint_and_a_committed_one_raises_it() {
    let mut w = World::new();
    let g = w.allocate("a", 1);
    let (mut lessor, t0) = promoted(&w, 1);
    assert!(lessor.due(t0 + ms(1_000), ms(5_000)).is_empty());
    lessor.renew(&node("a"), g, t0 + ms(6_000));
    // The floor (TTL + 500 from t0) is less than half a ttl away at 6 s.
    let lagging = lessor.due(t0 + ms(6_000), ms(5_000));
    assert_eq!(lagging.len(), 1);
    assert_eq!(
        lessor.remaining(&node("a"), g, t0 + ms(6_000)),
        TTL + 500 - 6_000
    );
    lessor.checkpointed(&lagging, t0 + ms(6_000));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(6_000)), TTL);
    assert!(lessor.due(t0 + ms(6_000), ms(5_000)).is_empty());
    // A checkpoint of an older grant raises nothing.
    let stale = vec![LeaseCheckpoint {
        node: node("a"),
        grant: g + 1,
        remaining_ms: 60_000,
    }];
    lessor.checkpointed(&stale, t0 + ms(7_000));
    assert_eq!(lessor.remaining(&node("a"), g, t0 + ms(7_000)), TTL - 1_000);
}

#[test]
fn a_lease_not_renewed_is_checkpointed_once_its_logged_time_is_an_interval_stale() {
    let mut w = World::new();
    let g = w.allocate("a", 1);
    let (mut lessor, t0) = promoted(&w, 1);
    // The log holds the ttl; after 1 s less is left than that by exactly the interval.
    assert!(lessor.due(t0 + ms(1_000), ms(1_000)).is_empty());
    let due = lessor.due(t0 + ms(1_001), ms(1_000));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].grant, g);
    assert_eq!(due[0].remaining_ms, TTL - 1_001);
    lessor.checkpointed(&due, t0 + ms(1_001));
    assert!(lessor.due(t0 + ms(1_500), ms(1_000)).is_empty());
    assert_eq!(lessor.due(t0 + ms(2_002), ms(1_000)).len(), 1);
    // A long lease tolerates a sixteenth of its ttl.
    let long = Lessor::new(ELECTION);
    assert!(long.due(t0, ms(1_000)).is_empty());
}

#[test]
fn a_checkpoint_leaves_out_the_election_grace_until_a_renewal() {
    let mut w = World::new();
    let g = w.allocate("a", 1);
    let mut lessor = Lessor::new(ELECTION);
    let t0 = Instant::now();
    lessor.sync(2, &w.state, t0, t0);
    assert_eq!(
        lessor.remaining(&node("a"), g, t0 + ms(1_000)),
        TTL + 500 - 1_000
    );
    assert_eq!(
        lessor.checkpoint(t0 + ms(1_000))[0].remaining_ms,
        TTL - 1_000
    );
    lessor.renew(&node("a"), g, t0 + ms(1_000));
    assert_eq!(
        lessor.checkpoint(t0 + ms(2_000))[0].remaining_ms,
        TTL - 1_000
    );
}
