//! The etcd cluster measured beside licd: three `etcd` members on loopback, in a temporary
//! directory, with the Raft timing of licd's nodes (50 ms heartbeats, 250 ms election
//! timeout) so that failover compares like with like. Requests go through etcd's JSON
//! gateway (`/v3/kv/put`, `/v3/kv/range`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hyper::Method;

use super::failover::Killable;
use crate::bench::load::{Connection, exchange};
use crate::bench::report::Timing;
use crate::bench::requests::{self, Access};
use crate::process::{SpawnOptions, Supervised};

/// The etcd executable on PATH, if any.
pub(super) fn find_etcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|p| p.is_file())
}

/// `etcd --version`'s first line, without its prefix.
pub(super) fn etcd_version(exe: &Path) -> anyhow::Result<String> {
    let out = Command::new(exe)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} --version", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    Ok(first.trim_start_matches("etcd Version:").trim().to_string())
}

struct Member {
    name: String,
    client: String,
    peer: String,
    child: Option<Supervised>,
    /// etcd's id of this member, learned from its status.
    id: Option<String>,
}

/// Three etcd members. Dropping it kills them and removes their data.
pub(super) struct LocalEtcd {
    exe: PathBuf,
    members: Vec<Member>,
    initial_cluster: String,
    dir: tempfile::TempDir,
    timing: Timing,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

impl LocalEtcd {
    /// Starts the three members and waits until a put succeeds.
    pub(super) async fn start(exe: PathBuf, timing: Timing) -> anyhow::Result<LocalEtcd> {
        let dir = tempfile::Builder::new()
            .prefix("licd-bench-etcd-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let mut members = Vec::new();
        for i in 1..=3 {
            members.push(Member {
                name: format!("etcd-{i}"),
                client: format!("127.0.0.1:{}", free_port()?),
                peer: format!("127.0.0.1:{}", free_port()?),
                child: None,
                id: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = LocalEtcd {
            exe,
            members,
            initial_cluster,
            dir,
            timing,
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        let started = Instant::now();
        let access = Access::default();
        loop {
            let addr = cluster.members[0].client.clone();
            let put = requests::etcd_put(&access, &addr, 0, 0);
            if matches!(exchange(&addr, put, Duration::from_secs(2)).await, Ok((s, _, _)) if s.is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                // The directory goes with the cluster: what etcd said is kept in the error.
                let name = &cluster.members[0].name;
                let log = std::fs::read_to_string(cluster.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(5)..];
                bail!(
                    "the etcd cluster did not accept a put within 30 s; the end of {name}'s log:\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))
            .context("cannot open an etcd log")?;
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen-client-urls")
            .arg(format!("http://{}", m.client))
            .arg("--advertise-client-urls")
            .arg(format!("http://{}", m.client))
            .arg("--listen-peer-urls")
            .arg(format!("http://{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://{}", m.peer))
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg("licd-bench")
            .arg("--heartbeat-interval")
            .arg(self.timing.heartbeat_ms.to_string())
            .arg("--election-timeout")
            .arg(self.timing.election_timeout_min_ms.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let options = SpawnOptions {
            own_group: true,
            #[cfg(unix)]
            parent_death_signal: Some(libc::SIGKILL),
            ..SpawnOptions::default()
        };
        let child = Supervised::spawn(&mut cmd, options)
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// host:port of every member's client URL.
    pub(super) fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The status of member `i`: its own id and its leader's.
    async fn status(&self, i: usize) -> anyhow::Result<(String, String)> {
        let addr = &self.members[i].client;
        let req = requests::request(
            &Access::default(),
            Method::POST,
            addr,
            "/v3/maintenance/status",
            Some(b"{}".to_vec()),
        );
        let (status, _, body) = exchange(addr, req, Duration::from_secs(1)).await?;
        if !status.is_success() {
            bail!("{addr} answered {status}");
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let own = v["header"]["member_id"].as_str().unwrap_or_default();
        let leader = v["leader"].as_str().unwrap_or("0");
        Ok((own.to_string(), leader.to_string()))
    }

    /// The index of the leading member.
    async fn leader_index(&mut self) -> anyhow::Result<usize> {
        let started = Instant::now();
        loop {
            for i in 0..3 {
                if self.members[i].child.is_none() {
                    continue;
                }
                if let Ok((own, leader)) = self.status(i).await {
                    self.members[i].id = Some(own.clone());
                    if own == leader {
                        return Ok(i);
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("no etcd leader within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// host:port of the leader's client URL.
    pub(super) async fn leader_addr(&mut self) -> anyhow::Result<String> {
        let i = self.leader_index().await?;
        Ok(self.members[i].client.clone())
    }

    /// Stops the members.
    pub(super) fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.terminate(Duration::from_secs(5));
            }
        }
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Killable for LocalEtcd {
    async fn leader(&mut self) -> anyhow::Result<u64> {
        Ok(self.leader_index().await? as u64)
    }

    fn kill(&mut self, member: u64) -> anyhow::Result<()> {
        let m = &mut self.members[member as usize];
        if let Some(mut child) = m.child.take() {
            tokio::task::block_in_place(|| child.kill())
                .with_context(|| format!("cannot kill {}", m.name))?;
        }
        Ok(())
    }

    fn restart(&mut self, member: u64) -> anyhow::Result<()> {
        self.spawn(member as usize)
    }

    async fn rejoined(&mut self, member: u64) -> bool {
        matches!(self.status(member as usize).await, Ok((_, leader)) if leader != "0")
    }

    async fn new_leader_known(&mut self, killed: u64) -> bool {
        let killed_id = self.members[killed as usize].id.clone();
        for i in (0..self.members.len()).filter(|&i| i as u64 != killed) {
            if let Ok((_, leader)) = self.status(i).await
                && leader != "0"
                && Some(&leader) != killed_id.as_ref()
            {
                return true;
            }
        }
        false
    }
}

/// One put that fails over like a client library would: each attempt on the next member
/// (its kept-alive connection), for up to `deadline`.
pub(super) async fn put_with_failover(
    members: &mut [Connection],
    start_at: &mut usize,
    seq: u64,
    deadline: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    let mut backoff = Duration::from_millis(10);
    while started.elapsed() < deadline {
        let i = *start_at % members.len();
        let put = requests::etcd_put(&Access::default(), members[i].addr(), 1, seq);
        match members[i].send(put, Duration::from_secs(1)).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        *start_at = i + 1;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
    Err(format!("no put succeeded within {deadline:?}: {last}"))
}
