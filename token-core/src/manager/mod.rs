//! [`TokenManager`]: the facade host applications use.
//!
//! One file per lifecycle stage, so "where is X?" has one answer:
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | the type, its results ([`IssuedToken`], [`ValidatedToken`], [`TokenPage`]) and accessors |
//! | `builder.rs` | [`ManagerBuilder`]: configuration and its checks |
//! | `issue.rs` | `issue`, `derive` and the policy and limit checks they share |
//! | `validate.rs` | the hot path: `validate`, the lookup (store memory, cache, store), the pure decision `decide`, use accounting |
//! | `feed.rs` | following the store's revocation feed for the validation cache |
//! | `found.rs` | found tokens: batch revocation by possession for third parties, the operator's state check |
//! | `revoke.rs` | `revoke`, revocation by a presented token (RFC 7009), introspection (RFC 7662) |
//! | `rotate.rs` | `rotate` |
//! | `keys.rs` | hash-key rotation and retirement |
//! | `read.rs` | `inspect`, `list`, `audit` |
//! | `audit.rs` | audit queries, export and chain verification |
//! | `spans.rs` | the tracing spans and metrics counters of the operations (names, levels, fields, labels) |
//! | `sweep.rs` | retention sweeps and the stale-token report |
//! | `usage.rs` | flushing coalesced usage |
//! | `events.rs` | denials, best-effort appends, the audit sink |
//! | `denial_queue.rs` | the bounded queue and writer task that take `Denied` events off the response path |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::format::{PlaintextToken, TokenId, TokenPrefix};
use crate::keyring::Keyring;
use crate::policy::Policy;
use crate::record::TokenRecord;
use crate::retention::Retention;
use crate::scope::ScopeSet;
use crate::store::{Cursor, TokenStore};
use crate::trail::{AuditSink, DenialCoalescer, UseAudit};
use crate::usage::UsageBuffer;

mod audit;
mod builder;
mod decide;
mod denial_queue;
mod events;
mod feed;
pub(crate) mod found;
mod issue;
mod keys;
mod manage;
mod proofs;
mod read;
mod revoke;
mod rotate;
mod spans;
mod sweep;
mod usage;
mod validate;

pub use builder::ManagerBuilder;
pub use denial_queue::{DEFAULT_DENIED_EVENT_QUEUE, MAX_DENIED_EVENT_QUEUE};
pub use validate::{AdmissionError, Required};

/// Default usage flush interval `F` (see [`ManagerBuilder::usage_flush_interval`]).
pub const DEFAULT_USAGE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// Default page size of [`TokenManager::list`]; the maximum is [`MAX_PAGE_SIZE`].
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page [`TokenManager::list`] returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Issues, validates, derives, rotates and revokes tokens over a [`TokenStore`].
///
/// Cheap to clone (an `Arc` inside); share one per application.
///
/// ```
/// use token_core::{HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager};
/// use token_store_memory::MemoryStore;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let keyring = Keyring::new(HashKey::generate(KeyId::new(1))?);
/// let manager = TokenManager::builder(MemoryStore::new(), keyring).prefix("acme")?.build()?;
///
/// let issued = manager
///     .issue(IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?))
///     .await?;
/// let token = issued.token.expose_secret();
///
/// let read: Scope = "widgets:read".parse()?;
/// let ok = manager.validate(token, &[read]).await?;
/// assert_eq!(ok.subject(), "user:42");
///
/// let write: Scope = "widgets:write".parse()?;
/// assert!(manager.validate(token, &[write]).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn TokenStore>,
    prefix: TokenPrefix,
    keyring: RwLock<Arc<Keyring>>,
    /// Held shared from an issue's (derive's, rotation's) hashing to its commit, and exclusively
    /// by `retire_hash_key`: a key is never retired between a token's hashing and its insert.
    hashing: tokio::sync::RwLock<()>,
    policy: Policy,
    clock: Arc<dyn Clock>,
    usage: UsageBuffer,
    /// Held while a batch of usage is written: an explicit flush waits for one in flight.
    usage_writer: tokio::sync::Mutex<()>,
    /// The usage flush interval `F`, in microseconds.
    flush_interval_us: i64,
    min_idle_timeout: Duration,
    stats: Counters,
    retention: Retention,
    sink: Option<Arc<dyn AuditSink>>,
    use_audit: UseAudit,
    use_counter: AtomicU64,
    denials: DenialCoalescer,
    denial_queue: denial_queue::DenialQueue,
    strict_validation_audit: bool,
    /// Keys for verifying keyed audit links.
    audit_keys: Option<crate::audit_key::AuditKeyring>,
    /// Every event from this sequence number on must be keyed.
    keyed_required_from: Option<u64>,
    cache: Option<feed::ValidationCache>,
    /// Proof identifiers this process claimed or saw replayed (DPoP).
    seen_proofs: proofs::SeenProofs,
}

#[derive(Default)]
struct Counters {
    rejected_before_store: AtomicU64,
    denied_events_dropped: AtomicU64,
    denied_events_coalesced: AtomicU64,
    usage_flush_failures: AtomicU64,
    usage_updates_refused: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters for monitoring (monotonic since the manager was built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Validations rejected by format, checksum or a foreign prefix without touching the store.
    pub rejected_before_store: u64,
    /// Best-effort `Denied`, `Used` and `PolicyViolation` events the store could not take
    /// (queued denials included: a refused batch, or events lost when the writer task's runtime
    /// shut down before writing them).
    pub denied_events_dropped: u64,
    /// `Denied` events dropped because the denial queue was full (the store was not keeping up;
    /// see [`ManagerBuilder::denied_event_queue`]). Validation never waits for the queue.
    pub denied_events_queue_full: u64,
    /// `Denied` events not written because a denial for the same token id was already written
    /// in the current coalescing window.
    pub denied_events_coalesced: u64,
    /// Usage flushes that failed (the batch is kept and retried).
    pub usage_flush_failures: u64,
    /// Usage updates the store refused because the token's row is invalid (it is reported by
    /// [`TokenManager::flush_usage`] and dropped; the rest of its batch was written).
    pub usage_updates_refused: u64,
    /// Lookups the validation cache answered with a record.
    pub cache_hits: u64,
    /// Lookups the validation cache answered with "unknown id" (a negative entry).
    pub cache_negative_hits: u64,
    /// Lookups that went to the store although a cache is configured (not cached, too old, or
    /// the cache not serving yet).
    pub cache_misses: u64,
    /// Invalidations of cache entries (by this manager's changes or the store's feed).
    pub cache_invalidations: u64,
    /// Times the whole cache was dropped (feed interrupted or ended, or a change whose outcome
    /// is unknown).
    pub cache_flushes: u64,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("store", &self.inner.store.name())
            .field("prefix", &self.inner.prefix)
            .field("policy", &self.inner.policy)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// A freshly issued, derived or rotated token: the plaintext (shown once) and its record.
#[derive(Debug)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The token string. Hand it to the client and drop it; it cannot be recovered later.
    pub token: PlaintextToken,
    /// The stored record (no secret).
    pub record: TokenRecord,
}

/// The identity a successful validation yields.
#[derive(Debug, Clone)]
pub struct ValidatedToken {
    record: Arc<TokenRecord>,
}

impl ValidatedToken {
    /// The token id.
    pub fn id(&self) -> TokenId {
        self.record.id
    }

    /// The subject the token acts for.
    pub fn subject(&self) -> &str {
        &self.record.subject
    }

    /// All scopes the token carries.
    pub fn scopes(&self) -> &ScopeSet {
        &self.record.scopes
    }

    /// When it expires.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.record.expires_at
    }

    /// The host's metadata on the token, if any.
    pub fn metadata(&self) -> Option<&crate::metadata::Metadata> {
        self.record.metadata.as_ref()
    }

    /// The full record (as read at validation time).
    pub fn record(&self) -> &TokenRecord {
        &self.record
    }
}

/// One page of [`TokenManager::list`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenPage {
    /// The records, in `(created_at, id)` order.
    pub items: Vec<TokenRecord>,
    /// Pass to the next call to continue; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Which page [`TokenManager::list`] returns.
///
/// ```
/// use token_core::Page;
/// let first = Page::first(50);
/// assert_eq!(first.limit, 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// Resume after this cursor.
    pub after: Option<Cursor>,
    /// Page size (1 to [`MAX_PAGE_SIZE`]).
    pub limit: u32,
}

impl Page {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// The page after `cursor`.
    pub fn after(cursor: Cursor, limit: u32) -> Self {
        Self {
            after: Some(cursor),
            limit,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::first(DEFAULT_PAGE_SIZE)
    }
}

impl TokenManager {
    /// The retention policy used by [`sweep`](Self::sweep).
    pub fn retention(&self) -> &Retention {
        &self.inner.retention
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.inner.store
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// The token prefix.
    pub fn prefix(&self) -> &TokenPrefix {
        &self.inner.prefix
    }

    /// Monitoring counters.
    pub fn stats(&self) -> ManagerStats {
        let c = &self.inner.stats;
        let mut stats = ManagerStats {
            rejected_before_store: c.rejected_before_store.load(Ordering::Relaxed),
            denied_events_dropped: c.denied_events_dropped.load(Ordering::Relaxed)
                + self.inner.denial_queue.dropped(),
            denied_events_queue_full: self.inner.denial_queue.queue_full(),
            denied_events_coalesced: c.denied_events_coalesced.load(Ordering::Relaxed),
            usage_flush_failures: c.usage_flush_failures.load(Ordering::Relaxed),
            usage_updates_refused: c.usage_updates_refused.load(Ordering::Relaxed),
            ..ManagerStats::default()
        };
        if let Some(cache) = &self.inner.cache {
            let c = &cache.records.counters;
            stats.cache_hits = c.hits.load(Ordering::Relaxed);
            stats.cache_negative_hits = c.negative_hits.load(Ordering::Relaxed);
            stats.cache_misses = c.misses.load(Ordering::Relaxed);
            stats.cache_invalidations = c.invalidations.load(Ordering::Relaxed);
            stats.cache_flushes = c.flushes.load(Ordering::Relaxed);
        }
        stats
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// Drops `ids` from the validation cache (a change to them committed). Called before the
    /// change's method returns, so nothing in this process serves the old copies afterwards.
    fn invalidate_cached(&self, ids: impl IntoIterator<Item = TokenId>) {
        if let Some(cache) = &self.inner.cache {
            cache.records.invalidate(ids);
        }
    }

    /// The validation cache's maximum entry age in microseconds (0 without a cache).
    fn cache_max_age_us(&self) -> i64 {
        self.inner
            .cache
            .as_ref()
            .map_or(0, |cache| cache.records.max_age_us())
    }

    /// Drops the whole validation cache: a change failed in a way that leaves its outcome
    /// unknown (the store may have committed it before the error).
    fn flush_cached(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.records.flush();
        }
    }

    fn keyring(&self) -> Arc<Keyring> {
        self.inner
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `t + d`, saturating, truncated to the microseconds stores keep.
fn add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    crate::clock::truncate_to_micros(
        t.saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
    )
}

/// `now - by`, saturating.
fn before(now: OffsetDateTime, by: Duration) -> OffsetDateTime {
    now.saturating_sub(time::Duration::try_from(by).unwrap_or(time::Duration::MAX))
}
