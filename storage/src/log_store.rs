//! [`LogStore`]: the Raft log, the vote and the committed index in sled (openraft's
//! `RaftLogStorage`).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// The Raft log of one node. Cheap to clone: clones share the same sled trees and the same
/// [`Tail`].
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    tail: Arc<Mutex<Tail>>,
}

/// The most entries [`Tail`] keeps (few in unit tests, so that they reach the bound).
const TAIL_ENTRIES: usize = if cfg!(test) { 16 } else { 1024 };
/// The most encoded bytes of the entries [`Tail`] keeps.
const TAIL_BYTES: usize = 8 << 20;

/// The newest entries of the log, kept decoded beside sled. openraft reads every entry back
/// soon after it is appended: to apply it, and on a leader to send it to each follower.
/// Reading those from here spares a sled lookup and a decode per entry and per reader.
///
/// The entries are consecutive and end with the log's last entry: appends push onto it (an
/// append that does not follow its last entry starts it afresh), `truncate` and `purge` cut it
/// as they cut the log. It starts empty when the store is opened, and holds at most
/// [`TAIL_ENTRIES`] entries of [`TAIL_BYTES`] encoded bytes; a read that starts below it goes
/// to sled.
#[derive(Default)]
struct Tail {
    /// The entries and their encoded sizes, oldest first.
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Tail {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry<TypeConfig>, size: usize) {
        let follows = match self.entries.back() {
            Some((last, _)) => last.log_id.index + 1 == entry.log_id.index,
            None => true,
        };
        if !follows {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += size;
        self.entries.push_back((entry, size));
        while self.entries.len() > TAIL_ENTRIES
            || (self.bytes > TAIL_BYTES && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// Forgets the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while let Some((last, _)) = self.entries.back()
            && last.log_id.index >= index
        {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Forgets the entries up to `index`.
    fn purge(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    /// The entries of `range`, when it starts within the tail (entries past the tail's last
    /// are past the log's last too).
    fn read<RB: RangeBounds<u64>>(&self, range: &RB) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.first_index()?;
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        Some(
            self.entries
                .iter()
                .skip(skip)
                .map(|(e, _)| e)
                .take_while(|e| range.contains(&e.log_id.index))
                .cloned()
                .collect(),
        )
    }
}

impl LogStore {
    pub(crate) fn new(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(LogStore {
            db: db.clone(),
            log: db.open_tree("log")?,
            meta: db.open_tree("meta")?,
            tail: Arc::default(),
        })
    }

    fn tail(&self) -> MutexGuard<'_, Tail> {
        // No change to the tail panics half-way, so a poisoned lock holds a consistent tail.
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(entries) = self.tail().read(&range) {
            return Ok(entries);
        }
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
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = encode(&entry)
                .map_err(|e| io_error(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            let size = bytes.len();
            batch.insert(&index_key(entry.log_id.index), bytes);
            appended.push((size, entry));
        }
        {
            // Under the tail's lock, so that no reader sees sled and the tail disagree.
            let mut tail = self.tail();
            self.log
                .apply_batch(batch)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
            for (size, entry) in appended {
                tail.push(entry, size);
            }
        }
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
        {
            let mut tail = self.tail();
            tail.truncate(log_id.index);
            self.remove_entries(log_id.index..)
                .inspect_err(|_| *tail = Tail::default())?;
        }
        self.flush_or(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        // Record the purge point first: a crash between the two steps leaves extra entries
        // below it, which get_log_state tolerates, never a gap above it.
        self.write_meta(LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        {
            let mut tail = self.tail();
            tail.purge(log_id.index);
            self.remove_entries(..=log_id.index)
                .inspect_err(|_| *tail = Tail::default())?;
        }
        self.flush_or(ErrorSubject::Logs).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Append(u64),
        /// Truncate at this fraction (in thousandths) of the entries held.
        Truncate(u64),
        Purge(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1..12u64).prop_map(Op::Append),
            1 => (0..1000u64).prop_map(Op::Truncate),
            1 => (0..1000u64).prop_map(Op::Purge),
        ]
    }

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// The entries of `range` as sled holds them, without the tail.
    fn from_sled(store: &LogStore, range: (Bound<u64>, Bound<u64>)) -> Vec<Entry<TypeConfig>> {
        store
            .log
            .range(key_range(&range))
            .map(|item| LogStore::decode_entry(&item.unwrap().1).unwrap())
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever appends, truncations and purges came before, a read answers what sled
        /// holds, for every range, whether the tail serves it or not.
        #[test]
        fn reads_through_the_tail_answer_what_sled_holds(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let db = sled::Config::new().temporary(true).open().unwrap();
                let mut store = LogStore::new(&db).unwrap();
                let mut term = 1;
                // The log holds [first, next).
                let (mut first, mut next) = (0u64, 0u64);
                for op in ops {
                    match op {
                        Op::Append(n) => {
                            let entries: Vec<_> = (next..next + n).map(|i| entry(term, i)).collect();
                            store.blocking_append(entries).await.unwrap();
                            next += n;
                        }
                        Op::Truncate(at) if next > first => {
                            let index = first + (next - first) * at / 1000;
                            store.truncate(LogId::new(CommittedLeaderId::new(term, 1), index)).await.unwrap();
                            next = index;
                            // Entries written after a truncation belong to a later term.
                            term += 1;
                        }
                        Op::Purge(at) if next > first => {
                            let index = first + (next - first - 1) * at / 1000;
                            store.purge(LogId::new(CommittedLeaderId::new(term, 1), index)).await.unwrap();
                            first = index + 1;
                        }
                        _ => {}
                    }
                    let (held, last) = {
                        let tail = store.tail();
                        (tail.entries.len(), tail.entries.back().map(|(e, _)| e.log_id.index))
                    };
                    prop_assert!(held <= TAIL_ENTRIES);
                    if let Some(last) = last {
                        prop_assert_eq!(last + 1, next, "the tail ends with the log");
                    }
                    for start in first.saturating_sub(2)..next + 2 {
                        for end in [start, start + 1, start + 5, next, next + 3] {
                            let range = (Bound::Included(start), Bound::Excluded(end));
                            let read = store.try_get_log_entries(range).await.unwrap();
                            prop_assert_eq!(read, from_sled(&store, range), "{:?}", range);
                        }
                        let open = (Bound::Included(start), Bound::Unbounded);
                        let read = store.try_get_log_entries(open).await.unwrap();
                        prop_assert_eq!(read, from_sled(&store, open));
                    }
                }
                Ok(())
            })?;
        }
    }
}

#[cfg(test)]
mod tail_tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn an_entry_that_does_not_follow_the_tail_starts_it_afresh() {
        let mut tail = Tail::default();
        tail.push(entry(3), 10);
        tail.push(entry(4), 10);
        tail.push(entry(9), 10);
        assert_eq!(tail.first_index(), Some(9));
        assert_eq!(tail.bytes, 10);
        // Below the tail is sled's to answer.
        assert_eq!(tail.read(&(4..10)), None);
        assert_eq!(tail.read(&(9..)), Some(vec![entry(9)]));
    }

    #[test]
    fn the_tail_keeps_within_its_bytes_but_always_its_last_entry() {
        let mut tail = Tail::default();
        tail.push(entry(1), TAIL_BYTES);
        tail.push(entry(2), TAIL_BYTES + 1);
        assert_eq!(tail.first_index(), Some(2));
        assert_eq!(tail.entries.len(), 1);
    }
}
