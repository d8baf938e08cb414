//! # token-testkit
//!
//! The conformance suite every [`TokenStore`] runs. Each behaviour is one `pub async fn` in
//! [`cases`], taking a [`Fixture`] that makes fresh, isolated stores; the
//! [`conformance_tests!`] macro expands to one named `#[tokio::test]` per case, so a store crate
//! runs the whole suite with one line and a failure names the behaviour:
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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, InsertOutcome, InsertToken, ListQuery, MarkExpired,
    RevocationStream, RevokeRequest, RotateOutcome, RotateToken, StoreError, TokenStore,
    TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditQuery, AuditRecord, PurgeRequest, TokenId, TokenRecord,
};

pub mod cases;
mod env;
pub mod tamper;

pub use env::TestEnv;

/// Renders everything a store persisted as bytes, for the "no secret stored" check.
pub type RawDump =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync + 'static>;

/// A fresh, empty store plus a way to read its raw persisted bytes.
pub struct TestStore {
    /// The store under test.
    pub store: Arc<dyn TokenStore>,
    /// Its raw contents (database file, table dump, ...).
    pub raw: RawDump,
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
}

/// Expands to one `#[tokio::test]` per conformance case, each running against a fresh store from
/// the given [`Fixture`] expression.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            issue_then_validate_round_trip,
            wrong_secret_is_rejected,
            malformed_strings_never_reach_the_store,
            bad_checksum_never_reaches_the_store,
            foreign_prefix_never_reaches_the_store,
            unknown_id_is_rejected,
            token_is_invalid_exactly_at_expires_at,
            not_before_is_enforced,
            idle_timeout_expires_unused_token,
            use_postpones_idle_expiry,
            max_uses_is_exact_under_64_concurrent_validations,
            scope_failure_does_not_consume_a_use,
            insufficient_scope_lists_missing_scopes,
            wildcard_requirement_is_refused,
            revoke_by_id,
            revoke_by_subject,
            revoke_by_family_reaches_every_member,
            revoke_by_label,
            revoke_issued_before,
            revoke_is_idempotent,
            revoked_token_is_rejected_once_revoke_returns,
            revoking_parent_revokes_grandchildren,
            derive_cannot_widen_scopes,
            derive_cannot_outlive_parent,
            derive_default_expiry_is_capped_by_parent,
            derive_from_revoked_parent_fails,
            rotate_keeps_identity_and_never_extends_lifetime,
            rotate_grace_window_is_honoured,
            rotate_grace_never_outlives_old_expiry,
            rotating_twice_is_a_conflict,
            rotate_with_zero_grace_ends_old_token_now,
            list_filters_by_subject_label_and_state,
            list_paginates_without_gaps_or_repeats,
            policy_ttl_cap_is_enforced,
            policy_requires_expiry,
            policy_scope_ceiling_is_enforced,
            policy_max_live_tokens_per_subject,
            concurrent_issues_respect_live_limit,
            key_rotation_keeps_old_tokens_valid,
            retiring_a_key_in_use_is_refused,
            stored_bytes_contain_no_secret,
            audit_records_lifecycle_in_order,
            denied_validation_is_audited_without_token_string,
            usage_is_flushed_to_the_store,
            record_round_trips_every_field,
            audit_event_round_trips_every_field,
            duplicate_id_is_already_exists,
            concurrent_rotations_yield_one_successor,
            revocation_feed_announces_committed_revocations,
            introspect_neither_uses_nor_audits,
            revoke_presented_requires_possession,
            audit_chain_links_every_event_and_verifies,
            audit_query_filters_and_paginates_by_sequence,
            audit_export_is_json_lines_without_secrets,
            denied_events_are_coalesced_per_token,
            used_events_are_written_when_enabled,
            audit_sink_sees_written_events,
            sweep_records_expiry_once,
            sweep_revokes_unused_tokens,
            sweep_purges_old_records_and_keeps_their_audit,
            sweep_truncates_audit_behind_a_checkpoint,
            sweep_is_bounded_by_batch_size,
            concurrent_sweeps_record_each_expiry_once,
            stale_token_report_lists_unused_tokens,
            prefix_is_bound_to_the_record,
            derive_cannot_widen_use_limit_or_idle_timeout,
            rotating_a_use_limited_token_never_grants_uses_twice,
            no_use_is_counted_on_a_revoked_or_expired_token,
            rotation_rechecks_the_current_policy,
            replacing_a_key_id_is_refused,
            absurd_ttl_is_refused,
            opting_out_of_idle_expiry_needs_policy_consent,
            store_refuses_a_child_that_outlives_its_parent,
            rotation_grace_is_capped_by_policy,
            store_refuses_a_child_with_more_uses_than_its_parent_has_left,
            no_use_is_counted_on_a_rotated_token_even_at_an_earlier_instant,
            derive_and_rotate_see_unflushed_use,
            concurrent_writers_keep_one_audit_chain,
        );
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
/// store access.
#[derive(Clone)]
pub struct CountingStore {
    inner: Arc<dyn TokenStore>,
    calls: Arc<AtomicU64>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TokenStore>) -> Self {
        Self {
            inner,
            calls: Arc::new(AtomicU64::new(0)),
        }
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
        self.inner.insert(insert).await
    }
    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        self.tick();
        self.inner.get(id).await
    }
    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        self.tick();
        self.inner.rotate(rotation).await
    }
    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        self.tick();
        self.inner.revoke(request).await
    }
    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        self.tick();
        self.inner.consume_use(request).await
    }
    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<(), StoreError> {
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
        self.inner.query_audit(query).await
    }
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        self.tick();
        self.inner.audit_checkpoint().await
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
