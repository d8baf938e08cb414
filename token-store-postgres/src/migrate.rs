//! Embedded migrations (the scripts in `migrations/`, with the schema substituted, and one step
//! in Rust), recorded in the store's own table ([`MIGRATIONS_TABLE`]) inside the store's schema;
//! see [Migrations](crate#migrations).

use sqlx::{AssertSqlSafe, PgPool};
use token_core::{Clock, StoreError, SystemClock};
use token_store_sql::{Migration, Migrations, Step, micros};

use crate::chain;
use crate::error::{STORE, backend, backend_in};

/// The table recording applied migrations, inside the store's schema:
/// `<schema>.token_store_migrations(version BIGINT PRIMARY KEY, description TEXT, applied_at
/// BIGINT)` (`applied_at` in unix microseconds). It is the store's own; sqlx's
/// `_sqlx_migrations` belongs to the host application and is never created or read.
pub const MIGRATIONS_TABLE: &str = token_store_sql::MIGRATIONS_TABLE;

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: i64 = 6;

/// The steps of migrations that run in Rust.
enum RustStep {
    /// Compute the chain hash of every version-1 audit event in Rust
    /// ([`token_core::audit::chain_hash`]), in seq order.
    ChainV1Events,
}

/// In version order. New versions are appended, never edited. In the scripts, `{schema}` stands
/// for the quoted schema name (see [`script`]).
const MIGRATIONS: Migrations<RustStep> = Migrations::new(
    STORE,
    &[
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
                Step::Rust(RustStep::ChainV1Events),
                Step::Sql(include_str!("../migrations/0002_audit_indexes.sql")),
            ],
        },
        Migration {
            version: 3,
            description: "revocation_cutoff (issues racing revoke(IssuedBefore) are refused), \
                CHECK constraints on tokens (16-byte ids, 32-byte hashes, counts not negative), \
                audit_checkpoint.at (the checkpoint's time), audit_checkpoint.mac and mac_key_id \
                (the checkpoint sealed with the audit key), audit_events.chain_key_id (keyed audit \
                chain)",
            steps: &[Step::Sql(include_str!(
                "../migrations/0003_cutoff_checks.sql"
            ))],
        },
        Migration {
            version: 4,
            description: "tokens.suspended_at (suspend and resume), tokens.metadata (the host's \
                JSON object), tokens.allowed_cidrs (network allowlist)",
            steps: &[Step::Sql(include_str!(
                "../migrations/0004_manage_tokens.sql"
            ))],
        },
        Migration {
            version: 5,
            description: "tokens.dpop_jkt (key binding), dpop_proofs (proof identifiers \
                claimed once across instances)",
            steps: &[Step::Sql(include_str!("../migrations/0005_dpop.sql"))],
        },
        Migration {
            version: 6,
            description: "tokens.use_refill and next_refill_at (usage credits that refill), \
                tokens.rate_limits (named rate limits)",
            steps: &[Step::Sql(include_str!(
                "../migrations/0006_credits_rate_limits.sql"
            ))],
        },
    ],
);

const _: () = assert!(MIGRATIONS.latest() == SCHEMA_VERSION);

/// A migration script as run in the store's schema: every `{schema}` replaced by `quoted`, the
/// quoted (and validated, see [`InvalidSchemaName`](crate::InvalidSchemaName)) schema name.
fn script(sql: &str, quoted: &str) -> String {
    sql.replace("{schema}", quoted)
}

/// Creates the schema if missing and applies every pending migration, in one `READ COMMITTED`
/// transaction under a transaction-scoped advisory lock (so instances migrating at once
/// serialize, whatever the database's default isolation). Refuses a schema
/// whose recorded version is newer than this library.
pub(crate) async fn run(pool: &PgPool, schema: &str, quoted: &str) -> Result<(), StoreError> {
    run_to(pool, schema, quoted, SCHEMA_VERSION).await
}

/// Like [`run`], applying pending migrations up to and including version `target` only.
pub(crate) async fn run_to(
    pool: &PgPool,
    schema: &str,
    quoted: &str,
    target: i64,
) -> Result<(), StoreError> {
    // READ COMMITTED whatever the database's default: each statement after the lock reads what
    // a migrator that held it before committed. (Under REPEATABLE READ the snapshot would date
    // from before the wait, and a second migrator would re-run version 1.)
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('token_store_migrate:' || $1, 0))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {quoted}"
    )))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {quoted}.{MIGRATIONS_TABLE} (\
            version BIGINT PRIMARY KEY, \
            description TEXT NOT NULL, \
            applied_at BIGINT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let recorded: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {quoted}.{MIGRATIONS_TABLE}"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    let current = match MIGRATIONS.current(recorded) {
        Ok(current) => current,
        Err(too_new) => {
            tx.rollback().await.map_err(backend)?;
            return Err(too_new);
        }
    };
    for migration in MIGRATIONS.pending(current, target) {
        for step in migration.steps {
            match step {
                Step::Sql(sql) => {
                    sqlx::raw_sql(AssertSqlSafe(script(sql, quoted)))
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                Step::Rust(RustStep::ChainV1Events) => {
                    chain::chain_v1_events(&mut tx, quoted).await?;
                }
            }
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.{MIGRATIONS_TABLE} (version, description, applied_at) \
             VALUES ($1, $2, $3)"
        )))
        .bind(migration.version)
        .bind(migration.description)
        .bind(micros(SystemClock.now()))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// The schema's recorded version (`None`: no migrations table).
pub(crate) async fn version(pool: &PgPool, quoted: &str) -> Result<Option<i64>, StoreError> {
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(format!("{quoted}.{MIGRATIONS_TABLE}"))
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    if table.is_none() {
        return Ok(None);
    }
    let current: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {quoted}.{MIGRATIONS_TABLE}"
    )))
    .fetch_one(pool)
    .await
    .map_err(backend_in)?;
    Ok(Some(current.unwrap_or(0)))
}

/// Checks that the schema is exactly the version this library needs.
pub(crate) async fn check(pool: &PgPool, quoted: &str) -> Result<(), StoreError> {
    MIGRATIONS.check(version(pool, quoted).await?)
}
