//! The validation cache across instances on a real server (`TOKEN_TEST_POSTGRES_URL`): each
//! instance has its own pool and cache; one revokes, the other's cached validation refuses within
//! the feed's delay; terminating the other's listener flushes its cache.

mod common;

use std::time::{Duration, Instant};

use token_core::{
    CacheConfig, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, Scope, TokenManager,
};
use token_store_postgres::PgStore;

use common::{drop_schema, fresh_schema, scopes, second_instance, terminate, url_or_skip};

fn cached(store: PgStore) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [7; 32])))
        .prefix("test")
        .unwrap_or_else(|e| panic!("{e}"))
        .cache(CacheConfig::default().max_age(Duration::from_secs(60)))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn read() -> Vec<Scope> {
    vec!["a".parse().unwrap_or_else(|e| panic!("{e}"))]
}

/// Two instances (pools named `app-a`, `app-b`) on a fresh schema.
async fn two_instances(url: &str, app: &str) -> (String, TokenManager, TokenManager) {
    let schema = fresh_schema();
    let a = second_instance(url, &schema, &format!("{app}-a")).await;
    a.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let b = second_instance(url, &schema, &format!("{app}-b")).await;
    (schema, cached(a), cached(b))
}

/// Validates until `manager` is served `token` from its cache (the feed subscription starts in
/// the background on the first lookup).
async fn cache_on(manager: &TokenManager, token: &str) {
    let hits = manager.stats().cache_hits;
    for _ in 0..5000 {
        manager
            .validate(token, &read())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if manager.stats().cache_hits > hits {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("never served from the cache: {:?}", manager.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_instance_reaches_the_others_cache_through_the_feed() {
    let Some(url) =
        url_or_skip("a_revocation_on_one_instance_reaches_the_others_cache_through_the_feed")
    else {
        return;
    };
    let (schema, a, b) = two_instances(&url, "cachefeed").await;
    let mut delays = Vec::new();
    for _ in 0..20 {
        let issued = a
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let token = issued.token.expose_secret();
        cache_on(&b, token).await;
        let start = Instant::now();
        a.revoke(RevokeSelector::Token(issued.token.id()), "test")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The max age is 60 s and nothing else drops the entry: only the feed can.
        while b.validate(token, &read()).await.is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "instance B still serves a token revoked on A"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(start.elapsed());
    }
    delays.sort();
    eprintln!(
        "revoke on A to refusal on B: median {:?}, max {:?}",
        delays[10], delays[19]
    );
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_flushes_the_cache() {
    let Some(url) = url_or_skip("a_terminated_listener_flushes_the_cache") else {
        return;
    };
    let app = format!("cacheflush-{}", fresh_schema());
    let (schema, a, b) = two_instances(&url, &app).await;
    let issued = a
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = issued.token.expose_secret();
    cache_on(&b, token).await;
    let flushes = b.stats().cache_flushes;
    let killed = terminate(&url, &format!("{app}-b/feed")).await;
    assert_eq!(killed, 1, "B's one listener connection");
    let start = Instant::now();
    while b.stats().cache_flushes == flushes {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no flush after the listener died"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Flushed: the next validation reads the store.
    let misses = b.stats().cache_misses;
    b.validate(token, &read())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        b.stats().cache_misses,
        misses + 1,
        "served from the store after the flush"
    );
    drop_schema(&url, &schema).await;
}
