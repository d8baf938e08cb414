//! # token-store-postgres
//!
//! A PostgreSQL [`TokenStore`] (sqlx, tokio) for many application instances sharing one
//! database: every instance validates against the same records, state changes are single
//! transactions with their audit events, and every committed revocation is pushed to all
//! instances through `LISTEN`/`NOTIFY` so their caches drop the token within milliseconds.
//! The audit trail is a tamper-evident hash chain, and retention sweeps (expiry records, unused
//! revocation, purges, audit truncation) are bounded and safe to run from every instance at once.
//! It passes the whole `token-testkit` conformance suite against a real server.
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use token_core::{HashKey, KeyId, Keyring, RevocationNotice, TokenManager, TokenStore};
//! use token_store_postgres::{PgStore, PgStoreOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = PgStore::connect_with(
//!     PgStoreOptions::new("postgres://app@db.internal/app")
//!         .schema("token_store") // the default; one schema per store
//!         .max_connections(16),
//! )
//! .await?;
//! store.migrate().await?; // explicit: connecting never changes the schema
//!
//! // Revocations committed by any instance sharing the schema.
//! let mut feed = store.subscribe_revocations().await?.ok_or("no feed")?;
//! tokio::spawn(async move {
//!     while let Some(notice) = feed.next().await {
//!         match notice {
//!             RevocationNotice::Revoked(ids) => { /* drop `ids` from caches */ }
//!             RevocationNotice::Interrupted => { /* drop every cached entry */ }
//!             _ => { /* future notices: flush to be safe */ }
//!         }
//!     }
//! });
//!
//! let keyring = Keyring::new(HashKey::from_hex(KeyId::new(1), &std::env::var("TOKEN_KEY")?)?);
//! let manager = TokenManager::builder(store, keyring).prefix("acme_live")?.build()?;
//! # let _ = manager;
//! # Ok(())
//! # }
//! ```
//!
//! ## Connecting
//! - [`PgStore::connect`] takes a URL and uses the default schema [`DEFAULT_SCHEMA`]
//!   (`token_store`).
//! - [`PgStore::connect_with`] takes [`PgStoreOptions`]: schema, pool size, acquire timeout,
//!   `application_name`, lazy connection, or sqlx connect options you built (TLS, sockets).
//! - [`PgStore::from_pool`] adopts a pool the host already has, with a schema name.
//!
//! Pools the store builds do not ping a connection before each use (`test_before_acquire(false)`,
//! which costs 18–27 % per query): after a connection loss (server restart, a terminated backend)
//! the next operation on each dead connection fails with [`StoreError::Backend`] and the dead
//! connection is discarded; the pool then opens fresh ones. Validation never accepts a token
//! while the store fails: the manager reports a server error (fail closed).
//!
//! ## Schema
//! Tables live in one PostgreSQL schema (default `token_store`), so several stores (tests,
//! tenants) can share a database and the tables stay apart from the host's. The name is
//! interpolated (quoted) into SQL, so it is validated strictly: `[a-z_][a-z0-9_]{0,62}`, not
//! starting with `pg_`; anything else is refused with [`StoreError::Backend`] whose source is
//! [`InvalidSchemaName`].
//!
//! Tables (schema version 2), timestamps and durations as `BIGINT` unix microseconds (sqlx's
//! `time` feature is not forced on you):
//! - `tokens`: one row per token; `id`, `hash`, `parent_id`, `family_id`, `rotated_from`,
//!   `rotated_to` are raw bytes (`BYTEA`: 16-byte ids, 32-byte keyed hash), scopes are the
//!   space-separated scope string. `expiry_recorded_at` is store-internal (not part of
//!   [`TokenRecord`]): when [`TokenStore::mark_expired`] reported the token's expiry, so each
//!   expiry is reported once. Indexes: primary key `id`, `subject`, `family_id`, `parent_id`,
//!   `expires_at`, `revoked_at`, `(created_at, id)` (listing order), `hash_key_id`, and (version
//!   2) `tokens_expiry_unrecorded_idx` on `expires_at` `WHERE revoked_at IS NULL AND
//!   expiry_recorded_at IS NULL` (`mark_expired`) and `tokens_unused_idx` on
//!   `(coalesce(last_used_at, created_at), id)` `WHERE revoked_at IS NULL` (revoke unused).
//! - `token_labels(token_id, key, value)`: primary key `(token_id, key)`, index `(key, value)`,
//!   deleted with their token (`ON DELETE CASCADE`).
//! - `audit_events(seq, at, kind, token_id, fingerprint, subject, actor, client_ip, user_agent,
//!   request_id, reason, detail, hash)`: `seq` is an identity column (strictly increasing, gaps
//!   allowed), `hash` the 32-byte chain hash (`NOT NULL`, length checked). No foreign key: events
//!   outlive purged tokens. Indexes: `(token_id, seq)`, and (version 2) `(subject, seq)`,
//!   `(actor, seq)`, `(kind, seq)`, `(at, seq)`, so a filtered audit query after a given `seq`
//!   is one index range in seq order.
//! - `audit_checkpoint(id = 1, seq, hash)`: at most one row, the last event removed by
//!   [`TokenStore::truncate_audit`]; the first remaining event chains from its hash.
//!
//! ## Migrations
//! The schema is embedded and applied only by an explicit [`PgStore::migrate`] (at deploy or
//! start-up). It creates the schema if missing and applies pending migrations in one transaction
//! under a transaction-scoped advisory lock, so instances migrating at once serialize. Applied
//! versions are recorded in the store's own table `<schema>.`[`MIGRATIONS_TABLE`]
//! (`token_store_migrations`); sqlx's `_sqlx_migrations` belongs to the host and is never used.
//! A schema whose recorded version is newer than [`SCHEMA_VERSION`] is refused with
//! [`StoreError::SchemaTooNew`] by `migrate` and by every operation; operations on a schema that
//! was never migrated, or is at an older version, fail with [`StoreError::NotMigrated`] (naming
//! the version found and the one required).
//!
//! | version | what it adds |
//! |---|---|
//! | 1 | `tokens`, `token_labels`, `audit_events` and their indexes |
//! | 2 | the audit hash chain (`audit_events.hash`), `audit_checkpoint`, the expiry marker `tokens.expiry_recorded_at`, indexes for audit queries and retention |
//!
//! **Upgrading a version-1 schema.** Migration 2 adds `audit_events.hash` (which takes the
//! table's exclusive lock until the migration commits), computes the chain hash of every existing
//! event in Rust with [`chain_hash`](token_core::audit::chain_hash), in `seq` order from
//! [`AuditHash::GENESIS`](token_core::AuditHash::GENESIS) (1000 events per round trip), then
//! makes the column `NOT NULL` with a 32-byte check and creates the new indexes, all in the one
//! migration transaction. The chain vouches for version-1 events only from the upgrade on: edits
//! made before it are not detectable. A version-1 event that cannot be decoded (an unknown kind,
//! a bad timestamp) fails the migration with [`StoreError::Corrupt`] naming its seq, and nothing
//! changes. Instances still running the version-1 library cannot append events once the upgrade
//! committed (their inserts lack the hash and fail): upgrade all instances together. The
//! upgrade's cost is proportional to the audit table; it blocks audit writes meanwhile.
//!
//! ## Audit hash chain
//! Every event is stored with `hash = chain_hash(previous hash, seq, event)`
//! (`blake3(previous hash ‖ canonical bytes)`, see [`token_core::audit`]); the first event chains
//! from the checkpoint's hash, or from [`AuditHash::GENESIS`](token_core::AuditHash::GENESIS).
//! Every append — insert, rotate, revoke, [`append_audit`](TokenStore::append_audit),
//! [`mark_expired`](TokenStore::mark_expired), [`purge`](TokenStore::purge) — happens inside the
//! change's transaction, as its last step:
//! 1. `pg_advisory_xact_lock(hashtextextended('token_store_audit:' || <schema>, 0))`, the
//!    **chain lock**, held until commit or rollback;
//! 2. one statement (so with a snapshot taken after the lock) reads the head — the hash of the
//!    event with the largest `seq`, else the checkpoint's, else genesis — and reserves one
//!    `nextval` of the `seq` identity per event;
//! 3. one `INSERT ... OVERRIDING SYSTEM VALUE` stores the events with those seqs and their hashes.
//!
//! Appenders from every instance sharing the schema serialize on the chain lock, and each reads
//! the head its predecessor committed (a lock is released only after its transaction is
//! visible), so the chain cannot fork; seqs are taken under the lock, so seq order is chain order.
//! A transaction that rolls back leaves a gap in `seq`, which the chain allows.
//! [`truncate_audit`](TokenStore::truncate_audit) takes the same lock.
//!
//! **Cost.** The chain lock makes every audited change in a schema take turns from its append to
//! its commit (two statements plus the commit's WAL flush, typically well under a millisecond on
//! a local server, a few milliseconds with synchronous replication): audited writes per schema
//! are bounded by roughly one commit latency each. Reads, validations (unless `Used` events are
//! enabled) and usage flushes do not take it. The lock is always the last one a transaction
//! takes (after its row locks), so it cannot take part in a deadlock. Stores in different
//! schemas have different locks.
//!
//! An event that cannot be written (a trigger refusing it, a full disk) rolls back the whole
//! change: a token is not issued, rotated, revoked, marked expired or purged without its event.
//! [`TokenManager::verify_audit_chain`](token_core::TokenManager::verify_audit_chain) detects
//! edited, deleted and reordered events; a stored hash that is not 32 bytes is
//! [`StoreError::Corrupt`]. Deleting the newest events is not detectable from the database
//! alone: keep the reported head elsewhere.
//!
//! ## Retention
//! - [`TokenStore::mark_expired`]: `SELECT ... WHERE expires_at <= now AND revoked_at IS NULL
//!   AND expiry_recorded_at IS NULL ORDER BY expires_at LIMIT n FOR UPDATE SKIP LOCKED` (a range
//!   of `tokens_expiry_unrecorded_idx`), sets `expiry_recorded_at` and appends an `Expired` event
//!   each, in one transaction. Sweeps from several instances skip each other's locked rows, so
//!   they split the work and each expiry is recorded exactly once.
//! - [`RevokeSelector::UnusedSince`] (and [`RevokeRequest::limit`]): live tokens whose last use
//!   (or creation) is older than the cutoff, from `tokens_unused_idx`. With a limit, at most that
//!   many not-yet-revoked matches are taken, the longest-unused first
//!   (`ORDER BY coalesce(last_used_at, created_at), id`, for every selector), once, in the first
//!   round; their descendants are revoked with them.
//! - [`ListFilter::unused_since`](token_core::ListFilter::unused_since()) (the stale-token
//!   report) spans every state, so it walks the listing order and filters.
//! - [`TokenStore::purge`]: up to `limit` records revoked before, and up to `limit` expiring
//!   before, the cutoffs (ranges of the `revoked_at` and `expires_at` indexes), the first `limit`
//!   of them by id, locked `FOR UPDATE SKIP LOCKED`; deletes them (labels cascade) and appends a
//!   `Purged` event each. Their audit events stay.
//! - [`TokenStore::truncate_audit`]: under the chain lock, reads the oldest `limit` events in seq
//!   order, takes the prefix older than the cutoff, deletes it and upserts the checkpoint with
//!   the last deleted seq and hash (never moving it backwards), in one transaction.
//!
//! ## Concurrency model
//! Every state change is one `READ COMMITTED` transaction committing the change with its audit
//! events:
//! - **Use limits**: counting a use is one conditional
//!   `UPDATE ... SET use_count = use_count + 1 WHERE id = $1 AND use_count < max_uses AND
//!   revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $now) RETURNING`, so 64
//!   concurrent validations of a `max_uses = 10` token succeed exactly 10 times, and no use is
//!   counted once a revocation committed ([`UseOutcome::NotActive`]).
//! - **Derive vs. revoke (no child escapes)**: inserting a child locks its parent row
//!   `FOR SHARE` and checks, under that lock, that the parent is active. A revocation locks every
//!   row it revokes `FOR UPDATE` (which conflicts with `FOR SHARE`), then looks for descendants
//!   and selector matches again with a fresh snapshot, locking and repeating until nothing new
//!   appears. A child committed before the revocation locked its parent is found and revoked; a
//!   derive that comes later waits for the revocation and then sees the parent revoked.
//!   Rotations lock the predecessor `FOR UPDATE`, so a family revocation also catches a
//!   concurrently committed rotation successor.
//! - **Live-token limits**: an insert with a limit takes a transaction-scoped advisory lock keyed
//!   by `hashtextextended('token_store_subject:' || schema || ':' || subject, 0)` before counting
//!   the subject's live tokens, so concurrent issues cannot exceed the limit.
//! - **Rotate once**: the predecessor is locked `FOR UPDATE` and must be active with no successor.
//!   If it has `max_uses`, the successor gets the uses left as read under that lock
//!   (`max_uses - use_count`), so no use is granted twice.
//! - **Audit chain**: see [Audit hash chain](#audit-hash-chain).
//! - Serialization failures and deadlocks surface as [`StoreError::Conflict`] (retrying may
//!   succeed); connection and server failures as [`StoreError::Backend`].
//!
//! ## Revocation feed
//! Each revoke transaction announces the revoked ids with `pg_notify` before committing
//! (PostgreSQL delivers notifications only on commit, so listeners never hear of a revocation
//! that rolled back). The channel is `<schema>_revoked` (or, for schema names longer than 55
//! bytes, `token_store_revoked_` and a 64-bit FNV-1a hash of the name), so stores in different
//! schemas do not hear each other. Payloads are base62 ids separated by spaces, at most 300 per
//! notification.
//!
//! [`TokenStore::subscribe_revocations`] opens a dedicated listening connection (not taken from
//! the store's pool; `application_name` is the pool's followed by `/feed`) and starts `LISTEN`
//! before returning. The stream yields [`RevocationNotice::Revoked`](token_core::RevocationNotice::Revoked) per notification. Whenever
//! the listening connection is lost, notifications sent meanwhile are lost too, so the stream
//! yields [`RevocationNotice::Interrupted`](token_core::RevocationNotice::Interrupted): consumers must then drop everything cached. The
//! listener reconnects on its own (with backoff while the server is unreachable) and yields
//! another `Interrupted` once it is listening again. A payload that cannot be read also yields
//! `Interrupted`. The contract: every revocation committed after `subscribe_revocations` returns
//! is announced, or followed by an `Interrupted`. The stream ends when the last clone of the
//! store is dropped.
//!
//! ## Bad data
//! Every column is checked when read. An invalid scope string, a hash that is not 32 bytes, an id
//! that is not 16 bytes, an out-of-range timestamp, a negative count or an unknown audit kind
//! yields [`StoreError::Corrupt`] naming the table, column and token; such a record is never
//! returned, so it never validates. Revocation still reaches corrupt rows.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chain;
mod codec;
mod error;
mod feed;
mod migrate;
mod options;
mod schema;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};
use time::OffsetDateTime;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, InsertOutcome, InsertToken, ListQuery, MarkExpired, PurgeRequest,
    RevocationStream, RevokeRequest, RevokeSelector, RotateOutcome, RotateToken, StoreError,
    TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, TokenId, TokenRecord,
    TokenState,
};
use tokio::sync::watch;

use crate::chain::Chain;
use crate::codec::{
    AUDIT_COLUMNS, TOKEN_COLUMNS, audit_from_row, audit_hash, count_to_sql, duration_to_sql, hex,
    id_bytes, id_from_bytes, micros, micros_ceil, opt_micros, record_from_row,
};
use crate::error::{STORE, backend_in, is_unique_violation};

pub use crate::migrate::{MIGRATIONS_TABLE, SCHEMA_VERSION};
pub use crate::options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_APPLICATION_NAME, DEFAULT_MAX_CONNECTIONS, DEFAULT_SCHEMA,
    PgStoreOptions,
};
pub use crate::schema::InvalidSchemaName;
pub use token_core::columns::UnrepresentableValue;

/// Most rounds a revocation spends locking newly found descendants before giving up with
/// [`StoreError::Conflict`] (each round handles everything committed meanwhile; more than a few
/// rounds means tokens are being derived faster than they can be revoked).
const MAX_REVOKE_ROUNDS: usize = 64;

/// The PostgreSQL store. Cheap to clone: clones share the pool, the schema and the feed's
/// lifetime. See the [crate docs](crate).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    quoted: String,
    channel: String,
    sql: Sql,
    schema_ok: AtomicBool,
    /// Dropped with the last clone of the store: ends every feed.
    closed: watch::Sender<()>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

/// The statements, with the quoted schema interpolated once.
struct Sql {
    get: Arc<str>,
    get_for_share: Arc<str>,
    get_for_update: Arc<str>,
    active: Arc<str>,
    count_live_subject: Arc<str>,
    insert_token: Arc<str>,
    insert_labels: Arc<str>,
    chain: Chain,
    rotate: Arc<str>,
    lock_for_revoke: Arc<str>,
    revoke: Arc<str>,
    consume_use: Arc<str>,
    record_usage: Arc<str>,
    count_live_key: Arc<str>,
    audit_base: String,
    checkpoint: Arc<str>,
    truncate_scan: Arc<str>,
    truncate_delete: Arc<str>,
    truncate_checkpoint: Arc<str>,
    mark_expired: Arc<str>,
    mark_expired_update: Arc<str>,
    purge: Arc<str>,
    purge_delete: Arc<str>,
    list_base: String,
    /// `tokens` and `token_labels`, quoted, for the revocation's selector queries.
    tokens: String,
    labels: String,
}

impl Sql {
    fn new(schema: &str, s: &str) -> Self {
        let cols = TOKEN_COLUMNS.replace("{schema}", s);
        let arc = |text: String| -> Arc<str> { Arc::from(text) };
        Self {
            get: arc(format!("SELECT {cols} FROM {s}.tokens t WHERE t.id = $1")),
            get_for_share: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = $1 FOR SHARE OF t"
            )),
            get_for_update: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = $1 FOR UPDATE OF t"
            )),
            active: arc(format!(
                "SELECT revoked_at IS NULL AND rotated_to IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) \
                 FROM {s}.tokens WHERE id = $1"
            )),
            count_live_subject: arc(format!(
                "SELECT count(*) FROM {s}.tokens WHERE subject = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            insert_token: arc(format!(
                "INSERT INTO {s}.tokens (id, hash, hash_key_id, prefix, subject, scopes, name, \
                 description, created_at, created_by, expires_at, not_before, idle_timeout_us, \
                 last_used_at, use_count, max_uses, parent_id, family_id, rotated_from, \
                 rotated_to, revoked_at, revoke_reason, revoked_by) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
                 $22, $23)"
            )),
            insert_labels: arc(format!(
                "INSERT INTO {s}.token_labels (token_id, key, value) \
                 SELECT $1, k, v FROM UNNEST($2::text[], $3::text[]) AS u(k, v)"
            )),
            chain: Chain::new(schema, s),
            rotate: arc(format!(
                "UPDATE {s}.tokens SET rotated_to = $2, expires_at = $3 WHERE id = $1"
            )),
            lock_for_revoke: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = ANY($1::bytea[]) \
                 AND t.revoked_at IS NULL ORDER BY t.id FOR UPDATE OF t"
            )),
            revoke: arc(format!(
                "UPDATE {s}.tokens SET revoked_at = $2, revoke_reason = $3, revoked_by = $4 \
                 WHERE id = ANY($1::bytea[]) AND revoked_at IS NULL"
            )),
            consume_use: arc(format!(
                "UPDATE {s}.tokens SET use_count = use_count + 1, \
                 last_used_at = GREATEST(last_used_at, $2) \
                 WHERE id = $1 AND (max_uses IS NULL OR use_count < max_uses) \
                 AND revoked_at IS NULL AND rotated_to IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) \
                 RETURNING use_count"
            )),
            record_usage: arc(format!(
                "UPDATE {s}.tokens t SET \
                   use_count = t.use_count + LEAST(u.uses, 9223372036854775807 - t.use_count), \
                   last_used_at = GREATEST(t.last_used_at, u.at) \
                 FROM UNNEST($1::bytea[], $2::bigint[], $3::bigint[]) AS u(id, at, uses) \
                 WHERE t.id = u.id"
            )),
            count_live_key: arc(format!(
                "SELECT count(*) FROM {s}.tokens WHERE hash_key_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            audit_base: format!("SELECT {AUDIT_COLUMNS} FROM {s}.audit_events WHERE TRUE"),
            checkpoint: arc(format!(
                "SELECT seq, hash FROM {s}.audit_checkpoint WHERE id = 1"
            )),
            truncate_scan: arc(format!(
                "SELECT seq, at, hash FROM {s}.audit_events ORDER BY seq LIMIT $1"
            )),
            truncate_delete: arc(format!("DELETE FROM {s}.audit_events WHERE seq <= $1")),
            truncate_checkpoint: arc(format!(
                "INSERT INTO {s}.audit_checkpoint AS c (id, seq, hash) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash \
                 WHERE c.seq < excluded.seq"
            )),
            // Rows another sweep has locked are skipped: concurrent sweeps split the work and
            // each expiry is recorded once.
            mark_expired: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.expires_at <= $1 \
                 AND t.revoked_at IS NULL AND t.expiry_recorded_at IS NULL \
                 ORDER BY t.expires_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED"
            )),
            mark_expired_update: arc(format!(
                "UPDATE {s}.tokens SET expiry_recorded_at = $2 WHERE id = ANY($1::bytea[])"
            )),
            purge: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id IN ( \
                   (SELECT id FROM {s}.tokens WHERE revoked_at < $1 ORDER BY revoked_at LIMIT $3) \
                   UNION \
                   (SELECT id FROM {s}.tokens WHERE expires_at < $2 ORDER BY expires_at LIMIT $3)) \
                 ORDER BY t.id LIMIT $3 FOR UPDATE OF t SKIP LOCKED"
            )),
            purge_delete: arc(format!(
                "DELETE FROM {s}.tokens WHERE id = ANY($1::bytea[])"
            )),
            tokens: format!("{s}.tokens"),
            labels: format!("{s}.token_labels"),
            list_base: format!("SELECT {cols} FROM {s}.tokens t WHERE TRUE"),
        }
    }
}

fn q(sql: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(sql))
}

type Tx = Transaction<'static, Postgres>;

impl PgStore {
    /// Connects to `url` with the default options (schema [`DEFAULT_SCHEMA`]). Does not migrate:
    /// call [`migrate`](Self::migrate). Fails with [`StoreError::Backend`] when the URL is invalid
    /// or the server cannot be reached within [`DEFAULT_ACQUIRE_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(PgStoreOptions::new(url)).await
    }

    /// Connects with explicit options. Does not migrate. A refused schema name fails before any
    /// connection is made ([`InvalidSchemaName`]).
    pub async fn connect_with(options: PgStoreOptions) -> Result<Self, StoreError> {
        schema::validate(options.get_schema()).map_err(invalid_schema)?;
        let connect = options.connect_options()?;
        let pool_options = options.pool_options();
        let pool = if options.is_lazy() {
            pool_options.connect_lazy_with(connect)
        } else {
            pool_options
                .connect_with(connect)
                .await
                .map_err(error::backend)?
        };
        Self::from_pool(pool, options.get_schema())
    }

    /// Uses a pool the host built, with tables in `schema`. The pool's settings are used as they
    /// are (consider `test_before_acquire(false)`, see the [crate docs](crate#connecting)). Does
    /// not migrate. Fails only when `schema` is refused ([`InvalidSchemaName`]).
    pub fn from_pool(pool: PgPool, schema: &str) -> Result<Self, StoreError> {
        schema::validate(schema).map_err(invalid_schema)?;
        let quoted = format!("\"{schema}\"");
        let (closed, _) = watch::channel(());
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                schema: schema.to_owned(),
                channel: schema::channel_for(schema),
                sql: Sql::new(schema, &quoted),
                quoted,
                schema_ok: AtomicBool::new(false),
                closed,
            }),
        })
    }

    /// Creates the schema if missing and applies pending migrations (see
    /// [Migrations](crate#migrations)). Idempotent and safe to run from several instances at
    /// once. Fails with [`StoreError::SchemaTooNew`] when a newer library migrated the schema.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(&self.inner.pool, &self.inner.schema, &self.inner.quoted).await?;
        self.inner.schema_ok.store(true, Ordering::Release);
        Ok(())
    }

    /// Applies pending migrations up to and including schema `version` only (for upgrade tests
    /// that need an older schema). Not part of the supported API: use [`migrate`](Self::migrate).
    #[doc(hidden)]
    pub async fn migrate_up_to(&self, version: i64) -> Result<(), StoreError> {
        migrate::run_to(
            &self.inner.pool,
            &self.inner.schema,
            &self.inner.quoted,
            version,
        )
        .await
    }

    /// The schema version recorded in the database (`None`: never migrated).
    pub async fn schema_version(&self) -> Result<Option<i64>, StoreError> {
        migrate::version(&self.inner.pool, &self.inner.quoted).await
    }

    /// The connection pool (for host queries and health checks).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema holding the store's tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The `LISTEN`/`NOTIFY` channel revocations are announced on (see
    /// [Revocation feed](crate#revocation-feed)).
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Closes the pool, waiting for checked-out connections to be returned. Feeds keep their own
    /// connection until the last clone of the store is dropped.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    async fn ready(&self) -> Result<&PgPool, StoreError> {
        if !self.inner.schema_ok.load(Ordering::Acquire) {
            migrate::check(&self.inner.pool, &self.inner.quoted).await?;
            self.inner.schema_ok.store(true, Ordering::Release);
        }
        Ok(&self.inner.pool)
    }

    fn err(&self, error: sqlx::Error) -> StoreError {
        backend_in(error)
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.ready()
            .await?
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(|e| self.err(e))
    }

    async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn rollback(&self, tx: Tx) -> Result<(), StoreError> {
        tx.rollback().await.map_err(|e| self.err(e))
    }

    async fn fetch_locked(
        &self,
        conn: &mut PgConnection,
        sql: &Arc<str>,
        id: TokenId,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(q(sql))
            .bind(id_bytes(id))
            .fetch_optional(conn)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn insert_record(
        &self,
        conn: &mut PgConnection,
        record: &TokenRecord,
    ) -> Result<(), StoreError> {
        let idle = record
            .idle_timeout
            .map(|d| duration_to_sql(d, "idle_timeout"))
            .transpose()?;
        let use_count = count_to_sql(record.use_count, "use_count")?;
        let max_uses = record
            .max_uses
            .map(|m| count_to_sql(m, "max_uses"))
            .transpose()?;
        let revocation = record.revocation.as_ref();
        let result = sqlx::query(q(&self.inner.sql.insert_token))
            .bind(id_bytes(record.id))
            .bind(record.hash.as_bytes().to_vec())
            .bind(i64::from(record.hash_key_id.get()))
            .bind(&record.prefix)
            .bind(&record.subject)
            .bind(record.scopes.to_string())
            .bind(&record.name)
            .bind(&record.description)
            .bind(micros(record.created_at))
            .bind(&record.created_by)
            .bind(opt_micros(record.expires_at))
            .bind(opt_micros(record.not_before))
            .bind(idle)
            .bind(opt_micros(record.last_used_at))
            .bind(use_count)
            .bind(max_uses)
            .bind(record.parent_id.map(id_bytes))
            .bind(id_bytes(record.family_id))
            .bind(record.rotated_from.map(id_bytes))
            .bind(record.rotated_to.map(id_bytes))
            .bind(revocation.map(|r| micros(r.at)))
            .bind(revocation.map(|r| r.reason.clone()))
            .bind(revocation.and_then(|r| r.actor.clone()))
            .execute(&mut *conn)
            .await;
        match result {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists { id: record.id });
            }
            Err(e) => return Err(self.err(e)),
        }
        if !record.labels.is_empty() {
            let (keys, values): (Vec<&str>, Vec<&str>) = record
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .unzip();
            sqlx::query(q(&self.inner.sql.insert_labels))
                .bind(id_bytes(record.id))
                .bind(keys)
                .bind(values)
                .execute(&mut *conn)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Appends `events` to the audit chain inside the caller's transaction (see
    /// [Audit hash chain](crate#audit-hash-chain)).
    async fn append_events(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.inner.sql.chain.append(conn, events).await
    }

    /// The ids the selector matches (when `matches` is set) plus all descendants of them and of
    /// `known`, read with a fresh snapshot. With [`RevokeRequest::limit`], at most that many
    /// not-yet-revoked matches, the longest-unused first.
    async fn select_targets(
        &self,
        conn: &mut PgConnection,
        request: &RevokeRequest,
        known: &[Vec<u8>],
        matches: bool,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let sql = &self.inner.sql;
        let (tokens, labels) = (&sql.tokens, &sql.labels);
        // A condition on `tokens` and its parameters ($1, $2, ...).
        let (condition, mut args): (String, Vec<Arg>) = match &request.selector {
            _ if !matches => ("FALSE".to_owned(), Vec::new()),
            RevokeSelector::Token(id) => ("id = $1".to_owned(), vec![Arg::Bytes(id_bytes(*id))]),
            RevokeSelector::Subject(subject) => {
                ("subject = $1".to_owned(), vec![Arg::Text(subject.clone())])
            }
            RevokeSelector::Family(id) => (
                format!("family_id = (SELECT m.family_id FROM {tokens} m WHERE m.id = $1)"),
                vec![Arg::Bytes(id_bytes(*id))],
            ),
            RevokeSelector::Label { key, value } => (
                format!("id IN (SELECT token_id FROM {labels} WHERE key = $1 AND value = $2)"),
                vec![Arg::Text(key.clone()), Arg::Text(value.clone())],
            ),
            RevokeSelector::IssuedBefore(at) => (
                "created_at < $1".to_owned(),
                vec![Arg::Int(micros_ceil(*at))],
            ),
            // Live at the request time and not used since `since`: a range of the partial index
            // `tokens_unused_idx`.
            RevokeSelector::UnusedSince(since) => (
                "revoked_at IS NULL AND coalesce(last_used_at, created_at) < $1 \
                 AND (expires_at IS NULL OR expires_at > $2)"
                    .to_owned(),
                vec![Arg::Int(micros_ceil(*since)), Arg::Int(micros(request.at))],
            ),
            // Newer selectors this store does not know match nothing rather than everything;
            // descendants of what is already known are still followed.
            _ => ("FALSE".to_owned(), Vec::new()),
        };
        let matched = match request.limit {
            Some(limit) if matches => {
                args.push(Arg::Int(i64::from(limit)));
                format!(
                    "SELECT id FROM {tokens} WHERE {condition} AND revoked_at IS NULL \
                     ORDER BY coalesce(last_used_at, created_at), id LIMIT ${}",
                    args.len()
                )
            }
            _ => format!("SELECT id FROM {tokens} WHERE {condition}"),
        };
        args.push(Arg::ByteArray(known.to_vec()));
        let text = format!(
            "WITH RECURSIVE tree(id) AS ( \
                (({matched}) UNION SELECT unnest(${}::bytea[])) \
              UNION \
                SELECT c.id FROM {tokens} c JOIN tree ON c.parent_id = tree.id \
             ) SELECT id FROM tree",
            args.len()
        );
        let rows = bind_all(sqlx::query(AssertSqlSafe(text)), args)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                row.try_get::<Vec<u8>, _>("id")
                    .map_err(|e| error::corrupt(format!("tokens: column id: unreadable ({e})")))
            })
            .collect()
    }
}

/// A parameter of a query built at run time.
enum Arg {
    Bytes(Vec<u8>),
    ByteArray(Vec<Vec<u8>>),
    Text(String),
    Int(i64),
}

fn bind_all(
    mut query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Bytes(v) => query.bind(v),
            Arg::ByteArray(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
        };
    }
    query
}

fn invalid_schema(error: InvalidSchemaName) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: Box::new(error),
    }
}

/// The `Revoked` event for a locked row: [`RevokeRequest::event_for`] of the decoded record, or,
/// when the row is corrupt, [`RevokeRequest::event_for_row`] from its id and subject (revocation
/// must reach corrupt rows). A row whose id is not 16 bytes is revoked too; its event names no
/// token but carries the raw id bytes in `detail`.
fn revoke_event(request: &RevokeRequest, row: &PgRow) -> (Option<TokenId>, AuditEvent) {
    if let Ok(record) = record_from_row(row) {
        return (Some(record.id), request.event_for(&record));
    }
    let subject = row_subject(row);
    if let Some(id) = row_id(row) {
        return (Some(id), request.event_for_row(id, &subject));
    }
    let raw: Vec<u8> = row.try_get("id").unwrap_or_default();
    let mut event = request
        .event_for_row(TokenId::from_bytes([0; 16]), &subject)
        .with_detail(format!("corrupt token row, id bytes x'{}'", hex(&raw)));
    event.token_id = None;
    (None, event)
}

/// The id of a row, if its id column holds 16 bytes.
fn row_id(row: &PgRow) -> Option<TokenId> {
    row.try_get::<Vec<u8>, _>("id")
        .ok()
        .and_then(|raw| id_from_bytes(&raw))
}

/// The subject of a row that cannot be decoded (empty if even that is unreadable).
fn row_subject(row: &PgRow) -> String {
    row.try_get::<String, _>("subject").unwrap_or_default()
}

/// The sweep event for `row`: [`AuditEvent::by_sweeper`] of the decoded record, else
/// [`AuditEvent::by_sweeper_row`] from its id and subject; `None` when the id is unreadable.
fn sweeper_event(kind: AuditKind, row: &PgRow, at: OffsetDateTime) -> Option<AuditEvent> {
    match record_from_row(row) {
        Ok(record) => Some(AuditEvent::by_sweeper(kind, &record, at)),
        Err(_) => row_id(row).map(|id| AuditEvent::by_sweeper_row(kind, id, &row_subject(row), at)),
    }
}

#[async_trait]
impl TokenStore for PgStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let record = &insert.record;
        if let Some(parent) = record.parent_id {
            // FOR SHARE conflicts with the FOR UPDATE a revocation takes: the parent cannot be
            // revoked between this check and our commit, and a revocation that locked it first
            // is seen here.
            let found = self
                .fetch_locked(&mut tx, &self.inner.sql.get_for_share, parent)
                .await?;
            let state = found.as_ref().map(|p| p.state_at(insert.now));
            if state != Some(TokenState::Active) {
                self.rollback(tx).await?;
                return Ok(InsertOutcome::ParentNotActive { state });
            }
            if let Some(parent_expires_at) = found
                .as_ref()
                .and_then(|p| InsertToken::child_outlives(p, record))
            {
                self.rollback(tx).await?;
                return Ok(InsertOutcome::OutlivesParent { parent_expires_at });
            }
            if let Some(remaining) = found
                .as_ref()
                .and_then(|p| InsertToken::child_exceeds_uses(p, record))
            {
                self.rollback(tx).await?;
                return Ok(InsertOutcome::UsesExceedParent { remaining });
            }
        }
        if let Some(max) = insert.max_live_for_subject {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended(\
                 'token_store_subject:' || $1 || ':' || $2, 0))",
            )
            .bind(&self.inner.schema)
            .bind(&record.subject)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            let live: i64 = sqlx::query_scalar(q(&self.inner.sql.count_live_subject))
                .bind(&record.subject)
                .bind(micros(insert.now))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            if live >= i64::from(max) {
                self.rollback(tx).await?;
                return Ok(InsertOutcome::SubjectLimitReached);
            }
        }
        self.insert_record(&mut tx, record).await?;
        self.append_events(&mut tx, &insert.events).await?;
        self.commit(tx).await?;
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let pool = self.ready().await?;
        let row = sqlx::query(q(&self.inner.sql.get))
            .bind(id_bytes(id))
            .fetch_optional(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(row.as_ref().map(record_from_row).transpose()?.map(Arc::new))
    }

    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let Some(old) = self
            .fetch_locked(
                &mut tx,
                &self.inner.sql.get_for_update,
                rotation.predecessor,
            )
            .await?
        else {
            self.rollback(tx).await?;
            return Ok(RotateOutcome::NotFound);
        };
        if let Some(successor) = old.rotated_to {
            self.rollback(tx).await?;
            return Ok(RotateOutcome::AlreadyRotated(successor));
        }
        let state = old.state_at(rotation.now);
        if state != TokenState::Active {
            self.rollback(tx).await?;
            return Ok(RotateOutcome::NotActive(state));
        }
        let mut successor = rotation.successor.clone();
        if let Some(max) = old.max_uses {
            // The uses left as read under the row lock: no use is granted twice.
            successor.max_uses = Some(max.saturating_sub(old.use_count));
        }
        self.insert_record(&mut tx, &successor).await?;
        sqlx::query(q(&self.inner.sql.rotate))
            .bind(id_bytes(rotation.predecessor))
            .bind(id_bytes(successor.id))
            .bind(micros(rotation.predecessor_expires_at))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_events(&mut tx, &rotation.events).await?;
        self.commit(tx).await?;
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        if request.limit == Some(0) {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        // Every id found so far (revoked or not), and the unrevoked rows we locked.
        let mut known: Vec<Vec<u8>> = Vec::new();
        let mut known_set: HashSet<Vec<u8>> = HashSet::new();
        let mut locked: Vec<Vec<u8>> = Vec::new();
        let mut revoked = Vec::new();
        let mut events = Vec::new();
        let mut settled = false;
        for round in 0..MAX_REVOKE_ROUNDS {
            // A bounded revocation takes its matches once (so it never exceeds its limit); later
            // rounds follow descendants. An unbounded one re-reads the selector every round.
            let matches = round == 0 || request.limit.is_none();
            let found = self
                .select_targets(&mut tx, request, &known, matches)
                .await?;
            let new: Vec<Vec<u8>> = found
                .into_iter()
                .filter(|id| known_set.insert(id.clone()))
                .collect();
            if new.is_empty() {
                settled = true;
                break;
            }
            // Lock the new unrevoked rows; the next round re-reads with a snapshot taken after
            // these locks, so children committed before them are found.
            let rows = sqlx::query(q(&self.inner.sql.lock_for_revoke))
                .bind(new.clone())
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            for row in &rows {
                let raw: Vec<u8> = row
                    .try_get("id")
                    .map_err(|e| error::corrupt(format!("tokens: column id: unreadable ({e})")))?;
                let (id, event) = revoke_event(request, row);
                revoked.extend(id);
                events.push(event);
                locked.push(raw);
            }
            known.extend(new);
        }
        if !settled {
            self.rollback(tx).await?;
            return Err(StoreError::Conflict {
                message: format!(
                    "revocation did not settle after {MAX_REVOKE_ROUNDS} rounds: tokens are being derived faster than they are revoked"
                ),
            });
        }
        if locked.is_empty() {
            self.rollback(tx).await?;
            return Ok(Vec::new());
        }
        let revocation = request.revocation();
        sqlx::query(q(&self.inner.sql.revoke))
            .bind(locked)
            .bind(micros(revocation.at))
            .bind(revocation.reason)
            .bind(revocation.actor)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_events(&mut tx, &events).await?;
        for payload in feed::payloads(&revoked) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.inner.channel)
                .bind(payload)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        self.commit(tx).await?;
        Ok(events)
    }

    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        let (id, now) = (request.id, request.now);
        let pool = self.ready().await?;
        let count: Option<i64> = sqlx::query_scalar(q(&self.inner.sql.consume_use))
            .bind(id_bytes(id))
            .bind(micros(now))
            .fetch_optional(pool)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(count) = count {
            let count = u64::try_from(count).map_err(|_| {
                error::corrupt(format!(
                    "tokens row {id}: column use_count: negative count {count}"
                ))
            })?;
            return Ok(UseOutcome::Counted(count));
        }
        let active: Option<bool> = sqlx::query_scalar(q(&self.inner.sql.active))
            .bind(id_bytes(id))
            .bind(micros(now))
            .fetch_optional(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(match active {
            Some(true) => UseOutcome::LimitReached,
            Some(false) => UseOutcome::NotActive,
            None => UseOutcome::NotFound,
        })
    }

    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        // One row per id (an UPDATE ... FROM applies only one matching row per target).
        let mut merged: HashMap<TokenId, (i64, i64)> = HashMap::new();
        for update in updates {
            let at = micros(update.last_used_at);
            let uses = i64::try_from(update.uses).unwrap_or(i64::MAX);
            let entry = merged.entry(update.id).or_insert((at, 0));
            entry.0 = entry.0.max(at);
            entry.1 = entry.1.saturating_add(uses);
        }
        let mut ids = Vec::with_capacity(merged.len());
        let mut ats = Vec::with_capacity(merged.len());
        let mut uses = Vec::with_capacity(merged.len());
        for (id, (at, n)) in merged {
            ids.push(id_bytes(id));
            ats.push(at);
            uses.push(n);
        }
        let pool = self.ready().await?;
        sqlx::query(q(&self.inner.sql.record_usage))
            .bind(ids)
            .bind(ats)
            .bind(uses)
            .execute(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        let pool = self.ready().await?;
        let filter = &query.filter;
        let mut sql = self.inner.sql.list_base.clone();
        let mut n = 0u32;
        let mut next = || {
            n += 1;
            n
        };
        if filter.subject.is_some() {
            sql.push_str(&format!(" AND t.subject = ${}", next()));
        }
        if filter.label.is_some() {
            let (k, v) = (next(), next());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM {}.token_labels l WHERE l.token_id = t.id \
                 AND l.key = ${k} AND l.value = ${v})",
                self.inner.quoted
            ));
        }
        if filter.family.is_some() {
            sql.push_str(&format!(" AND t.family_id = ${}", next()));
        }
        if query.after.is_some() {
            let (c, i) = (next(), next());
            sql.push_str(&format!(
                " AND (t.created_at, t.id) > (${c}::bigint, ${i}::bytea)"
            ));
        }
        if filter.state.is_some() {
            let (now, state) = (next(), next());
            sql.push_str(&format!(" AND {} = ${state}", state_sql(now)));
        }
        if filter.unused_since.is_some() {
            sql.push_str(&format!(
                " AND coalesce(t.last_used_at, t.created_at) < ${}",
                next()
            ));
        }
        sql.push_str(&format!(" ORDER BY t.created_at, t.id LIMIT ${}", next()));
        let mut select = sqlx::query(AssertSqlSafe(sql));
        if let Some(subject) = &filter.subject {
            select = select.bind(subject.clone());
        }
        if let Some((key, value)) = &filter.label {
            select = select.bind(key.clone()).bind(value.clone());
        }
        if let Some(family) = filter.family {
            select = select.bind(id_bytes(family));
        }
        if let Some(cursor) = query.after {
            select = select
                .bind(micros(cursor.created_at))
                .bind(id_bytes(cursor.id));
        }
        if let Some(state) = filter.state {
            select = select.bind(micros(query.now)).bind(state.as_str());
        }
        if let Some(since) = filter.unused_since {
            select = select.bind(micros_ceil(since));
        }
        let rows = select
            .bind(i64::from(query.limit))
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(record_from_row).collect()
    }

    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        let (key, now) = (query.key, query.now);
        let pool = self.ready().await?;
        let count: i64 = sqlx::query_scalar(q(&self.inner.sql.count_live_key))
            .bind(i64::from(key.get()))
            .bind(micros(now))
            .fetch_one(pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        self.append_events(&mut tx, events).await?;
        self.commit(tx).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let pool = self.ready().await?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut sql = self.inner.sql.audit_base.clone();
        let mut args = Vec::new();
        let mut condition = |text: &str, arg: Arg| {
            args.push(arg);
            sql.push_str(&format!(" AND {text} ${}", args.len()));
        };
        if let Some(id) = query.token_id {
            condition("token_id =", Arg::Bytes(id_bytes(id)));
        }
        if let Some(subject) = &query.subject {
            condition("subject =", Arg::Text(subject.clone()));
        }
        if let Some(actor) = &query.actor {
            condition("actor =", Arg::Text(actor.clone()));
        }
        if let Some(kind) = query.kind {
            condition("kind =", Arg::Text(kind.as_str().to_owned()));
        }
        if let Some(from) = query.from {
            condition("at >=", Arg::Int(micros_ceil(from)));
        }
        if let Some(until) = query.until {
            condition("at <", Arg::Int(micros_ceil(until)));
        }
        if let Some(after) = query.after_seq {
            // Past i64::MAX nothing can follow.
            condition("seq >", Arg::Int(i64::try_from(after).unwrap_or(i64::MAX)));
        }
        args.push(Arg::Int(i64::from(query.limit)));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", args.len()));
        let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), args)
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        let pool = self.ready().await?;
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(q(&self.inner.sql.checkpoint))
            .fetch_optional(pool)
            .await
            .map_err(|e| self.err(e))?;
        row.map(|(seq, hash)| token_core::columns::decode_checkpoint(STORE, seq, &hash))
            .transpose()
    }

    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        let (before, limit) = (request.before, request.limit);
        if limit == 0 {
            return Ok(0);
        }
        let before = micros_ceil(before);
        let mut tx = self.begin().await?;
        // The chain lock: no append (nor another truncation) runs meanwhile, so the prefix read
        // below is the chain's real start and the checkpoint never moves backwards.
        self.inner.sql.chain.lock(&mut tx).await?;
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(q(&self.inner.sql.truncate_scan))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        // The longest prefix of old events: it ends at the first event at or after `before`.
        let prefix = rows.iter().take_while(|(_, at, _)| *at < before).count();
        let Some((last_seq, _, last_hash)) = prefix.checked_sub(1).map(|i| &rows[i]) else {
            self.rollback(tx).await?;
            return Ok(0);
        };
        let hash = audit_hash(last_hash, "audit_events", *last_seq)?;
        let deleted = sqlx::query(q(&self.inner.sql.truncate_delete))
            .bind(*last_seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        sqlx::query(q(&self.inner.sql.truncate_checkpoint))
            .bind(*last_seq)
            .bind(hash.as_bytes().to_vec())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.commit(tx).await?;
        Ok(deleted)
    }

    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        let (now, limit) = (request.now, request.limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(q(&self.inner.sql.mark_expired))
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if rows.is_empty() {
            self.rollback(tx).await?;
            return Ok(Vec::new());
        }
        let mut raw_ids = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw: Vec<u8> = row
                .try_get("id")
                .map_err(|e| error::corrupt(format!("tokens: column id: unreadable ({e})")))?;
            // The marker is store-internal: a row that cannot even be named is marked too (so it
            // does not hold the front of every sweep), but not reported.
            if let Some(event) = sweeper_event(AuditKind::Expired, row, now) {
                events.push(event);
            }
            raw_ids.push(raw);
        }
        sqlx::query(q(&self.inner.sql.mark_expired_update))
            .bind(raw_ids)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_events(&mut tx, &events).await?;
        self.commit(tx).await?;
        Ok(events)
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(q(&self.inner.sql.purge))
            .bind(micros_ceil(request.revoked_before))
            .bind(micros_ceil(request.expired_before))
            .bind(i64::from(request.limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut raw_ids = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // Deleting a record is a lifecycle change: a row that cannot be named in its event
            // stays.
            let Some(event) = sweeper_event(AuditKind::Purged, row, request.now) else {
                continue;
            };
            let Some(id) = event.token_id else {
                continue;
            };
            raw_ids.push(id_bytes(id));
            events.push(event);
        }
        if events.is_empty() {
            self.rollback(tx).await?;
            return Ok(Vec::new());
        }
        // Labels go with their rows (ON DELETE CASCADE); audit events have no foreign key.
        sqlx::query(q(&self.inner.sql.purge_delete))
            .bind(raw_ids)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.append_events(&mut tx, &events).await?;
        self.commit(tx).await?;
        Ok(events)
    }

    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        let stream = feed::subscribe(
            &self.inner.pool,
            self.inner.channel.clone(),
            self.inner.closed.subscribe(),
        )
        .await?;
        Ok(Some(stream))
    }
}

/// The state of `t` at `$now` (unix µs), exactly as [`TokenRecord::state_at`] computes it:
/// revoked, expired (`now >= expires_at`), not yet valid (`now < not_before`), idle
/// (`now >= max(last_used_at, not_before, created_at) + idle_timeout`, in `numeric` so no
/// overflow), used up (`use_count >= max_uses`), else active.
fn state_sql(now: u32) -> String {
    format!(
        "(CASE \
           WHEN t.revoked_at IS NOT NULL THEN 'revoked' \
           WHEN t.expires_at IS NOT NULL AND ${now}::bigint >= t.expires_at THEN 'expired' \
           WHEN t.not_before IS NOT NULL AND ${now}::bigint < t.not_before THEN 'not_yet_valid' \
           WHEN t.idle_timeout_us IS NOT NULL AND ${now}::bigint::numeric \
                >= GREATEST(t.last_used_at, t.not_before, t.created_at)::numeric \
                   + t.idle_timeout_us::numeric THEN 'idle_expired' \
           WHEN t.max_uses IS NOT NULL AND t.use_count >= t.max_uses THEN 'used_up' \
           ELSE 'active' END)"
    )
}
