//! The validation cache: token records kept in memory in front of a store that does I/O, so a
//! validation of a known token costs no query. Enable it with
//! [`ManagerBuilder::cache`](crate::ManagerBuilder::cache).
//!
//! **Records, never decisions.** The cache holds the record as the store returned it; expiry,
//! not-before, idle timeout, revocation and scopes are decided at every validation from that
//! record and the manager's clock, exactly as for a record just read. A use-limited token
//! (`max_uses`) is never cached: its use count changes with every use in every process, and each
//! use is the store's atomic conditional update anyway.
//!
//! **Coherence.** What may a cached copy miss, and for how long?
//! - A change made through this manager (revoke, rotate, a sweep's revocations and purges)
//!   removes the affected entries before the call returns. A lookup that raced the change cannot
//!   put a stale copy back: entries are only inserted if no invalidation happened since the read
//!   that produced them began.
//! - A change made by another process reaches this one through the store's revocation feed
//!   ([`TokenStore::subscribe_revocations`](crate::TokenStore::subscribe_revocations)), which
//!   announces every change that ends or narrows a token early (revocation, rotation shortening
//!   the predecessor's life). A feed interruption (listener reconnect, a lagging consumer) flushes
//!   the whole cache; the cache serves nothing until the manager follows the feed, and stops
//!   serving (flushed) if the follower ends for any reason. While a PostgreSQL listener is
//!   reconnecting after a lost connection, the cache serves what it read after the flush; a
//!   revocation committed in that window reaches it at the reconnect's `Interrupted` (another
//!   flush) or at `max_age`, whichever comes first.
//! - Every entry lives at most [`CacheConfig::max_age`] (default 1 s) on the manager's clock: the
//!   bound if a notification is silently lost, and the only bound for a store without a feed
//!   (SQLite or memory shared by several processes: their feeds are in-process).
//!
//! The documented worst case for another process's revocation is therefore **the feed's delay
//! (measured p99 in BENCHMARKS.md), or `max_age` if the feed silently fails**; through this
//! manager it is zero. Another manager in the same process (two prefixes over one store, say) is
//! "another process" for this purpose: it learns of the change through the feed, after the
//! in-process broadcast's scheduling delay.
//!
//! **Bounds.** Entries are weighed by the bytes they hold (the record, its strings and scopes,
//! and the cache's own bookkeeping; see [`CacheConfig::max_bytes`]), and every entry weighs at
//! least `max_bytes / max_entries`, so both bounds hold at once. Unknown ids are remembered as
//! negative entries in a separate, smaller cache with their own age bound, so a flood of invented
//! (well-formed, checksummed) ids does not reach the database more than once per id and age.
//!
//! **Why `quick_cache`.** Measured against `moka` and a sharded `RwLock<HashMap>` in
//! `benches/benches/cache.rs` (figures in BENCHMARKS.md): a hit is a shard read lock and an
//! atomic, with S3-FIFO eviction that resists scans, no background threads and a small
//! dependency tree; `moka`'s richer features (built-in TTL, listeners) cost more per hit than
//! the whole rest of a validation, and a plain sharded map has no eviction.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quick_cache::sync::Cache;
use quick_cache::{UnitWeighter, Weighter};
use time::OffsetDateTime;

use crate::error::ConfigError;
use crate::format::{TokenId, TokenIdHasherBuilder};
use crate::record::TokenRecord;

/// The longest [`CacheConfig::max_age`] allowed: a cached copy is the revocation bound when a
/// feed fails silently, and more than a minute would make "revocation first" meaningless.
pub const MAX_CACHE_AGE: Duration = Duration::from_secs(60);

/// Settings of the validation cache (see the [module docs](self)).
///
/// ```
/// use std::time::Duration;
/// use token_core::CacheConfig;
///
/// let cache = CacheConfig::new()
///     .max_entries(50_000)
///     .max_bytes(32 << 20)
///     .max_age(Duration::from_millis(500));
/// assert_eq!(cache.get_max_age(), Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    max_entries: u64,
    max_bytes: u64,
    max_age: Duration,
    negative_entries: u64,
    negative_max_age: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(1),
            negative_entries: 10_000,
            negative_max_age: Duration::from_secs(1),
        }
    }
}

impl CacheConfig {
    /// The defaults: 100,000 entries, 64 MiB, 1 s maximum age; 10,000 negative entries of at
    /// most 1 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many cached records (default 100,000).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// At most this many bytes of cached records (default 64 MiB). An entry's weight is the
    /// estimate [`entry_bytes`] gives: about 660 bytes for a record with a short subject and
    /// three scopes (the record itself is 448 of them; 699 bytes measured with the cache's own
    /// tables, `benches/benches/cache_memory.rs`).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The longest a record is served from the cache (default 1 s, at most [`MAX_CACHE_AGE`]):
    /// the revocation bound if the store's feed silently fails.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = age;
        self
    }

    /// At most this many remembered unknown ids (default 10,000).
    pub fn negative_entries(mut self, entries: u64) -> Self {
        self.negative_entries = entries;
        self
    }

    /// The longest an unknown id is remembered (default 1 s, at most [`MAX_CACHE_AGE`]).
    pub fn negative_max_age(mut self, age: Duration) -> Self {
        self.negative_max_age = age;
        self
    }

    /// The configured maximum entry age.
    pub fn get_max_age(&self) -> Duration {
        self.max_age
    }

    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &'static str, problem: String| {
            Err(ConfigError::InvalidSetting { setting, problem })
        };
        for (setting, age) in [
            ("cache.max_age", self.max_age),
            ("cache.negative_max_age", self.negative_max_age),
        ] {
            if age.is_zero() || age > MAX_CACHE_AGE {
                return invalid(
                    setting,
                    format!("is {age:?}; allowed is more than zero and at most {MAX_CACHE_AGE:?}"),
                );
            }
        }
        if self.max_entries == 0 || self.negative_entries == 0 {
            return invalid(
                "cache.max_entries",
                "entry bounds must be at least 1".to_owned(),
            );
        }
        if self.max_bytes < self.max_entries {
            return invalid(
                "cache.max_bytes",
                format!(
                    "is {} bytes, less than one byte per entry ({} entries)",
                    self.max_bytes, self.max_entries
                ),
            );
        }
        Ok(())
    }
}

/// Estimated bytes an entry holds in the cache: the record and what it points to (strings,
/// scopes, labels), the `Arc` header and the cache's slot. Used as the entry's weight.
pub fn entry_bytes(record: &TokenRecord) -> u64 {
    // The cache's slot: key, value (pointer and timestamp), hash-table and eviction bookkeeping.
    const SLOT: usize = 64;
    // An `Arc`'s two counters.
    const ARC: usize = 16;
    // A `BTreeMap` node holding one or a few labels.
    const LABEL_NODE: usize = 200;
    let text = |s: &str| s.len();
    let optional = |s: &Option<String>| s.as_deref().map_or(0, text);
    let scopes: usize = record
        .scopes
        .iter()
        .map(|s| std::mem::size_of::<crate::Scope>() + s.as_str().len())
        .sum();
    let labels = if record.labels.is_empty() {
        0
    } else {
        LABEL_NODE
            + record
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    };
    let revocation = record
        .revocation
        .as_ref()
        .map_or(0, |r| r.reason.len() + optional(&r.actor));
    let bytes = SLOT
        + ARC
        + std::mem::size_of::<TokenRecord>()
        + text(&record.prefix)
        + text(&record.subject)
        + optional(&record.name)
        + optional(&record.description)
        + optional(&record.created_by)
        + scopes
        + labels
        + revocation;
    bytes as u64
}

#[derive(Clone)]
struct Cached {
    record: Arc<TokenRecord>,
    cached_at: OffsetDateTime,
}

#[derive(Clone)]
struct ByBytes {
    /// Every entry weighs at least this: `max_bytes / max_entries`, so the entry bound holds too.
    floor: u64,
}

impl Weighter<TokenId, Cached> for ByBytes {
    fn weight(&self, _: &TokenId, value: &Cached) -> u64 {
        entry_bytes(&value.record).max(self.floor)
    }
}

/// What the cache knows of an id.
pub(crate) enum CacheLookup {
    /// A fresh copy of the record.
    Hit(Arc<TokenRecord>),
    /// A fresh negative entry: the store held no such id.
    Absent,
    /// Nothing fresh: read the store, and offer the answer back with this ticket (`None` while
    /// the cache is not serving: then nothing may be inserted).
    Miss(Option<u64>),
}

/// Whether the manager follows the store's feed (and so may serve from the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum FeedState {
    /// Not following: the cache serves nothing; the next lookup tries to subscribe.
    Idle = 0,
    /// A subscription is being set up.
    Starting = 1,
    /// Following the feed: serve entries younger than `max_age`.
    Following = 2,
    /// The store has no feed: serve entries younger than `max_age`, which is then the only bound.
    NoFeed = 3,
}

/// Counters of the cache (monotonic).
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) flushes: AtomicU64,
}

/// The bounded record cache with its coherence rule (see the [module docs](self)).
pub(crate) struct RecordCache {
    records: Cache<TokenId, Cached, ByBytes, TokenIdHasherBuilder>,
    absent: Cache<TokenId, OffsetDateTime, UnitWeighter, TokenIdHasherBuilder>,
    /// Bumped (under `invalidation`) by every invalidation: an answer read before a bump is stale.
    epoch: AtomicU64,
    /// Serializes invalidations with inserts, so a stale answer is never inserted after the
    /// invalidation that should have removed it.
    invalidation: Mutex<()>,
    max_age: time::Duration,
    negative_max_age: time::Duration,
    feed: AtomicU8,
    pub(crate) counters: CacheCounters,
}

fn fresh(cached_at: OffsetDateTime, now: OffsetDateTime, max_age: time::Duration) -> bool {
    // A clock that went backwards makes entries look as if from the future: not fresh.
    cached_at <= now && now - cached_at < max_age
}

impl RecordCache {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let floor = (config.max_bytes / config.max_entries).max(1);
        let estimated = usize::try_from(config.max_entries).unwrap_or(usize::MAX);
        let negatives = usize::try_from(config.negative_entries).unwrap_or(usize::MAX);
        let age = |d: Duration| time::Duration::try_from(d).unwrap_or(time::Duration::SECOND);
        Self {
            records: Cache::with(
                estimated.min(1 << 20),
                config.max_bytes,
                ByBytes { floor },
                TokenIdHasherBuilder,
                Default::default(),
            ),
            absent: Cache::with(
                negatives,
                config.negative_entries,
                UnitWeighter,
                TokenIdHasherBuilder,
                Default::default(),
            ),
            epoch: AtomicU64::new(0),
            invalidation: Mutex::new(()),
            max_age: age(config.max_age),
            negative_max_age: age(config.negative_max_age),
            feed: AtomicU8::new(FeedState::Idle as u8),
            counters: CacheCounters::default(),
        }
    }

    /// The maximum entry age, in microseconds.
    pub(crate) fn max_age_us(&self) -> i64 {
        i64::try_from(self.max_age.whole_microseconds()).unwrap_or(i64::MAX)
    }

    pub(crate) fn feed_state(&self) -> FeedState {
        match self.feed.load(Ordering::Acquire) {
            2 => FeedState::Following,
            3 => FeedState::NoFeed,
            1 => FeedState::Starting,
            _ => FeedState::Idle,
        }
    }

    pub(crate) fn set_feed_state(&self, state: FeedState) {
        self.feed.store(state as u8, Ordering::Release);
    }

    /// Moves the feed state from `Idle` to `Starting`; `true` for the one caller that did.
    pub(crate) fn claim_start(&self) -> bool {
        self.feed
            .compare_exchange(
                FeedState::Idle as u8,
                FeedState::Starting as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    fn serving(&self) -> bool {
        matches!(self.feed_state(), FeedState::Following | FeedState::NoFeed)
    }

    /// What the cache knows of `id` at `now`.
    pub(crate) fn lookup(&self, id: TokenId, now: OffsetDateTime) -> CacheLookup {
        if !self.serving() {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("token_cache_lookups_total", "result" => "miss").increment(1);
            return CacheLookup::Miss(None);
        }
        // The ticket is taken before anything is read: an invalidation after this point makes
        // whatever the caller reads next uninsertable.
        let ticket = self.epoch.load(Ordering::Acquire);
        if let Some(entry) = self.records.get(&id) {
            if fresh(entry.cached_at, now, self.max_age) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("token_cache_lookups_total", "result" => "hit").increment(1);
                return CacheLookup::Hit(entry.record);
            }
            self.records.remove(&id);
        } else if let Some(cached_at) = self.absent.get(&id) {
            if fresh(cached_at, now, self.negative_max_age) {
                self.counters.negative_hits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("token_cache_lookups_total", "result" => "negative_hit")
                    .increment(1);
                return CacheLookup::Absent;
            }
            self.absent.remove(&id);
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("token_cache_lookups_total", "result" => "miss").increment(1);
        CacheLookup::Miss(Some(ticket))
    }

    /// Offers what the store answered for `id` (read after `ticket` was taken, at or after
    /// `cached_at`); kept only if nothing was invalidated since.
    pub(crate) fn offer(
        &self,
        id: TokenId,
        found: Option<&Arc<TokenRecord>>,
        ticket: u64,
        cached_at: OffsetDateTime,
    ) {
        let _guard = self
            .invalidation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.epoch.load(Ordering::Acquire) != ticket || !self.serving() {
            return;
        }
        match found {
            // A use-limited token's count changes with every use, in every process: its record
            // is always read from the store, next to the store's atomic count.
            Some(record) if record.max_uses.is_some() => {}
            Some(record) => {
                self.absent.remove(&id);
                self.records.insert(
                    id,
                    Cached {
                        record: Arc::clone(record),
                        cached_at,
                    },
                );
            }
            None => self.absent.insert(id, cached_at),
        }
    }

    /// Drops `ids` (changed by a committed lifecycle change, here or in another process).
    pub(crate) fn invalidate(&self, ids: impl IntoIterator<Item = TokenId>) {
        let _guard = self
            .invalidation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for id in ids {
            self.records.remove(&id);
            self.absent.remove(&id);
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("token_cache_invalidations_total").increment(1);
    }

    /// Drops `id` and every cached member of its family (the family of the cached copy of `id`,
    /// if there is one): what a revocation of `id` may have ended, descendants included.
    pub(crate) fn invalidate_family_of(&self, id: TokenId) {
        let family = self.records.peek(&id).map(|cached| cached.record.family_id);
        let _guard = self
            .invalidation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.records.remove(&id);
        self.absent.remove(&id);
        if let Some(family) = family {
            self.records
                .retain(|_, cached| cached.record.family_id != family);
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("token_cache_invalidations_total").increment(1);
    }

    /// Forgets that `id` was unknown (it was just issued here).
    pub(crate) fn forget_absent(&self, id: TokenId) {
        self.absent.remove(&id);
    }

    /// Drops everything (the feed was interrupted, or a change's outcome is unknown).
    pub(crate) fn flush(&self) {
        let _guard = self
            .invalidation
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.records.clear();
        self.absent.clear();
        self.counters.flushes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("token_cache_flushes_total").increment(1);
    }

    /// Cached records.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{KeyId, TokenHash};
    use crate::scope::ScopeSet;

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 0:00 UTC);

    fn record(n: u8) -> Arc<TokenRecord> {
        Arc::new(TokenRecord {
            scopes: ScopeSet::parse("widgets:read widgets:write billing").unwrap(),
            ..TokenRecord::for_tests(
                TokenId::from_bytes([n; 16]),
                TokenHash::from_bytes([0; 32]),
                KeyId::new(1),
                T0,
            )
        })
    }

    fn serving(config: CacheConfig) -> RecordCache {
        let cache = RecordCache::new(&config);
        cache.set_feed_state(FeedState::Following);
        cache
    }

    fn ticket(cache: &RecordCache, id: TokenId, now: OffsetDateTime) -> u64 {
        match cache.lookup(id, now) {
            CacheLookup::Miss(Some(ticket)) => ticket,
            _ => panic!("expected an insertable miss"),
        }
    }

    #[test]
    fn nothing_is_served_or_kept_until_the_feed_is_followed() {
        let cache = RecordCache::new(&CacheConfig::default());
        let r = record(1);
        assert!(matches!(cache.lookup(r.id, T0), CacheLookup::Miss(None)));
        cache.offer(r.id, Some(&r), 0, T0);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn entries_are_served_until_max_age_and_never_from_the_future() {
        let cache = serving(CacheConfig::default().max_age(Duration::from_secs(1)));
        let r = record(1);
        let t = ticket(&cache, r.id, T0);
        cache.offer(r.id, Some(&r), t, T0);
        let ms = |n| T0 + time::Duration::milliseconds(n);
        assert!(matches!(cache.lookup(r.id, ms(999)), CacheLookup::Hit(_)));
        assert!(matches!(
            cache.lookup(r.id, ms(1000)),
            CacheLookup::Miss(Some(_))
        ));
        let t = ticket(&cache, r.id, ms(2000));
        cache.offer(r.id, Some(&r), t, ms(2000));
        // The clock went back: the entry is not trusted.
        assert!(matches!(cache.lookup(r.id, ms(1500)), CacheLookup::Miss(_)));
    }

    #[test]
    fn an_answer_read_before_an_invalidation_is_never_inserted() {
        let cache = serving(CacheConfig::default());
        let r = record(1);
        let t = ticket(&cache, r.id, T0);
        // The store was read (returning the old record), then a revocation committed and
        // invalidated the id, then the stale answer is offered.
        cache.invalidate([r.id]);
        cache.offer(r.id, Some(&r), t, T0);
        assert!(matches!(cache.lookup(r.id, T0), CacheLookup::Miss(Some(_))));
        cache.flush();
        let t2 = ticket(&cache, r.id, T0);
        assert_ne!(t, t2);
    }

    #[test]
    fn use_limited_records_are_never_cached() {
        let cache = serving(CacheConfig::default());
        let mut limited = (*record(1)).clone();
        limited.max_uses = Some(5);
        let limited = Arc::new(limited);
        let t = ticket(&cache, limited.id, T0);
        cache.offer(limited.id, Some(&limited), t, T0);
        assert!(matches!(
            cache.lookup(limited.id, T0),
            CacheLookup::Miss(Some(_))
        ));
    }

    #[test]
    fn unknown_ids_are_remembered_separately_and_briefly() {
        let cache = serving(CacheConfig::default().negative_max_age(Duration::from_millis(100)));
        let id = TokenId::from_bytes([9; 16]);
        let t = ticket(&cache, id, T0);
        cache.offer(id, None, t, T0);
        assert!(matches!(cache.lookup(id, T0), CacheLookup::Absent));
        let later = T0 + time::Duration::milliseconds(100);
        assert!(matches!(
            cache.lookup(id, later),
            CacheLookup::Miss(Some(_))
        ));
        let t = ticket(&cache, id, later);
        cache.offer(id, None, t, later);
        cache.forget_absent(id);
        assert!(matches!(
            cache.lookup(id, later),
            CacheLookup::Miss(Some(_))
        ));
    }

    #[test]
    fn the_entry_bound_holds_even_for_small_records() {
        let cache = serving(CacheConfig::default().max_entries(100).max_bytes(1 << 30));
        for n in 0..=255u8 {
            let r = record(n);
            let t = ticket(&cache, r.id, T0);
            cache.offer(r.id, Some(&r), t, T0);
        }
        assert!(cache.len() <= 100, "{} entries", cache.len());
        assert!(cache.len() >= 50, "{} entries", cache.len());
    }

    #[test]
    fn an_entry_weighs_the_record_and_what_it_points_to() {
        let small = record(1);
        let mut large = (*small).clone();
        large.subject = "x".repeat(1000);
        large.description = Some("y".repeat(500));
        let base = entry_bytes(&small);
        assert!(base > std::mem::size_of::<TokenRecord>() as u64, "{base}");
        assert_eq!(entry_bytes(&large), base - 7 + 1000 + 500);
    }

    #[test]
    fn invalid_settings_say_what_is_allowed() {
        let err = CacheConfig::default()
            .max_age(Duration::from_secs(3600))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("at most 60s"), "{err}");
        assert!(CacheConfig::default().max_entries(0).check().is_err());
        assert!(CacheConfig::default().check().is_ok());
    }
}
