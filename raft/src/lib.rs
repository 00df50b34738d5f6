//! licd-raft: the license model and the replicated state machine of licd.
//!
//! This crate is the part of licd that every replica must compute identically, so it does no
//! I/O, reads no clock and spawns no task: every input arrives in the log entry. That makes
//! replicas agree, and it makes the license rules testable without a cluster.
//!
//! - [`types`]: validated identifiers, MAC addresses, core counts, lease durations and times.
//! - [`license`]: the [`License`] a vendor grants.
//! - [`license_file`]: Ed25519-signed, armored license files, and their verification.
//! - [`command`]: the [`Request`]s the Raft log carries and the [`Response`]s applying them gives.
//! - [`state`]: [`LicenseState`] and its deterministic [`LicenseState::apply`].
//! - [`events`]: the usage history derived from applied entries, and its retention.
//! - [`query`]: the license check and usage report, for the linearizable read path.
//! - [`dedup`]: the bounded table of applied request ids behind exactly-once retries.
//! - [`format2`]: the log and snapshot shapes of stored format 2 (before lease tokens), and
//!   their upgrade.
//! - [`codec`]: the binary encoding of log entries, snapshots and Raft messages.
//!
//! What it leaves out: storage (crate `licd-storage`), networking, the leader's clock and the
//! periodic tick (crate `licd`).

pub mod codec;
pub mod command;
pub mod dedup;
pub mod events;
pub mod format2;
pub mod license;
pub mod license_file;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod query;
pub mod state;
pub mod types;

use std::io::Cursor;

pub use command::{Code, Command, Outcome, Rejection, Request, Response};
pub use license::License;
pub use state::LicenseState;

/// The id of a Raft member (a licd server), as openraft sees it.
pub type RaftNodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of licd: log entries carry [`Request`]s, applying them
    /// yields [`Response`]s, members are numbered and addressed by a URL, snapshots are bytes.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = RaftNodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
