//! The whole token-testkit conformance suite against the SQLite store, one fresh database file
//! per case.

mod common;

use std::sync::Arc;

use token_testkit::{Fixture, TestStore};

struct SqliteFixture;

#[async_trait::async_trait]
impl Fixture for SqliteFixture {
    async fn new_store(&self) -> TestStore {
        let dir = Arc::new(tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")));
        let path = dir.path().join("tokens.db");
        let store = common::migrated(&path).await;
        let keyed = store.clone();
        TestStore {
            audit_keys: Some(Arc::new(move |keys| {
                keyed.clone().with_audit_keys(keys);
            })),
            store: Arc::new(store),
            // Every byte persisted: the main file plus the write-ahead log (which holds the
            // recent commits until a checkpoint). The closure keeps the directory alive.
            raw: Arc::new(move || {
                let dir = Arc::clone(&dir);
                Box::pin(async move {
                    let mut bytes = Vec::new();
                    for name in ["tokens.db", "tokens.db-wal"] {
                        if let Ok(content) = std::fs::read(dir.path().join(name)) {
                            bytes.extend_from_slice(&content);
                        }
                    }
                    bytes
                })
            }),
        }
    }
}

token_testkit::conformance_tests!(SqliteFixture);

/// The suite again, with the validation cache in front of the store.
mod cached {
    token_testkit::conformance_tests!(token_testkit::Cached::new(super::SqliteFixture));
}
