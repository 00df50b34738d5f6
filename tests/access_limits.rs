//! What a node refuses before it does any work: paths a URL parser would rewrite (the same
//! answer on a follower as on the leader), bodies that are not JSON objects, wrong methods,
//! broken bodies; and the abuse limits: write rates, requests in flight, the whole-request
//! time limit. Also the exactly-once key of `idempotency-key`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, CLIENT_TOKEN, CLIENT_TOKEN_2, Cluster, OPERATOR_TOKEN, license};
use licd::config::LimitsConfig;
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `head` (request line and headers, without the blank line) and `body` over a raw
/// connection, announcing `length` body bytes, and returns the status, the headers' text
/// and the JSON body. The path goes to the node byte for byte.
async fn raw(
    addr: SocketAddr,
    head: &str,
    body: &str,
    length: usize,
) -> (u16, String, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{head}\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n{body}"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    if body.len() < length {
        // A body broken off: the client closes its side.
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let (headers, json) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        status,
        headers.to_string(),
        serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
    )
}

fn leader_and_follower(cluster: &Cluster, leader: u64) -> (SocketAddr, SocketAddr) {
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    (cluster.addrs[&leader], cluster.addrs[&follower])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_path_a_url_parser_would_rewrite_gets_the_same_400_on_a_follower_and_the_leader() {
    let cluster = Cluster::start(3).await;
    cluster.install(&license("acme", 64)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let (leader_addr, follower_addr) = leader_and_follower(&cluster, leader);
    let body = r#"{"license":"acme","mac":"02:00:00:00:00:01","cores":4}"#;
    let auth = format!("authorization: Bearer {CLIENT_TOKEN}");
    for path in [
        r"/v1/nodes/fz-a\..\fz-b/allocation",
        "/v1/nodes/fz-a/../fz-b/allocation",
        "/v1/nodes/fz-a/%2e%2e/fz-b/allocation",
        "/v1/nodes/fz-a/%2E./fz-b/allocation",
        "/v1/nodes/./fz-b/allocation",
        "/v1/nodes/fz-b/./allocation",
    ] {
        let head = format!("PUT {path} HTTP/1.1\r\n{auth}");
        let on_leader = raw(leader_addr, &head, body, body.len()).await;
        let on_follower = raw(follower_addr, &head, body, body.len()).await;
        assert_eq!(on_leader.0, 400, "{path} on the leader: {:?}", on_leader.2);
        assert_eq!(
            on_follower.0, 400,
            "{path} on a follower: {:?}",
            on_follower.2
        );
        assert_eq!(on_leader.2["code"], "BAD_REQUEST");
        assert_eq!(on_follower.2, on_leader.2, "{path}: the same answer");
    }
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert!(
        usage.licenses[0].nodes.is_empty(),
        "nothing was allocated: {usage:?}"
    );
    // A plain path still works through a follower.
    let head = format!("PUT /v1/nodes/fz-b/allocation HTTP/1.1\r\n{auth}");
    let (status, _, answer) = raw(follower_addr, &head, body, body.len()).await;
    assert_eq!(status, 201, "{answer}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_or_oversized_body_gets_the_same_status_on_a_follower_and_the_leader() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(10)).await;
    let (leader_addr, follower_addr) = leader_and_follower(&cluster, leader);
    let head =
        format!("PUT /v1/nodes/b-1/allocation HTTP/1.1\r\nauthorization: Bearer {CLIENT_TOKEN}");
    for addr in [leader_addr, follower_addr] {
        let (status, _, body) = raw(addr, &head, r#"{"mac":"02:00"#, 100).await;
        assert_eq!(status, 400, "a broken body at {addr}: {body}");
        assert_eq!(body["code"], "BAD_REQUEST");
    }
    let big = format!(r#"{{"mac":"{}"}}"#, "x".repeat(3 << 20));
    for addr in [leader_addr, follower_addr] {
        let (status, _, body) = raw(addr, &head, &big, big.len()).await;
        assert_eq!(status, 413, "an oversized body at {addr}: {body}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_json_array_where_an_object_is_documented_is_refused() {
    let cluster = Cluster::start(1).await;
    cluster.install(&license("acme", 64)).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", cluster.addrs[&1]);
    for (method, path, token) in [
        (
            reqwest::Method::PUT,
            "/v1/nodes/bench/allocation",
            CLIENT_TOKEN,
        ),
        (
            reqwest::Method::DELETE,
            "/v1/nodes/bench/allocation",
            CLIENT_TOKEN,
        ),
        (
            reqwest::Method::POST,
            "/v1/nodes/bench/heartbeat",
            CLIENT_TOKEN,
        ),
        (reqwest::Method::PUT, "/admin/voters", ADMIN_TOKEN),
    ] {
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(r#"["bench","02:00:00:00:01:08",1,1000]"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{method} {path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            body["message"], "the body must be a JSON object",
            "{method} {path}"
        );
    }
    let usage = cluster.operator_client().licenses().await.unwrap();
    assert!(usage.licenses[0].nodes.is_empty());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_a_json_405_on_every_router() {
    let cluster = Cluster::start(1).await;
    let http = reqwest::Client::new();
    for (method, path) in [
        (reqwest::Method::PATCH, "/v1/licenses"),
        (reqwest::Method::GET, "/v1/nodes/x/allocation"),
        (reqwest::Method::GET, "/admin/init"),
        (reqwest::Method::PUT, "/admin/snapshot"),
        (reqwest::Method::GET, "/raft/vote"),
        (reqwest::Method::POST, "/metrics"),
        (reqwest::Method::POST, "/readyz"),
    ] {
        let response = http
            .request(
                method.clone(),
                format!("http://{}{path}", cluster.addrs[&1]),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{method} {path}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_a_tokens_rate_get_429_with_retry_after() {
    let cluster = Cluster::start_with(1, |c| {
        c.limits = LimitsConfig {
            writes_per_second: 1,
            write_burst: 2,
            ..LimitsConfig::default()
        }
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/nodes/rl-1/allocation", cluster.addrs[&1]);
    let release = |token: &'static str| http.delete(&url).bearer_auth(token).send();
    assert_eq!(
        release(CLIENT_TOKEN).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        release(CLIENT_TOKEN).await.unwrap().status(),
        StatusCode::OK
    );
    let limited = release(CLIENT_TOKEN).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
    assert!(
        body["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 1_000),
        "{body}"
    );
    // The rate is per token, and a heartbeat (no log write) is not counted.
    assert_eq!(
        release(CLIENT_TOKEN_2).await.unwrap().status(),
        StatusCode::OK
    );
    for _ in 0..5 {
        let heartbeat = http
            .post(format!(
                "http://{}/v1/nodes/rl-1/heartbeat",
                cluster.addrs[&1]
            ))
            .bearer_auth(CLIENT_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(
            heartbeat.status(),
            StatusCode::NOT_FOUND,
            "NOT_ALLOCATED, not 429"
        );
    }
    // After a second the token has earned a write again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        release(CLIENT_TOKEN).await.unwrap().status(),
        StatusCode::OK
    );
    // The client library waits out a 429 and sends the same request again.
    let client = cluster.client();
    let name = licd_raft::types::NodeName::new("rl-2").unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        client
            .release(&name, None, &licd::client::new_request_id())
            .await
            .expect("released after waiting for the rate");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_over_its_in_flight_limit_answers_503_and_a_stuck_request_times_out() {
    let cluster = Cluster::start_with(1, |c| c.limits.max_in_flight = 1).await;
    let addr = cluster.addrs[&1];
    // A request whose body never finishes holds the one place.
    let mut stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/nodes/slow/allocation HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {CLIENT_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"mac\":"
    );
    stuck.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let over = reqwest::Client::new()
        .get(format!("http://{addr}/v1/licenses"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = over.json().await.unwrap();
    assert_eq!(body["code"], "OVERLOADED");
    // The probes are outside the limit.
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The stuck request ends with the /v1 time limit, as a JSON 503.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stuck.read_to_end(&mut answer)).await;
    let waited = started.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("\"code\":\"TIMEOUT\""), "{text}");
    assert!(
        waited >= licd::http::limits::V1_TIMEOUT - Duration::from_millis(500)
            && waited < licd::http::limits::V1_TIMEOUT + Duration::from_secs(5),
        "answered after {waited:?}"
    );
    // Its place is free again.
    let after = reqwest::Client::new()
        .get(format!("http://{addr}/v1/licenses"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_is_the_exactly_once_key_and_x_request_id_still_works_alone() {
    let cluster = Cluster::start(1).await;
    cluster.install(&license("acme", 64)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/nodes/idem-1/allocation", cluster.addrs[&1]);
    let lease_token = std::sync::Mutex::new(None::<String>);
    let allocate = |key: Option<&str>, trace: &str, cores: u32| {
        let mut request = http
            .put(&url)
            .bearer_auth(CLIENT_TOKEN)
            .header(licd::api::REQUEST_ID_HEADER, trace)
            .json(&json!({"license": "acme", "mac": "02:00:00:00:00:01", "cores": cores}));
        if let Some(key) = key {
            request = request.header(licd::api::IDEMPOTENCY_KEY_HEADER, key);
        }
        // Re-allocating a live allocation presents its lease token.
        if let Some(token) = lease_token.lock().unwrap().as_deref() {
            request = request.header(licd::lease_token::LEASE_TOKEN_HEADER, token);
        }
        request.send()
    };
    let first = allocate(Some("key-1"), "trace-a", 4).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await.unwrap();
    let first_token = first["lease_token"]
        .as_str()
        .expect("a lease token")
        .to_string();
    // Another trace id, the same key: the first answer, not a second allocation.
    let retry = allocate(Some("key-1"), "trace-b", 4).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    let retry: serde_json::Value = retry.json().await.unwrap();
    // Applied again it would have replaced the allocation under a new grant.
    assert_eq!(
        retry["replaced"], false,
        "the retry was applied again: {retry}"
    );
    assert_eq!(retry["allocation"], first["allocation"]);
    assert_eq!(retry["request_id"], "key-1");
    // The same key for another request is refused.
    let reused = allocate(Some("key-1"), "trace-c", 8).await.unwrap();
    assert_eq!(reused.status(), StatusCode::CONFLICT);
    // Without idempotency-key, x-request-id is the key (deprecated for it, still honoured).
    *lease_token.lock().unwrap() = Some(first_token);
    let old = allocate(None, "legacy-1", 6).await.unwrap();
    assert_eq!(old.status(), StatusCode::OK, "replaces the allocation");
    let reused = allocate(None, "legacy-1", 8).await.unwrap();
    assert_eq!(
        reused.status(),
        StatusCode::CONFLICT,
        "legacy-1 was the key"
    );
    let body: serde_json::Value = reused.json().await.unwrap();
    assert_eq!(body["code"], "REQUEST_ID_REUSED");
    cluster.shutdown().await;
}
