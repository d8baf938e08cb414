//! Embedded migrations, recorded in the store's own table ([`MIGRATIONS_TABLE`]).

use sqlx::SqlitePool;
use token_core::{StoreError, SystemClock};

use crate::chain;
use crate::codec::micros;
use crate::error::{STORE, backend, not_migrated};

/// The table recording applied migrations: `token_store_migrations(version INTEGER PRIMARY KEY,
/// description TEXT, applied_at INTEGER)` (`applied_at` in unix microseconds). It is the store's
/// own; sqlx's `_sqlx_migrations` belongs to the host application and is never touched.
pub const MIGRATIONS_TABLE: &str = "token_store_migrations";

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: i64 = 2;

struct Migration {
    version: i64,
    description: &'static str,
    steps: &'static [Step],
}

/// One step of a migration; all steps of a migration share its transaction.
enum Step {
    /// A SQL script.
    Sql(&'static str),
    /// Copy version-1 audit events into `audit_events_v2` with their chain hashes, computed in
    /// Rust ([`token_core::audit::chain_hash`]), and swap the tables.
    ChainV1Events,
}

/// In version order; each applies in its own `BEGIN IMMEDIATE` transaction with its record in
/// [`MIGRATIONS_TABLE`]. New versions are appended, never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tokens, token_labels, audit_events and their indexes",
        steps: &[Step::Sql(include_str!("../migrations/0001_initial.sql"))],
    },
    Migration {
        version: 2,
        description: "audit hash chain (existing events chained), audit_checkpoint, \
            tokens.expiry_recorded_at, audit query and retention indexes",
        steps: &[
            Step::Sql(include_str!("../migrations/0002_audit_chain_retention.sql")),
            Step::ChainV1Events,
            Step::Sql(include_str!("../migrations/0002_audit_indexes.sql")),
        ],
    },
];

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS token_store_migrations (\
    version INTEGER PRIMARY KEY, \
    description TEXT NOT NULL, \
    applied_at INTEGER NOT NULL)";

const TABLE_EXISTS: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'token_store_migrations'";

const CURRENT_VERSION: &str = "SELECT max(version) FROM token_store_migrations";

fn too_new(found: i64) -> StoreError {
    StoreError::SchemaTooNew {
        store: STORE,
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Applies every pending migration. Refuses a database whose schema is newer than this library.
pub(crate) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    run_to(pool, SCHEMA_VERSION).await?;
    // A database already past every known migration (or at a version this loop skipped).
    check(pool).await
}

/// Applies pending migrations up to and including version `target`.
pub(crate) async fn run_to(pool: &SqlitePool, target: i64) -> Result<(), StoreError> {
    for migration in MIGRATIONS.iter().filter(|m| m.version <= target) {
        // One transaction per migration; the write lock serializes concurrent migrators, and the
        // version is re-read under it.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(CREATE_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let current: Option<i64> = sqlx::query_scalar(CURRENT_VERSION)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        let current = current.unwrap_or(0);
        if current > SCHEMA_VERSION {
            tx.rollback().await.map_err(backend)?;
            return Err(too_new(current));
        }
        if current >= migration.version {
            tx.rollback().await.map_err(backend)?;
            continue;
        }
        for step in migration.steps {
            match step {
                Step::Sql(sql) => {
                    sqlx::raw_sql(*sql)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                Step::ChainV1Events => chain::chain_v1_events(&mut tx).await?,
            }
        }
        sqlx::query(
            "INSERT INTO token_store_migrations (version, description, applied_at) VALUES (?, ?, ?)",
        )
        .bind(migration.version)
        .bind(migration.description)
        .bind(micros(token_core::Clock::now(&SystemClock)))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
    }
    Ok(())
}

/// Checks that the schema is exactly the version this library needs.
pub(crate) async fn check(pool: &SqlitePool) -> Result<(), StoreError> {
    let exists: i64 = sqlx::query_scalar(TABLE_EXISTS)
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    if exists == 0 {
        return Err(not_migrated(None, SCHEMA_VERSION));
    }
    let current: Option<i64> = sqlx::query_scalar(CURRENT_VERSION)
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    match current {
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(too_new(v)),
        other => Err(not_migrated(other, SCHEMA_VERSION)),
    }
}
