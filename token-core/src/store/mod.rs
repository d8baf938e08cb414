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
//! crate). A complete in-process implementation lives in `token-store-memory`; the manual's
//! [implementing a store](crate::manual::implementing_a_store) chapter has a complete one over a
//! `HashMap`.
//!
//! This module holds the trait, its errors and the feed types; the request and outcome types
//! each method takes and returns live in `requests.rs` and are re-exported here.

use std::error::Error as StdError;
use std::sync::Arc;

use async_trait::async_trait;

use crate::audit::{AuditCheckpoint, AuditEvent, AuditQuery, AuditRecord};
use crate::format::TokenId;
use crate::record::TokenRecord;

mod changes;
mod narrow_limits;
mod requests;

pub use changes::{SuspendRequest, Suspension, UpdateOutcome, UpdateToken, Widening};
pub use requests::{
    ClaimOutcome, ConsumeUse, CountLiveWithKey, Cursor, InsertOutcome, InsertToken, ListFilter,
    ListQuery, MarkExpired, ProofClaim, PurgeRequest, RevokeRequest, RevokeSelector, RotateOutcome,
    RotateToken, TruncateAudit, UsageUpdate, UseOutcome,
};

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

    /// Suspends or resumes what `request.selector` matches plus every descendant, in one
    /// transaction: each record [`SuspendRequest::applies_to`] gets
    /// [`SuspendRequest::suspended_at`] and the event [`SuspendRequest::event_for`]. Returns the
    /// events committed (one per changed token). Announces the changed ids on the feed as
    /// [`RevocationNotice::Changed`] after the commit. When this returns, no reader of the store
    /// may see a suspended record as unsuspended.
    async fn suspend(&self, request: &SuspendRequest) -> Result<Vec<AuditEvent>, StoreError>;

    /// Updates one token in place and narrows its descendants, in one transaction, on the
    /// records as read (and locked) there: [`UpdateToken::check_state`] and
    /// [`UpdateToken::apply`] on the token, then [`UpdateToken::narrow_child`] on each child of
    /// every changed record (so a concurrent derive or update cannot leave a child wider than
    /// its parent), writing each changed record with its event. Announces the changed ids on
    /// the feed as [`RevocationNotice::Changed`] after the commit.
    async fn update(&self, request: &UpdateToken) -> Result<UpdateOutcome, StoreError>;

    /// Claims a proof-of-possession identifier, atomically across every instance sharing the
    /// store (insert if absent): [`ClaimOutcome::Claimed`] for the first claim of `claim.key`,
    /// [`ClaimOutcome::Replayed`] for every later one until the claim is purged. Bounded: a
    /// store may refuse with [`StoreError::Conflict`] when it holds too many unexpired claims.
    async fn claim_proof(&self, claim: &ProofClaim) -> Result<ClaimOutcome, StoreError>;

    /// Deletes up to `limit` claims whose `expires_at` is before `before` (the sweeper's step).
    /// Returns how many it deleted.
    async fn purge_proof_claims(
        &self,
        before: time::OffsetDateTime,
        limit: u32,
    ) -> Result<u64, StoreError>;

    /// Counts one use of a token with `max_uses`, atomically:
    /// `use_count = use_count + 1 WHERE use_count < max_uses AND revoked_at IS NULL AND
    /// suspended_at IS NULL AND rotated_to IS NULL AND (expires_at IS NULL OR expires_at > now)`,
    /// also setting `last_used_at`. A revoked, suspended, rotated or expired token is
    /// [`UseOutcome::NotActive`], so no use
    /// is counted after a revocation or a rotation committed (a use-limited token rotates without
    /// grace, and its successor already holds the uses left; `now` may lag the rotation's time).
    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError>;

    /// Applies coalesced usage: `use_count += uses`, `last_used_at = max(last_used_at, ..)`.
    /// Unknown ids are ignored (the token may have been purged). A row that cannot take its
    /// update (invalid contents, such as a negative `use_count` or a column breaking the schema's
    /// checks) is skipped, never failing the others: every other update is applied, and the
    /// skipped ids are returned. `Err` only when nothing could be written (the backend failed).
    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError>;

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
            async fn suspend(
                &self,
                request: &SuspendRequest,
            ) -> Result<Vec<AuditEvent>, StoreError> {
                (**self).suspend(request).await
            }
            async fn update(&self, request: &UpdateToken) -> Result<UpdateOutcome, StoreError> {
                (**self).update(request).await
            }
            async fn claim_proof(&self, claim: &ProofClaim) -> Result<ClaimOutcome, StoreError> {
                (**self).claim_proof(claim).await
            }
            async fn purge_proof_claims(
                &self,
                before: time::OffsetDateTime,
                limit: u32,
            ) -> Result<u64, StoreError> {
                (**self).purge_proof_claims(before, limit).await
            }
            async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
                (**self).consume_use(request).await
            }
            async fn record_usage(
                &self,
                updates: &[UsageUpdate],
            ) -> Result<Vec<TokenId>, StoreError> {
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
