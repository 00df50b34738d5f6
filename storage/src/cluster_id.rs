//! The cluster id of a node: which cluster its data belongs to, in the `meta` tree under
//! `cluster_id` (UTF-8). It is not part of the Raft log or of a snapshot: each node keeps its
//! own copy, learns it once, and never changes it afterwards.
//!
//! A database of a licd from before cluster ids has none; reading one does not change the
//! stored format (the key is simply absent), and a licd of that version ignores the key.
//! `licd::node` holds the rules of who may set it (docs/operations.md, "Cluster ids").

use crate::LogStore;

/// The `meta` key of the cluster id.
pub(crate) const CLUSTER_ID_KEY: &[u8] = b"cluster_id";

impl LogStore {
    /// The cluster id this node's data belongs to, if it has one.
    pub fn cluster_id(&self) -> Result<Option<String>, sled::Error> {
        Ok(self
            .meta_tree()
            .get(CLUSTER_ID_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Stores `id` as the cluster id unless one is stored already, and flushes; returns the
    /// id stored afterwards (`id`, or the one that was there first).
    pub async fn adopt_cluster_id(&self, id: &str) -> Result<String, sled::Error> {
        let swapped = self.meta_tree().compare_and_swap(
            CLUSTER_ID_KEY,
            None::<&[u8]>,
            Some(id.as_bytes()),
        )?;
        let stored = match swapped {
            Ok(()) => id.to_string(),
            Err(e) => e
                .current
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_else(|| id.to_string()),
        };
        self.flush().await?;
        Ok(stored)
    }

    /// Removes the cluster id when it is `id` (an initialization that failed after storing
    /// it), and flushes.
    pub async fn forget_cluster_id(&self, id: &str) -> Result<(), sled::Error> {
        let _ = self.meta_tree().compare_and_swap(
            CLUSTER_ID_KEY,
            Some(id.as_bytes()),
            None::<&[u8]>,
        )?;
        self.flush().await
    }

    /// Whether the database holds no Raft state at all: no vote, no log entry, no purge
    /// point and no snapshot. Such a node has never been part of a cluster.
    pub fn holds_no_raft_state(&self) -> Result<bool, sled::Error> {
        let meta = self.meta_tree();
        Ok(meta.get(crate::log_store::VOTE)?.is_none()
            && meta.get(crate::log_store::LAST_PURGED)?.is_none()
            && self.log_tree().is_empty()
            && self.db().open_tree("snapshot")?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_first_id_stays_and_a_failed_init_can_forget_its_own() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let (log, _) = crate::open_db(db).unwrap();
        assert_eq!(log.cluster_id().unwrap(), None);
        assert!(log.holds_no_raft_state().unwrap());
        assert_eq!(log.adopt_cluster_id("aaaa").await.unwrap(), "aaaa");
        assert_eq!(log.adopt_cluster_id("bbbb").await.unwrap(), "aaaa");
        log.forget_cluster_id("bbbb").await.unwrap();
        assert_eq!(log.cluster_id().unwrap().as_deref(), Some("aaaa"));
        log.forget_cluster_id("aaaa").await.unwrap();
        assert_eq!(log.cluster_id().unwrap(), None);
        // The cluster id is not Raft state.
        log.adopt_cluster_id("cccc").await.unwrap();
        assert!(log.holds_no_raft_state().unwrap());
    }
}
