//! The network namespace a run lives in. Everything the harness starts (the licd nodes, the
//! clients, the nftables rules) is inside it, on loopback addresses of its own, so no fault
//! ever touches the host's network.
//!
//! The outer process creates the namespace, runs the harness again inside it with
//! `ip netns exec`, and deletes it afterwards, killing whatever still runs in it, also when
//! the inner process fails or the operator presses Ctrl-C.

use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, bail};

/// A network namespace, deleted (with every process still in it) when dropped.
pub struct Namespace {
    name: String,
}

/// Runs a command and fails with its stderr when it does not succeed.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}: is it installed?"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Checks that the harness can do its work here: root, `ip`, `nft` and `faketime`.
pub fn preflight() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "licd-jepsen needs root: it creates a network namespace and nftables rules \
             (run it with sudo, or as root in CI)"
        );
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("faketime", "faketime"),
    ] {
        if Command::new(tool)
            .arg(if tool == "faketime" {
                "--version"
            } else {
                "-V"
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!("licd-jepsen needs `{tool}` (Debian package {package})");
        }
    }
    Ok(())
}

impl Namespace {
    /// Creates a namespace with its loopback interface up.
    pub fn create(name: &str) -> anyhow::Result<Namespace> {
        // A namespace left by a crashed earlier run of the same name is removed first.
        let _ = run("ip", &["netns", "delete", name]);
        run("ip", &["netns", "add", name])?;
        let ns = Namespace {
            name: name.to_string(),
        };
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args` inside the namespace and waits for it. `on_start` receives the
    /// child's pid, so a signal handler can forward Ctrl-C to it.
    pub fn exec(
        &self,
        program: &std::path::Path,
        args: &[String],
        on_start: impl FnOnce(u32),
    ) -> anyhow::Result<ExitStatus> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program)
            .args(args)
            .spawn()
            .context("cannot start the harness inside the namespace")?;
        on_start(child.id());
        Ok(child.wait()?)
    }

    /// Kills every process still in the namespace.
    pub fn kill_all(&self) {
        if let Ok(pids) = run("ip", &["netns", "pids", &self.name]) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.kill_all();
        // Processes take a moment to die; the namespace cannot go before they do.
        for _ in 0..50 {
            if run("ip", &["netns", "delete", &self.name]).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "licd-jepsen: could not delete network namespace {}",
            self.name
        );
    }
}
