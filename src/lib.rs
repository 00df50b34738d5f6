//! licd: a highly available license server for software licensed by CPU cores.
//!
//! This crate is the node and its tools, over the pure state machine ([`raft`], crate
//! `licd-raft`) and the sled storage ([`storage`], crate `licd-storage`):
//!
//! - [`auth`]: roles, the route table, hashed bearer tokens;
//! - [`config`]: node configuration and secrets;
//! - [`cluster_id`]: the id that keeps the nodes of two clusters apart on `/raft`;
//! - [`backup`]: the backup file of `GET /admin/snapshot` and `licd snapshot`;
//! - [`node`]: a running node: Raft, storage, the read batcher, the leader's leases and
//!   the cluster calendar;
//! - [`http`]: the license API, the admin API, the Raft transport and the probes;
//! - [`api`]: the JSON shapes of the HTTP API, shared with the client;
//! - [`client`]: the failover client library used by the CLI and the agent;
//! - [`lease_token`]: the secret that binds an allocation to its holder;
//! - [`cli`]: the `licd` command line;
//! - [`report`]: the per-day usage report computed from the usage history;
//! - [`signing`]: the signed check answers: the canonical message, signing, verifying;
//! - [`logging`]: text or JSON logs, colours only on a terminal, repeated lines held back;
//! - [`tls`]: rustls configurations of the server, the Raft peers and the clients;
//! - [`process`]: child processes started in their own group and stopped for sure (`licd dev`,
//!   the fault harness and the tests).

#[cfg(all(feature = "bug-stale-reads", not(debug_assertions)))]
compile_error!(
    "the bug-stale-reads feature injects a known bug for the fault harness and must never be \
     part of a release build"
);

#[cfg(all(feature = "bug-wall-clock-leases", not(debug_assertions)))]
compile_error!(
    "the bug-wall-clock-leases feature injects a known bug for the fault harness and must \
     never be part of a release build"
);

pub mod agent;
pub mod api;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod client;
pub mod cluster_id;
pub mod config;
pub mod http;
pub mod lease_token;
pub mod logging;
pub mod node;
pub mod process;
pub mod report;
pub mod signing;
pub mod tls;

pub use licd_raft as raft;
pub use licd_storage as storage;
