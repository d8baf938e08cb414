//! Embedded migrations, recorded in the store's own table ([`MIGRATIONS_TABLE`]) inside the
//! store's schema.

use sqlx::{AssertSqlSafe, PgPool};
use token_core::clock::to_unix_micros;
use token_core::{StoreError, SystemClock};

use crate::chain;
use crate::error::{STORE, backend, not_migrated};

/// The table recording applied migrations, inside the store's schema:
/// `<schema>.token_store_migrations(version BIGINT PRIMARY KEY, description TEXT, applied_at
/// BIGINT)` (`applied_at` in unix microseconds). It is the store's own; sqlx's
/// `_sqlx_migrations` belongs to the host application and is never created or read.
pub const MIGRATIONS_TABLE: &str = "token_store_migrations";

/// The newest schema version this library knows.
pub const SCHEMA_VERSION: i64 = 2;

struct Migration {
    version: i64,
    description: &'static str,
    steps: &'static [Step],
}

/// One step of a migration; all steps share the migration transaction.
enum Step {
    /// A SQL script; `{schema}` is replaced by the quoted schema name.
    Sql(&'static str),
    /// Compute the chain hash of every version-1 audit event in Rust
    /// ([`token_core::audit::chain_hash`]), in seq order.
    ChainV1Events,
}

/// In version order. New versions are appended, never edited.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "tokens, token_labels, audit_events and their indexes",
        steps: &[Step::Sql(V1)],
    },
    Migration {
        version: 2,
        description: "audit hash chain (existing events chained), audit_checkpoint, \
            tokens.expiry_recorded_at, audit query and retention indexes",
        steps: &[
            Step::Sql(V2_BEFORE),
            Step::ChainV1Events,
            Step::Sql(V2_AFTER),
        ],
    },
];

/// Version 1: tokens, labels, the audit trail.
const V1: &str = r#"
CREATE TABLE {schema}.tokens (
    id              BYTEA PRIMARY KEY,
    hash            BYTEA NOT NULL,
    hash_key_id     BIGINT NOT NULL,
    prefix          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    name            TEXT,
    description     TEXT,
    created_at      BIGINT NOT NULL,
    created_by      TEXT,
    expires_at      BIGINT,
    not_before      BIGINT,
    idle_timeout_us BIGINT,
    last_used_at    BIGINT,
    use_count       BIGINT NOT NULL DEFAULT 0,
    max_uses        BIGINT,
    parent_id       BYTEA,
    family_id       BYTEA NOT NULL,
    rotated_from    BYTEA,
    rotated_to      BYTEA,
    revoked_at      BIGINT,
    revoke_reason   TEXT,
    revoked_by      TEXT
);
CREATE INDEX tokens_subject_idx ON {schema}.tokens (subject);
CREATE INDEX tokens_family_idx ON {schema}.tokens (family_id);
CREATE INDEX tokens_parent_idx ON {schema}.tokens (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tokens_expires_idx ON {schema}.tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_revoked_idx ON {schema}.tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_created_idx ON {schema}.tokens (created_at, id);
CREATE INDEX tokens_hash_key_idx ON {schema}.tokens (hash_key_id);

CREATE TABLE {schema}.token_labels (
    token_id BYTEA NOT NULL REFERENCES {schema}.tokens (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
);
CREATE INDEX token_labels_key_value_idx ON {schema}.token_labels (key, value);

CREATE TABLE {schema}.audit_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    token_id    BYTEA,
    fingerprint TEXT,
    subject     TEXT,
    actor       TEXT,
    client_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    reason      TEXT,
    detail      TEXT
);
CREATE INDEX audit_events_token_idx ON {schema}.audit_events (token_id, seq)
    WHERE token_id IS NOT NULL;
"#;

/// Version 2, before the v1 events are chained. `ADD COLUMN` takes `audit_events`' exclusive
/// lock: no event is appended (by an instance still running version 1) until the migration
/// commits, and such an append fails afterwards (no hash), so no unchained event appears.
const V2_BEFORE: &str = r#"
-- The chain hash: blake3(previous event's hash || canonical bytes of this event at this seq).
ALTER TABLE {schema}.audit_events ADD COLUMN hash BYTEA;

-- Where the chain resumes after truncate_audit removed its oldest events: the last removed
-- event's seq and hash. At most one row.
CREATE TABLE {schema}.audit_checkpoint (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL CHECK (seq >= 0),
    hash BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

-- Store-internal: when mark_expired reported this token's expiry (each expiry is reported once).
ALTER TABLE {schema}.tokens ADD COLUMN expiry_recorded_at BIGINT;
"#;

/// Version 2, after the v1 events got their hashes: the hash becomes mandatory, and the
/// retention and audit query indexes.
const V2_AFTER: &str = r#"
ALTER TABLE {schema}.audit_events
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT audit_events_hash_len CHECK (octet_length(hash) = 32);

-- mark_expired: expired, unrevoked, unrecorded tokens in expiry order. Recorded and revoked
-- tokens leave the index, so a sweep costs in proportion to what it finds.
CREATE INDEX tokens_expiry_unrecorded_idx ON {schema}.tokens (expires_at)
    WHERE revoked_at IS NULL AND expiry_recorded_at IS NULL;

-- RevokeSelector::UnusedSince: unrevoked tokens by last use (or creation), longest unused
-- first (id breaks ties, so a bounded pass reads its rows in index order, without a sort).
-- Costs an index update per usage flush (record_usage / consume_use).
CREATE INDEX tokens_unused_idx ON {schema}.tokens ((coalesce(last_used_at, created_at)), id)
    WHERE revoked_at IS NULL;

-- Audit queries: a filter plus seq > after, in seq order, is one index range.
CREATE INDEX audit_events_subject_idx ON {schema}.audit_events (subject, seq)
    WHERE subject IS NOT NULL;
CREATE INDEX audit_events_actor_idx ON {schema}.audit_events (actor, seq)
    WHERE actor IS NOT NULL;
CREATE INDEX audit_events_kind_idx ON {schema}.audit_events (kind, seq);
CREATE INDEX audit_events_at_idx ON {schema}.audit_events (at, seq);
"#;

fn too_new(found: i64) -> StoreError {
    StoreError::SchemaTooNew {
        store: STORE,
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Creates the schema if missing and applies every pending migration, in one transaction under a
/// transaction-scoped advisory lock (so instances migrating at once serialize). Refuses a schema
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
    let mut tx = pool.begin().await.map_err(backend)?;
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
    let current: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT max(version) FROM {quoted}.{MIGRATIONS_TABLE}"
    )))
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        tx.rollback().await.map_err(backend)?;
        return Err(too_new(current));
    }
    for migration in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        for step in migration.steps {
            match step {
                Step::Sql(sql) => {
                    sqlx::raw_sql(AssertSqlSafe(sql.replace("{schema}", quoted)))
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                }
                Step::ChainV1Events => chain::chain_v1_events(&mut tx, quoted).await?,
            }
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {quoted}.{MIGRATIONS_TABLE} (version, description, applied_at) \
             VALUES ($1, $2, $3)"
        )))
        .bind(migration.version)
        .bind(migration.description)
        .bind(to_unix_micros(token_core::Clock::now(&SystemClock)))
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
    .map_err(crate::error::backend_in)?;
    Ok(Some(current.unwrap_or(0)))
}

/// Checks that the schema is exactly the version this library needs.
pub(crate) async fn check(pool: &PgPool, quoted: &str) -> Result<(), StoreError> {
    match version(pool, quoted).await? {
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        Some(v) if v > SCHEMA_VERSION => Err(too_new(v)),
        Some(v) => Err(not_migrated(Some(v))),
        None => Err(not_migrated(None)),
    }
}
