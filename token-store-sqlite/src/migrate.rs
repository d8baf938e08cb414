//! Embedded migrations, recorded in the store's own table ([`MIGRATIONS_TABLE`]); see
//! [Migrations](crate#migrations).

use sqlx::SqlitePool;
use token_core::{Clock, StoreError, SystemClock};
use token_store_sql::{Migration, Migrations, Step, micros};

use crate::chain;
use crate::error::{STORE, backend};

/// The table recording applied migrations: `token_store_migrations(version INTEGER PRIMARY KEY,
/// description TEXT, applied_at INTEGER)` (`applied_at` in unix microseconds). It is the store's
/// own; sqlx's `_sqlx_migrations` belongs to the host application and is never touched.
pub const MIGRATIONS_TABLE: &str = token_store_sql::MIGRATIONS_TABLE;

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: i64 = 6;

/// The steps of migrations that run in Rust.
enum RustStep {
    /// Copy version-1 audit events into `audit_events_v2` with their chain hashes, computed in
    /// Rust ([`token_core::audit::chain_hash`]), and swap the tables.
    ChainV1Events,
}

/// In version order; each applies in its own `BEGIN IMMEDIATE` transaction with its record in
/// [`MIGRATIONS_TABLE`]. New versions are appended, never edited.
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
                audit_checkpoint.at (the checkpoint's time), audit_checkpoint.mac and mac_key_id \
                (the checkpoint sealed with the audit key), audit_events.chain_key_id (keyed audit \
                chain)",
            steps: &[Step::Sql(include_str!(
                "../migrations/0003_revocation_cutoff.sql"
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

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS token_store_migrations (\
    version INTEGER PRIMARY KEY, \
    description TEXT NOT NULL, \
    applied_at INTEGER NOT NULL)";

const TABLE_EXISTS: &str =
    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'token_store_migrations'";

const CURRENT_VERSION: &str = "SELECT max(version) FROM token_store_migrations";

const RECORD_VERSION: &str =
    "INSERT INTO token_store_migrations (version, description, applied_at) VALUES (?, ?, ?)";

/// Applies every pending migration. Refuses a database whose schema is newer than this library.
pub(crate) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    run_to(pool, SCHEMA_VERSION).await?;
    // A database already past every known migration (or at a version this loop skipped).
    check(pool).await
}

/// Applies pending migrations up to and including version `target`.
pub(crate) async fn run_to(pool: &SqlitePool, target: i64) -> Result<(), StoreError> {
    for migration in MIGRATIONS.up_to(target) {
        // One transaction per migration; the write lock serializes concurrent migrators, and the
        // version is re-read under it.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(CREATE_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let recorded: Option<i64> = sqlx::query_scalar(CURRENT_VERSION)
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
                Step::Rust(RustStep::ChainV1Events) => chain::chain_v1_events(&mut tx).await?,
            }
        }
        sqlx::query(RECORD_VERSION)
            .bind(migration.version)
            .bind(migration.description)
            .bind(micros(SystemClock.now()))
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
        return Err(MIGRATIONS.not_migrated(None));
    }
    let recorded: Option<i64> = sqlx::query_scalar(CURRENT_VERSION)
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    MIGRATIONS.check(recorded)
}
