//! The revocation feed: a subscriber hears of every committed revocation and rotation, or is
//! told to flush when the feed was interrupted (only where the fixture allows it); and another
//! instance sharing the store (with its validation cache, when the fixture runs cached) stops
//! accepting a revoked or rotated-out token within the feed's delay.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use token_core::RevokeSelector;
use token_core::store::TokenStore;

use crate::Fixture;
use crate::env::TestEnv;

use super::support::{assert_valid, derive, req, revoke, stored};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_feed {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            revocation_feed_announces_committed_revocations,
            rotation_is_announced_on_the_feed,
            another_instance_stops_accepting_a_revoked_token_within_the_feed_bound,
            another_instance_stops_accepting_a_rotated_out_token_within_the_feed_bound,
        }
    };
}

/// The store's feed; every store under the suite has one.
async fn subscribe(env: &TestEnv) -> token_core::RevocationStream {
    env.store
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"))
        .unwrap_or_else(|| panic!("the store offers no revocation feed"))
}

pub async fn revocation_feed_announces_committed_revocations(f: &dyn Fixture) {
    use futures_util::StreamExt;
    let env = TestEnv::new(f).await;
    let mut feed = subscribe(&env).await;
    let root = env.issue("u", "a").await;
    let child = derive(&env, root.token.id(), "a").await;
    env.issue("u", "a").await;
    let revoked = revoke(&env, RevokeSelector::Token(root.token.id())).await;
    let mut announced = HashSet::new();
    while announced.len() < revoked.len() {
        let notice = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no notice within 5 s; got {announced:?}"));
        match notice {
            Some(token_core::RevocationNotice::Revoked(ids)) => announced.extend(ids),
            // A real listener may lose its connection; then the contract is "flush", and
            // the store itself must show the revocations.
            Some(token_core::RevocationNotice::Interrupted) => {
                assert!(
                    f.feed_may_interrupt(),
                    "an in-process feed was interrupted without losing anything"
                );
                for id in &revoked {
                    let record = stored(&env, *id).await;
                    assert!(record.is_revoked());
                }
                return;
            }
            Some(other) => panic!("unexpected notice {other:?}"),
            None => panic!("feed ended"),
        }
    }
    assert_eq!(
        announced,
        HashSet::from([root.token.id(), child.token.id()])
    );
}

pub async fn rotation_is_announced_on_the_feed(f: &dyn Fixture) {
    use futures_util::StreamExt;
    let env = TestEnv::new(f).await;
    let mut feed = subscribe(&env).await;
    let old = env.issue("u", "a").await;
    env.manager
        .rotate(old.token.id(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("rotate: {e}"));
    let notice = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .unwrap_or_else(|_| panic!("no notice of the rotation within 5 s"));
    match notice {
        Some(token_core::RevocationNotice::Changed(ids)) => {
            assert_eq!(
                ids,
                vec![old.token.id()],
                "the shortened predecessor is named"
            );
        }
        Some(token_core::RevocationNotice::Interrupted) => {
            assert!(f.feed_may_interrupt(), "an in-process feed was interrupted");
        }
        other => panic!("expected Changed([{}]), got {other:?}", old.token.id()),
    }
}

/// Validates `token` through `manager` until it is served from its cache when the fixture
/// runs cached (the feed subscription starts in the background), at least twice otherwise.
async fn warm(env: &TestEnv, manager: &token_core::TokenManager, token: &str) {
    let hits = manager.stats().cache_hits;
    for attempt in 0..2000 {
        manager
            .validate(token, &req("a"))
            .await
            .unwrap_or_else(|e| panic!("instance: {e}"));
        if attempt >= 1 && (env.cache.is_none() || manager.stats().cache_hits > hits) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never served from the cache: {:?}", manager.stats());
}

/// Validates `token` through `manager` until it is refused, for at most 5 s; returns how long
/// that took. The clock does not move: only the feed (or no cache at all) can make it refused.
async fn refused_within(manager: &token_core::TokenManager, token: &str) -> Duration {
    let start = Instant::now();
    loop {
        if manager.validate(token, &req("a")).await.is_err() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the other instance still accepts the token 5 s after the change"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

pub async fn another_instance_stops_accepting_a_revoked_token_within_the_feed_bound(
    f: &dyn Fixture,
) {
    let env = TestEnv::new(f).await;
    let other = env.sibling(|b| b);
    let issued = env.issue("u", "a").await;
    let token = issued.token.expose_secret();
    // Both instances accept it (and, when cached, hold it in their caches).
    assert_valid(&env, token).await;
    warm(&env, &other, token).await;
    revoke(&env, RevokeSelector::Token(issued.token.id())).await;
    assert!(
        env.manager.validate(token, &req("a")).await.is_err(),
        "the revoking instance refuses at once"
    );
    refused_within(&other, token).await;
}

pub async fn another_instance_stops_accepting_a_rotated_out_token_within_the_feed_bound(
    f: &dyn Fixture,
) {
    let env = TestEnv::new(f).await;
    let other = env.sibling(|b| b);
    let old = env.issue("u", "a").await;
    let token = old.token.expose_secret();
    warm(&env, &env.manager, token).await;
    warm(&env, &other, token).await;
    env.manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("rotate: {e}"));
    assert!(
        env.manager.validate(token, &req("a")).await.is_err(),
        "the rotating instance refuses the predecessor at once"
    );
    refused_within(&other, token).await;
}
