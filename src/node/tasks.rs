//! [`TaskGuard`]: a spawned background task owned by whoever holds the guard. Dropping the
//! guard (with the node that owns it) aborts the task, so no ticker or read round outlives
//! the node it serves, in a test that drops a node as much as in a server that shuts down.

use tokio::task::JoinHandle;

/// Owns a spawned task and aborts it when dropped.
#[derive(Debug)]
pub struct TaskGuard {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl TaskGuard {
    /// Spawns `task` on the current runtime, owned by the returned guard.
    pub fn spawn(
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        TaskGuard {
            name,
            handle: tokio::spawn(task),
        }
    }

    /// Aborts the task now.
    pub fn stop(&self) {
        if !self.handle.is_finished() {
            tracing::debug!(task = self.name, "stopping background task");
        }
        self.handle.abort();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    /// A task that counts forever stops counting once its guard is dropped.
    #[tokio::test]
    async fn dropping_the_guard_stops_the_task() {
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        let guard = TaskGuard::spawn("counter", async move {
            loop {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(count.load(Ordering::SeqCst) > 0);
        drop(guard);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let after_drop = count.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(count.load(Ordering::SeqCst), after_drop);
    }

    #[tokio::test]
    async fn stop_aborts_and_reports_finished() {
        let guard = TaskGuard::spawn("sleeper", async {
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        assert!(!guard.is_finished());
        guard.stop();
        tokio::time::timeout(Duration::from_secs(1), async {
            while !guard.is_finished() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the task ends after stop");
    }
}
