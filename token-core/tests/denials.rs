//! `Denied` events facing the network: what a prober can learn from them (nothing about whether
//! an id exists) and what they cost a validation (no store write on the response path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken, ListQuery,
    MarkExpired, PurgeRequest, RevocationStream, RevokeRequest, RotateOutcome, RotateToken,
    StoreError, TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, AuditSink, HashKey,
    IssueRequest, KeyId, Keyring, PlaintextToken, ScopeSet, TokenId, TokenManager, TokenPrefix,
    TokenRecord, ValidationError,
};
use token_store_memory::MemoryStore;
use tokio::sync::{Notify, watch};

/// Holds `append_audit` calls while closed: each one announces itself on `entered` and waits for
/// the gate to open.
struct Gate {
    open: watch::Sender<bool>,
    entered: Notify,
    /// `append_audit` calls.
    appends: AtomicU64,
}

/// The memory store with a gate in front of `append_audit`.
#[derive(Clone)]
struct Gated {
    inner: MemoryStore,
    gate: Arc<Gate>,
}

impl Gated {
    fn closed() -> Self {
        Self {
            inner: MemoryStore::new(),
            gate: Arc::new(Gate {
                open: watch::channel(false).0,
                entered: Notify::new(),
                appends: AtomicU64::new(0),
            }),
        }
    }

    fn open(&self) {
        self.gate.open.send_replace(true);
    }

    /// Every `Denied` event the memory store behind the gate holds.
    async fn denied(&self) -> Vec<AuditRecord> {
        let query = AuditQuery::new().kind(AuditKind::Denied).limit(1000);
        self.inner.query_audit(&query).await.unwrap()
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl TokenStore for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        self.inner.insert(insert).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.inner.get(id).await
    }
    fn get_now(&self, id: TokenId) -> ImmediateLookup {
        self.inner.get_now(id)
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
        self.gate.appends.fetch_add(1, Ordering::SeqCst);
        let mut open = self.gate.open.subscribe();
        if !*open.borrow_and_update() {
            self.gate.entered.notify_one();
            // The sender lives in `self`: the wait ends only when the test opens the gate.
            let _ = open.wait_for(|open| *open).await;
        }
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
        self.inner.subscribe_revocations().await
    }
}

fn prefix() -> TokenPrefix {
    TokenPrefix::new("acme").unwrap()
}

fn keyring() -> Keyring {
    Keyring::new(HashKey::new(KeyId::new(1), [9; 32]))
}

fn manager(store: impl TokenStore) -> TokenManager {
    TokenManager::builder(store, keyring())
        .prefix("acme")
        .unwrap()
        .build()
        .unwrap()
}

/// The `Denied` events the manager's trail holds.
async fn denied(manager: &TokenManager) -> Vec<AuditRecord> {
    manager
        .query_audit(AuditQuery::new().kind(AuditKind::Denied).limit(1000))
        .await
        .unwrap()
        .items
}

/// Presents one id with two different wrong secrets (an issued id when `issued`, else an
/// invented one) and returns how many `Denied` events were written.
async fn denials_for_one_id_two_secrets(issued: bool) -> usize {
    let manager = manager(MemoryStore::new());
    let id = if issued {
        let scopes = ScopeSet::parse("widgets:read").unwrap();
        let issued = manager.issue(IssueRequest::new("u", scopes)).await.unwrap();
        issued.token.id()
    } else {
        TokenId::generate().unwrap()
    };
    for secret in [[1; 32], [2; 32]] {
        let probe = PlaintextToken::from_parts(&prefix(), id, secret);
        let error = manager
            .validate(probe.expose_secret(), &[])
            .await
            .unwrap_err();
        let expected = if issued {
            ValidationError::WrongSecret
        } else {
            ValidationError::UnknownToken
        };
        assert_eq!(error.reason_code(), expected.reason_code());
    }
    denied(&manager).await.len()
}

#[tokio::test]
async fn one_id_with_two_secrets_writes_as_many_denials_whether_or_not_it_exists() {
    let known = denials_for_one_id_two_secrets(true).await;
    let unknown = denials_for_one_id_two_secrets(false).await;
    assert_eq!(
        known, unknown,
        "durable Denied writes tell whether the id exists: {known} for an issued id, \
         {unknown} for an invented one"
    );
    assert_eq!(known, 1, "coalesced per id within the window");
}

#[tokio::test]
async fn denial_returns_while_its_audit_write_is_blocked() {
    let store = Gated::closed();
    let manager = manager(store.clone());
    let unknown = PlaintextToken::generate(&prefix()).unwrap();
    let validation = manager.validate(unknown.expose_secret(), &[]);
    tokio::pin!(validation);
    tokio::select! {
        biased;
        result = &mut validation => {
            assert!(matches!(result, Err(ValidationError::UnknownToken)), "{result:?}");
        }
        () = store.gate.entered.notified() => {
            panic!("the validation is waiting for its Denied event's store write");
        }
    }
    // The write happens, off the response path: it is parked at the gate, not written yet.
    store.gate.entered.notified().await;
    assert!(store.denied().await.is_empty());
    store.open();
    // Audit reads through the manager see every denial it queued before them.
    let written = denied(&manager).await;
    assert_eq!(written.len(), 1);
    assert_eq!(
        written[0].event.reason.as_deref(),
        Some(ValidationError::UnknownToken.reason_code())
    );
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<AuditEvent>>>);

impl AuditSink for Recorder {
    fn record(&self, event: &AuditEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

async fn refuse_unknown(manager: &TokenManager) {
    let unknown = PlaintextToken::generate(&prefix()).unwrap();
    assert!(matches!(
        manager.validate(unknown.expose_secret(), &[]).await,
        Err(ValidationError::UnknownToken)
    ));
}

#[tokio::test]
async fn a_full_denial_queue_drops_and_counts_and_the_sink_sees_what_was_written() {
    let store = Gated::closed();
    let sink = Recorder::default();
    let manager = TokenManager::builder(store.clone(), keyring())
        .prefix("acme")
        .unwrap()
        .denied_event_interval(Duration::ZERO)
        .denied_event_queue(2)
        .audit_sink(sink.clone())
        .build()
        .unwrap();
    refuse_unknown(&manager).await;
    // The writer took the first event and is parked in its append: the queue is empty.
    store.gate.entered.notified().await;
    for _ in 0..3 {
        refuse_unknown(&manager).await;
    }
    let stats = manager.stats();
    assert_eq!(stats.denied_events_queue_full, 1, "{stats:?}");
    assert_eq!(stats.denied_events_dropped, 0, "{stats:?}");
    store.open();
    manager.flush_denials().await;
    let written = store.denied().await;
    assert_eq!(written.len(), 3);
    // The two events queued behind the parked append went to the store in one call.
    assert_eq!(store.gate.appends.load(Ordering::SeqCst), 2);
    let seen = sink.0.lock().unwrap().clone();
    let stored: Vec<AuditEvent> = written.into_iter().map(|r| r.event).collect();
    assert_eq!(seen, stored);
}

#[test]
fn a_manager_built_outside_a_runtime_writes_denials_on_each_runtime_it_meets_and_drops_cleanly() {
    use futures_util::FutureExt;
    let store = MemoryStore::new();
    let manager = manager(store.clone());
    let stored = || {
        let query = AuditQuery::new().kind(AuditKind::Denied).limit(1000);
        store
            .query_audit(&query)
            .now_or_never()
            .unwrap()
            .unwrap()
            .len()
    };
    // No runtime at all (the memory store answers in one poll): the event is written inline.
    refuse_unknown(&manager).now_or_never().unwrap();
    assert_eq!(stored(), 1);
    for expected in [2, 3] {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            refuse_unknown(&manager).await;
            manager.flush_denials().await;
        });
        assert_eq!(stored(), expected);
        // The writer task goes with its runtime; the next runtime starts another.
        drop(runtime);
    }
    assert_eq!(manager.stats().denied_events_dropped, 0);
    drop(manager);
}

#[test]
fn a_zero_denial_queue_is_refused() {
    let error = TokenManager::builder(MemoryStore::new(), keyring())
        .denied_event_queue(0)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("denied_event_queue"), "{error}");
}

/// The writer task dropped (its runtime shut down) while it waits on an append it started for a
/// flush counts every event it had received as dropped, also those received after that flush.
/// (Before the fix the events after the flush in the same receive were lost uncounted, and the
/// queue's pending count never returned to zero.)
#[test]
fn a_writer_dropped_mid_flush_counts_every_event_it_held() {
    use futures_util::FutureExt;
    let store = Gated::closed();
    let manager = TokenManager::builder(store.clone(), keyring())
        .prefix("acme")
        .unwrap()
        .denied_event_interval(Duration::ZERO)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Queued before the writer task first runs (a current-thread runtime runs it only when
        // this future yields): an event, a flush request, another event.
        refuse_unknown(&manager).await;
        assert!(manager.flush_denials().now_or_never().is_none());
        refuse_unknown(&manager).await;
        // The writer takes all three at once and parks in the append the flush asked for.
        store.gate.entered.notified().await;
    });
    drop(runtime);
    assert_eq!(manager.stats().denied_events_dropped, 2);
    // Nothing is left pending: a flush on a new runtime returns at once.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(
        runtime
            .block_on(async { manager.flush_denials().now_or_never() })
            .is_some()
    );
}
