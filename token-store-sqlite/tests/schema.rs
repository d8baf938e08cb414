//! Migrations (own table, idempotent) and connection settings (durability).

use token_store_sqlite::{
    MIGRATIONS_TABLE, SCHEMA_VERSION, SqliteStore, SqliteStoreOptions, Synchronous,
};

mod common;

use common::url;

async fn table_exists(store: &SqliteStore, name: &str) -> bool {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name.to_owned())
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    n == 1
}

#[tokio::test]
async fn migrate_twice_is_fine_and_uses_its_own_table() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::connect(&url(&dir.path().join("t.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert!(
        !table_exists(&store, "tokens").await,
        "connect must not migrate"
    );
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("first migrate: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("second migrate: {e}"));
    // A second store on the same file migrating concurrently is fine too.
    let other = SqliteStore::connect(&url(&dir.path().join("t.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.unwrap_or_else(|e| panic!("{e}"));
    b.unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(MIGRATIONS_TABLE, "token_store_migrations");
    assert!(table_exists(&store, MIGRATIONS_TABLE).await);
    assert!(!table_exists(&store, "_sqlx_migrations").await);
    for table in ["tokens", "token_labels", "audit_events"] {
        assert!(table_exists(&store, table).await, "{table} missing");
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM token_store_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

async fn pragma(store: &SqliteStore, name: &'static str) -> String {
    let sql = match name {
        "synchronous" => "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
        "journal_mode" => "SELECT journal_mode FROM pragma_journal_mode",
        "foreign_keys" => "SELECT CAST(foreign_keys AS TEXT) FROM pragma_foreign_keys",
        "busy_timeout" => "SELECT CAST(timeout AS TEXT) FROM pragma_busy_timeout",
        _ => panic!("unknown pragma {name}"),
    };
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[tokio::test]
async fn default_connection_is_wal_full_sync_with_foreign_keys() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::connect(&url(&dir.path().join("t.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert_eq!(pragma(&store, "synchronous").await, "2", "FULL by default");
    assert_eq!(pragma(&store, "journal_mode").await, "wal");
    assert_eq!(pragma(&store, "foreign_keys").await, "1");
    assert_eq!(pragma(&store, "busy_timeout").await, "5000");
}

#[tokio::test]
async fn synchronous_is_configurable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (setting, expected) in [
        (Synchronous::Normal, "1"),
        (Synchronous::Full, "2"),
        (Synchronous::Extra, "3"),
    ] {
        let options = SqliteStoreOptions::new(&url(&dir.path().join("t.db")))
            .unwrap_or_else(|e| panic!("{e}"))
            .synchronous(setting)
            .busy_timeout(std::time::Duration::from_millis(1500))
            .max_connections(2);
        assert_eq!(options.get_synchronous(), setting);
        let store = SqliteStore::connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        assert_eq!(pragma(&store, "synchronous").await, expected, "{setting:?}");
        assert_eq!(pragma(&store, "busy_timeout").await, "1500");
        store.close().await;
    }
}

#[tokio::test]
async fn in_memory_store_keeps_its_data() {
    use token_core::{HashKey, IssueRequest, KeyId, Keyring, ScopeSet, TokenManager};
    let store = common::migrated_in_memory().await;
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [1; 32])),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let manager = manager.clone();
            tokio::spawn(async move {
                manager
                    .issue(IssueRequest::new(
                        format!("u{i}"),
                        ScopeSet::parse("a").unwrap_or_default(),
                    ))
                    .await
            })
        })
        .collect();
    for task in tasks {
        let issued = task
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("issue: {e}"));
        manager
            .validate(issued.token.expose_secret(), &[])
            .await
            .unwrap_or_else(|e| panic!("validate: {e}"));
    }
}

#[tokio::test]
async fn from_pool_adopts_a_host_pool() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let options =
        SqliteStoreOptions::new(&url(&dir.path().join("t.db"))).unwrap_or_else(|e| panic!("{e}"));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(options.connect_options())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::from_pool(pool);
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    assert!(table_exists(&store, "tokens").await);
}

#[tokio::test]
async fn version_1_database_is_upgraded_and_its_events_chained() {
    use token_core::store::TokenStore;
    use token_core::{
        AuditKind, AuditQuery, HashKey, IssueRequest, KeyId, Keyring, ScopeSet, StoreError,
        TokenId, TokenManager,
    };

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::connect(&url(&dir.path().join("v1.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate_up_to(1)
        .await
        .unwrap_or_else(|e| panic!("migrate to 1: {e}"));
    assert!(!table_exists(&store, "audit_checkpoint").await);

    // A version-1 database with a token and its events, written as version 1 wrote them (no hash
    // column), the last event deleted so the AUTOINCREMENT counter is ahead of max(seq).
    let id = TokenId::from_bytes([7; 16]);
    sqlx::query(
        "INSERT INTO tokens (id, hash, hash_key_id, prefix, subject, scopes, created_at, family_id) \
         VALUES (?, ?, 1, 'acme', 'user:1', 'a b', 1000000, ?)",
    )
    .bind(id.as_bytes().to_vec())
    .bind(vec![9u8; 32])
    .bind(id.as_bytes().to_vec())
    .execute(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(
        "INSERT INTO audit_events (at, kind, token_id, subject, actor, client_ip) \
             VALUES (1000000, 'issued', x'07070707070707070707070707070707', 'user:1', 'admin:1', '192.0.2.1'); \
         INSERT INTO audit_events (at, kind, fingerprint, reason, detail) \
             VALUES (2000000, 'denied', 'fp', 'unknown_token', 'coalesced=3'); \
         INSERT INTO audit_events (at, kind, token_id, subject, user_agent, request_id, reason) \
             VALUES (3000000, 'revoked', x'07070707070707070707070707070707', 'user:1', 'curl', 'r-1', 'leaked'); \
         INSERT INTO audit_events (at, kind) VALUES (4000000, 'policy_violation'); \
         INSERT INTO audit_events (at, kind) VALUES (5000000, 'denied'); \
         DELETE FROM audit_events WHERE seq = 5;",
    )
    .execute(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // The library needs the latest version now.
    match store.get(id).await {
        Err(StoreError::NotMigrated {
            found: Some(1),
            required: SCHEMA_VERSION,
            ..
        }) => {}
        other => panic!("expected NotMigrated at 1, got {other:?}"),
    }

    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate to {SCHEMA_VERSION}: {e}"));
    assert_eq!(SCHEMA_VERSION, 6);
    assert!(table_exists(&store, "audit_checkpoint").await);
    // Version 4's columns exist on the upgraded table.
    sqlx::query(
        "SELECT suspended_at, metadata, allowed_cidrs, dpop_jkt, use_refill, next_refill_at, \
         rate_limits FROM tokens LIMIT 0",
    )
    .execute(store.pool())
    .await
    .unwrap_or_else(|e| panic!("version 4 columns: {e}"));
    assert!(table_exists(&store, "dpop_proofs").await);
    assert!(!table_exists(&store, "audit_events_v2").await);

    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [1; 32])),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, 4);

    // Every field survived the rebuild, seqs included.
    let events = store
        .query_audit(&AuditQuery::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(events[0].event.kind, AuditKind::Issued);
    assert_eq!(events[0].event.token_id, Some(id));
    assert_eq!(events[0].event.client_ip.as_deref(), Some("192.0.2.1"));
    assert_eq!(events[1].event.fingerprint.as_deref(), Some("fp"));
    assert_eq!(events[1].event.detail.as_deref(), Some("coalesced=3"));
    assert_eq!(events[2].event.request_id.as_deref(), Some("r-1"));
    assert_eq!(events[2].event.reason.as_deref(), Some("leaked"));
    let trail = store
        .query_audit(&token_core::AuditQuery::new().token(id).limit(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trail.len(), 2);

    // The version-1 token is still there, and new events chain on, after the old counter (seq 5
    // was used once, so it is never reused).
    let record = store
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("v1 token lost"));
    assert_eq!(record.subject, "user:1");
    manager
        .issue(IssueRequest::new(
            "user:2",
            ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("issue after upgrade: {e}"));
    let events = store
        .query_audit(&AuditQuery::new().after(4))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(events.first().map(|e| e.seq), Some(6));
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, 4 + events.len() as u64);

    // Migrating again changes nothing.
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM token_store_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test]
async fn undecodable_version_1_event_fails_the_upgrade_cleanly() {
    use token_core::StoreError;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = SqliteStore::connect(&url(&dir.path().join("v1.db")))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate_up_to(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(
        "INSERT INTO audit_events (at, kind) VALUES (1, 'issued'); \
         INSERT INTO audit_events (at, kind) VALUES (2, 'no_such_kind');",
    )
    .execute(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    match store.migrate().await {
        Err(StoreError::Corrupt { message, .. }) => {
            assert!(message.contains("seq 2"), "{message}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing changed: still version 1, the v1 table intact, no half-built table.
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM token_store_migrations")
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(versions, vec![1]);
    assert!(!table_exists(&store, "audit_events_v2").await);
    assert!(!table_exists(&store, "audit_checkpoint").await);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events")
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 2);
}

/// Another process migrates the file past this library after it connected (and cached its
/// version check): the first statement the change breaks reports `SchemaTooNew`, not a driver
/// error. (Before the fix: a `Backend` error "no such column".)
#[tokio::test]
async fn a_schema_migrated_past_the_library_later_is_reported() {
    use token_core::{HashKey, IssueRequest, KeyId, Keyring, ScopeSet, StoreError, TokenManager};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = common::migrated(&dir.path().join("t.db")).await;
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let issued = manager
        .issue(IssueRequest::new(
            "u",
            ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "ALTER TABLE tokens RENAME COLUMN scopes TO scope_set".to_owned(),
        format!(
            "INSERT INTO token_store_migrations (version, description, applied_at) \
             VALUES ({}, 'from the future', 0)",
            SCHEMA_VERSION + 1
        ),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let err = token_core::TokenStore::get(&store, issued.token.id())
        .await
        .err();
    assert!(
        matches!(err, Some(StoreError::SchemaTooNew { found, .. }) if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
}
