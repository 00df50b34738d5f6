//! [`LogStore`]: the Raft log, the vote and the committed index in sled (openraft's
//! `RaftLogStorage`).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use licd_raft::codec::{decode, encode};
use licd_raft::{RaftNodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{StorageResult, io_error};

pub(crate) const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
pub(crate) const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log of one node. Cheap to clone: clones share the same sled trees.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
        })
    }

    /// Flushes every tree of the database to disk (see the crate documentation for what sled's
    /// flush promises).
    pub async fn flush(&self) -> Result<(), sled::Error> {
        self.db.flush_async().await.map(|_| ())
    }

    pub(crate) fn meta_tree(&self) -> &sled::Tree {
        &self.meta
    }

    pub(crate) fn log_tree(&self) -> &sled::Tree {
        &self.log
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    fn read_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<RaftNodeId>,
    ) -> StorageResult<Option<T>> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        decode(&bytes)
            .map(Some)
            .map_err(|e| io_error(subject, ErrorVerb::Read, e))
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<RaftNodeId>,
    ) -> StorageResult<()> {
        let bytes = encode(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn flush_or(&self, subject: ErrorSubject<RaftNodeId>) -> StorageResult<()> {
        self.flush()
            .await
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))
    }

    fn last_purged(&self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        self.read_meta(LAST_PURGED, ErrorSubject::Logs)
    }

    /// Deletes the entries whose index is in `range`, in one batch (not yet flushed).
    fn remove_entries<RB: RangeBounds<u64>>(&self, range: RB) -> StorageResult<()> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(key_range(&range)) {
            let (key, _) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    fn decode_entry(bytes: &[u8]) -> StorageResult<Entry<TypeConfig>> {
        decode(bytes).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn key_range<RB: RangeBounds<u64>>(range: &RB) -> (Bound<[u8; 8]>, Bound<[u8; 8]>) {
    let start = match range.start_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => Bound::Included(index_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let mut entries = Vec::new();
        for item in self.log.range(key_range(&range)) {
            let (_, bytes) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(Self::decode_entry(&bytes)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let last_purged_log_id = self.last_purged()?;
        let last = self
            .log
            .last()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((_, bytes)) => Some(Self::decode_entry(&bytes)?.log_id),
            None => last_purged_log_id,
        };
        // A crash between recording a purge and deleting the entries leaves entries at or
        // below the purged id; the purged id is then still the lower bound.
        let last_log_id = last_log_id.max(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        self.write_meta(VOTE, vote, ErrorSubject::Vote)?;
        self.flush_or(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        self.read_meta(VOTE, ErrorSubject::Vote)
    }

    /// Written, not flushed: it becomes durable with the next flush of the database (the next
    /// append's, or sled's own every half second). openraft does not require it to be
    /// durable; after a crash the node starts from an older committed id and re-applies the
    /// rest once it is committed again. A leader that restarts within its term resumes
    /// leading at once and takes `max(first log of its term, saved committed id)` as the
    /// index of its reads, so the node holds its reads until it has applied its log as it
    /// was at start-up (`licd::node`'s read rounds). A flush here would be a second flush on
    /// the path of every commit, on every node.
    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        self.write_meta(COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        Ok(self
            .read_meta::<Option<LogId<RaftNodeId>>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| io_error(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            batch.insert(&index_key(entry.log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // The callback reports durability: it is signalled only once the flush is complete.
        match self.flush().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        self.remove_entries(log_id.index..)?;
        self.flush_or(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        // Record the purge point first: a crash between the two steps leaves extra entries
        // below it, which get_log_state tolerates, never a gap above it.
        self.write_meta(LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.remove_entries(..=log_id.index)?;
        self.flush_or(ErrorSubject::Logs).await
    }
}
