//! A fake license server on loopback, the way a crack would put one in front of an
//! application: it relays every call to a real node, but answers checks its own way (no
//! signature, another key's, an altered or a replayed answer), or, emulating, answers
//! allocations and renewals from recorded answers without asking the cluster at all.
//!
//! It drops the `x-licd-leader-*` headers, so a client that knows only the forger keeps
//! talking to it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use licd::api::{CheckBody, ErrorCode};
use licd::signing::{AnswerSigner, Nonce, SignedFields};
use licd_raft::types::MacAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the forger answers a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relays everything: the cluster's own answers.
    Pass,
    /// Relays the check, then turns it `VALID` and drops the signature.
    Unsigned,
    /// Relays the check, turns it `VALID` and signs it with a key of its own.
    OtherKey,
    /// Relays the check and keeps its signature, but turns it `VALID` with an hour of lease.
    Altered,
    /// Answers every check with the last answer it relayed in `Pass` mode.
    Replay,
    /// Asks the cluster nothing: allocations and renewals get the last answers relayed in
    /// `Pass` mode, checks a `VALID` answer made from the last one, unsigned.
    Emulate,
}

#[derive(Default)]
struct Recorded {
    check: Option<Bytes>,
    allocate: Option<Bytes>,
    heartbeat: Option<Bytes>,
}

struct Shared {
    upstream: String,
    mode: Mutex<Mode>,
    recorded: Mutex<Recorded>,
    own_key: AnswerSigner,
    http: reqwest::Client,
}

/// A running forger. Stops when dropped.
pub struct Forger {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Forger {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Forger {
    /// Starts a forger in front of the node at `upstream` (`host:port` or `http://host:port`),
    /// in `Pass` mode.
    pub async fn start(upstream: &str) -> Forger {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            mode: Mutex::new(Mode::Pass),
            recorded: Mutex::new(Recorded::default()),
            own_key: AnswerSigner::new(SigningKey::from_bytes(&rand::random())),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Forger {
            addr,
            shared,
            stop: Some(stop),
        }
    }

    /// Changes how checks (and, emulating, everything) are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// The forger's address as a client endpoint.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mode = *shared.mode.lock().unwrap();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let route = Route::of(&path);
    if mode == Mode::Emulate {
        return emulate(&shared, route, &query);
    }
    if mode == Mode::Replay && route == Route::Check {
        let recorded = shared.recorded.lock().unwrap().check.clone();
        return json(StatusCode::OK, recorded.unwrap_or_default());
    }
    let (status, bytes) = match relay(&shared, request).await {
        Ok(relayed) => relayed,
        Err(e) => return (StatusCode::BAD_GATEWAY, e).into_response(),
    };
    if mode == Mode::Pass && status.is_success() {
        let mut recorded = shared.recorded.lock().unwrap();
        let slot = match route {
            Route::Check => &mut recorded.check,
            Route::Allocate => &mut recorded.allocate,
            Route::Heartbeat => &mut recorded.heartbeat,
            Route::Other => return json(status, bytes),
        };
        *slot = Some(bytes.clone());
    }
    if route != Route::Check || mode == Mode::Pass || !status.is_success() {
        return json(status, bytes);
    }
    let Ok(mut body) = serde_json::from_slice::<CheckBody>(&bytes) else {
        return json(status, bytes);
    };
    make_valid(&mut body);
    match mode {
        Mode::Unsigned => body.signature = None,
        Mode::OtherKey => {
            let (mac, nonce) = asked(&query);
            let fields = SignedFields::of(&body, mac, nonce.as_ref());
            body.signature = Some(shared.own_key.sign(&fields));
        }
        _ => {}
    }
    json(status, serde_json::to_vec(&body).unwrap().into())
}

/// The answers of an emulator: recorded grants and renewals, and a `VALID` check.
fn emulate(shared: &Shared, route: Route, _query: &str) -> Response {
    let recorded = shared.recorded.lock().unwrap();
    let bytes = match route {
        Route::Allocate => recorded.allocate.clone(),
        Route::Heartbeat => recorded.heartbeat.clone(),
        Route::Check => recorded.check.as_ref().and_then(|b| {
            let mut body: CheckBody = serde_json::from_slice(b).ok()?;
            make_valid(&mut body);
            body.signature = None;
            Some(serde_json::to_vec(&body).unwrap().into())
        }),
        Route::Other => None,
    };
    match bytes {
        Some(bytes) => json(StatusCode::OK, bytes),
        None => (StatusCode::NOT_FOUND, "nothing recorded").into_response(),
    }
}

/// Turns a check answer into a generous `VALID` one.
fn make_valid(body: &mut CheckBody) {
    body.check.valid = true;
    body.check.code = ErrorCode::Valid;
    body.check.message = "The server is licensed.".into();
    body.check.lease_remaining_ms = Some(3_600_000);
}

/// The MAC and nonce a check asked with.
fn asked(query: &str) -> (Option<MacAddr>, Option<Nonce>) {
    let mut mac = None;
    let mut nonce = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("mac", v)) => mac = v.parse().ok(),
            Some(("nonce", v)) => nonce = Nonce::parse(v).ok(),
            _ => {}
        }
    }
    (mac, nonce)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Check,
    Allocate,
    Heartbeat,
    Other,
}

impl Route {
    fn of(path: &str) -> Route {
        if !path.starts_with("/v1/nodes/") {
            Route::Other
        } else if path.ends_with("/check") {
            Route::Check
        } else if path.ends_with("/allocation") {
            Route::Allocate
        } else if path.ends_with("/heartbeat") {
            Route::Heartbeat
        } else {
            Route::Other
        }
    }
}

/// Sends the request on to the real node; its status and body.
async fn relay(shared: &Shared, request: Request) -> Result<(StatusCode, Bytes), String> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = shared
        .http
        .request(parts.method, format!("http://{}{path}", shared.upstream))
        .body(body);
    for (name, value) in forwarded_headers(&parts.headers) {
        out = out.header(name, value);
    }
    let response = out.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((status, bytes))
}

/// The headers worth relaying: the request id, the content type, the credentials.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            matches!(
                name.as_str(),
                "x-request-id"
                    | "idempotency-key"
                    | "content-type"
                    | "authorization"
                    | "x-licd-lease-token"
            )
        })
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

fn json(status: StatusCode, bytes: Bytes) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}
