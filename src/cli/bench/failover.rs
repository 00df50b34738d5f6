//! Failover: the leader is killed with SIGKILL again and again under a loop of one-at-a-time
//! writes, and restarted each time once the cluster made progress without it; the gaps
//! between successful writes say how long a caller waited.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::gaps::gaps;
use crate::bench::report::Failover;

/// A cluster whose leader can be found, killed and restarted.
pub(super) trait Killable {
    /// The current leader's member id.
    async fn leader(&mut self) -> anyhow::Result<u64>;
    /// Kills a member with SIGKILL.
    fn kill(&mut self, member: u64) -> anyhow::Result<()>;
    /// Starts a killed member again from its data.
    fn restart(&mut self, member: u64) -> anyhow::Result<()>;
    /// Whether a restarted member is back in the cluster (it knows the leader).
    async fn rejoined(&mut self, member: u64) -> bool;
}

/// How long the cluster gets to make progress again after a kill, or to take a node back.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `write` one at a time while killing the leader of `cluster` `kills` times, with
/// `settle` of undisturbed writes before each kill and after the last.
pub(super) async fn run<C, W, F>(
    system: &str,
    cluster: &mut C,
    kills: u32,
    settle: Duration,
    write: W,
) -> anyhow::Result<Failover>
where
    C: Killable,
    W: Fn() -> F + Send + 'static,
    F: Future<Output = Result<(), String>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut successes = Vec::new();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match write().await {
                    Ok(()) => {
                        successes.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(0));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
            }
            (successes, errors)
        })
    };
    let killing = async {
        for k in 0..kills {
            tokio::time::sleep(settle).await;
            let leader = cluster.leader().await?;
            cluster.kill(leader)?;
            let before = done.load(Ordering::Relaxed);
            let killed_at = Instant::now();
            while done.load(Ordering::Relaxed) <= before + 1 {
                if killed_at.elapsed() > STEP_DEADLINE {
                    bail!(
                        "{system}: no write succeeded within {STEP_DEADLINE:?} of kill {}",
                        k + 1
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cluster.restart(leader)?;
            let restarted = Instant::now();
            while !cluster.rejoined(leader).await {
                if restarted.elapsed() > STEP_DEADLINE {
                    bail!("{system}: member {leader} did not rejoin within {STEP_DEADLINE:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(settle).await;
        anyhow::Ok(())
    };
    let outcome = killing.await;
    stop.store(true, Ordering::Relaxed);
    let (successes, errors) = writer.await.context("the write loop panicked")?;
    outcome?;
    let gaps = gaps(&successes).map_err(|e| anyhow::anyhow!("{system} failover: {e}"))?;
    if let Some(first) = errors.first() {
        eprintln!(
            "licd bench: {system} failover: {} writes failed; the first: {first}",
            errors.len()
        );
    }
    Ok(Failover {
        system: system.to_string(),
        kills,
        errors: errors.len() as u64,
        gaps,
    })
}
