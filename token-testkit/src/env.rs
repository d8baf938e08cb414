use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use token_core::{
    CacheConfig, HashKey, IssueRequest, IssuedToken, KeyId, Keyring, ManagerBuilder, ManualClock,
    Policy, ScopeSet, TokenManager,
};

use crate::{AuditKeySetter, CountingStore, Fixture, RawDump};

/// A manager over a fresh store, with a manual clock, as every case uses it.
pub struct TestEnv {
    /// The manager under test.
    pub manager: TokenManager,
    /// Its clock.
    pub clock: ManualClock,
    /// The store, wrapped to count calls.
    pub store: CountingStore,
    /// The raw contents of the store.
    pub raw: RawDump,
    /// The validation cache the managers run with, if any.
    pub cache: Option<CacheConfig>,
    /// How to key the store's audit chain, if the store can.
    pub audit_keys: Option<AuditKeySetter>,
}

/// The instant every case starts at.
pub(crate) const START: time::OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

/// The hashing key every case starts with.
pub(crate) fn key(id: u32) -> HashKey {
    let mut bytes = [0u8; 32];
    bytes[0] = id as u8;
    bytes[31] = 0x5a;
    HashKey::new(KeyId::new(id), bytes)
}

impl TestEnv {
    /// A manager with the default policy.
    pub async fn new(fixture: &dyn Fixture) -> Self {
        Self::with_policy(fixture, Policy::default()).await
    }

    /// A manager with `policy`.
    pub async fn with_policy(fixture: &dyn Fixture, policy: Policy) -> Self {
        Self::with_options(fixture, |b| b.policy(policy)).await
    }

    /// A manager configured by `configure` (on top of the suite's prefix, clock and key).
    pub async fn with_options(
        fixture: &dyn Fixture,
        configure: impl FnOnce(ManagerBuilder) -> ManagerBuilder,
    ) -> Self {
        let fresh = fixture.new_store().await;
        let cache = fixture.cache();
        let mut store = CountingStore::new(fresh.store);
        if cache.is_some() {
            store = store.without_immediate_lookups();
        }
        let clock = ManualClock::new(START);
        let mut builder = TokenManager::builder(store.clone(), Keyring::new(key(1)))
            .prefix("test")
            .unwrap_or_else(|e| panic!("prefix: {e}"))
            .clock(clock.clone())
            .usage_flush_interval(Duration::from_secs(10));
        if let Some(config) = cache {
            builder = builder.cache(config);
        }
        let manager = configure(builder)
            .build()
            .unwrap_or_else(|e| panic!("manager: {e}"));
        Self {
            manager,
            clock,
            store,
            raw: Arc::clone(&fresh.raw),
            cache,
            audit_keys: fresh.audit_keys.clone(),
        }
    }

    /// Keys the store's audit chain with `keys` from now on; `false` when the store cannot.
    pub fn key_audit(&self, keys: &token_core::AuditKeyring) -> bool {
        match &self.audit_keys {
            Some(set) => {
                set(keys.clone());
                true
            }
            None => false,
        }
    }

    /// A second manager over the same store and clock (another "instance").
    pub fn sibling(
        &self,
        configure: impl FnOnce(ManagerBuilder) -> ManagerBuilder,
    ) -> TokenManager {
        let mut builder = TokenManager::builder(self.store.clone(), Keyring::new(key(1)))
            .prefix("test")
            .unwrap_or_else(|e| panic!("prefix: {e}"))
            .clock(self.clock.clone())
            .usage_flush_interval(Duration::from_secs(10));
        if let Some(config) = self.cache {
            builder = builder.cache(config);
        }
        configure(builder)
            .build()
            .unwrap_or_else(|e| panic!("manager: {e}"))
    }

    /// Issues a token for `subject` with `scopes` (space-separated) and default settings.
    pub async fn issue(&self, subject: &str, scopes: &str) -> IssuedToken {
        self.issue_with(IssueRequest::new(subject, scopes_of(scopes)))
            .await
    }

    /// Issues from a full request, panicking with the error on failure.
    pub async fn issue_with(&self, request: IssueRequest) -> IssuedToken {
        self.manager
            .issue(request)
            .await
            .unwrap_or_else(|e| panic!("issue failed: {e}"))
    }

    /// Advances the clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// Parses space-separated scopes, panicking on error.
pub(crate) fn scopes_of(text: &str) -> ScopeSet {
    ScopeSet::parse(text).unwrap_or_else(|e| panic!("scopes {text:?}: {e}"))
}
