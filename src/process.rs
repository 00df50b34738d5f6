//! Child processes that must not outlive their purpose: the `licd serve` nodes of `licd dev`,
//! the nodes of the fault harness, and the `licd` processes of the integration tests.
//!
//! A [`Supervised`] child is a [`std::process::Child`] that knows how it was started and how
//! to stop it:
//!
//! - in a process group of its own, when asked ([`SpawnOptions::own_group`]): signals then
//!   reach everything it started (a wrapper such as `faketime` and the program behind it),
//!   and a Ctrl-C typed at the terminal reaches only the parent, which stops the child in its
//!   own order;
//! - with a parent-death signal, when asked ([`SpawnOptions::parent_death_signal`], Linux
//!   only): a parent that crashes without stopping its children still has them stopped;
//! - [`Supervised::terminate`] asks it to stop (SIGTERM) and kills it (SIGKILL) after a grace
//!   period; [`terminate_all`] does the same for several children sharing one grace period;
//! - [`Supervised::kill`] SIGKILLs it, reaps it, and waits (at most [`GROUP_GONE_LIMIT`])
//!   until no process of its group is left, so that a restart finds its port free;
//! - [`Supervised::pause`] and [`Supervised::resume`] send SIGSTOP and SIGCONT;
//! - dropping a child that still runs stops it (see [`SpawnOptions::drop_grace`]).
//!
//! Every exit status is remembered once reaped, so asking again never waits on a pid the
//! system may have given to another process. Signals go to the child's group when it has one
//! of its own, even after the child was reaped (a group id is not reused while any member
//! lives, and under a wrapper the member that matters may be a grandchild); otherwise to the
//! child alone, and only until it is reaped.
//!
//! What it leaves out: it does not restart anything, interpret the child's output, or watch
//! processes outside the child's group. The parent-death signal is tied to the spawning
//! thread, not the process: spawn from a thread that lives as long as the child should. On
//! systems without Unix signals, stopping a child kills it at once and pausing is not
//! available.

use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The longest [`Supervised::kill`] waits for the rest of a child's group to disappear.
pub const GROUP_GONE_LIMIT: Duration = Duration::from_secs(5);

/// How often waits with a limit look at the child again.
const POLL: Duration = Duration::from_millis(10);

/// How a [`Supervised`] child is started and what happens when it is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpawnOptions {
    /// Starts the child in a new process group whose id is its pid, and signals that group.
    pub own_group: bool,
    /// Linux: the signal the child gets when the thread that spawned it ends (the child exits
    /// at once if that parent is already gone). Ignored elsewhere.
    pub parent_death_signal: Option<i32>,
    /// How long dropping a still-running child waits after SIGTERM before SIGKILL; zero sends
    /// SIGKILL at once.
    pub drop_grace: Duration,
}

/// How a child stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it had to be killed because it did not exit within the grace period.
    pub killed: bool,
}

/// A running (or exited, not yet dropped) child process; see the module documentation.
#[derive(Debug)]
pub struct Supervised {
    /// The process.
    child: Child,
    /// Whether it leads a process group of its own.
    own_group: bool,
    /// Its exit status, once reaped.
    exit: Option<ExitStatus>,
    /// Whether it was stopped with SIGSTOP and not resumed since.
    paused: bool,
    /// See [`SpawnOptions::drop_grace`].
    drop_grace: Duration,
}

impl Supervised {
    /// Spawns `command` with `options`.
    pub fn spawn(command: &mut Command, options: SpawnOptions) -> io::Result<Supervised> {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            if options.own_group {
                command.process_group(0);
            }
            #[cfg(target_os = "linux")]
            if let Some(signal) = options.parent_death_signal {
                // SAFETY: getpid has no preconditions; it runs here, before the fork.
                let parent = unsafe { libc::getpid() };
                // SAFETY: the closure runs between fork and exec and only calls prctl,
                // getppid and _exit, which are async-signal-safe.
                unsafe {
                    command.pre_exec(move || {
                        libc::prctl(libc::PR_SET_PDEATHSIG, signal);
                        // The parent may have died before prctl: then nobody would signal us.
                        if libc::getppid() != parent {
                            libc::_exit(1);
                        }
                        Ok(())
                    });
                }
            }
        }
        let child = command.spawn()?;
        Ok(Supervised {
            child,
            own_group: options.own_group,
            exit: None,
            paused: false,
            drop_grace: options.drop_grace,
        })
    }

    /// The child's process id (also its process group id with [`SpawnOptions::own_group`]).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is paused ([`Supervised::pause`] without [`Supervised::resume`] since).
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The child's standard output, if it was piped and not taken yet.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Sends `signal` to the child's group when it has one of its own, otherwise to the child
    /// if it was not reaped yet.
    #[cfg(unix)]
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
        let target = if self.own_group {
            -pid
        } else if self.exit.is_none() {
            pid
        } else {
            return Ok(());
        };
        // SAFETY: kill has no memory effects. The pid names our unreaped child, or a group
        // whose id cannot be reused while any of its members lives.
        if unsafe { libc::kill(target, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Stops the child with SIGSTOP (its whole group with [`SpawnOptions::own_group`]).
    #[cfg(unix)]
    pub fn pause(&mut self) -> io::Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// Continues the child with SIGCONT, paused or not.
    #[cfg(unix)]
    pub fn resume(&mut self) -> io::Result<()> {
        self.paused = false;
        self.signal(libc::SIGCONT)
    }

    /// Its exit status if it has exited (reaping it), without waiting.
    pub fn try_exit(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// Waits until it exits.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.exit = Some(status);
        Ok(status)
    }

    /// Waits up to `within` for it to exit; `None` if it still runs.
    pub fn wait_timeout(&mut self, within: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks it to stop with SIGTERM (after a SIGCONT if it is paused), waits up to `grace`,
    /// then kills it with [`Supervised::kill`].
    pub fn terminate(&mut self, grace: Duration) -> io::Result<Stopped> {
        terminate_all([&mut *self], grace)
            .pop()
            .unwrap_or_else(|| Err(io::Error::other("no child to stop")))
    }

    /// SIGKILLs it (its whole group with [`SpawnOptions::own_group`], after a SIGCONT if it
    /// is paused), reaps it, and waits up to [`GROUP_GONE_LIMIT`] until its group is gone.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        #[cfg(unix)]
        if self.own_group {
            if self.paused {
                let _ = self.signal(libc::SIGCONT);
            }
            // Even if the child was reaped, the rest of its group may still run.
            let _ = self.signal(libc::SIGKILL);
        }
        if self.exit.is_none() && !(cfg!(unix) && self.own_group) {
            // Fails only if it has exited meanwhile; wait says how.
            let _ = self.child.kill();
        }
        self.paused = false;
        let status = self.wait()?;
        self.wait_group_gone(GROUP_GONE_LIMIT);
        Ok(status)
    }

    /// Waits up to `limit` until no process of its own group is left (at once without one):
    /// reaping a wrapper does not mean the program behind it is gone.
    fn wait_group_gone(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.group_alive() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
    }

    /// Whether a process of its own group is left (signal 0 only checks).
    fn group_alive(&self) -> bool {
        #[cfg(unix)]
        if self.own_group {
            return self.signal(0).is_ok();
        }
        false
    }

    /// Waits for it to exit while reading its piped standard output and error to the end.
    pub fn into_output(mut self) -> io::Result<Output> {
        drop(self.child.stdin.take());
        let stdout = self.child.stdout.take().map(read_in_thread);
        let stderr = self.child.stderr.take().map(read_in_thread);
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout: join_read(stdout)?,
            stderr: join_read(stderr)?,
        })
    }
}

impl Drop for Supervised {
    /// Stops a child that still runs: SIGTERM and [`SpawnOptions::drop_grace`] to exit, then
    /// SIGKILL (SIGKILL at once with no grace).
    fn drop(&mut self) {
        if matches!(self.try_exit(), Ok(Some(_))) {
            return;
        }
        if self.drop_grace.is_zero() {
            let _ = self.kill();
        } else {
            let _ = self.terminate(self.drop_grace);
        }
    }
}

/// Stops several children sharing one grace period: SIGTERM to each that still runs (after a
/// SIGCONT if it is paused), up to `grace` for all of them to exit, then
/// [`Supervised::kill`] for those left. One result per child, in order.
pub fn terminate_all<'a>(
    children: impl IntoIterator<Item = &'a mut Supervised>,
    grace: Duration,
) -> Vec<io::Result<Stopped>> {
    let mut children: Vec<&mut Supervised> = children.into_iter().collect();
    for child in &mut children {
        if matches!(child.try_exit(), Ok(None)) {
            ask_to_stop(child);
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut running = 0;
        for child in &mut children {
            if matches!(child.try_exit(), Ok(None)) {
                running += 1;
            }
        }
        if running == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    children
        .into_iter()
        .map(|child| match child.try_exit()? {
            Some(status) => Ok(Stopped {
                status,
                killed: false,
            }),
            None => Ok(Stopped {
                status: child.kill()?,
                killed: true,
            }),
        })
        .collect()
}

/// SIGTERM (after a SIGCONT if paused) where there are signals; a kill elsewhere.
fn ask_to_stop(child: &mut Supervised) {
    #[cfg(unix)]
    {
        if child.paused {
            let _ = child.signal(libc::SIGCONT);
            child.paused = false;
        }
        let _ = child.signal(libc::SIGTERM);
    }
    #[cfg(not(unix))]
    {
        let _ = child.child.kill();
    }
}

/// Reads a pipe to its end on a thread of its own.
fn read_in_thread(
    mut pipe: impl Read + Send + 'static,
) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)?;
        Ok(bytes)
    })
}

/// What [`read_in_thread`] read, or nothing for a pipe that was not there.
fn join_read(reader: Option<std::thread::JoinHandle<io::Result<Vec<u8>>>>) -> io::Result<Vec<u8>> {
    match reader {
        None => Ok(Vec::new()),
        Some(handle) => handle
            .join()
            .map_err(|_| io::Error::other("the pipe reader panicked"))?,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    fn sleeper(options: SpawnOptions) -> Supervised {
        Supervised::spawn(Command::new("sleep").arg("30"), options).expect("spawn sleep")
    }

    /// `sh -c script` in its own group, once the script printed its first line (after its
    /// traps are set).
    fn shell_when_ready(script: &str, options: SpawnOptions) -> Supervised {
        use std::io::BufRead as _;
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .stdout(std::process::Stdio::piped());
        let mut child = Supervised::spawn(&mut command, options).expect("spawn sh");
        let mut line = String::new();
        std::io::BufReader::new(child.take_stdout().expect("piped"))
            .read_line(&mut line)
            .expect("the first line");
        assert_eq!(line, "ready\n");
        child
    }

    fn grouped() -> SpawnOptions {
        SpawnOptions {
            own_group: true,
            ..SpawnOptions::default()
        }
    }

    /// Whether any process has this pid (or group id, negated).
    fn exists(target: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(target, 0) == 0 }
    }

    /// The state letter of /proc/<pid>/stat (`S` sleeping, `T` stopped, ...).
    fn state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after_name = &stat[stat.rfind(')').expect("name") + 2..];
        after_name.chars().next().expect("state")
    }

    #[test]
    fn terminate_ends_a_child_with_sigterm() {
        let mut child = sleeper(SpawnOptions::default());
        assert_eq!(child.try_exit().unwrap(), None, "sleep 30 still runs");
        let stopped = child.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(stopped.status.signal(), Some(libc::SIGTERM));
        assert!(!stopped.killed);
        assert_eq!(child.try_exit().unwrap(), Some(stopped.status));
    }

    #[test]
    fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
        let mut child = shell_when_ready("trap '' TERM; echo ready; sleep 30; exit 0", grouped());
        let pid = i32::try_from(child.pid()).unwrap();
        let started = Instant::now();
        let stopped = child.terminate(Duration::from_millis(500)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(stopped.killed);
        assert_eq!(stopped.status.signal(), Some(libc::SIGKILL));
        assert!(!exists(-pid), "the sleep of the group is gone too");
    }

    #[test]
    fn kill_reaps_the_child_and_its_whole_group() {
        // A wrapper that does not exec: the sleep is a grandchild in the same group.
        let mut child = shell_when_ready("echo ready; sleep 30; exit 0", grouped());
        let pid = i32::try_from(child.pid()).unwrap();
        assert!(exists(-pid));
        let status = child.kill().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(!exists(-pid), "no process of the group is left");
        assert!(!exists(pid));
    }

    #[test]
    fn dropping_a_running_child_kills_it() {
        let child = sleeper(SpawnOptions::default());
        let pid = i32::try_from(child.pid()).unwrap();
        assert!(exists(pid));
        drop(child);
        assert!(!exists(pid), "dropped, killed and reaped");
    }

    #[test]
    fn dropping_with_a_grace_sends_sigterm_first() {
        let options = SpawnOptions {
            drop_grace: Duration::from_secs(5),
            ..grouped()
        };
        let child = shell_when_ready("trap 'exit 7' TERM; echo ready; sleep 30 & wait", options);
        let pid = i32::try_from(child.pid()).unwrap();
        let started = Instant::now();
        drop(child);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it exited on SIGTERM, not after the grace"
        );
        assert!(!exists(pid));
    }

    #[test]
    fn pause_stops_and_resume_continues_the_child() {
        let mut child = sleeper(grouped());
        child.pause().unwrap();
        assert!(child.is_paused());
        let deadline = Instant::now() + Duration::from_secs(5);
        while state(child.pid()) != 'T' {
            assert!(Instant::now() < deadline, "not stopped");
            std::thread::sleep(POLL);
        }
        child.resume().unwrap();
        assert!(!child.is_paused());
        while state(child.pid()) == 'T' {
            assert!(Instant::now() < deadline, "not continued");
            std::thread::sleep(POLL);
        }
        // A paused child still stops on terminate: it gets SIGCONT first.
        child.pause().unwrap();
        let stopped = child.terminate(Duration::from_secs(5)).unwrap();
        assert_eq!(stopped.status.signal(), Some(libc::SIGTERM));
        assert!(!stopped.killed);
    }

    #[test]
    fn terminate_all_shares_one_grace_period() {
        let mut stubborn =
            shell_when_ready("trap '' TERM; echo ready; sleep 30; exit 0", grouped());
        let mut polite = sleeper(grouped());
        let started = Instant::now();
        let stopped = terminate_all([&mut stubborn, &mut polite], Duration::from_millis(500));
        assert!(started.elapsed() < Duration::from_secs(5));
        let stopped: Vec<Stopped> = stopped.into_iter().map(Result::unwrap).collect();
        assert!(stopped[0].killed);
        assert_eq!(stopped[0].status.signal(), Some(libc::SIGKILL));
        assert!(!stopped[1].killed);
        assert_eq!(stopped[1].status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn wait_timeout_and_into_output_see_the_exit() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = Supervised::spawn(&mut command, SpawnOptions::default()).unwrap();
        let status = child.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(status.and_then(|s| s.code()), Some(3));
        let output = child.into_output().unwrap();
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.stdout, b"out\n");
        assert_eq!(output.stderr, b"err\n");

        let mut child = sleeper(SpawnOptions::default());
        assert_eq!(
            child.wait_timeout(Duration::from_millis(100)).unwrap(),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_parent_death_signal_stops_a_child_whose_parent_thread_ended() {
        let options = SpawnOptions {
            parent_death_signal: Some(libc::SIGTERM),
            ..SpawnOptions::default()
        };
        let mut child = std::thread::spawn(move || sleeper(options))
            .join()
            .expect("the spawning thread");
        let status = child
            .wait_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("the child ended with its parent thread");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
