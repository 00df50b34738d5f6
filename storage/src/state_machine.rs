//! [`StateMachineStore`]: the applied license state and its snapshots (openraft's
//! `RaftStateMachine`).
//!
//! The state lives in memory behind a lock that the node's read path shares
//! ([`StateMachineStore::state`]). It is made durable by snapshots, each stored in the
//! `snapshot` tree and flushed before it is reported, plus the log after it.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use licd_raft::codec::{CodecError, decode, encode_append};
use licd_raft::events::{EventKind, EventLog};
use licd_raft::{LicenseState, Outcome, RaftNodeId, Response, TypeConfig};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend,
    RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::error::{OpenError, StorageResult, io_error};
use crate::format::{decode_versioned, encode_versioned_sized};

/// The `snapshot` key of the current snapshot.
pub(crate) const CURRENT: &[u8] = b"current";

/// Everything the state machine has applied: the snapshot data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last log entry applied.
    pub last_applied: Option<LogId<RaftNodeId>>,
    /// The last membership configuration applied.
    pub last_membership: StoredMembership<RaftNodeId, BasicNode>,
    /// The license state.
    pub licenses: LicenseState,
    /// The usage history derived from the entries applied ([`licd_raft::events`]). It is
    /// part of the snapshot, so that a node that installs one holds the same history as the
    /// nodes that applied every entry.
    pub events: EventLog,
}

/// A snapshot as it is stored: its metadata and its encoded [`AppliedState`].
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    /// openraft's snapshot metadata.
    pub(crate) meta: SnapshotMeta<RaftNodeId, BasicNode>,
    /// The versioned, encoded [`AppliedState`]. Encoded as bytes: the same bincode bytes as
    /// a sequence of `u8` (the test below holds them to it), copied at once.
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

impl StoredSnapshot {
    /// The stored bytes, the only encoder of the record (snapshots built, installed, restored
    /// and upgraded): the same as the bincode of the struct (the test below holds them to
    /// it), written into one buffer of the right size, the data copied once.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(self.data.len() + 1024);
        encode_append(&self.meta, &mut out)?;
        encode_append(serde_bytes::Bytes::new(&self.data), &mut out)?;
        Ok(out)
    }
}

/// The state machine of one node. Cheap to clone: clones share the state and the tree.
#[derive(Clone)]
pub struct StateMachineStore {
    db: sled::Db,
    snapshots: sled::Tree,
    state: Arc<RwLock<AppliedState>>,
    /// The size of the last snapshot's data, the room made for the next one's.
    last_snapshot_len: Arc<AtomicUsize>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the state from the stored snapshot if there is one.
    pub(crate) fn new(db: &sled::Db) -> Result<Self, OpenError> {
        let snapshots = db.open_tree("snapshot")?;
        let mut last_snapshot_len = 0;
        let state = match snapshots.get(CURRENT)? {
            None => AppliedState::default(),
            Some(bytes) => {
                let stored: StoredSnapshot = decode(&bytes)?;
                last_snapshot_len = stored.data.len();
                let state: AppliedState = decode_versioned(&stored.data)?;
                if state.last_applied != stored.meta.last_log_id {
                    return Err(OpenError::Inconsistent(format!(
                        "snapshot meta says {:?}, its data {:?}",
                        stored.meta.last_log_id, state.last_applied
                    )));
                }
                state
            }
        };
        Ok(StateMachineStore {
            db: db.clone(),
            snapshots,
            state: Arc::new(RwLock::new(state)),
            last_snapshot_len: Arc::new(AtomicUsize::new(last_snapshot_len)),
        })
    }

    /// The applied state, shared with the node's read path. Hold the lock briefly: apply waits
    /// for it.
    pub fn state(&self) -> Arc<RwLock<AppliedState>> {
        self.state.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        // A panic while holding the lock cannot leave the state half-changed: apply mutates it
        // only through LicenseState::apply, which does not panic, so a poisoned lock is usable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a snapshot as the current one and flushes it.
    async fn store_snapshot(&self, stored: &StoredSnapshot) -> StorageResult<()> {
        let signature = Some(stored.meta.signature());
        let bytes = stored.encode().map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(signature.clone(), &e))
        })?;
        self.snapshots.insert(CURRENT, bytes).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(signature.clone(), &e))
        })?;
        self.db
            .flush_async()
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(signature, &e)))?;
        Ok(())
    }
}

/// The snapshot id of a state: its last log id. Applying is deterministic, so two snapshots
/// with the same last log id hold the same state, and the id need not be more unique.
pub(crate) fn snapshot_id(last: &Option<LogId<RaftNodeId>>) -> String {
    match last {
        Some(id) => format!(
            "{}-{}-{}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => "empty".to_string(),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // A copy of the state, taken under the lock: O(1), because the tables that grow are
        // persistent maps that share their nodes with the live state. The encoding, which
        // walks every table (the exactly-once table holds up to 100,000 requests), runs with
        // the lock released, on a blocking thread, so apply and reads go on meanwhile.
        let state = self.read().clone();
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.last_membership.clone(),
            snapshot_id: snapshot_id(&state.last_applied),
        };
        // Room for the last snapshot's size and an eighth more: a state of megabytes is
        // encoded into one buffer, not one that grows (each step a copy into fresh memory).
        let last = self.last_snapshot_len.load(Ordering::Relaxed);
        let room = last.saturating_add(last / 8);
        let data = tokio::task::spawn_blocking(move || encode_versioned_sized(&state, room))
            .await
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?
            .map_err(|e| io_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let stored = StoredSnapshot { meta, data };
        self.store_snapshot(&stored).await?;
        self.last_snapshot_len
            .store(stored.data.len(), Ordering::Relaxed);
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "snapshot built");
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<RaftNodeId>>,
        StoredMembership<RaftNodeId, BasicNode>,
    )> {
        let state = self.read();
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut state = self.write();
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            let response = match entry.payload {
                EntryPayload::Blank => Ok(Outcome::Noop),
                EntryPayload::Normal(request) => {
                    let (response, events) = state.licenses.apply_with_events(&request);
                    let clock = state.licenses.clock();
                    state.events.record(index, request.time, clock, events);
                    response
                }
                EntryPayload::Membership(membership) => {
                    let changed = EventKind::MembershipChanged {
                        voters: membership.voter_ids().collect(),
                        learners: membership.learner_ids().collect(),
                    };
                    let clock = state.licenses.clock();
                    state.events.record(index, None, clock, vec![changed]);
                    state.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(Outcome::Noop)
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        // Decoding the whole state is the long part: off the async threads.
        let (new_state, data) = tokio::task::spawn_blocking(move || {
            let state: Result<AppliedState, _> = decode_versioned(&data);
            (state, data)
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::read_snapshot(signature.clone(), &e)))?;
        let new_state = new_state.map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(signature.clone(), &e))
        })?;
        if new_state.last_applied != meta.last_log_id
            || new_state.last_membership != meta.last_membership
        {
            let e = std::io::Error::other(format!(
                "snapshot {} holds state up to {:?}, its meta says {:?}",
                meta.snapshot_id, new_state.last_applied, meta.last_log_id
            ));
            return Err(StorageIOError::read_snapshot(signature, &e).into());
        }
        // Durable first, then visible: a crash in between restarts from the new snapshot.
        let data_len = data.len();
        self.store_snapshot(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        self.last_snapshot_len.store(data_len, Ordering::Relaxed);
        *self.write() = new_state;
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        // Megabytes to read and copy: off the async threads, as the build's encoding is.
        let snapshots = self.snapshots.clone();
        let stored = tokio::task::spawn_blocking(move || -> Result<_, std::io::Error> {
            let Some(bytes) = snapshots.get(CURRENT)? else {
                return Ok(None);
            };
            let stored: StoredSnapshot = decode(&bytes).map_err(std::io::Error::other)?;
            Ok(Some(stored))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|read| read)
        .map_err(|e| StorageError::from(StorageIOError::read_snapshot(None, &e)))?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use licd_raft::codec::encode;

    /// Snapshots stored before `data` was encoded as bytes hold it as a sequence of `u8`:
    /// both encodings must be the very same bytes, so that those still decode.
    #[test]
    fn snapshot_data_as_bytes_is_encoded_as_the_sequence_of_u8_was() {
        #[derive(Serialize)]
        struct AsSequence {
            meta: SnapshotMeta<RaftNodeId, BasicNode>,
            data: Vec<u8>,
        }
        let meta = SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "empty".into(),
        };
        for data in [
            vec![],
            vec![0, 1, 250, 251, 255],
            (0..=255).cycle().take(70_000).collect(),
        ] {
            let old = encode(&AsSequence {
                meta: meta.clone(),
                data: data.clone(),
            })
            .unwrap();
            let stored = StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            };
            assert_eq!(old, encode(&stored).unwrap());
            assert_eq!(old, stored.encode().unwrap());
            let back: StoredSnapshot = decode(&old).unwrap();
            assert_eq!(back.data, data);
        }
    }
}
