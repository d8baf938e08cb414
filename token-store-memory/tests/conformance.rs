//! The whole token-testkit conformance suite against the memory store.

use std::sync::Arc;

use token_store_memory::MemoryStore;
use token_testkit::{Fixture, TestStore};

struct Memory;

#[async_trait::async_trait]
impl Fixture for Memory {
    async fn new_store(&self) -> TestStore {
        let store = MemoryStore::new();
        let dump = store.clone();
        let keyed = store.clone();
        TestStore {
            audit_keys: Some(Arc::new(move |keys| {
                keyed.clone().with_audit_keys(keys);
            })),
            store: Arc::new(store),
            raw: Arc::new(move || {
                let dump = dump.clone();
                Box::pin(async move { dump.dump() })
            }),
        }
    }
}

token_testkit::conformance_tests!(Memory);

/// The suite again, with the memory store behind the validation cache (made to look like a store
/// that does I/O, so every lookup goes through the cache).
mod cached {
    token_testkit::conformance_tests!(token_testkit::Cached::new(super::Memory));
}
