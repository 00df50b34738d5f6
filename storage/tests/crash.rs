//! A crash right after openraft saved the vote, appended entries and saved the committed log
//! id keeps the entries and the vote, and the committed id either as saved or as before.
//!
//! The entries and the vote are flushed before the calls return (openraft's contract). The
//! committed id is not: it is durable from the next flush on. openraft 0.9 lets a leader that
//! restarts within its term resume leading at once, with `max(first log of its term, saved
//! committed id)` as the index of its reads, so an older committed id must not let it answer
//! reads that miss acknowledged writes; the node holds its reads until it has applied its log
//! as it was at start-up (`src/node/reads.rs`, whose tests cover that). The fault harness found
//! that hazard under `clock-skew`, which restarts a node within an election timeout, when the
//! committed id was written without a flush and nothing held the reads.
//!
//! The crash is real: the test runs itself as a child process that saves and aborts (no
//! destructors, no final flush); the parent then reopens the database.

use std::path::Path;
use std::process::Command;

use licd_raft::TypeConfig;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};

const CHILD_ENV: &str = "LICD_CRASH_TEST_DIR";
const TEST_NAME: &str = "a_crash_right_after_saving_keeps_the_entries_and_the_vote";

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn vote() -> Vote<u64> {
    let mut vote = Vote::new(1, 1);
    vote.commit();
    vote
}

fn child(dir: &Path) -> ! {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (mut log, _sm) = licd_storage::open(dir).expect("open");
        let entries: Vec<Entry<TypeConfig>> = (0..=5)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.save_vote(&vote()).await.expect("save vote");
        log.blocking_append(entries).await.expect("append");
        log.save_committed(Some(log_id(5)))
            .await
            .expect("save committed");
        // Die as a SIGKILL would, with the stores still open: nothing is dropped (dropping
        // the last handle of a sled database flushes it), nothing more is flushed.
        std::process::abort();
    })
}

#[test]
fn a_crash_right_after_saving_keeps_the_entries_and_the_vote() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let dir = tempfile::TempDir::new().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--test-threads", "1"])
        .env(CHILD_ENV, dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborts after saving");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut log, _sm) = licd_storage::open(dir.path()).expect("reopen after the crash");
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(5))
        );
        assert_eq!(log.read_vote().await.unwrap(), Some(vote()));
        let committed = log.read_committed().await.unwrap();
        assert!(
            committed.is_none() || committed == Some(log_id(5)),
            "the committed id is the one saved or none: {committed:?}"
        );
    });
}
