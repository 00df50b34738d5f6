//! The log of a licd process: text or JSON lines on stderr, colours only for a terminal, and
//! repeated lines held back with a count, so that a fault (one warning per read while a peer
//! is down) cannot bury the lines that matter.
//!
//! **Rate limit.** Each place in the code that logs (a callsite) may write [`PER_WINDOW`]
//! lines at `info` and above in every [`WINDOW`]; further lines from it in that window are
//! counted, not written, and a line at the end of the window says how many were held back
//! and from where. `debug` and `trace` lines, which an operator turns on on purpose, are
//! never held back.
//!
//! The level filter is `LICD_LOG` (or `RUST_LOG`), `info,openraft=warn,sled=warn` by default.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How a log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The window of the rate limit.
pub const WINDOW: Duration = Duration::from_secs(10);
/// How many lines one callsite may write per window.
pub const PER_WINDOW: u32 = 5;

/// One callsite's count in the current window.
#[derive(Debug)]
struct Slot {
    window_start: Instant,
    passed: u32,
    held: u64,
    target: String,
    place: String,
}

/// The rate limit: a per-layer filter, shared with the task that reports what it held back.
#[derive(Debug, Clone, Default)]
pub struct RateLimit {
    slots: Arc<Mutex<HashMap<Identifier, Slot>>>,
}

impl RateLimit {
    /// Whether an event of `meta` at `now` may be written.
    pub fn admit(&self, meta: &Metadata<'_>, now: Instant) -> bool {
        if *meta.level() > Level::INFO {
            return true;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.entry(meta.callsite()).or_insert_with(|| Slot {
            window_start: now,
            passed: 0,
            held: 0,
            target: meta.target().to_string(),
            place: match (meta.file(), meta.line()) {
                (Some(file), Some(line)) => format!("{file}:{line}"),
                _ => meta.name().to_string(),
            },
        });
        if now.duration_since(slot.window_start) >= WINDOW && slot.held == 0 {
            slot.window_start = now;
            slot.passed = 0;
        }
        if slot.passed < PER_WINDOW {
            slot.passed += 1;
            true
        } else {
            slot.held += 1;
            false
        }
    }

    /// The lines held back in windows that ended by `now`, one sentence per callsite, and
    /// starts those callsites' next window.
    pub fn report(&self, now: Instant) -> Vec<String> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut lines = Vec::new();
        for slot in slots.values_mut() {
            if now.duration_since(slot.window_start) < WINDOW {
                continue;
            }
            if slot.held > 0 {
                lines.push(format!(
                    "held back {} more log lines like the last one from {} ({}) in {} s",
                    slot.held,
                    slot.target,
                    slot.place,
                    now.duration_since(slot.window_start).as_secs()
                ));
            }
            slot.window_start = now;
            slot.passed = 0;
            slot.held = 0;
        }
        lines.sort();
        lines
    }
}

impl<S> Filter<S> for RateLimit {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        !meta.is_event() || self.admit(meta, Instant::now())
    }
}

/// Installs the log subscriber of this process (once; later calls do nothing) and starts the
/// thread that reports held-back lines.
pub fn init(format: LogFormat) {
    let filter = std::env::var("LICD_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,openraft=warn,sled=warn".into());
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let limit = RateLimit::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer = match format {
        LogFormat::Text => fmt.with_filter(limit.clone()).boxed(),
        LogFormat::Json => fmt.json().with_filter(limit.clone()).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(layer)
        .try_init()
        .is_ok();
    if installed {
        let _ = std::thread::Builder::new()
            .name("log-rate-limit".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(WINDOW);
                    for line in limit.report(Instant::now()) {
                        tracing::warn!(target: "licd::log", "{line}");
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metadata of a `warn!` at one callsite.
    fn warn_meta() -> &'static Metadata<'static> {
        struct Grab;
        impl tracing::Subscriber for Grab {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                GRABBED.with(|g| g.set(Some(event.metadata())));
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }
        thread_local! {
            static GRABBED: std::cell::Cell<Option<&'static Metadata<'static>>> =
                const { std::cell::Cell::new(None) };
        }
        tracing::subscriber::with_default(Grab, || {
            tracing::warn!("timeout while confirming leadership");
        });
        GRABBED.with(|g| g.get()).expect("the event was seen")
    }

    #[test]
    fn a_callsite_writes_its_budget_then_is_counted_and_reported_once() {
        let limit = RateLimit::default();
        let meta = warn_meta();
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| limit.admit(meta, t0)).count();
        assert_eq!(admitted, PER_WINDOW as usize);
        assert!(limit.report(t0 + Duration::from_secs(1)).is_empty());
        let report = limit.report(t0 + WINDOW);
        assert_eq!(report.len(), 1);
        assert!(
            report[0].starts_with(
                "held back 95 more log lines like the last one from licd::logging::tests"
            ),
            "{report:?}"
        );
        // A new window: the callsite writes again, and nothing is left to report.
        assert!(limit.admit(meta, t0 + WINDOW));
        assert!(limit.report(t0 + WINDOW * 2).is_empty());
    }

    #[test]
    fn a_quiet_callsite_starts_a_new_window_by_itself() {
        let limit = RateLimit::default();
        let meta = warn_meta();
        let t0 = Instant::now();
        for _ in 0..PER_WINDOW {
            assert!(limit.admit(meta, t0));
        }
        assert!(limit.admit(meta, t0 + WINDOW));
    }
}
