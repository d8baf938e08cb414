//! Helpers shared by several topics: durations, scope parsing, validation assertions, and the
//! revoke, derive, audit-read and retention shorthands. A helper one topic uses lives in that
//! topic's file.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use token_core::{Context, DeriveRequest, RevokeSelector, Scope, TokenId, TokenRecord};

use crate::env::{TestEnv, scopes_of};

pub(super) const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(86_400);

fn scope(text: &str) -> Scope {
    text.parse()
        .unwrap_or_else(|e| panic!("scope {text:?}: {e}"))
}

pub(super) fn req(text: &str) -> Vec<Scope> {
    text.split_whitespace().map(scope).collect()
}

pub(super) async fn assert_rejected(env: &TestEnv, token: &str, expected: &str) {
    match env.manager.validate(token, &[]).await {
        Ok(_) => panic!("token accepted; expected {expected}"),
        Err(e) => assert_eq!(e.reason_code(), expected, "unexpected failure: {e}"),
    }
}

pub(super) async fn assert_valid(env: &TestEnv, token: &str) {
    if let Err(e) = env.manager.validate(token, &[]).await {
        panic!("expected a valid token, got: {e}");
    }
}

/// The stored record of `id` (it must exist).
pub(super) async fn stored(env: &TestEnv, id: TokenId) -> Arc<TokenRecord> {
    token_core::TokenStore::get(&env.store, id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("token {id} missing from the store"))
}

/// The stored record of `id` once `condition` holds (usage batches are written in the
/// background), for at most 5 s.
pub(super) async fn stored_when(
    env: &TestEnv,
    id: TokenId,
    what: &str,
    condition: impl Fn(&TokenRecord) -> bool,
) -> Arc<TokenRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let record = stored(env, id).await;
        if condition(&record) {
            return record;
        }
        assert!(std::time::Instant::now() < deadline, "{what} within 5 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl TestEnv {
    pub(super) fn clock_now(&self) -> OffsetDateTime {
        token_core::Clock::now(&self.clock)
    }
}

pub(super) async fn revoke(env: &TestEnv, selector: RevokeSelector) -> HashSet<TokenId> {
    env.manager
        .revoke_with(selector, "test", &Context::new().actor("admin"))
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"))
        .into_iter()
        .collect()
}

pub(super) async fn derive(
    env: &TestEnv,
    parent: TokenId,
    scopes: &str,
) -> token_core::IssuedToken {
    env.manager
        .derive(parent, DeriveRequest::new(scopes_of(scopes)))
        .await
        .unwrap_or_else(|e| panic!("derive: {e}"))
}

pub(super) async fn all_events(env: &TestEnv) -> Vec<token_core::AuditRecord> {
    let mut out = Vec::new();
    let mut query = token_core::AuditQuery::new().limit(1000);
    loop {
        let page = env
            .manager
            .query_audit(query.clone())
            .await
            .unwrap_or_else(|e| panic!("query_audit: {e}"));
        out.extend(page.items);
        match page.next_after {
            Some(seq) => query = query.after(seq),
            None => return out,
        }
    }
}

pub(super) fn retention(
    configure: impl FnOnce(token_core::RetentionBuilder) -> token_core::RetentionBuilder,
) -> token_core::Retention {
    configure(token_core::Retention::builder())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}
