//! The agent's last confirmed lease, kept in a file so that an application server restarted
//! during an outage of the license cluster is still licensed until the lease it last held
//! ends, and never longer.
//!
//! The deadline is stored on `CLOCK_BOOTTIME`, which keeps counting across the agent's
//! restarts (and while the machine sleeps) and no wall-clock change moves; it starts again
//! at a reboot, so the file also records the kernel's boot id and a lease saved before a
//! reboot is not believed after it. The file is written atomically (a temporary file, then a
//! rename) with mode 0600: only the agent's user reads it. What it proves is what the
//! agent's memory proved: the cluster confirmed this lease until that instant.
//!
//! The file also keeps the allocation's lease token, the secret that renews and releases it:
//! a restarted agent presents it to renew the allocation it held instead of being refused
//! `NODE_IN_USE`. The token is believed across a reboot and after the saved lease ended (the
//! cluster may hold the allocation longer than the agent could count on); a wrong one is
//! refused by the cluster, never trusted by the agent.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use licd_raft::types::NodeName;
use serde::{Deserialize, Serialize};

use crate::lease_token::LeaseToken;

/// A confirmed lease as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLease {
    /// The server the lease is for.
    pub node: NodeName,
    /// The kernel's boot id when it was saved.
    pub boot_id: String,
    /// When the lease ends, in milliseconds of `CLOCK_BOOTTIME`.
    pub until_boottime_ms: u64,
    /// The cores the server counts.
    pub counted_cores: u32,
    /// The allocation's lease token (absent in files written before lease tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<LeaseToken>,
}

/// Time since boot, counting sleep (`CLOCK_BOOTTIME`); `CLOCK_MONOTONIC` where there is no
/// boot clock.
pub fn boottime() -> Duration {
    #[cfg(target_os = "linux")]
    let clock = libc::CLOCK_BOOTTIME;
    #[cfg(not(target_os = "linux"))]
    let clock = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The kernel's boot id (Linux), or an empty string where there is none.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The agent's state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Saves a lease of `node` that runs `left` more from now, with its lease token.
    pub fn save(
        &self,
        node: &NodeName,
        left: Duration,
        counted_cores: u32,
        lease_token: Option<&LeaseToken>,
    ) -> io::Result<()> {
        let until = boottime() + left;
        let saved = SavedLease {
            node: node.clone(),
            boot_id: boot_id(),
            until_boottime_ms: u64::try_from(until.as_millis()).unwrap_or(u64::MAX),
            counted_cores,
            lease_token: lease_token.cloned(),
        };
        let text = serde_json::to_vec(&saved).map_err(io::Error::other)?;
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// The saved lease of `node` and how long it still runs, if one was saved in this boot
    /// and has not ended. A file that cannot be read is ignored (and said so in the log).
    pub fn load(&self, node: &NodeName) -> Option<(Duration, u32)> {
        let saved = self.read(node)?;
        if saved.boot_id != boot_id() {
            return None;
        }
        let until = Duration::from_millis(saved.until_boottime_ms);
        let now = boottime();
        (until > now).then(|| (until - now, saved.counted_cores))
    }

    /// The lease token saved for `node`, whatever became of its lease since.
    pub fn load_token(&self, node: &NodeName) -> Option<LeaseToken> {
        self.read(node)?.lease_token
    }

    /// The saved lease, if the file holds one of `node`.
    fn read(&self, node: &NodeName) -> Option<SavedLease> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the agent state");
                return None;
            }
        };
        let saved: SavedLease = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable agent state");
                return None;
            }
        };
        (&saved.node == node).then_some(saved)
    }

    /// Forgets the saved lease (released, refused or lost).
    pub fn clear(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the agent state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    #[test]
    fn a_saved_lease_is_loaded_with_what_is_left_and_only_for_its_server() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("agent.json"));
        assert!(file.load(&node("app-1")).is_none());
        let token: LeaseToken = "00112233445566778899aabbccddeeff".parse().unwrap();
        file.save(&node("app-1"), Duration::from_secs(20), 8, Some(&token))
            .unwrap();
        let (left, cores) = file.load(&node("app-1")).unwrap();
        assert_eq!(file.load_token(&node("app-1")), Some(token));
        assert_eq!(file.load_token(&node("app-2")), None);
        assert!(left <= Duration::from_secs(20) && left > Duration::from_secs(19));
        assert_eq!(cores, 8);
        assert!(file.load(&node("app-2")).is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        file.clear();
        assert!(file.load(&node("app-1")).is_none());
    }

    #[test]
    fn an_ended_lease_another_boots_lease_and_garbage_are_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("agent.json"));
        let token: LeaseToken = "00112233445566778899aabbccddeeff".parse().unwrap();
        file.save(&node("app-1"), Duration::ZERO, 8, Some(&token))
            .unwrap();
        assert!(file.load(&node("app-1")).is_none());
        // The token outlives the lease the agent could count on: the cluster judges it.
        assert_eq!(file.load_token(&node("app-1")), Some(token.clone()));
        let other_boot = SavedLease {
            node: node("app-1"),
            boot_id: "another-boot".into(),
            until_boottime_ms: u64::MAX / 2,
            counted_cores: 8,
            lease_token: Some(token.clone()),
        };
        std::fs::write(file.path(), serde_json::to_vec(&other_boot).unwrap()).unwrap();
        assert!(file.load(&node("app-1")).is_none());
        assert_eq!(file.load_token(&node("app-1")), Some(token));
        // A file written before lease tokens has none.
        let old = r#"{"node":"app-1","boot_id":"b","until_boottime_ms":1,"counted_cores":8}"#;
        std::fs::write(file.path(), old).unwrap();
        assert_eq!(file.load_token(&node("app-1")), None);
        std::fs::write(file.path(), b"not json").unwrap();
        assert!(file.load(&node("app-1")).is_none());
        assert!(file.load_token(&node("app-1")).is_none());
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime() > a);
    }
}
