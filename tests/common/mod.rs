//! A real licd cluster in the test process: every node is a `Node` with its own sled
//! directory, served by the production router on its own loopback port, talking to its peers
//! over real HTTP. Stopping a node stops its server and its Raft; restarting it reopens the
//! same directory on the same port.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use licd::api::InitBody;
use licd::auth::{Role, hash_token};
use licd::client::{Client, ClientTls, RetryPolicy, new_request_id};
use licd::config::{AuthConfig, LimitsConfig, NodeConfig, RaftTiming, Secrets, TokenEntry};
use licd::node::Node;
use licd::tls::pki::Authority;
use licd_raft::license::License;
use licd_raft::license_file::{LicenseFile, encode_public_key, generate_signing_key};
use licd_raft::types::{LicenseId, MacAddr, Timestamp};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The tokens of the other roles, configured by hash on every node (the admin token is the
/// plain one of `Secrets`, as `admin_token_file` / `LICD_ADMIN_TOKEN` give it).
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
pub const CLIENT_TOKEN: &str = "test-client-token-0123456789";
/// A second client token, for rotation tests.
pub const CLIENT_TOKEN_2: &str = "test-client-token-2-0123456789";
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789";

/// A demo MAC address the tests' licenses allow, by index.
pub fn mac(i: u8) -> MacAddr {
    MacAddr::from_bytes([2, 0, 0, 0, 0, i])
}

/// A running node.
pub struct Running {
    pub node: Node,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

/// A cluster of in-process nodes.
pub struct Cluster {
    pub dir: TempDir,
    pub addrs: BTreeMap<u64, SocketAddr>,
    pub configs: BTreeMap<u64, NodeConfig>,
    pub running: BTreeMap<u64, Running>,
    pub vendor: SigningKey,
    /// The cluster's CA when it runs TLS ([`Cluster::start_tls`]).
    pub authority: Option<Arc<Authority>>,
    /// Whether its nodes require client certificates (mutual TLS).
    pub mutual_tls: bool,
    /// With mutual TLS: the client certificate the cluster's own clients present.
    pub client_identity: Option<licd::tls::Identity>,
}

/// How [`Cluster::start_options`] starts a cluster.
#[derive(Default)]
pub struct Options {
    /// TLS with a fresh CA and one certificate per node (SANs 127.0.0.1 and localhost).
    pub tls: bool,
    /// With `tls`: require client certificates (mutual TLS).
    pub mutual_tls: bool,
}

fn secrets() -> Secrets {
    Secrets {
        admin_token: Arc::from(ADMIN_TOKEN),
        cluster_secret: Arc::from(CLUSTER_SECRET),
    }
}

/// The hashed tokens every test node accepts besides the admin token.
pub fn test_auth() -> AuthConfig {
    let entry = |role, token: &str, name: &str| TokenEntry {
        role,
        sha256: hash_token(token),
        name: Some(name.into()),
    };
    AuthConfig {
        tokens: vec![
            entry(Role::Operator, OPERATOR_TOKEN, "test-operator"),
            entry(Role::Client, CLIENT_TOKEN, "test-client"),
            entry(Role::Client, CLIENT_TOKEN_2, "test-client-2"),
        ],
        allow_anonymous_clients: false,
    }
}

/// Reserves a loopback port by binding it; the listener is kept and handed to the node.
async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

impl Cluster {
    /// Starts `n` nodes (ids 1..=n) and initializes them as one cluster of voters.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Like [`Cluster::start`], with a chance to adjust each node's configuration.
    pub async fn start_with(n: u64, tweak: impl Fn(&mut NodeConfig)) -> Cluster {
        Self::start_options(n, Options::default(), tweak).await
    }

    /// Starts `n` nodes over TLS (mutual TLS when `mutual`), initialized as one cluster.
    pub async fn start_tls(n: u64, mutual: bool) -> Cluster {
        let options = Options {
            tls: true,
            mutual_tls: mutual,
        };
        Self::start_options(n, options, |_| {}).await
    }

    /// Like [`Cluster::start_with`], with TLS when `options` say so.
    pub async fn start_options(
        n: u64,
        options: Options,
        tweak: impl Fn(&mut NodeConfig),
    ) -> Cluster {
        let authority = options
            .tls
            .then(|| Arc::new(Authority::new("licd test CA").expect("make a CA")));
        let mut cluster = Cluster {
            dir: TempDir::new().expect("temp dir"),
            addrs: BTreeMap::new(),
            configs: BTreeMap::new(),
            running: BTreeMap::new(),
            vendor: generate_signing_key(&mut rand::rngs::OsRng),
            client_identity: None,
            authority,
            mutual_tls: options.mutual_tls,
        };
        if let Some(ca) = cluster.authority.as_ref().filter(|_| options.mutual_tls) {
            let identity = ca
                .write_issued(cluster.dir.path(), "client", &["localhost"])
                .expect("client certificate");
            cluster.client_identity = Some(identity);
        }
        for id in 1..=n {
            let listener = bind().await;
            cluster.add_config(id, listener.local_addr().unwrap(), &tweak);
            cluster.serve(id, listener).await;
        }
        let members = cluster
            .addrs
            .iter()
            .map(|(id, a)| (*id, a.to_string()))
            .collect();
        cluster
            .admin_client()
            .init(&InitBody { members })
            .await
            .expect("initialize the cluster");
        cluster.wait_for_leader(Duration::from_secs(10)).await;
        cluster
    }

    fn add_config(&mut self, id: u64, addr: SocketAddr, tweak: &impl Fn(&mut NodeConfig)) {
        let mut config = NodeConfig {
            node_id: id,
            listen: addr,
            advertise: None,
            data_dir: self.dir.path().join(format!("node-{id}")),
            trusted_keys: vec![encode_public_key(&self.vendor.verifying_key())],
            default_lease_ttl_ms: 60_000,
            raft_bind_ip: None,
            admin_token_file: None,
            cluster_secret_file: None,
            answer_signing_key_file: None,
            raft: RaftTiming::default(),
            auth: test_auth(),
            // Tests write fast from one token; tests/access.rs sets its own limits.
            limits: LimitsConfig {
                writes_per_second: 100_000,
                write_burst: 100_000,
                ..LimitsConfig::default()
            },
            tls: None,
            server: Default::default(),
            events: Default::default(),
        };
        if let Some(ca) = &self.authority {
            let tls = ca
                .node_tls(
                    self.dir.path(),
                    &format!("node-{id}"),
                    &["127.0.0.1", "localhost"],
                    self.mutual_tls,
                )
                .expect("node certificate");
            config.tls = Some(tls);
        }
        tweak(&mut config);
        self.addrs.insert(id, addr);
        self.configs.insert(id, config);
    }

    async fn serve(&mut self, id: u64, listener: TcpListener) {
        let config = &self.configs[&id];
        let options = licd::http::ServerOptions::for_node(config).expect("server options");
        let node = Node::start(config, secrets()).await.expect("start node");
        let (tx, rx) = oneshot::channel::<()>();
        let router = licd::http::router(node.clone());
        let server = tokio::spawn(async move {
            let _ = licd::http::serve(listener, router, options, async {
                let _ = rx.await;
            })
            .await;
        });
        self.running.insert(
            id,
            Running {
                node,
                shutdown: tx,
                server,
            },
        );
    }

    /// Adds and starts a new node (not yet a member).
    pub async fn start_new_node(&mut self, id: u64) -> SocketAddr {
        self.start_new_node_with(id, |_| {}).await
    }

    /// Like [`Cluster::start_new_node`], with a chance to adjust its configuration.
    pub async fn start_new_node_with(
        &mut self,
        id: u64,
        tweak: impl Fn(&mut NodeConfig),
    ) -> SocketAddr {
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        self.add_config(id, addr, &tweak);
        self.serve(id, listener).await;
        addr
    }

    /// A cluster with no node yet, trusting `vendor`'s licenses (for nodes whose data
    /// directories are written before they start, such as restored ones).
    pub fn unstarted(vendor: SigningKey) -> Cluster {
        Cluster {
            dir: TempDir::new().expect("temp dir"),
            addrs: BTreeMap::new(),
            configs: BTreeMap::new(),
            running: BTreeMap::new(),
            vendor,
            authority: None,
            mutual_tls: false,
            client_identity: None,
        }
    }

    /// Configures node `id` on `at` (a free loopback port when `None`) without starting it;
    /// its data directory is `configs[&id].data_dir`. Start it with [`Cluster::restart`].
    pub async fn prepare_node(&mut self, id: u64, at: Option<SocketAddr>) -> SocketAddr {
        let addr = match at {
            Some(addr) => addr,
            None => bind().await.local_addr().unwrap(),
        };
        self.add_config(id, addr, &|_| {});
        addr
    }

    /// Stops a node: its HTTP server and its Raft. Its directory stays.
    pub async fn stop(&mut self, id: u64) {
        let running = self.running.remove(&id).expect("node is running");
        let _ = running.shutdown.send(());
        running.node.shutdown().await;
        // In-flight requests drain; do not wait forever on a hung client.
        let _ = tokio::time::timeout(Duration::from_secs(5), running.server).await;
    }

    /// Restarts a stopped node from its directory, on its port.
    pub async fn restart(&mut self, id: u64) {
        let addr = self.addrs[&id];
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        self.serve(id, listener).await;
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.running[&id].node
    }

    /// Every endpoint, running or not (`https://` ones for a TLS cluster).
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.authority.is_some() {
            "https"
        } else {
            "http"
        };
        self.addrs
            .values()
            .map(|a| format!("{scheme}://{a}"))
            .collect()
    }

    /// The CA file of a TLS cluster.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// What the cluster's own clients present: its CA, and with mutual TLS a client
    /// certificate it signed.
    pub fn client_tls(&self) -> ClientTls {
        if self.authority.is_none() {
            return ClientTls::default();
        }
        ClientTls {
            ca_file: Some(self.ca_file()),
            identity: self.client_identity.clone(),
        }
    }

    /// A client of every endpoint, without a token.
    pub fn anonymous_client(&self) -> Client {
        Client::with_policy(
            &self.endpoints(),
            RetryPolicy {
                deadline: Duration::from_secs(20),
                ..RetryPolicy::default()
            },
        )
        .expect("client")
        .with_tls(&self.client_tls())
        .expect("client TLS")
    }

    /// A client of every endpoint with the client token (an application server's).
    pub fn client(&self) -> Client {
        self.anonymous_client().with_token(CLIENT_TOKEN)
    }

    /// A client with the operator token (read-only).
    pub fn operator_client(&self) -> Client {
        self.anonymous_client().with_token(OPERATOR_TOKEN)
    }

    /// A client with the admin token.
    pub fn admin_client(&self) -> Client {
        self.anonymous_client().with_admin_token(ADMIN_TOKEN)
    }

    /// An admin client of node `id` alone (for calls addressed to one node, like `elect`).
    pub fn admin_client_of(&self, id: u64) -> Client {
        Client::with_policy(
            &[self.addrs[&id].to_string()],
            RetryPolicy {
                deadline: Duration::from_secs(20),
                ..RetryPolicy::default()
            },
        )
        .expect("client")
        .with_admin_token(ADMIN_TOKEN)
    }

    /// Waits until every running node agrees on one running leader; returns it.
    pub async fn wait_for_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<u64>> = self
                .running
                .values()
                .map(|r| r.node.metrics().current_leader)
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*leader))
                && self.running.get(leader).is_some_and(|r| r.node.is_leader())
            {
                return *leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {within:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let applied = self.node(id).metrics().last_applied.map_or(0, |l| l.index);
            if applied >= index {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} applied {applied}, wanted {index} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signs a license with the cluster's trusted vendor key.
    pub fn license_file(&self, license: &License) -> String {
        LicenseFile::issue(license, &self.vendor).expect("issue license")
    }

    /// Installs `license` through the admin API.
    pub async fn install(&self, license: &License) {
        self.admin_client()
            .install_license(&self.license_file(license), &new_request_id())
            .await
            .expect("install license");
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// A license for tests: `max_cores` in all, 4 per node at least, MACs 02:00:00:00:00:01..=09.
pub fn license(id: &str, max_cores: u32) -> License {
    License {
        id: LicenseId::new(id).unwrap(),
        customer: "Test Customer".into(),
        issued_at: Timestamp(1_000),
        expires_at: None,
        max_cores,
        min_cores_per_node: 4,
        allowed_macs: (1..=9).map(mac).collect(),
        features: Default::default(),
        serial: 1,
    }
}

/// Polls `agent` until `done` holds, within `within`; returns the status that satisfied it.
pub async fn wait_for_agent(
    agent: &licd::agent::Agent,
    within: Duration,
    done: impl Fn(&licd::agent::AgentStatus) -> bool,
) -> licd::agent::AgentStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = agent.status();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within {within:?}; last status {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
