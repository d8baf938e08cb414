//! Shared code of the example programs (`cargo run --example quickstart`, `cargo run --example
//! server`). The server lives here, not in the example file, so integration tests can start it on
//! a random port.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod redact;
pub mod server;

/// The README's Rust examples, compiled as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
