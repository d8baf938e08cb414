//! Shared code of the example programs (`cargo run --example quickstart`, `cargo run --example
//! server`). The server lives here, not in the example file, so integration tests can start it on
//! a random port.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod credentials;
mod oauth;
pub mod redact;
pub mod server;

/// Logs to stderr through `tracing-subscriber`, filtered by `RUST_LOG` (default `info`: the
/// lifecycle spans `token.issue`, `token.revoke`, ...; `RUST_LOG=token_core=debug` adds
/// `token.validate`). The library never puts a secret in a span or event. Call once, first.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (a test that starts two programs' code) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // One line per operation, when its span closes, with its fields (outcome, reason, ...).
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
