//! The upgrades of a database of stored format 2 (before lease tokens) or 3 (before the
//! usage history) to the current format, done once when such a database is opened.
//!
//! **From format 3.** Format 3's log entries read as they are (the current format only added
//! commands and outcomes after the existing ones); its snapshot is rewritten with an empty
//! usage history that has not started, and the marker set, in one transaction. The history
//! starts at the first `SetEventRetention` entry after the upgrade (`licd_raft::events`), on
//! every node at the same index, whichever snapshot each node upgraded.
//!
//! **From format 2.**
//! Every log entry and the snapshot are decoded with format 2's shapes
//! ([`licd_raft::format2`]), converted, and written back in the current format together with
//! the new version marker in one sled transaction: a crash during the upgrade leaves the
//! database in format 2, and the next open upgrades it again. The vote, the committed id and
//! the purge point hold no allocation and stay as they are.
//!
//! What the upgrade keeps: every license, allocation, lease and remembered request id. An
//! allocation comes across without a token hash; `LicenseState::apply` documents how such an
//! allocation is renewed and replaced. What it does not do: mix versions in one cluster.
//! Format 2 and this build cannot read each other's Raft messages, so every node of the
//! cluster is stopped, upgraded and started (docs/operations.md, "Upgrades").

use licd_raft::codec::{decode, encode};
use licd_raft::format2::{LicenseState2, Request2};
use licd_raft::{RaftNodeId, TypeConfig};
use openraft::{BasicNode, Entry, EntryPayload, LogId, Membership, StoredMembership};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::error::OpenError;
use crate::format::{FORMAT_KEY, FormatError, encode_versioned};
use crate::state_machine::{AppliedState, CURRENT, StoredSnapshot};

/// The older stored format this module upgrades from.
pub const FROM_VERSION: u32 = 2;
/// The newer stored format this module upgrades from.
pub const FROM_VERSION_3: u32 = 3;

/// The snapshot data in format 3 (after its version prefix): the current shape without the
/// usage history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState3 {
    /// As [`AppliedState::last_applied`].
    pub last_applied: Option<LogId<RaftNodeId>>,
    /// As [`AppliedState::last_membership`].
    pub last_membership: StoredMembership<RaftNodeId, BasicNode>,
    /// As [`AppliedState::licenses`].
    pub licenses: licd_raft::LicenseState,
}

/// A log entry in format 2: openraft's `Entry` with format 2's application data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry2 {
    /// The entry's log id.
    pub log_id: LogId<RaftNodeId>,
    /// What it carries.
    pub payload: Payload2,
}

/// openraft's `EntryPayload` in format 2, variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload2 {
    /// A blank entry of a new leader.
    Blank,
    /// Application data.
    Normal(Request2),
    /// A membership change.
    Membership(Membership<RaftNodeId, BasicNode>),
}

/// The snapshot data in format 2 (after its version prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState2 {
    /// As [`AppliedState::last_applied`].
    pub last_applied: Option<LogId<RaftNodeId>>,
    /// As [`AppliedState::last_membership`].
    pub last_membership: StoredMembership<RaftNodeId, BasicNode>,
    /// The license state in format 2.
    pub licenses: LicenseState2,
}

impl From<Entry2> for Entry<TypeConfig> {
    fn from(e: Entry2) -> Entry<TypeConfig> {
        let payload = match e.payload {
            Payload2::Blank => EntryPayload::Blank,
            Payload2::Normal(request) => EntryPayload::Normal(request.into()),
            Payload2::Membership(m) => EntryPayload::Membership(m),
        };
        Entry {
            log_id: e.log_id,
            payload,
        }
    }
}

/// Rewrites a format 2 database in the current format; see the module documentation.
pub(crate) fn from_format_2(db: &sled::Db) -> Result<(), OpenError> {
    let log = db.open_tree("log")?;
    let snapshots = db.open_tree("snapshot")?;
    let meta = db.open_tree("meta")?;

    let mut entries = Vec::new();
    for item in log.iter() {
        let (key, bytes) = item?;
        let old: Entry2 = decode(&bytes)?;
        entries.push((key, encode(&Entry::<TypeConfig>::from(old))?));
    }
    let snapshot = match snapshots.get(CURRENT)? {
        None => None,
        Some(bytes) => {
            let stored: StoredSnapshot = decode(&bytes)?;
            let old: AppliedState2 = decode_version_2(&stored.data)?;
            let state = AppliedState {
                last_applied: old.last_applied,
                last_membership: old.last_membership,
                licenses: old.licenses.into(),
                events: Default::default(),
            };
            let data = encode_versioned(&state)?;
            Some(
                StoredSnapshot {
                    meta: stored.meta,
                    data,
                }
                .encode()?,
            )
        }
    };
    let version = encode(&crate::format::FORMAT_VERSION)?;

    (&log, &snapshots, &meta)
        .transaction(|(log, snapshots, meta)| {
            for (key, bytes) in &entries {
                log.insert(key, bytes.as_slice())?;
            }
            if let Some(bytes) = &snapshot {
                snapshots.insert(CURRENT, bytes.as_slice())?;
            }
            meta.insert(FORMAT_KEY, version.as_slice())?;
            Ok(())
        })
        .map_err(transaction_error)?;
    db.flush()?;
    tracing::info!(
        entries = entries.len(),
        snapshot = snapshot.is_some(),
        "upgraded the database from stored format {FROM_VERSION}"
    );
    Ok(())
}

/// Decodes snapshot data written by format 2: its version prefix, then the payload.
fn decode_version_2(bytes: &[u8]) -> Result<AppliedState2, FormatError> {
    decode_version(bytes, FROM_VERSION)
}

/// Decodes snapshot data written by format `version`: its version prefix, then the payload.
fn decode_version<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    version: u32,
) -> Result<T, FormatError> {
    let Some((head, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(FormatError::Truncated);
    };
    let found = u32::from_le_bytes(*head);
    if found != version {
        return Err(FormatError::Version { found });
    }
    Ok(decode(rest)?)
}

/// Rewrites a format 3 database in the current format; see the module documentation.
pub(crate) fn from_format_3(db: &sled::Db) -> Result<(), OpenError> {
    let snapshots = db.open_tree("snapshot")?;
    let meta = db.open_tree("meta")?;
    let snapshot = match snapshots.get(CURRENT)? {
        None => None,
        Some(bytes) => {
            let stored: StoredSnapshot = decode(&bytes)?;
            let old: AppliedState3 = decode_version(&stored.data, FROM_VERSION_3)?;
            let state = AppliedState {
                last_applied: old.last_applied,
                last_membership: old.last_membership,
                licenses: old.licenses,
                events: Default::default(),
            };
            Some(
                StoredSnapshot {
                    meta: stored.meta,
                    data: encode_versioned(&state)?,
                }
                .encode()?,
            )
        }
    };
    let version = encode(&crate::format::FORMAT_VERSION)?;
    (&snapshots, &meta)
        .transaction(|(snapshots, meta)| {
            if let Some(bytes) = &snapshot {
                snapshots.insert(CURRENT, bytes.as_slice())?;
            }
            meta.insert(FORMAT_KEY, version.as_slice())?;
            Ok(())
        })
        .map_err(transaction_error)?;
    db.flush()?;
    tracing::info!(
        snapshot = snapshot.is_some(),
        "upgraded the database from stored format {FROM_VERSION_3}"
    );
    Ok(())
}

/// An upgrade transaction's failure as an open error.
fn transaction_error(e: sled::transaction::TransactionError<()>) -> OpenError {
    match e {
        sled::transaction::TransactionError::Storage(e) => OpenError::Tree(e),
        sled::transaction::TransactionError::Abort(()) => {
            OpenError::Inconsistent("the upgrade transaction aborted".into())
        }
    }
}
