//! Two "instances" of a service share one PostgreSQL, each with its validation cache: a token
//! revoked through one is refused by the other once the other's cache hears of it through the
//! store's revocation feed (LISTEN/NOTIFY). Prints the delay.
//!
//! ```text
//! cargo run --example two_instances                       # postgres://postgres@127.0.0.1:5432/test
//! TOKEN_EXAMPLE_DATABASE_URL=postgres://user@host/db cargo run --example two_instances
//! ```
//!
//! The hashing key comes from `TOKEN_HASH_KEY` (64 hex characters); without it a fresh key is
//! generated for this run (both instances share it, as real instances share one from your secret
//! manager).

use std::time::{Duration, Instant};

use token_core::{
    CacheConfig, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, Scope, ScopeSet,
    TokenManager,
};
use token_store_postgres::{PgStore, PgStoreOptions};

async fn instance(
    url: &str,
    key: &HashKey,
) -> Result<(PgStore, TokenManager), Box<dyn std::error::Error>> {
    let store = PgStore::connect_with(PgStoreOptions::new(url).schema("token_example")).await?;
    store.migrate().await?;
    // Both instances must hash with the same key.
    let keyring = Keyring::new(key.clone());
    let manager = TokenManager::builder(store.clone(), keyring)
        .prefix("example")?
        // Each instance caches validated records; the store's LISTEN/NOTIFY feed tells it when
        // another instance revokes one.
        .cache(CacheConfig::default())
        .build()?;
    Ok((store, manager))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_logging();
    let url = std::env::var("TOKEN_EXAMPLE_DATABASE_URL")
        .or_else(|_| std::env::var("TOKEN_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let key = match std::env::var("TOKEN_HASH_KEY") {
        Ok(hex) => HashKey::from_hex(KeyId::new(1), &hex)?,
        Err(_) => HashKey::generate(KeyId::new(1))?,
    };
    let (_, a) = instance(&url, &key).await?;
    let (_, b) = instance(&url, &key).await?;
    println!(
        "two instances on {}, schema token_example",
        examples::redact::redacted_url(&url)
    );

    let issued = a
        .issue(
            IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?)
                .ttl(Duration::from_secs(600)),
        )
        .await?;
    let token = issued.token.expose_secret();
    let read: Scope = "widgets:read".parse()?;
    // Twice: the first read fills B's cache, the second is served from it.
    b.validate(token, std::slice::from_ref(&read)).await?;
    b.validate(token, std::slice::from_ref(&read)).await?;
    println!(
        "instance A issued {}; instance B accepts it",
        issued.token.id()
    );

    let start = Instant::now();
    a.revoke(
        RevokeSelector::Token(issued.token.id()),
        "two_instances example",
    )
    .await?;
    let revoked_after = start.elapsed();
    // B served the token from its cache; the notice drops it there.
    while b.validate(token, std::slice::from_ref(&read)).await.is_ok() {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("instance B still accepts the token 5 s after the revoke".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused_after = start.elapsed();
    println!(
        "instance A revoked it ({revoked_after:?}); instance B's cache dropped it after {refused_after:?} (cache hits on B: {})",
        b.stats().cache_hits
    );
    match b.validate(token, &[read]).await {
        Ok(_) => Err("instance B accepted a revoked token".into()),
        Err(e) => {
            println!("instance B now rejects it: {e}");
            Ok(())
        }
    }
}
