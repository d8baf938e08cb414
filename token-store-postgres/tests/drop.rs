//! Dropping the store, its feed, a manager following the feed, and a sweeper never panics,
//! inside a Tokio runtime or outside one (`TOKEN_TEST_POSTGRES_URL`). Before the fix, dropping
//! outside a runtime panicked in the feed listener's `Drop` ("this functionality requires a Tokio
//! context"), then again in the pool's, and the process aborted.

mod common;

use std::time::Duration;

use futures_util::StreamExt;
use token_core::{CacheConfig, HashKey, IssueRequest, KeyId, Keyring, TokenManager, TokenStore};
use token_store_postgres::PgStore;

use common::{drop_schema, migrated_store, scopes, url_or_skip};

/// Everything a host holds: the store, a feed subscription that has seen a notice, a cached
/// manager following the feed (with a validated token), and a sweeper.
struct Held {
    store: PgStore,
    feed: token_core::RevocationStream,
    manager: TokenManager,
    sweeper: token_core::sweeper::Sweeper,
}

async fn hold(url: &str) -> Held {
    let store = migrated_store(url, 2).await;
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
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .revoke(token_core::RevokeSelector::Token(issued.token.id()), "t")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let notice = tokio::time::timeout(Duration::from_secs(10), feed.next()).await;
    assert!(matches!(notice, Ok(Some(_))), "the feed delivered nothing");
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
    let Some(url) = url_or_skip("dropping_everything_outside_a_runtime_does_not_panic") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let held = runtime.block_on(hold(&url));
    let schema = held.store.schema().to_owned();
    // The runtime is gone before anything is dropped.
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
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    runtime.block_on(drop_schema(&url, &schema));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_everything_inside_a_runtime_does_not_panic() {
    let Some(url) = url_or_skip("dropping_everything_inside_a_runtime_does_not_panic") else {
        return;
    };
    let held = hold(&url).await;
    let schema = held.store.schema().to_owned();
    drop(held);
    drop_schema(&url, &schema).await;
}
