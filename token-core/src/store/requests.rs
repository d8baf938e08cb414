//! The request and outcome types of [`TokenStore`](super::TokenStore)'s methods, with the
//! reference semantics stores must reproduce ([`ListFilter::matches`], [`PurgeRequest::is_due`],
//! [`InsertToken::child_outlives`], ...).

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::audit::{AuditEvent, AuditKind, Context};
use crate::clock::{from_unix_micros, to_unix_micros};
use crate::format::TokenId;
use crate::keyring::KeyId;
use crate::record::{Revocation, TokenRecord, TokenState};

/// What the manager asks of an insert besides the record itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InsertToken {
    /// The record to insert. Its `created_at` must not fall before the store's revocation
    /// cut-off ([`InsertToken::before_cutoff`]), checked in the same transaction (under the lock
    /// a [`RevokeSelector::IssuedBefore`] revocation also takes), so a token issued "before" a
    /// committed bulk revocation is never born live. If `record.parent_id` is set, the parent
    /// must be [`TokenState::Active`] at `now` and not rotated (a token in its grace window has
    /// no new children: they would not follow the successor), checked in the same transaction (under a lock that a
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
    /// The cut-off if a record created at `created_at` falls before it (reference check for
    /// stores). `cutoff` is the latest instant any committed [`RevokeSelector::IssuedBefore`]
    /// named: a store keeps it (the maximum, never lowered) and checks every insert and rotation
    /// successor against it under the same lock or transaction as the revocation.
    pub fn before_cutoff(
        created_at: OffsetDateTime,
        cutoff: Option<OffsetDateTime>,
    ) -> Option<OffsetDateTime> {
        cutoff.filter(|cutoff| created_at < *cutoff)
    }

    /// The parent's uses left at `now` if `child` may be used more often than that (reference
    /// check for stores): a use-limited parent only has use-limited children.
    pub fn child_exceeds_uses(
        parent: &TokenRecord,
        child: &TokenRecord,
        now: OffsetDateTime,
    ) -> Option<u64> {
        let remaining = parent.remaining_uses_at(now)?;
        match child.max_uses {
            Some(uses) if uses <= remaining => None,
            _ => Some(remaining),
        }
    }

    /// The field in which `child` would be wider than `parent` (reference check for stores, on
    /// the parent as read in the insert's transaction, so a concurrent update narrowing the
    /// parent cannot be bypassed): `scopes` not covered by the parent's, `dpop_jkt` other than
    /// the parent's binding, `idle_timeout` longer than the parent's, or `allowed_networks` not
    /// within the parent's (none at all, under a parent with one, is wider), `rate_limits` not
    /// within the parent's, or a `use_refill` more generous than the parent's (any refill under
    /// a use-limited parent without one).
    pub fn child_widens(parent: &TokenRecord, child: &TokenRecord) -> Option<&'static str> {
        if !parent.scopes.covers(&child.scopes) {
            return Some("scopes");
        }
        if !child.rate_limits.is_within(&parent.rate_limits) {
            return Some("rate_limits");
        }
        if parent.max_uses.is_some() {
            match (&parent.use_refill, &child.use_refill) {
                (Some(theirs), Some(mine)) if !mine.is_within(theirs) => return Some("use_refill"),
                (None, Some(_)) => return Some("use_refill"),
                _ => {}
            }
        }
        if parent.dpop_jkt.is_some() && child.dpop_jkt != parent.dpop_jkt {
            return Some("dpop_jkt");
        }
        if let Some(parent_idle) = parent.idle_timeout
            && child.idle_timeout.is_none_or(|idle| idle > parent_idle)
        {
            return Some("idle_timeout");
        }
        match (&parent.allowed_networks, &child.allowed_networks) {
            (Some(theirs), Some(mine)) if !theirs.covers(mine) => Some("allowed_networks"),
            (Some(_), None) => Some("allowed_networks"),
            _ => None,
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

/// Result of [`TokenStore::insert`](super::TokenStore::insert).
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
    /// The child would be wider than the parent as read in the transaction (an update narrowed
    /// the parent meanwhile; [`InsertToken::child_widens`]); nothing was written.
    WiderThanParent {
        /// The field (`scopes`, `allowed_networks`).
        field: &'static str,
    },
    /// The parent was rotated (it is in its grace window): derive from the successor; nothing
    /// was written.
    ParentRotated {
        /// The parent's successor.
        successor: TokenId,
    },
    /// The record's `created_at` falls before a committed [`RevokeSelector::IssuedBefore`]
    /// cut-off (the issue raced the revocation, or this instance's clock lags the revoker's);
    /// nothing was written.
    BeforeRevocationCutoff {
        /// The store's cut-off.
        cutoff: OffsetDateTime,
    },
}

/// A rotation: mark the predecessor replaced, shorten its life, insert the successor, and move
/// the predecessor's derived children under the successor (`parent_id`), so revoking the
/// successor reaches them and purging the predecessor orphans nothing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RotateToken {
    /// The token being replaced. It must be active at `now` and have no successor yet.
    pub predecessor: TokenId,
    /// The predecessor's new `expires_at` (end of its grace window).
    pub predecessor_expires_at: OffsetDateTime,
    /// The successor record (its `rotated_from` names the predecessor). The store sets its
    /// `parent_id` to the predecessor's as read inside the transaction (a concurrent rotation of
    /// the parent may have moved the predecessor under its own successor). If the predecessor has
    /// `max_uses`, the store sets the successor's `max_uses` to the predecessor's uses left as
    /// read inside the transaction (`max_uses - use_count`), so no use is granted twice.
    pub successor: TokenRecord,
    /// The manager's current time.
    pub now: OffsetDateTime,
    /// Events committed with the rotation.
    pub events: Vec<AuditEvent>,
}

impl RotateToken {
    /// The successor to insert, given the predecessor as read (and locked) inside the
    /// rotation's transaction (reference semantics for stores): the requested successor, under
    /// the predecessor's parent as read there (a concurrent rotation of the parent may have
    /// moved it), with the predecessor's grants as read there (scopes, network allowlist, idle
    /// timeout no longer than its own, an expiry no later than its own, its uses left), so an
    /// update that narrowed the predecessor after the manager read it is not undone. Its
    /// descriptive fields (name, description, labels, metadata) come along.
    pub fn successor_for(&self, predecessor: &TokenRecord) -> TokenRecord {
        let old = predecessor;
        let mut successor = self.successor.clone();
        successor.parent_id = old.parent_id;
        if old.use_refill.is_some() {
            // Credits that refill carry over as they stand: the same quota, the uses of the
            // current period and the same next refill.
            successor.max_uses = old.max_uses;
            successor.use_count = old.uses_at(self.now);
            successor.use_refill = old.use_refill;
            successor.next_refill_at = match old.next_refill_at {
                Some(next) if self.now >= next => old.next_refill_after(self.now),
                pending => pending,
            };
        } else if let Some(max) = old.max_uses {
            successor.max_uses = Some(max.saturating_sub(old.use_count));
            successor.use_refill = None;
            successor.next_refill_at = None;
        }
        successor.rate_limits.clone_from(&old.rate_limits);
        successor.scopes = old.scopes.clone();
        successor.allowed_networks.clone_from(&old.allowed_networks);
        successor.dpop_jkt.clone_from(&old.dpop_jkt);
        if let Some(idle) = old.idle_timeout {
            successor.idle_timeout = Some(successor.idle_timeout.map_or(idle, |s| s.min(idle)));
        }
        if let Some(end) = old.expires_at {
            successor.expires_at = Some(successor.expires_at.map_or(end, |s| s.min(end)));
        }
        successor.name.clone_from(&old.name);
        successor.description.clone_from(&old.description);
        successor.labels.clone_from(&old.labels);
        successor.metadata.clone_from(&old.metadata);
        successor
    }

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

/// Result of [`TokenStore::rotate`](super::TokenStore::rotate).
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
    /// The successor's `created_at` falls before a committed [`RevokeSelector::IssuedBefore`]
    /// cut-off ([`InsertToken::before_cutoff`]); nothing was written.
    BeforeRevocationCutoff {
        /// The store's cut-off.
        cutoff: OffsetDateTime,
    },
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
    /// Every token of a subject held by the store when the revocation commits. An issue for the
    /// subject that commits afterwards is a new token, and live: issuing is the application's
    /// decision (the user signed in again), not a token's, so there is no cut-off per subject
    /// (the same holds for [`Label`](Self::Label)). To lock a subject out, stop issuing for it,
    /// then revoke.
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
    /// Every token created strictly before this instant (e.g. after a breach). The store also
    /// keeps the instant as its revocation cut-off: an insert or rotation whose record was created
    /// before it, committing later (an issue in flight, or an instance whose clock lags), is
    /// refused ([`InsertOutcome::BeforeRevocationCutoff`]). The cut-off is only ever raised, and
    /// never past the request's `at` (stores clamp it); the manager refuses a cut-off in its
    /// future, which would block every issue until then. A `limit` of zero revokes nothing but
    /// still keeps the cut-off.
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

/// Result of [`TokenStore::consume_use`](super::TokenStore::consume_use).
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

/// Filters for [`TokenStore::list`](super::TokenStore::list) and [`TokenManager::list`](crate::TokenManager::list). All set
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

/// What [`TokenStore::purge`](super::TokenStore::purge) deletes.
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

/// Which use [`TokenStore::consume_use`](super::TokenStore::consume_use) counts: one use of `id`, at `now`.
///
/// Reference semantics: the use is counted when the token is active at `now` (not revoked,
/// suspended, rotated out or expired), its stored `use_refill` equals [`use_refill`](Self::use_refill)
/// (an update changed it after the manager read the record: not counted, answered as
/// [`UseOutcome::LimitReached`], so the validation fails closed), and its uses at `now` are below `max_uses`, where a token whose stored
/// `next_refill_at <= now` has used none ([`TokenRecord::uses_at`]). Counting a use whose refill
/// is due restarts `use_count` at 1 and sets `next_refill_at` to
/// [`next_refill_at`](Self::next_refill_at), in the same atomic statement, so concurrent uses
/// refill exactly once per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumeUse {
    /// The token (it has `max_uses`).
    pub id: TokenId,
    /// The manager's current time: the token must be live then, and `last_used_at` moves to it.
    pub now: OffsetDateTime,
    /// The token's refill as the manager read it (`None`: its uses do not refill).
    pub use_refill: Option<crate::credits::UseRefill>,
    /// The start of the period after the one `now` falls in, for a refilling token: the
    /// `next_refill_at` a refill applied by this use sets.
    pub next_refill_at: Option<OffsetDateTime>,
}

impl ConsumeUse {
    /// Builds a use-counting request for a token whose uses do not refill.
    pub fn new(id: TokenId, now: OffsetDateTime) -> Self {
        Self {
            id,
            now,
            use_refill: None,
            next_refill_at: None,
        }
    }

    /// Builds the use-counting request for `record` as read: with its refill, if it has one.
    pub fn for_record(record: &TokenRecord, now: OffsetDateTime) -> Self {
        Self {
            id: record.id,
            now,
            use_refill: record.use_refill,
            next_refill_at: record.next_refill_after(now),
        }
    }

    /// Whether the stored `record` may count this use, and the record after counting it
    /// (reference semantics for stores that hold records in memory).
    pub fn apply(&self, record: &TokenRecord) -> Result<TokenRecord, UseOutcome> {
        let now = self.now;
        if record.revocation.is_some()
            || record.suspended_at.is_some()
            || record.rotated_to.is_some()
            || record.expires_at.is_some_and(|e| now >= e)
        {
            return Err(UseOutcome::NotActive);
        }
        if record.use_refill != self.use_refill {
            return Err(UseOutcome::LimitReached);
        }
        let used = record.uses_at(now);
        if record.max_uses.is_some_and(|max| used >= max) {
            return Err(UseOutcome::LimitReached);
        }
        let mut next = record.clone();
        if record.next_refill_at.is_some_and(|at| now >= at) {
            next.next_refill_at = self.next_refill_at;
        }
        next.use_count = used.saturating_add(1);
        next.last_used_at = record.last_used_at.max(Some(now));
        Ok(next)
    }
}

/// What [`TokenStore::count_live_with_key`](super::TokenStore::count_live_with_key) counts: records hashed with `key` that are neither
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

/// What [`TokenStore::truncate_audit`](super::TokenStore::truncate_audit) deletes: the oldest events older than `before`, at most
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

/// What [`TokenStore::mark_expired`](super::TokenStore::mark_expired) records: up to `limit` tokens expired at `now`.
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

/// A claim of a proof-of-possession identifier ([`TokenStore::claim_proof`](super::TokenStore::claim_proof)):
/// the first claim of `key` wins, every later one (on any instance sharing the store) is a
/// replay, until the claim is purged after `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProofClaim {
    /// [`ProofOfPossession::claim_key`](crate::ProofOfPossession::claim_key).
    pub key: [u8; 32],
    /// Until when the claim must be kept (a replay would still pass verification before).
    pub expires_at: OffsetDateTime,
    /// The manager's current time (a store that prunes on claim drops claims expired by then).
    pub now: OffsetDateTime,
}

impl ProofClaim {
    /// A claim of `key`, at `now`, kept until `expires_at`.
    pub fn new(key: [u8; 32], expires_at: OffsetDateTime, now: OffsetDateTime) -> Self {
        Self {
            key,
            expires_at,
            now,
        }
    }
}

/// Result of [`TokenStore::claim_proof`](super::TokenStore::claim_proof).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimOutcome {
    /// First claim: the proof may be accepted.
    Claimed,
    /// Claimed before: a replay.
    Replayed,
}
