//! Bytes per cached entry, measured: the heap held by the validation cache once it holds 10,000
//! records read from the SQLite store (each decoded afresh, as from any SQL store), counted by
//! `dhat`. The store's own page cache is warmed first by an uncached pass, so the difference is
//! the cache alone (records, their strings and scopes, the cache's tables).
//!
//! ```text
//! cargo bench -p benches --bench cache_memory
//! ```

use std::time::Duration;

use token_core::{
    CacheConfig, HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager,
};
use token_store_sqlite::SqliteStore;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const TOKENS: usize = 10_000;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::connect("sqlite::memory:").await.expect("connect");
        store.migrate().await.expect("migrate");
        let keyring = || Keyring::new(HashKey::new(KeyId::new(1), [7; 32]));
        let uncached = TokenManager::builder(store.clone(), keyring())
            .prefix("acme_live")
            .expect("prefix")
            .build()
            .expect("manager");
        let cached = TokenManager::builder(store, keyring())
            .prefix("acme_live")
            .expect("prefix")
            .cache(
                CacheConfig::new()
                    .max_entries(2 * TOKENS as u64)
                    .max_age(Duration::from_secs(60)),
            )
            .build()
            .expect("manager");
        let scopes =
            ScopeSet::parse("widgets:read widgets:write billing:invoices:read").expect("scopes");
        let mut tokens = Vec::with_capacity(TOKENS);
        for i in 0..TOKENS {
            let issued = uncached
                .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
                .await
                .expect("issue");
            tokens.push(issued.token.expose_secret().to_owned());
        }
        let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
        for token in &tokens {
            uncached.validate(token, &required).await.expect("valid");
        }
        uncached.flush_usage().await.expect("flush");
        // The same pass through a second uncached manager and through the cached one: both
        // fill their usage buffers alike, so the difference is the cache alone.
        let plain = TokenManager::builder(uncached.store().clone(), keyring())
            .prefix("acme_live")
            .expect("prefix")
            .build()
            .expect("manager");
        let pass = |manager: TokenManager| {
            let (tokens, required) = (&tokens, &required);
            async move {
                let before = dhat::HeapStats::get().curr_bytes;
                for token in tokens {
                    manager.validate(token, required).await.expect("valid");
                }
                (dhat::HeapStats::get().curr_bytes.saturating_sub(before), manager)
            }
        };
        // The first cached validation subscribes to the feed; count from after it.
        cached.validate(&tokens[0], &required).await.expect("valid");
        let (without_cache, _plain) = pass(plain).await;
        let (with_cache, cached) = pass(cached).await;
        let bytes = with_cache.saturating_sub(without_cache);
        println!(
            "bytes per cached entry: {} ({bytes} bytes for {TOKENS} entries: {with_cache} with the cache, {without_cache} without)",
            bytes / TOKENS,
        );
        let hits = cached.stats().cache_hits;
        for token in &tokens {
            cached.validate(token, &required).await.expect("valid");
        }
        assert_eq!(cached.stats().cache_hits - hits, TOKENS as u64, "all cached");
    });
}
