//! The example server. See `examples/src/server.rs` for the routes.
//!
//! ```text
//! cargo run --example server
//! TOKEN_EXAMPLE_ADDR=127.0.0.1:8080 TOKEN_EXAMPLE_DATABASE_URL=postgres://postgres@127.0.0.1/test cargo run --example server
//! ```
//!
//! | variable | default |
//! |---|---|
//! | `TOKEN_EXAMPLE_ADDR` | `127.0.0.1:3000` |
//! | `TOKEN_EXAMPLE_DATABASE_URL` | `sqlite://token-example.db` (a `postgres://` URL works too; printed with its password as `***`) |
//! | `TOKEN_HASH_KEY` | a fresh random key (64 hex characters to keep tokens valid across restarts) |
//! | `TOKEN_EXAMPLE_PUBLIC_URL` | `http://` and the listen address: the base URL DPoP proofs' `htu` is checked under |
//! | `TOKEN_EXAMPLE_DPOP_NONCE` | unset; `1` requires server nonces in DPoP proofs |
//! | `TOKEN_EXAMPLE_REDIS_URL` | unset: rate limits in process; e.g. `redis://127.0.0.1:6379` shares them across instances |

use std::future::Future;
use std::time::Duration;

use examples::redact::redacted_url;
use examples::server::{
    ServerOptions, bootstrap_admin, open_manager, rate_limiter_from_env, serve_with,
    write_admin_token,
};
use token_core::{HashKey, KeyId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    examples::init_logging();
    let addr = std::env::var("TOKEN_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let url = std::env::var("TOKEN_EXAMPLE_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://token-example.db".to_owned());
    let key = match std::env::var("TOKEN_HASH_KEY") {
        Ok(hex) => HashKey::from_hex(KeyId::new(1), &hex)?,
        Err(_) => HashKey::generate(KeyId::new(1))?,
    };
    let shutdown = shutdown_signal()?;
    // Before connecting, so a store that cannot be opened is named next to the error.
    println!("storage: {}", redacted_url(&url));
    let manager = open_manager(&url, key).await?;
    let admin = bootstrap_admin(&manager).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // Straight from the token's zeroizing buffer to stdout, never through a `String`.
    write_admin_token(&mut std::io::stdout().lock(), &admin.token)?;
    drop(admin);
    let mut options = ServerOptions::from_env();
    match std::env::var("TOKEN_EXAMPLE_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            println!("rate limits: shared through {}", redacted_url(&url))
        }
        _ => println!("rate limits: in process"),
    }
    options.rate_limiter = Some(rate_limiter_from_env().await?);
    serve_with(
        listener,
        manager,
        &options,
        Duration::from_secs(60),
        shutdown,
    )
    .await?;
    println!("shut down cleanly");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed before this returns, so a signal
/// that arrives while the server is still starting shuts it down cleanly instead of killing it.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
