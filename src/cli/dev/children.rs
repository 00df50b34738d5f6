//! The `licd serve` children of `licd dev`: spawning, signalling and stopping them,
//! reporting how they exited, and the guard that stops them when it is dropped.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use licd_raft::RaftNodeId;

use super::STOP_GRACE;
use super::prepare::Prepared;
use crate::cli::output::human_duration_ms;

/// One child `licd serve` process.
pub(super) struct DevNode {
    pub(super) id: RaftNodeId,
    pub(super) addr: String,
    pub(super) config: PathBuf,
    pub(super) log: PathBuf,
    pub(super) pid: u32,
    child: Child,
    exit: Option<ExitStatus>,
}

/// The three children. Dropping it stops those still running.
pub(super) struct Children {
    pub(super) nodes: Vec<DevNode>,
}

impl Children {
    /// Reaps the children that exited since the last call and returns them.
    pub(super) fn newly_exited(&mut self) -> Vec<(RaftNodeId, u32, ExitStatus, PathBuf)> {
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

    pub(super) fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.exit.is_none()).count()
    }

    /// Stops every running child: SIGTERM, up to `grace` to exit, then SIGKILL. Returns a
    /// line per child that was running.
    pub(super) fn stop(&mut self, grace: Duration) -> Vec<String> {
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
pub(super) fn ensure_running(children: &mut Children, during: &str) -> anyhow::Result<()> {
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
