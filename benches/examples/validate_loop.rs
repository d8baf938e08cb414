//! A validation loop for instruction-level profiling (callgrind counts do not depend on machine
//! noise). Everything before the loop is setup; the loop is one non-inlined function, so
//!
//! ```text
//! cargo build --release -p benches --example validate_loop
//! valgrind --tool=callgrind --toggle-collect='*hot_loop*' target/release/examples/validate_loop
//! ```
//!
//! counts exactly the validations. `TOKEN_BENCH_TOKENS` (default 10,000) tokens are issued with
//! the default policy; `TOKEN_PROFILE_VALIDATIONS` (default 100,000) validations walk them at
//! random. Divide the collected instructions by the validation count.

use std::hint::black_box;

use benches::{Walk, token_count};
use futures_util::FutureExt;
use token_core::{HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager};
use token_store_memory::MemoryStore;

#[inline(never)]
fn hot_loop(manager: &TokenManager, tokens: &[String], required: &[Scope], count: usize) {
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    for _ in 0..count {
        let token = &tokens[walk.next_index(tokens.len())];
        let validated = manager
            .validate(token, required)
            .now_or_never()
            .expect("the memory store never suspends")
            .expect("valid");
        black_box(validated);
    }
}

fn main() {
    let tokens_wanted = token_count("TOKEN_BENCH_TOKENS", 10_000);
    let validations = token_count("TOKEN_PROFILE_VALIDATIONS", 100_000);
    let manager = TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [7; 32])),
    )
    .prefix("acme_live")
    .expect("prefix")
    .build()
    .expect("manager");
    let scopes =
        ScopeSet::parse("widgets:read widgets:write billing:invoices:read").expect("scopes");
    let tokens: Vec<String> = (0..tokens_wanted)
        .map(|i| {
            manager
                .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
                .now_or_never()
                .expect("the memory store never suspends")
                .expect("issue")
                .token
                .expose_secret()
                .to_owned()
        })
        .collect();
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
    hot_loop(&manager, &tokens, &required, validations);
    println!("{validations} validations over {tokens_wanted} tokens");
}
