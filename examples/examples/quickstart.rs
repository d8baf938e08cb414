//! Quickstart: issue a scoped token, validate it, see a scope failure, revoke it, see it rejected,
//! on the embedded default store (a SQLite file).
//!
//! ```text
//! cargo run --example quickstart
//! TOKEN_QUICKSTART_DB=/tmp/tokens.db cargo run --example quickstart   # another file
//! ```
//!
//! The hashing key comes from `TOKEN_HASH_KEY` (64 hex characters); without it a fresh key is
//! generated, so tokens from earlier runs no longer validate (which is what you want from a demo).

use std::time::Duration;

use token_core::{
    CacheConfig, Context, ErrorClass, HashKey, IssueRequest, KeyId, Keyring, Requirement,
    RevokeSelector, ScopeSet, TokenManager,
};
use token_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_logging();
    let path = std::env::var("TOKEN_QUICKSTART_DB").unwrap_or_else(|_| "quickstart.db".to_owned());
    let store = SqliteStore::connect(&format!("sqlite://{path}")).await?;
    store.migrate().await?;
    println!("1. store: SQLite file {path} (migrated)");

    // The hashing key must be stable across restarts: load it from your secret manager.
    let key = match std::env::var("TOKEN_HASH_KEY") {
        Ok(hex) => HashKey::from_hex(KeyId::new(1), &hex)?,
        Err(_) => HashKey::generate(KeyId::new(1))?,
    };
    let keyring = Keyring::new(key);
    let manager = TokenManager::builder(store, keyring)
        .prefix("demo")?
        // Validations of known tokens are served from memory; revocations through this manager
        // take effect at once. Remove this line to read the database on every validation.
        .cache(CacheConfig::default())
        .build()?;

    let issued = manager
        .issue(
            IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?)
                .ttl(Duration::from_secs(3600))
                .name("quickstart")
                .context(Context::new().actor("quickstart")),
        )
        .await?;
    let token = issued.token.expose_secret();
    println!(
        "2. issued token {} for user:42 with scope widgets:read",
        issued.token.id()
    );
    println!("   token (shown once): {token}");

    // Requirements are parsed once; validation parses nothing.
    let read = Requirement::parse("widgets:read")?;
    let ok = manager.validate(token, &read).await?;
    println!(
        "3. validate for widgets:read -> ok, subject {}",
        ok.subject()
    );

    let write = Requirement::parse("widgets:write")?;
    match manager.validate(token, &write).await {
        Ok(_) => return Err("a read-only token was accepted for widgets:write".into()),
        Err(e) => {
            assert_eq!(e.class(), ErrorClass::InsufficientScope);
            println!("4. validate for widgets:write -> refused: {e}");
        }
    }

    let revoked = manager
        .revoke(
            RevokeSelector::Token(issued.token.id()),
            "quickstart finished",
        )
        .await?;
    println!("5. revoked {} token(s)", revoked.len());

    match manager.validate(token, &read).await {
        Ok(_) => return Err("a revoked token was accepted".into()),
        Err(e) => println!(
            "6. validate after revoke -> refused: {e} (class {:?})",
            e.class()
        ),
    }

    for event in manager.audit(issued.token.id()).await? {
        let reason = event
            .event
            .reason
            .map(|reason| format!(" (reason: {reason})"))
            .unwrap_or_default();
        println!(
            "   audit #{}: {}{reason}",
            event.seq,
            event.event.kind.as_str()
        );
    }
    Ok(())
}
