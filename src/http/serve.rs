//! The accept loop: hyper HTTP/1 connections, plain or TLS, with the limits a server exposed
//! to any caller needs.
//!
//! What it guarantees ([`ServerLimits`], each with its default):
//! - a connection that has not sent a whole request head within `header_read_timeout_ms`
//!   (10 s) is closed, whether it sent nothing (after TLS: nothing after its handshake) or
//!   trickles a partial head; the same timer runs while a kept-alive HTTP/1 connection waits
//!   for its next request, so it is also the idle limit of a kept-alive connection;
//! - a TLS handshake not done within `tls_handshake_timeout_ms` (10 s) is abandoned;
//! - at most `max_connections` (1024) connections are open at once. When all are taken the
//!   loop stops accepting: new connections wait in the kernel's listen backlog (their
//!   connect succeeds) and are served, in order, as soon as a connection closes. None is
//!   refused, and a slot held by a silent caller frees within the header timeout;
//! - a request head larger than `max_header_bytes` (64 KiB), or with more than 100 header
//!   lines, is answered 431 and the connection closed;
//! - on shutdown the loop stops accepting, connections that are idle are closed, and
//!   in-flight requests run to their end before [`serve`] returns.
//!
//! What it leaves out: hyper writes its own rejections of malformed requests (400, 431, ...)
//! with an empty body, and hyper 1 has no hook to give them one: those are the only answers
//! of a node without a JSON `{code, message}` body. Only HTTP/1.1 is served (licd's clients
//! speak nothing else), so there are no HTTP/2 streams to bound. A request body that
//! trickles in is bounded by the routes' body limits, not by a timer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The `[server]` section of a node's configuration: the HTTP server's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerLimits {
    /// A connection must send a whole request head within this long (also the idle limit
    /// of a kept-alive connection), in milliseconds.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub header_read_timeout_ms: u64,
    /// A TLS handshake must complete within this long, in milliseconds.
    #[serde(deserialize_with = "crate::config::duration::millis")]
    pub tls_handshake_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; at least 8192.
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout_ms: 10_000,
            tls_handshake_timeout_ms: 10_000,
            max_connections: 1024,
            max_header_bytes: 64 << 10,
        }
    }
}

/// Most header lines in one request.
pub const MAX_HEADERS: usize = 100;

impl ServerLimits {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout_ms == 0
            || self.tls_handshake_timeout_ms == 0
            || self.max_connections == 0
        {
            return Err("server.header_read_timeout_ms, server.tls_handshake_timeout_ms and server.max_connections must be positive".into());
        }
        if self.max_header_bytes < 8192 {
            return Err("server.max_header_bytes must be at least 8192".into());
        }
        Ok(())
    }
}

/// How [`serve`] runs: its limits, and TLS when given.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// The limits.
    pub limits: ServerLimits,
    /// The rustls server configuration; plain HTTP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServerOptions {
    /// The options of a node's configuration: its `[server]` limits and its `[tls]`
    /// certificate (loaded now, so a bad file stops the node before it serves).
    pub fn for_node(config: &crate::config::NodeConfig) -> Result<Self, crate::tls::TlsError> {
        let tls = config
            .tls
            .as_ref()
            .map(crate::tls::server_config)
            .transpose()?;
        Ok(ServerOptions {
            limits: config.server.clone(),
            tls,
        })
    }
}

/// Serves `router` on `listener` with `options` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
        .max_header_size(limits.max_header_bytes.max(8192));
    let http = Arc::new(http);
    let acceptor = options.tls.map(TlsAcceptor::from);
    let handshake_timeout = Duration::from_millis(limits.tls_handshake_timeout_ms);
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Wait for a free slot first: while none is free, nothing is accepted.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            http: http.clone(),
            router: router.clone(),
            watcher: graceful.watcher(),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => connection.run(stream, header_timeout).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection.run(tls, header_timeout).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One accepted connection, before its protocol starts.
struct Connection {
    http: Arc<http1::Builder>,
    router: Router,
    watcher: Watcher,
}

impl Connection {
    async fn run<S>(self, stream: S, first_byte_within: Duration)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router);
        let stream = FirstByteDeadline::new(stream, first_byte_within);
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        // Errors here are the caller's: a reset, a header timeout, a malformed request.
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// An accept that failed: a connection reset before it was accepted is nothing; running
/// out of file descriptors is, and the loop pauses before it tries again rather than spin.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing before the next");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A stream whose reads fail once `deadline` passes before its first byte arrived. hyper's
/// header timer closes a connection that stops halfway through a head, and one kept alive
/// and idle, but not one that never sent a byte at all: this closes that one.
struct FirstByteDeadline<S> {
    inner: S,
    /// Until the first byte: when the caller's time is up.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    fn new(inner: S, within: Duration) -> Self {
        FirstByteDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request within the header-read timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
