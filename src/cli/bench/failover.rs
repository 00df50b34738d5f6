//! Failover: the leader is killed with SIGKILL again and again under a loop of one-at-a-time
//! writes, and restarted each time once the cluster made progress without it; the gaps
//! between successful writes say how long a caller waited.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::bench::gaps::gaps;
use crate::bench::report::{Failover, KillTiming};

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
    /// Whether a member other than `killed` names a leader other than `killed`.
    async fn new_leader_known(&mut self, killed: u64) -> bool;
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
    let started = Instant::now();
    let since_start = move || u64::try_from(started.elapsed().as_micros()).unwrap_or(0);
    let writer = {
        let (stop, done) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            let mut successes = Vec::new();
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match write().await {
                    Ok(()) => {
                        successes.push(since_start());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => errors.push(e),
                }
            }
            (successes, errors)
        })
    };
    // Per kill: when it was killed, and when a new leader was first named (both from the start).
    let mut kill_times: Vec<(u64, Option<u64>)> = Vec::new();
    let killing = async {
        for k in 0..kills {
            tokio::time::sleep(settle).await;
            let leader = cluster.leader().await?;
            cluster.kill(leader)?;
            let before = done.load(Ordering::Relaxed);
            let killed_at = Instant::now();
            let killed_us = since_start();
            let mut elected_us = None;
            while elected_us.is_none() && killed_at.elapsed() < STEP_DEADLINE {
                if cluster.new_leader_known(leader).await {
                    elected_us = Some(since_start());
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            kill_times.push((killed_us, elected_us));
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
    let per_kill = kill_times
        .iter()
        .map(|&(killed, elected)| kill_timing(&successes, killed, elected))
        .collect();
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
        per_kill,
    })
}

/// The timing of the kill at `killed` (microseconds from the start, like `successes`), with
/// a new leader first named at `elected`.
fn kill_timing(successes: &[u64], killed: u64, elected: Option<u64>) -> KillTiming {
    let ms = |us: u64| us as f64 / 1000.0;
    let next = successes.iter().find(|&&at| at > killed);
    KillTiming {
        to_leader_ms: elected.map(|at| ms(at.saturating_sub(killed))),
        to_write_ms: next.map(|at| ms(at - killed)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kill_is_timed_to_the_new_leader_and_to_the_next_write() {
        let t = kill_timing(&[1_000, 2_000, 900_000, 901_000], 2_500, Some(600_000));
        assert_eq!(t.to_leader_ms, Some(597.5));
        assert_eq!(t.to_write_ms, Some(897.5));
        let none = kill_timing(&[1_000], 2_500, None);
        assert_eq!((none.to_leader_ms, none.to_write_ms), (None, None));
    }
}
