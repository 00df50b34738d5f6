//! [`Node::backup`]: a consistent snapshot of the cluster for `GET /admin/snapshot`.

use std::time::{Duration, Instant};

use openraft::error::RaftError;

use super::{Deadline, Node, NodeError};
use crate::backup::Backup;

/// How long [`Node::backup`] waits for a snapshot that covers every acknowledged write.
pub const BACKUP_DEADLINE: Duration = Duration::from_secs(30);

fn stopped<E: std::fmt::Display>(e: RaftError<licd_raft::RaftNodeId, E>) -> NodeError {
    NodeError::Stopped(e.to_string())
}

impl Node {
    /// A snapshot of the state that holds every write acknowledged before the call, with
    /// its metadata and the cluster id. This node must lead: it confirms its leadership (a
    /// read round, [`super::ReadBatcher`]: a heartbeat round to a majority) and waits until
    /// it has applied what was committed, then takes openraft's current snapshot when it
    /// covers that point, or has one built.
    pub async fn backup(&self) -> Result<Backup, NodeError> {
        let started = Instant::now();
        let confirm = self.inner.reads.confirm();
        let read = match tokio::time::timeout(super::REQUEST_DEADLINE, confirm).await {
            Ok(read) => read?,
            Err(_) => return Err(NodeError::Timeout(Deadline::Read)),
        };
        let applied = self.metrics().last_applied.map(|l| l.index);
        let target = read.max(applied);
        let mut watch = self.metrics_watch();
        loop {
            let snapshot = self.raft().get_snapshot().await.map_err(stopped)?;
            if let Some(snapshot) = snapshot
                && snapshot.meta.last_log_id.map(|l| l.index) >= target
            {
                return Ok(Backup {
                    stored_format: licd_storage::format::FORMAT_VERSION,
                    cluster_id: self.cluster_id().map(|id| id.to_string()),
                    taken_by: self.id(),
                    taken_at_ms: super::now().0,
                    meta: snapshot.meta,
                    data: snapshot.snapshot.into_inner(),
                });
            }
            let left = BACKUP_DEADLINE.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(NodeError::Timeout(Deadline::Snapshot));
            }
            self.raft()
                .trigger()
                .snapshot()
                .await
                .map_err(|f| NodeError::Stopped(f.to_string()))?;
            // Wait for a snapshot at the target, or a little (a build already running may
            // end below it: then ask again).
            let built = watch.wait_for(|m| m.snapshot.map(|l| l.index) >= target);
            let _ = tokio::time::timeout(left.min(Duration::from_secs(2)), built).await;
        }
    }
}
