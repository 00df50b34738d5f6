//! Durability across a restart: drop every handle to the sled database, open it again, and find
//! the vote, the log, the committed index and the license state as they were.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use licd_raft::command::Allocate;
use licd_raft::license::License;
use licd_raft::types::{
    Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash,
};
use licd_raft::{Command, Outcome, Request, TypeConfig};
use licd_storage::{LogStore, StateMachineStore};
use openraft::storage::{
    RaftLogStorage, RaftLogStorageExt, RaftStateMachine, Snapshot, StorageHelper,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    Vote,
};
use tempfile::TempDir;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn license() -> License {
    License {
        id: LicenseId::new("lic").unwrap(),
        customer: "Example".into(),
        issued_at: Timestamp(0),
        expires_at: None,
        max_cores: 64,
        min_cores_per_node: 4,
        allowed_macs: (0..5).map(server_mac).collect(),
        features: BTreeSet::new(),
        serial: 1,
    }
}

fn request(n: u64, command: Command) -> Request {
    Request {
        time: Some(Timestamp(1_000 * n)),
        request_id: RequestId::new(format!("req-{n}")).unwrap(),
        command,
    }
}

/// The MAC of `server-<n>`.
fn server_mac(n: u64) -> MacAddr {
    MacAddr::from_bytes([2, 0, 0, 0, 0, n as u8 + 1])
}

/// An allocation of `server-<server>`, presenting the token its earlier allocations got, so
/// that every one applies.
fn allocate(n: u64, server: u64, cores: u32) -> Command {
    let token = TokenHash([server as u8; 32]);
    Command::Allocate(Allocate {
        node: NodeName::new(format!("server-{server}")).unwrap(),
        license: None,
        mac: server_mac(server),
        cores: Cores::new(cores).unwrap(),
        lease_ttl: LeaseTtl::from_millis(3_600_000 + n).unwrap(),
        token_hash: Some(token),
        presented: Some(token),
    })
}

/// Entries 0..=n: a membership entry, the license, then allocations.
fn entries(n: u64) -> Vec<Entry<TypeConfig>> {
    (0..=n)
        .map(|i| {
            let payload = match i {
                0 => EntryPayload::Membership(Membership::new(
                    vec![BTreeSet::from([1, 2, 3])],
                    BTreeMap::from([
                        (1, Default::default()),
                        (2, Default::default()),
                        (3, Default::default()),
                    ]),
                )),
                1 => EntryPayload::Normal(request(i, Command::InstallLicense(license()))),
                _ => EntryPayload::Normal(request(i, allocate(i, i % 5, 6))),
            };
            Entry {
                log_id: log_id(1, i),
                payload,
            }
        })
        .collect()
}

fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    licd_storage::open(dir).expect("open stores")
}

/// A state machine at `dir` that applied 12 entries, and the snapshot it built of them.
async fn leader_snapshot(dir: &Path) -> (StateMachineStore, Snapshot<TypeConfig>) {
    let (_log, mut leader) = open(dir);
    leader.apply(entries(12)).await.unwrap();
    let snapshot = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    (leader, snapshot)
}

#[tokio::test]
async fn vote_log_committed_and_state_survive_a_reopen() {
    let dir = TempDir::new().unwrap();
    let expected_state;
    {
        let (mut log, mut sm) = open(dir.path());
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.blocking_append(entries(20)).await.unwrap();
        log.save_committed(Some(log_id(1, 20))).await.unwrap();

        // Apply up to 10, snapshot there, then apply the rest: the restart must find the
        // snapshot and re-apply 11..=20 from the log.
        let mut all = entries(20);
        let tail = all.split_off(11);
        let responses = sm.apply(all).await.unwrap();
        assert!(matches!(responses[1], Ok(Outcome::LicenseInstalled { .. })));
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        sm.apply(tail).await.unwrap();
        expected_state = sm.state().read().unwrap().clone();
        assert_eq!(expected_state.last_applied, Some(log_id(1, 20)));
        assert!(!expected_state.licenses.allocations().is_empty());
        log.flush().await.unwrap();
    }

    let (mut log, mut sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 20)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 20)));
    assert_eq!(state.last_purged_log_id, None);
    assert_eq!(log.try_get_log_entries(0..=20).await.unwrap(), entries(20));

    // Before recovery the state machine holds the snapshot...
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 10)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 0)));
    // ...and openraft's start-up re-applies the committed rest.
    StorageHelper::new(&mut log, &mut sm)
        .get_initial_state()
        .await
        .unwrap();
    assert_eq!(*sm.state().read().unwrap(), expected_state);
}

#[tokio::test]
async fn truncate_and_purge_are_exact_and_durable() {
    let dir = TempDir::new().unwrap();
    {
        let (mut log, _sm) = open(dir.path());
        log.blocking_append(entries(10)).await.unwrap();
        log.truncate(log_id(1, 7)).await.unwrap();
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, entries(6));
        log.purge(log_id(1, 3)).await.unwrap();
        let got = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(got, entries(6)[4..].to_vec());
    }
    let (mut log, _sm) = open(dir.path());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 6)));
    let got = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(got, entries(6)[4..].to_vec());

    // Purging everything leaves the purged id as the last log id.
    log.purge(log_id(1, 6)).await.unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(1, 6)));
    assert!(log.try_get_log_entries(0..100).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_installed_snapshot_survives_a_reopen_and_a_bad_one_is_refused() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();
    let (leader, snapshot) = leader_snapshot(leader_dir.path()).await;
    let expected = leader.state().read().unwrap().clone();
    {
        let (_log, mut follower) = open(follower_dir.path());
        // A snapshot whose data does not match its meta is refused and changes nothing.
        let mut wrong_meta = snapshot.meta.clone();
        wrong_meta.last_log_id = Some(log_id(1, 99));
        let err = follower
            .install_snapshot(&wrong_meta, snapshot.snapshot.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("snapshot"), "{err}");
        let garbage = Box::new(std::io::Cursor::new(vec![0xff; 16]));
        assert!(
            follower
                .install_snapshot(&snapshot.meta, garbage)
                .await
                .is_err()
        );
        assert_eq!(follower.applied_state().await.unwrap().0, None);

        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
            .await
            .unwrap();
        assert_eq!(*follower.state().read().unwrap(), expected);
    }
    let (_log, mut follower) = open(follower_dir.path());
    assert_eq!(*follower.state().read().unwrap(), expected);
    let current = follower.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);
}

#[tokio::test]
async fn a_corrupt_stored_snapshot_is_an_open_error_not_a_panic() {
    let dir = TempDir::new().unwrap();
    // A database of this format (marked by a first open) whose snapshot is then corrupted.
    drop(open(dir.path()));
    {
        let db = licd_storage::open_sled(dir.path()).unwrap();
        db.open_tree("snapshot")
            .unwrap()
            .insert("current", vec![1, 2, 3])
            .unwrap();
        db.flush().unwrap();
    }
    let err = licd_storage::open(dir.path())
        .err()
        .expect("open must fail");
    assert!(err.to_string().contains("snapshot"), "{err}");
}

#[tokio::test]
async fn a_database_without_a_format_marker_but_with_data_is_refused_as_version_1() {
    let dir = TempDir::new().unwrap();
    {
        // A database as the format before the marker wrote it: a log, a vote, no `format`.
        let (mut log, _sm) = open(dir.path());
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.blocking_append(entries(5)).await.unwrap();
        log.flush().await.unwrap();
    }
    {
        let db = licd_storage::open_sled(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert!(
            meta.remove("format").unwrap().is_some(),
            "a new database is marked"
        );
        db.flush().unwrap();
    }
    for _ in 0..2 {
        // Refused, and refused again: the refusal writes no marker of its own.
        let err = licd_storage::open(dir.path())
            .err()
            .expect("an unmarked database with data must not open");
        assert!(matches!(err, licd_storage::OpenError::Format(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "stored format version 1, but this licd reads version {} only",
                licd_storage::format::FORMAT_VERSION
            )),
            "{text}"
        );
    }
    // The refusal left the data as it was.
    let db = licd_storage::open_sled(dir.path()).unwrap();
    assert_eq!(db.open_tree("log").unwrap().len(), 6);
    assert!(
        db.open_tree("meta")
            .unwrap()
            .get("format")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_empty_unmarked_database_opens_and_is_marked() {
    let dir = TempDir::new().unwrap();
    drop(sled::open(dir.path()).unwrap());
    {
        let (mut log, _sm) = open(dir.path());
        log.save_vote(&Vote::new(1, 1)).await.unwrap();
        log.flush().await.unwrap();
    }
    {
        let db = licd_storage::open_sled(dir.path()).unwrap();
        let marker = db.open_tree("meta").unwrap().get("format").unwrap();
        let marker: u32 = licd_raft::codec::decode(&marker.expect("marked")).unwrap();
        assert_eq!(marker, licd_storage::format::FORMAT_VERSION);
    }
    let (mut log, _sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
}

#[tokio::test]
async fn a_snapshot_of_another_format_version_is_refused_by_install() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();
    let (_leader, snapshot) = leader_snapshot(leader_dir.path()).await;
    let data = snapshot.snapshot.get_ref().clone();
    let version = licd_storage::format::FORMAT_VERSION;
    assert_eq!(
        data[..4],
        version.to_le_bytes(),
        "snapshot data opens with the version"
    );

    let (_log, mut follower) = open(follower_dir.path());
    for other in [1u32, version + 1] {
        let mut bytes = data.clone();
        bytes[..4].copy_from_slice(&other.to_le_bytes());
        let err = follower
            .install_snapshot(&snapshot.meta, Box::new(std::io::Cursor::new(bytes)))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("stored format version {other}")),
            "{err}"
        );
        assert_eq!(follower.applied_state().await.unwrap().0, None);
        assert!(follower.get_current_snapshot().await.unwrap().is_none());
    }
    // The same snapshot in this build's version installs.
    follower
        .install_snapshot(&snapshot.meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();
    assert_eq!(
        follower.applied_state().await.unwrap().0,
        snapshot.meta.last_log_id
    );
}
