//! `licd serve` under a service manager with `Type=notify`: it says READY=1 once it serves,
//! and STOPPING=1 when SIGTERM begins its shutdown.

#![cfg(unix)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use licd::process::{SpawnOptions, Supervised};

const LICD: &str = env!("CARGO_BIN_EXE_licd");

#[test]
fn serve_notifies_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(LICD);
    command
        .args(["serve", "--node-id", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("LICD_ADMIN_TOKEN", "notify-admin-token-0123")
        .env("LICD_CLUSTER_SECRET", "notify-cluster-secret-0123")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut node = Supervised::spawn(&mut command, SpawnOptions::default()).unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    node.signal(libc::SIGTERM).unwrap();
    let n = socket.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = node.wait_timeout(Duration::from_secs(20)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
