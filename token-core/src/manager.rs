//! [`TokenManager`]: the facade host applications use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, AuditRecord, Context};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Error, ValidationError};
use crate::format::{FormatError, ParsedToken, PlaintextToken, TokenId, TokenPrefix, parse_token};
use crate::keyring::{HashKey, KeyId, Keyring, KeyringError};
use crate::policy::{HumanDuration, Policy, PolicyError, PolicyViolation};
use crate::record::{TokenRecord, TokenState};
use crate::request::{DeriveRequest, Idle, IssueRequest, Lifetime, TokenSpec, check_subject};
use crate::retention::Retention;
use crate::scope::{Scope, ScopeSet};
use crate::store::{
    Cursor, InsertOutcome, InsertToken, ListFilter, ListQuery, RevokeRequest, RevokeSelector,
    RotateOutcome, RotateToken, StoreError, TokenStore, UseOutcome,
};
use crate::trail::{Admission, AuditSink, DenialCoalescer, UseAudit};
use crate::usage::UsageBuffer;

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
    policy: Policy,
    clock: Arc<dyn Clock>,
    usage: UsageBuffer,
    flush_interval: time::Duration,
    min_idle_timeout: Duration,
    stats: Counters,
    retention: Retention,
    sink: Option<Arc<dyn AuditSink>>,
    use_audit: UseAudit,
    use_counter: AtomicU64,
    denials: DenialCoalescer,
    strict_validation_audit: bool,
}

#[derive(Default)]
struct Counters {
    rejected_before_store: AtomicU64,
    denied_events_dropped: AtomicU64,
    denied_events_coalesced: AtomicU64,
    usage_flush_failures: AtomicU64,
}

/// Counters for monitoring (monotonic since the manager was built).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ManagerStats {
    /// Validations rejected by format or checksum without touching the store.
    pub rejected_before_store: u64,
    /// Best-effort `Denied`/`Used`/`PolicyViolation` events the store could not take.
    pub denied_events_dropped: u64,
    /// `Denied` events not written because a denial for the same token (or fingerprint) was
    /// already written in the current coalescing window.
    pub denied_events_coalesced: u64,
    /// Usage flushes that failed (the batch is kept and retried).
    pub usage_flush_failures: u64,
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
    strict_validation_audit: bool,
}

impl std::fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("store", &self.store.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
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

    /// Window for coalescing `Denied` events per token or fingerprint (default 60 s;
    /// `Duration::ZERO` writes every denial).
    pub fn denied_event_interval(mut self, interval: Duration) -> Self {
        self.denial_interval = interval;
        self
    }

    /// Refuses a validation whose `Used` event cannot be written (fails with a store error).
    /// By default validation-time events are best effort, so an unavailable audit log does not
    /// become an outage.
    pub fn strict_validation_audit(mut self) -> Self {
        self.strict_validation_audit = true;
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
        let now = self.clock.now();
        Ok(TokenManager {
            inner: Arc::new(Inner {
                store: self.store,
                prefix: self.prefix,
                keyring: RwLock::new(Arc::new(self.keyring)),
                policy: self.policy,
                clock: self.clock,
                usage: UsageBuffer::new(now),
                flush_interval: time::Duration::try_from(self.flush_interval)
                    .unwrap_or(time::Duration::MAX),
                min_idle_timeout,
                stats: Counters::default(),
                retention: self.retention,
                sink: self.sink,
                use_audit: self.use_audit,
                use_counter: AtomicU64::new(0),
                denials: DenialCoalescer::new(self.denial_interval),
                strict_validation_audit: self.strict_validation_audit,
            }),
        })
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
            strict_validation_audit: false,
        }
    }

    /// The retention policy used by [`sweep`](Self::sweep).
    pub fn retention(&self) -> &Retention {
        &self.inner.retention
    }

    /// Hands a written event to the configured sink.
    pub(crate) fn to_sink(&self, event: &AuditEvent) {
        if let Some(sink) = &self.inner.sink {
            sink.record(event);
        }
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
        ManagerStats {
            rejected_before_store: c.rejected_before_store.load(Ordering::Relaxed),
            denied_events_dropped: c.denied_events_dropped.load(Ordering::Relaxed),
            denied_events_coalesced: c.denied_events_coalesced.load(Ordering::Relaxed),
            usage_flush_failures: c.usage_flush_failures.load(Ordering::Relaxed),
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    fn keyring(&self) -> Arc<Keyring> {
        self.inner
            .keyring
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    // ----- issue -----------------------------------------------------------------------------

    /// Issues a root token after checking the policy (TTL cap, expiry required, scope ceiling,
    /// live tokens per subject). The record and its `Issued` event are written atomically.
    pub async fn issue(&self, request: IssueRequest) -> Result<IssuedToken, Error> {
        let now = self.now();
        check_subject(&request.subject)?;
        let IssueRequest { subject, spec } = request;
        let expires_at = match self.policy_checked(&subject, &spec, now, None).await {
            Ok(at) => at,
            Err(e) => return Err(self.note_violation(e, &subject, &spec.context, now).await),
        };
        let (token, record) = self.new_record(&subject, &spec, now, expires_at, None)?;
        let event = AuditEvent::new(AuditKind::Issued, now)
            .with_token(record.id, subject.clone())
            .with_context(&spec.context);
        self.insert(token, record, vec![event], now).await
    }

    /// Derives a child token from `parent`: same subject, scopes covered by the parent's, expiry no
    /// later than the parent's. The parent must be active; the check and the insert are one
    /// transaction, so a concurrent revocation of the parent's family cannot miss the child.
    pub async fn derive(
        &self,
        parent: TokenId,
        request: DeriveRequest,
    ) -> Result<IssuedToken, Error> {
        let spec = request.spec;
        self.flush_usage_of(parent).await?;
        let parent_record = self
            .inner
            .store
            .get(parent)
            .await?
            .ok_or(Error::NotFound(parent))?;
        // Read after the round trips: the store re-checks the parent at this instant, so it
        // must not be earlier than necessary (an idle deadline could pass in between).
        let now = self.now();
        let state = self.state_of(&parent_record, now);
        if state != TokenState::Active {
            return Err(Error::NotActive { id: parent, state });
        }
        let widening: Vec<Scope> = parent_record
            .scopes
            .uncovered(&spec.scopes)
            .into_iter()
            .cloned()
            .collect();
        if !widening.is_empty() {
            return Err(Error::ScopeWidening { scopes: widening });
        }
        let mut spec = spec;
        self.narrow_limits(&parent_record, &mut spec)?;
        let subject = parent_record.subject.clone();
        let expires_at = match self
            .policy_checked(&subject, &spec, now, Some(&parent_record))
            .await
        {
            Ok(at) => at,
            Err(e) => return Err(self.note_violation(e, &subject, &spec.context, now).await),
        };
        let (token, record) =
            self.new_record(&subject, &spec, now, expires_at, Some(&parent_record))?;
        let event = AuditEvent::new(AuditKind::Derived, now)
            .with_token(record.id, subject)
            .with_context(&spec.context)
            .with_detail(format!("parent={parent}"));
        self.insert(token, record, vec![event], now).await
    }

    /// A derived token never has more uses left or a longer idle timeout than its parent: when the
    /// request names none it inherits the parent's, and a wider one is refused.
    fn narrow_limits(&self, parent: &TokenRecord, spec: &mut TokenSpec) -> Result<(), Error> {
        if let Some(parent_max) = parent.max_uses {
            let remaining = parent_max.saturating_sub(parent.use_count);
            match spec.max_uses {
                None => spec.max_uses = Some(remaining),
                Some(requested) if requested > remaining => {
                    return Err(Error::LimitWidening {
                        limit: "max_uses",
                        requested: requested.to_string(),
                        parent: format!("{remaining} remaining"),
                    });
                }
                Some(_) => {}
            }
        }
        if let Some(parent_idle) = parent.idle_timeout {
            match spec.idle {
                Idle::PolicyDefault => {
                    let default = self.inner.policy.default_idle_timeout();
                    spec.idle = Idle::After(default.map_or(parent_idle, |d| d.min(parent_idle)));
                }
                Idle::After(requested) if requested > parent_idle => {
                    return Err(Error::LimitWidening {
                        limit: "idle_timeout",
                        requested: HumanDuration(requested).to_string(),
                        parent: HumanDuration(parent_idle).to_string(),
                    });
                }
                Idle::Never => {
                    return Err(Error::LimitWidening {
                        limit: "idle_timeout",
                        requested: "none".to_owned(),
                        parent: HumanDuration(parent_idle).to_string(),
                    });
                }
                Idle::After(_) => {}
            }
        }
        Ok(())
    }

    /// Applies the policy; returns the expiry. Derived tokens are capped by the parent's expiry.
    async fn policy_checked(
        &self,
        subject: &str,
        spec: &TokenSpec,
        now: OffsetDateTime,
        parent: Option<&TokenRecord>,
    ) -> Result<Option<OffsetDateTime>, PolicyOrError> {
        spec.check()?;
        let policy = &self.inner.policy;
        let parent_expiry = parent.and_then(|p| p.expires_at);
        let expires_at = match spec.lifetime {
            Lifetime::Never if parent_expiry.is_some() => {
                return Err(PolicyOrError::Error(Error::OutlivesParent {
                    requested: OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT),
                    parent: parent_expiry.unwrap_or(now),
                }));
            }
            Lifetime::Never if !policy.allows_non_expiring() => {
                return Err(PolicyViolation::ExpiryRequired.into());
            }
            Lifetime::Never => None,
            Lifetime::Ttl(ttl) => {
                policy.check_ttl(ttl)?;
                let at = add(now, ttl);
                if let Some(parent_at) = parent_expiry
                    && at > parent_at
                {
                    return Err(PolicyOrError::Error(Error::OutlivesParent {
                        requested: at,
                        parent: parent_at,
                    }));
                }
                Some(at)
            }
            Lifetime::PolicyDefault => {
                let at = add(now, policy.default_ttl());
                Some(parent_expiry.map_or(at, |p| p.min(at)))
            }
        };
        if let (Some(nb), Some(exp)) = (spec.not_before, expires_at)
            && nb >= exp
        {
            return Err(PolicyOrError::Error(Error::InvalidRequest {
                field: "not_before",
                problem: "is not before the token's expiry".into(),
            }));
        }
        if spec.idle == Idle::Never && !policy.allows_no_idle_timeout() {
            return Err(PolicyViolation::IdleTimeoutRequired.into());
        }
        if let Some(idle) = self.idle_timeout(spec)
            && idle < self.inner.min_idle_timeout
        {
            return Err(PolicyViolation::IdleTimeoutTooShort {
                requested: idle,
                min: self.inner.min_idle_timeout,
            }
            .into());
        }
        policy.check_ceiling(subject, &spec.scopes)?;
        Ok(expires_at)
    }

    fn idle_timeout(&self, spec: &TokenSpec) -> Option<Duration> {
        match spec.idle {
            Idle::PolicyDefault => self.inner.policy.default_idle_timeout(),
            Idle::After(d) => Some(d),
            Idle::Never => None,
        }
    }

    /// Records a best-effort `PolicyViolation` event and converts to the caller's error.
    async fn note_violation(
        &self,
        error: PolicyOrError,
        subject: &str,
        ctx: &Context,
        now: OffsetDateTime,
    ) -> Error {
        match error {
            PolicyOrError::Error(e) => e,
            PolicyOrError::Policy(violation) => {
                let mut event = AuditEvent::new(AuditKind::PolicyViolation, now)
                    .with_context(ctx)
                    .with_reason(violation.to_string());
                event.subject = Some(subject.to_owned());
                self.append_best_effort(event).await;
                Error::Policy(violation)
            }
        }
    }

    fn new_record(
        &self,
        subject: &str,
        spec: &TokenSpec,
        now: OffsetDateTime,
        expires_at: Option<OffsetDateTime>,
        parent: Option<&TokenRecord>,
    ) -> Result<(PlaintextToken, TokenRecord), Error> {
        let token = PlaintextToken::generate(&self.inner.prefix)?;
        let (hash_key_id, hash) = self
            .keyring()
            .hash_current(&token.id(), token.secret_bytes());
        let record = TokenRecord {
            id: token.id(),
            hash,
            hash_key_id,
            prefix: self.inner.prefix.as_str().to_owned(),
            subject: subject.to_owned(),
            scopes: spec.scopes.clone(),
            name: spec.name.clone(),
            description: spec.description.clone(),
            labels: spec.labels.clone(),
            created_at: now,
            created_by: spec.context.actor.clone(),
            expires_at,
            not_before: spec.not_before,
            idle_timeout: self.idle_timeout(spec),
            last_used_at: None,
            use_count: 0,
            max_uses: spec.max_uses,
            parent_id: parent.map(|p| p.id),
            family_id: parent.map_or(token.id(), |p| p.family_id),
            rotated_from: None,
            rotated_to: None,
            revocation: None,
        };
        Ok((token, record))
    }

    async fn insert(
        &self,
        token: PlaintextToken,
        record: TokenRecord,
        events: Vec<AuditEvent>,
        now: OffsetDateTime,
    ) -> Result<IssuedToken, Error> {
        let max_live = self.inner.policy.max_live_tokens_per_subject();
        let subject = record.subject.clone();
        let parent = record.parent_id;
        let context = events
            .first()
            .map(|e| {
                let mut c = Context::new();
                c.actor.clone_from(&e.actor);
                c.client_ip.clone_from(&e.client_ip);
                c.user_agent.clone_from(&e.user_agent);
                c.request_id.clone_from(&e.request_id);
                c
            })
            .unwrap_or_default();
        let sink_events = if self.inner.sink.is_some() {
            events.clone()
        } else {
            Vec::new()
        };
        let outcome = self
            .inner
            .store
            .insert(InsertToken::new(record.clone(), max_live, now, events))
            .await?;
        match outcome {
            InsertOutcome::Inserted => {
                for event in &sink_events {
                    self.to_sink(event);
                }
                Ok(IssuedToken { token, record })
            }
            InsertOutcome::SubjectLimitReached => {
                let violation = PolicyViolation::TooManyLiveTokens {
                    subject: subject.clone(),
                    max: max_live.unwrap_or(0),
                };
                Err(self
                    .note_violation(PolicyOrError::Policy(violation), &subject, &context, now)
                    .await)
            }
            InsertOutcome::UsesExceedParent { remaining } => Err(Error::LimitWidening {
                limit: "max_uses",
                requested: record
                    .max_uses
                    .map_or_else(|| "no limit".to_owned(), |m| m.to_string()),
                parent: format!("{remaining} remaining"),
            }),
            InsertOutcome::OutlivesParent { parent_expires_at } => Err(Error::OutlivesParent {
                requested: record.expires_at.unwrap_or(OffsetDateTime::new_utc(
                    time::Date::MAX,
                    time::Time::MIDNIGHT,
                )),
                parent: parent_expires_at,
            }),
            InsertOutcome::ParentNotActive { state } => {
                let id = parent.unwrap_or(record.id);
                Err(match state {
                    Some(state) => Error::NotActive { id, state },
                    None => Error::NotFound(id),
                })
            }
        }
    }

    // ----- validate --------------------------------------------------------------------------

    /// Validates `token` and checks that it permits every scope in `required`.
    ///
    /// Order: format and checksum (no store access), lookup, constant-time hash comparison,
    /// revoked, expired, not yet valid, idle, scopes, then the use limit (so a request refused for
    /// scope does not consume a use), then usage is recorded. Failures after the lookup append a
    /// best-effort `Denied` event.
    pub async fn validate(
        &self,
        token: &str,
        required: &[Scope],
    ) -> Result<ValidatedToken, ValidationError> {
        self.validate_with(token, required, &Context::new()).await
    }

    /// [`validate`](Self::validate) with the caller's context for audit events.
    pub async fn validate_with(
        &self,
        token: &str,
        required: &[Scope],
        ctx: &Context,
    ) -> Result<ValidatedToken, ValidationError> {
        if let Some(bad) = required.iter().find(|s| !s.is_concrete()) {
            return Err(ValidationError::InvalidRequirement(bad.clone()));
        }
        let parsed = self.parse_own(token)?;
        let id = parsed.id();
        let Some(record) = self.inner.store.get(id).await? else {
            let now = self.now();
            let fingerprint = self.keyring().fingerprint(token.as_bytes());
            let event = AuditEvent::new(AuditKind::Denied, now)
                .with_fingerprint(fingerprint.clone())
                .with_context(ctx)
                .with_reason(ValidationError::UnknownToken.reason_code());
            self.deny(&fingerprint, event, now).await;
            return Err(ValidationError::UnknownToken);
        };
        let now = self.now();
        let result = self.check_record(&parsed, &record, required, now).await;
        match result {
            Ok(()) => {
                self.note_use(&record, ctx, now).await?;
                Ok(ValidatedToken { record })
            }
            Err(error) => {
                if !matches!(error, ValidationError::Store(_)) {
                    let event = AuditEvent::new(AuditKind::Denied, now)
                        .with_token(record.id, record.subject.clone())
                        .with_context(ctx)
                        .with_reason(error.reason_code());
                    self.deny(&record.id.to_string(), event, now).await;
                }
                Err(error)
            }
        }
    }

    /// Format, checksum and prefix checks: no store access.
    fn parse_own<'a>(&self, token: &'a str) -> Result<ParsedToken<'a>, ValidationError> {
        let rejected = || {
            self.inner
                .stats
                .rejected_before_store
                .fetch_add(1, Ordering::Relaxed);
        };
        let parsed = parse_token(token).map_err(|error| {
            rejected();
            match error {
                FormatError::BadChecksum => ValidationError::BadChecksum,
                other => ValidationError::Malformed(other),
            }
        })?;
        if parsed.prefix() != self.inner.prefix.as_str() {
            rejected();
            return Err(ValidationError::ForeignPrefix);
        }
        Ok(parsed)
    }

    /// Proof of possession: the presented secret matches the stored hash (constant-time), and the
    /// token was issued under the prefix it is presented with. The prefix is not covered by the
    /// hash: without that check a token issued under one prefix (`acme_test`) would pass under
    /// another (`acme_live`) sharing store and key — in validation, introspection and revocation.
    fn verify_possession(
        &self,
        parsed: &ParsedToken<'_>,
        record: &TokenRecord,
    ) -> Result<(), ValidationError> {
        self.verify_secret(parsed, record)?;
        if record.prefix != parsed.prefix() {
            return Err(ValidationError::ForeignPrefix);
        }
        Ok(())
    }

    /// Constant-time comparison of the presented secret with the stored hash.
    fn verify_secret(
        &self,
        parsed: &ParsedToken<'_>,
        record: &TokenRecord,
    ) -> Result<(), ValidationError> {
        let keyring = self.keyring();
        match keyring.verify(
            record.hash_key_id,
            &record.id,
            parsed.secret_bytes(),
            &record.hash,
        ) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ValidationError::WrongSecret),
            Err(KeyringError::UnknownKey(key)) => Err(ValidationError::UnknownHashKey(key)),
            Err(_) => Err(ValidationError::WrongSecret),
        }
    }

    /// Looks up a presented token and proves possession, without recording a use or an event.
    async fn possessed(&self, token: &str) -> Result<Option<Arc<TokenRecord>>, ValidationError> {
        let parsed = match self.parse_own(token) {
            Ok(parsed) => parsed,
            Err(_) => return Ok(None),
        };
        let Some(record) = self.inner.store.get(parsed.id()).await? else {
            return Ok(None);
        };
        Ok(self
            .verify_possession(&parsed, &record)
            .ok()
            .map(|()| record))
    }

    /// Token introspection (RFC 7662 style): the identity if `token` is active now, `None` for
    /// anything else (malformed, unknown, wrong secret, revoked, expired, idle, used up). Unlike
    /// [`validate`](Self::validate) it neither records a use nor consumes one of `max_uses`, and
    /// writes no audit event. Errors only when the store fails.
    pub async fn introspect(&self, token: &str) -> Result<Option<ValidatedToken>, StoreError> {
        let record = match self.possessed(token).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(ValidationError::Store(e)) => return Err(e),
            Err(_) => return Ok(None),
        };
        let active = self.state_of(&record, self.now()) == TokenState::Active;
        Ok(active.then_some(ValidatedToken { record }))
    }

    /// Revokes the token presented as a string (RFC 7009 style: possession is enough to revoke,
    /// so anyone holding a leaked token can kill it). Returns the revoked ids (the token and its
    /// derived descendants); an unknown, malformed or wrong-secret string revokes nothing and is
    /// not an error.
    pub async fn revoke_presented(
        &self,
        token: &str,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let record = match self.possessed(token).await {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(Vec::new()),
            Err(ValidationError::Store(e)) => return Err(e.into()),
            Err(_) => return Ok(Vec::new()),
        };
        self.revoke_with(RevokeSelector::Token(record.id), reason, ctx)
            .await
    }

    async fn check_record(
        &self,
        parsed: &ParsedToken<'_>,
        record: &TokenRecord,
        required: &[Scope],
        now: OffsetDateTime,
    ) -> Result<(), ValidationError> {
        self.verify_possession(parsed, record)?;
        if let Some(error) = ValidationError::from_state(self.state_of(record, now)) {
            return Err(error);
        }
        let missing: Vec<Scope> = required
            .iter()
            .filter(|r| !record.scopes.permits(r))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(ValidationError::InsufficientScope { missing });
        }
        if record.max_uses.is_some() {
            return match self.inner.store.consume_use(record.id, now).await? {
                UseOutcome::Counted(_) => Ok(()),
                UseOutcome::LimitReached => Err(ValidationError::UseLimitReached),
                UseOutcome::NotFound => Err(ValidationError::UnknownToken),
                // Revoked, rotated or expired between the read and the atomic update.
                _ => Err(match self.inner.store.get(record.id).await? {
                    Some(fresh) => ValidationError::from_state(fresh.state_at(now)).unwrap_or(
                        if fresh.rotated_to.is_some() {
                            ValidationError::Expired
                        } else {
                            ValidationError::Revoked
                        },
                    ),
                    None => ValidationError::UnknownToken,
                }),
            };
        }
        if let Some(batch) = self
            .inner
            .usage
            .record(record.id, now, self.inner.flush_interval)
        {
            self.write_usage(batch).await;
        }
        Ok(())
    }

    /// The state at `now`, taking this process's buffered usage into account.
    fn state_of(&self, record: &TokenRecord, now: OffsetDateTime) -> TokenState {
        let buffered = if record.idle_timeout.is_some() {
            self.inner.usage.last_used(&record.id)
        } else {
            None
        };
        record.state_with_last_use(now, buffered)
    }

    async fn write_usage(&self, batch: Vec<crate::store::UsageUpdate>) -> bool {
        if batch.is_empty() {
            return true;
        }
        match self.inner.store.record_usage(&batch).await {
            Ok(()) => true,
            Err(_) => {
                self.inner
                    .stats
                    .usage_flush_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.usage.restore(batch);
                false
            }
        }
    }

    /// Flushes buffered usage if `id` has any, so the store (which re-checks the token's state in
    /// the transaction of a derive or rotate) does not see it idle when this process knows better.
    async fn flush_usage_of(&self, id: TokenId) -> Result<(), Error> {
        if self.inner.usage.pending(&id).is_some() {
            self.flush_usage().await?;
        }
        Ok(())
    }

    /// Writes buffered usage to the store now (call on shutdown; the sweeper calls it too).
    /// A failed batch is kept for the next flush and reported here.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        let batch = self.inner.usage.take(self.now());
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.store.record_usage(&batch).await {
            Ok(()) => Ok(()),
            Err(error) => {
                self.inner
                    .stats
                    .usage_flush_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.usage.restore(batch);
                Err(error.into())
            }
        }
    }

    /// Appends a validation-time or policy event. Best effort by design: an unavailable audit log
    /// must not turn validation into an outage. Failures are counted in
    /// [`ManagerStats::denied_events_dropped`].
    async fn append_best_effort(&self, event: AuditEvent) -> bool {
        let sink_copy = self.inner.sink.is_some().then(|| event.clone());
        if self.inner.store.append_audit(vec![event]).await.is_err() {
            self.inner
                .stats
                .denied_events_dropped
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if let Some(event) = sink_copy {
            self.to_sink(&event);
        }
        true
    }

    /// Writes a `Denied` event unless one for the same key was written in this window.
    async fn deny(&self, key: &str, event: AuditEvent, now: OffsetDateTime) {
        match self.inner.denials.admit(key, now) {
            Admission::Suppress => {
                self.inner
                    .stats
                    .denied_events_coalesced
                    .fetch_add(1, Ordering::Relaxed);
            }
            Admission::Write { suppressed } => {
                let event = if suppressed > 0 {
                    event.with_detail(format!("coalesced={suppressed}"))
                } else {
                    event
                };
                self.append_best_effort(event).await;
            }
        }
    }

    /// Writes a `Used` event if configured; `Err` only in strict mode when it cannot be written.
    async fn note_use(
        &self,
        record: &TokenRecord,
        ctx: &Context,
        now: OffsetDateTime,
    ) -> Result<(), ValidationError> {
        let due = match self.inner.use_audit {
            UseAudit::Off => false,
            UseAudit::Every => true,
            UseAudit::OneIn(n) => {
                let count = self.inner.use_counter.fetch_add(1, Ordering::Relaxed);
                n <= 1 || count.is_multiple_of(u64::from(n))
            }
        };
        if !due {
            return Ok(());
        }
        let event = AuditEvent::new(AuditKind::Used, now)
            .with_token(record.id, record.subject.clone())
            .with_context(ctx);
        if self.inner.strict_validation_audit {
            let copy = event.clone();
            self.inner.store.append_audit(vec![event]).await?;
            self.to_sink(&copy);
            Ok(())
        } else {
            self.append_best_effort(event).await;
            Ok(())
        }
    }

    // ----- rotate ----------------------------------------------------------------------------

    /// Replaces `id` with a new token carrying the same subject, scopes, labels, name, idle
    /// timeout, remaining uses and expiry ceiling (rotation never extends lifetime). The old token
    /// stays valid for `min(grace, its remaining lifetime)`; `Duration::ZERO` ends it now. A token
    /// with `max_uses` always rotates with zero grace (two live copies would double its budget).
    /// The rotation must pass the current policy's scope ceiling and expiry rules.
    pub async fn rotate(&self, id: TokenId, grace: Duration) -> Result<IssuedToken, Error> {
        self.rotate_with(id, grace, &Context::new()).await
    }

    /// [`rotate`](Self::rotate) with the caller's context for audit events.
    pub async fn rotate_with(
        &self,
        id: TokenId,
        grace: Duration,
        ctx: &Context,
    ) -> Result<IssuedToken, Error> {
        self.flush_usage_of(id).await?;
        let old = self.inner.store.get(id).await?.ok_or(Error::NotFound(id))?;
        // After the round trips, as in `derive`.
        let now = self.now();
        if let Some(successor) = old.rotated_to {
            return Err(Error::AlreadyRotated { id, successor });
        }
        let state = self.state_of(&old, now);
        if state != TokenState::Active {
            return Err(Error::NotActive { id, state });
        }
        let max_grace = self.inner.policy.max_rotation_grace();
        if grace > max_grace {
            return Err(PolicyViolation::GraceExceedsMax {
                requested: grace,
                max: max_grace,
            }
            .into());
        }
        // The policy may have narrowed since the token was issued: a rotation re-issues, so it
        // must pass today's ceiling and expiry rules.
        self.inner.policy.check_ceiling(&old.subject, &old.scopes)?;
        if old.expires_at.is_none() && !self.inner.policy.allows_non_expiring() {
            return Err(PolicyViolation::ExpiryRequired.into());
        }
        // A use-limited token cannot have two live copies (that would double its budget): its
        // predecessor ends at once, and the store hands the successor the uses left at commit.
        let grace = if old.max_uses.is_some() {
            Duration::ZERO
        } else {
            grace
        };
        let token = PlaintextToken::generate(&self.inner.prefix)?;
        let (hash_key_id, hash) = self
            .keyring()
            .hash_current(&token.id(), token.secret_bytes());
        let mut successor = (*old).clone();
        successor.id = token.id();
        successor.hash = hash;
        successor.hash_key_id = hash_key_id;
        successor.prefix = self.inner.prefix.as_str().to_owned();
        successor.created_at = now;
        successor.created_by = ctx.actor.clone();
        successor.not_before = None;
        successor.last_used_at = None;
        successor.use_count = 0;
        successor.max_uses = old.max_uses.map(|m| m.saturating_sub(old.use_count));
        successor.rotated_from = Some(id);
        successor.rotated_to = None;
        let grace_end = add(now, grace);
        let predecessor_expires_at = old.expires_at.map_or(grace_end, |e| e.min(grace_end));
        let events = vec![
            AuditEvent::new(AuditKind::Rotated, now)
                .with_token(id, old.subject.clone())
                .with_context(ctx)
                .with_detail(format!("successor={}", successor.id)),
            AuditEvent::new(AuditKind::Issued, now)
                .with_token(successor.id, old.subject.clone())
                .with_context(ctx)
                .with_detail(format!("rotated_from={id}")),
        ];
        let sink_events = if self.inner.sink.is_some() {
            events.clone()
        } else {
            Vec::new()
        };
        let outcome = self
            .inner
            .store
            .rotate(RotateToken::new(
                id,
                predecessor_expires_at,
                successor.clone(),
                now,
                events,
            ))
            .await?;
        match outcome {
            RotateOutcome::Rotated => {
                for event in &sink_events {
                    self.to_sink(event);
                }
                Ok(IssuedToken {
                    token,
                    record: successor,
                })
            }
            RotateOutcome::NotFound => Err(Error::NotFound(id)),
            RotateOutcome::NotActive(state) => Err(Error::NotActive { id, state }),
            RotateOutcome::AlreadyRotated(successor) => {
                Err(Error::AlreadyRotated { id, successor })
            }
        }
    }

    // ----- revoke ----------------------------------------------------------------------------

    /// Revokes what `selector` matches, plus everything derived from it. Idempotent: returns the
    /// ids revoked by this call (already-revoked tokens are not repeated). Once this returns, no
    /// validation through this store accepts the tokens.
    pub async fn revoke(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
    ) -> Result<Vec<TokenId>, Error> {
        self.revoke_with(selector, reason, &Context::new()).await
    }

    /// [`revoke`](Self::revoke) with the caller's context for audit events.
    pub async fn revoke_with(
        &self,
        selector: RevokeSelector,
        reason: impl Into<String>,
        ctx: &Context,
    ) -> Result<Vec<TokenId>, Error> {
        let request = RevokeRequest::new(selector, self.now(), reason, ctx.clone());
        let revoked = self.inner.store.revoke(&request).await?;
        if self.inner.sink.is_some() {
            for id in &revoked {
                let mut event = AuditEvent::new(AuditKind::Revoked, request.at)
                    .with_context(&request.context)
                    .with_reason(request.reason.clone());
                event.token_id = Some(*id);
                self.to_sink(&event);
            }
        }
        Ok(revoked)
    }

    // ----- read ------------------------------------------------------------------------------

    /// The record of `id` (with this process's not-yet-flushed usage merged in), if it exists.
    pub async fn inspect(&self, id: TokenId) -> Result<Option<TokenRecord>, Error> {
        let Some(record) = self.inner.store.get(id).await? else {
            return Ok(None);
        };
        let mut record = (*record).clone();
        if let Some(pending) = self.inner.usage.pending(&id) {
            record.use_count += pending.uses;
            record.last_used_at = record.last_used_at.max(Some(pending.last_used_at));
        }
        Ok(Some(record))
    }

    /// Lists records matching `filter`, one page at a time, ordered by creation.
    pub async fn list(&self, filter: ListFilter, page: Page) -> Result<TokenPage, Error> {
        if page.limit == 0 || page.limit > MAX_PAGE_SIZE {
            return Err(Error::InvalidRequest {
                field: "page.limit",
                problem: format!("is {}; allowed is 1 to {MAX_PAGE_SIZE}", page.limit),
            });
        }
        let query = ListQuery::new(filter, self.now(), page.after, page.limit + 1);
        let mut items = self.inner.store.list(&query).await?;
        let next = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(Cursor::after)
        } else {
            None
        };
        Ok(TokenPage { items, next })
    }

    /// The audit events of one token, in order.
    pub async fn audit(&self, id: TokenId) -> Result<Vec<AuditRecord>, Error> {
        Ok(self.inner.store.audit_for_token(id).await?)
    }

    // ----- keys ------------------------------------------------------------------------------

    /// Adds `key` and makes it current: new tokens are hashed with it, existing tokens keep
    /// validating under their own key.
    pub fn rotate_hash_key(&self, key: HashKey) -> Result<(), Error> {
        let mut guard = self
            .inner
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let id = key.id();
        if guard.contains(id) {
            // Replacing key material under an id in use would silently invalidate its tokens.
            return Err(KeyringError::DuplicateKey(id).into());
        }
        let next = (**guard).clone().with_key(key).with_current(id)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// Removes a non-current key, refused while live (unrevoked, unexpired) tokens still use it.
    pub async fn retire_hash_key(&self, key: KeyId) -> Result<(), Error> {
        self.keyring().without(key)?;
        let records = self
            .inner
            .store
            .count_live_with_key(key, self.now())
            .await?;
        if records > 0 {
            return Err(KeyringError::KeyInUse { key, records }.into());
        }
        let mut guard = self
            .inner
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = guard.without(key)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// The current hashing key id.
    pub fn current_hash_key(&self) -> KeyId {
        self.keyring().current_id()
    }
}

enum PolicyOrError {
    Policy(PolicyViolation),
    Error(Error),
}

impl From<PolicyViolation> for PolicyOrError {
    fn from(v: PolicyViolation) -> Self {
        Self::Policy(v)
    }
}

impl From<Error> for PolicyOrError {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

fn add(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    crate::clock::truncate_to_micros(
        t.saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
    )
}

impl From<StoreError> for PolicyOrError {
    fn from(e: StoreError) -> Self {
        Self::Error(Error::Store(e))
    }
}
