//! The validation hot path allocates nothing on success: counted by `dhat`'s heap profiler in
//! testing mode, over the memory store with the default policy (idle timeout on, so the usage
//! buffer is read and written on every validation). This file holds one test: dhat counts the
//! whole process.

use futures_util::FutureExt;
use token_core::{HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager};
use token_store_memory::MemoryStore;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[test]
fn successful_validation_allocates_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let manager = TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [9; 32])),
    )
    .prefix("acme")
    .unwrap()
    .build()
    .unwrap();
    let scopes = ScopeSet::parse("widgets:read widgets:write billing").unwrap();
    let tokens: Vec<String> = (0..64)
        .map(|i| {
            let issued = manager
                .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
                .now_or_never()
                .expect("the memory store never suspends")
                .unwrap();
            issued.token.expose_secret().to_owned()
        })
        .collect();
    let required: Vec<Scope> = vec!["billing:invoices:read".parse().unwrap()];
    let validate = |token: &str| {
        manager
            .validate(token, &required)
            .now_or_never()
            .expect("the memory store never suspends")
            .expect("valid")
    };
    // Warm up: the usage buffer's table reaches its size for these tokens.
    for token in &tokens {
        validate(token);
    }
    let before = dhat::HeapStats::get().total_blocks;
    let rounds = 10;
    for _ in 0..rounds {
        for token in &tokens {
            drop(validate(token));
        }
    }
    let allocated = dhat::HeapStats::get().total_blocks - before;
    let validations = (rounds * tokens.len()) as u64;
    assert_eq!(
        allocated, 0,
        "{allocated} allocations in {validations} successful validations"
    );
}
