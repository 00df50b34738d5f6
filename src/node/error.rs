//! [`NodeError`]: why the node could not do what a caller asked, in terms a caller can act
//! on (retry elsewhere, retry later, fix the input), with openraft's error types translated
//! once, here.

use licd_raft::RaftNodeId;
use licd_raft::command::Rejection;
use licd_raft::license_file::LicenseFileError;
use openraft::BasicNode;
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, ForwardToLeader,
    InitializeError, RaftError,
};

/// What a deadline bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A write: its outcome is unknown until retried with the same request id.
    Write,
    /// A leadership confirmation for a read.
    Read,
    /// A membership change (a learner may still be catching up).
    Membership,
    /// Building the snapshot of a backup.
    Snapshot,
}

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// This node does not lead; `leader` is the one it knows, with its address.
    #[error("this node is not the leader")]
    NotLeader {
        /// The leader this node knows.
        leader: Option<(RaftNodeId, String)>,
    },
    /// The leader cannot reach a majority.
    #[error("the leader cannot reach a majority of the cluster: {0}")]
    NoQuorum(String),
    /// The operation did not complete within its deadline.
    #[error("deadline passed")]
    Timeout(Deadline),
    /// Raft has stopped.
    #[error("raft is not running: {0}")]
    Stopped(String),
    /// The state machine's rules refused the request before it was proposed.
    #[error(transparent)]
    Refused(#[from] Rejection),
    /// A license file that cannot be installed.
    #[error(transparent)]
    LicenseFile(#[from] LicenseFileError),
    /// The caller's input is unusable.
    #[error("{0}")]
    Invalid(String),
    /// The node already belongs to a cluster.
    #[error("the cluster is already initialized: {0}")]
    AlreadyInitialized(String),
    /// The member named is not in the cluster (or not a learner yet).
    #[error("{0}")]
    MemberNotFound(String),
    /// Another membership change has not completed.
    #[error("{0}")]
    MembershipChangeInProgress(String),
    /// A Raft message from a node of another cluster (see `node::identity`).
    #[error("{0}")]
    ClusterMismatch(String),
    /// The node's own storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

impl NodeError {
    fn not_leader(f: ForwardToLeader<RaftNodeId, BasicNode>) -> Self {
        NodeError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        }
    }

    fn fatal(f: &Fatal<RaftNodeId>) -> Self {
        tracing::error!(error = %f, "raft is not running");
        NodeError::Stopped(f.to_string())
    }
}

impl From<RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>> for NodeError {
    fn from(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Self::not_leader(f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => match c {
                ChangeMembershipError::InProgress(p) => {
                    NodeError::MembershipChangeInProgress(p.to_string())
                }
                ChangeMembershipError::EmptyMembership(m) => {
                    NodeError::Invalid(format!("{m}: a cluster needs at least one voter"))
                }
                ChangeMembershipError::LearnerNotFound(l) => {
                    NodeError::MemberNotFound(format!("{l}: add the node as a learner first"))
                }
            },
            RaftError::Fatal(f) => Self::fatal(&f),
        }
    }
}

impl From<RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>> for NodeError {
    fn from(e: RaftError<RaftNodeId, CheckIsLeaderError<RaftNodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => Self::not_leader(f),
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                NodeError::NoQuorum(q.to_string())
            }
            RaftError::Fatal(f) => Self::fatal(&f),
        }
    }
}

impl From<RaftError<RaftNodeId, InitializeError<RaftNodeId, BasicNode>>> for NodeError {
    fn from(e: RaftError<RaftNodeId, InitializeError<RaftNodeId, BasicNode>>) -> Self {
        match e {
            RaftError::APIError(InitializeError::NotAllowed(e)) => {
                NodeError::AlreadyInitialized(e.to_string())
            }
            RaftError::APIError(InitializeError::NotInMembers(e)) => {
                NodeError::Invalid(e.to_string())
            }
            RaftError::Fatal(f) => NodeError::Stopped(f.to_string()),
        }
    }
}
