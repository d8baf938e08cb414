//! A full disk (simulated with SQLite's `max_page_count`, so it runs anywhere and as root):
//! issuing fails closed with a typed error, nothing committed is lost, the audit chain stays
//! intact, and once there is room again the store works on.

use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;
use token_core::{
    Error, HashKey, IssueRequest, KeyId, Keyring, ScopeSet, StoreError, TokenManager,
};
use token_store_sqlite::{SqliteStore, SqliteStoreOptions};

mod common;

fn manager(store: SqliteStore) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [8; 32])))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn request() -> IssueRequest {
    IssueRequest::new(
        "user:1",
        ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
    )
    .name("n".repeat(100))
}

#[tokio::test]
async fn a_full_disk_fails_closed_and_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("tokens.db");
    let store = common::migrated(&path).await;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.close().await;

    // Every connection of this store may grow the file by 4 pages at most.
    let connect = SqliteConnectOptions::from_str(&common::url(&path))
        .unwrap_or_else(|e| panic!("{e}"))
        .pragma("max_page_count", (pages + 4).to_string());
    let full = SqliteStore::connect_with(SqliteStoreOptions::from_connect_options(connect))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tokens = manager(full.clone());
    let mut issued = Vec::new();
    let refusal = loop {
        match tokens.issue(request()).await {
            Ok(token) => issued.push(token.token.expose_secret().to_owned()),
            Err(error) => break error,
        }
        assert!(issued.len() < 10_000, "the page limit never bit");
    };
    assert!(
        !issued.is_empty(),
        "some tokens fit before the disk was full"
    );
    match &refusal {
        Error::Store(StoreError::Backend { store, source }) => {
            assert_eq!(*store, "sqlite");
            assert!(source.to_string().contains("full"), "{source}");
        }
        other => panic!("expected a typed store error, got {other:?}"),
    }
    for token in &issued {
        tokens
            .validate(token, &[])
            .await
            .unwrap_or_else(|e| panic!("a committed token was lost: {e}"));
    }
    full.close().await;

    // Room again: everything committed is there, the chain verifies, the store works on.
    let store = common::migrated(&path).await;
    let tokens = manager(store);
    for token in &issued {
        tokens
            .validate(token, &[])
            .await
            .unwrap_or_else(|e| panic!("lost after reopening: {e}"));
    }
    let report = tokens
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    let events = tokens
        .query_audit(token_core::AuditQuery::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events.items.len(),
        issued.len(),
        "one Issued event per committed token, no more"
    );
    tokens
        .issue(request())
        .await
        .unwrap_or_else(|e| panic!("the store did not recover: {e}"));
}
