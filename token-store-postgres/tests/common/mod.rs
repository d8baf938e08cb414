//! Helpers shared by the integration tests: the server URL, fresh schemas, raw dumps.

#![allow(dead_code, unreachable_pub)]

use std::fmt::Write as _;
use std::sync::Mutex;

use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use token_core::{HashKey, KeyId, Keyring, ScopeSet, TokenId, TokenManager};
use token_store_postgres::{PgStore, PgStoreOptions};

/// A manager (prefix `test`, a fixed key) over `store`.
pub fn manager(store: PgStore) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [7; 32])))
        .prefix("test")
        .unwrap_or_else(|e| panic!("{e}"))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Parses a scope set written in a test.
pub fn scopes(text: &str) -> ScopeSet {
    ScopeSet::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The variable naming the test server.
pub const URL_VAR: &str = "TOKEN_TEST_POSTGRES_URL";

/// The server URL, or `None` after printing the one skip line for `test`.
pub fn url_or_skip(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            token_testkit::report_skip(test, &format!("{URL_VAR} is not set"));
            None
        }
    }
}

/// The server URL if set.
pub fn url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty())
}

/// A fresh random schema name (`tst_` and 16 hex digits).
pub fn fresh_schema() -> String {
    let id = TokenId::generate().unwrap_or_else(|e| panic!("randomness: {e}"));
    let mut name = String::from("tst_");
    for b in &id.as_bytes()[..8] {
        let _ = write!(name, "{b:02x}");
    }
    name
}

/// A migrated store in a fresh schema, with a pool of `max_connections`.
pub async fn migrated_store(url: &str, max_connections: u32) -> PgStore {
    let store = PgStore::connect_with(
        PgStoreOptions::new(url)
            .schema(fresh_schema())
            .max_connections(max_connections),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// A second store (its own pool) on the same schema, as another instance would have.
pub async fn second_instance(url: &str, schema: &str, app: &str) -> PgStore {
    PgStore::connect_with(
        PgStoreOptions::new(url)
            .schema(schema)
            .max_connections(4)
            .application_name(app),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// One direct connection (not a store's pool), for setup and fault injection.
pub async fn admin(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("admin connect: {e}"))
}

/// Terminates every server backend whose `application_name` is `application_name`; returns how
/// many there were.
pub async fn terminate(url: &str, application_name: &str) -> i64 {
    let mut conn = admin(url).await;
    let rows: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(application_name)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("terminate: {e}"));
    rows.len() as i64
}

/// Drops `schema` and everything in it. A store still in use (a background usage flush, a
/// sweeper) can deadlock with the drop's table locks; the server breaks it and the drop is tried
/// again.
pub async fn drop_schema(url: &str, schema: &str) {
    let mut conn = admin(url).await;
    let mut attempts = 0;
    loop {
        let dropped = sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut conn)
        .await;
        match dropped {
            Ok(_) => return,
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("40P01") && attempts < 5 =>
            {
                attempts += 1;
            }
            Err(e) => panic!("drop schema {schema}: {e}"),
        }
    }
}

/// Every row of every table in `schema` rendered as text, followed by the raw bytes of every
/// `bytea` value (ids and hashes).
pub async fn raw_dump(url: &str, schema: &str) -> Vec<u8> {
    let mut conn = admin(url).await;
    let mut out = Vec::new();
    for table in [
        "token_store_migrations",
        "tokens",
        "token_labels",
        "audit_events",
    ] {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT r::text AS line FROM \"{schema}\".{table} r"
        )))
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        for row in rows {
            let line: String = row.get("line");
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
    }
    let raw = sqlx::query(AssertSqlSafe(format!(
        "SELECT id, hash, parent_id, family_id, rotated_from, rotated_to FROM \"{schema}\".tokens"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("dump bytes: {e}"));
    for row in raw {
        for column in 0..6 {
            let bytes: Option<Vec<u8>> = row.get(column);
            out.extend(bytes.unwrap_or_default());
        }
    }
    out
}

/// Drops the schemas it collected when dropped (from a helper thread with its own runtime, since
/// `Drop` cannot await), so a test cleans up even when it fails.
#[derive(Default)]
pub struct SchemaJanitor {
    schemas: Mutex<Vec<String>>,
}

impl SchemaJanitor {
    /// Remembers `schema` for dropping.
    pub fn track(&self, schema: &str) {
        self.schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(schema.to_owned());
    }
}

impl Drop for SchemaJanitor {
    fn drop(&mut self) {
        let schemas = std::mem::take(
            self.schemas
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        run_on_drop(
            schemas
                .into_iter()
                .map(|schema| format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .collect(),
        );
    }
}

/// Drops a database (created by a test) when dropped, even when the test fails.
pub struct DatabaseJanitor(pub String);

impl Drop for DatabaseJanitor {
    fn drop(&mut self) {
        run_on_drop(vec![format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.0
        )]);
    }
}

/// Runs cleanup `statements` on the test server from a helper thread with its own runtime, since
/// `Drop` cannot await. Best effort: a cleanup failure never masks the test's own result.
fn run_on_drop(statements: Vec<String>) {
    let Some(url) = url() else { return };
    if statements.is_empty() {
        return;
    }
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(mut conn) = PgConnection::connect(&url).await else {
                return;
            };
            for statement in statements {
                let _ = sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await;
            }
        });
    })
    .join();
}
