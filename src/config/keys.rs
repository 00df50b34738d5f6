//! The one list of configuration keys. Each key of [`NodeConfig`](super::NodeConfig) has an
//! entry here naming its `licd serve` flag and its `LICD_*` variable; the flags of
//! `licd serve` are built from this list, and a test walks a fully filled configuration to
//! check that no key is missing from it. So a key cannot have a file form without a flag and
//! a variable, and the README's configuration table (generated from this list and the real
//! defaults, and compared by a test) cannot fall behind.
//!
//! Adding a key: add the field (with `deserialize_with = "crate::config::duration::millis"`
//! for a duration), then one [`Key`] here; nothing else is needed for its flag, variable,
//! layering, `--print-config` and the README row (copy the row the README test prints).

/// How a value is written on the command line and in a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (also addresses and paths: their syntax is checked when the layers are merged).
    Text,
    /// A whole number.
    Number,
    /// Milliseconds, or a human duration (`300ms`, `30s`, `5m`).
    Duration,
    /// A switch: the flag alone means true; the variable takes `true` or `false`.
    Switch,
    /// A list: the flag repeated or comma-separated, the variable comma-separated.
    List,
    /// Token entries, `role:sha256[:name],...`, added to the file's `[[auth.tokens]]`.
    Tokens,
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The dotted path in the TOML file (`raft.heartbeat_ms`).
    pub path: &'static str,
    /// The long flag of `licd serve`, without the dashes.
    pub flag: &'static str,
    /// The environment variable.
    pub env: &'static str,
    /// How the value is written.
    pub kind: Kind,
    /// What the README says when the key has no default value: `(required)`, `none`, ...
    pub unset: &'static str,
    /// One line for `--help` and the README.
    pub help: &'static str,
}

impl Key {
    /// The `[section] name` form the README uses.
    pub fn display(&self) -> String {
        match self.path.split_once('.') {
            Some((section, name)) if self.path == "auth.tokens" => {
                format!("`[[{section}.{name}]]`")
            }
            Some((section, name)) => format!("`[{section}] {name}`"),
            None => format!("`{}`", self.path),
        }
    }
}

const fn key(
    path: &'static str,
    flag: &'static str,
    env: &'static str,
    kind: Kind,
    unset: &'static str,
    help: &'static str,
) -> Key {
    Key {
        path,
        flag,
        env,
        kind,
        unset,
        help,
    }
}

use Kind::{Duration, List, Number, Switch, Text, Tokens};

/// Every key of the node configuration, in the README's order.
#[rustfmt::skip]
pub const KEYS: &[Key] = &[
    key("node_id", "node-id", "LICD_NODE_ID", Number, "(required)", "the node's Raft member id, 1 or more"),
    key("listen", "listen", "LICD_LISTEN", Text, "(required)", "`host:port` to listen on"),
    key("advertise", "advertise", "LICD_ADVERTISE", Text, "`listen`", "`host:port` peers and clients use"),
    key("data_dir", "data-dir", "LICD_DATA_DIR", Text, "(required)", "the sled database directory"),
    key("trusted_keys", "trusted-key", "LICD_TRUSTED_KEYS", List, "`[]`", "vendor public keys (base64) license files must be signed by; the flag (repeated) or the variable replaces the file's list"),
    key("default_lease_ttl_ms", "default-lease-ttl-ms", "LICD_DEFAULT_LEASE_TTL_MS", Duration, "", "lease of allocations that name none"),
    key("raft_bind_ip", "raft-bind-ip", "LICD_RAFT_BIND_IP", Text, "none", "local address for outgoing Raft connections"),
    key("admin_token_file", "admin-token-file", "LICD_ADMIN_TOKEN_FILE", Text, "none", "file with a plain admin token (or `LICD_ADMIN_TOKEN`), accepted as one admin token"),
    key("cluster_secret_file", "cluster-secret-file", "LICD_CLUSTER_SECRET_FILE", Text, "none", "file with the cluster secret (or `LICD_CLUSTER_SECRET`)"),
    key("answer_signing_key_file", "answer-signing-key-file", "LICD_ANSWER_SIGNING_KEY_FILE", Text, "none", "the cluster's answer-signing key (`licd answer-key new FILE`): check answers are signed with it; none: unsigned"),
    key("auth.tokens", "tokens", "LICD_TOKENS", Tokens, "none", "accepted bearer tokens by SHA-256 (`role`, `sha256`, `name`; `licd token new` prints one); the flag or variable, `role:sha256[:name],...`, adds to the file's"),
    key("auth.allow_anonymous_clients", "allow-anonymous-clients", "LICD_ALLOW_ANONYMOUS_CLIENTS", Switch, "", "serve the client routes without a token (a closed network only)"),
    key("limits.max_in_flight", "max-in-flight", "LICD_MAX_IN_FLIGHT", Number, "", "`/v1` and `/admin` requests served at once; more are 503"),
    key("limits.writes_per_second", "writes-per-second", "LICD_WRITES_PER_SECOND", Number, "", "sustained log writes per token; more are 429"),
    key("limits.write_burst", "write-burst", "LICD_WRITE_BURST", Number, "", "writes a token may make in a burst above that rate"),
    key("raft.heartbeat_ms", "heartbeat-ms", "LICD_HEARTBEAT_MS", Duration, "", "leader heartbeat"),
    key("raft.election_timeout_min_ms", "election-timeout-min-ms", "LICD_ELECTION_TIMEOUT_MIN_MS", Duration, "", "lower bound of the randomized election timeout"),
    key("raft.election_timeout_max_ms", "election-timeout-max-ms", "LICD_ELECTION_TIMEOUT_MAX_MS", Duration, "", "upper bound of the randomized election timeout"),
    key("raft.install_snapshot_timeout_ms", "install-snapshot-timeout-ms", "LICD_INSTALL_SNAPSHOT_TIMEOUT_MS", Duration, "", "time for one snapshot chunk to be sent and installed"),
    key("raft.snapshot_every_logs", "snapshot-every-logs", "LICD_SNAPSHOT_EVERY_LOGS", Number, "", "entries between snapshots"),
    key("raft.logs_kept_after_snapshot", "logs-kept-after-snapshot", "LICD_LOGS_KEPT_AFTER_SNAPSHOT", Number, "", "entries kept behind a snapshot"),
    key("raft.tick_ms", "tick-ms", "LICD_TICK_MS", Duration, "", "how often the leader frees leases that are over"),
    key("raft.lease_checkpoint_ms", "lease-checkpoint-ms", "LICD_LEASE_CHECKPOINT_MS", Duration, "", "how stale a lease's logged remaining time may get before the leader checkpoints it (part of the bound on a dead server's cores)"),
    key("raft.clock_skew_bound_ms", "clock-skew-bound-ms", "LICD_CLOCK_SKEW_BOUND_MS", Duration, "", "how far a voter's wall clock may be from the voters' median before it is reported and left out of the calendar"),
    key("events.retention_days", "event-retention-days", "LICD_EVENT_RETENTION_DAYS", Number, "", "days of usage history the cluster keeps (`licd report`); replicated: the leader's setting is proposed to all, so set it alike on every node"),
    key("events.max_events", "max-events", "LICD_MAX_EVENTS", Number, "", "the most usage history events the cluster keeps; the oldest go first"),
    key("tls.cert_file", "tls-cert-file", "LICD_TLS_CERT_FILE", Text, "none (plain HTTP)", "the node's certificate chain (PEM): with the key and the CA it serves HTTPS and calls its peers over HTTPS"),
    key("tls.key_file", "tls-key-file", "LICD_TLS_KEY_FILE", Text, "(required with `[tls]`)", "the private key of `cert_file` (PEM)"),
    key("tls.ca_file", "tls-ca-file", "LICD_TLS_CA_FILE", Text, "(required with `[tls]`)", "the CA that signed the cluster's certificates: peers (and clients, with mutual TLS) are verified against it"),
    key("tls.require_client_cert", "tls-require-client-cert", "LICD_TLS_REQUIRE_CLIENT_CERT", Switch, "false", "mutual TLS: every caller, client or peer, must present a certificate signed by `ca_file`"),
    key("server.header_read_timeout_ms", "header-read-timeout-ms", "LICD_HEADER_READ_TIMEOUT_MS", Duration, "", "a connection must send a whole request head within this long; also the idle limit of a kept-alive connection"),
    key("server.tls_handshake_timeout_ms", "tls-handshake-timeout-ms", "LICD_TLS_HANDSHAKE_TIMEOUT_MS", Duration, "", "a TLS handshake must finish within this long"),
    key("server.max_connections", "max-connections", "LICD_MAX_CONNECTIONS", Number, "", "connections open at once; more wait in the listen backlog"),
    key("server.max_header_bytes", "max-header-bytes", "LICD_MAX_HEADER_BYTES", Number, "", "largest request head in bytes (at least 8192); a larger one is answered 431"),
];

/// The variable naming the configuration file (`--config`).
pub const CONFIG_ENV: &str = "LICD_CONFIG";

/// Variables licd reads itself rather than through a flag: the two plain secrets, which
/// never appear in a flag (a flag shows in `ps`), and the log filter.
pub const DIRECT_ENV: &[&str] = &["LICD_ADMIN_TOKEN", "LICD_CLUSTER_SECRET", "LICD_LOG"];

/// The key of a dotted path.
pub fn by_path(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// The README's configuration table, generated from [`KEYS`] and the defaults a
/// configuration with only its required keys gets (`defaults`: dotted path to the TOML
/// rendering of the default value).
pub fn markdown_table(defaults: &std::collections::BTreeMap<String, String>) -> String {
    let mut out =
        String::from("| key | flag | variable | default | meaning |\n|---|---|---|---|---|\n");
    for k in KEYS {
        let default = match defaults.get(k.path) {
            Some(v) => format!("`{v}`"),
            None => k.unset.to_string(),
        };
        out.push_str(&format!(
            "| {} | `--{}` | `{}` | {default} | {} |\n",
            k.display(),
            k.flag,
            k.env,
            k.help
        ));
    }
    out
}
