//! [`Sweeper`]: runs [`TokenManager::sweep`] on a tokio interval (feature `sweeper`).
//!
//! ```
//! use std::time::Duration;
//! use token_core::{HashKey, KeyId, Keyring, TokenManager, sweeper::Sweeper};
//! use token_store_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
//!     .build()?;
//! let sweeper = Sweeper::spawn(manager, Duration::from_secs(300));
//! // ... serve ...
//! sweeper.shutdown().await; // finishes a running pass, then stops
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::manager::TokenManager;

/// A background task sweeping on an interval. Stops when dropped, when
/// [`shutdown`](Self::shutdown) is called, or when the future given to
/// [`spawn_until`](Self::spawn_until) completes. A failed pass is logged (`tracing`, target
/// `token_core::sweeper`) and retried at the next tick; it never stops the task.
#[derive(Debug)]
pub struct Sweeper {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    stats: Arc<SweeperCounters>,
}

#[derive(Debug, Default)]
struct SweeperCounters {
    passes: AtomicU64,
    failures: AtomicU64,
}

impl Sweeper {
    /// Sweeps every `interval` (the first pass runs immediately) until stopped. Must be called
    /// inside a tokio runtime.
    pub fn spawn(manager: TokenManager, interval: Duration) -> Self {
        Self::spawn_until(manager, interval, std::future::pending::<()>())
    }

    /// Like [`spawn`](Self::spawn), also stopping when `shutdown` completes (e.g. a signal).
    pub fn spawn_until(
        manager: TokenManager,
        interval: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let stats = Arc::new(SweeperCounters::default());
        let counters = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return,
                    () = &mut shutdown => return,
                }
                match manager.sweep().await {
                    Ok(report) => {
                        counters.passes.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(target: "token_core::sweeper", ?report, "token sweep finished");
                    }
                    Err(crate::Error::SweepIncomplete(report)) => {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        for failure in &report.failures {
                            tracing::warn!(
                                target: "token_core::sweeper",
                                step = %failure.step,
                                error = %failure.error,
                                "token sweep step failed; the other steps ran, retrying at the next tick"
                            );
                        }
                    }
                    Err(error) => {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            target: "token_core::sweeper",
                            %error,
                            "token sweep failed; retrying at the next tick"
                        );
                    }
                }
            }
        });
        Self {
            stop,
            task: Some(task),
            stats,
        }
    }

    /// Completed passes.
    pub fn passes(&self) -> u64 {
        self.stats.passes.load(Ordering::Relaxed)
    }

    /// Failed passes.
    pub fn failures(&self) -> u64 {
        self.stats.failures.load(Ordering::Relaxed)
    }

    /// Stops the task, letting a running pass finish, and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        // The task sees the signal at its next await point and ends after the current pass.
        let _ = self.stop.send(true);
    }
}
