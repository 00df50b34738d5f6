//! licd-storage: the durable half of a licd node, on sled, behind openraft's storage-v2 traits.
//!
//! One sled database per node holds four trees:
//!
//! | tree       | key                          | value                                      |
//! |------------|------------------------------|--------------------------------------------|
//! | `log`      | log index, big-endian `u64`  | the entry, [`licd_raft::codec`]-encoded    |
//! | `meta`     | `format`, `vote`, `committed`, `last_purged` | the value, codec-encoded   |
//! | `meta`     | `cluster_id`                 | the node's cluster id, UTF-8 (absent before one) |
//! | `snapshot` | `current`                    | the latest snapshot: its meta and its data |
//!
//! **Format.** The database and every snapshot carry the stored format version
//! ([`format::FORMAT_VERSION`]); a licd refuses another version with a message naming it,
//! except versions 2 and 3, which [`upgrade`] rewrites in the current format when opened.
//!
//! **Restore.** [`restore`] writes a fresh database from a backed-up snapshot, as the first
//! state of a new cluster with a new cluster id.
//!
//! Big-endian keys make sled's byte order the log's index order, so ranges and "the last entry"
//! are plain tree ranges. [`LogStore`] also keeps the newest entries decoded in memory, for the
//! reads that follow an append (apply, replication).
//!
//! **Durability.** openraft's contract is followed to the letter: [`LogStore`] signals an
//! append's flush callback only after sled's flush has completed, and `save_vote`,
//! `truncate` and `purge` return only after a flush. `save_committed` is not flushed (openraft
//! does not require it): the saved committed id is durable from the next flush on, and may be
//! older after a crash, so a restarted node holds its reads until it has applied its whole log
//! as it was at start-up (see `LogStore::save_committed`). A snapshot is flushed before it is
//! reported built or installed, because openraft purges the log behind it.
//!
//! **What sled's flush promises.** sled 0.34.7 flushes its log with `sync_file_range` on Linux
//! rather than `fsync` (sled issue 1452): a flushed write survives the crash of the licd process,
//! but not necessarily the loss of power or a kernel crash. A three-node cluster tolerates the
//! loss of one node's recent writes only if the other two did not lose theirs at the same
//! moment; place the nodes on independent power. sled also amplifies space about 2x and does not
//! give back space after deletes: snapshots followed by log purges keep the log short.
//!
//! The state machine ([`StateMachineStore`]) holds the [`licd_raft::LicenseState`] in memory; it
//! is durable through snapshots plus the log, which openraft re-applies after a restart from the
//! snapshot up to the saved committed index, and beyond it as entries are committed again.

// openraft's StorageError is the error type its storage traits dictate; the private helpers
// return it too rather than box it at every call.
#![allow(clippy::result_large_err)]

mod cluster_id;
mod error;
pub mod format;
mod log_store;
pub mod restore;
mod state_machine;
pub mod upgrade;

use std::path::Path;

pub use error::OpenError;
pub use log_store::LogStore;
pub use state_machine::{AppliedState, StateMachineStore};

/// Opens (or creates) the node's sled database at `path` and returns its two stores.
///
/// sled holds a file lock on the database until every handle and its background flusher are
/// gone, which happens shortly after the last handle is dropped; a database just closed in
/// this process (a node restarted in place) is retried for up to 5 s before the lock is
/// reported as held.
pub fn open(path: &Path) -> Result<(LogStore, StateMachineStore), OpenError> {
    open_db(open_sled(path)?)
}

/// Opens the sled database at `path` as [`open`] does, retrying for up to 5 s while a handle
/// closed just before still holds its file lock; for tools and tests that read the database
/// itself.
pub fn open_sled(path: &Path) -> Result<sled::Db, OpenError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if is_lock_held(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(OpenError::Sled {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        }
    }
}

/// Whether sled failed to open because another handle still holds the database's file lock.
/// sled reports it either as `WouldBlock` or as an `Other` error that wraps the `WouldBlock`
/// of its lock call in a message.
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// Builds the stores over an already opened sled database.
pub fn open_db(db: sled::Db) -> Result<(LogStore, StateMachineStore), OpenError> {
    format::check_database(&db)?;
    let log = LogStore::new(&db)?;
    let sm = StateMachineStore::new(&db)?;
    Ok((log, sm))
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::is_lock_held;

    #[test]
    fn both_forms_of_a_held_lock_are_recognized() {
        assert!(is_lock_held(&Error::from(ErrorKind::WouldBlock)));
        let wrapped = Error::other(
            "could not acquire lock on \"/tmp/x/db\": Os { code: 11, kind: WouldBlock }",
        );
        assert!(is_lock_held(&wrapped));
        assert!(!is_lock_held(&Error::from(ErrorKind::NotFound)));
        assert!(!is_lock_held(&Error::other("disk full")));
    }
}
