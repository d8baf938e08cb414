//! Use accounting: which validations count a use (not a scope failure, not one on a revoked,
//! expired or rotated token), buffered usage being flushed to the store, and derive and rotate
//! seeing uses not flushed yet.
//!
//! The exact use limit under concurrent validations is in `concurrency`.

use std::time::Duration;

use token_core::store::TokenStore;
use token_core::{IssueRequest, RevokeSelector, TokenState, ValidationError};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{
    HOUR, assert_rejected, assert_valid, derive, req, revoke, stored, stored_when,
};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_usage {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            scope_failure_does_not_consume_a_use,
            usage_is_flushed_to_the_store,
            no_use_is_counted_on_a_revoked_or_expired_token,
            no_use_is_counted_on_a_rotated_token_even_at_an_earlier_instant,
            derive_and_rotate_see_unflushed_use,
        }
    };
}

pub async fn scope_failure_does_not_consume_a_use(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(1))
        .await;
    let token = issued.token.expose_secret();
    let err = env.manager.validate(token, &req("b")).await.err();
    assert!(matches!(
        err,
        Some(ValidationError::InsufficientScope { .. })
    ));
    assert_valid(&env, token).await;
    assert_rejected(&env, token, "use_limit_reached").await;
}

pub async fn usage_is_flushed_to_the_store(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    for _ in 0..3 {
        assert_valid(&env, issued.token.expose_secret()).await;
    }
    // Not yet flushed: the store has no usage, the manager merges its buffer.
    let stored = stored(&env, issued.token.id()).await;
    assert_eq!(stored.use_count, 0);
    let inspected = env
        .manager
        .inspect(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(inspected.use_count, 3);
    assert_eq!(inspected.last_used_at, Some(START));
    // The first validation after the flush interval hands the batch to a background write
    // (it does not wait for it); the store has it shortly after, without any explicit flush.
    env.advance(Duration::from_secs(11));
    assert_valid(&env, issued.token.expose_secret()).await;
    let stored = stored_when(
        &env,
        issued.token.id(),
        "the batch reached the store",
        |r| r.use_count == 4,
    )
    .await;
    assert_eq!(stored.use_count, 4);
    assert_eq!(
        stored.last_used_at,
        Some(START + time::Duration::seconds(11))
    );
}

pub async fn no_use_is_counted_on_a_revoked_or_expired_token(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let revoked = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(5))
        .await;
    let expiring = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(5).ttl(HOUR))
        .await;
    revoke(&env, RevokeSelector::Token(revoked.token.id())).await;
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            revoked.token.id(),
            env.clock_now(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
    env.advance(HOUR);
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            expiring.token.id(),
            env.clock_now(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
    for id in [revoked.token.id(), expiring.token.id()] {
        let record = stored(&env, id).await;
        assert_eq!(record.use_count, 0);
    }
}

pub async fn no_use_is_counted_on_a_rotated_token_even_at_an_earlier_instant(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    let before_rotation = env.clock_now();
    env.advance(Duration::from_secs(5));
    env.manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A validation that read the record before the rotation reaches the store afterwards with
    // its earlier `now`: the successor already holds every use left, so none may be counted.
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            old.token.id(),
            before_rotation,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
}

/// A token used within the last flush interval, at an instant when the store alone (without this
/// process's buffered use) would call it idle-expired.
async fn token_idle_only_in_the_store(env: &TestEnv) -> token_core::IssuedToken {
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).idle_timeout(HOUR))
        .await;
    let token = issued.token.expose_secret();
    let issued_at = env.clock_now();
    env.advance(Duration::from_secs(50 * 60));
    assert_valid(env, token).await; // flushed with this batch: the store has +0:50:00
    // The batch is written in the background: wait until the store has it.
    let flushed_at = env.clock_now();
    stored_when(env, issued.token.id(), "the batch reached the store", |r| {
        r.last_used_at == Some(flushed_at)
    })
    .await;
    env.advance(Duration::from_secs(9));
    assert_valid(env, token).await; // within the flush interval: buffered (+0:50:09)
    // Just past the store's idea of the idle deadline, before this process's.
    env.clock
        .set(issued_at + time::Duration::minutes(110) + time::Duration::seconds(5));
    let stored = stored(env, issued.token.id()).await;
    assert_eq!(
        stored.state_at(env.clock_now()),
        TokenState::IdleExpired,
        "the store alone sees the token idle"
    );
    issued
}

pub async fn derive_and_rotate_see_unflushed_use(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = token_idle_only_in_the_store(&env).await;
    derive(&env, issued.token.id(), "a").await;
    // Rotate on its own token, so the derive's flush does not do the rotation's work.
    let env = TestEnv::new(f).await;
    let issued = token_idle_only_in_the_store(&env).await;
    env.manager
        .rotate(issued.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("rotate of a recently used token: {e}"));
}
