//! Migrations (own table, idempotent) and connection settings (durability).

use std::path::Path;

use token_store_sqlite::{
    MIGRATIONS_TABLE, SCHEMA_VERSION, SqliteStore, SqliteStoreOptions, Synchronous,
};

fn url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

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
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
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
