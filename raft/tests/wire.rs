//! Every type one licd node sends another goes through `licd_raft::codec` (bincode 2 over
//! serde). bincode cannot encode every serde construct (it has no self-describing form), so
//! each message and error type is round-tripped here with realistic content.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use licd_raft::codec::{SnapshotChunk, decode, encode};
use licd_raft::command::{
    Allocate, Allocation, Batched, CoreFigures, Grant, LeaseCheckpoint, LeaseRef, Rejection,
};
use licd_raft::license::License;
use licd_raft::types::{
    Cores, LeaseTtl, LicenseId, MacAddr, NodeName, RequestId, Timestamp, TokenHash,
};
use licd_raft::{Code, Command, Outcome, Request, Response, TypeConfig};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader, InstallSnapshotError,
    NetworkError, QuorumNotEnough, RaftError, SnapshotMismatch, Unreachable,
};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, ClientWriteResponse, InstallSnapshotRequest,
    InstallSnapshotResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{
    AnyError, BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
    SnapshotSegmentId, StoredMembership, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + Debug>(value: &T) -> T {
    let bytes = encode(value).expect("encode");
    decode(&bytes).expect("decode")
}

/// Round-trips and compares; for types without `PartialEq` the `Debug` forms are compared.
fn assert_round_trip<T: Serialize + DeserializeOwned + Debug>(value: T) {
    let back = round_trip(&value);
    assert_eq!(format!("{back:?}"), format!("{value:?}"));
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 2), index)
}

fn membership() -> Membership<u64, BasicNode> {
    Membership::new(
        vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([2, 3, 4])],
        BTreeMap::from([
            (1, BasicNode::new("http://127.0.0.1:7001")),
            (2, BasicNode::new("http://127.0.0.1:7002")),
            (3, BasicNode::new("http://127.0.0.1:7003")),
            (4, BasicNode::new("http://127.0.0.1:7004")),
        ]),
    )
}

fn license() -> License {
    License {
        id: LicenseId::new("lic-7").unwrap(),
        customer: "Ünïcode Customer GmbH".into(),
        issued_at: Timestamp(1_700_000_000_000),
        expires_at: Some(Timestamp(1_800_000_000_000)),
        max_cores: 128,
        min_cores_per_node: 4,
        allowed_macs: BTreeSet::from([MacAddr::parse("aa:bb:cc:dd:ee:ff").unwrap()]),
        features: BTreeSet::from(["ocr".to_string(), "export".to_string()]),
        serial: 3,
    }
}

fn requests() -> Vec<Request> {
    let node = NodeName::new("app-1").unwrap();
    [
        Command::InstallLicense(license()),
        Command::RemoveLicense {
            license: LicenseId::new("lic-7").unwrap(),
        },
        Command::Allocate(Allocate {
            node: node.clone(),
            license: Some(LicenseId::new("lic-7").unwrap()),
            mac: MacAddr::parse("aa-bb-cc-dd-ee-ff").unwrap(),
            cores: Cores::new(8).unwrap(),
            lease_ttl: LeaseTtl::from_millis(30_000).unwrap(),
            token_hash: Some(TokenHash([7; 32])),
            presented: Some(TokenHash([9; 32])),
        }),
        Command::Release { node: node.clone() },
        Command::Checkpoint {
            leases: vec![
                LeaseCheckpoint {
                    node: node.clone(),
                    grant: 7,
                    remaining_ms: 29_500,
                },
                LeaseCheckpoint {
                    node: NodeName::new("app-2").unwrap(),
                    grant: u64::MAX,
                    remaining_ms: 0,
                },
            ],
        },
        Command::Checkpoint { leases: vec![] },
        Command::Expire {
            leases: vec![LeaseRef {
                node: node.clone(),
                grant: 7,
            }],
        },
        Command::Expire { leases: vec![] },
        Command::Batch(vec![
            Batched {
                request_id: RequestId::new("in-batch-1").unwrap(),
                command: Command::Release { node: node.clone() },
            },
            Batched {
                request_id: RequestId::new("in-batch-2").unwrap(),
                command: Command::Expire { leases: vec![] },
            },
        ]),
        Command::Batch(vec![]),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, command)| Request {
        // Every other entry carries no time: the voters' clocks did not agree.
        time: (i % 2 == 0).then(|| Timestamp(1_700_000_000_000 + i as u64)),
        request_id: RequestId::new(format!("r-{i}")).unwrap(),
        command,
    })
    .collect()
}

fn responses() -> Vec<Response> {
    let allocation = Allocation {
        license: LicenseId::new("lic-7").unwrap(),
        mac: MacAddr::parse("aa:bb:cc:dd:ee:ff").unwrap(),
        cores: Cores::new(2).unwrap(),
        counted_cores: 4,
        lease_ttl: LeaseTtl::from_millis(30_000).unwrap(),
        allocated_at: Timestamp(5),
        grant: 41,
        remaining_ms: 12_345,
        token_hash: Some(TokenHash([7; 32])),
    };
    vec![
        Ok(Outcome::Noop),
        Ok(Outcome::Allocated(Grant {
            node: NodeName::new("app-1").unwrap(),
            allocation: allocation.clone(),
            replaced: true,
            allocated_cores: 12,
            licensed_cores: 128,
        })),
        Ok(Outcome::Released {
            node: NodeName::new("app-1").unwrap(),
            freed: Some(allocation),
        }),
        Ok(Outcome::Checkpointed { updated: 2 }),
        Ok(Outcome::Expired {
            expired: vec![
                NodeName::new("app-2").unwrap(),
                NodeName::new("app-3").unwrap(),
            ],
        }),
        Ok(Outcome::Expired { expired: vec![] }),
        Err(Rejection {
            figures: Some(CoreFigures {
                requested: 8,
                available: 3,
                licensed: 128,
            }),
            ..Rejection::new(Code::CpuLimitExhausted)
        }),
        Err(Rejection::new(Code::InvalidMultiServerLicense)),
        Ok(Outcome::Batch(vec![
            Ok(Outcome::Checkpointed { updated: 0 }),
            Err(Rejection::new(Code::LeaseTokenMismatch)),
        ])),
    ]
}

fn entries() -> Vec<Entry<TypeConfig>> {
    let mut entries = vec![
        Entry {
            log_id: log_id(1, 0),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for (i, request) in requests().into_iter().enumerate() {
        entries.push(Entry {
            log_id: log_id(2, 2 + i as u64),
            payload: EntryPayload::Normal(request),
        });
    }
    entries
}

#[test]
fn log_entries_round_trip() {
    for entry in entries() {
        assert_eq!(round_trip(&entry), entry);
    }
}

#[test]
fn append_entries_round_trip() {
    assert_round_trip(AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 2),
        prev_log_id: Some(log_id(1, 1)),
        entries: entries(),
        leader_commit: Some(log_id(1, 1)),
    });
    for response in [
        AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(Some(log_id(2, 3))),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(9, 3)),
    ] {
        assert_eq!(round_trip(&response), response);
    }
}

#[test]
fn votes_round_trip() {
    let request = VoteRequest::new(Vote::new(4, 1), Some(log_id(3, 17)));
    assert_eq!(round_trip(&request), request);
    let response = VoteResponse::new(Vote::new(4, 1), Some(log_id(3, 17)), true);
    assert_eq!(round_trip(&response), response);
}

#[test]
fn snapshot_messages_round_trip() {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2, 40)),
        last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        snapshot_id: "2-2-40".into(),
    };
    let request = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 2),
        meta,
        offset: 1 << 20,
        data: (0..=255).collect(),
        done: true,
    };
    assert_eq!(round_trip(&request), request);
    // licd sends a chunk as its own mirror of the message: byte for byte the same, both ways.
    let chunk = SnapshotChunk::from(request.clone());
    assert_eq!(encode(&chunk).unwrap(), encode(&request).unwrap());
    let back: SnapshotChunk = decode(&encode(&request).unwrap()).unwrap();
    assert_eq!(InstallSnapshotRequest::from(back), request);
    assert_round_trip(InstallSnapshotResponse {
        vote: Vote::new(2, 2),
    });
    assert_eq!(
        round_trip(&SnapshotResponse::new(Vote::new(2, 2))),
        SnapshotResponse::new(Vote::new(2, 2))
    );
}

#[test]
fn responses_round_trip() {
    for response in responses() {
        assert_eq!(round_trip(&response), response);
        assert_round_trip(ClientWriteResponse::<TypeConfig> {
            log_id: log_id(2, 9),
            data: response,
            membership: Some(membership()),
        });
    }
}

#[test]
fn errors_round_trip() {
    let forward =
        ForwardToLeader::<u64, BasicNode>::new(2, BasicNode::new("http://127.0.0.1:7002"));
    assert_round_trip(
        RaftError::<u64, ClientWriteError<u64, BasicNode>>::APIError(
            ClientWriteError::ForwardToLeader(forward.clone()),
        ),
    );
    assert_round_trip(
        RaftError::<u64, CheckIsLeaderError<u64, BasicNode>>::APIError(
            CheckIsLeaderError::QuorumNotEnough(QuorumNotEnough {
                cluster: "{1,2,3}".into(),
                got: BTreeSet::from([1]),
            }),
        ),
    );
    assert_round_trip(
        RaftError::<u64, CheckIsLeaderError<u64, BasicNode>>::APIError(
            CheckIsLeaderError::ForwardToLeader(forward),
        ),
    );
    assert_round_trip(RaftError::<u64, InstallSnapshotError>::APIError(
        InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
            expect: SnapshotSegmentId {
                id: "a".into(),
                offset: 0,
            },
            got: SnapshotSegmentId {
                id: "b".into(),
                offset: 7,
            },
        }),
    ));
    assert_round_trip(RaftError::<u64>::Fatal(Fatal::Panicked));
    assert_round_trip(RaftError::<u64>::Fatal(Fatal::Stopped));
    let nested = AnyError::error("disk full").add_context(|| "appending");
    assert_round_trip(NetworkError::new(&nested));
    assert_round_trip(Unreachable::new(&nested));
}

#[test]
fn truncated_or_padded_bytes_are_decode_errors() {
    let bytes = encode(&entries()).unwrap();
    assert!(decode::<Vec<Entry<TypeConfig>>>(&bytes[..bytes.len() - 1]).is_err());
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(decode::<Vec<Entry<TypeConfig>>>(&padded).is_err());
    // A value that fails validation on the way in is a decode error, not a panic.
    let bad_node = encode(&"bad node name").unwrap();
    assert!(decode::<NodeName>(&bad_node).is_err());
}
