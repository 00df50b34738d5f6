//! What the command-line tests share: running `licd` with its output in files, readable
//! failures.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use licd::process::{SpawnOptions, Supervised};

pub const LICD: &str = env!("CARGO_BIN_EXE_licd");

/// A `licd` command with none of the caller's `LICD_*` variables.
pub fn licd() -> Command {
    let mut cmd = Command::new(LICD);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LICD_") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command to completion, killing it (and failing) after `limit`. Its output goes to
/// files, not pipes, so a command that prints more than a pipe holds cannot block.
pub fn run_for(mut cmd: Command, limit: Duration) -> Output {
    use std::io::{Read as _, Seek as _};
    let mut stdout = tempfile::tempfile().expect("stdout file");
    let mut stderr = tempfile::tempfile().expect("stderr file");
    cmd.stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap());
    let mut child = Supervised::spawn(&mut cmd, SpawnOptions::default()).expect("spawn licd");
    let finished = child.wait_timeout(limit).expect("try_wait");
    if finished.is_none() {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    let read = |f: &mut std::fs::File| {
        let mut bytes = Vec::new();
        f.rewind().unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    };
    let out = Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    };
    if finished.is_none() {
        panic!(
            "{cmd:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn run(args: &[&str]) -> Output {
    let mut cmd = licd();
    cmd.args(args);
    run_for(cmd, Duration::from_secs(60))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a failed run: non-zero exit, a readable `error:` line, no panic.
pub fn assert_readable_failure(out: &Output, expected: &str) {
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "succeeded unexpectedly: {stderr}");
    assert!(
        stderr.contains(expected),
        "stderr does not mention {expected:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    assert!(stderr.contains("error"), "no error line:\n{stderr}");
}
