//! The background `Sweeper` (token-core feature `sweeper`), driven by tokio's paused clock and a
//! manual token clock: no real sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use token_core::store::{
    ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken, ListQuery,
    MarkExpired, PurgeRequest, RevocationStream, RevokeRequest, RotateOutcome, RotateToken,
    StoreError, TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::sweeper::Sweeper;
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, HashKey, IssueRequest, KeyId,
    Keyring, ManualClock, ScopeSet, TokenId, TokenManager, TokenRecord,
};
use token_store_memory::MemoryStore;

/// The memory store, except that `mark_expired` fails while `failures_left > 0`, and
/// `record_usage` while `usage_failures_left > 0`.
struct Flaky {
    inner: MemoryStore,
    failures_left: AtomicU32,
    usage_failures_left: AtomicU32,
    /// Whether `record_usage` fails as a damaged database file does (`Corrupt`, as SQLite
    /// reports one) rather than as an unreachable backend.
    usage_failure_is_corruption: bool,
}

fn injected(counter: &AtomicU32) -> Result<(), StoreError> {
    match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(StoreError::Backend {
            store: "flaky",
            source: "injected failure".into(),
        }),
        Err(_) => Ok(()),
    }
}

fn injected_corruption(counter: &AtomicU32) -> Result<(), StoreError> {
    injected(counter).map_err(|_| StoreError::Corrupt {
        store: "flaky",
        message: "the database file is damaged (injected)".into(),
    })
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl TokenStore for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn insert(&self, i: &InsertToken) -> Result<InsertOutcome, StoreError> {
        self.inner.insert(i).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner.get(id).await
    }
    fn get_now(&self, id: TokenId) -> ImmediateLookup {
        self.inner.get_now(id)
    }
    async fn rotate(&self, r: &RotateToken) -> Result<RotateOutcome, StoreError> {
        self.inner.rotate(r).await
    }
    async fn revoke(&self, r: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.revoke(r).await
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
    async fn consume_use(&self, u: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        self.inner.consume_use(u).await
    }
    async fn record_usage(&self, u: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        if self.usage_failure_is_corruption {
            injected_corruption(&self.usage_failures_left)?;
        } else {
            injected(&self.usage_failures_left)?;
        }
        self.inner.record_usage(u).await
    }
    async fn list(&self, q: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.list(q).await
    }
    async fn count_live_with_key(&self, q: &CountLiveWithKey) -> Result<u64, StoreError> {
        self.inner.count_live_with_key(q).await
    }
    async fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(e).await
    }
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner.query_audit(q).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.inner.audit_checkpoint().await
    }
    async fn truncate_audit(&self, t: &TruncateAudit) -> Result<u64, StoreError> {
        self.inner.truncate_audit(t).await
    }
    async fn mark_expired(&self, m: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        injected(&self.failures_left)?;
        self.inner.mark_expired(m).await
    }
    async fn purge(&self, r: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.purge(r).await
    }
    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        self.inner.subscribe_revocations().await
    }
}

async fn setup(failures: u32) -> (TokenManager, ManualClock, TokenId) {
    setup_failing(failures, 0).await
}

/// A manager over a [`Flaky`] store holding one token, with the clock past its expiry; the
/// token was validated once before, so a use is buffered.
async fn setup_failing(failures: u32, usage_failures: u32) -> (TokenManager, ManualClock, TokenId) {
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let store = Flaky {
        inner: MemoryStore::new(),
        failures_left: AtomicU32::new(failures),
        usage_failures_left: AtomicU32::new(usage_failures),
        usage_failure_is_corruption: false,
    };
    let manager = TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [1; 32])))
        .clock(clock.clone())
        .build()
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new("u", ScopeSet::parse("a").unwrap()).ttl(Duration::from_secs(3600)))
        .await
        .unwrap();
    manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap();
    clock.advance(Duration::from_secs(7200));
    (manager, clock, issued.token.id())
}

/// A failed usage flush (the sweep's first step) no longer stops the others: the expiry is
/// still recorded, the failure is in the report (and the error), and the next pass flushes.
/// Before the fix the sweep returned at the flush and recorded nothing.
#[tokio::test]
async fn a_failed_step_does_not_stop_the_others() {
    let (manager, _clock, id) = setup_failing(0, 1).await;
    let report = match manager.sweep().await {
        Err(token_core::Error::SweepIncomplete(report)) => report,
        other => panic!("expected SweepIncomplete, got {other:?}"),
    };
    assert_eq!(report.expired, 1, "{report:?}");
    let steps: Vec<_> = report.failures.iter().map(|f| f.step).collect();
    // Unused tokens are not revoked on uses that could not be written.
    assert_eq!(
        steps,
        [
            token_core::SweepStep::FlushUsage,
            token_core::SweepStep::RevokeUnused
        ],
        "{report:?}"
    );
    assert!(
        report.failures[0].error.contains("injected failure"),
        "{report:?}"
    );
    assert_eq!(expired_events(&manager, id).await, 1);
    let again = manager.sweep().await.unwrap();
    assert!(again.failures.is_empty());
    assert_eq!(manager.inspect(id).await.unwrap().unwrap().use_count, 1);
}

async fn expired_events(manager: &TokenManager, id: TokenId) -> usize {
    manager
        .audit(id)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.kind == AuditKind::Expired)
        .count()
}

#[tokio::test(start_paused = true)]
async fn sweeper_runs_on_its_interval_and_stops_when_dropped() {
    let (manager, clock, id) = setup(0).await;
    let sweeper = Sweeper::spawn(manager.clone(), Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert_eq!(sweeper.passes(), 3, "passes at 0 s, 60 s and 120 s");
    assert_eq!(
        expired_events(&manager, id).await,
        1,
        "each expiry is recorded once"
    );
    drop(sweeper);
    // A token that expires after the drop is never swept: the task is gone.
    let later = manager
        .issue(IssueRequest::new("u", ScopeSet::parse("a").unwrap()).ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(expired_events(&manager, later.token.id()).await, 0);
    // The same pass run by hand does record it, so the assertion above could fail.
    manager.sweep().await.unwrap();
    assert_eq!(expired_events(&manager, later.token.id()).await, 1);
}

#[tokio::test(start_paused = true)]
async fn failed_passes_are_counted_and_retried() {
    let (manager, _clock, id) = setup(2).await;
    let sweeper = Sweeper::spawn(manager.clone(), Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(sweeper.failures(), 2);
    assert_eq!(sweeper.passes(), 1);
    assert_eq!(expired_events(&manager, id).await, 1);
    sweeper.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_signal_stops_the_sweeper() {
    let (manager, _clock, _id) = setup(0).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let sweeper = Sweeper::spawn_until(manager, Duration::from_secs(10), async {
        let _ = rx.await;
    });
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(sweeper.passes(), 2);
    tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(sweeper.passes(), 2, "no pass after the shutdown signal");
}

/// Dropping the store, a feed subscription, a cached manager and a sweeper after their runtime
/// ended never panics.
#[test]
fn dropping_everything_outside_a_runtime_does_not_panic() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let (feed, manager, sweeper) = runtime.block_on(async {
        let feed = store.subscribe_revocations().await.unwrap();
        let manager = TokenManager::builder(
            store.clone(),
            Keyring::new(HashKey::new(KeyId::new(1), [1; 32])),
        )
        .cache(token_core::CacheConfig::default())
        .build()
        .unwrap();
        let issued = manager
            .issue(IssueRequest::new("u", ScopeSet::parse("a").unwrap()))
            .await
            .unwrap();
        manager
            .validate(issued.token.expose_secret(), &[])
            .await
            .unwrap();
        let sweeper = Sweeper::spawn(manager.clone(), Duration::from_secs(3600));
        (feed, manager, sweeper)
    });
    drop(runtime);
    drop(sweeper);
    drop(feed);
    drop(manager);
    drop(store);
}

/// A usage flush that fails outright with `Corrupt` (a damaged database file) wrote nothing: the
/// sweep must not revoke tokens as unused on the store's stale view, although the error has the
/// same variant as a report of refused rows. (Before the fix the sweep took any `Corrupt` for
/// "refused rows, the rest written" and revoked the token used a minute ago.)
#[tokio::test]
async fn a_corrupt_store_failing_the_flush_revokes_nothing_as_unused() {
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let store = Flaky {
        inner: MemoryStore::new(),
        failures_left: AtomicU32::new(0),
        usage_failures_left: AtomicU32::new(1),
        usage_failure_is_corruption: true,
    };
    let day = Duration::from_secs(86_400);
    let manager = TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [1; 32])))
        .clock(clock.clone())
        .retention(
            token_core::Retention::builder()
                .revoke_unused_after(day)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let issued = manager
        .issue(IssueRequest::new("u", ScopeSet::parse("a").unwrap()).ttl(30 * day))
        .await
        .unwrap();
    clock.advance(2 * day);
    // Used just now: only the buffer knows.
    manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap();
    let report = match manager.sweep().await {
        Err(token_core::Error::SweepIncomplete(report)) => report,
        other => panic!("expected SweepIncomplete, got {other:?}"),
    };
    assert_eq!(report.unused_revoked, 0, "{report:?}");
    let record = manager.inspect(issued.token.id()).await.unwrap().unwrap();
    assert!(record.revocation.is_none(), "revoked as unused: {record:?}");
}
