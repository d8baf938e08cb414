//! Two "instances" of a service share one PostgreSQL: a token revoked through one is rejected by
//! the other, and the other's revocation feed (LISTEN/NOTIFY) hears about it. Prints the delay.
//!
//! ```text
//! cargo run --example two_instances                       # postgres://postgres@127.0.0.1:5432/test
//! TOKEN_EXAMPLE_DATABASE_URL=postgres://user@host/db cargo run --example two_instances
//! ```

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, RevocationNotice, RevokeSelector, Scope, ScopeSet,
    TokenManager, TokenStore,
};
use token_store_postgres::{PgStore, PgStoreOptions};

async fn instance(url: &str) -> Result<(PgStore, TokenManager), Box<dyn std::error::Error>> {
    let store = PgStore::connect_with(PgStoreOptions::new(url).schema("token_example")).await?;
    store.migrate().await?;
    // Both instances must hash with the same key (load it from your secret manager).
    let keyring = Keyring::new(HashKey::new(KeyId::new(1), [42; 32]));
    let manager = TokenManager::builder(store.clone(), keyring)
        .prefix("example")?
        .build()?;
    Ok((store, manager))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TOKEN_EXAMPLE_DATABASE_URL")
        .or_else(|_| std::env::var("TOKEN_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let (_, a) = instance(&url).await?;
    let (store_b, b) = instance(&url).await?;
    println!("two instances on {url}, schema token_example");

    let mut feed_b = store_b
        .subscribe_revocations()
        .await?
        .ok_or("the PostgreSQL store always has a feed")?;
    let issued = a
        .issue(
            IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?)
                .ttl(Duration::from_secs(600)),
        )
        .await?;
    let token = issued.token.expose_secret();
    let read: Scope = "widgets:read".parse()?;
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
    loop {
        match tokio::time::timeout(Duration::from_secs(5), feed_b.next()).await? {
            Some(RevocationNotice::Revoked(ids)) if ids.contains(&issued.token.id()) => break,
            Some(_) => {}
            None => return Err("feed ended".into()),
        }
    }
    let heard_after = start.elapsed();
    println!(
        "instance A revoked it ({revoked_after:?}); instance B's feed heard it after {heard_after:?}"
    );
    match b.validate(token, &[read]).await {
        Ok(_) => Err("instance B accepted a revoked token".into()),
        Err(e) => {
            println!("instance B now rejects it: {e}");
            Ok(())
        }
    }
}
