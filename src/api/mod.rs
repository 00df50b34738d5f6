//! The JSON shapes of licd's HTTP API, shared by the server and the client library so that
//! the two cannot drift apart. docs/api.md describes every endpoint that uses them.
//!
//! The wire is licd's own: [`license`] holds the `/v1` bodies ([`events`] those of the
//! usage history), [`admin`] the `/admin` ones,
//! [`error`] the one error shape and its [`ErrorCode`]s. None of them is a `licd-raft` type
//! (only the validated scalars such as [`licd_raft::types::NodeName`] are shared), so the
//! Raft log and snapshot formats can change without changing the API, and the other way
//! round; every conversion is an explicit `From` next to the wire type.

pub mod admin;
pub mod error;
pub mod events;
pub mod license;

pub use admin::*;
pub use error::{ErrorBody, ErrorCode};
pub use events::*;
pub use license::*;

/// Header carrying a write's exactly-once key: a retry with the same key is answered with
/// the first outcome, never applied twice.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Header carrying a request id for tracing. Deprecated as the exactly-once key (a proxy
/// may set it), but still used as the key when no `idempotency-key` is sent, as is the
/// body's `request_id` field.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Response header: the id of the Raft member this node believes leads.
pub const LEADER_ID_HEADER: &str = "x-licd-leader-id";
/// Response header: the HTTP address of that leader.
pub const LEADER_ADDR_HEADER: &str = "x-licd-leader-addr";
/// Response header: the id of the node that answered.
pub const NODE_ID_HEADER: &str = "x-licd-node-id";
/// Request header a follower sets when it forwards a request to the leader; a node that is
/// not the leader answers a forwarded request with 503 instead of forwarding it again.
pub const FORWARDED_HEADER: &str = "x-licd-forwarded";
/// The headers of `/raft` routes, defined with the Raft transport that sends them.
pub use crate::cluster_id::CLUSTER_ID_HEADER;
/// The header of a lease token, and the token itself.
pub use crate::lease_token::{LEASE_TOKEN_HEADER, LeaseToken};
pub use crate::node::network::{CLOCK_HEADER, CLUSTER_SECRET_HEADER};

#[cfg(test)]
mod tests;
