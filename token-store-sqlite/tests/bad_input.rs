//! Bad input: unreadable files, newer schemas, unmigrated databases and damaged rows yield typed
//! errors naming the problem — never a panic, never an accepted token.

use token_core::store::TokenStore;
use token_core::{
    HashKey, IssueRequest, IssuedToken, KeyId, Keyring, ManualClock, ScopeSet, StoreError,
    TokenManager, ValidationError,
};
use token_store_sqlite::{SCHEMA_VERSION, SqliteStore};

mod common;

use common::{migrated, url};

fn manager(store: &SqliteStore) -> TokenManager {
    TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .clock(ManualClock::starting_now())
    .build()
    .unwrap_or_else(|e| panic!("manager: {e}"))
}

async fn issue(manager: &TokenManager) -> IssuedToken {
    manager
        .issue(IssueRequest::new(
            "user:1",
            ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("issue: {e}"))
}

/// Runs raw SQL on one connection with CHECK constraints disabled (the schema's own checks would
/// refuse the damage we want to simulate).
async fn damage(store: &SqliteStore, sql: &'static str, id: &[u8]) {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let changed = sqlx::query(sql)
        .bind(id.to_vec())
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected();
    assert_eq!(changed, 1, "{sql}");
    sqlx::query("PRAGMA ignore_check_constraints = OFF")
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Damages the issued token's row with `sql` and checks that reading it is `Corrupt` naming
/// `column` and the token, and that validation refuses it.
async fn assert_damage_detected(sql: &'static str, column: &str) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated(&dir.path().join("t.db")).await;
    let manager = manager(&store);
    let issued = issue(&manager).await;
    let id = issued.token.id();
    damage(&store, sql, id.as_bytes()).await;

    match store.get(id).await {
        Err(StoreError::Corrupt {
            store: name,
            message,
        }) => {
            assert_eq!(name, "sqlite");
            assert!(
                message.contains(column),
                "{message:?} does not name {column}"
            );
            assert!(
                message.contains(&id.to_string()),
                "{message:?} does not name the token"
            );
        }
        other => panic!("expected Corrupt for {column}, got {other:?}"),
    }
    match manager.validate(issued.token.expose_secret(), &[]).await {
        Err(ValidationError::Store(StoreError::Corrupt { .. })) => {}
        Ok(_) => panic!("a token with a damaged {column} was accepted"),
        Err(other) => panic!("unexpected validation error {other}"),
    }
    // Listing refuses too rather than returning a record built from garbage.
    assert!(matches!(
        manager
            .list(token_core::ListFilter::all(), token_core::Page::default())
            .await,
        Err(token_core::Error::Store(StoreError::Corrupt { .. }))
    ));
    // A damaged token can still be revoked (revocation must never be blocked).
    let revoked = manager
        .revoke(
            token_core::RevokeSelector::Subject("user:1".into()),
            "damaged",
        )
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"));
    assert_eq!(revoked, vec![id]);
}

#[tokio::test]
async fn invalid_scope_string_is_corrupt_and_never_accepted() {
    assert_damage_detected(
        "UPDATE tokens SET scopes = 'Not A Scope!' WHERE id = ?",
        "tokens.scopes",
    )
    .await;
}

#[tokio::test]
async fn truncated_hash_is_corrupt_and_never_accepted() {
    assert_damage_detected(
        "UPDATE tokens SET hash = substr(hash, 1, 31) WHERE id = ?",
        "tokens.hash",
    )
    .await;
}

#[tokio::test]
async fn out_of_range_timestamp_is_corrupt() {
    assert_damage_detected(
        "UPDATE tokens SET expires_at = 9223372036854775807 WHERE id = ?",
        "tokens.expires_at",
    )
    .await;
}

#[tokio::test]
async fn negative_use_count_is_corrupt() {
    assert_damage_detected(
        "UPDATE tokens SET use_count = -1 WHERE id = ?",
        "tokens.use_count",
    )
    .await;
}

#[tokio::test]
async fn wrong_column_type_is_corrupt() {
    assert_damage_detected(
        "UPDATE tokens SET hash = 'text, not bytes' WHERE id = ?",
        "tokens.hash",
    )
    .await;
}

#[tokio::test]
async fn bad_parent_id_is_corrupt() {
    assert_damage_detected(
        "UPDATE tokens SET parent_id = x'0102' WHERE id = ?",
        "tokens.parent_id",
    )
    .await;
}

#[tokio::test]
async fn unknown_audit_kind_is_corrupt() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated(&dir.path().join("t.db")).await;
    let manager = manager(&store);
    let issued = issue(&manager).await;
    sqlx::query("UPDATE audit_events SET kind = 'teleported' WHERE token_id = ?")
        .bind(issued.token.id().as_bytes().to_vec())
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    match store
        .query_audit(
            &token_core::AuditQuery::new()
                .token(issued.token.id())
                .limit(1000),
        )
        .await
    {
        Err(StoreError::Corrupt { message, .. }) => {
            assert!(message.contains("audit_events.kind"), "{message}");
            assert!(message.contains("teleported"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, garbage).unwrap_or_else(|e| panic!("{e}"));
    let result = match SqliteStore::connect(&url(&path)).await {
        Err(e) => Err(e),
        Ok(store) => store.migrate().await,
    };
    match result {
        Err(StoreError::Corrupt { store, message }) => {
            assert_eq!(store, "sqlite");
            assert!(message.contains("not a valid SQLite database"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn unreadable_path_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // A directory where the file should be.
    let path = dir.path().join("is-a-dir");
    std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{e}"));
    let result = match SqliteStore::connect(&url(&path)).await {
        Err(e) => Err(e),
        Ok(store) => store.migrate().await,
    };
    assert!(
        matches!(
            result,
            Err(StoreError::Backend {
                store: "sqlite",
                ..
            } | StoreError::Corrupt { .. })
        ),
        "{result:?}"
    );
    // A malformed URL is a typed error too.
    assert!(
        SqliteStore::connect("sqlite://x.db?mode=bogus")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("t.db");
    let store = migrated(&path).await;
    sqlx::query("INSERT INTO token_store_migrations (version, description, applied_at) VALUES (?, 'from the future', 0)")
        .bind(SCHEMA_VERSION + 1)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store.close().await;

    let reopened = SqliteStore::connect(&url(&path))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let expect_too_new = |result: Result<(), StoreError>| match result {
        Err(StoreError::SchemaTooNew {
            store,
            found,
            supported,
        }) => {
            assert_eq!(
                (store, found, supported),
                ("sqlite", SCHEMA_VERSION + 1, SCHEMA_VERSION)
            );
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    };
    expect_too_new(reopened.migrate().await);
    // Operations refuse it too, not only migrate.
    expect_too_new(
        reopened
            .get(token_core::TokenId::from_bytes([1; 16]))
            .await
            .map(|_| ()),
    );
}

#[tokio::test]
async fn unmigrated_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::connect(&url(&dir.path().join("fresh.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let err = store
        .get(token_core::TokenId::from_bytes([1; 16]))
        .await
        .err()
        .unwrap_or_else(|| panic!("an unmigrated database answered"));
    match &err {
        StoreError::NotMigrated {
            store,
            found,
            required,
        } => {
            assert_eq!(*store, "sqlite");
            assert_eq!(*found, None);
            assert_eq!(*required, SCHEMA_VERSION);
        }
        other => panic!("expected NotMigrated, got {other:?}"),
    }
    assert!(err.to_string().contains("migrate()"), "{err}");
    // The manager surfaces it as a store error, not as an accepted or unknown token.
    let manager = manager(&store);
    assert!(
        manager
            .issue(IssueRequest::new(
                "u",
                ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}"))
            ))
            .await
            .is_err()
    );
    // After migrate the same store works.
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    issue(&manager).await;
}

/// A row whose `use_count` is not a valid count (written with the checks off) is reported by the
/// usage flush, by id, and left alone; the other updates commit and the next flush works. SQLite
/// was never poisoned by it (an update evaluates only the checks of the columns it changes, and
/// `-1 + n` passes), but it silently overwrote the invalid count; now it is reported, as on
/// PostgreSQL.
#[tokio::test]
async fn a_damaged_row_does_not_poison_usage_flushes() {
    {
        let damage_sql = "UPDATE tokens SET use_count = -1 WHERE id = ?";
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = migrated(&dir.path().join("t.db")).await;
        let manager = manager(&store);
        let (bad, good) = (issue(&manager).await, issue(&manager).await);
        for token in [&bad, &good] {
            manager
                .validate(token.token.expose_secret(), &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        damage(&store, damage_sql, bad.token.id().as_bytes()).await;
        match manager.flush_usage().await {
            Err(token_core::Error::Store(StoreError::Corrupt { message, .. })) => {
                assert!(message.contains(&bad.token.id().to_string()), "{message}");
                assert!(!message.contains(&good.token.id().to_string()), "{message}");
            }
            other => panic!("{damage_sql}: expected the bad row reported, got {other:?}"),
        }
        let good_record = store
            .get(good.token.id())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("gone"));
        assert_eq!(
            good_record.use_count, 1,
            "{damage_sql}: the good update is written"
        );
        manager
            .validate(good.token.expose_secret(), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        manager
            .flush_usage()
            .await
            .unwrap_or_else(|e| panic!("{damage_sql}: the next flush: {e}"));
    }
}

/// A row that does not decode does not block a suspension (an incident must not wait for a
/// repair): it is suspended by its raw key with the others, and never resumed.
#[tokio::test]
async fn a_corrupt_row_is_suspended_with_the_rest_and_never_resumed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = migrated(&dir.path().join("tokens.db")).await;
    let manager = manager(&store);
    let good = issue(&manager).await;
    let bad = issue(&manager).await;
    damage(
        &store,
        "UPDATE tokens SET metadata = 'not json' WHERE id = ?",
        bad.token.id().as_bytes(),
    )
    .await;
    let suspended = manager
        .suspend(
            token_core::RevokeSelector::Subject("user:1".into()),
            "incident",
        )
        .await
        .unwrap_or_else(|e| panic!("a corrupt row blocked the suspension: {e}"));
    assert_eq!(suspended.len(), 2, "{suspended:?}");
    let stamp: Option<i64> = sqlx::query_scalar("SELECT suspended_at FROM tokens WHERE id = ?")
        .bind(bad.token.id().as_bytes().to_vec())
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stamp.is_some(), "the corrupt row was not suspended");
    assert!(matches!(
        manager.validate(good.token.expose_secret(), &[]).await,
        Err(ValidationError::Suspended)
    ));
    let resumed = manager
        .resume(
            token_core::RevokeSelector::Subject("user:1".into()),
            "cleared",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resumed,
        vec![good.token.id()],
        "only the readable row is resumed"
    );
}
