//! `licd agent` as a process beside `licd dev`: over HTTPS with the dev CA (`--ca-file`) it
//! becomes licensed, `licd agent status` reports it with exit code 0, and SIGTERM releases
//! its cores before it exits.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use licd::process::{SpawnOptions, Supervised};

const LICD: &str = env!("CARGO_BIN_EXE_licd");

/// Spawns `command`; dropping the child kills it, so a failing test leaves nothing running.
fn spawn(command: &mut Command) -> Supervised {
    Supervised::spawn(command, SpawnOptions::default()).unwrap()
}

fn free_port_block(len: u16) -> u16 {
    // Ports 20000-29999, offset by the process id so parallel runs rarely collide.
    let base = 20_000 + (std::process::id() % 900) as u16 * 10;
    for start in (base..29_000).step_by(usize::from(len) + 3) {
        let free = (start..start + len)
            .chain([start + 79])
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return start;
        }
    }
    panic!("no free port block");
}

/// Sends SIGTERM and waits for the exit, failing after `within`.
fn terminate_and_wait(child: &mut Supervised, within: Duration) -> std::process::ExitStatus {
    child.signal(libc::SIGTERM).unwrap();
    child
        .wait_timeout(within)
        .unwrap()
        .unwrap_or_else(|| panic!("process did not exit within {within:?}"))
}

fn poll_until(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} not reached within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_agent_process_is_licensed_and_releases_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_block(3);
    let endpoints = format!(
        "127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
        base,
        base + 1,
        base + 2
    );
    let mut dev = spawn(
        Command::new(LICD)
            .args(["dev", "--dir"])
            .arg(dir.path().join("dev"))
            .args(["--base-port", &base.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let dev_status = format!("127.0.0.1:{}", base + 79);
    // licd dev serves HTTPS: bare host:port endpoints with its CA file are reached over it.
    let ca_file = dir.path().join("dev").join("tls").join("ca.pem");
    let ca_file = ca_file.to_str().unwrap();
    poll_until(Duration::from_secs(60), "licd dev's agent licensed", || {
        Command::new(LICD)
            .args(["agent", "status", "--addr", &dev_status])
            .output()
            .is_ok_and(|o| o.status.success())
    });

    // The agent and the checks use the client token licd dev wrote.
    let client_token = dir.path().join("dev").join("client-token");
    let agent_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut agent = spawn(
        Command::new(LICD)
            .args(["agent", "--endpoints", &endpoints, "--node", "proc-agent"])
            .args(["--ca-file", ca_file])
            .args([
                "--mac",
                "02:00:00:00:00:02",
                "--cores",
                "2",
                "--ttl-ms",
                "3000",
            ])
            .args(["--status-addr", &agent_addr])
            .arg("--token-file")
            .arg(&client_token)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    poll_until(Duration::from_secs(30), "the agent licensed", || {
        Command::new(LICD)
            .args(["agent", "status", "--addr", &agent_addr])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let check = Command::new(LICD)
        .args(["check", "--endpoints", &endpoints, "--node", "proc-agent"])
        .env("LICD_TOKEN_FILE", &client_token)
        .args(["--ca-file", ca_file])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let status = terminate_and_wait(&mut agent, Duration::from_secs(15));
    assert!(
        status.success(),
        "the agent exits cleanly on SIGTERM: {status:?}"
    );
    let check = Command::new(LICD)
        .args([
            "--json",
            "check",
            "--endpoints",
            &endpoints,
            "--node",
            "proc-agent",
            "--ca-file",
            ca_file,
        ])
        .env("LICD_TOKEN_FILE", &client_token)
        .output()
        .unwrap();
    assert!(
        !check.status.success(),
        "released: the check is no longer valid"
    );
    let body: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(body["code"], "NOT_ALLOCATED", "{body}");

    // With the agent gone, its status command fails with a readable message.
    let gone = Command::new(LICD)
        .args(["agent", "status", "--addr", &agent_addr])
        .output()
        .unwrap();
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no licd agent answers"));

    let status = terminate_and_wait(&mut dev, Duration::from_secs(30));
    assert!(status.success(), "licd dev stops cleanly: {status:?}");
}
