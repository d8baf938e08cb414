//! Helpers shared by the integration tests: URLs and migrated stores.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use token_store_sqlite::SqliteStore;

/// The `sqlite://` URL of a file.
pub fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A migrated store on the file at `path` (created if missing).
pub async fn migrated(path: &Path) -> SqliteStore {
    migrated_at(&url(path)).await
}

/// A migrated store on a private in-memory database.
pub async fn migrated_in_memory() -> SqliteStore {
    migrated_at("sqlite::memory:").await
}

async fn migrated_at(url: &str) -> SqliteStore {
    let store = SqliteStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}
