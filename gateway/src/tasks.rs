//! A replica's background work, owned in one place: every long-lived task of a replica (sweeps,
//! upkeep, Redis listeners, the location writer) is spawned through [`Tasks`], and the drain
//! stops them and waits for them to end, so nothing of the replica runs, or writes to Redis,
//! after it. Per-connection tasks belong to their listener, which the drain also awaits.

use std::future::Future;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The owner of a replica's background tasks.
#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `work` until it ends by itself or the replica stops it ([`Tasks::stop`]); `name`
    /// says which in the logs.
    pub fn spawn<F>(&self, name: &'static str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => tracing::debug!(task = name, "background task stopped"),
            }
        });
    }

    /// Stops every task and waits until each has ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_ends_every_task_and_waits_for_them() {
        let tasks = Tasks::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        tasks.spawn("forever", async move {
            let _alive = tx;
            std::future::pending::<()>().await
        });
        tasks.spawn("done", async {});
        tasks.stop().await;
        assert_eq!(tasks.running(), 0);
        assert!(rx.recv().await.is_none(), "the forever task was dropped");
    }
}
