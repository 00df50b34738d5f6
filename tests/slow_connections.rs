//! The accept loop under callers that hold connections without finishing a request: silent
//! sockets and a trickled partial header (slowloris). Checks keep being answered while
//! hundreds of such connections are held, every one of them is closed once the header-read
//! timeout passes, a kept-alive connection is closed after the same idle time, an oversized
//! header is answered 431, and with every connection slot taken a new caller waits for a
//! slot instead of being refused.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use licd::api::AllocateBody;
use licd::client::new_request_id;
use licd_raft::types::{Cores, NodeName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header-read timeout the tests configure.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections held open by the attack.
const ATTACKERS: usize = 400;

/// Raises the soft limit of open files to the hard one (at most 16384): the test holds both
/// ends of every connection in one process.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct handed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max.min(16_384);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

fn tweak(config: &mut licd::config::NodeConfig) {
    config.server.header_read_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
}

/// Holds `stream` (trickling a partial request head when `trickle`) until the server closes
/// it; returns how long after `opened` that was, or `None` if it was still open at `give_up`.
async fn hold(mut stream: TcpStream, trickle: bool, opened: Instant) -> Option<Duration> {
    let give_up = HEADER_TIMEOUT + Duration::from_secs(8);
    let mut buf = [0u8; 512];
    if trickle {
        let _ = stream
            .write_all(b"GET /v1/nodes/slow/check HTTP/1.1\r\nHost: x\r\n")
            .await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(opened.elapsed()),
                Ok(_) => {}
            },
            _ = tick.tick(), if trickle => {
                if stream.write_all(b"X").await.is_err() {
                    return Some(opened.elapsed());
                }
            }
            () = tokio::time::sleep_until((opened + give_up).into()) => return None,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_are_answered_while_hundreds_of_connections_stall_and_stalled_ones_are_closed() {
    let fds = raise_fd_limit();
    assert!(
        fds >= 2 * ATTACKERS as u64 + 200,
        "open-file limit {fds} too low"
    );
    let cluster = Cluster::start_with(3, tweak).await;
    cluster.install(&common::license("LIC-SLOW", 64)).await;
    let client = cluster.client();
    let name = NodeName::new("app-1").unwrap();
    let body = AllocateBody {
        license: None,
        mac: common::mac(1),
        cores: Cores::new(4).unwrap(),
        ttl_ms: None,
        request_id: None,
    };
    client
        .allocate(&name, &body, &new_request_id())
        .await
        .expect("allocate");
    client.check(&name, None).await.expect("first check");

    let leader = cluster.wait_for_leader(Duration::from_secs(5)).await;
    let target = cluster.addrs[&leader];
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..ATTACKERS {
        let stream = TcpStream::connect(target).await.expect("connect");
        held.push(tokio::spawn(hold(stream, i % 2 == 1, Instant::now())));
    }
    println!(
        "{ATTACKERS} connections held on the leader (half silent, half trickling a header), opened in {:?}",
        opened.elapsed()
    );

    // Checks while every stalled connection is still held (they live for HEADER_TIMEOUT).
    let mut latencies = Vec::new();
    let until = opened + HEADER_TIMEOUT - Duration::from_millis(300);
    // At least a few checks, even on a machine so loaded that one takes long.
    while Instant::now() < until || latencies.len() < 3 {
        let started = Instant::now();
        let answer = client.check(&name, None).await.expect("check under attack");
        latencies.push(started.elapsed());
        assert!(answer.check.valid, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1],
    );
    println!(
        "{} checks during the attack: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        latencies.len()
    );
    // Generous: the point is that checks are answered, not how fast on a shared machine.
    assert!(max < Duration::from_secs(5), "a check took {max:?}");

    let mut closed_after = Vec::new();
    for task in held {
        let closed = task
            .await
            .unwrap()
            .expect("a stalled connection was never closed");
        closed_after.push(closed);
    }
    closed_after.sort();
    println!(
        "stalled connections closed after {:?} (first) .. {:?} (last)",
        closed_after[0],
        closed_after[closed_after.len() - 1]
    );
    // Not before the timeout (so it is the timeout that closed them), not long after.
    assert!(closed_after[0] >= HEADER_TIMEOUT - Duration::from_millis(100));
    assert!(closed_after[closed_after.len() - 1] <= HEADER_TIMEOUT + Duration::from_secs(5));
    // And the node still answers.
    client
        .check(&name, None)
        .await
        .expect("check after the attack");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_limit_and_huge_heads_get_431() {
    let cluster = Cluster::start_with(1, tweak).await;
    let addr = cluster.addrs[&1];

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    let idle_from = Instant::now();
    let closed = tokio::time::timeout(HEADER_TIMEOUT * 4, stream.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {closed:?}"
    );
    let idle = idle_from.elapsed();
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{idle:?}"
    );

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 << 10)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // More header lines than the server takes: 431 as well.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let many: String = (0..licd::http::MAX_HEADERS + 20)
        .map(|i| format!("x-h{i}: v\r\n"))
        .collect();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn with_every_slot_taken_a_new_caller_waits_for_one_and_is_served() {
    let slots = 20;
    let cluster = Cluster::start_with(1, |c| {
        tweak(c);
        c.server.max_connections = slots;
    })
    .await;
    let addr = cluster.addrs[&1];
    let mut held = Vec::new();
    for _ in 0..slots {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the loop accept them all, so every slot is taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let health = cluster.client().cluster_health().await;
    let waited = started.elapsed();
    assert!(health.is_ok(), "{health:?}");
    assert!(
        waited >= HEADER_TIMEOUT - Duration::from_millis(500),
        "served after {waited:?}: the slots were not all taken"
    );
    println!("with {slots} of {slots} slots held, a caller was served after {waited:?}");
    drop(held);
    cluster.shutdown().await;
}

#[tokio::test]
async fn over_tls_a_silent_handshake_and_a_silent_session_are_closed_by_their_timeouts() {
    let options = common::Options {
        tls: true,
        mutual_tls: false,
    };
    let cluster = Cluster::start_options(1, options, |c| {
        tweak(c);
        c.server.tls_handshake_timeout_ms = HEADER_TIMEOUT.as_millis() as u64;
    })
    .await;
    let addr = cluster.addrs[&1];

    // No handshake at all: dropped when the handshake timeout passes.
    let silent = TcpStream::connect(addr).await.unwrap();
    let closed = hold(silent, false, Instant::now()).await;
    let closed = closed.expect("a connection without a handshake was never closed");
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{closed:?}"
    );

    // A finished handshake, then nothing: closed by the header-read timeout.
    let config = licd::tls::client_config(&cluster.ca_file(), None).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(HEADER_TIMEOUT * 4, tls.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
    let idle = opened.elapsed();
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{idle:?}"
    );
    println!("over TLS: no handshake closed after {closed:?}, a silent session after {idle:?}");
    cluster.shutdown().await;
}
