//! Who may call what: the roles, the route table that gives every route the role it needs,
//! and the bearer tokens that prove a role.
//!
//! Three roles: `admin` may do everything; `operator` may read (the cluster status, the
//! licenses with their usage, the metrics) and change nothing; `client` is an application
//! server or its agent: allocate, heartbeat, release, check. [`routes::ROUTES`] names the
//! [`Need`] of every route in one place; the HTTP layer refuses a route missing from it, so a
//! new route is closed until it is given a role, and tests/access.rs checks the table
//! against an expectation of its own.
//!
//! Tokens are generated, never chosen ([`new_token`]: 32 random bytes), so a node stores only
//! their SHA-256 ([`hash_token`]): a stolen configuration file does not hold a usable token,
//! and no slow password hash is needed, since a 256-bit secret cannot be guessed. A presented
//! token is hashed and compared with every configured hash in constant time. Several tokens
//! may hold the same role, which is how one is rotated without downtime: add the new one on
//! every node, move the callers to it, remove the old one.
//!
//! What this leaves out: tokens travel in the clear unless the listener uses TLS; a token
//! does not name the application server it belongs to, so any client token may allocate,
//! heartbeat or release any server (give each group of servers its own token to tell them
//! apart in the rate limit).

pub mod routes;
mod tokens;

pub use routes::{ROUTES, Route, need};
pub use tokens::{Caller, TokenError, Tokens, hash_token, new_token, parse_env_tokens};

use serde::{Deserialize, Serialize};

/// The role a token holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, the cluster's membership and its licenses included.
    Admin,
    /// Read-only: status, licenses and usage, metrics.
    Operator,
    /// An application server: allocate, heartbeat, release, check.
    Client,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Client];

    /// The role's name in configurations and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Client => "client",
        }
    }

    /// Whether a caller with this role may use a route that needs `need`.
    pub fn may(self, need: Need) -> bool {
        match need {
            Need::Open => true,
            Need::ClusterSecret => false,
            Need::AnyRole => true,
            Need::Role(wanted) => self == Role::Admin || self == wanted,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "client" => Ok(Role::Client),
            other => Err(format!(
                "unknown role {other:?}: use admin, operator or client"
            )),
        }
    }
}

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the probes.
    Open,
    /// The cluster secret header: the Raft transport between nodes.
    ClusterSecret,
    /// A token of any role: a summary that every caller may read.
    AnyRole,
    /// A token of this role, or an admin token.
    Role(Role),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Open => f.write_str("open"),
            Need::ClusterSecret => f.write_str("cluster secret"),
            Need::AnyRole => f.write_str("any token"),
            Need::Role(r) => write!(f, "{r}"),
        }
    }
}

/// The `[auth]` section: tokens by role, stored as SHA-256 hashes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The accepted tokens (`[[auth.tokens]]`); `LICD_TOKENS` adds more.
    pub tokens: Vec<TokenEntry>,
    /// Serve the client routes of `/v1` without a token. Only for a closed network: any
    /// host that reaches the port may then allocate, heartbeat and release any server.
    pub allow_anonymous_clients: bool,
}

/// One accepted token: `licd token new` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The role the token holds.
    pub role: Role,
    /// SHA-256 of the token, 64 hex digits.
    pub sha256: String,
    /// A name for people and for the rate limit (e.g. `app-servers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
