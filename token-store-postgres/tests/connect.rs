//! The two ways in: `PgStore::connect(url)` (tables in the default schema `token_store`) and
//! `PgStore::from_pool` with a pool the host built (tables in the host's chosen schema, next to
//! the host's own). Each test gets its own database, so the default schema is not shared.

mod common;

use common::{DatabaseJanitor, admin, url_or_skip};
use sqlx::{AssertSqlSafe, Connection, Row};
use token_core::IssueRequest;
use token_store_postgres::{DEFAULT_SCHEMA, PgStore};

/// A fresh database on the test server (dropped with the returned janitor) and its URL.
async fn fresh_database(url: &str) -> (DatabaseJanitor, String) {
    let name = format!("tdb_{}", common::fresh_schema().trim_start_matches("tst_"));
    let mut conn = admin(url).await;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create database: {e}"));
    // postgres://user@host:port/db[?params] -> the same with db replaced.
    let (base, params) = url
        .split_once('?')
        .map_or((url, None), |(b, p)| (b, Some(p)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let db_url = match params {
        Some(params) => format!("{server}/{name}?{params}"),
        None => format!("{server}/{name}"),
    };
    (DatabaseJanitor(name), db_url)
}

async fn round_trip(store: PgStore) {
    let manager = common::manager(store);
    let issued = manager
        .issue(IssueRequest::new("u", common::scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("issue: {e}"));
    let valid = manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("validate: {e}"));
    assert_eq!(valid.subject(), "u");
}

/// Schemas holding a `tokens` table, and whether sqlx's own migrations table exists anywhere.
async fn layout(db_url: &str) -> (Vec<String>, bool) {
    let mut conn = sqlx::PgConnection::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let schemas = sqlx::query(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'tokens' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    let sqlx_table: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (schemas, sqlx_table > 0)
}

#[tokio::test]
async fn connect_by_url_uses_the_default_schema() {
    let Some(url) = url_or_skip("connect_by_url_uses_the_default_schema") else {
        return;
    };
    let (_janitor, db_url) = fresh_database(&url).await;
    let store = PgStore::connect(&db_url)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    assert_eq!(store.schema(), DEFAULT_SCHEMA);
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    round_trip(store.clone()).await;
    store.close().await;
    let (schemas, sqlx_table) = layout(&db_url).await;
    assert_eq!(schemas, [DEFAULT_SCHEMA]);
    assert!(!sqlx_table, "the store never creates _sqlx_migrations");
}

#[tokio::test]
async fn a_host_pool_keeps_the_store_beside_the_hosts_tables() {
    let Some(url) = url_or_skip("a_host_pool_keeps_the_store_beside_the_hosts_tables") else {
        return;
    };
    let (_janitor, db_url) = fresh_database(&url).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("CREATE TABLE public.tokens (host_column text)")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = PgStore::from_pool(pool.clone(), "auth").unwrap_or_else(|e| panic!("{e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    round_trip(store).await;
    // The host's own `tokens` table is untouched; the store's lives in its schema.
    let host_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.tokens")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(host_rows, 0);
    pool.close().await;
    let (schemas, sqlx_table) = layout(&db_url).await;
    assert_eq!(schemas, ["auth", "public"]);
    assert!(!sqlx_table);
}
