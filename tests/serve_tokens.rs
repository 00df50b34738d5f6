//! `licd serve` reads its tokens as an operator writes them: `[[auth.tokens]]` in the
//! configuration file and `LICD_TOKENS` in the environment, with no plain admin token at
//! all; a bad entry stops it with a readable error.

#[path = "support/cli.rs"]
mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use licd::auth::hash_token;
use licd::process::{SpawnOptions, Supervised};
use support::{assert_readable_failure, licd, run_for};

const ADMIN: &str = "serve-admin-token-0123456789";
const OPERATOR: &str = "serve-operator-token-0123456789";
const CLIENT: &str = "serve-client-token-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` with `token`, over a plain connection; the status code.
fn get(port: u16, path: &str, token: Option<&str>) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n{auth}connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn config(dir: &std::path::Path, port: u16, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "node_id = 1\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n\n\
         [[auth.tokens]]\nrole = \"admin\"\nsha256 = \"{}\"\nname = \"ops\"\n\n\
         [[auth.tokens]]\nrole = \"operator\"\nsha256 = \"{}\"\n{extra}",
        dir.join("data"),
        hash_token(ADMIN),
        hash_token(OPERATOR),
    );
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn serve_takes_hashed_tokens_from_its_file_and_licd_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(dir.path(), port, "");
    let mut command = licd();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("LICD_TOKENS", format!("client:{}:apps", hash_token(CLIENT)))
        .env("LICD_CLUSTER_SECRET", "serve-cluster-secret-0123456789")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut node = Supervised::spawn(&mut command, SpawnOptions::default()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(port, "/healthz", None) != Some(200) {
        assert!(Instant::now() < deadline, "the node never served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(port, "/admin/status", None), Some(401));
    assert_eq!(
        get(port, "/admin/status", Some("licd-not-a-token")),
        Some(403)
    );
    assert_eq!(get(port, "/admin/status", Some(ADMIN)), Some(200));
    assert_eq!(get(port, "/admin/status", Some(OPERATOR)), Some(200));
    assert_eq!(get(port, "/metrics", Some(OPERATOR)), Some(200));
    assert_eq!(
        get(port, "/admin/status", Some(CLIENT)),
        Some(403),
        "a client token"
    );
    assert_eq!(get(port, "/v1/licenses", Some(CLIENT)), Some(403));
    // The client token of LICD_TOKENS is accepted (503: this node is not initialized).
    assert_eq!(get(port, "/v1/nodes/a/check", Some(CLIENT)), Some(503));
    let stopped = node.terminate(Duration::from_secs(10)).unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
}

#[test]
fn a_bad_token_entry_stops_serve_with_a_readable_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        free_port(),
        "\n[[auth.tokens]]\nrole = \"client\"\nsha256 = \"not-hex\"\nname = \"apps\"\n",
    );
    let mut cmd = licd();
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("LICD_CLUSTER_SECRET", "serve-cluster-secret-0123456789");
    let out = run_for(cmd, Duration::from_secs(30));
    assert_readable_failure(&out, "sha256 must be 64 hex digits");

    let path = config(dir.path(), free_port(), "");
    let mut cmd = licd();
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("LICD_TOKENS", "superuser:abc")
        .env("LICD_CLUSTER_SECRET", "serve-cluster-secret-0123456789");
    let out = run_for(cmd, Duration::from_secs(30));
    assert_readable_failure(&out, "unknown role");
}
