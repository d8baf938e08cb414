//! Derivation: a child never widens its parent's scopes, lifetime, use limit or idle timeout,
//! inherits what it leaves unspecified, and the store itself refuses a child that its parent
//! (revoked, shortened or used meanwhile) no longer allows.

use token_core::store::{InsertOutcome, InsertToken, TokenStore};
use token_core::{
    DeriveRequest, Error, IssueRequest, PlaintextToken, RevokeSelector, TokenPrefix, TokenState,
};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{HOUR, assert_rejected, assert_valid, derive, req, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_derive {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            derive_cannot_widen_scopes,
            derive_cannot_outlive_parent,
            derive_default_expiry_is_capped_by_parent,
            derive_from_revoked_parent_fails,
            derive_cannot_widen_use_limit_or_idle_timeout,
            store_refuses_a_child_that_outlives_its_parent,
            store_refuses_a_child_with_more_uses_than_its_parent_has_left,
        }
    };
}

pub async fn derive_cannot_widen_scopes(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "repo:acme:read").await;
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("repo:acme:read repo:*")),
        )
        .await
        .err();
    match err {
        Some(Error::ScopeWidening { scopes }) => assert_eq!(scopes, req("repo:*")),
        other => panic!("expected ScopeWidening, got {other:?}"),
    }
    let narrower = derive(&env, root.token.id(), "repo:acme:read:issues").await;
    assert_eq!(narrower.record.subject, "u");
    assert_eq!(narrower.record.parent_id, Some(root.token.id()));
    assert_eq!(narrower.record.family_id, root.token.id());
}

pub async fn derive_cannot_outlive_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("a")).ttl(2 * HOUR),
        )
        .await
        .err();
    assert!(matches!(err, Some(Error::OutlivesParent { .. })), "{err:?}");
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("a")).never_expires(),
        )
        .await
        .err();
    assert!(matches!(err, Some(Error::OutlivesParent { .. })), "{err:?}");
}

pub async fn derive_default_expiry_is_capped_by_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let child = derive(&env, root.token.id(), "a").await;
    assert_eq!(child.record.expires_at, root.record.expires_at);
    env.clock.set(START + time::Duration::hours(1));
    assert_rejected(&env, child.token.expose_secret(), "expired").await;
}

pub async fn derive_from_revoked_parent_fails(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "a").await;
    revoke(&env, RevokeSelector::Token(root.token.id())).await;
    let err = env
        .manager
        .derive(root.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .err();
    assert!(matches!(err, Some(Error::NotActive { .. })), "{err:?}");
    // The store refuses it too, even if a caller skipped the manager's check.
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let mut record = root.record.clone();
    record.id = token.id();
    record.parent_id = Some(root.token.id());
    record.revocation = None;
    let outcome = env
        .store
        .insert(&InsertToken::new(record, None, env.clock_now(), Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcome,
        InsertOutcome::ParentNotActive {
            state: Some(TokenState::Revoked)
        }
    );
}

pub async fn derive_cannot_widen_use_limit_or_idle_timeout(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .max_uses(3)
                .idle_timeout(HOUR),
        )
        .await;
    assert_valid(&env, parent.token.expose_secret()).await;
    let wider_uses = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).max_uses(5),
        )
        .await
        .err();
    assert!(
        matches!(
            wider_uses,
            Some(Error::LimitWidening {
                limit: "max_uses",
                ..
            })
        ),
        "{wider_uses:?}"
    );
    let no_idle = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).no_idle_timeout(),
        )
        .await
        .err();
    assert!(
        matches!(
            no_idle,
            Some(Error::LimitWidening {
                limit: "idle_timeout",
                ..
            })
        ),
        "{no_idle:?}"
    );
    let longer_idle = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).idle_timeout(2 * HOUR),
        )
        .await
        .err();
    assert!(matches!(longer_idle, Some(Error::LimitWidening { .. })));
    // Unspecified limits are inherited: the parent's remaining uses and its idle timeout.
    let child = derive(&env, parent.token.id(), "a").await;
    assert_eq!(child.record.max_uses, Some(2));
    assert_eq!(child.record.idle_timeout, Some(HOUR));
}

pub async fn store_refuses_a_child_that_outlives_its_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    // As if the parent was shortened by a rotation after the manager computed the child.
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let mut child = parent.record.clone();
    child.id = token.id();
    child.parent_id = Some(parent.token.id());
    child.expires_at = parent
        .record
        .expires_at
        .map(|e| e + time::Duration::seconds(1));
    let outcome = env
        .store
        .insert(&InsertToken::new(
            child.clone(),
            None,
            env.clock_now(),
            Vec::new(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(outcome, InsertOutcome::OutlivesParent { .. }),
        "{outcome:?}"
    );
    child.expires_at = parent.record.expires_at;
    let outcome = env
        .store
        .insert(&InsertToken::new(child, None, env.clock_now(), Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, InsertOutcome::Inserted);
}

pub async fn store_refuses_a_child_with_more_uses_than_its_parent_has_left(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    // As if the parent was used after the manager computed the child's limit.
    assert_valid(&env, parent.token.expose_secret()).await;
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let mut child = parent.record.clone();
    child.id = PlaintextToken::generate(&prefix)
        .unwrap_or_else(|e| panic!("{e}"))
        .id();
    child.parent_id = Some(parent.token.id());
    for (uses, expected) in [
        (Some(3), InsertOutcome::UsesExceedParent { remaining: 2 }),
        (None, InsertOutcome::UsesExceedParent { remaining: 2 }),
        (Some(2), InsertOutcome::Inserted),
    ] {
        child.max_uses = uses;
        let outcome = env
            .store
            .insert(&InsertToken::new(
                child.clone(),
                None,
                env.clock_now(),
                Vec::new(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, expected, "child max_uses {uses:?}");
    }
}
