//! Dropping the store, its feed, a manager following the feed, and a sweeper never panics,
//! inside a Tokio runtime or outside one.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use token_core::{
    CacheConfig, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenManager,
    TokenStore,
};
use token_store_sqlite::SqliteStore;

/// Everything a host holds: the store, a feed subscription that has seen a notice, a cached
/// manager following the feed (with a validated token), and a sweeper.
struct Held {
    store: SqliteStore,
    feed: token_core::RevocationStream,
    manager: TokenManager,
    sweeper: token_core::sweeper::Sweeper,
}

async fn hold(path: &std::path::Path) -> Held {
    let store = common::migrated(path).await;
    let mut feed = store
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no feed"));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .cache(CacheConfig::default())
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let issued = manager
        .issue(IssueRequest::new(
            "u",
            ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .revoke(RevokeSelector::Token(issued.token.id()), "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(feed.next().await.is_some(), "the feed delivered nothing");
    let sweeper = token_core::sweeper::Sweeper::spawn(manager.clone(), Duration::from_secs(3600));
    Held {
        store,
        feed,
        manager,
        sweeper,
    }
}

#[test]
fn dropping_everything_outside_a_runtime_does_not_panic() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let held = runtime.block_on(hold(&dir.path().join("t.db")));
    drop(runtime);
    let Held {
        store,
        feed,
        manager,
        sweeper,
    } = held;
    drop(sweeper);
    drop(feed);
    drop(manager);
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_everything_inside_a_runtime_does_not_panic() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    drop(hold(&dir.path().join("t.db")).await);
}
