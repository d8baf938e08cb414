//! Following the store's revocation feed, so the validation cache learns of changes made by
//! other processes (see [`cache`](crate::cache) for the coherence rule).
//!
//! The subscription starts on the first lookup that finds the cache idle, in a task of its own on
//! the Tokio runtime that lookup runs on (the lookup does not wait for it, so a slow listener
//! connection or a cancelled request cannot stall or wedge it); until it is established the cache
//! serves nothing. The follower drops the ids each notice names, flushes everything on
//! [`RevocationNotice::Interrupted`](crate::RevocationNotice::Interrupted), and however it ends
//! (the feed ended, the manager was dropped, its runtime shut down) it flushes the cache and
//! returns it to idle, so a cache is never served without a follower. A failed subscription is
//! retried at most once a second.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::TokenManager;
use crate::cache::{FeedState, RecordCache};
use crate::store::{RevocationNotice, RevocationStream, TokenStore};

/// How long after a failed subscription the next one is tried.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// The cache of a manager and the signal that ends its follower task.
pub(super) struct ValidationCache {
    pub(super) records: Arc<RecordCache>,
    /// Dropped with the manager: the follower task sees the channel close and stops.
    closed: watch::Sender<()>,
    /// When subscribing last failed: retried at most once per [`RESUBSCRIBE_AFTER`], so a
    /// store whose feed is down is not asked on every validation.
    failed_at: Arc<Mutex<Option<Instant>>>,
}

impl ValidationCache {
    pub(super) fn new(records: RecordCache) -> Self {
        Self {
            records: Arc::new(records),
            closed: watch::channel(()).0,
            failed_at: Arc::new(Mutex::new(None)),
        }
    }
}

impl TokenManager {
    /// Starts following the store's feed if nobody is: one caller claims the start and spawns
    /// the subscription; every caller goes on reading the store meanwhile. Without a Tokio
    /// runtime there is nowhere to run the follower: the cache then stays idle.
    pub(super) fn follow_feed(&self, cache: &ValidationCache) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let recently_failed = cache
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < RESUBSCRIBE_AFTER);
        if recently_failed || !cache.records.claim_start() {
            return;
        }
        let store = Arc::clone(&self.inner.store);
        let records = Arc::clone(&cache.records);
        let failed_at = Arc::clone(&cache.failed_at);
        let closed = cache.closed.subscribe();
        runtime.spawn(async move {
            // From here on, however this task ends, the cache is flushed and idle again.
            let follower = Follower(records);
            match store.subscribe_revocations().await {
                Ok(Some(stream)) => {
                    follower.0.set_feed_state(FeedState::Following);
                    follower.follow(stream, closed).await;
                }
                // No feed: serve with the maximum age as the only bound (the follower's drop
                // leaves this state alone).
                Ok(None) => follower.0.set_feed_state(FeedState::NoFeed),
                Err(_) => {
                    *failed_at.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Instant::now());
                }
            }
        });
    }
}

/// The follower's hold on the cache: dropping it (the task ended or was dropped with its
/// runtime) flushes the cache and makes it idle, so nothing is served without a feed behind it.
struct Follower(Arc<RecordCache>);

impl Drop for Follower {
    fn drop(&mut self) {
        if self.0.feed_state() != FeedState::NoFeed {
            self.0.set_feed_state(FeedState::Idle);
            self.0.flush();
        }
    }
}

impl Follower {
    async fn follow(&self, mut stream: RevocationStream, mut closed: watch::Receiver<()>) {
        loop {
            tokio::select! {
                _ = closed.changed() => return,
                notice = stream.next() => match notice {
                    Some(RevocationNotice::Revoked(ids) | RevocationNotice::Changed(ids)) => {
                        self.0.invalidate(ids);
                    }
                    Some(_) => self.0.flush(),
                    None => return,
                },
            }
        }
    }
}
