//! What the cluster-talking commands share: the client options (`--endpoints`,
//! `--admin-token`, `--token`, `--timeout-ms`, and TLS: `--ca-file`, `--client-cert`,
//! `--client-key`) and this machine's defaults (node name, MAC, cores).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use licd_raft::types::{Cores, MacAddr, NodeName};

use crate::client::{Client, ClientTls, RetryPolicy};

/// The endpoints `licd dev` starts, and the default of `--endpoints`.
pub const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/// How to reach the cluster.
#[derive(Debug, Clone, Args)]
pub struct ClientOpts {
    /// Cluster endpoints, `https://host:port`, `http://host:port` or `host:port` (HTTPS
    /// when --ca-file is given, plain HTTP otherwise), comma-separated or repeated.
    #[arg(
        long,
        env = "LICD_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS,
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Vec<String>,
    /// TLS options.
    #[command(flatten)]
    pub tls: TlsOpts,
    /// Admin bearer token (needed by `cluster` commands and `license install/remove`).
    #[arg(
        long,
        env = "LICD_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// File holding the admin token, used when no --admin-token / LICD_ADMIN_TOKEN is given.
    #[arg(long, env = "LICD_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Bearer token of the license API: a client token (allocate, heartbeat, release,
    /// check) or an operator token (read-only). Without one the admin token is used.
    #[arg(long, env = "LICD_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// File holding that token, used when no --token / LICD_TOKEN is given.
    #[arg(long, env = "LICD_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Overall deadline of the call in milliseconds, over every retry and failover.
    #[arg(long, default_value_t = 15_000, value_name = "MS")]
    pub timeout_ms: u64,
}

impl ClientOpts {
    fn policy(&self) -> anyhow::Result<RetryPolicy> {
        if self.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        let deadline = Duration::from_millis(self.timeout_ms);
        let defaults = RetryPolicy::default();
        Ok(RetryPolicy {
            deadline,
            attempt_timeout: defaults.attempt_timeout.min(deadline),
            ..defaults
        })
    }

    fn endpoints(&self) -> anyhow::Result<Vec<String>> {
        let endpoints: Vec<String> = self
            .endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            bail!("no endpoints: pass --endpoints host:port,... or set LICD_ENDPOINTS");
        }
        Ok(endpoints)
    }

    /// A client with every token given: `--token` for `/v1`, the admin token for `/admin`,
    /// each the other's fallback.
    pub fn client(&self) -> anyhow::Result<Client> {
        self.with_tokens(
            Client::with_policy(&self.endpoints()?, self.policy()?)?.with_tls(&self.tls.get()?)?,
        )
    }

    /// `client` with the tokens given: `--token` for `/v1`, the admin token for `/admin`.
    pub fn with_tokens(&self, mut client: Client) -> anyhow::Result<Client> {
        if let Some(token) = self.token()? {
            client = client.with_admin_token(token);
        }
        if let Some(token) = self.role_token()? {
            client = client.with_token(token);
        }
        Ok(client)
    }

    /// A client for the read-only admin routes: the admin token or an operator token.
    pub fn reader_client(&self) -> anyhow::Result<Client> {
        if self.token()?.is_none() && self.role_token()?.is_none() {
            bail!(
                "this command needs the admin token or an operator token: pass --admin-token \
                 TOKEN or --token TOKEN (or set LICD_ADMIN_TOKEN or LICD_TOKEN); `licd dev` \
                 writes them to <dev dir>/admin-token and <dev dir>/operator-token"
            );
        }
        self.client()
    }

    /// The token of `--token` / `LICD_TOKEN`, else of `--token-file`.
    fn role_token(&self) -> anyhow::Result<Option<String>> {
        read_token(self.token.as_deref(), self.token_file.as_deref(), "token")
    }

    /// A client for the admin API: fails with a clear message when no token is given.
    pub fn admin_client(&self) -> anyhow::Result<Client> {
        let Some(token) = self.token()? else {
            bail!(
                "this command needs the admin token: pass --admin-token TOKEN, or set \
                 LICD_ADMIN_TOKEN (or LICD_ADMIN_TOKEN_FILE); `licd dev` writes it to \
                 <dev dir>/admin-token"
            );
        };
        let client =
            Client::with_policy(&self.endpoints()?, self.policy()?)?.with_tls(&self.tls.get()?)?;
        Ok(client.with_admin_token(token))
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        read_token(
            self.admin_token.as_deref(),
            self.admin_token_file.as_deref(),
            "admin token",
        )
    }
}

/// A token given as text, else read from a file; `None` when neither is given.
fn read_token(
    text: Option<&str>,
    file: Option<&std::path::Path>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    if let Some(t) = text {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(Some(t.to_string()));
        }
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
        let t = text.trim();
        if t.is_empty() {
            bail!("the {what} file {} is empty", path.display());
        }
        return Ok(Some(t.to_string()));
    }
    Ok(None)
}

/// How a command verifies the cluster's certificates, and the certificate it presents when
/// the cluster requires one (mutual TLS).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsOpts {
    /// PEM file of the CA that signed the nodes' certificates (HTTPS; `licd dev` writes
    /// <dev dir>/tls/ca.pem). Without it, https:// endpoints are checked against the system's
    /// roots.
    #[arg(long, env = "LICD_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for a cluster that requires one (with --client-key).
    #[arg(
        long,
        env = "LICD_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "LICD_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
}

impl TlsOpts {
    /// The client library's TLS settings.
    pub fn get(&self) -> anyhow::Result<ClientTls> {
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Identity {
                cert_file: cert.clone(),
                key_file: key.clone(),
            }),
            (None, None) => None,
            _ => bail!("--client-cert and --client-key go together"),
        };
        Ok(ClientTls {
            ca_file: self.ca_file.clone(),
            identity,
        })
    }
}

/// This machine's host name, reduced to the characters a node name allows
/// (`[A-Za-z0-9._-]`, at most 128), or `this-host`.
pub fn default_node_name() -> NodeName {
    let raw = hostname().unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(licd_raft::types::MAX_ID_LEN)
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_string();
    NodeName::new(cleaned).unwrap_or_else(|_| NodeName::new("this-host").expect("a valid name"))
}

#[cfg(unix)]
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for writes of its length; gethostname NUL-terminates the
    // name when it fits, and we stop at the first NUL or at the end of the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return std::env::var("HOSTNAME").ok();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(not(unix))]
fn hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
}

/// The MAC address of this machine's first non-loopback interface, if there is one.
pub fn default_mac() -> Option<MacAddr> {
    match mac_address::get_mac_address() {
        Ok(Some(mac)) => Some(MacAddr::from_bytes(mac.bytes())),
        _ => None,
    }
}

/// [`default_mac`], or an error telling the user to pass `--mac`.
pub fn mac_or_default(mac: Option<MacAddr>) -> anyhow::Result<MacAddr> {
    match mac {
        Some(mac) => Ok(mac),
        None => default_mac().context(
            "cannot find this machine's MAC address (no non-loopback interface): pass --mac",
        ),
    }
}

/// This machine's CPU count, within the range a server may ask for.
pub fn default_cores() -> Cores {
    let n = u32::try_from(num_cpus::get())
        .unwrap_or(Cores::MAX)
        .clamp(1, Cores::MAX);
    Cores::new(n).unwrap_or_else(|_| Cores::new(1).expect("1 is a valid core count"))
}

/// clap parser of a core count (1 to 4096).
pub fn parse_cores(s: &str) -> Result<Cores, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of cores"))?;
    Cores::new(n).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_node_name_is_valid() {
        let name = default_node_name();
        assert!(!name.as_str().is_empty());
    }

    #[test]
    fn cores_are_parsed_and_bounded() {
        assert_eq!(parse_cores("8").unwrap().get(), 8);
        assert!(parse_cores("0").is_err());
        assert!(parse_cores("x").is_err());
        assert!(default_cores().get() >= 1);
    }
}
