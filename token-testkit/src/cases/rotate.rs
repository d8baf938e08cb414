//! Rotation: the successor keeps the token's identity and never extends its life, the old token
//! lives on only for the grace window, a token has one successor, and a use-limited token's
//! budget is never granted twice.
//!
//! Policy checks at rotation are in `policy`; concurrent rotations in `concurrency`.

use std::time::Duration;

use token_core::{Error, IssueRequest, RevokeSelector};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{DAY, HOUR, assert_rejected, assert_valid, revoke, stored};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rotate {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            rotate_keeps_identity_and_never_extends_lifetime,
            rotate_grace_window_is_honoured,
            rotate_grace_never_outlives_old_expiry,
            rotating_twice_is_a_conflict,
            rotate_with_zero_grace_ends_old_token_now,
            rotating_a_use_limited_token_never_grants_uses_twice,
        }
    };
}

pub async fn rotate_keeps_identity_and_never_extends_lifetime(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a b"))
                .ttl(DAY)
                .label("team", "x")
                .name("deploy"),
        )
        .await;
    env.advance(HOUR);
    let new = env
        .manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(new.token.id(), old.token.id());
    assert_eq!(new.record.subject, "u");
    assert_eq!(new.record.scopes, old.record.scopes);
    assert_eq!(new.record.labels, old.record.labels);
    assert_eq!(new.record.name.as_deref(), Some("deploy"));
    assert_eq!(new.record.expires_at, old.record.expires_at);
    assert_eq!(new.record.rotated_from, Some(old.token.id()));
    assert_valid(&env, new.token.expose_secret()).await;
    env.clock.set(START + time::Duration::days(1));
    assert_rejected(&env, new.token.expose_secret(), "expired").await;
}

pub async fn rotate_grace_window_is_honoured(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let new = env
        .manager
        .rotate(old.token.id(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.advance(Duration::from_secs(299));
    assert_valid(&env, old.token.expose_secret()).await;
    env.advance(Duration::from_secs(1));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    assert_valid(&env, new.token.expose_secret()).await;
    let old_record = env
        .manager
        .inspect(old.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(old_record.rotated_to, Some(new.token.id()));
}

pub async fn rotate_grace_never_outlives_old_expiry(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    env.advance(Duration::from_secs(50 * 60));
    env.manager
        .rotate(old.token.id(), DAY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.clock.set(START + time::Duration::hours(1));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
}

pub async fn rotating_twice_is_a_conflict(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let new = env
        .manager
        .rotate(old.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = env.manager.rotate(old.token.id(), HOUR).await.err();
    match err {
        Some(Error::AlreadyRotated { successor, .. }) => assert_eq!(successor, new.token.id()),
        other => panic!("expected AlreadyRotated, got {other:?}"),
    }
    // Revoking the successor resurrects nothing: the old token keeps its shortened life.
    revoke(&env, RevokeSelector::Token(new.token.id())).await;
    env.advance(HOUR);
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    assert!(matches!(
        env.manager.rotate(old.token.id(), HOUR).await,
        Err(Error::AlreadyRotated { .. } | Error::NotActive { .. })
    ));
}

pub async fn rotate_with_zero_grace_ends_old_token_now(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    env.manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
}

pub async fn rotating_a_use_limited_token_never_grants_uses_twice(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    assert_valid(&env, old.token.expose_secret()).await;
    let new = env
        .manager
        .rotate(old.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // No grace for use-limited tokens: two live copies would double the budget.
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    let stored = stored(&env, new.token.id()).await;
    assert_eq!(stored.max_uses, Some(2));
    let mut ok = 0;
    for _ in 0..5 {
        if env
            .manager
            .validate(new.token.expose_secret(), &[])
            .await
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
}
