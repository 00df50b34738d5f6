//! A crash right after openraft saved the committed log id must not lose it.
//!
//! openraft 0.9 lets a leader that restarts within its term resume leading at once, and then
//! uses `max(first log of its term, saved committed id)` as the index of linearizable reads.
//! If the saved committed id were older than what the leader had already applied and
//! answered, the restarted leader would serve reads that miss acknowledged writes (the fault
//! harness found exactly that under `clock-skew`, which restarts a node within an election
//! timeout). openraft saves the committed id before it applies entries, so `save_committed`
//! must be durable when it returns.
//!
//! The crash is real: the test runs itself as a child process that saves the committed id
//! and aborts (no destructors, no final flush); the parent then reopens the database.

use std::path::Path;
use std::process::Command;

use licd_raft::TypeConfig;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

const CHILD_ENV: &str = "LICD_CRASH_TEST_DIR";
const TEST_NAME: &str = "the_committed_log_id_survives_a_crash_right_after_it_is_saved";

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
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
fn the_committed_log_id_survives_a_crash_right_after_it_is_saved() {
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
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(5)));
    });
}
