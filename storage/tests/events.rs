//! The usage history at the storage layer: it is derived at apply, travels with snapshots,
//! and is the same on a node that applied every entry and on one that installed a snapshot
//! on the way; a database of format 3 (no history) is upgraded and starts its history at
//! the first retention entry after the upgrade.

use std::collections::BTreeSet;

use licd_raft::codec::encode;
use licd_raft::command::Allocate;
use licd_raft::events::{EventKind, Retention};
use licd_raft::license::License;
use licd_raft::types::{
    Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash,
};
use licd_raft::{Code, Command, LicenseState, RaftNodeId, Request, TypeConfig};
use licd_storage::format::FORMAT_VERSION;
use licd_storage::upgrade::AppliedState3;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
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

fn license() -> License {
    License {
        id: LicenseId::new("lic").unwrap(),
        customer: "Example".into(),
        issued_at: Timestamp(0),
        expires_at: None,
        max_cores: 16,
        min_cores_per_node: 4,
        allowed_macs: BTreeSet::from([mac(1), mac(2)]),
        features: BTreeSet::new(),
        serial: 1,
    }
}

fn allocate(name: &str, mac_n: u8, cores: u32) -> Command {
    Command::Allocate(Allocate {
        node: NodeName::new(name).unwrap(),
        license: None,
        mac: mac(mac_n),
        cores: Cores::new(cores).unwrap(),
        lease_ttl: LeaseTtl::from_millis(60_000).unwrap(),
        token_hash: Some(TokenHash([mac_n; 32])),
        presented: None,
    })
}

fn membership(voters: &[u64]) -> Membership<RaftNodeId, BasicNode> {
    let ids: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: std::collections::BTreeMap<u64, BasicNode> =
        ids.iter().map(|id| (*id, BasicNode::default())).collect();
    Membership::new(vec![ids], nodes)
}

fn normal(index: u64, command: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request {
            time: (index % 3 != 0).then_some(Timestamp(1_000 * index)),
            request_id: RequestId::new(format!("req-{index}")).unwrap(),
            command,
        }),
    }
}

/// A log that starts the history, installs a license, allocates, is refused, changes
/// membership, is refused again, releases and allocates again. Entries 3 and 6 carry no
/// stamp (the voters' clocks did not agree), the others `1000 * index`.
fn log() -> Vec<Entry<TypeConfig>> {
    let membership_entry = |index: u64, voters: &[u64]| Entry {
        log_id: log_id(index),
        payload: EntryPayload::Membership(membership(voters)),
    };
    vec![
        membership_entry(0, &[1]),
        normal(
            1,
            Command::SetEventRetention {
                retention: Retention::default(),
            },
        ),
        normal(2, Command::InstallLicense(license())),
        normal(3, allocate("a", 1, 6)),
        normal(4, allocate("b", 2, 12)),
        membership_entry(5, &[1, 2]),
        normal(6, allocate("c", 3, 4)),
        normal(
            7,
            Command::Release {
                node: NodeName::new("a").unwrap(),
            },
        ),
        normal(8, allocate("b", 2, 12)),
    ]
}

#[tokio::test]
async fn the_history_is_the_same_after_every_entry_or_a_snapshot_on_the_way() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let entries = log();
    let (_log_a, mut a) = licd_storage::open(dir_a.path()).unwrap();
    a.apply(entries[..5].to_vec()).await.unwrap();
    let snapshot = a.build_snapshot().await.unwrap();
    a.apply(entries[5..].to_vec()).await.unwrap();

    let (_log_b, mut b) = licd_storage::open(dir_b.path()).unwrap();
    b.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    b.apply(entries[5..].to_vec()).await.unwrap();

    let history_a = a.state().read().unwrap().events.clone();
    let history_b = b.state().read().unwrap().events.clone();
    assert_eq!(history_a, history_b);

    let kinds: Vec<String> = history_a
        .iter()
        .map(|e| match &e.kind {
            EventKind::RetentionChanged { .. } => "retention".to_string(),
            EventKind::LicenseInstalled { max_cores, .. } => format!("installed {max_cores}"),
            EventKind::Allocated { node, cores, .. } => format!("allocated {node} {cores}"),
            EventKind::Refused { node, code, .. } => format!("refused {node} {code}"),
            EventKind::Freed { node, .. } => format!("freed {node}"),
            EventKind::MembershipChanged { voters, .. } => format!("members {voters:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "retention",
            "installed 16",
            "allocated a 6",
            "refused b CPU_LIMIT_EXHAUSTED",
            "members [1, 2]",
            "refused c INVALID_MULTI_SERVER_LICENSE",
            "freed a",
            "allocated b 12",
        ]
    );
    // Each event names its entry; a membership entry has no stamp, and an entry without one
    // is placed at the cluster clock (the last stamp before it).
    let indexes: Vec<u64> = history_a.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [1, 2, 3, 4, 5, 6, 7, 8]);
    let members = history_a.iter().nth(4).unwrap();
    assert_eq!((members.time, members.clock), (None, Timestamp(4_000)));
    let refused_c = history_a.iter().nth(5).unwrap();
    assert_eq!((refused_c.time, refused_c.clock), (None, Timestamp(4_000)));
    let allocated_a = history_a.iter().nth(2).unwrap();
    assert_eq!(
        (allocated_a.time, allocated_a.clock),
        (None, Timestamp(2_000))
    );
    let freed_a = history_a.iter().nth(6).unwrap();
    assert_eq!(
        (freed_a.time, freed_a.clock),
        (Some(Timestamp(7_000)), Timestamp(7_000))
    );
    // Refusals are deterministic, as the rules are: the refused entry 4 is b asking for 12
    // of the 10 cores left.
    assert!(matches!(
        history_a.iter().nth(3).unwrap().kind,
        EventKind::Refused {
            code: Code::CpuLimitExhausted,
            cores: 12,
            ..
        }
    ));
}

/// The stored snapshot's shape (`licd_storage`'s private `StoredSnapshot`).
#[derive(Serialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, BasicNode>,
    data: Vec<u8>,
}

#[tokio::test]
async fn a_format_3_database_is_upgraded_and_its_history_starts_at_the_next_retention_entry() {
    let dir = TempDir::new().unwrap();
    let entries = log();
    // Format 3's state after entries 0..=3: the license and a's allocation, no history (entry
    // 1 lies inside the snapshot, where its only effect is the clock).
    let mut licenses = LicenseState::new();
    for e in &entries[..4] {
        if let EntryPayload::Normal(request) = &e.payload {
            let _ = licenses.apply(request);
        }
    }
    let old = AppliedState3 {
        last_applied: Some(log_id(3)),
        last_membership: StoredMembership::new(Some(log_id(0)), membership(&[1])),
        licenses: licenses.clone(),
    };
    {
        let db = licd_storage::open_sled(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"format", encode(&3u32).unwrap()).unwrap();
        let tree = db.open_tree("log").unwrap();
        for entry in &entries {
            tree.insert(entry.log_id.index.to_be_bytes(), encode(entry).unwrap())
                .unwrap();
        }
        let mut data = 3u32.to_le_bytes().to_vec();
        data.extend(encode(&old).unwrap());
        let snapshot = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: old.last_applied,
                last_membership: old.last_membership.clone(),
                snapshot_id: "1-1-3".into(),
            },
            data,
        };
        db.open_tree("snapshot")
            .unwrap()
            .insert(b"current", encode(&snapshot).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    let (_log, mut sm) = licd_storage::open(dir.path()).expect("the upgrade opens it");
    {
        let state = sm.state();
        let state = state.read().unwrap();
        assert_eq!(state.licenses, licenses, "the license state is kept");
        assert!(state.events.is_empty());
        assert_eq!(
            state.events.retention(),
            None,
            "the history has not started"
        );
    }
    // Entries after the snapshot (none a retention entry) record nothing; the first
    // retention entry after them starts the history.
    sm.apply(entries[4..].to_vec()).await.unwrap();
    assert!(sm.state().read().unwrap().events.is_empty());
    let next = entries.len() as u64;
    sm.apply(vec![
        normal(
            next,
            Command::SetEventRetention {
                retention: Retention::default(),
            },
        ),
        normal(
            next + 1,
            Command::Release {
                node: NodeName::new("b").unwrap(),
            },
        ),
    ])
    .await
    .unwrap();
    let history = sm.state().read().unwrap().events.clone();
    let indexes: Vec<u64> = history.iter().map(|e| e.index).collect();
    assert_eq!(indexes, [next, next + 1]);

    // The database is in the current format now, and reopens as is.
    drop((_log, sm));
    let db = licd_storage::open_sled(dir.path()).unwrap();
    let marker = db
        .open_tree("meta")
        .unwrap()
        .get("format")
        .unwrap()
        .unwrap();
    let marker: u32 = licd_raft::codec::decode(&marker).unwrap();
    assert_eq!((marker, FORMAT_VERSION), (4, 4));
}
