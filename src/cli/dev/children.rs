//! The `licd serve` children of `licd dev`: spawning, signalling and stopping them,
//! reporting how they exited, and the guard that stops them when it is dropped.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use licd_raft::RaftNodeId;

use super::STOP_GRACE;
use super::prepare::Prepared;
use crate::cli::output::human_duration_ms;
use crate::process::{SpawnOptions, Supervised, terminate_all};

/// One child `licd serve` process.
pub(crate) struct DevNode {
    pub(crate) id: RaftNodeId,
    pub(crate) addr: String,
    pub(super) config: PathBuf,
    pub(crate) log: PathBuf,
    pub(crate) pid: u32,
    child: Supervised,
    exit: Option<ExitStatus>,
}

/// The three children. Dropping it stops those still running.
pub(crate) struct Children {
    pub(crate) nodes: Vec<DevNode>,
}

impl Children {
    /// Reaps the children that exited since the last call and returns them.
    pub(super) fn newly_exited(&mut self) -> Vec<(RaftNodeId, u32, ExitStatus, PathBuf)> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if n.exit.is_none()
                && let Ok(Some(status)) = n.child.try_exit()
            {
                n.exit = Some(status);
                out.push((n.id, n.pid, status, n.log.clone()));
            }
        }
        out
    }

    pub(crate) fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.exit.is_none()).count()
    }

    /// Stops every running child: SIGTERM, up to `grace` to exit, then SIGKILL. Returns a
    /// line per child that was running.
    pub(crate) fn stop(&mut self, grace: Duration) -> Vec<String> {
        self.newly_exited();
        let mut stopping: Vec<&mut DevNode> =
            self.nodes.iter_mut().filter(|n| n.exit.is_none()).collect();
        let stopped = terminate_all(stopping.iter_mut().map(|n| &mut n.child), grace);
        let mut report = Vec::new();
        for (n, stopped) in stopping.into_iter().zip(stopped) {
            match stopped {
                Ok(stopped) if !stopped.killed => {
                    n.exit = Some(stopped.status);
                    report.push(format!(
                        "node {} (pid {}) stopped{}",
                        n.id,
                        n.pid,
                        if stopped.status.success() {
                            String::new()
                        } else {
                            format!(" ({})", describe_status(stopped.status))
                        }
                    ));
                }
                killed => {
                    n.exit = killed.ok().map(|s| s.status);
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

pub(super) fn describe_status(status: ExitStatus) -> String {
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
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
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

/// Starts the three `licd serve` children.
pub(super) fn spawn_nodes(p: &Prepared, children: &mut Children) -> anyhow::Result<()> {
    for id in p.members.keys() {
        children.nodes.push(spawn_node(p, *id, false)?);
    }
    Ok(())
}

impl Children {
    /// Kills node `id` with SIGKILL (no chance to flush or say goodbye) and reaps it.
    pub(crate) fn kill(&mut self, id: RaftNodeId) -> anyhow::Result<()> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.id == id && n.exit.is_none())
            .with_context(|| format!("node {id} is not running"))?;
        let status = node
            .child
            .kill()
            .with_context(|| format!("cannot kill node {id}"))?;
        node.exit = Some(status);
        Ok(())
    }

    /// Starts node `id` again from its data directory, its log appended to.
    pub(crate) fn restart(&mut self, p: &Prepared, id: RaftNodeId) -> anyhow::Result<u32> {
        let node = spawn_node(p, id, true)?;
        let pid = node.pid;
        match self.nodes.iter_mut().find(|n| n.id == id) {
            Some(slot) => *slot = node,
            None => self.nodes.push(node),
        }
        Ok(pid)
    }
}

/// Starts `licd serve` for member `id` of `p`; `append` keeps its earlier log.
fn spawn_node(p: &Prepared, id: RaftNodeId, append: bool) -> anyhow::Result<DevNode> {
    let exe = std::env::current_exe().context("cannot find the licd executable")?;
    let (listen, config, log) = p.members.get(&id).context("no such member")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
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
    // The nodes know the tokens by the hashes in their configuration; a token of the
    // caller's environment must not be accepted as one more.
    cmd.env_remove("LICD_ADMIN_TOKEN")
        .env_remove("LICD_TOKENS")
        .env("LICD_CLUSTER_SECRET", &p.cluster_secret)
        .env("NO_COLOR", "1");
    let options = SpawnOptions {
        // Own process group: Ctrl-C reaches licd dev, which stops the nodes in order.
        own_group: true,
        // If licd dev dies without stopping the nodes, they get SIGTERM.
        #[cfg(unix)]
        parent_death_signal: Some(libc::SIGTERM),
        ..SpawnOptions::default()
    };
    let child = Supervised::spawn(&mut cmd, options)
        .with_context(|| format!("cannot start {} serve", exe.display()))?;
    Ok(DevNode {
        id,
        addr: listen.to_string(),
        config: config.clone(),
        log: log.clone(),
        pid: child.pid(),
        child,
        exit: None,
    })
}

/// Fails if a child died, with the end of its log.
pub(crate) fn ensure_running(children: &mut Children, during: &str) -> anyhow::Result<()> {
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
