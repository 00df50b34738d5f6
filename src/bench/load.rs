//! The load generator: fixed HTTP/1.1 connections on hyper, closed loop or scheduled.
//!
//! Every connection is opened once (and again only after the server broke it), so the
//! measured latency is a request's, not a connection set-up's. Requests are numbered across
//! connections from one counter, so a workload can give each its own node name, key or
//! request id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

/// Builds request number `seq`, sent on connection `conn`.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// How long a closed loop runs.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Until this much time has passed.
    Time(Duration),
    /// Until this many requests were sent (numbered 0 to n - 1).
    Requests(u64),
}

/// What a load run measured, before it is summarized.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// The latency of each successful request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests.
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// The first failure, for the operator to read.
    pub first_error: Option<String>,
}

impl LoadResult {
    fn merge(&mut self, other: LoadResult) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// No request waits longer than this for its answer: past it, it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(addr: &str) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request on the connection (opening it when needed) and reads the whole answer;
/// an error status is an error with the start of its body.
async fn send_one(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    addr: &str,
    request: Request<Full<Bytes>>,
) -> Result<(), String> {
    let attempt = async {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(connect(addr).await.map_err(|e| format!("{e:#}"))?);
        }
        let sender = conn.as_mut().ok_or("no connection")?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status.is_success() {
            Ok(())
        } else {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(format!("{status}: {text}"))
        }
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            // The connection may be unusable: open a new one next time.
            *conn = None;
            Err(e)
        }
        Err(_) => {
            *conn = None;
            Err(format!("no answer within {REQUEST_TIMEOUT:?}"))
        }
    }
}

fn record(result: &mut LoadResult, outcome: Result<(), String>, latency: Duration) {
    match outcome {
        Ok(()) => result
            .latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)),
        Err(e) => {
            result.errors += 1;
            result.first_error.get_or_insert(e);
        }
    }
}

/// Runs `connections` closed loops against `addr` (host:port) within `budget`.
pub async fn closed_loop(
    addr: &str,
    connections: usize,
    budget: Budget,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    // Open every connection first: a server that cannot be reached fails the run at once.
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(connect(addr).await?);
    }
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for (conn_index, sender) in opened.into_iter().enumerate() {
        let (addr, make, next) = (addr.to_string(), make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Some(sender);
            let mut result = LoadResult::default();
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let done = match budget {
                    Budget::Time(d) => started.elapsed() >= d,
                    Budget::Requests(n) => seq >= n,
                };
                if done {
                    break;
                }
                let request = make(conn_index, seq);
                let sent = Instant::now();
                let outcome = send_one(&mut conn, &addr, request).await;
                record(&mut result, outcome, sent.elapsed());
            }
            result
        }));
    }
    let mut total = LoadResult::default();
    for task in tasks {
        total.merge(task.await.context("a load connection panicked")?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Sends request `i` of `schedule` at offset `schedule[i].0` from the start, for item
/// `schedule[i].1`, over `connections` connections; a request's latency counts from when it
/// was due, so the time it queued behind slower ones counts too.
pub async fn scheduled(
    addr: &str,
    connections: usize,
    schedule: Vec<(Duration, u64)>,
    make: MakeRequest,
) -> anyhow::Result<LoadResult> {
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections {
        opened.push(connect(addr).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, u64)>();
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for (conn_index, sender) in opened.into_iter().enumerate() {
        let (addr, make, rx) = (addr.to_string(), make.clone(), rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Some(sender);
            let mut result = LoadResult::default();
            loop {
                let Some((due, item)) = rx.lock().await.recv().await else {
                    break;
                };
                let request = make(conn_index, item);
                let outcome = send_one(&mut conn, &addr, request).await;
                record(&mut result, outcome, due.elapsed());
            }
            result
        }));
    }
    for (offset, item) in schedule {
        let due = started + offset;
        tokio::time::sleep_until(due.into()).await;
        if tx.send((due, item)).is_err() {
            break;
        }
    }
    drop(tx);
    let mut total = LoadResult::default();
    for task in tasks {
        total.merge(task.await.context("a load connection panicked")?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One request on a fresh connection, with its answer's status, headers and body (for the
/// bench's own questions to a cluster: who leads, is it up). Bounded by `timeout`.
pub async fn exchange(
    addr: &str,
    request: Request<Full<Bytes>>,
    timeout: Duration,
) -> anyhow::Result<(hyper::StatusCode, hyper::HeaderMap, Bytes)> {
    let attempt = async {
        let mut sender = connect(addr).await?;
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        anyhow::Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .with_context(|| format!("{addr} did not answer within {timeout:?}"))?
}

/// One kept-alive connection to `addr`, opened on first use and again after a failure: for
/// request loops that are not a load run (the failover writers).
pub struct Connection {
    addr: String,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `addr` (host:port), not opened yet.
    pub fn new(addr: &str) -> Connection {
        Connection {
            addr: addr.to_string(),
            conn: None,
        }
    }

    /// host:port it connects to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and reads its answer within `timeout`; an error status is an error.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(), String> {
        match tokio::time::timeout(timeout, send_one(&mut self.conn, &self.addr, request)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.conn = None;
                Err(format!("{}: no answer within {timeout:?}", self.addr))
            }
        }
    }
}
