//! Every bad request gets a 4xx with the JSON error shape `{code, message}`: malformed or
//! out-of-range input, missing or wrong credentials, unknown routes and ids, oversized bodies.

mod common;

use common::{ADMIN_TOKEN, CLUSTER_SECRET, Cluster, license};
use licd::api::{CLUSTER_SECRET_HEADER, ErrorBody, REQUEST_ID_HEADER};
use reqwest::{Method, StatusCode};

struct Probe {
    http: reqwest::Client,
    base: String,
    /// The bearer token every request carries, if any.
    token: Option<&'static str>,
}

impl Probe {
    /// Sends a request and returns the status and the parsed error body; panics unless the
    /// body is the JSON error shape.
    async fn error(
        &self,
        method: Method,
        path: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> (StatusCode, ErrorBody) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = self.token {
            request = request.bearer_auth(token);
        }
        let response = build(request).send().await.expect("send");
        let status = response.status();
        let text = response.text().await.unwrap();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{path}: {status} body is not the error shape ({e}): {text}")
        });
        assert!(!body.message.is_empty());
        (status, body)
    }
}

impl Probe {
    /// Sends a JSON body of about `len` bytes over a raw connection and reads the answer.
    /// The server may answer before it has read the whole body and close the connection, so
    /// a failed write is expected here; an HTTP client library would report it instead of
    /// the answer.
    async fn oversized(&self, path: &str, len: usize) -> (StatusCode, ErrorBody) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let body = format!("{{\"mac\":\"{}\"}}", "x".repeat(len));
        let auth = self
            .token
            .map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
        let head = format!(
            "PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             {auth}content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut answer),
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let json = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(json).unwrap_or_else(|e| {
            panic!("{path}: {status} body is not the error shape ({e}): {text}")
        });
        (StatusCode::from_u16(status).unwrap(), body)
    }
}

fn json(body: &'static str) -> impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    move |r| r.header("content-type", "application/json").body(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_4xx_with_a_json_error() {
    let cluster = Cluster::start(1).await;
    cluster.install(&license("lic", 16)).await;
    // The admin token may use every route: what is refused here is the input.
    let probe = Probe {
        http: reqwest::Client::new(),
        base: format!("http://{}", cluster.addrs[&1]),
        token: Some(ADMIN_TOKEN),
    };
    let alloc = "/v1/nodes/app-1/allocation";
    let cases: Vec<(&str, &str, &'static str, StatusCode)> = vec![
        (
            "malformed JSON",
            alloc,
            "{\"mac\": ",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown field",
            alloc,
            r#"{"mac":"02:00:00:00:00:01","cores":4,"colour":"red"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad MAC",
            alloc,
            r#"{"mac":"02:00:00:00:00","cores":4}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "zero cores",
            alloc,
            r#"{"mac":"02:00:00:00:00:01","cores":0}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "too many cores",
            alloc,
            r#"{"mac":"02:00:00:00:00:01","cores":5000}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "negative cores",
            alloc,
            r#"{"mac":"02:00:00:00:00:01","cores":-1}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "lease too short",
            alloc,
            r#"{"mac":"02:00:00:00:00:01","cores":4,"ttl_ms":10}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing cores",
            alloc,
            r#"{"mac":"02:00:00:00:00:01"}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "bad node id",
            "/v1/nodes/bad%20name/allocation",
            r#"{"mac":"02:00:00:00:00:01","cores":4}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown license",
            alloc,
            r#"{"license":"nope","mac":"02:00:00:00:00:01","cores":4}"#,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (name, path, body, expected) in cases {
        let (status, error) = probe.error(Method::PUT, path, json(body)).await;
        assert_eq!(status, expected, "{name}: {error:?}");
        println!("{name}: {status} {} {}", error.code, error.message);
    }

    let (status, error) = probe.oversized(alloc, 3 << 20).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{error:?}");

    let (status, error) = probe
        .error(Method::PUT, alloc, |r| {
            r.header("content-type", "application/json")
                .header(REQUEST_ID_HEADER, "not a valid id")
                .body(r#"{"mac":"02:00:00:00:00:01","cores":4}"#)
        })
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error:?}");

    let (status, _) = probe
        .error(Method::GET, "/v1/nodes/app-1/check?mac=zz", |r| r)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = probe
        .error(Method::GET, "/v1/nodes/a%2Fb/check", |r| r)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, error) = probe
        .error(Method::POST, "/v1/nodes/never/heartbeat", |r| r)
        .await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::NOT_FOUND, "NOT_ALLOCATED")
    );
    let (status, error) = probe.error(Method::GET, "/v1/licenses/nope", |r| r).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND")
    );
    let (status, error) = probe.error(Method::GET, "/nowhere", |r| r).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::NOT_FOUND, "NOT_FOUND")
    );
    // A known route with a wrong method is a 405 with the JSON error too.
    for (method, path) in [
        (Method::GET, "/v1/nodes/app-1/heartbeat"),
        (Method::POST, "/v1/nodes/app-1/check"),
        (Method::DELETE, "/healthz"),
        (Method::PUT, "/admin/status"),
    ] {
        let (status, error) = probe.error(method.clone(), path, |r| r).await;
        assert_eq!(
            (status, error.code.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            "{method} {path}"
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_raft_routes_need_their_credentials() {
    let cluster = Cluster::start(1).await;
    let probe = Probe {
        http: reqwest::Client::new(),
        base: format!("http://{}", cluster.addrs[&1]),
        token: None,
    };
    let (status, error) = probe.error(Method::GET, "/admin/status", |r| r).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    let (status, error) = probe
        .error(Method::GET, "/admin/status", |r| {
            r.bearer_auth("wrong-token-wrong-token")
        })
        .await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let ok = probe
        .http
        .get(format!("{}/admin/status", probe.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let (status, _) = probe
        .error(Method::POST, "/raft/vote", |r| r.body(vec![0u8; 4]))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = probe
        .error(Method::POST, "/raft/append", |r| {
            r.header(CLUSTER_SECRET_HEADER, "wrong").body(vec![0u8; 4])
        })
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let own = cluster.node(1).cluster_id().expect("a cluster id");
    let (status, error) = probe
        .error(Method::POST, "/raft/vote", |r| {
            r.header(CLUSTER_SECRET_HEADER, CLUSTER_SECRET)
                .header(licd::api::CLUSTER_ID_HEADER, &*own)
                .body(vec![0xffu8; 7])
        })
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error:?}");
    // Another cluster's node, or one that names no cluster: refused before the body is read.
    for id in [
        Some("0123456789abcdef0123456789abcdef"),
        None,
        Some("not-an-id"),
    ] {
        let (status, error) = probe
            .error(Method::POST, "/raft/vote", |r| {
                let r = r.header(CLUSTER_SECRET_HEADER, CLUSTER_SECRET);
                match id {
                    Some(id) => r.header(licd::api::CLUSTER_ID_HEADER, id),
                    None => r,
                }
                .body(vec![0xffu8; 7])
            })
            .await;
        assert_eq!(
            (status, error.code.as_str()),
            (StatusCode::CONFLICT, "CLUSTER_MISMATCH"),
            "{id:?}: {error:?}"
        );
    }

    // License files: malformed, untrusted, and a second init.
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN_TOKEN);
    let (status, error) = probe
        .error(Method::POST, "/admin/licenses", |r| {
            admin(r).body("not a license")
        })
        .await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::BAD_REQUEST, "INVALID_LICENSE_FILE")
    );
    let stranger = licd_raft::license_file::generate_signing_key(&mut rand::rngs::OsRng);
    let untrusted =
        licd_raft::license_file::LicenseFile::issue(&license("lic", 8), &stranger).unwrap();
    let (status, error) = probe
        .error(Method::POST, "/admin/licenses", move |r| {
            admin(r).body(untrusted)
        })
        .await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::BAD_REQUEST, "LICENSE_NOT_TRUSTED")
    );
    let mut expired = license("old", 8);
    expired.expires_at = Some(licd_raft::types::Timestamp(2_000));
    let expired = cluster.license_file(&expired);
    let (status, error) = probe
        .error(Method::POST, "/admin/licenses", move |r| {
            admin(r).body(expired)
        })
        .await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::CONFLICT, "LICENSE_EXPIRED")
    );
    let (status, error) = probe.error(Method::POST, "/admin/init", admin).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::CONFLICT, "ALREADY_INITIALIZED")
    );
    let (status, _) = probe
        .error(Method::PUT, "/admin/voters", |r| {
            admin(r)
                .header("content-type", "application/json")
                .body(r#"{"voters":[]}"#)
        })
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, error) = probe.error(Method::DELETE, "/admin/members/9", admin).await;
    assert_eq!(
        (status, error.code.as_str()),
        (StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND")
    );
    cluster.shutdown().await;
}
