//! `licd dev` as a user runs it: it brings a cluster up and stops it with `--no-wait`, and
//! kept running it answers the other commands, restarts a killed node, and stops on SIGTERM
//! leaving nothing behind.

#[path = "support/cli.rs"]
mod support;

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use licd::process::{SpawnOptions, Supervised};
use support::{assert_readable_failure, licd, run_for, text};

/// A base port with the two next ports free too, searched from `from`.
fn free_base_port(from: u16) -> u16 {
    (from..from + 500)
        .step_by(3)
        .find(|&p| (p..p + 3).all(|q| TcpListener::bind((Ipv4Addr::LOCALHOST, q)).is_ok()))
        .expect("three free ports")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Asserts that no process runs from the dev directory any more.
fn assert_nothing_left(dir: &Path, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let dir_text = dir.to_string_lossy().to_string();
    loop {
        let mut left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        // A pid may have been reused by something unrelated: only count licd nodes of `dir`.
        left.retain(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&dir_text))
                .unwrap_or(false)
        });
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node processes still running: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(out) = Command::new("pgrep").arg("-f").arg(&dir_text).output() {
        assert!(
            text(&out.stdout).trim().is_empty(),
            "pgrep -f {dir_text} finds: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn dev_no_wait_brings_a_cluster_up_and_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_base_port(17301);
    let mut cmd = licd();
    cmd.args([
        "--json",
        "dev",
        "--no-wait",
        "--base-port",
        &port.to_string(),
        "--dir",
    ])
    .arg(&dir);
    let out = run_for(cmd, Duration::from_secs(120));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "licd dev failed:\n{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let pids: Vec<u32> = summary["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| u32::try_from(n["pid"].as_u64().expect("pid")).unwrap())
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(summary["leader_id"].as_u64().is_some());
    assert_eq!(summary["license"]["id"], "demo");
    let answer_key = summary["answer_public_key"]
        .as_str()
        .expect("answer_public_key");
    assert_eq!(answer_key.len(), 44, "{summary}");
    assert_eq!(
        std::fs::read_to_string(dir.join("answer-signing.pub"))
            .unwrap()
            .trim(),
        answer_key
    );
    assert!(
        summary["allocation"]["allocation"]["cores"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert!(stderr.contains("stopped"), "{stderr}");
    // HTTPS by default, with the throwaway CA the summary names.
    let endpoints = summary["endpoints"].as_array().expect("endpoints");
    assert!(
        endpoints
            .iter()
            .all(|e| e.as_str().unwrap().starts_with("https://127.0.0.1:")),
        "{endpoints:?}"
    );
    let ca = summary["ca_file"].as_str().expect("ca_file");
    assert!(
        std::fs::read_to_string(ca)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    for file in [
        "admin-token",
        "cluster-secret",
        "answer-signing.key",
        "answer-signing.pub",
        "vendor.key",
        "demo.lic",
        "node-1.toml",
    ] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    // One token per role; the node configurations hold their hashes, never the tokens.
    let config = std::fs::read_to_string(dir.join("node-1.toml")).unwrap();
    for (file, role) in [
        ("admin-token", "admin"),
        ("operator-token", "operator"),
        ("client-token", "client"),
    ] {
        let token = std::fs::read_to_string(dir.join(file)).unwrap();
        let token = token.trim();
        assert!(token.len() >= 32, "{file}");
        assert!(
            !config.contains(token),
            "node-1.toml holds the {role} token itself"
        );
        let hash = licd::auth::hash_token(token);
        assert!(
            config.contains(&hash),
            "node-1.toml lacks the {role} token's hash"
        );
    }
    assert!(summary["client_token_file"].as_str().is_some());
    assert!(!dir.join("dev.pid").exists());
    let canonical = dir.canonicalize().unwrap();
    assert_nothing_left(&canonical, &pids);

    // --plain-http: the same cluster without TLS.
    let mut cmd = licd();
    cmd.args([
        "--json",
        "dev",
        "--no-wait",
        "--plain-http",
        "--base-port",
        &port.to_string(),
        "--dir",
    ])
    .arg(&dir);
    let out = run_for(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["ca_file"].is_null());
    assert!(
        summary["endpoints"][0]
            .as_str()
            .unwrap()
            .starts_with("http://")
    );
    let pids: Vec<u32> = summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| u32::try_from(n["pid"].as_u64().unwrap()).unwrap())
        .collect();
    assert_nothing_left(&canonical, &pids);

    // The same ports in use: a clear refusal.
    let _busy = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let mut cmd = licd();
    cmd.args([
        "dev",
        "--no-wait",
        "--base-port",
        &port.to_string(),
        "--dir",
    ])
    .arg(&dir);
    let out = run_for(cmd, Duration::from_secs(30));
    assert_readable_failure(&out, &format!("port {port} is in use"));
    assert!(text(&out.stderr).contains("--base-port"));
}

/// `licd dev` kept running, driven with the other commands, then stopped with SIGTERM.
#[cfg(unix)]
#[test]
fn dev_cluster_answers_the_cli_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let port = free_base_port(17401);
    let mut cmd = licd();
    cmd.args(["dev", "--base-port", &port.to_string(), "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Dropped if the test fails half-way: SIGTERM, so that licd dev stops its nodes (they
    // would get SIGTERM anyway when it dies), then SIGKILL if it does not exit.
    let options = SpawnOptions {
        drop_grace: Duration::from_secs(30),
        ..SpawnOptions::default()
    };
    let mut dev = Supervised::spawn(&mut cmd, options).expect("spawn licd dev");

    // Read its output until it is ready.
    let stdout = dev.take_stdout().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                printed.push_str(&line);
                printed.push('\n');
                if line.contains("Press Ctrl-C") {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let out = dev.into_output().unwrap();
                panic!("licd dev exited early:\n{printed}\n{}", text(&out.stderr));
            }
        }
        assert!(Instant::now() < deadline, "licd dev not ready:\n{printed}");
    }
    let pids: Vec<u32> = printed
        .lines()
        .filter(|l| l.trim_start().starts_with("node ") && l.contains(" pid "))
        .filter_map(|l| {
            l.split(" pid ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(pids.len(), 3, "{printed}");
    // The environment the printout tells the user to export, taken as printed.
    let exported = |name: &str| -> String {
        let prefix = format!("export {name}=");
        printed
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{printed}"))
    };
    let endpoints = exported("LICD_ENDPOINTS");
    let expected: Vec<String> = (0..3)
        .map(|i| format!("https://127.0.0.1:{}", port + i))
        .collect();
    assert_eq!(endpoints, expected.join(","));
    let ca_file = exported("LICD_CA_FILE");
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let with_env = |args: &[&str]| {
        let mut cmd = licd();
        cmd.args(args)
            .env("LICD_ENDPOINTS", &endpoints)
            .env("LICD_CA_FILE", &ca_file)
            .env("LICD_ADMIN_TOKEN", token.trim());
        run_for(cmd, Duration::from_secs(60))
    };
    let with_lease_token = |args: &[&str], lease_token: &str| {
        let mut cmd = licd();
        cmd.args(args)
            .env("LICD_ENDPOINTS", &endpoints)
            .env("LICD_CA_FILE", &ca_file)
            .env("LICD_ADMIN_TOKEN", token.trim())
            .env("LICD_LEASE_TOKEN", lease_token);
        run_for(cmd, Duration::from_secs(60))
    };

    // This machine is licensed: the default node name is the one licd dev allocated.
    let out = with_env(&["check"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).starts_with("VALID"),
        "{}",
        text(&out.stdout)
    );

    // The printed check with the answer key verifies the cluster's signature; another key
    // is refused as if no server answered.
    let answer_key = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("licd check --answer-key "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no check with --answer-key printed:\n{printed}"))
        .to_string();
    let out = with_env(&["check", "--answer-key", &answer_key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("signature: verified"),
        "{}",
        text(&out.stdout)
    );
    let stranger = licd_raft::license_file::encode_public_key(
        &ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    );
    let out = with_env(&["check", "--answer-key", &stranger]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert_readable_failure(&out, "BAD_SIGNATURE");
    // The dev agent believes only signed answers, and they license this machine.
    let agent_addr = format!("127.0.0.1:{}", port + 79);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = with_env(&["agent", "status", "--addr", &agent_addr]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dev agent is not licensed: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let out = with_env(&["license", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("demo"), "{}", text(&out.stdout));

    let out = with_env(&["--json", "cluster", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));

    // The role tokens, as the summary says: the client token checks, the operator token
    // reads the status and may not change anything.
    let with_role = |file: &str, args: &[&str]| {
        let mut cmd = licd();
        cmd.args(args)
            .env("LICD_ENDPOINTS", &endpoints)
            .env("LICD_CA_FILE", &ca_file)
            .env("LICD_TOKEN_FILE", dir.join(file));
        run_for(cmd, Duration::from_secs(60))
    };
    let out = with_role("client-token", &["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_role("operator-token", &["--json", "cluster", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    let out = with_role(
        "operator-token",
        &[
            "allocate",
            "--node",
            "op-server",
            "--mac",
            "02:00:00:00:00:02",
            "--cores",
            "1",
        ],
    );
    assert_readable_failure(&out, "FORBIDDEN");
    let out = with_role("client-token", &["license", "list"]);
    assert_readable_failure(&out, "FORBIDDEN");

    // More cores than the license has left: the field error, with the figures.
    let out = with_env(&[
        "allocate",
        "--node",
        "big-server",
        "--mac",
        "02:00:00:00:00:02",
        "--cores",
        "4096",
    ]);
    assert_readable_failure(&out, "CPU_LIMIT_EXHAUSTED");
    assert!(
        text(&out.stderr).contains("requested 4096"),
        "{}",
        text(&out.stderr)
    );
    let out = with_env(&[
        "allocate",
        "--node",
        "stranger",
        "--mac",
        "02:00:00:00:00:99",
        "--cores",
        "4",
    ]);
    assert_readable_failure(&out, "INVALID_MULTI_SERVER_LICENSE");

    // Installing the same file again changes nothing.
    let lic = dir.join("demo.lic");
    let out = with_env(&["license", "install", lic.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("unchanged"),
        "{}",
        text(&out.stdout)
    );

    // Allocate, heartbeat and release another server with its lease token; then it is no
    // longer licensed.
    let out = with_env(&[
        "--json",
        "allocate",
        "--node",
        "app-2",
        "--mac",
        "02:00:00:00:00:03",
        "--cores",
        "1",
        "--ttl-ms",
        "60000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let grant: serde_json::Value = serde_json::from_slice(&out.stdout).expect("grant JSON");
    let lease_token = grant["lease_token"]
        .as_str()
        .expect("a lease token")
        .to_string();
    assert_eq!(lease_token.len(), 32, "{grant}");
    let out = with_env(&["heartbeat", "--node", "app-2"]);
    assert_readable_failure(&out, "LEASE_TOKEN_REQUIRED");
    let out = with_env(&[
        "heartbeat",
        "--node",
        "app-2",
        "--lease-token",
        &lease_token,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_env(&["check", "--node", "app-2", "--mac", "02:00:00:00:00:03"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_env(&["release", "--node", "app-2"]);
    assert_readable_failure(&out, "LEASE_TOKEN_REQUIRED");
    let out = with_lease_token(&["release", "--node", "app-2"], &lease_token);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_env(&["check", "--node", "app-2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("NOT_ALLOCATED"),
        "{}",
        text(&out.stdout)
    );

    // The admin commands that have an API route: a snapshot, an election, the voter set, a
    // forced release.
    let out = with_env(&["cluster", "snapshot"]);
    assert!(
        text(&out.stdout).contains("snapshot"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(out.status.success());
    let mut elect = licd();
    elect
        .args([
            "cluster",
            "elect",
            "--endpoints",
            &format!("127.0.0.1:{}", port + 1),
        ])
        .env("LICD_CA_FILE", &ca_file)
        .env("LICD_ADMIN_TOKEN", token.trim());
    let out = run_for(elect, Duration::from_secs(60));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("node 2 campaigned"),
        "{}",
        text(&out.stdout)
    );
    let out = with_env(&["cluster", "voters", "1", "2", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = with_env(&[
        "allocate",
        "--node",
        "app-4",
        "--mac",
        "02:00:00:00:00:03",
        "--cores",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("lease token "),
        "{}",
        text(&out.stdout)
    );
    // The administrator releases it without the token.
    let out = with_env(&["cluster", "force-release", "--node", "app-4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("released node app-4"),
        "{}",
        text(&out.stdout)
    );

    // A node killed during the tour: licd dev starts it again, and the cluster is whole.
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(i32::try_from(pids[2]).unwrap(), libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_warning = false;
    loop {
        let out = with_env(&["--json", "cluster", "status"]);
        if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            let warnings = status["warnings"].as_array().map_or(0, Vec::len);
            saw_warning |= warnings > 0;
            let healthy = status["members"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["healthy"] == true));
            if saw_warning && healthy && warnings == 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the killed node was not restarted: {}",
            text(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // SIGTERM: licd dev stops the nodes and exits 0.
    dev.signal(libc::SIGTERM).unwrap();
    let status = dev
        .wait_timeout(Duration::from_secs(30))
        .unwrap()
        .expect("licd dev did not stop on SIGTERM");
    assert!(status.success(), "licd dev exited with {status}");
    assert_nothing_left(&dir.canonicalize().unwrap(), &pids);
}
