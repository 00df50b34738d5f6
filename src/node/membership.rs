//! Membership and maintenance operations of a [`Node`]: initializing a cluster, adding
//! learners, changing voters, removing members, building a snapshot.
//!
//! Each is bounded by [`MEMBERSHIP_DEADLINE`]: adding a learner waits until it has caught up
//! with the leader's log, which can take a while for a large state. Past the deadline the
//! change may still complete; the caller learns it from the status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use licd_raft::RaftNodeId;
use openraft::{BasicNode, ChangeMembers};

use super::{Deadline, Node, NodeError};

/// How long a membership change may take, a learner's catch-up included.
pub const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(60);

/// How long [`Node::snapshot`] waits for the snapshot it asked for to be built.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// How long [`Node::initialize`] waits for the new membership to show in the metrics.
const INIT_SETTLE: Duration = Duration::from_secs(5);

/// The cluster's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Voter ids.
    pub voters: Vec<RaftNodeId>,
    /// Learner ids.
    pub learners: Vec<RaftNodeId>,
    /// Every member's HTTP address.
    pub nodes: BTreeMap<RaftNodeId, String>,
}

async fn bounded<T, E>(change: impl Future<Output = Result<T, E>>) -> Result<T, NodeError>
where
    NodeError: From<E>,
{
    match tokio::time::timeout(MEMBERSHIP_DEADLINE, change).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(NodeError::Timeout(Deadline::Membership)),
    }
}

impl Node {
    /// The current membership, as this node knows it.
    pub fn membership(&self) -> Membership {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        Membership {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: self.members(),
        }
    }

    /// Initializes a new cluster with `members` (id to HTTP address) as its voters; empty
    /// means this node alone. The members must include this node.
    pub async fn initialize(
        &self,
        members: BTreeMap<RaftNodeId, String>,
    ) -> Result<Membership, NodeError> {
        for addr in members.values() {
            refuse_scheme(addr)?;
        }
        let mut members: BTreeMap<RaftNodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        if members.is_empty() {
            members.insert(self.id(), BasicNode::new(self.advertise_addr()));
        }
        if !members.contains_key(&self.id()) {
            return Err(NodeError::Invalid(format!(
                "the initial members must include this node ({})",
                self.id()
            )));
        }
        // A fresh node gets the new cluster's id before its first vote request goes out.
        let claimed = self.claim_cluster_id().await?;
        if let Err(e) = self.raft().initialize(members).await {
            if let Some(id) = claimed {
                self.release_cluster_id(&id).await;
            }
            return Err(e.into());
        }
        // The metrics show the new membership shortly after initialize returns.
        let mut watch = self.metrics_watch();
        let _ = tokio::time::timeout(
            INIT_SETTLE,
            watch.wait_for(|m| m.membership_config.membership().voter_ids().count() > 0),
        )
        .await;
        Ok(self.membership())
    }

    /// Adds a learner and waits until it has caught up with the leader's log.
    pub async fn add_learner(&self, id: RaftNodeId, addr: String) -> Result<Membership, NodeError> {
        if id == 0 || addr.trim().is_empty() {
            return Err(NodeError::Invalid(
                "node_id must be 1 or more and addr must be host:port".into(),
            ));
        }
        refuse_scheme(&addr)?;
        bounded(self.raft().add_learner(id, BasicNode::new(addr), true)).await?;
        Ok(self.membership())
    }

    /// Replaces the voter set; voters that leave it leave the cluster.
    pub async fn set_voters(&self, voters: BTreeSet<RaftNodeId>) -> Result<Membership, NodeError> {
        if voters.is_empty() {
            return Err(NodeError::Invalid(
                "a cluster needs at least one voter".into(),
            ));
        }
        bounded(self.raft().change_membership(voters, false)).await?;
        Ok(self.membership())
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, id: RaftNodeId) -> Result<Membership, NodeError> {
        let change = ChangeMembers::AddVoterIds(BTreeSet::from([id]));
        bounded(self.raft().change_membership(change, true)).await?;
        Ok(self.membership())
    }

    /// Removes a member, voter or learner.
    pub async fn remove_member(&self, id: RaftNodeId) -> Result<Membership, NodeError> {
        let current = self.membership();
        let change = if current.voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if current.learners.contains(&id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(NodeError::MemberNotFound(format!(
                "node {id} is not a member"
            )));
        };
        bounded(self.raft().change_membership(change, false)).await?;
        Ok(self.membership())
    }

    /// Makes this node campaign for leadership now (a voter whose log is up to date wins),
    /// and waits up to [`INIT_SETTLE`] for the outcome; returns the leader then known.
    pub async fn elect(&self) -> Result<Option<RaftNodeId>, NodeError> {
        if !self.membership().voters.contains(&self.id()) {
            return Err(NodeError::Invalid(format!(
                "node {} is not a voter: only a voter can lead",
                self.id()
            )));
        }
        if self.is_leader() {
            return Ok(Some(self.id()));
        }
        let term = self.term();
        self.raft()
            .trigger()
            .elect()
            .await
            .map_err(|f| NodeError::Stopped(f.to_string()))?;
        let id = self.id();
        let mut watch = self.metrics_watch();
        // Decided once this node leads, or once another node leads in a later term than the
        // one this campaign started from (it lost: a voter had a longer log).
        let decided = |m: &openraft::RaftMetrics<RaftNodeId, openraft::BasicNode>| {
            super::status::leads(m, id)
                || (m.current_term > term && m.current_leader.is_some_and(|l| l != id))
        };
        let _ = tokio::time::timeout(INIT_SETTLE, watch.wait_for(decided)).await;
        Ok(self.metrics().current_leader)
    }

    /// Asks Raft to build a snapshot now and waits (briefly) for it; returns the index the
    /// latest snapshot covers.
    pub async fn snapshot(&self) -> Result<Option<u64>, NodeError> {
        self.raft()
            .trigger()
            .snapshot()
            .await
            .map_err(|f| NodeError::Stopped(f.to_string()))?;
        let target = self.metrics().last_applied.map(|l| l.index);
        let mut watch = self.metrics_watch();
        let built = tokio::time::timeout(SNAPSHOT_WAIT, async {
            loop {
                let snap = watch.borrow().snapshot.map(|l| l.index);
                if snap >= target {
                    return snap;
                }
                if watch.changed().await.is_err() {
                    return snap;
                }
            }
        })
        .await
        .unwrap_or_else(|_| self.metrics().snapshot.map(|l| l.index));
        Ok(built)
    }
}

/// A member address is `host:port`: the scheme peers use comes from each node's own `[tls]`
/// section, so an address that names one would be dialled as `https://https://...`.
fn refuse_scheme(addr: &str) -> Result<(), NodeError> {
    if addr.contains("://") {
        return Err(NodeError::Invalid(format!(
            "member address {addr:?} must be host:port without a scheme: nodes reach each other \
             over HTTPS when they have a [tls] section, over plain HTTP otherwise"
        )));
    }
    Ok(())
}
