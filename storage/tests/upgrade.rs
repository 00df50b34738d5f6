//! A database of stored format 2 (before lease tokens), written byte for byte as that format
//! wrote it, opens in this build: the log and the snapshot are upgraded in place, the state
//! openraft rebuilds from them is the one format 2 had, and its allocations carry no token.

use std::collections::{BTreeMap, BTreeSet};

use licd_raft::codec::encode;
use licd_raft::command::Allocation;
use licd_raft::format2::{
    Allocate2, Allocation2, Applied2, Command2, DedupTable2, Grant2, LicenseState2, Outcome2,
    Request2,
};
use licd_raft::license::License;
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp};
use licd_raft::{Command, Outcome, RaftNodeId, Request, TypeConfig};
use licd_storage::format::FORMAT_VERSION;
use licd_storage::upgrade::{AppliedState2, Entry2, Payload2};
use openraft::storage::{RaftStateMachine, StorageHelper};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, LogId, Membership, RaftLogReader, SnapshotMeta,
    StoredMembership,
};
use serde::Serialize;
use tempfile::TempDir;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn mac(n: u8) -> MacAddr {
    MacAddr::from_bytes([2, 0, 0, 0, 0, n])
}

fn node(name: &str) -> NodeName {
    NodeName::new(name).unwrap()
}

fn license() -> License {
    License {
        id: LicenseId::new("lic").unwrap(),
        customer: "Example".into(),
        issued_at: Timestamp(0),
        expires_at: None,
        max_cores: 64,
        min_cores_per_node: 4,
        allowed_macs: BTreeSet::from([mac(1), mac(2)]),
        features: BTreeSet::new(),
        serial: 1,
    }
}

fn allocate(name: &str, mac_n: u8, cores: u32) -> Command2 {
    Command2::Allocate(Allocate2 {
        node: node(name),
        license: None,
        mac: mac(mac_n),
        cores: Cores::new(cores).unwrap(),
        lease_ttl: LeaseTtl::from_millis(60_000).unwrap(),
    })
}

fn membership() -> Membership<RaftNodeId, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1])],
        BTreeMap::from([(1, BasicNode::default())]),
    )
}

/// The format 2 log: membership, the license, a (MAC 1), b (MAC 2), a again from another
/// MAC (format 2 let any request replace a name's allocation), then b released.
fn log() -> Vec<Entry2> {
    let commands = [
        Command2::InstallLicense(license()),
        allocate("a", 1, 6),
        allocate("b", 2, 4),
        allocate("a", 2, 8),
        Command2::Release { node: node("b") },
    ];
    let mut entries = vec![Entry2 {
        log_id: log_id(0),
        payload: Payload2::Membership(membership()),
    }];
    for (i, command) in commands.into_iter().enumerate() {
        let index = i as u64 + 1;
        entries.push(Entry2 {
            log_id: log_id(index),
            payload: Payload2::Normal(Request2 {
                time: Some(Timestamp(1_000 * index)),
                request_id: RequestId::new(format!("req-{index}")).unwrap(),
                command,
            }),
        });
    }
    entries
}

/// Format 2's state after entries 0..=2, as its snapshot held it.
fn snapshot_state() -> AppliedState2 {
    let a = Allocation2 {
        license: license().id,
        mac: mac(1),
        cores: Cores::new(6).unwrap(),
        counted_cores: 6,
        lease_ttl: LeaseTtl::from_millis(60_000).unwrap(),
        allocated_at: Timestamp(2_000),
        grant: 0,
        remaining_ms: 60_000,
    };
    let applied = |at: u64, command: Command2, outcome: Outcome2| Applied2 {
        at: Timestamp(at),
        command,
        response: Ok(outcome),
    };
    let ids = [1, 2].map(|i| RequestId::new(format!("req-{i}")).unwrap());
    let installed = Outcome2::LicenseInstalled {
        license: license().id,
        replaced: false,
        unchanged: false,
        dropped: vec![],
    };
    let granted = Outcome2::Allocated(Grant2 {
        node: node("a"),
        allocation: a.clone(),
        replaced: false,
        allocated_cores: 6,
        licensed_cores: 64,
    });
    AppliedState2 {
        last_applied: Some(log_id(2)),
        last_membership: StoredMembership::new(Some(log_id(0)), membership()),
        licenses: LicenseState2 {
            clock: Timestamp(2_000),
            licenses: BTreeMap::from([(license().id, license())]),
            allocations: BTreeMap::from([(node("a"), a)]),
            dedup: DedupTable2 {
                by_id: BTreeMap::from([
                    (
                        ids[0].clone(),
                        applied(1_000, Command2::InstallLicense(license()), installed),
                    ),
                    (ids[1].clone(), applied(2_000, allocate("a", 1, 6), granted)),
                ]),
                order: ids.into(),
            },
            next_grant: 1,
            allocation_changes: 1,
        },
    }
}

/// The stored snapshot's shape (`licd_storage`'s private `StoredSnapshot`).
#[derive(Serialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    data: Vec<u8>,
}

/// Writes the format 2 database into `dir`: marker 2, the log, the committed id, the snapshot.
fn write_format_2(dir: &std::path::Path) {
    let db = licd_storage::open_sled(dir).unwrap();
    let meta = db.open_tree("meta").unwrap();
    meta.insert(b"format", encode(&2u32).unwrap()).unwrap();
    meta.insert(b"committed", encode(&Some(log_id(5))).unwrap())
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    for entry in log() {
        tree.insert(entry.log_id.index.to_be_bytes(), encode(&entry).unwrap())
            .unwrap();
    }
    let state = snapshot_state();
    let mut data = 2u32.to_le_bytes().to_vec();
    data.extend(encode(&state).unwrap());
    let snapshot = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.last_membership.clone(),
            snapshot_id: "1-1-2".into(),
        },
        data,
    };
    db.open_tree("snapshot")
        .unwrap()
        .insert(b"current", encode(&snapshot).unwrap())
        .unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn a_format_2_database_is_upgraded_when_opened() {
    let dir = TempDir::new().unwrap();
    write_format_2(dir.path());
    let upgraded: Vec<Entry<TypeConfig>> = log().into_iter().map(Entry::from).collect();

    let (mut log_store, mut sm) = licd_storage::open(dir.path()).expect("the upgrade opens it");
    assert_eq!(
        log_store.try_get_log_entries(0..=5).await.unwrap(),
        upgraded
    );
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2)));
    StorageHelper::new(&mut log_store, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    let state = sm.state().read().unwrap().clone();

    // The same log applied from the start, with no snapshot, reaches the same state: the old
    // entries apply by format 2's rules (a was replaced from another MAC, without a token).
    let fresh_dir = TempDir::new().unwrap();
    let (_log, mut fresh) = licd_storage::open(fresh_dir.path()).unwrap();
    fresh.apply(upgraded.clone()).await.unwrap();
    assert_eq!(*fresh.state().read().unwrap(), state);

    let allocations = state.licenses.allocations();
    let a: &Allocation = &allocations[&node("a")];
    assert_eq!((a.mac, a.cores.get(), a.token_hash), (mac(2), 8, None));
    assert!(!allocations.contains_key(&node("b")));
    assert_eq!(state.licenses.remembered_requests(), 5);
    // A retry of an old allocation is still answered from memory, with no token.
    let retry = Request {
        time: None,
        request_id: RequestId::new("req-2").unwrap(),
        command: Command::from(allocate("a", 1, 6)),
    };
    let mut licenses = state.licenses.clone();
    let Ok(Outcome::Allocated(grant)) = licenses.apply(&retry) else {
        panic!("the retry was not answered from memory");
    };
    assert_eq!(
        (grant.allocation.grant, grant.allocation.token_hash),
        (0, None)
    );

    // The database is in the current format now: it opens again as is (decoding the new
    // bytes as format 2 again would fail or garble them).
    drop((log_store, sm, _log, fresh));
    let (mut log_store, _sm) = licd_storage::open(dir.path()).expect("reopened");
    assert_eq!(
        log_store.try_get_log_entries(0..=5).await.unwrap(),
        upgraded
    );
    assert_eq!(
        FORMAT_VERSION, 4,
        "this test upgrades to the current format"
    );
}
