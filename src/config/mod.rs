//! Node configuration: a TOML file, then `LICD_*` environment variables, then command-line
//! flags, each layer replacing the keys it names ([`load`]); every key has all three forms
//! ([`keys`]), and durations take milliseconds or a human form ([`duration`]). The two plain
//! secrets come only from the environment or from files and are never logged or printed.

pub mod duration;
pub mod example;
pub mod keys;
pub mod load;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use licd_raft::RaftNodeId;
use licd_raft::license_file::{decode_public_key, decode_signing_key};
use licd_raft::types::LeaseTtl;
use serde::{Deserialize, Serialize};

pub use crate::auth::{AuthConfig, TokenEntry};

/// Everything a node needs to start, after files, flags and environment are merged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's Raft member id (1 or more).
    pub node_id: RaftNodeId,
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// The `host:port` other nodes and clients use to reach this node; `listen` by default.
    #[serde(default)]
    pub advertise: Option<String>,
    /// The sled database directory.
    pub data_dir: PathBuf,
    /// Trusted vendor public keys (base64), against which license files are verified.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Lease duration of allocations that do not name one, in milliseconds.
    #[serde(default = "default_lease_ttl_ms")]
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub default_lease_ttl_ms: u64,
    /// The local address outgoing Raft connections are bound to, if any.
    #[serde(default)]
    pub raft_bind_ip: Option<std::net::IpAddr>,
    /// File holding the admin bearer token (or set `LICD_ADMIN_TOKEN`).
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the cluster secret (or set `LICD_CLUSTER_SECRET`).
    #[serde(default)]
    pub cluster_secret_file: Option<PathBuf>,
    /// File holding the cluster's answer-signing key (`licd answer-key new FILE`), the same
    /// on every node; check answers are signed with it. None: answers are unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_signing_key_file: Option<PathBuf>,
    /// Raft timing.
    #[serde(default)]
    pub raft: RaftTiming,
    /// Who may call what: the hashed bearer tokens of each role (docs/operations.md,
    /// Security).
    #[serde(default)]
    pub auth: AuthConfig,
    /// The abuse limits of the HTTP API: requests in flight, write rates.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// TLS: certificate, key and the cluster CA (HTTPS for clients and peers, mutual TLS
    /// optional). Without it the node serves and calls plain HTTP.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The HTTP server's timeouts and connection limit.
    #[serde(default)]
    pub server: crate::http::ServerLimits,
    /// How much usage history the cluster keeps (`[events]`).
    #[serde(default)]
    pub events: EventsConfig,
}

/// The `[events]` section: the retention of the usage history (`GET /v1/events`).
///
/// The history is replicated, so its retention must be the same on every replica: this
/// setting is not applied by the node alone. The leader proposes it through the log when it
/// differs from the retention in force, and every replica applies that entry; set it alike
/// on every node (docs/operations.md, Usage history).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events this many days older than the newest one are dropped.
    pub retention_days: u32,
    /// The most events kept; the oldest go first.
    pub max_events: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let r = licd_raft::events::Retention::default();
        EventsConfig {
            retention_days: r.max_age_days,
            max_events: r.max_events,
        }
    }
}

impl EventsConfig {
    /// The retention this configuration asks for.
    pub fn retention(&self) -> licd_raft::events::Retention {
        licd_raft::events::Retention {
            max_age_days: self.retention_days,
            max_events: self.max_events,
        }
    }
}

/// The `[limits]` section. docs/operations.md explains the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests of `/v1` and `/admin` served at once by a node; more are answered 503.
    pub max_in_flight: usize,
    /// Sustained log writes (allocate, release, admin changes) per second per token.
    pub writes_per_second: u32,
    /// Writes a token may make in a burst above that rate.
    pub write_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_in_flight: 1_024,
            writes_per_second: 50,
            write_burst: 100,
        }
    }
}

fn default_lease_ttl_ms() -> u64 {
    30_000
}

/// Raft timing, in milliseconds. docs/operations.md explains the defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    /// Leader heartbeat interval.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub election_timeout_max_ms: u64,
    /// Time allowed for one snapshot chunk to be sent and installed.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub install_snapshot_timeout_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every_logs: u64,
    /// Log entries kept behind a snapshot (for slow followers) before they are purged.
    pub logs_kept_after_snapshot: u64,
    /// How often the leader looks for leases it measured as over and proposes their
    /// expiration.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub tick_ms: u64,
    /// How often the leader records the remaining time of every lease in the log, so that a
    /// new leader starts from recent figures (the bound on a dead server's cores grows by it).
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub lease_checkpoint_ms: u64,
    /// How far a voter's wall clock may be from the median of the voters' before it is
    /// reported as skewed and left out of the cluster's calendar time.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub clock_skew_bound_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat_ms: 50,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 500,
            install_snapshot_timeout_ms: 10_000,
            snapshot_every_logs: 5_000,
            logs_kept_after_snapshot: 1_000,
            tick_ms: 500,
            lease_checkpoint_ms: 5_000,
            clock_skew_bound_ms: 30_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The layers (file, variables, flags) do not make a configuration: a key unknown, of
    /// the wrong type, or missing.
    #[error("invalid configuration: {0}")]
    Layers(String),
}

/// The secrets a node holds. `Debug` prints nothing of them.
#[derive(Clone)]
pub struct Secrets {
    /// The plain admin token of `admin_token_file` / `LICD_ADMIN_TOKEN`, accepted as one
    /// admin token (hashed when the node starts); empty when only hashed tokens are used.
    pub admin_token: Arc<str>,
    /// Shared secret of the Raft routes.
    pub cluster_secret: Arc<str>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

impl NodeConfig {
    /// Reads a TOML configuration file, without overrides, and validates it.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        load::load(Some(path), &load::Overrides::default())
    }

    /// The address advertised to peers and clients.
    pub fn advertise_addr(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// The trusted vendor keys, decoded.
    pub fn trusted_keys(&self) -> Result<Vec<VerifyingKey>, ConfigError> {
        self.trusted_keys
            .iter()
            .map(|k| {
                decode_public_key(k)
                    .map_err(|e| ConfigError::Invalid(format!("trusted key {k:?}: {e}")))
            })
            .collect()
    }

    /// The default lease duration, validated.
    pub fn default_lease_ttl(&self) -> Result<LeaseTtl, ConfigError> {
        LeaseTtl::from_millis(self.default_lease_ttl_ms)
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// Checks every value that can be checked before the node starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(ConfigError::Invalid("node_id must be 1 or more".into()));
        }
        self.trusted_keys()?;
        self.default_lease_ttl()?;
        self.answer_signing_key()?;
        self.server.validate().map_err(ConfigError::Invalid)?;
        let t = &self.raft;
        if t.heartbeat_ms == 0 || t.election_timeout_min_ms <= t.heartbeat_ms {
            return Err(ConfigError::Invalid(
                "raft.election_timeout_min_ms must be larger than raft.heartbeat_ms (> 0)".into(),
            ));
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            return Err(ConfigError::Invalid(
                "raft.election_timeout_max_ms must be larger than raft.election_timeout_min_ms"
                    .into(),
            ));
        }
        if !self.events.retention().is_valid() {
            return Err(ConfigError::Invalid(
                "events.retention_days and events.max_events must be 1 or more".into(),
            ));
        }
        let l = &self.limits;
        if l.max_in_flight == 0 || l.writes_per_second == 0 || l.write_burst == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_in_flight, limits.writes_per_second and limits.write_burst must be positive".into(),
            ));
        }
        crate::auth::Tokens::new(&self.auth, "")
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if t.tick_ms == 0
            || t.snapshot_every_logs == 0
            || t.lease_checkpoint_ms == 0
            || t.clock_skew_bound_ms == 0
        {
            return Err(ConfigError::Invalid(
                "raft.tick_ms, raft.snapshot_every_logs, raft.lease_checkpoint_ms and raft.clock_skew_bound_ms must be positive".into(),
            ));
        }
        Ok(())
    }

    /// Loads the secrets: `LICD_ADMIN_TOKEN` / `LICD_CLUSTER_SECRET`, or the configured files.
    /// The plain admin token may be left out when `[[auth.tokens]]` holds an admin token.
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        let hashed_admin = self
            .auth
            .tokens
            .iter()
            .any(|t| t.role == crate::auth::Role::Admin);
        let admin_token = if hashed_admin
            && std::env::var_os("LICD_ADMIN_TOKEN").is_none()
            && self.admin_token_file.is_none()
        {
            Arc::from("")
        } else {
            secret(
                "LICD_ADMIN_TOKEN",
                self.admin_token_file.as_deref(),
                "admin token",
            )?
        };
        let cluster_secret = secret(
            "LICD_CLUSTER_SECRET",
            self.cluster_secret_file.as_deref(),
            "cluster secret",
        )?;
        Ok(Secrets {
            admin_token,
            cluster_secret,
        })
    }
}

impl NodeConfig {
    /// Reads the answer-signing key from `answer_signing_key_file`, if one is configured.
    pub fn answer_signing_key(&self) -> Result<Option<ed25519_dalek::SigningKey>, ConfigError> {
        let Some(path) = &self.answer_signing_key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        decode_signing_key(&text).map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "{} is not an answer-signing key (expected the base64 key `licd answer-key new` \
                 writes)",
                path.display()
            ))
        })
    }
}

fn secret(env: &str, file: Option<&Path>, what: &str) -> Result<Arc<str>, ConfigError> {
    let value = match (std::env::var(env).ok(), file) {
        (Some(v), _) => v,
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?
        }
        (None, None) => {
            return Err(ConfigError::Invalid(format!(
                "no {what}: set {env} or configure a file for it"
            )));
        }
    };
    let value = value.trim();
    if value.len() < 16 {
        return Err(ConfigError::Invalid(format!(
            "the {what} must be at least 16 characters"
        )));
    }
    Ok(value.into())
}
