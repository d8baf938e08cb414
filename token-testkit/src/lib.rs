//! # token-testkit
//!
//! The conformance suite every [`TokenStore`] runs. Each behaviour is one `pub async fn` in
//! [`cases`] (one file per topic, each carrying its list of cases), taking a [`Fixture`] that
//! makes fresh, isolated stores; the [`conformance_tests!`] macro joins the topic lists into one
//! named `#[tokio::test]` per case, so a store crate runs the whole suite with one line and a
//! failure names the behaviour:
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! token_testkit::conformance_tests!(my_store_tests::Fixture::new());
//! ```
//!
//! The store crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//!
//! **Stability**: like object_store's `integration` module, this crate is exempt from semver: cases
//! are added as the contract grows, and a new case failing on your store is the point.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken, ListQuery,
    MarkExpired, RevocationStream, RevokeRequest, RotateOutcome, RotateToken, StoreError,
    SuspendRequest, TokenStore, TruncateAudit, UpdateOutcome, UpdateToken, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKeyring, AuditQuery, AuditRecord, CacheConfig, PurgeRequest,
    TokenId, TokenRecord,
};
use tokio::sync::Notify;

pub mod cases;
mod env;
pub mod model;
pub mod tamper;

pub use env::TestEnv;

/// Renders everything a store persisted as bytes, for the "no secret stored" check.
pub type RawDump =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync + 'static>;

/// Configures a store's audit keys (e.g. `move |keys| { store.clone().with_audit_keys(keys); }`):
/// every event appended afterwards is chained with the current key.
pub type AuditKeySetter = Arc<dyn Fn(AuditKeyring) + Send + Sync + 'static>;

/// A fresh, empty store plus a way to read its raw persisted bytes.
pub struct TestStore {
    /// The store under test.
    pub store: Arc<dyn TokenStore>,
    /// Its raw contents (database file, table dump, ...).
    pub raw: RawDump,
    /// How to key its audit chain; `None` for a store without keyed chains (the keyed-chain
    /// cases are then skipped).
    pub audit_keys: Option<AuditKeySetter>,
}

/// Prints `skipped <test>: <reason>` on the process's standard error *past the test harness's
/// output capture* (which only catches `print!`/`eprint!`), so a plain `cargo test` on a machine
/// without the backend shows, one line per test, what did not run.
///
/// ```
/// token_testkit::report_skip("postgres_round_trip", "TOKEN_TEST_POSTGRES_URL is not set");
/// ```
pub fn report_skip(test: &str, reason: &str) {
    use std::io::Write as _;
    // Written straight to the stream, not through `eprintln!`: captured output of a passing
    // test is discarded.
    let _ = writeln!(std::io::stderr().lock(), "skipped {test}: {reason}");
}

/// Makes isolated stores for the suite (a new file, schema or instance per call), so cases can run
/// in parallel.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// `Err(reason)` when the backend is not available here (the case prints one line and is
    /// skipped); `Ok(())` otherwise.
    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    /// Whether the store's revocation feed may legitimately report `Interrupted` during a test
    /// (a network listener can reconnect; an in-process feed never loses notices).
    fn feed_may_interrupt(&self) -> bool {
        false
    }

    /// A fresh, empty, migrated store.
    async fn new_store(&self) -> TestStore;

    /// The validation cache the suite's managers run with (`None`: uncached). See [`Cached`].
    fn cache(&self) -> Option<CacheConfig> {
        None
    }
}

/// Runs a fixture's stores behind the validation cache: every case then also proves that the
/// cache changes no behaviour. A store that answers lookups from memory (the memory store) is
/// made to look like one that does I/O, so the cache is really in the way.
///
/// ```ignore
/// // tests/conformance.rs of a store crate: the suite, then the suite behind the cache.
/// token_testkit::conformance_tests!(MyFixture);
/// mod cached {
///     token_testkit::conformance_tests!(token_testkit::Cached::new(super::MyFixture));
/// }
/// ```
pub struct Cached<F> {
    inner: F,
    config: CacheConfig,
}

impl<F: Fixture> Cached<F> {
    /// `inner`'s stores behind a cache with the default settings.
    pub fn new(inner: F) -> Self {
        Self::with_config(inner, CacheConfig::default())
    }

    /// `inner`'s stores behind a cache configured by `config`.
    pub fn with_config(inner: F, config: CacheConfig) -> Self {
        Self { inner, config }
    }
}

#[async_trait]
impl<F: Fixture> Fixture for Cached<F> {
    fn available(&self) -> Result<(), String> {
        self.inner.available()
    }
    fn feed_may_interrupt(&self) -> bool {
        self.inner.feed_may_interrupt()
    }
    async fn new_store(&self) -> TestStore {
        self.inner.new_store().await
    }
    fn cache(&self) -> Option<CacheConfig> {
        Some(self.config)
    }
}

/// Expands to one `#[tokio::test]` per conformance case, each running against a fresh store from
/// the given [`Fixture`] expression.
///
/// The cases are listed once, by topic, in their files under [`cases`]; this macro joins the
/// topic lists (`@topics`) and makes the tests (`@cases`).
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@topics $fixture;
            __conformance_validate,
            __conformance_usage,
            __conformance_revoke,
            __conformance_derive,
            __conformance_rotate,
            __conformance_policy,
            __conformance_keys,
            __conformance_list,
            __conformance_storage,
            __conformance_audit,
            __conformance_keyed_chain,
            __conformance_feed,
            __conformance_sweep,
            __conformance_concurrency,
            __conformance_races,
            __conformance_manage,
            __conformance_binding,
            __conformance_credits,
            __conformance_interleaving,
            __conformance_model,
        );
    };
    (@topics $fixture:expr; $($topic:ident),* $(,)?) => {
        $(
            $crate::$topic!([$crate::conformance_tests] @cases $fixture;);
        )*
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let fixture = $fixture;
                if let ::std::result::Result::Err(reason) = $crate::Fixture::available(&fixture) {
                    $crate::report_skip(stringify!($case), &reason);
                    return;
                }
                $crate::cases::$case(&fixture).await;
            }
        )*
    };
}

/// Wraps a store and counts calls that reach it, to prove that garbage is rejected before any
/// store access. It can also park the next write ([`park_next_write`](Self::park_next_write)),
/// to put a change in flight while another one commits.
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn TokenStore>,
    calls: Arc<AtomicU64>,
    answers_now: bool,
    gate: Arc<WriteGate>,
    audit_rewrite: Arc<Mutex<Option<AuditRewrite>>>,
    checkpoint_rewrite: Arc<Mutex<Option<CheckpointRewrite>>>,
}

/// Edits every page of audit records read through a [`CountingStore`], as a writer with raw
/// access to the audit table would have edited the rows.
pub type AuditRewrite = Arc<dyn Fn(&mut Vec<AuditRecord>) + Send + Sync + 'static>;

/// Edits the retention checkpoint read through a [`CountingStore`], as a writer with raw access
/// to the checkpoint table would have written the row (`None`: no row).
pub type CheckpointRewrite = Arc<dyn Fn(&mut Option<AuditCheckpoint>) + Send + Sync + 'static>;

/// Holds back one `insert` or `rotate`: it announces itself and waits to be released.
#[derive(Default)]
struct WriteGate {
    armed: AtomicBool,
    arrived: Notify,
    released: Notify,
}

impl WriteGate {
    /// Parks the caller if the gate is armed (disarming it), until released.
    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.released.notified().await;
        }
    }
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TokenStore>) -> Self {
        Self {
            inner,
            calls: Arc::new(AtomicU64::new(0)),
            answers_now: true,
            gate: Arc::default(),
            audit_rewrite: Arc::default(),
            checkpoint_rewrite: Arc::default(),
        }
    }

    /// From now on, every page of [`TokenStore::query_audit`] is passed through `rewrite` before
    /// it is returned (clones share it): what a reader sees after someone rewrote the stored
    /// audit rows behind the store's back, on every store alike.
    pub fn rewrite_audit(&self, rewrite: impl Fn(&mut Vec<AuditRecord>) + Send + Sync + 'static) {
        *self
            .audit_rewrite
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(rewrite));
    }

    /// From now on, the checkpoint [`TokenStore::audit_checkpoint`] returns is passed through
    /// `rewrite` (clones share it): what a reader sees after someone rewrote the stored
    /// checkpoint row behind the store's back, on every store alike.
    pub fn rewrite_checkpoint(
        &self,
        rewrite: impl Fn(&mut Option<AuditCheckpoint>) + Send + Sync + 'static,
    ) {
        *self
            .checkpoint_rewrite
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(rewrite));
    }

    /// Parks the next `insert` or `rotate` before it reaches the store: it waits in
    /// [`parked_write`](Self::parked_write)'s sense until [`release_write`](Self::release_write).
    pub fn park_next_write(&self) {
        self.gate.armed.store(true, Ordering::SeqCst);
    }

    /// Resolves once the parked write has arrived (and is waiting).
    pub async fn parked_write(&self) {
        self.gate.arrived.notified().await;
    }

    /// Lets the parked write go on to the store.
    pub fn release_write(&self) {
        self.gate.released.notify_one();
    }

    /// Never answers [`TokenStore::get_now`], like a store that does I/O (so a validation cache
    /// in front of an in-memory store is exercised).
    pub fn without_immediate_lookups(mut self) -> Self {
        self.answers_now = false;
        self
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn tick(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl TokenStore for CountingStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        self.tick();
        self.gate.pass().await;
        self.inner.insert(insert).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.tick();
        self.inner.get(id).await
    }
    fn get_now(&self, id: TokenId) -> ImmediateLookup {
        if !self.answers_now {
            return ImmediateLookup::MustWait;
        }
        self.tick();
        self.inner.get_now(id)
    }
    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        self.tick();
        self.gate.pass().await;
        self.inner.rotate(rotation).await
    }
    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.tick();
        self.inner.revoke(request).await
    }
    async fn suspend(&self, request: &SuspendRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.tick();
        self.inner.suspend(request).await
    }
    async fn update(&self, request: &UpdateToken) -> Result<UpdateOutcome, StoreError> {
        self.tick();
        self.gate.pass().await;
        self.inner.update(request).await
    }
    async fn claim_proof(
        &self,
        claim: &token_core::ProofClaim,
    ) -> Result<token_core::ClaimOutcome, StoreError> {
        self.tick();
        self.inner.claim_proof(claim).await
    }
    async fn purge_proof_claims(
        &self,
        before: time::OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.tick();
        self.inner.purge_proof_claims(before, limit).await
    }
    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        self.tick();
        self.inner.consume_use(request).await
    }
    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        self.tick();
        self.inner.record_usage(updates).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        self.tick();
        self.inner.list(query).await
    }
    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        self.tick();
        self.inner.count_live_with_key(query).await
    }
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.tick();
        self.inner.append_audit(events).await
    }
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        self.tick();
        let mut records = self.inner.query_audit(query).await?;
        let rewrite = self
            .audit_rewrite
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(rewrite) = rewrite {
            rewrite(&mut records);
        }
        Ok(records)
    }
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.tick();
        let mut checkpoint = self.inner.audit_checkpoint().await?;
        let rewrite = self
            .checkpoint_rewrite
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(rewrite) = rewrite {
            rewrite(&mut checkpoint);
        }
        Ok(checkpoint)
    }
    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        self.tick();
        self.inner.truncate_audit(request).await
    }
    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        self.tick();
        self.inner.mark_expired(request).await
    }
    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.tick();
        self.inner.purge(request).await
    }
    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        self.tick();
        self.inner.subscribe_revocations().await
    }
}
