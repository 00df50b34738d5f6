//! The log of `licd serve` written to a file or a pipe: JSON lines with `--log-format json`,
//! plain text otherwise, never terminal colour codes, and one access line per request at
//! debug level.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use licd::process::{SpawnOptions, Supervised};

const LICD: &str = env!("CARGO_BIN_EXE_licd");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a single-node `licd serve` with `args`, sends it one request, stops it, and returns
/// what it wrote on stderr.
fn serve_log(args: &[&str], log: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let stderr = dir.path().join("stderr.log");
    let mut command = Command::new(LICD);
    command
        .args(["serve", "--node-id", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(args)
        .env("LICD_ADMIN_TOKEN", "log-test-admin-token-0123")
        .env("LICD_CLUSTER_SECRET", "log-test-cluster-secret-0123")
        .env("LICD_LOG", log)
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut node = Supervised::spawn(&mut command, SpawnOptions::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            break;
        }
        assert!(Instant::now() < deadline, "the node never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = node.terminate(Duration::from_secs(10)).unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    std::fs::read_to_string(stderr).unwrap()
}

#[test]
fn json_logs_are_one_object_per_line_without_colour_codes() {
    let log = serve_log(&["--log-format", "json"], "info,licd::access=debug");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value.get("level").is_some() && value.get("fields").is_some(),
            "{line}"
        );
    }
    let access = lines
        .iter()
        .find(|l| l.contains("\"licd::access\""))
        .expect("an access line for the request");
    let value: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!(value["fields"]["path"], "/healthz");
    assert_eq!(value["fields"]["status"], 200);
    assert!(value["fields"]["latency_us"].is_u64());
}

#[test]
fn text_logs_in_a_file_have_no_colour_codes_and_no_access_lines_at_info() {
    let log = serve_log(&[], "info");
    assert!(!log.trim().is_empty());
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log}");
    assert!(!log.contains("licd::access"), "{log}");
    assert!(
        log.lines().all(|l| !l.trim_start().starts_with('{')),
        "{log}"
    );
}
