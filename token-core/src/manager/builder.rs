//! [`ManagerBuilder`]: configuration of a [`TokenManager`] and the checks `build` makes.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::denial_queue::{DEFAULT_DENIED_EVENT_QUEUE, DenialQueue, MAX_DENIED_EVENT_QUEUE};
use super::feed::ValidationCache;
use super::{Counters, DEFAULT_USAGE_FLUSH_INTERVAL, Inner, TokenManager};
use crate::audit_key::AuditKeyring;
use crate::cache::{CacheConfig, RecordCache};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::format::{FormatError, TokenPrefix};
use crate::keyring::Keyring;
use crate::policy::{Policy, PolicyError};
use crate::retention::Retention;
use crate::store::TokenStore;
use crate::trail::{AuditSink, DenialCoalescer, UseAudit};
use crate::usage::UsageBuffer;

/// Configures a [`TokenManager`].
///
/// ```
/// use std::time::Duration;
/// use token_core::{HashKey, KeyId, Keyring, ManualClock, Policy, TokenManager};
/// use token_store_memory::MemoryStore;
///
/// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
///     .prefix("acme_live")?
///     .policy(Policy::builder().max_ttl(Duration::from_secs(86_400)).default_ttl(Duration::from_secs(3600)).build()?)
///     .clock(ManualClock::starting_now())
///     .usage_flush_interval(Duration::from_secs(5))
///     .build()?;
/// # let _ = manager;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ManagerBuilder {
    store: Arc<dyn TokenStore>,
    keyring: Keyring,
    prefix: TokenPrefix,
    policy: Policy,
    clock: Arc<dyn Clock>,
    flush_interval: Duration,
    retention: Retention,
    sink: Option<Arc<dyn AuditSink>>,
    use_audit: UseAudit,
    denial_interval: Duration,
    denial_queue: usize,
    strict_validation_audit: bool,
    cache: Option<CacheConfig>,
    audit_keys: Option<AuditKeyring>,
    keyed_required_from: Option<u64>,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("store", &self.store.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// Starts configuring a manager over `store`, hashing secrets with `keyring`.
    pub fn builder(store: impl TokenStore, keyring: Keyring) -> ManagerBuilder {
        ManagerBuilder {
            store: Arc::new(store),
            keyring,
            prefix: TokenPrefix::new("tok").unwrap_or_else(|_| unreachable!("valid literal")),
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            flush_interval: DEFAULT_USAGE_FLUSH_INTERVAL,
            retention: Retention::default(),
            sink: None,
            use_audit: UseAudit::Off,
            denial_interval: Duration::from_secs(60),
            denial_queue: DEFAULT_DENIED_EVENT_QUEUE,
            strict_validation_audit: false,
            cache: None,
            audit_keys: None,
            keyed_required_from: None,
        }
    }
}

impl ManagerBuilder {
    /// The prefix of issued tokens (default `tok`). Pick a distinctive one (`acme_live`) so
    /// secret scanners can match your tokens precisely.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, FormatError> {
        self.prefix = TokenPrefix::new(prefix)?;
        Ok(self)
    }

    /// The issuance policy (default [`Policy::default`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The clock (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often coalesced usage (`last_used_at`, `use_count`) is written to the store (default
    /// 10 s). Idle timeouts must be at least 10 times this.
    pub fn usage_flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Retention used by [`TokenManager::sweep`] (default [`Retention::default`]).
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Verifies keyed audit links ([`verify_audit_chain`](TokenManager::verify_audit_chain))
    /// with `keys`: give it the keyring the store chains with (for example
    /// `MemoryStore::with_audit_keys`), including retired keys whose events are still in the
    /// trail. An event chained with a key missing here is reported
    /// ([`ChainReport::missing_key`](crate::ChainReport::missing_key)), not verified.
    ///
    /// ```
    /// use token_core::{AuditKey, AuditKeyring, HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [9; 32]));
    /// let store = MemoryStore::new().with_audit_keys(keys.clone());
    /// let manager = TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [1; 32])))
    ///     .audit_keys(keys)
    ///     .build()?;
    /// # let _ = manager;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn audit_keys(mut self, keys: AuditKeyring) -> Self {
        self.audit_keys = Some(keys);
        self
    }

    /// Requires every audit event from sequence number `seq` on to be keyed: an unkeyed event
    /// there is a break ([`ChainReport::downgraded`](crate::ChainReport::downgraded)), even when
    /// no keyed event precedes it. Without this, a writer who strips `chain_key_id` from every
    /// event from the first keyed one on and recomputes the unkeyed hashes leaves a trail that
    /// verifies (nothing shows that it was ever keyed).
    ///
    /// Record the point when you enable audit keys: verify the chain just before, and pass
    /// the reported [`head`](crate::ChainReport::head)'s sequence number plus one (1 for a
    /// trail keyed from its first event). Keep the value outside the database, with the keys.
    /// It also makes a retention checkpoint past that point require a MAC
    /// ([`CheckpointCheck::Unauthenticated`](crate::CheckpointCheck::Unauthenticated)), where
    /// the manager has [`audit_keys`](Self::audit_keys).
    ///
    /// ```
    /// use token_core::{AuditKey, AuditKeyring, HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    /// let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [9; 32]));
    /// let store = MemoryStore::new().with_audit_keys(keys.clone());
    /// // Keyed from the first event on (a new deployment); an upgraded one passes the
    /// // sequence number it recorded when it enabled the keys.
    /// let manager = TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [1; 32])))
    ///     .audit_keys(keys)
    ///     .audit_keys_required_from(1)
    ///     .build()?;
    /// # let _ = manager;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn audit_keys_required_from(mut self, seq: u64) -> Self {
        self.keyed_required_from = Some(seq);
        self
    }

    /// Also hands every written audit event to `sink` (e.g. to forward to `tracing`).
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Whether successful validations write `Used` events (default [`UseAudit::Off`]).
    pub fn audit_uses(mut self, mode: UseAudit) -> Self {
        self.use_audit = mode;
        self
    }

    /// Window for coalescing `Denied` events per token id, whether or not the store knows the
    /// id (default 60 s; `Duration::ZERO` writes every denial).
    pub fn denied_event_interval(mut self, interval: Duration) -> Self {
        self.denial_interval = interval;
        self
    }

    /// Capacity of the queue that carries `Denied` events to their background writer (default
    /// [`DEFAULT_DENIED_EVENT_QUEUE`], 1 to [`MAX_DENIED_EVENT_QUEUE`]). A refused validation
    /// never waits for the store: when the queue is full its event is dropped and counted in
    /// [`ManagerStats::denied_events_queue_full`](crate::ManagerStats::denied_events_queue_full).
    ///
    /// ```
    /// use token_core::{HashKey, KeyId, Keyring, TokenManager};
    /// use token_store_memory::MemoryStore;
    ///
    /// let manager = TokenManager::builder(MemoryStore::new(), Keyring::new(HashKey::generate(KeyId::new(1))?))
    ///     .denied_event_queue(4096)
    ///     .build()?;
    /// # let _ = manager;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn denied_event_queue(mut self, capacity: usize) -> Self {
        self.denial_queue = capacity;
        self
    }

    /// Refuses a validation whose `Used` event cannot be written (fails with a store error).
    /// By default validation-time events are best effort, so an unavailable audit log does not
    /// become an outage.
    pub fn strict_validation_audit(mut self) -> Self {
        self.strict_validation_audit = true;
        self
    }

    /// Puts a validation cache in front of the store (off by default): records are served from
    /// memory for at most `config`'s maximum age, and the store's revocation feed removes changed
    /// ones early. Worth it for stores that do I/O (SQLite, PostgreSQL); the memory store answers
    /// from memory anyway and is never cached. The [cache docs](crate::cache) state the
    /// coherence bound: changes through this manager are seen at once, other processes' changes
    /// after the feed's delay, or `max_age` if the feed silently fails.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Validates the configuration and builds the manager.
    pub fn build(self) -> Result<TokenManager, ConfigError> {
        if self.flush_interval.is_zero() {
            return Err(ConfigError::ZeroInterval {
                setting: "usage_flush_interval",
            });
        }
        let min_idle_timeout = self.flush_interval.saturating_mul(10);
        if let Some(idle) = self.policy.default_idle_timeout()
            && idle < min_idle_timeout
        {
            return Err(PolicyError::IdleTimeoutTooShort {
                timeout: idle,
                flush_interval: self.flush_interval,
            }
            .into());
        }
        if let Some(config) = &self.cache {
            config.check()?;
        }
        if !(1..=MAX_DENIED_EVENT_QUEUE).contains(&self.denial_queue) {
            return Err(ConfigError::InvalidSetting {
                setting: "denied_event_queue",
                problem: format!(
                    "is {}; allowed is 1 to {MAX_DENIED_EVENT_QUEUE}",
                    self.denial_queue
                ),
            });
        }
        let now = self.clock.now();
        let denial_queue = DenialQueue::new(
            self.denial_queue,
            Arc::clone(&self.store),
            self.sink.clone(),
        );
        Ok(TokenManager {
            inner: Arc::new(Inner {
                store: self.store,
                prefix: self.prefix,
                keyring: RwLock::new(Arc::new(self.keyring)),
                hashing: tokio::sync::RwLock::new(()),
                policy: self.policy,
                clock: self.clock,
                usage: UsageBuffer::new(now),
                usage_writer: tokio::sync::Mutex::new(()),
                flush_interval_us: i64::try_from(self.flush_interval.as_micros())
                    .unwrap_or(i64::MAX),
                min_idle_timeout,
                stats: Counters::default(),
                retention: self.retention,
                sink: self.sink,
                use_audit: self.use_audit,
                use_counter: AtomicU64::new(0),
                denials: DenialCoalescer::new(self.denial_interval),
                denial_queue,
                strict_validation_audit: self.strict_validation_audit,
                audit_keys: self.audit_keys,
                keyed_required_from: self.keyed_required_from,
                seen_proofs: super::proofs::SeenProofs::new(),
                cache: self
                    .cache
                    .map(|config| ValidationCache::new(RecordCache::new(&config))),
            }),
        })
    }
}
