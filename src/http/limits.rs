//! Abuse limits of the HTTP API, each answered with a JSON error, none with a queue that
//! grows without bound:
//!
//! - a whole-request time limit per route family ([`V1_TIMEOUT`], [`ADMIN_TIMEOUT`]), past
//!   the node's own deadlines so that it cuts only a request that is stuck (a body that
//!   trickles in, a leader that does not answer): 503 `TIMEOUT`;
//! - a limit on the requests of `/v1` and `/admin` served at once (`limits.max_in_flight`):
//!   over it, 503 `OVERLOADED` at once rather than a wait;
//! - a per-token rate of log writes ([`WriteLimiter`], `limits.writes_per_second` and
//!   `limits.write_burst`): 429 `RATE_LIMITED` with `Retry-After`.
//!
//! The write rate protects the exactly-once table (licd-raft `dedup`): it forgets the oldest
//! request ids beyond 100 000, so a caller writing fast enough could push another caller's
//! id out while that caller still retries, and its retry would be applied twice. Clients
//! retry for at most 15 minutes (the library for 15 s); at the default 50 writes/s and a
//! burst of 100 one token writes at most 45 100 ids in 15 minutes, less than half the table,
//! so not even two tokens at full rate can evict an id inside that window.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use super::error::ApiError;
use crate::config::LimitsConfig;

/// The longest a `/v1` request may take: a write's or a read's node deadline (5 s) with
/// room for a forwarded hop.
pub const V1_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an `/admin` request may take: a membership change's node deadline (60 s)
/// and a follower's forwarding timeout (65 s), with room.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(70);
/// The longest `/metrics` may take.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers 503 `TIMEOUT` when the rest of the stack takes longer than `limit`.
pub async fn deadline(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::RequestTimeout(limit).into_response(),
    }
}

/// Middleware: serves the request within [`deadline`]'s `limit` if fewer than
/// `limits.max_in_flight` are being served, else answers 503 `OVERLOADED` at once.
pub async fn bounded(
    limit: Duration,
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match app.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => deadline(limit, request, next).await,
        Err(_) => ApiError::Overloaded.into_response(),
    }
}

/// The semaphore of [`bounded`].
pub fn in_flight_permits(limits: &LimitsConfig) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(limits.max_in_flight))
}

/// A token bucket per caller name. The names are the configured tokens' (and `anonymous`),
/// so the map holds at most one bucket per configured token.
#[derive(Debug)]
pub struct WriteLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl WriteLimiter {
    /// A limiter of `limits.writes_per_second`, `limits.write_burst`.
    pub fn new(limits: &LimitsConfig) -> Self {
        WriteLimiter {
            per_second: f64::from(limits.writes_per_second.max(1)),
            burst: f64::from(limits.write_burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one write of `who` now; `Err` with the wait until one is allowed.
    pub fn take(&self, who: &Arc<str>) -> Result<(), Duration> {
        self.take_at(who, Instant::now())
    }

    fn take_at(&self, who: &Arc<str>, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(who.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let earned = now.saturating_duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate() {
        let limiter = WriteLimiter::new(&LimitsConfig {
            max_in_flight: 1,
            writes_per_second: 10,
            write_burst: 3,
        });
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take_at(&a, t0).is_ok());
        }
        let wait = limiter.take_at(&a, t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(limiter.take_at(&b, t0).is_ok(), "buckets are per caller");
        assert!(limiter.take_at(&a, t0 + Duration::from_millis(100)).is_ok());
        assert!(
            limiter
                .take_at(&a, t0 + Duration::from_millis(100))
                .is_err()
        );
    }

    /// The default sizing of the module documentation.
    #[test]
    fn the_default_rate_cannot_evict_the_exactly_once_table_within_the_retry_window() {
        use licd_raft::dedup::{DEDUP_CAPACITY, DEDUP_WINDOW_MS};
        let d = LimitsConfig::default();
        let window_s = DEDUP_WINDOW_MS / 1_000;
        let in_window = u64::from(d.writes_per_second) * window_s + u64::from(d.write_burst);
        assert_eq!(in_window, 45_100);
        assert!(2 * in_window < DEDUP_CAPACITY as u64);
    }
}
