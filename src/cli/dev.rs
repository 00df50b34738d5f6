//! `licd dev`: a complete three-node cluster on this machine, from nothing, in one command.
//!
//! It generates a throwaway vendor key and a demo license bound to this machine, writes the
//! secrets and three node configurations into a working directory, starts three
//! `licd serve` child processes, initializes the cluster, installs the license, allocates
//! this machine's cores, prints what to try, and then keeps the lease alive until Ctrl-C or
//! SIGTERM, when it stops the nodes gracefully. Whatever fails, the children are stopped: a
//! guard kills them when it is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use licd_raft::License;
use licd_raft::RaftNodeId;
use licd_raft::license::MAX_LICENSED_CORES;
use licd_raft::license_file::{
    LicenseFile, encode_public_key, encode_signing_key, generate_signing_key,
};
use licd_raft::types::{Cores, LeaseTtl, LicenseId, MacAddr, NodeName, Timestamp};
use serde::Serialize;

use super::common::{default_cores, default_mac, default_node_name};
use super::license::write_secret_file;
use super::output::{Output, describe_client_error, human_duration_ms};
use crate::agent::{Agent, AgentConfig};
use crate::api::{AllocateBody, GrantBody, InitBody};
use crate::client::{Client, ClientError, RetryPolicy, new_request_id};
use crate::config::{NodeConfig, RaftTiming};
use crate::node::now;

/// Options of `licd dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Working directory for keys, license, configs, data and logs. Created if needed; the
    /// files of an earlier `licd dev` run in it are replaced.
    #[arg(long, value_name = "DIR", default_value = "licd-dev")]
    pub dir: PathBuf,
    /// HTTP port of node 1; nodes 2 and 3 use the next two ports.
    #[arg(long, value_name = "PORT", default_value_t = 7101)]
    pub base_port: u16,
    /// Set everything up, print it, then stop the cluster and exit (for CI).
    #[arg(long)]
    pub no_wait: bool,
}

/// The lease the dev allocation gets; `licd dev` renews it every third of it.
const DEV_LEASE_MS: u64 = 30_000;
/// How long the nodes get to stop after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long the cluster gets to come up (each step).
const STEP_DEADLINE: Duration = Duration::from_secs(30);
/// Marks a directory as made by `licd dev`, so that a later run may replace its files.
const MARKER: &str = ".licd-dev";
/// The files and directories of a dev run, removed when a new run starts in the same place.
const OWNED: &[&str] = &[
    "vendor.key",
    "vendor.pub",
    "demo.lic",
    "admin-token",
    "cluster-secret",
    "node-1.toml",
    "node-2.toml",
    "node-3.toml",
    "node-1.log",
    "node-2.log",
    "node-3.log",
    "node-1",
    "node-2",
    "node-3",
    "dev.pid",
];
/// Demo MACs the license also allows, so that other "servers" can be tried.
const DEMO_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 3]];
/// The MAC used when this machine has none.
const FALLBACK_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

/// One child `licd serve` process.
struct DevNode {
    id: RaftNodeId,
    addr: String,
    config: PathBuf,
    log: PathBuf,
    pid: u32,
    child: Child,
    exit: Option<ExitStatus>,
}

/// The three children. Dropping it stops those still running.
struct Children {
    nodes: Vec<DevNode>,
}

impl Children {
    /// Reaps the children that exited since the last call and returns them.
    fn newly_exited(&mut self) -> Vec<(RaftNodeId, u32, ExitStatus, PathBuf)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if n.exit.is_none()
                && let Ok(Some(status)) = n.child.try_wait()
            {
                n.exit = Some(status);
                out.push((n.id, n.pid, status, n.log.clone()));
            }
        }
        out
    }

    fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.exit.is_none()).count()
    }

    /// Stops every running child: SIGTERM, up to `grace` to exit, then SIGKILL. Returns a
    /// line per child that was running.
    fn stop(&mut self, grace: Duration) -> Vec<String> {
        let mut report = Vec::new();
        self.newly_exited();
        let stopping: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].exit.is_none())
            .collect();
        for &i in &stopping {
            terminate(&mut self.nodes[i].child);
        }
        let started = Instant::now();
        while started.elapsed() < grace && self.running() > 0 {
            std::thread::sleep(Duration::from_millis(50));
            self.newly_exited();
        }
        for &i in &stopping {
            let n = &mut self.nodes[i];
            match n.exit {
                Some(status) => report.push(format!(
                    "node {} (pid {}) stopped{}",
                    n.id,
                    n.pid,
                    if status.success() {
                        String::new()
                    } else {
                        format!(" ({})", describe_status(status))
                    }
                )),
                None => {
                    let _ = n.child.kill();
                    n.exit = n.child.wait().ok();
                    report.push(format!(
                        "node {} (pid {}) did not stop within {}; killed",
                        n.id,
                        n.pid,
                        human_duration_ms(u64::try_from(grace.as_millis()).unwrap_or(0))
                    ));
                }
            }
        }
        report
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        if self.running() > 0 {
            for line in self.stop(STOP_GRACE) {
                eprintln!("licd dev: {line}");
            }
        }
    }
}

/// Asks a child to stop: SIGTERM where there are signals, a kill elsewhere.
fn terminate(child: &mut Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill has no memory effects; the child is not yet reaped (we hold its
            // handle and have not seen it exit), so the pid still names it.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            return;
        }
    }
    let _ = child.kill();
}

fn describe_status(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            let name = match sig {
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGINT => " (SIGINT)",
                libc::SIGABRT => " (SIGABRT)",
                libc::SIGSEGV => " (SIGSEGV)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    match status.code() {
        Some(0) => "exited normally".to_string(),
        Some(c) => format!("exited with code {c}"),
        None => format!("{status}"),
    }
}

/// The last lines of a log file, for error messages.
fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    let start = all.len().saturating_sub(lines);
    all[start..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// SIGINT and SIGTERM, registered up front so that neither kills the process mid-setup.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// Completes on the next SIGINT or SIGTERM, with its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "Ctrl-C",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Refuses ports that something already listens on.
fn check_ports(ports: &[u16]) -> anyhow::Result<()> {
    for &port in ports {
        if let Err(e) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                bail!("port {port} is in use: is another licd dev running? use --base-port");
            }
            bail!("cannot use port {port}: {e}; use --base-port");
        }
    }
    Ok(())
}

/// Whether a process with this pid exists.
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        match libc::pid_t::try_from(pid) {
            // SAFETY: signal 0 only checks that the process exists.
            Ok(p) if p > 0 => unsafe { libc::kill(p, 0) == 0 },
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// Creates the working directory, or clears the files an earlier run left in it.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a directory", dir.display());
        }
        let pid_file = dir.join("dev.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && process_alive(pid)
        {
            bail!(
                "another licd dev (pid {pid}) is using {}: stop it first, or use --dir",
                dir.display()
            );
        }
        let non_empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if non_empty && !dir.join(MARKER).exists() {
            bail!(
                "{} exists and was not made by licd dev; choose another --dir",
                dir.display()
            );
        }
        for name in OWNED {
            let path = dir.join(name);
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else if path.exists() {
                std::fs::remove_file(&path)
            } else {
                Ok(())
            };
            result.with_context(|| format!("cannot remove the old {}", path.display()))?;
        }
    } else {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "made by `licd dev`; a later `licd dev` replaces the files here\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    std::fs::write(dir.join("dev.pid"), format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    Ok(dir)
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `licd dev` set up, printed as JSON with `--json`.
#[derive(Debug, Serialize)]
struct Summary {
    dir: PathBuf,
    endpoints: Vec<String>,
    nodes: Vec<NodeSummary>,
    leader_id: Option<RaftNodeId>,
    admin_token_file: PathBuf,
    cluster_secret_file: PathBuf,
    vendor_key_file: PathBuf,
    vendor_public_key: String,
    license_file: PathBuf,
    license: License,
    mac_detected: bool,
    allocation: GrantBody,
}

#[derive(Debug, Serialize)]
struct NodeSummary {
    id: RaftNodeId,
    addr: String,
    pid: u32,
    config: PathBuf,
    log: PathBuf,
}

/// The files of a prepared dev directory.
struct Prepared {
    dir: PathBuf,
    admin_token: String,
    admin_token_file: PathBuf,
    cluster_secret: String,
    cluster_secret_file: PathBuf,
    vendor_key_file: PathBuf,
    vendor_public_key: String,
    license_file: PathBuf,
    license_text: String,
    license: License,
    mac: MacAddr,
    mac_detected: bool,
    cores: Cores,
    members: BTreeMap<RaftNodeId, (SocketAddr, PathBuf, PathBuf)>,
    base_port: u16,
}

/// Writes keys, license, secrets and node configurations.
fn prepare(args: &DevArgs) -> anyhow::Result<Prepared> {
    let dir = prepare_dir(&args.dir)?;

    let vendor = generate_signing_key(&mut rand::rngs::OsRng);
    let vendor_key_file = dir.join("vendor.key");
    write_secret_file(
        &vendor_key_file,
        &format!("{}\n", encode_signing_key(&vendor)),
    )?;
    let vendor_public_key = encode_public_key(&vendor.verifying_key());
    std::fs::write(dir.join("vendor.pub"), format!("{vendor_public_key}\n"))
        .context("cannot write vendor.pub")?;

    let detected = default_mac();
    let mac = detected.unwrap_or(MacAddr::from_bytes(FALLBACK_MAC));
    let cores = default_cores();
    let max_cores = cores.get().saturating_mul(4).clamp(16, MAX_LICENSED_CORES);
    let issued_at = now();
    let mut allowed_macs: std::collections::BTreeSet<MacAddr> =
        DEMO_MACS.iter().map(|b| MacAddr::from_bytes(*b)).collect();
    allowed_macs.insert(mac);
    let license = License {
        id: LicenseId::new("demo").context("the demo license id")?,
        customer: "licd dev demo".into(),
        issued_at,
        expires_at: Some(Timestamp(issued_at.0 + 30 * 86_400_000)),
        max_cores,
        min_cores_per_node: 4,
        allowed_macs,
        features: ["demo".to_string()].into(),
        serial: 1,
    };
    let license_text = LicenseFile::issue(&license, &vendor)
        .map_err(|e| anyhow::anyhow!("cannot issue the demo license: {e}"))?;
    let license_file = dir.join("demo.lic");
    std::fs::write(&license_file, &license_text).context("cannot write demo.lic")?;

    let admin_token = random_secret();
    let admin_token_file = dir.join("admin-token");
    write_secret_file(&admin_token_file, &format!("{admin_token}\n"))?;
    let cluster_secret = random_secret();
    let cluster_secret_file = dir.join("cluster-secret");
    write_secret_file(&cluster_secret_file, &format!("{cluster_secret}\n"))?;

    let mut members = BTreeMap::new();
    for i in 0..3u16 {
        let id = RaftNodeId::from(i + 1);
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.base_port + i));
        let data_dir = dir.join(format!("node-{id}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let config = NodeConfig {
            node_id: id,
            listen,
            advertise: None,
            data_dir,
            trusted_keys: vec![vendor_public_key.clone()],
            default_lease_ttl_ms: DEV_LEASE_MS,
            raft_bind_ip: None,
            admin_token_file: Some(admin_token_file.clone()),
            cluster_secret_file: Some(cluster_secret_file.clone()),
            raft: RaftTiming::default(),
        };
        config
            .validate()
            .context("the generated node configuration")?;
        let text = toml::to_string_pretty(&config).context("cannot write a node configuration")?;
        let config_path = dir.join(format!("node-{id}.toml"));
        std::fs::write(&config_path, text)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let log_path = dir.join(format!("node-{id}.log"));
        members.insert(id, (listen, config_path, log_path));
    }

    Ok(Prepared {
        dir,
        admin_token,
        admin_token_file,
        cluster_secret,
        cluster_secret_file,
        vendor_key_file,
        vendor_public_key,
        license_file,
        license_text,
        license,
        mac,
        mac_detected: detected.is_some(),
        cores,
        members,
        base_port: args.base_port,
    })
}

/// Starts the three `licd serve` children.
fn spawn_nodes(p: &Prepared, children: &mut Children) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the licd executable")?;
    for (id, (listen, config, log)) in &p.members {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone().context("cannot share the log file")?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .current_dir(&p.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // The node reads LICD_* overrides: only the configuration file must count.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("LICD_") && k != "LICD_LOG" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("LICD_ADMIN_TOKEN", &p.admin_token)
            .env("LICD_CLUSTER_SECRET", &p.cluster_secret)
            .env("NO_COLOR", "1");
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            // Own process group: Ctrl-C reaches licd dev, which stops the nodes in order.
            cmd.process_group(0);
            #[cfg(target_os = "linux")]
            {
                // SAFETY: getpid is async-signal-safe and runs before the fork.
                let parent = unsafe { libc::getpid() };
                // SAFETY: the closure runs between fork and exec and only calls the
                // async-signal-safe prctl, getppid and _exit.
                unsafe {
                    cmd.pre_exec(move || {
                        // If licd dev dies without stopping the nodes, they get SIGTERM.
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                        if libc::getppid() != parent {
                            libc::_exit(1);
                        }
                        Ok(())
                    });
                }
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        children.nodes.push(DevNode {
            id: *id,
            addr: listen.to_string(),
            config: config.clone(),
            log: log.clone(),
            pid: child.id(),
            child,
            exit: None,
        });
    }
    Ok(())
}

/// Fails if a child died, with the end of its log.
fn ensure_running(children: &mut Children, during: &str) -> anyhow::Result<()> {
    if let Some((id, pid, status, log)) = children.newly_exited().into_iter().next() {
        bail!(
            "node {id} (pid {pid}) {} during {during}; the end of {}:\n{}",
            describe_status(status),
            log.display(),
            log_tail(&log, 15)
        );
    }
    Ok(())
}

/// Waits until every node answers `/healthz`.
async fn wait_healthy(children: &mut Children) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .context("cannot build an HTTP client")?;
    let addrs: Vec<(RaftNodeId, String, PathBuf)> = children
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone(), n.log.clone()))
        .collect();
    let started = Instant::now();
    for (id, addr, log) in addrs {
        loop {
            ensure_running(children, "startup")?;
            let ok = http
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if started.elapsed() > STEP_DEADLINE {
                bail!(
                    "node {id} did not answer http://{addr}/healthz within {}; the end of {}:\n{}",
                    human_duration_ms(u64::try_from(STEP_DEADLINE.as_millis()).unwrap_or(0)),
                    log.display(),
                    log_tail(&log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn client(endpoints: &[String], token: &str, deadline: Duration) -> Result<Client, ClientError> {
    let policy = RetryPolicy {
        deadline,
        attempt_timeout: Duration::from_secs(3).min(deadline),
        ..RetryPolicy::default()
    };
    Ok(Client::with_policy(endpoints, policy)?.with_admin_token(token))
}

/// Describes a client error for the dev steps.
fn step_error(step: &str, e: &ClientError) -> anyhow::Error {
    anyhow::anyhow!("{step}: {}", describe_client_error(e))
}

/// Waits until a leader is known and every member is in the membership.
async fn wait_leader(children: &mut Children, admin: &Client) -> anyhow::Result<RaftNodeId> {
    let started = Instant::now();
    let mut last = String::from("no answer yet");
    loop {
        ensure_running(children, "the leader election")?;
        match admin.status().await {
            Ok(s) if s.state == "Leader" && s.members.len() == 3 => {
                if let Some(leader) = s.leader_id {
                    return Ok(leader);
                }
            }
            Ok(s) => {
                last = format!(
                    "node {} is {} with {} members and leader {:?}",
                    s.node_id,
                    s.state,
                    s.members.len(),
                    s.leader_id
                );
            }
            Err(e) => last = describe_client_error(&e),
        }
        if started.elapsed() > STEP_DEADLINE {
            bail!("no leader was elected within 30 s; last status: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Brings the cluster up and licenses this machine.
async fn bring_up(
    p: &Prepared,
    children: &mut Children,
    node: &NodeName,
) -> anyhow::Result<(RaftNodeId, GrantBody)> {
    spawn_nodes(p, children)?;
    wait_healthy(children).await?;

    let endpoints: Vec<String> = children.nodes.iter().map(|n| n.addr.clone()).collect();
    let members: BTreeMap<RaftNodeId, String> = children
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.clone()))
        .collect();
    // Only node 1 is asked to initialize (a failover retry must not initialize another).
    let first = client(&endpoints[..1], &p.admin_token, Duration::from_secs(10))
        .map_err(|e| step_error("client", &e))?;
    first
        .init(&InitBody { members })
        .await
        .map_err(|e| step_error("initializing the cluster", &e))?;

    let admin = client(&endpoints, &p.admin_token, Duration::from_secs(5))
        .map_err(|e| step_error("client", &e))?;
    let leader = wait_leader(children, &admin).await?;

    let admin = client(&endpoints, &p.admin_token, Duration::from_secs(15))
        .map_err(|e| step_error("client", &e))?;
    admin
        .install_license(&p.license_text, &new_request_id())
        .await
        .map_err(|e| step_error("installing the demo license", &e))?;
    ensure_running(children, "the license installation")?;

    let body = AllocateBody {
        license: Some(p.license.id.clone()),
        mac: p.mac,
        cores: p.cores,
        ttl_ms: Some(DEV_LEASE_MS),
        request_id: None,
    };
    let grant = admin
        .allocate(node, &body, &new_request_id())
        .await
        .map_err(|e| step_error("allocating this machine's cores", &e))?;
    // The leader may have moved; ask again for the printout.
    let leader = admin
        .status()
        .await
        .ok()
        .and_then(|s| s.leader_id)
        .unwrap_or(leader);
    Ok((leader, grant))
}

fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn print_summary(s: &Summary, p: &Prepared, no_wait: bool) {
    let exe = std::env::current_exe()
        .map(|e| shell_quote(&e))
        .unwrap_or_else(|_| "licd".into());
    println!();
    println!(
        "licd dev: a three-node licd cluster is running in {}",
        s.dir.display()
    );
    println!();
    for n in &s.nodes {
        println!(
            "  node {}  http://{}  pid {}{}  log {}",
            n.id,
            n.addr,
            n.pid,
            if Some(n.id) == s.leader_id {
                "  (leader)"
            } else {
                "          "
            },
            n.log.display()
        );
    }
    println!();
    println!("vendor public key:  {}", s.vendor_public_key);
    println!("vendor signing key: {}", s.vendor_key_file.display());
    let macs: Vec<String> = s
        .license
        .allowed_macs
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "demo license:       {} ({} cores, at least {} per server, MACs {}), installed from {}",
        s.license.id,
        s.license.max_cores,
        s.license.min_cores_per_node,
        macs.join(", "),
        s.license_file.display()
    );
    if !s.mac_detected {
        println!(
            "note: no MAC address was found on this machine; the demo uses {} instead \
             (pass --mac {} to allocate and check)",
            p.mac, p.mac
        );
    }
    let g = &s.allocation;
    println!(
        "allocated:          {} cores (counting {}) for node {} (MAC {}); {} of {} cores in use",
        g.allocation.cores.get(),
        g.allocation.counted_cores,
        g.node,
        g.allocation.mac,
        g.allocated_cores,
        g.licensed_cores
    );
    println!("admin token:        {}", s.admin_token_file.display());
    if no_wait {
        println!();
        println!("--no-wait: stopping the cluster now.");
        return;
    }
    let leader_pid = s
        .nodes
        .iter()
        .find(|n| Some(n.id) == s.leader_id)
        .map_or_else(|| "<pid>".to_string(), |n| n.pid.to_string());
    let mac_flag = if s.mac_detected {
        String::new()
    } else {
        format!(" --mac {}", p.mac)
    };
    let big = s.license.max_cores.min(Cores::MAX);
    println!();
    println!("Try it, in another terminal:");
    println!();
    println!("  export LICD_ENDPOINTS={}", s.endpoints.join(","));
    println!(
        "  export LICD_ADMIN_TOKEN=\"$(cat {})\"",
        shell_quote(&s.admin_token_file)
    );
    println!("  alias licd={exe}    # unless licd is on your PATH");
    println!();
    let try_it = [
        (
            format!("licd check{mac_flag}"),
            "is this machine licensed? exit code 0 = yes".to_string(),
        ),
        (
            "licd license list".into(),
            "licenses, usage and allocated servers".into(),
        ),
        (
            "licd cluster status".into(),
            "members, leader, replication".into(),
        ),
        (
            format!("licd allocate --node big-server --mac 02:00:00:00:00:02 --cores {big}"),
            "CPU_LIMIT_EXHAUSTED".into(),
        ),
        (
            "licd allocate --node stranger --mac 02:00:00:00:00:99 --cores 4".into(),
            "INVALID_MULTI_SERVER_LICENSE".into(),
        ),
    ];
    print_commands(&try_it);
    println!();
    println!("Fail over: kill the leader, then check again; another node takes over at once:");
    println!();
    let pids = s
        .nodes
        .iter()
        .map(|n| format!("node {} = {}", n.id, n.pid))
        .collect::<Vec<_>>()
        .join(", ");
    print_commands(&[
        (
            format!("kill {leader_pid}"),
            format!("the leader, node {}; pids: {pids}", or_unknown(s.leader_id)),
        ),
        (
            format!("licd check{mac_flag}"),
            "still VALID, answered by the new leader".into(),
        ),
        (
            "licd cluster status".into(),
            "WARNING: redundancy lost (exit code 2)".into(),
        ),
    ]);
    println!();
    println!(
        "licd dev runs an agent for this machine: it heartbeats every {}, and `licd agent status` \
         (or GET http://{}/status) tells whether this server is licensed. Press Ctrl-C to stop \
         the cluster.",
        human_duration_ms(DEV_LEASE_MS / 3),
        agent_status_addr(p.base_port)
    );
}

/// Prints commands with their comments aligned.
fn print_commands(lines: &[(String, String)]) {
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, comment) in lines {
        println!("  {command:<width$}   # {comment}");
    }
}

fn or_unknown(id: Option<RaftNodeId>) -> String {
    id.map_or_else(|| "?".into(), |i| i.to_string())
}

/// Runs `licd dev`.
pub async fn run(args: DevArgs, out: Output) -> anyhow::Result<ExitCode> {
    let Some(last_port) = args.base_port.checked_add(2).filter(|_| args.base_port > 0) else {
        bail!("--base-port must be 1 to 65533");
    };
    let ports: Vec<u16> = (args.base_port..=last_port).collect();
    check_ports(&ports)?;
    let mut signals = Signals::new()?;
    let prepared = prepare(&args)?;
    let node = default_node_name();
    if !out.json {
        println!(
            "licd dev: starting three nodes on 127.0.0.1:{}-{} in {} ...",
            args.base_port,
            last_port,
            prepared.dir.display()
        );
    }

    let mut children = Children { nodes: Vec::new() };
    let outcome = tokio::select! {
        r = bring_up(&prepared, &mut children, &node) => Some(r),
        name = signals.recv() => {
            eprintln!("licd dev: {name} during startup; stopping the nodes");
            None
        }
    };
    let (leader, grant) = match outcome {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            let logs: Vec<String> = children
                .nodes
                .iter()
                .map(|n| n.log.display().to_string())
                .collect();
            drop(children);
            let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
            if logs.is_empty() {
                return Err(e);
            }
            bail!(
                "{e:#}\n(the nodes are stopped; their logs: {})",
                logs.join(", ")
            );
        }
        None => {
            for line in children.stop(STOP_GRACE) {
                eprintln!("licd dev: {line}");
            }
            let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
            return Ok(ExitCode::from(130));
        }
    };

    let summary = Summary {
        dir: prepared.dir.clone(),
        endpoints: children.nodes.iter().map(|n| n.addr.clone()).collect(),
        nodes: children
            .nodes
            .iter()
            .map(|n| NodeSummary {
                id: n.id,
                addr: n.addr.clone(),
                pid: n.pid,
                config: n.config.clone(),
                log: n.log.clone(),
            })
            .collect(),
        leader_id: Some(leader),
        admin_token_file: prepared.admin_token_file.clone(),
        cluster_secret_file: prepared.cluster_secret_file.clone(),
        vendor_key_file: prepared.vendor_key_file.clone(),
        vendor_public_key: prepared.vendor_public_key.clone(),
        license_file: prepared.license_file.clone(),
        license: prepared.license.clone(),
        mac_detected: prepared.mac_detected,
        allocation: grant,
    };
    out.emit(&summary, || {
        print_summary(&summary, &prepared, args.no_wait)
    })?;

    let code = if args.no_wait {
        ExitCode::SUCCESS
    } else {
        wait(&mut children, &mut signals, &summary, &prepared, node).await
    };
    let report = children.stop(STOP_GRACE);
    for line in &report {
        eprintln!("licd dev: {line}");
    }
    let _ = std::fs::remove_file(prepared.dir.join("dev.pid"));
    eprintln!(
        "licd dev: the cluster is stopped; its files stay in {}",
        prepared.dir.display()
    );
    Ok(code)
}

/// The dev agent's status address: 79 above the base port (7180 by default).
fn agent_status_addr(base_port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, base_port.saturating_add(79)))
}

/// Runs this machine's agent and watches the children until a signal, or until every node
/// died.
async fn wait(
    children: &mut Children,
    signals: &mut Signals,
    summary: &Summary,
    prepared: &Prepared,
    node: NodeName,
) -> ExitCode {
    let status_addr = agent_status_addr(prepared.base_port);
    let agent = start_agent(summary, prepared, node, status_addr).await;
    let mut watch = tokio::time::interval(Duration::from_millis(300));
    let code = loop {
        tokio::select! {
            name = signals.recv() => {
                eprintln!("licd dev: {name}: stopping the cluster");
                break ExitCode::SUCCESS;
            }
            _ = watch.tick() => {
                for (id, pid, status, log) in children.newly_exited() {
                    let config = children
                        .nodes
                        .iter()
                        .find(|n| n.id == id)
                        .map(|n| n.config.clone())
                        .unwrap_or_default();
                    eprintln!(
                        "licd dev: node {id} (pid {pid}) {}; {} of 3 nodes are running (log: {})",
                        describe_status(status),
                        children.running(),
                        log.display()
                    );
                    eprintln!(
                        "licd dev: to bring it back (outside licd dev's control): licd serve \
                         --config {}",
                        shell_quote(&config)
                    );
                }
                if children.running() == 0 {
                    eprintln!("licd dev: every node has exited; giving up");
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    if let Some((agent, stop_status)) = agent {
        // Releases this machine's allocation while the cluster still runs.
        agent.shutdown().await;
        let _ = stop_status.send(());
    }
    code
}

/// Starts the agent for this machine, with its status endpoint on `status_addr`.
async fn start_agent(
    summary: &Summary,
    prepared: &Prepared,
    node: NodeName,
    status_addr: SocketAddr,
) -> Option<(Agent, tokio::sync::oneshot::Sender<()>)> {
    let third = Duration::from_millis(DEV_LEASE_MS / 3);
    let client = match Client::with_policy(
        &summary.endpoints,
        RetryPolicy {
            deadline: third,
            ..RetryPolicy::default()
        },
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "licd dev: cannot start the agent: {}",
                describe_client_error(&e)
            );
            return None;
        }
    };
    let config = AgentConfig {
        node,
        license: Some(prepared.license.id.clone()),
        mac: prepared.mac,
        cores: prepared.cores,
        lease_ttl: LeaseTtl::from_millis(DEV_LEASE_MS).ok()?,
        refused_retry: Duration::from_secs(5),
    };
    let agent = Agent::spawn(client, config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    match tokio::net::TcpListener::bind(status_addr).await {
        Ok(listener) => {
            tokio::spawn(crate::agent::status::serve(
                listener,
                agent.status_handle(),
                async {
                    let _ = rx.await;
                },
            ));
        }
        Err(e) => eprintln!(
            "licd dev: the agent runs, but its status endpoint cannot listen on {status_addr}: {e}"
        ),
    }
    Some((agent, tx))
}
