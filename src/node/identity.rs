//! The node's cluster id ([`crate::cluster_id`]) and who it takes Raft messages from.
//!
//! | this node has | the message carries | answer |
//! |---|---|---|
//! | id A | A | served |
//! | id A | another id, or none | refused, 409 `CLUSTER_MISMATCH` |
//! | no id, no Raft state (a fresh node) | id B | B is stored (flushed) as this node's id, then served |
//! | no id, no Raft state | none | served (a cluster initialized before cluster ids) |
//! | no id, Raft state (a node of a cluster from before cluster ids) | none | served |
//! | no id, Raft state | an id | refused, 409 `CLUSTER_MISMATCH` |
//!
//! A node gets its id once and keeps it: by initializing a cluster (`POST /admin/init` on a
//! fresh node generates one), from the first message of its cluster's leader or candidate
//! while it is fresh (the other initial members, and a new node added as a learner), or from
//! `licd snapshot restore` (a new id, for a new cluster). So a fresh learner joins whichever
//! cluster contacts it first, and a node with data never changes cluster.

use std::sync::{Arc, RwLock};

use licd_storage::LogStore;

use super::{Node, NodeError};
use crate::cluster_id::{CLUSTER_ID_HEADER, ClusterId};

/// The cluster id as the node and its network read it, and the lock that makes adopting
/// one happen once.
#[derive(Debug, Default)]
pub struct ClusterIdCell {
    id: RwLock<Option<Arc<str>>>,
    adopting: tokio::sync::Mutex<()>,
}

impl ClusterIdCell {
    /// A cell holding `id`.
    pub fn new(id: Option<String>) -> Self {
        ClusterIdCell {
            id: RwLock::new(id.map(Arc::from)),
            adopting: tokio::sync::Mutex::new(()),
        }
    }

    /// The id, if the node has one.
    pub fn get(&self) -> Option<Arc<str>> {
        self.id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, id: Option<String>) {
        *self.id.write().unwrap_or_else(|p| p.into_inner()) = id.map(Arc::from);
    }
}

fn mismatch(message: String) -> NodeError {
    NodeError::ClusterMismatch(message)
}

fn storage(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(format!("the cluster id: {e}"))
}

impl Node {
    /// This node's cluster id, if it has one yet.
    pub fn cluster_id(&self) -> Option<Arc<str>> {
        self.inner.cluster_id.get()
    }

    fn log_store(&self) -> &LogStore {
        &self.inner.log_store
    }

    /// Decides whether a Raft message that names `presented` as its cluster id is served (see
    /// the module documentation); a fresh node adopts the id of the first one.
    pub async fn admit_peer(&self, presented: Option<&str>) -> Result<(), NodeError> {
        let presented =
            match presented {
                None => None,
                Some(p) => Some(ClusterId::parse(p).map_err(|e| {
                    mismatch(format!("the sender's {CLUSTER_ID_HEADER} header: {e}"))
                })?),
            };
        let compare = |mine: &str, theirs: Option<&ClusterId>| match theirs {
            Some(t) if t.as_str() == mine => Ok(()),
            Some(t) => Err(mismatch(format!(
                "this node belongs to cluster {mine}, the sender to cluster {t}: a node \
                 restored from a backup starts a new cluster and never joins the old one"
            ))),
            None => Err(mismatch(format!(
                "this node belongs to cluster {mine}; the sender names no cluster (a node of \
                 a cluster initialized before cluster ids)"
            ))),
        };
        if let Some(mine) = self.cluster_id() {
            return compare(&mine, presented.as_ref());
        }
        let Some(theirs) = presented else {
            return Ok(());
        };
        let cell = &self.inner.cluster_id;
        let _once = cell.adopting.lock().await;
        if let Some(mine) = self.cluster_id() {
            return compare(&mine, Some(&theirs));
        }
        if !self.log_store().holds_no_raft_state().map_err(storage)? {
            return Err(mismatch(format!(
                "this node holds the data of a cluster initialized before cluster ids; it \
                 takes no messages from cluster {theirs}"
            )));
        }
        let stored = self
            .log_store()
            .adopt_cluster_id(theirs.as_str())
            .await
            .map_err(storage)?;
        tracing::info!(cluster_id = %stored, "joined a cluster: cluster id stored");
        cell.set(Some(stored.clone()));
        compare(&stored, Some(&theirs))
    }

    /// Gives a fresh node without a cluster id a new one before it initializes a cluster;
    /// returns it when it did (so a failed initialization can take it back).
    pub(super) async fn claim_cluster_id(&self) -> Result<Option<String>, NodeError> {
        let cell = &self.inner.cluster_id;
        let _once = cell.adopting.lock().await;
        if self.cluster_id().is_some()
            || !self.log_store().holds_no_raft_state().map_err(storage)?
        {
            return Ok(None);
        }
        let id = ClusterId::generate();
        let stored = self
            .log_store()
            .adopt_cluster_id(id.as_str())
            .await
            .map_err(storage)?;
        cell.set(Some(stored.clone()));
        Ok((stored == id.as_str()).then_some(stored))
    }

    /// Takes back the id [`Node::claim_cluster_id`] gave, after the initialization failed.
    pub(super) async fn release_cluster_id(&self, id: &str) {
        let cell = &self.inner.cluster_id;
        let _once = cell.adopting.lock().await;
        if let Err(e) = self.log_store().forget_cluster_id(id).await {
            tracing::warn!(error = %e, "cannot remove the cluster id of a failed initialization");
            return;
        }
        cell.set(None);
    }
}
