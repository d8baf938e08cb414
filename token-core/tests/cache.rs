//! The validation cache's coherence bounds, on a store the test controls: the memory store made
//! to look remote (no immediate lookups) with a revocation feed the test drives.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken, ListQuery,
    MarkExpired, PurgeRequest, RevocationNotice, RevocationStream, RevokeRequest, RotateOutcome,
    RotateToken, StoreError, TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditQuery, AuditRecord, CacheConfig, Clock, Context, HashKey,
    IssueRequest, KeyId, Keyring, ManualClock, RevokeSelector, Scope, ScopeSet, TokenId,
    TokenManager, TokenRecord,
};
use token_store_memory::MemoryStore;
use tokio::sync::mpsc;

/// The memory store as a remote store: every lookup is a `get`, and the feed is whatever the
/// test sends (nothing at all: a feed that silently lost its notices).
#[derive(Clone)]
struct Remote {
    inner: MemoryStore,
    feed: Arc<Mutex<Option<mpsc::UnboundedReceiver<RevocationNotice>>>>,
    gets: Arc<AtomicU64>,
}

impl Remote {
    fn new() -> (Self, mpsc::UnboundedSender<RevocationNotice>) {
        let (send, receive) = mpsc::unbounded_channel();
        let store = Self {
            inner: MemoryStore::new(),
            feed: Arc::new(Mutex::new(Some(receive))),
            gets: Arc::new(AtomicU64::new(0)),
        };
        (store, send)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl TokenStore for Remote {
    fn name(&self) -> &'static str {
        "remote"
    }
    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        self.inner.insert(insert).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        let record = self.inner.get(id).await;
        // A real store suspends between reading the row and handing it back: a revocation can
        // commit (and invalidate) in between, and the stale answer must then not be cached.
        tokio::task::yield_now().await;
        record
    }
    fn get_now(&self, _: TokenId) -> ImmediateLookup {
        ImmediateLookup::MustWait
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list(query).await
    }
    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        self.inner.count_live_with_key(query).await
    }
    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        self.inner.rotate(rotation).await
    }
    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.revoke(request).await
    }
    async fn suspend(
        &self,
        request: &token_core::SuspendRequest,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.suspend(request).await
    }
    async fn update(
        &self,
        request: &token_core::UpdateToken,
    ) -> Result<token_core::UpdateOutcome, StoreError> {
        self.inner.update(request).await
    }
    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        self.inner.consume_use(request).await
    }
    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        self.inner.record_usage(updates).await
    }
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(events).await
    }
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.query_audit(query).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.inner.audit_checkpoint().await
    }
    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        self.inner.truncate_audit(request).await
    }
    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.mark_expired(request).await
    }
    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.purge(request).await
    }
    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        let receiver = self.feed.lock().unwrap().take();
        Ok(receiver.map(|mut receiver| {
            let stream = futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx));
            Box::pin(stream) as RevocationStream
        }))
    }
}

const MAX_AGE: Duration = Duration::from_secs(1);

/// A fresh remote store, the sender that drives its feed, a manual clock and a cached manager.
fn setup() -> (
    Remote,
    mpsc::UnboundedSender<RevocationNotice>,
    ManualClock,
    TokenManager,
) {
    let (store, feed) = Remote::new();
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = manager(store.clone(), clock.clone());
    (store, feed, clock, manager)
}

/// Another process revokes `id` and its descendants, straight in the store: no manager here
/// hears of it except through the feed the test drives.
async fn revoke_elsewhere(store: &Remote, clock: &ManualClock, id: TokenId) {
    let request = RevokeRequest::new(
        RevokeSelector::Token(id),
        clock.now(),
        "leaked",
        Context::new(),
    );
    store.inner.revoke(&request).await.unwrap();
}

fn manager(store: Remote, clock: ManualClock) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [3; 32])))
        .prefix("acme")
        .unwrap()
        .clock(clock)
        .cache(CacheConfig::new().max_age(MAX_AGE))
        .build()
        .unwrap()
}

fn read() -> Vec<Scope> {
    vec!["widgets:read".parse().unwrap()]
}

async fn issue(manager: &TokenManager) -> (TokenId, String) {
    let issued = manager
        .issue(IssueRequest::new(
            "user:1",
            ScopeSet::parse("widgets").unwrap(),
        ))
        .await
        .unwrap();
    (issued.token.id(), issued.token.expose_secret().to_owned())
}

/// Validates `token` until it is served from the cache (the feed subscription starts in the
/// background on the first lookup), and proves the next validation is a hit too.
async fn cached(manager: &TokenManager, token: &str) {
    for _ in 0..1000 {
        manager.validate(token, &read()).await.unwrap();
        if manager.stats().cache_hits > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let hits = manager.stats().cache_hits;
    manager.validate(token, &read()).await.unwrap();
    assert_eq!(
        manager.stats().cache_hits,
        hits + 1,
        "served from the cache"
    );
}

#[tokio::test]
async fn a_silently_lost_notice_is_bounded_by_max_age() {
    let (store, _feed_never_speaks, clock, here) = setup();
    let (id, token) = issue(&here).await;
    cached(&here, &token).await;
    // Another process revokes (straight in the store); its notice never arrives.
    revoke_elsewhere(&store, &clock, id).await;
    clock.advance(MAX_AGE - Duration::from_millis(1));
    assert!(
        here.validate(&token, &read()).await.is_ok(),
        "within max age the cached copy is the documented worst case"
    );
    clock.advance(Duration::from_millis(1));
    assert!(
        here.validate(&token, &read()).await.is_err(),
        "at max age the cached copy is gone"
    );
}

#[tokio::test]
async fn an_interrupted_feed_flushes_the_cache() {
    let (store, feed, clock, here) = setup();
    let (id, token) = issue(&here).await;
    cached(&here, &token).await;
    revoke_elsewhere(&store, &clock, id).await;
    // The listener reconnected and may have missed that revocation: everything goes.
    feed.send(RevocationNotice::Interrupted).unwrap();
    let flushes = wait_for(|| here.stats().cache_flushes >= 1).await;
    assert!(flushes, "the follower flushed on Interrupted");
    assert!(here.validate(&token, &read()).await.is_err());
}

#[tokio::test]
async fn a_notice_from_another_process_drops_the_entry() {
    let (store, feed, clock, here) = setup();
    let (id, token) = issue(&here).await;
    cached(&here, &token).await;
    revoke_elsewhere(&store, &clock, id).await;
    feed.send(RevocationNotice::Revoked(vec![id])).unwrap();
    assert!(wait_for(|| here.stats().cache_invalidations >= 1).await);
    assert!(here.validate(&token, &read()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_validation_started_after_revoke_returned_is_accepted() {
    let (_store, _feed, _clock, here) = setup();
    let (id, token) = issue(&here).await;
    cached(&here, &token).await;
    let returned = Arc::new(AtomicBool::new(false));
    let late_accepts = Arc::new(AtomicU64::new(0));
    let late_checked = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (here, token) = (here.clone(), token.clone());
        let (returned, late_accepts, late_checked) =
            (returned.clone(), late_accepts.clone(), late_checked.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let started_after = returned.load(Ordering::SeqCst);
                let accepted = here.validate(&token, &read()).await.is_ok();
                if started_after {
                    late_checked.fetch_add(1, Ordering::SeqCst);
                    if accepted {
                        late_accepts.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    tokio::task::yield_now().await;
    here.revoke(RevokeSelector::Token(id), "leaked")
        .await
        .unwrap();
    returned.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        late_checked.load(Ordering::SeqCst) > 0,
        "validations ran after the revoke"
    );
    assert_eq!(late_accepts.load(Ordering::SeqCst), 0);
}

/// Polls `condition` for up to 5 s.
async fn wait_for(condition: impl Fn() -> bool) -> bool {
    for _ in 0..5000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test]
async fn revoking_a_token_already_revoked_elsewhere_drops_the_stale_copy() {
    let (store, _feed_never_speaks, clock, here) = setup();
    let parent = here
        .issue(IssueRequest::new(
            "user:1",
            ScopeSet::parse("widgets").unwrap(),
        ))
        .await
        .unwrap();
    let child = here
        .derive(
            parent.token.id(),
            token_core::DeriveRequest::new(ScopeSet::parse("widgets:read").unwrap()),
        )
        .await
        .unwrap();
    let (parent_token, child_token) = (
        parent.token.expose_secret().to_owned(),
        child.token.expose_secret().to_owned(),
    );
    cached(&here, &parent_token).await;
    cached(&here, &child_token).await;
    // Another process revoked the family; its notice has not arrived.
    revoke_elsewhere(&store, &clock, parent.token.id()).await;
    // Revoking again here changes nothing in the store, but must drop the stale copies.
    let revoked = here
        .revoke(RevokeSelector::Token(parent.token.id()), "leaked")
        .await
        .unwrap();
    assert!(revoked.is_empty(), "already revoked");
    assert!(here.validate(&parent_token, &read()).await.is_err());
    assert!(
        here.validate(&child_token, &read()).await.is_err(),
        "the family goes too"
    );
}

#[tokio::test]
async fn a_bulk_revocation_that_finds_everything_revoked_still_drops_cached_copies() {
    let (store, _feed_never_speaks, clock, here) = setup();
    let (id, token) = issue(&here).await;
    cached(&here, &token).await;
    revoke_elsewhere(&store, &clock, id).await;
    let revoked = here
        .revoke(RevokeSelector::Subject("user:1".into()), "offboarded")
        .await
        .unwrap();
    assert!(revoked.is_empty());
    assert!(here.validate(&token, &read()).await.is_err());
}

#[path = "support/recorder.rs"]
mod recorder;

/// The cache's lookups, invalidations and flushes are counted under the documented names.
#[test]
fn cache_metrics_count_hits_misses_invalidations_and_flushes() {
    let counters = recorder::Counters::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&counters, || {
        runtime.block_on(async {
            let (_store, feed, _clock, here) = setup();
            let (id, token) = issue(&here).await;
            cached(&here, &token).await;
            here.revoke(RevokeSelector::Token(id), "done")
                .await
                .unwrap();
            feed.send(RevocationNotice::Interrupted).unwrap();
            for _ in 0..1000 {
                if here.stats().cache_flushes > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    });
    let seen = counters.snapshot();
    for name in [
        "token_cache_lookups_total{result=hit}",
        "token_cache_lookups_total{result=miss}",
        "token_cache_invalidations_total",
        "token_cache_flushes_total",
    ] {
        assert!(
            seen.get(name).is_some_and(|n| *n > 0),
            "{name} in {seen:#?}"
        );
    }
}
