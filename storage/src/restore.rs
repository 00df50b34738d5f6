//! A fresh database from a backed-up snapshot: the first data directory of a new cluster.
//!
//! The snapshot's data (as [`crate::StateMachineStore`] built it: the versioned applied
//! state) is decoded only to replace its membership with the new cluster's members; the
//! license state, the cluster clock and the remembered request ids come across unchanged.
//! The database then holds that snapshot as its current one, the log purged up to the
//! snapshot's last log id, a vote in the snapshot's term (so the new cluster's first leader
//! is elected in a later term and its entries follow the snapshot's), and the new cluster id.
//! A node started on it loads the snapshot and campaigns among the new members.

use std::collections::BTreeMap;
use std::path::Path;

use licd_raft::RaftNodeId;
use licd_raft::codec::{CodecError, encode};
use openraft::{BasicNode, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

use crate::cluster_id::CLUSTER_ID_KEY;
use crate::format::{FormatError, decode_versioned, encode_versioned};
use crate::log_store::{LAST_PURGED, VOTE};
use crate::state_machine::{AppliedState, CURRENT, StoredSnapshot, snapshot_id};

/// What to restore, and as which member of which new cluster.
#[derive(Debug, Clone)]
pub struct RestorePlan<'a> {
    /// The snapshot data, as built by a node (opaque to the caller).
    pub data: &'a [u8],
    /// The last log id the snapshot's metadata names: the data must hold the same.
    pub last_log_id: Option<LogId<RaftNodeId>>,
    /// This node's id in the new cluster.
    pub node_id: RaftNodeId,
    /// The new cluster's voters, id to `host:port`; must include `node_id`.
    pub members: BTreeMap<RaftNodeId, String>,
    /// The new cluster's id.
    pub cluster_id: &'a str,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The last log id the restored state covers.
    pub last_log_id: LogId<RaftNodeId>,
    /// Licenses in the restored state.
    pub licenses: usize,
    /// Allocations in the restored state.
    pub allocations: usize,
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target directory holds something already.
    #[error("{0} is not empty: a restore writes a fresh data directory only")]
    NotEmpty(String),
    /// The members do not make a cluster this node belongs to.
    #[error("{0}")]
    Members(String),
    /// The snapshot's data is of another stored format.
    #[error("the snapshot's data: {0}")]
    Format(#[from] FormatError),
    /// The snapshot covers no log entry at all.
    #[error("the snapshot is empty: it covers no log entry")]
    Empty,
    /// The snapshot's data disagrees with its metadata.
    #[error("the snapshot is inconsistent: {0}")]
    Inconsistent(String),
    /// Encoding the new database's values failed.
    #[error("cannot encode the restored state: {0}")]
    Codec(#[from] CodecError),
    /// sled failed.
    #[error("cannot write the database at {path}: {source}")]
    Sled {
        /// The database directory.
        path: String,
        /// sled's error.
        source: sled::Error,
    },
    /// The database written does not open as it should.
    #[error("the restored database does not open: {0}")]
    Verify(String),
}

/// Checks a restore without writing anything: the data decodes in this build's format,
/// matches its metadata, and the members include the node. Returns what it would restore.
pub fn check(plan: &RestorePlan<'_>) -> Result<(AppliedState, Restored), RestoreError> {
    if plan.members.is_empty() {
        return Err(RestoreError::Members(
            "the new cluster needs members".into(),
        ));
    }
    if !plan.members.contains_key(&plan.node_id) {
        return Err(RestoreError::Members(format!(
            "the members must include this node ({})",
            plan.node_id
        )));
    }
    if plan.cluster_id.trim().is_empty() {
        return Err(RestoreError::Members("the cluster id is empty".into()));
    }
    inspect(plan.data, plan.last_log_id)
}

/// Reads a snapshot's data as this build would restore it: in this build's stored format,
/// holding the state up to `last_log_id` (what its metadata says), which is not empty.
pub fn inspect(
    data: &[u8],
    last_log_id: Option<LogId<RaftNodeId>>,
) -> Result<(AppliedState, Restored), RestoreError> {
    let state: AppliedState = decode_versioned(data)?;
    if state.last_applied != last_log_id {
        return Err(RestoreError::Inconsistent(format!(
            "its metadata says {:?}, its data holds {:?}",
            last_log_id, state.last_applied
        )));
    }
    let Some(last_log_id) = state.last_applied else {
        return Err(RestoreError::Empty);
    };
    let restored = Restored {
        last_log_id,
        licenses: state.licenses.licenses().len(),
        allocations: state.licenses.allocations().len(),
    };
    Ok((state, restored))
}

/// Writes a fresh database at `path` (absent or an empty directory) holding the snapshot of
/// `plan` as the first state of a new cluster; see the module documentation.
pub fn restore(path: &Path, plan: &RestorePlan<'_>) -> Result<Restored, RestoreError> {
    let (mut state, restored) = check(plan)?;
    if path.exists() {
        let empty = std::fs::read_dir(path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(RestoreError::NotEmpty(path.display().to_string()));
        }
    }
    let last = restored.last_log_id;
    let nodes: BTreeMap<RaftNodeId, BasicNode> = plan
        .members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    let voters = nodes.keys().copied().collect();
    state.last_membership = StoredMembership::new(Some(last), Membership::new(vec![voters], nodes));
    let stored = StoredSnapshot {
        meta: SnapshotMeta {
            last_log_id: Some(last),
            last_membership: state.last_membership.clone(),
            snapshot_id: snapshot_id(&Some(last)),
        },
        data: encode_versioned(&state)?,
    };
    let vote: Vote<RaftNodeId> = Vote::new(last.leader_id.term, plan.node_id);
    let sled_error = |source| RestoreError::Sled {
        path: path.display().to_string(),
        source,
    };
    {
        let db = sled::Config::new().path(path).open().map_err(sled_error)?;
        crate::format::check_database(&db).map_err(|e| RestoreError::Verify(e.to_string()))?;
        let meta = db.open_tree("meta").map_err(sled_error)?;
        let snapshots = db.open_tree("snapshot").map_err(sled_error)?;
        snapshots
            .insert(CURRENT, stored.encode()?)
            .map_err(sled_error)?;
        meta.insert(LAST_PURGED, encode(&last)?)
            .map_err(sled_error)?;
        meta.insert(VOTE, encode(&vote)?).map_err(sled_error)?;
        meta.insert(CLUSTER_ID_KEY, plan.cluster_id.as_bytes())
            .map_err(sled_error)?;
        db.flush().map_err(sled_error)?;
    }
    // Read back what was written, as a node would at start.
    let (log, sm) = crate::open(path).map_err(|e| RestoreError::Verify(e.to_string()))?;
    let state_back = sm.state();
    let back = state_back.read().unwrap_or_else(|p| p.into_inner());
    if back.last_applied != Some(last) || back.last_membership != state.last_membership {
        return Err(RestoreError::Verify(
            "the restored snapshot reads back differently".into(),
        ));
    }
    let id = log
        .cluster_id()
        .map_err(|e| RestoreError::Verify(e.to_string()))?;
    if id.as_deref() != Some(plan.cluster_id) {
        return Err(RestoreError::Verify(
            "the cluster id reads back differently".into(),
        ));
    }
    Ok(restored)
}
