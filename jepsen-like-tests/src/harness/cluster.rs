//! The licd nodes of a run, as real `licd serve` processes inside the namespace: node `n`
//! listens on `127.0.0.n:7000` and binds its outgoing Raft connections to `127.0.0.n`, so
//! firewall rules can cut any pair of nodes. Nodes can be killed (SIGKILL), paused
//! (SIGSTOP/SIGCONT), restarted from their data directory, or restarted under `faketime`
//! with a skewed wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use licd::api::InitBody;
use licd::auth::{Role, hash_token};
use licd::client::{Client, RetryPolicy, new_request_id};
use licd::config::{AuthConfig, LimitsConfig, NodeConfig, RaftTiming, TokenEntry};
use licd::process::{SpawnOptions, Supervised};

/// The most nodes a run may start (fresh nodes replace old ones under `membership-replace`).
pub const MAX_NODES: u64 = 12;
/// The port every node listens on (each node has its own address).
pub const PORT: u16 = 7000;
/// The admin token of harness clusters.
pub const ADMIN_TOKEN: &str = "jepsen-admin-token-0123456789";
/// The client token of harness clusters (application servers: allocate, heartbeat, release,
/// check); nodes hold its hash.
pub const CLIENT_TOKEN: &str = "jepsen-client-token-0123456789";
/// The operator token of harness clusters (usage reads); nodes hold its hash.
pub const OPERATOR_TOKEN: &str = "jepsen-operator-token-0123456789";
/// The cluster secret of harness clusters.
pub const CLUSTER_SECRET: &str = "jepsen-cluster-secret-0123456789";

/// The address of node `id`.
pub fn node_ip(id: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(id).unwrap_or(u8::MAX))
}

/// One node process.
struct Proc {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Supervised>,
    skew: Option<String>,
}

/// The nodes of a run.
pub struct Cluster {
    bin: PathBuf,
    run_dir: PathBuf,
    trusted_key: String,
    procs: BTreeMap<u64, Proc>,
}

impl Cluster {
    /// A cluster whose nodes run `bin` and keep their files under `run_dir`.
    pub fn new(bin: &Path, run_dir: &Path, trusted_key: String) -> Cluster {
        Cluster {
            bin: bin.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            trusted_key,
            procs: BTreeMap::new(),
        }
    }

    /// Writes node `id`'s configuration (a fresh data directory) and starts it.
    pub fn add_node(&mut self, id: u64) -> anyhow::Result<()> {
        let dir = self.run_dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("licd.toml");
        std::fs::write(&config, node_config_toml(id, &dir, &self.trusted_key)?)?;
        self.procs.insert(
            id,
            Proc {
                log: self.run_dir.join(format!("node-{id}.log")),
                dir,
                config,
                child: None,
                skew: None,
            },
        );
        self.start(id, None)
    }

    /// Starts (or restarts) node `id`; with `skew` (a faketime offset such as `+2h` or
    /// `-30m`) its wall clock is moved by that much.
    pub fn start(&mut self, id: u64, skew: Option<&str>) -> anyhow::Result<()> {
        self.start_with_clock(id, skew.map_or(Clock::True, Clock::Offset))
    }

    /// Starts (or restarts) node `id` with the wall clock `clock`.
    pub fn start_with_clock(&mut self, id: u64, clock: Clock<'_>) -> anyhow::Result<()> {
        let bin = self.bin.clone();
        let proc = self.procs.get_mut(&id).context("no such node")?;
        if proc.child.is_some() {
            bail!("node {id} is already running");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&proc.log)?;
        let mut command = match clock {
            Clock::Offset(offset) => {
                let mut c = Command::new("faketime");
                c.args(["-f", offset]).arg(&bin);
                // Timers and timeouts keep real time; only the wall clock is skewed.
                c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            Clock::File(file) => {
                // libfaketime preloaded directly: the `faketime` wrapper's own offset would
                // take precedence over the file.
                let mut c = Command::new(&bin);
                c.env("LD_PRELOAD", libfaketime()?)
                    .env("FAKETIME_TIMESTAMP_FILE", file)
                    .env("FAKETIME_NO_CACHE", "1")
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            Clock::True => Command::new(&bin),
        };
        let skew = match clock {
            Clock::True => None,
            Clock::Offset(offset) => Some(offset.to_string()),
            Clock::File(file) => Some(format!("from {}", file.display())),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&proc.config)
            .env("LICD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("LICD_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("LICD_LOG", "info,openraft=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // Its own process group, so that signals reach the node behind a faketime wrapper.
        let options = SpawnOptions {
            own_group: true,
            ..SpawnOptions::default()
        };
        let child = Supervised::spawn(&mut command, options)
            .with_context(|| format!("cannot start {}", bin.display()))?;
        proc.child = Some(child);
        proc.skew = skew;
        Ok(())
    }

    /// SIGKILLs node `id` (its whole process group, after a SIGCONT if it is paused), reaps
    /// it, and waits (up to 5 s) until no process of its group is left, so that a restart
    /// finds the node's port free: under `faketime`, reaping the wrapper does not mean the
    /// node is gone.
    pub fn kill(&mut self, id: u64) {
        if let Some(proc) = self.procs.get_mut(&id)
            && let Some(mut child) = proc.child.take()
        {
            let _ = child.kill();
        }
    }

    /// SIGSTOPs node `id` (its whole process group: under `faketime` the node is a
    /// grandchild).
    pub fn pause(&mut self, id: u64) {
        if let Some(proc) = self.procs.get_mut(&id)
            && let Some(child) = &mut proc.child
        {
            let _ = child.pause();
        }
    }

    /// SIGCONTs node `id`.
    pub fn resume(&mut self, id: u64) {
        if let Some(proc) = self.procs.get_mut(&id)
            && let Some(child) = &mut proc.child
        {
            let _ = child.resume();
        }
    }

    /// Whether node `id`'s process is running (possibly paused).
    pub fn is_running(&self, id: u64) -> bool {
        self.procs.get(&id).is_some_and(|p| p.child.is_some())
    }

    /// The clock skew node `id` runs under, if any.
    pub fn skew(&self, id: u64) -> Option<&str> {
        self.procs.get(&id).and_then(|p| p.skew.as_deref())
    }

    /// Every node id ever added.
    pub fn ids(&self) -> Vec<u64> {
        self.procs.keys().copied().collect()
    }

    /// The data directory of node `id`.
    pub fn dir(&self, id: u64) -> Option<&Path> {
        self.procs.get(&id).map(|p| p.dir.as_path())
    }

    /// The address of every node a run may ever have, as `host:port`, by id from 1.
    pub fn all_endpoints() -> Vec<String> {
        (1..=MAX_NODES)
            .map(|id| format!("{}:{PORT}", node_ip(id)))
            .collect()
    }

    /// The address of every node ever added, as `host:port`.
    pub fn endpoints(&self) -> Vec<String> {
        self.procs
            .keys()
            .map(|id| format!("{}:{PORT}", node_ip(*id)))
            .collect()
    }

    /// An admin client of every node, from the harness's own address.
    pub fn admin(&self, deadline: Duration) -> anyhow::Result<Client> {
        let client = Client::with_policy(
            &self.endpoints(),
            RetryPolicy {
                deadline,
                attempt_timeout: Duration::from_millis(1_500).min(deadline),
                ..RetryPolicy::default()
            },
        )?
        .with_admin_token(ADMIN_TOKEN)
        .with_local_address(std::net::IpAddr::V4(HARNESS_IP))?;
        Ok(client)
    }

    /// Waits until node `id` answers `/healthz` (and its process is the one answering).
    pub async fn wait_healthy(&mut self, id: u64, within: Duration) -> anyhow::Result<()> {
        let http = licd::tls::Outgoing::plain()
            .apply(reqwest::Client::builder())
            .timeout(Duration::from_millis(500))
            .no_proxy()
            .build()?;
        let url = format!("http://{}:{PORT}/healthz", node_ip(id));
        let deadline = Instant::now() + within;
        loop {
            if let Some(proc) = self.procs.get_mut(&id)
                && let Some(child) = proc.child.as_mut()
                && let Ok(Some(status)) = child.try_exit()
            {
                bail!(
                    "node {id} exited during start-up ({status}); see {}",
                    proc.log.display()
                );
            }
            if http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {id} did not answer /healthz within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Initializes nodes `ids` as the first voters.
    pub async fn init(&self, ids: &[u64]) -> anyhow::Result<()> {
        let members = ids
            .iter()
            .map(|id| (*id, format!("{}:{PORT}", node_ip(*id))))
            .collect();
        let first = Client::with_policy(
            &[format!("{}:{PORT}", node_ip(ids[0]))],
            RetryPolicy {
                deadline: Duration::from_secs(10),
                ..RetryPolicy::default()
            },
        )?
        .with_admin_token(ADMIN_TOKEN);
        first.init(&InitBody { members }).await?;
        Ok(())
    }

    /// The leader, as the first node that answers the status call knows it, with the voters.
    pub async fn leader(&self, within: Duration) -> Option<(u64, BTreeSet<u64>)> {
        let admin = self.admin(within).ok()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(status) = admin.status().await
                && let Some(leader) = status.leader_id
            {
                let voters = status.voters().into_iter().collect();
                return Some((leader, voters));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Makes node `id` campaign for leadership (its own election, never failed over).
    pub async fn elect(&self, id: u64) -> anyhow::Result<Option<u64>> {
        let status = Client::with_policy(
            &[format!("{}:{PORT}", node_ip(id))],
            RetryPolicy {
                deadline: Duration::from_secs(10),
                attempt_timeout: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
        )?
        .with_admin_token(ADMIN_TOKEN)
        .with_local_address(std::net::IpAddr::V4(HARNESS_IP))?
        .elect()
        .await?;
        Ok(status.leader_id)
    }

    /// Installs a license file.
    pub async fn install_license(&self, text: &str) -> anyhow::Result<()> {
        self.admin(Duration::from_secs(20))?
            .install_license(text, &new_request_id())
            .await?;
        Ok(())
    }

    /// Resumes and kills every node.
    pub fn stop_all(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The wall clock a node starts with.
#[derive(Debug, Clone, Copy)]
pub enum Clock<'a> {
    /// The machine's.
    True,
    /// Moved by a faketime offset such as `+2h`, `-30m` or `+3y`.
    Offset(&'a str),
    /// Moved by the faketime offset this file holds, read again at every clock reading, so
    /// that the harness can move the clock of a running node by rewriting the file.
    File(&'a Path),
}

/// Where libfaketime is (Debian's `faketime` package).
fn libfaketime() -> anyhow::Result<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketime.so.1"),
        "/usr/lib/faketime/libfaketime.so.1".to_string(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_string(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .context("libfaketime.so.1 not found (install the faketime package)")
}

/// The harness's own address for admin calls (clients use 127.0.0.100 and up).
pub const HARNESS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 250);

/// The configuration file of node `id`, whose files live under `dir`: built as the node's own
/// configuration type, so that a renamed key breaks the build rather than the harness.
fn node_config_toml(id: u64, dir: &Path, trusted_key: &str) -> anyhow::Result<String> {
    let ip = node_ip(id);
    let config = NodeConfig {
        node_id: id,
        listen: (ip, PORT).into(),
        advertise: Some(format!("{ip}:{PORT}")),
        data_dir: dir.join("data"),
        trusted_keys: vec![trusted_key.to_string()],
        // A week: leases of the workload outlive any run.
        default_lease_ttl_ms: 604_800_000,
        raft_bind_ip: Some(ip.into()),
        admin_token_file: None,
        cluster_secret_file: None,
        answer_signing_key_file: None,
        raft: RaftTiming::default(),
        auth: AuthConfig {
            tokens: vec![
                TokenEntry {
                    role: Role::Client,
                    sha256: hash_token(CLIENT_TOKEN),
                    name: Some("jepsen-clients".into()),
                },
                TokenEntry {
                    role: Role::Operator,
                    sha256: hash_token(OPERATOR_TOKEN),
                    name: Some("jepsen-observer".into()),
                },
            ],
            allow_anonymous_clients: false,
        },
        // The campaigns measure the cluster, not the write limiter: every workload client
        // shares one token.
        limits: LimitsConfig {
            writes_per_second: 1_000_000,
            write_burst: 1_000_000,
            ..LimitsConfig::default()
        },
        tls: None,
        server: Default::default(),
        events: Default::default(),
    };
    toml::to_string_pretty(&config).context("cannot write a node configuration")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file parses back as the node would read it, with the values of the harness.
    #[test]
    fn node_config_round_trips() {
        let dir = Path::new("/tmp/run/node-2");
        let text = node_config_toml(2, dir, "a-key").unwrap();
        let parsed: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(parsed.node_id, 2);
        assert_eq!(parsed.listen.to_string(), "127.0.0.2:7000");
        assert_eq!(parsed.advertise.as_deref(), Some("127.0.0.2:7000"));
        assert_eq!(parsed.data_dir, dir.join("data"));
        assert_eq!(parsed.trusted_keys, ["a-key"]);
        assert_eq!(parsed.default_lease_ttl_ms, 604_800_000);
        assert_eq!(parsed.raft_bind_ip, Some(node_ip(2).into()));
        assert_eq!(parsed.admin_token_file, None);
        assert_eq!(parsed.cluster_secret_file, None);
        assert_eq!(parsed.auth.tokens.len(), 2);
        assert_eq!(parsed.auth.tokens[0].sha256, hash_token(CLIENT_TOKEN));
        let defaults = RaftTiming::default();
        assert_eq!(parsed.raft.heartbeat_ms, defaults.heartbeat_ms);
        assert_eq!(
            parsed.raft.election_timeout_min_ms,
            defaults.election_timeout_min_ms
        );
    }
}
