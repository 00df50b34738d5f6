//! `licd serve`: run one node from a TOML file, with flag and environment overrides.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::{NodeConfig, RaftTiming};
use crate::node::Node;

/// Options of `licd serve`. Each flag overrides the configuration file, and each can also be
/// given as the `LICD_*` environment variable shown.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see README: Configuration).
    #[arg(long, short, env = "LICD_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's Raft member id.
    #[arg(long, env = "LICD_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on, host:port.
    #[arg(long, env = "LICD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address other nodes and clients reach this node at, host:port.
    #[arg(long, env = "LICD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Database directory.
    #[arg(long, env = "LICD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A trusted vendor public key (base64); repeat for several.
    #[arg(long = "trusted-key", env = "LICD_TRUSTED_KEYS", value_delimiter = ',')]
    pub trusted_keys: Vec<String>,
    /// Default lease duration of allocations, in milliseconds.
    #[arg(long, env = "LICD_DEFAULT_LEASE_TTL_MS")]
    pub default_lease_ttl_ms: Option<u64>,
    /// Local IP address to bind outgoing Raft connections to.
    #[arg(long, env = "LICD_RAFT_BIND_IP")]
    pub raft_bind_ip: Option<std::net::IpAddr>,
    /// File holding the admin token (or set LICD_ADMIN_TOKEN).
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the cluster secret (or set LICD_CLUSTER_SECRET).
    #[arg(long)]
    pub cluster_secret_file: Option<PathBuf>,
    /// File holding the answer-signing key (`licd answer-key new FILE`): check answers are
    /// signed with it.
    #[arg(long, env = "LICD_ANSWER_SIGNING_KEY_FILE")]
    pub answer_signing_key_file: Option<PathBuf>,
    /// More accepted tokens, `role:sha256[:name]`, comma-separated (added to the file's
    /// `[[auth.tokens]]`; `licd token new` prints an entry).
    #[arg(
        long = "tokens",
        env = "LICD_TOKENS",
        hide_env_values = true,
        value_name = "ROLE:SHA256[:NAME],..."
    )]
    pub tokens: Option<String>,
    /// Serve the client routes of /v1 without a token (a closed network only: see
    /// docs/operations.md, Security).
    #[arg(long, env = "LICD_ALLOW_ANONYMOUS_CLIENTS")]
    pub allow_anonymous_clients: bool,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "LICD_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds.
    #[arg(long, env = "LICD_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Maximum election timeout in milliseconds.
    #[arg(long, env = "LICD_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many log entries.
    #[arg(long, env = "LICD_SNAPSHOT_EVERY_LOGS")]
    pub snapshot_every_logs: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long, env = "LICD_LOGS_KEPT_AFTER_SNAPSHOT")]
    pub logs_kept_after_snapshot: Option<u64>,
    /// How often the leader frees leases that are over, in milliseconds.
    #[arg(long, env = "LICD_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// How far a lease's logged remaining time may run ahead of what is left before the
    /// leader checkpoints it, in milliseconds.
    #[arg(long, env = "LICD_LEASE_CHECKPOINT_MS")]
    pub lease_checkpoint_ms: Option<u64>,
    /// How far a voter's clock may be from the voters' median, in milliseconds.
    #[arg(long, env = "LICD_CLOCK_SKEW_BOUND_MS")]
    pub clock_skew_bound_ms: Option<u64>,
    /// This node's TLS certificate chain (PEM); with --tls-key-file and --tls-ca-file the
    /// node serves and calls its peers over HTTPS.
    #[arg(long, env = "LICD_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, env = "LICD_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA that signed the cluster's certificates (PEM).
    #[arg(long, env = "LICD_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Mutual TLS: require every caller to present a certificate signed by the CA.
    #[arg(long, env = "LICD_TLS_REQUIRE_CLIENT_CERT")]
    pub tls_require_client_cert: bool,
    /// A connection must send a whole request head within this long, in milliseconds.
    #[arg(long, env = "LICD_HEADER_READ_TIMEOUT_MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// A TLS handshake must finish within this long, in milliseconds.
    #[arg(long, env = "LICD_TLS_HANDSHAKE_TIMEOUT_MS")]
    pub tls_handshake_timeout_ms: Option<u64>,
    /// Connections open at once; more wait in the listen backlog.
    #[arg(long, env = "LICD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Largest request head in bytes (at least 8192).
    #[arg(long, env = "LICD_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
}

impl ServeArgs {
    /// Merges the file (if any) and the overrides into a configuration.
    pub fn into_config(self) -> anyhow::Result<NodeConfig> {
        let mut config = match &self.config {
            Some(path) => NodeConfig::from_file(path)?,
            None => NodeConfig {
                node_id: self
                    .node_id
                    .context("--node-id is required without --config")?,
                listen: self
                    .listen
                    .context("--listen is required without --config")?,
                advertise: None,
                data_dir: self
                    .data_dir
                    .clone()
                    .context("--data-dir is required without --config")?,
                trusted_keys: Vec::new(),
                default_lease_ttl_ms: 30_000,
                raft_bind_ip: None,
                admin_token_file: None,
                cluster_secret_file: None,
                answer_signing_key_file: None,
                raft: RaftTiming::default(),
                auth: Default::default(),
                limits: Default::default(),
                tls: None,
                server: Default::default(),
            },
        };
        self.merge_tls(&mut config)?;
        if let Some(v) = self.node_id {
            config.node_id = v;
        }
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if self.advertise.is_some() {
            config.advertise = self.advertise;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        config.trusted_keys.extend(self.trusted_keys);
        if let Some(v) = self.default_lease_ttl_ms {
            config.default_lease_ttl_ms = v;
        }
        if self.raft_bind_ip.is_some() {
            config.raft_bind_ip = self.raft_bind_ip;
        }
        if self.admin_token_file.is_some() {
            config.admin_token_file = self.admin_token_file;
        }
        if self.cluster_secret_file.is_some() {
            config.cluster_secret_file = self.cluster_secret_file;
        }
        if self.answer_signing_key_file.is_some() {
            config.answer_signing_key_file = self.answer_signing_key_file;
        }
        if let Some(text) = &self.tokens {
            let more = crate::auth::parse_env_tokens(text)?;
            config.auth.tokens.extend(more);
        }
        if self.allow_anonymous_clients {
            config.auth.allow_anonymous_clients = true;
        }
        let t = &mut config.raft;
        for (field, value) in [
            (&mut t.heartbeat_ms, self.heartbeat_ms),
            (&mut t.election_timeout_min_ms, self.election_timeout_min_ms),
            (&mut t.election_timeout_max_ms, self.election_timeout_max_ms),
            (&mut t.snapshot_every_logs, self.snapshot_every_logs),
            (
                &mut t.logs_kept_after_snapshot,
                self.logs_kept_after_snapshot,
            ),
            (&mut t.tick_ms, self.tick_ms),
            (&mut t.lease_checkpoint_ms, self.lease_checkpoint_ms),
            (&mut t.clock_skew_bound_ms, self.clock_skew_bound_ms),
        ] {
            if let Some(v) = value {
                *field = v;
            }
        }
        let server = &mut config.server;
        if let Some(v) = self.header_read_timeout_ms {
            server.header_read_timeout_ms = v;
        }
        if let Some(v) = self.tls_handshake_timeout_ms {
            server.tls_handshake_timeout_ms = v;
        }
        if let Some(v) = self.max_connections {
            server.max_connections = v;
        }
        if let Some(v) = self.max_header_bytes {
            server.max_header_bytes = v;
        }
        config.validate()?;
        Ok(config)
    }

    /// The `--tls-*` flags over the file's `[tls]` section: the three files together make a
    /// section, or override the file's one by one.
    fn merge_tls(&self, config: &mut NodeConfig) -> anyhow::Result<()> {
        let files = [&self.tls_cert_file, &self.tls_key_file, &self.tls_ca_file];
        match &mut config.tls {
            Some(tls) => {
                if let Some(v) = &self.tls_cert_file {
                    tls.cert_file = v.clone();
                }
                if let Some(v) = &self.tls_key_file {
                    tls.key_file = v.clone();
                }
                if let Some(v) = &self.tls_ca_file {
                    tls.ca_file = v.clone();
                }
                tls.require_client_cert |= self.tls_require_client_cert;
            }
            None if files.iter().all(|f| f.is_some()) => {
                config.tls = Some(crate::tls::TlsConfig {
                    cert_file: self.tls_cert_file.clone().unwrap_or_default(),
                    key_file: self.tls_key_file.clone().unwrap_or_default(),
                    ca_file: self.tls_ca_file.clone().unwrap_or_default(),
                    require_client_cert: self.tls_require_client_cert,
                });
            }
            None if files.iter().any(|f| f.is_some()) || self.tls_require_client_cert => {
                anyhow::bail!(
                    "TLS needs --tls-cert-file, --tls-key-file and --tls-ca-file together (or a \
                     [tls] section in the configuration file)"
                );
            }
            None => {}
        }
        Ok(())
    }
}

/// Runs the node until SIGINT or SIGTERM, then shuts down gracefully: stop accepting, drain
/// in-flight requests, shut Raft down, flush the database.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing();
    // Before anything is bound: a SIGTERM from now on stops the node gracefully.
    let signal = shutdown_signal();
    let config = args.into_config()?;
    let secrets = config.secrets()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let options = crate::http::ServerOptions::for_node(&config)?;
    let node = Node::start(&config, secrets).await?;
    if config.tls.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "serving plain HTTP: tokens, the cluster secret and license traffic cross the \
             network unencrypted; configure a [tls] section (docs/operations.md: TLS)"
        );
    }
    tracing::info!(
        node_id = config.node_id,
        listen = %config.listen,
        scheme = node.outgoing().scheme(),
        advertise = %config.advertise_addr(),
        data_dir = %config.data_dir.display(),
        "licd node started"
    );
    let router = crate::http::router(node.clone());
    // The listener is bound and the node started: requests are served from here on.
    super::notify::notify("READY=1");
    let stopping = async {
        signal.await;
        super::notify::notify("STOPPING=1");
    };
    crate::http::serve(listener, router, options, stopping).await?;
    tracing::info!("HTTP server stopped; shutting Raft down");
    node.shutdown().await;
    tracing::info!("licd node stopped");
    Ok(ExitCode::SUCCESS)
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives while the server is
/// still starting is not lost (and does not kill the process before its graceful shutdown).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    tracing::warn!(
                        term = ?term.err(),
                        int = ?int.err(),
                        "cannot watch SIGTERM and SIGINT; only Ctrl-C stops the node"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
