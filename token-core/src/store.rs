//! The storage contract: [`TokenStore`].
//!
//! A store persists [`TokenRecord`]s and [`AuditEvent`]s. It never sees a secret. Every
//! state-changing method receives the audit events describing the change and must commit the change
//! and the events in one transaction: if the events cannot be written, the change does not happen.
//! Conditional operations (live-token limits, derive-from-an-active-parent, rotate-once, use limits)
//! are checked inside the same transaction, so concurrent callers cannot slip past them.
//!
//! The trait is object-safe: the manager holds an `Arc<dyn TokenStore>`. Blanket implementations
//! for `Arc<T>` and `Box<T>` let hosts share one store.
//!
//! Implementations prove conformance by running the `token-testkit` suite (one line per store
//! crate). A complete in-process implementation lives in `token-store-memory`.

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, Context};
use crate::clock::{from_unix_micros, to_unix_micros};
use crate::format::TokenId;
use crate::keyring::KeyId;
use crate::record::{Revocation, TokenRecord, TokenState};

/// Errors a store reports. Match on the variants; `Backend` wraps driver errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this id already exists.
    #[error("token {id} already exists in the store")]
    AlreadyExists {
        /// The id.
        id: TokenId,
    },
    /// No record with this id.
    #[error("token {id} not found in the store")]
    NotFound {
        /// The id.
        id: TokenId,
    },
    /// A concurrent change conflicts with this one; retrying may succeed.
    #[error("conflicting concurrent change: {message}")]
    Conflict {
        /// What conflicted.
        message: String,
    },
    /// Stored data is invalid (a corrupt row, an unparsable scope, a truncated hash). The record is
    /// refused, never used.
    #[error("{store} store holds invalid data: {message}")]
    Corrupt {
        /// Store name.
        store: &'static str,
        /// What is invalid, naming the row and column.
        message: String,
    },
    /// The database has not been migrated (or only partly): run the store's `migrate()`.
    #[error(
        "{store} store schema is at version {} but this library needs {required}; run migrate() first",
        found.map_or_else(|| "none".to_owned(), |v| v.to_string())
    )]
    NotMigrated {
        /// Store name.
        store: &'static str,
        /// Version found, if any.
        found: Option<i64>,
        /// Version required.
        required: i64,
    },
    /// The database schema is newer than this library understands.
    #[error(
        "{store} store schema version {found} is newer than this library supports ({supported}); upgrade the library"
    )]
    SchemaTooNew {
        /// Store name.
        store: &'static str,
        /// Version found in the database.
        found: i64,
        /// Newest version this library knows.
        supported: i64,
    },
    /// The backend failed (I/O, connection, driver).
    #[error("{store} store backend error: {source}")]
    Backend {
        /// Store name.
        store: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

/// What the manager asks of an insert besides the record itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InsertToken {
    /// The record to insert. If `record.parent_id` is set, the parent must be
    /// [`TokenState::Active`] at `now`, checked in the same transaction (under a lock that a
    /// revocation of the parent also takes), so no child escapes a concurrent family revocation;
    /// and the child must not outlive the parent nor have more uses than the parent has left, as
    /// read there ([`InsertToken::child_outlives`], [`InsertToken::child_exceeds_uses`]), so a
    /// concurrent rotation or use of the parent cannot be bypassed.
    pub record: TokenRecord,
    /// Maximum live tokens for `record.subject`, counted in the same transaction.
    pub max_live_for_subject: Option<u32>,
    /// The manager's current time, for the parent check and the live count.
    pub now: OffsetDateTime,
    /// Events committed with the insert.
    pub events: Vec<AuditEvent>,
}

impl InsertToken {
    /// The parent's uses left if `child` may be used more often than that (reference check for
    /// stores): a use-limited parent only has use-limited children.
    pub fn child_exceeds_uses(parent: &TokenRecord, child: &TokenRecord) -> Option<u64> {
        let remaining = parent.max_uses?.saturating_sub(parent.use_count);
        match child.max_uses {
            Some(uses) if uses <= remaining => None,
            _ => Some(remaining),
        }
    }

    /// The parent's expiry if `child` would outlive `parent` (reference check for stores).
    pub fn child_outlives(parent: &TokenRecord, child: &TokenRecord) -> Option<OffsetDateTime> {
        let parent_end = parent.expires_at?;
        match child.expires_at {
            Some(end) if end <= parent_end => None,
            _ => Some(parent_end),
        }
    }

    /// Builds an insert request.
    pub fn new(
        record: TokenRecord,
        max_live_for_subject: Option<u32>,
        now: OffsetDateTime,
        events: Vec<AuditEvent>,
    ) -> Self {
        Self {
            record,
            max_live_for_subject,
            now,
            events,
        }
    }
}

/// Result of [`TokenStore::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Inserted with its events.
    Inserted,
    /// The subject already holds `max_live_for_subject` live tokens; nothing was written.
    SubjectLimitReached,
    /// The parent is missing or not active; nothing was written.
    ParentNotActive {
        /// The parent's state, `None` if it does not exist.
        state: Option<TokenState>,
    },
    /// The child may be used more often than the parent has uses left; nothing was written.
    UsesExceedParent {
        /// The parent's uses left as read in the transaction.
        remaining: u64,
    },
    /// The child would expire after the parent (whose expiry may just have been shortened by a
    /// rotation); nothing was written.
    OutlivesParent {
        /// The parent's expiry as read in the transaction.
        parent_expires_at: OffsetDateTime,
    },
}

/// A rotation: mark the predecessor replaced, shorten its life, insert the successor.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RotateToken {
    /// The token being replaced. It must be active at `now` and have no successor yet.
    pub predecessor: TokenId,
    /// The predecessor's new `expires_at` (end of its grace window).
    pub predecessor_expires_at: OffsetDateTime,
    /// The successor record (its `rotated_from` names the predecessor). If the predecessor has
    /// `max_uses`, the store sets the successor's `max_uses` to the predecessor's uses left as
    /// read inside the transaction (`max_uses - use_count`), so no use is granted twice.
    pub successor: TokenRecord,
    /// The manager's current time.
    pub now: OffsetDateTime,
    /// Events committed with the rotation.
    pub events: Vec<AuditEvent>,
}

impl RotateToken {
    /// Builds a rotation request.
    pub fn new(
        predecessor: TokenId,
        predecessor_expires_at: OffsetDateTime,
        successor: TokenRecord,
        now: OffsetDateTime,
        events: Vec<AuditEvent>,
    ) -> Self {
        Self {
            predecessor,
            predecessor_expires_at,
            successor,
            now,
            events,
        }
    }
}

/// Result of [`TokenStore::rotate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// Rotated.
    Rotated,
    /// No such predecessor.
    NotFound,
    /// The predecessor is not active.
    NotActive(TokenState),
    /// The predecessor already has a successor (it is in, or past, its grace window).
    AlreadyRotated(TokenId),
}

/// Which tokens a revocation targets. Every selector also revokes all tokens derived (directly or
/// transitively) from a matched token: a derived token never outlives its parent's revocation.
///
/// ```
/// use token_core::{RevokeSelector, TokenId};
/// let one = RevokeSelector::Token(TokenId::from_bytes([1; 16]));
/// let everyone_of = RevokeSelector::Subject("user:42".into());
/// let breach = RevokeSelector::IssuedBefore(time::OffsetDateTime::now_utc());
/// # let _ = (one, everyone_of, breach);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeSelector {
    /// One token (and its derived descendants).
    Token(TokenId),
    /// Every token of a subject.
    Subject(String),
    /// The whole family the token belongs to: the root, everything derived from it and every
    /// rotation successor (all records sharing its `family_id`).
    Family(TokenId),
    /// Every token carrying this label value.
    Label {
        /// Label key.
        key: String,
        /// Label value.
        value: String,
    },
    /// Every token created strictly before this instant (e.g. after a breach).
    IssuedBefore(OffsetDateTime),
    /// Every live token (not revoked, not expired at the request time) not used since this instant
    /// (`last_used_at`, or `created_at` if never used, strictly before it). Used by retention.
    UnusedSince(OffsetDateTime),
}

/// A revocation as handed to the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RevokeRequest {
    /// What to revoke.
    pub selector: RevokeSelector,
    /// The revocation time.
    pub at: OffsetDateTime,
    /// Why.
    pub reason: String,
    /// Who, and from where.
    pub context: Context,
    /// Revoke at most this many matched, not-yet-revoked tokens (plus their descendants); `None`
    /// for all. Already-revoked matches do not count, so a bounded call always makes progress.
    /// With [`RevokeSelector::UnusedSince`] the longest-unused tokens go first. Sweeps use it to
    /// bound a pass.
    pub limit: Option<u32>,
}

impl RevokeRequest {
    /// Builds a revocation request.
    pub fn new(
        selector: RevokeSelector,
        at: OffsetDateTime,
        reason: impl Into<String>,
        context: Context,
    ) -> Self {
        Self {
            selector,
            at,
            reason: crate::audit::bounded(reason.into()),
            context,
            limit: None,
        }
    }

    /// Bounds how many matched tokens one call revokes.
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The revocation to store on each revoked record.
    pub fn revocation(&self) -> Revocation {
        Revocation {
            at: self.at,
            reason: self.reason.clone(),
            actor: self.context.actor.clone(),
        }
    }

    /// The `Revoked` event to append for `record`, in the same transaction.
    pub fn event_for(&self, record: &TokenRecord) -> AuditEvent {
        self.event_for_row(record.id, &record.subject)
    }

    /// The `Revoked` event for a row known only by id and subject (e.g. a row whose other columns
    /// fail to decode: revocation must still succeed).
    pub fn event_for_row(&self, id: TokenId, subject: &str) -> AuditEvent {
        AuditEvent::new(AuditKind::Revoked, self.at)
            .with_token(id, subject)
            .with_context(&self.context)
            .with_reason(self.reason.clone())
    }
}

/// Result of [`TokenStore::consume_use`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UseOutcome {
    /// Counted; the new `use_count`.
    Counted(u64),
    /// `use_count` had already reached `max_uses`; nothing changed.
    LimitReached,
    /// No such token.
    NotFound,
    /// The token is revoked, rotated or expired at `now`; nothing changed.
    NotActive,
}

/// A coalesced usage update: the token was used `uses` times, last at `last_used_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageUpdate {
    /// Token.
    pub id: TokenId,
    /// Latest use in this batch; stores keep the maximum of this and what they hold.
    pub last_used_at: OffsetDateTime,
    /// Uses in this batch, added to `use_count`.
    pub uses: u64,
}

/// Filters for [`TokenStore::list`] and [`TokenManager::list`](crate::TokenManager::list). All set
/// filters must match.
///
/// ```
/// use token_core::{ListFilter, TokenState};
/// let filter = ListFilter::all()
///     .subject("user:42")
///     .label("team", "payments")
///     .state(TokenState::Active);
/// assert_eq!(filter.subject.as_deref(), Some("user:42"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only this subject.
    pub subject: Option<String>,
    /// Only tokens carrying this label value.
    pub label: Option<(String, String)>,
    /// Only tokens in this state at the query's `now` (as [`TokenRecord::state_at`] computes it
    /// from stored columns).
    pub state: Option<TokenState>,
    /// Only members of this family.
    pub family: Option<TokenId>,
    /// Only tokens not used since this instant (`last_used_at`, else `created_at`, strictly
    /// before it): the stale-token report.
    pub unused_since: Option<OffsetDateTime>,
}

impl ListFilter {
    /// No filtering.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only `subject`'s tokens.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Only tokens with label `key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.label = Some((key.into(), value.into()));
        self
    }

    /// Only tokens in `state`.
    pub fn state(mut self, state: TokenState) -> Self {
        self.state = Some(state);
        self
    }

    /// Only members of `family`.
    pub fn family(mut self, family: TokenId) -> Self {
        self.family = Some(family);
        self
    }

    /// Only tokens not used since `at`.
    pub fn unused_since(mut self, at: OffsetDateTime) -> Self {
        self.unused_since = Some(at);
        self
    }

    /// Whether `record` matches at `now` (the reference semantics SQL stores must reproduce).
    pub fn matches(&self, record: &TokenRecord, now: OffsetDateTime) -> bool {
        self.subject.as_ref().is_none_or(|s| *s == record.subject)
            && self
                .label
                .as_ref()
                .is_none_or(|(k, v)| record.labels.get(k) == Some(v))
            && self.state.is_none_or(|s| record.state_at(now) == s)
            && self.family.is_none_or(|f| record.family_id == f)
            && self
                .unused_since
                .is_none_or(|t| record.last_used_at.unwrap_or(record.created_at) < t)
    }
}

/// A position in the listing order `(created_at, id)`; listing resumes strictly after it.
///
/// Opaque to users: it displays and parses as a short string for APIs.
///
/// ```
/// use token_core::{Cursor, TokenId};
/// let cursor = Cursor::new(time::OffsetDateTime::UNIX_EPOCH, TokenId::from_bytes([1; 16]));
/// assert_eq!(cursor.to_string().parse::<Cursor>()?, cursor);
/// # Ok::<(), token_core::FormatError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Creation time of the last item returned.
    pub created_at: OffsetDateTime,
    /// Id of the last item returned.
    pub id: TokenId,
}

impl Cursor {
    /// The cursor just after `(created_at, id)`.
    pub fn new(created_at: OffsetDateTime, id: TokenId) -> Self {
        Self { created_at, id }
    }

    /// The cursor just after `record`.
    pub fn after(record: &TokenRecord) -> Self {
        Self::new(record.created_at, record.id)
    }

    /// Whether `record` sorts strictly after this cursor.
    pub fn precedes(&self, record: &TokenRecord) -> bool {
        (record.created_at, record.id) > (self.created_at, self.id)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", to_unix_micros(self.created_at), self.id)
    }
}

impl FromStr for Cursor {
    type Err = crate::format::FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (micros, id) = s
            .split_once('.')
            .ok_or(crate::format::FormatError::InvalidId)?;
        let created_at = micros
            .parse::<i64>()
            .ok()
            .and_then(from_unix_micros)
            .ok_or(crate::format::FormatError::InvalidId)?;
        Ok(Self::new(created_at, id.parse()?))
    }
}

/// A listing request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListQuery {
    /// Filters.
    pub filter: ListFilter,
    /// Time used to evaluate state filters.
    pub now: OffsetDateTime,
    /// Resume after this position.
    pub after: Option<Cursor>,
    /// At most this many records, in `(created_at, id)` order.
    pub limit: u32,
}

impl ListQuery {
    /// Builds a listing request.
    pub fn new(filter: ListFilter, now: OffsetDateTime, after: Option<Cursor>, limit: u32) -> Self {
        Self {
            filter,
            now,
            after,
            limit,
        }
    }
}

/// What [`TokenStore::purge`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeRequest {
    /// The sweep's time (for the `Purged` events).
    pub now: OffsetDateTime,
    /// Delete records revoked strictly before this instant.
    pub revoked_before: OffsetDateTime,
    /// Delete records (revoked or not) whose `expires_at` is strictly before this instant.
    pub expired_before: OffsetDateTime,
    /// Delete at most this many records.
    pub limit: u32,
}

impl PurgeRequest {
    /// Builds a purge request.
    pub fn new(
        now: OffsetDateTime,
        revoked_before: OffsetDateTime,
        expired_before: OffsetDateTime,
        limit: u32,
    ) -> Self {
        Self {
            now,
            revoked_before,
            expired_before,
            limit,
        }
    }

    /// Whether `record` is due (reference semantics for stores).
    pub fn is_due(&self, record: &TokenRecord) -> bool {
        record
            .revocation
            .as_ref()
            .is_some_and(|r| r.at < self.revoked_before)
            || record.expires_at.is_some_and(|e| e < self.expired_before)
    }
}

/// What a revocation feed announces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationNotice {
    /// These tokens were revoked (in any process sharing the store).
    Revoked(Vec<TokenId>),
    /// These tokens were ended or narrowed early other than by revocation (a rotation shortened
    /// the predecessor's life to its grace window): drop cached copies, they are not revoked.
    Changed(Vec<TokenId>),
    /// The feed lost notices (listener reconnect, slow consumer): anything cached from the store
    /// must be dropped, because a revocation may have been missed.
    Interrupted,
}

/// A subscription to a store's revocation feed. Ends when the store is dropped.
pub type RevocationStream =
    std::pin::Pin<Box<dyn futures_core::Stream<Item = RevocationNotice> + Send + 'static>>;

/// Which use [`TokenStore::consume_use`] counts: one use of `id`, at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeUse {
    /// The token (it has `max_uses`).
    pub id: TokenId,
    /// The manager's current time: the token must be live then, and `last_used_at` moves to it.
    pub now: OffsetDateTime,
}

impl ConsumeUse {
    /// Builds a use-counting request.
    pub fn new(id: TokenId, now: OffsetDateTime) -> Self {
        Self { id, now }
    }
}

/// What [`TokenStore::count_live_with_key`] counts: records hashed with `key` that are neither
/// revoked nor expired at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountLiveWithKey {
    /// The hash key.
    pub key: KeyId,
    /// The manager's current time.
    pub now: OffsetDateTime,
}

impl CountLiveWithKey {
    /// Builds a count request.
    pub fn new(key: KeyId, now: OffsetDateTime) -> Self {
        Self { key, now }
    }
}

/// What [`TokenStore::truncate_audit`] deletes: the oldest events older than `before`, at most
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TruncateAudit {
    /// Delete events with `at` strictly before this instant.
    pub before: OffsetDateTime,
    /// Delete at most this many.
    pub limit: u32,
}

impl TruncateAudit {
    /// Builds a truncation request.
    pub fn new(before: OffsetDateTime, limit: u32) -> Self {
        Self { before, limit }
    }
}

/// What [`TokenStore::mark_expired`] records: up to `limit` tokens expired at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MarkExpired {
    /// The sweep's time.
    pub now: OffsetDateTime,
    /// Record at most this many.
    pub limit: u32,
}

impl MarkExpired {
    /// Builds an expiry-recording request.
    pub fn new(now: OffsetDateTime, limit: u32) -> Self {
        Self { now, limit }
    }
}

/// What [`TokenStore::get_now`] knows without waiting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ImmediateLookup {
    /// The record, read without waiting.
    Found(Arc<TokenRecord>),
    /// The store holds no record with this id (known without waiting).
    Absent,
    /// The store cannot answer without waiting (I/O): call [`TokenStore::get`].
    MustWait,
}

/// Persistence for token records and audit events. See the [module docs](self).
///
/// One trait, in four groups of methods: **records** (`insert`, `get`, `list`,
/// `count_live_with_key`), **lifecycle changes** (`rotate`, `revoke`, `consume_use`,
/// `record_usage`), **the audit log** (`append_audit`, `query_audit`, `audit_checkpoint`,
/// `truncate_audit`), **sweeping** (`mark_expired`, `purge`) and **the revocation feed**
/// (`subscribe_revocations`). Every store needs all of them (a lifecycle change and its audit
/// events commit in one transaction, so the groups cannot live in different backends), which is
/// why they are not split into capability traits: that would only lengthen every bound and
/// multiply the forwarding impls.
///
/// Every method takes its arguments in one style: a request struct (or slice) by reference, or a
/// bare [`TokenId`] for a lookup. Methods that commit audit events with a change (`revoke`,
/// `mark_expired`, `purge`) return exactly the events they committed, so the manager hands its
/// [`AuditSink`](crate::AuditSink) what the store wrote.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// A short name for errors and logs (`"memory"`, `"sqlite"`).
    fn name(&self) -> &'static str;

    // ----- records -----

    /// Inserts a record and its events atomically, enforcing the conditions of [`InsertToken`].
    /// A duplicate id is [`StoreError::AlreadyExists`].
    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError>;

    /// Fetches a record by id.
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError>;

    /// Fetches a record by id if that needs no waiting (the store keeps records in memory): the
    /// validation hot path asks this first, so an in-memory lookup costs no boxed future. The
    /// default, for stores that do I/O, is [`ImmediateLookup::MustWait`]. An answer here must be
    /// the one [`get`](Self::get) would give at the same moment.
    fn get_now(&self, id: TokenId) -> ImmediateLookup {
        let _ = id;
        ImmediateLookup::MustWait
    }

    /// Lists records matching the query, ordered by `(created_at, id)`.
    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError>;

    /// Counts records hashed with `query.key` that are not revoked and not expired at
    /// `query.now`.
    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError>;

    // ----- lifecycle changes -----

    /// Rotates atomically (see [`RotateToken`]).
    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError>;

    /// Revokes every not-yet-revoked record the selector matches, plus their derived descendants,
    /// appending [`RevokeRequest::event_for`] per record in the same transaction. Returns the
    /// events it committed, one per revoked token (empty when all were already revoked:
    /// revocation is idempotent). When this returns, no reader of the store may see the records
    /// as unrevoked.
    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError>;

    /// Counts one use of a token with `max_uses`, atomically:
    /// `use_count = use_count + 1 WHERE use_count < max_uses AND revoked_at IS NULL AND
    /// rotated_to IS NULL AND (expires_at IS NULL OR expires_at > now)`, also setting
    /// `last_used_at`. A revoked, rotated or expired token is [`UseOutcome::NotActive`], so no use
    /// is counted after a revocation or a rotation committed (a use-limited token rotates without
    /// grace, and its successor already holds the uses left; `now` may lag the rotation's time).
    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError>;

    /// Applies coalesced usage: `use_count += uses`, `last_used_at = max(last_used_at, ..)`.
    /// Unknown ids are ignored (the token may have been purged).
    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<(), StoreError>;

    // ----- the audit log -----

    /// Appends events that accompany no state change (denials, policy violations).
    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// Audit events matching `query` ([`AuditQuery::matches`]), in sequence order, at most
    /// `query.limit`. One token's trail is [`AuditQuery::token`].
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// The checkpoint left by the latest [`truncate_audit`](Self::truncate_audit), if any.
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError>;

    /// Deletes the longest prefix of the trail (in sequence order, at most `request.limit`
    /// events) whose events all have `at < request.before` (it stops at the first newer event, so
    /// the remaining chain is unbroken), and records the last deleted event's sequence number and
    /// hash as the [`AuditCheckpoint`], in one transaction. Returns how many were deleted.
    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError>;

    // ----- sweeping -----

    /// Finds up to `request.limit` tokens that are expired at `request.now`, not revoked, and not
    /// yet recorded as expired; records them as expired (a store-internal marker, so each is
    /// reported once) and appends an `Expired` event per token ([`AuditEvent::by_sweeper`]) in
    /// one transaction. Returns the events it committed. Cost grows with the tokens found, not
    /// the table (index on expiry).
    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError>;

    /// Deletes up to `limit` records that [`PurgeRequest::is_due`], appending a `Purged` event per
    /// record in the same transaction. Audit events of purged tokens are kept. Returns the events
    /// it committed.
    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError>;

    // ----- the revocation feed -----

    /// Subscribes to committed revocations and other changes that end or narrow a token early
    /// (rotation: [`RevocationNotice::Changed`]), so caches (in this process or others sharing
    /// the store) can drop entries. `Ok(None)` when the store has no feed (the default); callers must
    /// then bound cache age instead. Every revocation committed after this returns is announced,
    /// or followed by [`RevocationNotice::Interrupted`].
    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        Ok(None)
    }
}

/// The token ids named by `events`, in order (what a revocation, expiry or purge touched).
pub fn event_token_ids(events: &[AuditEvent]) -> Vec<TokenId> {
    events.iter().filter_map(|e| e.token_id).collect()
}

/// Implements [`TokenStore`] for a wrapper by forwarding every method to `$inner` (an expression
/// of `self` that yields something implementing [`TokenStore`]). The generated impl denies
/// `clippy::missing_trait_methods`, so a defaulted method (such as `subscribe_revocations`) can
/// never go silently unforwarded when the trait grows.
macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: TokenStore + ?Sized> TokenStore for $ty {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
                (**self).insert(insert).await
            }
            async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
                (**self).get(id).await
            }
            fn get_now(&self, id: TokenId) -> ImmediateLookup {
                (**self).get_now(id)
            }
            async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
                (**self).list(query).await
            }
            async fn count_live_with_key(
                &self,
                query: &CountLiveWithKey,
            ) -> Result<u64, StoreError> {
                (**self).count_live_with_key(query).await
            }
            async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
                (**self).rotate(rotation).await
            }
            async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
                (**self).revoke(request).await
            }
            async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
                (**self).consume_use(request).await
            }
            async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<(), StoreError> {
                (**self).record_usage(updates).await
            }
            async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
                (**self).append_audit(events).await
            }
            async fn query_audit(
                &self,
                query: &AuditQuery,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                (**self).query_audit(query).await
            }
            async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
                (**self).audit_checkpoint().await
            }
            async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
                (**self).truncate_audit(request).await
            }
            async fn mark_expired(
                &self,
                request: &MarkExpired,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                (**self).mark_expired(request).await
            }
            async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
                (**self).purge(request).await
            }
            async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
                (**self).subscribe_revocations().await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);
