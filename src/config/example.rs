//! A configuration with every key set to a valid value that differs from its default: what
//! the tests use to check that every key has a flag and a variable and survives every layer
//! and `--print-config` (a key left at its default or unset would prove nothing).

use std::path::Path;

use licd_raft::license_file::{encode_public_key, encode_signing_key};

use super::{LimitsConfig, NodeConfig, RaftTiming, TokenEntry};
use crate::auth::{AuthConfig, Role};

/// Writes the answer-signing key it names into `dir` (validation reads it) and returns the
/// configuration. Its TLS files are names only: nothing before the node starts reads them.
pub fn filled(dir: &Path) -> std::io::Result<NodeConfig> {
    let vendor = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let answer = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let answer_file = dir.join("answer-signing.key");
    std::fs::write(&answer_file, encode_signing_key(&answer))?;
    Ok(NodeConfig {
        node_id: 3,
        listen: "127.0.0.1:7203".parse().expect("an address"),
        advertise: Some("node-3.example:7203".into()),
        data_dir: dir.join("data"),
        trusted_keys: vec![
            encode_public_key(&vendor.verifying_key()),
            encode_public_key(&answer.verifying_key()),
        ],
        default_lease_ttl_ms: 45_000,
        raft_bind_ip: Some("127.0.0.1".parse().expect("an address")),
        admin_token_file: Some(dir.join("admin-token")),
        cluster_secret_file: Some(dir.join("cluster-secret")),
        answer_signing_key_file: Some(answer_file),
        raft: RaftTiming {
            heartbeat_ms: 60,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 1_500,
            install_snapshot_timeout_ms: 20_000,
            snapshot_every_logs: 6_000,
            logs_kept_after_snapshot: 1_200,
            tick_ms: 700,
            lease_checkpoint_ms: 6_000,
            clock_skew_bound_ms: 120_000,
        },
        auth: AuthConfig {
            tokens: vec![TokenEntry {
                role: Role::Client,
                sha256: "ab".repeat(32),
                name: Some("apps".into()),
            }],
            allow_anonymous_clients: true,
        },
        limits: LimitsConfig {
            max_in_flight: 512,
            writes_per_second: 70,
            write_burst: 140,
        },
        tls: Some(crate::tls::TlsConfig {
            cert_file: dir.join("node.pem"),
            key_file: dir.join("node.key"),
            ca_file: dir.join("ca.pem"),
            require_client_cert: true,
        }),
        events: super::EventsConfig {
            retention_days: 90,
            max_events: 250_000,
        },
        server: crate::http::ServerLimits {
            header_read_timeout_ms: 5_000,
            tls_handshake_timeout_ms: 4_000,
            max_connections: 300,
            max_header_bytes: 16_384,
        },
    })
}

/// The command-line form of every key of a configuration, as `(flag argument, variable,
/// value of the variable)`: durations written in the human form, lists comma-separated, a
/// switch that is on as the flag alone and `true`.
pub fn as_overrides(config: &NodeConfig) -> Vec<(String, String, String)> {
    let flat = super::load::flatten(config);
    super::keys::KEYS
        .iter()
        .filter_map(|key| {
            let value = flat.get(key.path)?;
            let text = match (key.kind, value) {
                (super::keys::Kind::Duration, toml::Value::Integer(ms)) => {
                    humantime::format_duration(std::time::Duration::from_millis(
                        u64::try_from(*ms).unwrap_or(0),
                    ))
                    .to_string()
                }
                (super::keys::Kind::Tokens, _) => config
                    .auth
                    .tokens
                    .iter()
                    .map(|t| match &t.name {
                        Some(name) => format!("{}:{}:{name}", t.role, t.sha256),
                        None => format!("{}:{}", t.role, t.sha256),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                (_, toml::Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                (_, toml::Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            let flag = match value {
                toml::Value::Boolean(true) => format!("--{}", key.flag),
                _ => format!("--{}={text}", key.flag),
            };
            Some((flag, key.env.to_string(), text))
        })
        .collect()
}
