//! Following the store's revocation feed, so the validation cache learns of changes made by
//! other processes (see [`cache`](crate::cache) for the coherence rule).
//!
//! The subscription starts lazily, on the first lookup that finds the cache idle, on the Tokio
//! runtime that lookup runs on; until it is established the cache serves nothing. A follower task
//! drops the ids each notice names, flushes everything on
//! [`RevocationNotice::Interrupted`](crate::RevocationNotice::Interrupted), and when the feed ends
//! flushes and returns the cache to idle (the next lookup subscribes again). The task ends when
//! the manager is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures_util::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::TokenManager;
use crate::cache::{FeedState, RecordCache};
use crate::clock::to_unix_micros;
use crate::store::{RevocationNotice, RevocationStream};

/// The cache of a manager and the signal that ends its follower task.
pub(super) struct ValidationCache {
    pub(super) records: Arc<RecordCache>,
    /// Dropped with the manager: the follower task sees the channel close and stops.
    closed: watch::Sender<()>,
    /// When subscribing last failed (Unix microseconds): retried at most once a second, so a
    /// store whose feed is down is not asked on every validation.
    failed_at: AtomicI64,
}

/// How long after a failed subscription the next one is tried.
const RESUBSCRIBE_AFTER_US: i64 = 1_000_000;

impl ValidationCache {
    pub(super) fn new(records: RecordCache) -> Self {
        Self {
            records: Arc::new(records),
            closed: watch::channel(()).0,
            failed_at: AtomicI64::new(i64::MIN),
        }
    }
}

impl TokenManager {
    /// Starts following the store's feed if nobody is (one caller sets it up; the others go on
    /// reading the store meanwhile). Without a Tokio runtime there is nowhere to run the
    /// follower: the cache then stays idle and every lookup reads the store.
    pub(super) async fn follow_feed(&self, cache: &ValidationCache, now: OffsetDateTime) {
        let now_us = to_unix_micros(now);
        let recently_failed =
            now_us.saturating_sub(cache.failed_at.load(Ordering::Relaxed)) < RESUBSCRIBE_AFTER_US;
        if recently_failed
            || tokio::runtime::Handle::try_current().is_err()
            || !cache.records.claim_start()
        {
            return;
        }
        match self.inner.store.subscribe_revocations().await {
            Ok(Some(stream)) => {
                let records = Arc::clone(&cache.records);
                let closed = cache.closed.subscribe();
                // Following before the task runs: notices queue in the stream until it does.
                records.set_feed_state(FeedState::Following);
                tokio::spawn(follow(stream, records, closed));
            }
            Ok(None) => cache.records.set_feed_state(FeedState::NoFeed),
            Err(_) => {
                cache.failed_at.store(now_us, Ordering::Relaxed);
                cache.records.set_feed_state(FeedState::Idle);
            }
        }
    }
}

async fn follow(
    mut stream: RevocationStream,
    records: Arc<RecordCache>,
    mut closed: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = closed.changed() => return,
            notice = stream.next() => match notice {
                Some(RevocationNotice::Revoked(ids) | RevocationNotice::Changed(ids)) => {
                    records.invalidate(ids);
                }
                Some(_) => records.flush(),
                None => {
                    records.set_feed_state(FeedState::Idle);
                    records.flush();
                    return;
                }
            },
        }
    }
}
