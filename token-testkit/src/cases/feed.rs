//! The revocation feed: a subscriber hears of every committed revocation, or is told to flush
//! when the feed was interrupted (only where the fixture allows it).

use std::collections::HashSet;
use std::time::Duration;

use token_core::RevokeSelector;
use token_core::store::TokenStore;

use crate::Fixture;
use crate::env::TestEnv;

use super::support::{derive, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_feed {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            revocation_feed_announces_committed_revocations,
        }
    };
}

pub async fn revocation_feed_announces_committed_revocations(f: &dyn Fixture) {
    use futures_util::StreamExt;
    let env = TestEnv::new(f).await;
    let mut feed = env
        .store
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"))
        .unwrap_or_else(|| panic!("the store offers no revocation feed"));
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
                    let record = env
                        .store
                        .get(*id)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|| panic!("missing"));
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
