//! An in-process rate-limit check loop for instruction-level profiling, as `validate_loop` is
//! for validations:
//!
//! ```text
//! cargo build --release -p benches --example ratelimit_loop
//! valgrind --tool=callgrind --toggle-collect='*hot_loop*' target/release/examples/ratelimit_loop
//! ```
//!
//! `TOKEN_BENCH_TOKENS` (default 10,000) token ids, each with one limit `requests` (a billion a
//! year, so no check is denied), checked `TOKEN_PROFILE_VALIDATIONS` (default 100,000) times at
//! random. Divide the collected instructions by the check count.

use std::hint::black_box;

use benches::{Walk, token_count};
use futures_util::FutureExt;
use token_core::rate_limit::RATE_LIMIT_MAX_WINDOW;
use token_core::{RateLimit, RateLimits, TokenId};
use token_ratelimit::RateLimiter;

#[inline(never)]
fn hot_loop(limiter: &RateLimiter, ids: &[TokenId], limits: &RateLimits, count: usize) {
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    for _ in 0..count {
        let id = ids[walk.next_index(ids.len())];
        let decision = limiter
            .check("user:42", id, limits, 1)
            .now_or_never()
            .expect("the in-process limiter never suspends")
            .expect("no error");
        black_box(decision);
    }
}

fn main() {
    let tokens = token_count("TOKEN_BENCH_TOKENS", 10_000);
    let checks = token_count("TOKEN_PROFILE_VALIDATIONS", 100_000);
    let ids: Vec<TokenId> = (0..tokens)
        .map(|i| {
            let mut bytes = [0u8; 16];
            bytes[..8]
                .copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            bytes[8..].copy_from_slice(&(i as u64).to_le_bytes());
            TokenId::from_bytes(bytes)
        })
        .collect();
    let limits =
        RateLimits::new([
            RateLimit::new("requests", 1_000_000_000, RATE_LIMIT_MAX_WINDOW).expect("limit"),
        ])
        .expect("limits");
    let limiter = RateLimiter::builder().build();
    hot_loop(&limiter, &ids, &limits, checks);
    println!("{checks} checks over {tokens} token ids");
}
