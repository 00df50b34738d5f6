//! openraft's own storage conformance suite, run unmodified against the sled stores.

use licd_raft::{RaftNodeId, TypeConfig};
use licd_storage::{LogStore, StateMachineStore};
use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

/// Builds a fresh pair of stores in a new temporary directory for every suite case; the
/// directory lives as long as the case holds the guard.
struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<RaftNodeId>> {
        let dir = TempDir::new().expect("temporary directory");
        let (log, sm) = licd_storage::open(dir.path()).expect("open stores");
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_stores_pass_the_openraft_storage_suite() {
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("storage suite failed: {e}");
    }
}
