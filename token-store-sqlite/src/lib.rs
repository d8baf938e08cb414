//! # token-store-sqlite
//!
//! The embedded default [`TokenStore`]: one SQLite file (WAL mode) through sqlx, durable by
//! default, indexed for every access path the manager uses, with a tamper-evident audit hash chain
//! and retention sweeps, and passing the whole `token-testkit` conformance suite.
//!
//! ```
//! use token_core::{HashKey, IssueRequest, KeyId, Keyring, Scope, ScopeSet, TokenManager};
//! use token_store_sqlite::SqliteStore;
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! // A file path works the same: "sqlite://path/tokens.db" (created if missing).
//! let store = SqliteStore::connect("sqlite::memory:").await?;
//! store.migrate().await?; // explicit: connect never changes the schema
//!
//! let keyring = Keyring::new(HashKey::generate(KeyId::new(1))?);
//! let manager = TokenManager::builder(store, keyring).prefix("acme_live")?.build()?;
//!
//! let issued = manager
//!     .issue(IssueRequest::new("user:42", ScopeSet::parse("widgets:read")?))
//!     .await?;
//! let scope: Scope = "widgets:read".parse()?;
//! let ok = manager.validate(issued.token.expose_secret(), &[scope]).await?;
//! assert_eq!(ok.subject(), "user:42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Connecting
//! - [`SqliteStore::connect`] takes a URL (`sqlite://path/tokens.db`, `sqlite::memory:`) and
//!   creates the file if missing.
//! - [`SqliteStore::connect_with`] takes [`SqliteStoreOptions`] (durability, busy timeout, pool
//!   size, or your own [`SqliteConnectOptions`](sqlx::sqlite::SqliteConnectOptions)).
//! - [`SqliteStore::from_pool`] adopts a pool the host already has. The store then uses the pool's
//!   connection settings as they are: configure WAL, `foreign_keys`, a busy timeout and the
//!   durability you want on it.
//!
//! Every connection the store opens itself uses WAL journaling (readers never block the writer),
//! `foreign_keys = ON`, a busy timeout (default 5 s) and `synchronous = FULL`. The pool does not
//! ping connections before use (`test_before_acquire(false)`): the ping costs 18–27 % per query
//! and a SQLite connection cannot go stale.
//!
//! ## Durability
//! A committed revocation must survive power loss, so the default is `synchronous = FULL`: every
//! commit `fsync`s the WAL before returning. [`Synchronous::Normal`] skips that `fsync` (WAL
//! frames are synced at checkpoints only): a process crash still loses nothing, but a power cut or
//! OS crash may lose the last few commits — including a revocation that was reported done — though
//! it never corrupts the file. Choose it only when the lower write latency matters more than that
//! window. See [`Synchronous`].
//!
//! ## Migrations
//! The schema is embedded and applied only by an explicit [`SqliteStore::migrate`] (run it at
//! deploy or start-up; it is idempotent and safe to run from several processes at once). Each
//! migration runs in its own transaction and is recorded in the store's own table,
//! [`MIGRATIONS_TABLE`] (`token_store_migrations`); sqlx's `_sqlx_migrations` belongs to the host
//! application and is never created or read. A database whose recorded version is newer than
//! [`SCHEMA_VERSION`] is refused with [`StoreError::SchemaTooNew`], by `migrate` and by every
//! operation. Operations on a database that was never migrated, or is at an older version, fail
//! with [`StoreError::NotMigrated`] (naming the version found and the one required).
//!
//! | version | what it adds |
//! |---|---|
//! | 1 | `tokens`, `token_labels`, `audit_events` and their indexes |
//! | 2 | the audit hash chain (`audit_events.hash`), `audit_checkpoint`, the expiry marker `tokens.expiry_recorded_at`, indexes for audit queries and retention |
//!
//! **Upgrading a version-1 database.** Migration 2 rebuilds `audit_events` with a `NOT NULL`
//! `hash` column: in its single transaction it copies every existing event in `seq` order (seqs
//! unchanged) and computes its chain hash in Rust with [`chain_hash`](token_core::audit::chain_hash),
//! starting from [`AuditHash::GENESIS`](token_core::AuditHash::GENESIS), then swaps the tables and
//! keeps the `AUTOINCREMENT` counter (so no seq is ever reused). The chain therefore vouches for
//! the version-1 events only from the upgrade on: edits made before it are not detectable. A
//! version-1 event that cannot be decoded (an unknown kind, a bad timestamp) fails the migration
//! with [`StoreError::Corrupt`] naming its seq, and nothing is changed. The copy costs time
//! proportional to the audit table and holds the write lock meanwhile: upgrade during a quiet
//! period if the trail is large.
//!
//! Tables (schema version 2):
//! - `tokens`: one row per token. Ids are the 16 raw id bytes (`BLOB`, whose byte order is
//!   [`TokenId`]'s order), the keyed hash is 32 raw bytes, scopes are the space-separated scope
//!   string, timestamps and durations are `INTEGER` unix microseconds. `expiry_recorded_at` is
//!   store-internal (not part of [`TokenRecord`]): when [`TokenStore::mark_expired`] reported the
//!   token's expiry, so each expiry is reported once.
//! - `token_labels(token_id, key, value)`: labels, deleted with their token.
//! - `audit_events(seq, at, kind, token_id, fingerprint, subject, actor, client_ip, user_agent,
//!   request_id, reason, detail, hash)`: the audit trail, `seq` strictly increasing
//!   (`AUTOINCREMENT`, never reused), `hash` the 32-byte chain hash. Events have no foreign key:
//!   they outlive purged tokens.
//! - `audit_checkpoint(id = 1, seq, hash)`: at most one row, the last event removed by
//!   [`TokenStore::truncate_audit`]; the first remaining event chains from its hash.
//!
//! ## Audit hash chain
//! Every event is stored with `hash = chain_hash(previous hash, seq, event)`
//! (`blake3(previous hash ‖ canonical bytes)`, see [`token_core::audit`]); the first event chains
//! from the checkpoint's hash, or from [`AuditHash::GENESIS`](token_core::AuditHash::GENESIS).
//! Every append — insert, rotate, revoke, [`append_audit`](TokenStore::append_audit),
//! [`mark_expired`](TokenStore::mark_expired), [`purge`](TokenStore::purge) — happens inside the
//! change's `BEGIN IMMEDIATE` transaction: it reads the head (the last event's seq and hash, else
//! the checkpoint's, else genesis; the next seq is also past SQLite's `AUTOINCREMENT` counter),
//! then inserts each event with its seq and hash. `BEGIN IMMEDIATE` holds SQLite's write lock from
//! the first statement, so all writers (in this process or any other sharing the file) are
//! serialized: no two appends can read the same head, and the chain cannot fork. An event that
//! cannot be written (I/O error, a full disk, a trigger refusing it) rolls back the whole change:
//! a token is not issued, rotated, revoked, marked expired or purged without its event.
//! [`TokenManager::verify_audit_chain`](token_core::TokenManager::verify_audit_chain) then
//! detects edited, deleted and reordered events; a stored hash that is not 32 bytes is
//! [`StoreError::Corrupt`]. Deleting the newest events is not detectable from the database
//! alone: keep the reported head elsewhere.
//!
//! ## Retention
//! - [`TokenStore::mark_expired`]: expired, unrevoked, unrecorded tokens in expiry order, at most
//!   `limit`, from the partial index `tokens_expiry_unrecorded`; sets `expiry_recorded_at` and
//!   appends an `Expired` event each, in one transaction (concurrent sweeps serialize on the write
//!   lock, so each expiry is reported once).
//! - [`RevokeSelector::UnusedSince`] (and [`RevokeRequest::limit`]): live tokens whose last use
//!   (or creation) is older than the cutoff, the longest-unused first, from the partial index
//!   `tokens_unused` on `coalesce(last_used_at, created_at)`; a limit bounds the matches, their
//!   descendants are revoked with them. The index costs an index update per usage flush.
//! - [`ListFilter::unused_since`](token_core::ListFilter::unused_since()) (the stale-token report)
//!   spans every state, so it cannot use that partial index: it walks the listing order
//!   (`tokens(created_at, id)`) and filters, stopping at the page size.
//! - [`TokenStore::purge`]: up to `limit` records revoked before, and up to `limit` expiring
//!   before, the request's cutoffs (ranges of `tokens(revoked_at)` and `tokens(expires_at)`), the
//!   first `limit` of them by id; deletes them with their labels and appends a `Purged` event
//!   each. Their audit events stay.
//! - [`TokenStore::truncate_audit`]: walks the oldest events in seq order (at most `limit`), takes
//!   the prefix with `at` before the cutoff, deletes it and upserts the checkpoint with the last
//!   deleted seq and hash, in one transaction.
//!
//! ## Indexes
//! Every access path is indexed, so a lookup, a bulk revocation or a sweep costs in proportion to
//! the rows it touches, not to the table: the primary key on `tokens.id` (lookup, rotate,
//! consume a use), `tokens(subject)` (revoke/list by subject, live-token count),
//! `tokens(family_id)` (family revocation), `tokens(parent_id)` (the descendant walk every
//! revocation does), `tokens(created_at, id)` (listing order, keyset pagination, revoke issued
//! before), `tokens(expires_at)` and `tokens(revoked_at)` (purges), `tokens(expires_at)` for
//! unrevoked, unrecorded rows (`mark_expired`), `tokens(coalesce(last_used_at, created_at))` for
//! unrevoked rows (revoke unused), `tokens(hash_key_id)` (key retirement),
//! `token_labels(key, value)` (by label), and on `audit_events`: `(token_id, seq)` (a token's
//! trail), `(subject, seq)`, `(actor, seq)`, `(kind, seq)` and `(at, seq)` (audit queries: a
//! filter plus `seq > after` in seq order is one index range, no sort) and the primary key
//! (`seq`: export, verification, truncation). A unit test checks the `EXPLAIN QUERY PLAN` of each.
//!
//! ## Concurrency and atomicity
//! Every state change is one transaction opened with `BEGIN IMMEDIATE`, which takes SQLite's
//! write lock up front: writers (in this process or any other sharing the file) serialize, so the
//! checks made inside the transaction — the parent is active for a derive, the subject's live
//! count, a token is rotated at most once — cannot race, and a change commits together with its
//! audit events or not at all. Counting a use of a token with `max_uses` is one conditional
//! `UPDATE ... WHERE use_count < max_uses`. Readers never wait for writers (WAL). A writer that
//! cannot get the lock within the busy timeout fails with [`StoreError::Conflict`].
//!
//! ## Revocation feed
//! [`TokenStore::subscribe_revocations`] is an in-process broadcast: every revocation committed
//! through this store (or a clone of it) is announced after its commit. Other processes sharing
//! the file are not notified; their caches must rely on a bounded cache age.
//!
//! ## Bad data
//! Every column is checked when read. An invalid scope string, a hash that is not 32 bytes, an id
//! that is not 16 bytes, an out-of-range timestamp, a negative count or an unknown audit kind
//! yields [`StoreError::Corrupt`] naming the table, column and token; such a record is never
//! returned, so it never validates. A file that is not a SQLite database fails to connect with
//! [`StoreError::Corrupt`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chain;
mod codec;
mod error;
mod migrate;
mod options;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use futures_util::stream;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use token_core::audit::SWEEPER_ACTOR;
use token_core::store::{
    ConsumeUse, CountLiveWithKey, InsertOutcome, InsertToken, ListQuery, MarkExpired, PurgeRequest,
    RevocationNotice, RevocationStream, RevokeRequest, RevokeSelector, RotateOutcome, RotateToken,
    StoreError, TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, Context, TokenId, TokenRecord,
    TokenState,
};
use tokio::sync::broadcast;

use crate::codec::{
    AUDIT_COLUMNS, TOKEN_COLUMNS, audit_from_row, audit_hash, count_to_sql, duration_to_sql,
    id_bytes, micros, micros_ceil, record_from_row, row_id,
};
use crate::error::{backend, is_unique_violation};

pub use crate::migrate::{MIGRATIONS_TABLE, SCHEMA_VERSION};
pub use crate::options::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, SqliteStoreOptions, Synchronous,
};
pub use token_core::columns::UnrepresentableValue;

/// Revocation batches buffered per subscriber before it is told it lagged (and must flush).
const FEED_CAPACITY: usize = 1024;

/// The SQLite store. Cheap to clone: clones share the pool and the revocation feed.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    revocations: broadcast::Sender<Vec<TokenId>>,
    /// Set once the schema was seen at [`SCHEMA_VERSION`]; until then every operation checks.
    schema_ok: AtomicBool,
}

impl SqliteStore {
    /// Connects to `url` (`sqlite://path/tokens.db`, created if missing; `sqlite::memory:`) with
    /// the default [`SqliteStoreOptions`]. Does not migrate: call [`migrate`](Self::migrate).
    ///
    /// Fails with [`StoreError::Corrupt`] when the file is not a SQLite database, and with
    /// [`StoreError::Backend`] when it cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqliteStoreOptions::new(url)?).await
    }

    /// Connects with explicit options. Does not migrate.
    pub async fn connect_with(options: SqliteStoreOptions) -> Result<Self, StoreError> {
        let pool = options
            .pool_options()
            .connect_with(options.connect_options())
            .await
            .map_err(backend)?;
        Ok(Self::from_pool(pool))
    }

    /// Uses a pool the host built. Its connection settings are used as they are (see the
    /// [crate docs](crate#connecting)). Does not migrate.
    pub fn from_pool(pool: SqlitePool) -> Self {
        let (revocations, _) = broadcast::channel(FEED_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                pool,
                revocations,
                schema_ok: AtomicBool::new(false),
            }),
        }
    }

    /// The connection pool (for host queries, backups, `PRAGMA`s).
    pub fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Applies pending migrations (see [Migrations](crate#migrations)). Idempotent. Fails with
    /// [`StoreError::SchemaTooNew`] when the database was migrated by a newer library.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::run(&self.inner.pool).await?;
        self.inner.schema_ok.store(true, Ordering::Release);
        Ok(())
    }

    /// Applies pending migrations up to and including schema `version` only (for upgrade tests
    /// that need an older schema). Not part of the supported API: use [`migrate`](Self::migrate).
    #[doc(hidden)]
    pub async fn migrate_up_to(&self, version: i64) -> Result<(), StoreError> {
        migrate::run_to(&self.inner.pool, version).await
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    async fn ready(&self) -> Result<&SqlitePool, StoreError> {
        if !self.inner.schema_ok.load(Ordering::Acquire) {
            migrate::check(&self.inner.pool).await?;
            self.inner.schema_ok.store(true, Ordering::Release);
        }
        Ok(&self.inner.pool)
    }

    /// A write transaction holding SQLite's write lock from its first statement.
    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.ready()
            .await?
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)
    }
}

type Tx = Transaction<'static, Sqlite>;

async fn rollback(tx: Tx) -> Result<(), StoreError> {
    tx.rollback().await.map_err(backend)
}

/// The lookup by id (the validation hot path): one primary-key search, labels included.
static LOOKUP_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id = ?"));

async fn fetch_record(tx: &mut Tx, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(LOOKUP_SQL.as_str())
        .bind(id_bytes(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    row.as_ref().map(record_from_row).transpose()
}

async fn exists(tx: &mut Tx, id: TokenId) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tokens WHERE id = ?")
        .bind(id_bytes(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(found.is_some())
}

const INSERT_TOKEN: &str = "INSERT INTO tokens (id, hash, hash_key_id, prefix, subject, scopes, \
    name, description, created_at, created_by, expires_at, not_before, idle_timeout_us, \
    last_used_at, use_count, max_uses, parent_id, family_id, rotated_from, rotated_to, revoked_at, \
    revoke_reason, revoked_by) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

async fn insert_record(tx: &mut Tx, record: &TokenRecord) -> Result<(), StoreError> {
    let idle = record
        .idle_timeout
        .map(|d| duration_to_sql(d, "idle_timeout"))
        .transpose()?;
    let max_uses = record
        .max_uses
        .map(|m| count_to_sql(m, "max_uses"))
        .transpose()?;
    let revocation = record.revocation.as_ref();
    let result = sqlx::query(INSERT_TOKEN)
        .bind(id_bytes(record.id))
        .bind(record.hash.as_bytes().to_vec())
        .bind(i64::from(record.hash_key_id.get()))
        .bind(record.prefix.clone())
        .bind(record.subject.clone())
        .bind(record.scopes.to_string())
        .bind(record.name.clone())
        .bind(record.description.clone())
        .bind(micros(record.created_at))
        .bind(record.created_by.clone())
        .bind(record.expires_at.map(micros))
        .bind(record.not_before.map(micros))
        .bind(idle)
        .bind(record.last_used_at.map(micros))
        .bind(count_to_sql(record.use_count, "use_count")?)
        .bind(max_uses)
        .bind(record.parent_id.map(id_bytes))
        .bind(id_bytes(record.family_id))
        .bind(record.rotated_from.map(id_bytes))
        .bind(record.rotated_to.map(id_bytes))
        .bind(revocation.map(|r| micros(r.at)))
        .bind(revocation.map(|r| r.reason.clone()))
        .bind(revocation.and_then(|r| r.actor.clone()))
        .execute(&mut **tx)
        .await;
    match result {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        Err(e) => return Err(backend(e)),
    }
    for (key, value) in &record.labels {
        sqlx::query("INSERT INTO token_labels (token_id, key, value) VALUES (?, ?, ?)")
            .bind(id_bytes(record.id))
            .bind(key.clone())
            .bind(value.clone())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// Appends `events` to the hash chain inside the write transaction `tx` (see [`chain::append`]).
async fn append_events(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    chain::append(tx, events).await
}

/// A token is live (counts against limits and keys) when not revoked and not expired.
const LIVE: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)";

/// SQL translations of the terms of [`TokenRecord::state_at`] at a bound `now` (each `?` is
/// `now`). Every term is `0` or `1`, never `NULL`.
const REVOKED: &str = "(t.revoked_at IS NOT NULL)";
const EXPIRED: &str = "(t.expires_at IS NOT NULL AND ? >= t.expires_at)";
const NOT_YET_VALID: &str = "(t.not_before IS NOT NULL AND ? < t.not_before)";
const IDLE: &str = "(t.idle_timeout_us IS NOT NULL AND max(coalesce(t.last_used_at, t.created_at), \
    coalesce(t.not_before, t.created_at), t.created_at) + t.idle_timeout_us <= ?)";
const USED_UP: &str = "(t.max_uses IS NOT NULL AND t.use_count >= t.max_uses)";

/// The `WHERE` term selecting tokens in `state` at `now` (the exact precedence of
/// [`TokenRecord::state_at`]: revoked, expired, not yet valid, idle, used up, else active), and
/// how many times `now` must be bound.
fn state_condition(state: TokenState) -> (String, usize) {
    // (term, number of `now` parameters it uses)
    let terms: [(&str, usize); 5] = [
        (REVOKED, 0),
        (EXPIRED, 1),
        (NOT_YET_VALID, 1),
        (IDLE, 1),
        (USED_UP, 0),
    ];
    let position = match state {
        TokenState::Revoked => 0,
        TokenState::Expired => 1,
        TokenState::NotYetValid => 2,
        TokenState::IdleExpired => 3,
        TokenState::UsedUp => 4,
        TokenState::Active => 5,
        // A state this store does not know matches nothing rather than everything.
        _ => return ("0".to_owned(), 0),
    };
    let mut parts = Vec::new();
    let mut binds = 0;
    for (term, n) in &terms[..position] {
        parts.push(format!("NOT {term}"));
        binds += n;
    }
    if let Some((term, n)) = terms.get(position) {
        parts.push((*term).to_owned());
        binds += n;
    }
    (format!("({})", parts.join(" AND ")), binds)
}

/// A bound parameter of a dynamically built query.
enum Arg {
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    args: Vec<Arg>,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
        };
    }
    query
}

/// The listing query for `query` and its parameters.
fn list_sql(query: &ListQuery) -> (String, Vec<Arg>) {
    let now = micros(query.now);
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let filter = &query.filter;
    if let Some(subject) = &filter.subject {
        conditions.push("t.subject = ?".to_owned());
        args.push(Arg::Text(subject.clone()));
    }
    if let Some((key, value)) = &filter.label {
        conditions.push(
            "t.id IN (SELECT token_id FROM token_labels WHERE key = ? AND value = ?)".to_owned(),
        );
        args.push(Arg::Text(key.clone()));
        args.push(Arg::Text(value.clone()));
    }
    if let Some(family) = filter.family {
        conditions.push("t.family_id = ?".to_owned());
        args.push(Arg::Blob(id_bytes(family)));
    }
    if let Some(state) = filter.state {
        let (condition, binds) = state_condition(state);
        conditions.push(condition);
        args.extend((0..binds).map(|_| Arg::Int(now)));
    }
    if let Some(since) = filter.unused_since {
        conditions.push("coalesce(t.last_used_at, t.created_at) < ?".to_owned());
        args.push(Arg::Int(micros_ceil(since)));
    }
    if let Some(cursor) = query.after {
        conditions.push("(t.created_at, t.id) > (?, ?)".to_owned());
        args.push(Arg::Int(micros(cursor.created_at)));
        args.push(Arg::Blob(id_bytes(cursor.id)));
    }
    let mut sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens t");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY t.created_at, t.id LIMIT ?");
    args.push(Arg::Int(i64::from(query.limit)));
    (sql, args)
}

/// The query selecting the not-yet-revoked tokens a revocation reaches (the selector's matches
/// plus all their descendants), or `None` for a selector this store does not know.
///
/// With [`RevokeRequest::limit`], at most that many not-yet-revoked matches are taken (the
/// descendant walk then adds their descendants); `UnusedSince` takes the longest-unused first, in
/// the order of its index, so a bounded sweep reads only the rows it revokes.
fn revoke_sql(request: &RevokeRequest) -> Option<(String, Vec<Arg>)> {
    // A condition on `tokens`, its parameters, and the order a limited revocation takes matches in
    // (`None`: whatever order the chosen index yields).
    let (condition, mut args, order) = match &request.selector {
        RevokeSelector::Token(id) => ("id = ?", vec![Arg::Blob(id_bytes(*id))], None),
        RevokeSelector::Subject(subject) => ("subject = ?", vec![Arg::Text(subject.clone())], None),
        RevokeSelector::Family(id) => (
            "family_id = (SELECT family_id FROM tokens WHERE id = ?)",
            vec![Arg::Blob(id_bytes(*id))],
            None,
        ),
        RevokeSelector::Label { key, value } => (
            "id IN (SELECT token_id FROM token_labels WHERE key = ? AND value = ?)",
            vec![Arg::Text(key.clone()), Arg::Text(value.clone())],
            None,
        ),
        RevokeSelector::IssuedBefore(at) => {
            ("created_at < ?", vec![Arg::Int(micros_ceil(*at))], None)
        }
        // Live at the request time and not used since `since`; the partial index `tokens_unused`
        // holds exactly the unrevoked rows, keyed by this expression.
        RevokeSelector::UnusedSince(since) => (
            "revoked_at IS NULL AND coalesce(last_used_at, created_at) < ? \
             AND (expires_at IS NULL OR expires_at > ?)",
            vec![Arg::Int(micros_ceil(*since)), Arg::Int(micros(request.at))],
            Some("coalesce(last_used_at, created_at)"),
        ),
        // Newer selectors this store does not know match nothing rather than everything.
        _ => return None,
    };
    let matched = match request.limit {
        None => format!("SELECT id FROM tokens WHERE {condition}"),
        Some(limit) => {
            args.push(Arg::Int(i64::from(limit)));
            let order = order.map(|o| format!(" ORDER BY {o}")).unwrap_or_default();
            format!("SELECT id FROM tokens WHERE {condition} AND revoked_at IS NULL{order} LIMIT ?")
        }
    };
    let sql = format!(
        "WITH RECURSIVE matched(id) AS ({matched}), \
         tree(id) AS (SELECT id FROM matched UNION SELECT c.id FROM tokens c JOIN tree ON c.parent_id = tree.id) \
         SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id IN (SELECT id FROM tree) AND t.revoked_at IS NULL \
         ORDER BY t.created_at, t.id"
    );
    Some((sql, args))
}

/// The subject of a row that cannot be decoded (empty if even that is unreadable).
fn row_subject(row: &SqliteRow) -> String {
    sqlx::Row::try_get(row, "subject").unwrap_or_default()
}

/// The event [`AuditEvent::by_sweeper`] writes, for a row known only by id and subject (a row
/// whose other columns fail to decode: a sweep must not stall on it).
fn sweeper_event_for_row(
    kind: AuditKind,
    id: TokenId,
    subject: String,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent::new(kind, at)
        .with_token(id, subject)
        .with_context(&Context::new().actor(SWEEPER_ACTOR))
}

/// The sweep event for `row`: [`AuditEvent::by_sweeper`] of the decoded record, else
/// [`sweeper_event_for_row`]; `None` when the row's id is unreadable (it cannot be named).
fn sweeper_event(kind: AuditKind, row: &SqliteRow, at: OffsetDateTime) -> Option<AuditEvent> {
    match record_from_row(row) {
        Ok(record) => Some(AuditEvent::by_sweeper(kind, &record, at)),
        Err(_) => row_id(row).map(|id| sweeper_event_for_row(kind, id, row_subject(row), at)),
    }
}

/// `mark_expired`: expired, unrevoked, unrecorded tokens, earliest expiry first (an index range
/// of `tokens_expiry_unrecorded`).
static MARK_EXPIRED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.expires_at <= ? AND t.revoked_at IS NULL \
         AND t.expiry_recorded_at IS NULL ORDER BY t.expires_at LIMIT ?"
    )
});

/// `purge`: up to `limit` records revoked before a time (earliest first, `tokens_revoked`) and up
/// to `limit` expiring before a time (`tokens_expires`), of which the first `limit` by id: the
/// reference store's choice.
static PURGE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id IN ( \
         SELECT id FROM (SELECT id FROM tokens WHERE revoked_at < ? ORDER BY revoked_at LIMIT ?) \
         UNION \
         SELECT id FROM (SELECT id FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ?)) \
         ORDER BY t.id LIMIT ?"
    )
});

/// `truncate_audit`: the oldest events in seq order (a walk of the primary key that stops after
/// `limit` rows).
const TRUNCATE_SCAN_SQL: &str = "SELECT seq, at, hash FROM audit_events ORDER BY seq LIMIT ?";

/// The audit query for `query` and its parameters ([`AuditQuery::matches`], in seq order).
fn audit_query_sql(query: &AuditQuery) -> (String, Vec<Arg>) {
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    if let Some(id) = query.token_id {
        conditions.push("token_id = ?");
        args.push(Arg::Blob(id_bytes(id)));
    }
    if let Some(subject) = &query.subject {
        conditions.push("subject = ?");
        args.push(Arg::Text(subject.clone()));
    }
    if let Some(actor) = &query.actor {
        conditions.push("actor = ?");
        args.push(Arg::Text(actor.clone()));
    }
    if let Some(kind) = query.kind {
        conditions.push("kind = ?");
        args.push(Arg::Text(kind.as_str().to_owned()));
    }
    if let Some(from) = query.from {
        conditions.push("at >= ?");
        args.push(Arg::Int(micros_ceil(from)));
    }
    if let Some(until) = query.until {
        conditions.push("at < ?");
        args.push(Arg::Int(micros_ceil(until)));
    }
    if let Some(after) = query.after_seq {
        conditions.push("seq > ?");
        // Past i64::MAX nothing can follow.
        args.push(Arg::Int(i64::try_from(after).unwrap_or(i64::MAX)));
    }
    let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(Arg::Int(i64::from(query.limit)));
    (sql, args)
}

#[async_trait]
impl TokenStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, insert: &InsertToken) -> Result<InsertOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let record = &insert.record;
        if exists(&mut tx, record.id).await? {
            rollback(tx).await?;
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        if let Some(parent) = record.parent_id {
            // Under the write lock: a concurrent family revocation either committed before (the
            // parent reads as revoked) or waits for this insert (and then revokes the child).
            let parent_record = fetch_record(&mut tx, parent).await?;
            let state = parent_record.as_ref().map(|p| p.state_at(insert.now));
            if state != Some(TokenState::Active) {
                rollback(tx).await?;
                return Ok(InsertOutcome::ParentNotActive { state });
            }
            if let Some(parent_expires_at) = parent_record
                .as_ref()
                .and_then(|p| InsertToken::child_outlives(p, record))
            {
                rollback(tx).await?;
                return Ok(InsertOutcome::OutlivesParent { parent_expires_at });
            }
            if let Some(remaining) = parent_record
                .as_ref()
                .and_then(|p| InsertToken::child_exceeds_uses(p, record))
            {
                rollback(tx).await?;
                return Ok(InsertOutcome::UsesExceedParent { remaining });
            }
        }
        if let Some(max) = insert.max_live_for_subject {
            let sql = format!("SELECT count(*) FROM tokens WHERE subject = ? AND {LIVE}");
            let live: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(record.subject.clone())
                .bind(micros(insert.now))
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
            if live >= i64::from(max) {
                rollback(tx).await?;
                return Ok(InsertOutcome::SubjectLimitReached);
            }
        }
        insert_record(&mut tx, record).await?;
        append_events(&mut tx, &insert.events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        let pool = self.ready().await?;
        let row = sqlx::query(LOOKUP_SQL.as_str())
            .bind(id_bytes(id))
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
        match row {
            None => Ok(None),
            Some(row) => record_from_row(&row).map(|r| Some(Arc::new(r))),
        }
    }

    async fn rotate(&self, rotation: &RotateToken) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let Some(old) = fetch_record(&mut tx, rotation.predecessor).await? else {
            rollback(tx).await?;
            return Ok(RotateOutcome::NotFound);
        };
        if let Some(successor) = old.rotated_to {
            rollback(tx).await?;
            return Ok(RotateOutcome::AlreadyRotated(successor));
        }
        let old_state = old.state_at(rotation.now);
        if old_state != TokenState::Active {
            rollback(tx).await?;
            return Ok(RotateOutcome::NotActive(old_state));
        }
        let mut successor = rotation.successor.clone();
        if let Some(max) = old.max_uses {
            // The uses left as of this transaction: none is granted twice.
            successor.max_uses = Some(max.saturating_sub(old.use_count));
        }
        let successor = &successor;
        if exists(&mut tx, successor.id).await? {
            rollback(tx).await?;
            return Err(StoreError::AlreadyExists { id: successor.id });
        }
        sqlx::query("UPDATE tokens SET rotated_to = ?, expires_at = ? WHERE id = ?")
            .bind(id_bytes(successor.id))
            .bind(micros(rotation.predecessor_expires_at))
            .bind(id_bytes(rotation.predecessor))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        insert_record(&mut tx, successor).await?;
        append_events(&mut tx, &rotation.events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        if request.limit == Some(0) {
            return Ok(Vec::new());
        }
        let Some((sql, args)) = revoke_sql(request) else {
            return Ok(Vec::new());
        };
        let mut tx = self.begin().await?;
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let revocation = request.revocation();
        let mut revoked = Vec::with_capacity(rows.len());
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // A row whose id cannot even be read cannot be named; it matched by its raw key, so
            // revoke it by that key anyway.
            let raw_id: Vec<u8> = sqlx::Row::try_get(row, "id").map_err(backend)?;
            match record_from_row(row) {
                Ok(record) => events.push(request.event_for(&record)),
                Err(_) => {
                    if let Some(id) = row_id(row) {
                        events.push(request.event_for_row(id, &row_subject(row)));
                    }
                }
            }
            sqlx::query(
                "UPDATE tokens SET revoked_at = ?, revoke_reason = ?, revoked_by = ? \
                 WHERE id = ? AND revoked_at IS NULL",
            )
            .bind(micros(revocation.at))
            .bind(revocation.reason.clone())
            .bind(revocation.actor.clone())
            .bind(raw_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            if let Some(id) = row_id(row) {
                revoked.push(id);
            }
        }
        append_events(&mut tx, &events).await?;
        tx.commit().await.map_err(backend)?;
        if !revoked.is_empty() {
            // After the commit; no subscribers is not an error.
            let _ = self.inner.revocations.send(revoked);
        }
        Ok(events)
    }

    async fn consume_use(&self, request: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        let pool = self.ready().await?;
        let id = request.id;
        let now = micros(request.now);
        // One atomic conditional statement: concurrent callers can never count past max_uses.
        let counted: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET use_count = use_count + 1, \
             last_used_at = max(coalesce(last_used_at, ?), ?) \
             WHERE id = ? AND (max_uses IS NULL OR use_count < max_uses) \
             AND revoked_at IS NULL AND rotated_to IS NULL \
             AND (expires_at IS NULL OR expires_at > ?) \
             RETURNING use_count",
        )
        .bind(now)
        .bind(now)
        .bind(id_bytes(id))
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
        if let Some(count) = counted {
            return u64::try_from(count).map(UseOutcome::Counted).map_err(|_| {
                error::corrupt(format!(
                    "tokens.use_count of token {id}: negative count {count}"
                ))
            });
        }
        let found: Option<(bool,)> = sqlx::query_as(
            "SELECT revoked_at IS NULL AND rotated_to IS NULL \
             AND (expires_at IS NULL OR expires_at > ?) FROM tokens WHERE id = ?",
        )
        .bind(now)
        .bind(id_bytes(id))
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
        Ok(match found {
            Some((true,)) => UseOutcome::LimitReached,
            Some((false,)) => UseOutcome::NotActive,
            None => UseOutcome::NotFound,
        })
    }

    async fn record_usage(&self, updates: &[UsageUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for update in updates {
            let at = micros(update.last_used_at);
            sqlx::query(
                "UPDATE tokens SET use_count = use_count + ?, \
                 last_used_at = max(coalesce(last_used_at, ?), ?) WHERE id = ?",
            )
            .bind(count_to_sql(update.uses, "uses")?)
            .bind(at)
            .bind(at)
            .bind(id_bytes(update.id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        let pool = self.ready().await?;
        let (sql, args) = list_sql(query);
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
            .fetch_all(pool)
            .await
            .map_err(backend)?;
        rows.iter().map(record_from_row).collect()
    }

    async fn count_live_with_key(&self, query: &CountLiveWithKey) -> Result<u64, StoreError> {
        let (key, now) = (query.key, query.now);
        let pool = self.ready().await?;
        let sql = format!("SELECT count(*) FROM tokens WHERE hash_key_id = ? AND {LIVE}");
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(key.get()))
            .bind(micros(now))
            .fetch_one(pool)
            .await
            .map_err(backend)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        append_events(&mut tx, events).await?;
        tx.commit().await.map_err(backend)
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let pool = self.ready().await?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let (sql, args) = audit_query_sql(query);
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
            .fetch_all(pool)
            .await
            .map_err(backend)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        let pool = self.ready().await?;
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_checkpoint WHERE id = 1")
                .fetch_optional(pool)
                .await
                .map_err(backend)?;
        row.map(|(seq, hash)| token_core::columns::decode_checkpoint(error::STORE, seq, &hash))
            .transpose()
    }

    async fn truncate_audit(&self, request: &TruncateAudit) -> Result<u64, StoreError> {
        let (before, limit) = (request.before, request.limit);
        if limit == 0 {
            return Ok(0);
        }
        let before = micros_ceil(before);
        let mut tx = self.begin().await?;
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(TRUNCATE_SCAN_SQL)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        // The longest prefix of old events; it ends at the first event at or after `before`.
        let prefix: Vec<&(i64, i64, Vec<u8>)> =
            rows.iter().take_while(|(_, at, _)| *at < before).collect();
        let Some((last_seq, _, last_hash)) = prefix.last() else {
            rollback(tx).await?;
            return Ok(0);
        };
        let hash = audit_hash(last_hash, "audit_events", *last_seq)?;
        sqlx::query("DELETE FROM audit_events WHERE seq <= ?")
            .bind(*last_seq)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "INSERT INTO audit_checkpoint (id, seq, hash) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(*last_seq)
        .bind(hash.as_bytes().to_vec())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(prefix.len() as u64)
    }

    async fn mark_expired(&self, request: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        let (now, limit) = (request.now, request.limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let rows = sqlx::query(MARK_EXPIRED_SQL.as_str())
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let raw_id: Vec<u8> = sqlx::Row::try_get(row, "id").map_err(backend)?;
            // The marker is store-internal: a row that cannot even be named is marked too (so it
            // does not occupy the front of every sweep), but not reported.
            if let Some(event) = sweeper_event(AuditKind::Expired, row, now) {
                events.push(event);
            }
            sqlx::query("UPDATE tokens SET expiry_recorded_at = ? WHERE id = ?")
                .bind(micros(now))
                .bind(raw_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        append_events(&mut tx, &events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(events)
    }

    async fn purge(&self, request: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::from(request.limit);
        let mut tx = self.begin().await?;
        let rows = sqlx::query(PURGE_SQL.as_str())
            .bind(micros_ceil(request.revoked_before))
            .bind(limit)
            .bind(micros_ceil(request.expired_before))
            .bind(limit)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            // Deleting a record is a lifecycle change: one that cannot be named in its event stays.
            let Some(event) = sweeper_event(AuditKind::Purged, row, request.now) else {
                continue;
            };
            if event.token_id.is_none() {
                continue;
            }
            let raw_id: Vec<u8> = sqlx::Row::try_get(row, "id").map_err(backend)?;
            // Labels explicitly too: a host pool may run without `foreign_keys`.
            for sql in [
                "DELETE FROM token_labels WHERE token_id = ?",
                "DELETE FROM tokens WHERE id = ?",
            ] {
                sqlx::query(sql)
                    .bind(raw_id.clone())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
            }
            events.push(event);
        }
        append_events(&mut tx, &events).await?;
        tx.commit().await.map_err(backend)?;
        Ok(events)
    }

    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        let receiver = self.inner.revocations.subscribe();
        let feed = stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(ids) => Some((RevocationNotice::Revoked(ids), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    Some((RevocationNotice::Interrupted, receiver))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Some(Box::pin(feed)))
    }
}

#[cfg(test)]
mod tests {
    //! The access paths use indexes: `EXPLAIN QUERY PLAN` of the store's own SQL.

    use token_core::{Cursor, ListFilter};

    use super::*;

    async fn store() -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        store
    }

    /// The plan's detail lines.
    async fn plan(store: &SqliteStore, sql: &str, args: Vec<Arg>) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(explain)), args)
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
        rows.iter()
            .map(|row| {
                sqlx::Row::try_get::<String, _>(row, "detail").unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    /// No line scans a table of the store (scanning a CTE's rows is fine: they are the matches).
    fn assert_indexed(name: &str, plan: &[String]) {
        let scans: Vec<&String> = plan
            .iter()
            .filter(|line| line.starts_with("SCAN"))
            .filter(|line| {
                !(line.starts_with("SCAN tree")
                    || line.starts_with("SCAN matched")
                    || line.starts_with("SCAN CONSTANT ROW"))
            })
            .collect();
        assert!(scans.is_empty(), "{name} scans a table: {plan:#?}");
        assert!(
            plan.iter()
                .any(|line| line.contains("USING INDEX") || line.contains("PRIMARY KEY")),
            "{name} uses no index: {plan:#?}"
        );
    }

    fn blob() -> Arg {
        Arg::Blob(vec![1; 16])
    }

    fn revoke_request(selector: RevokeSelector) -> RevokeRequest {
        RevokeRequest::new(selector, OffsetDateTime::UNIX_EPOCH, "test", Context::new())
    }

    /// Whether some line of `plan` searches with `index`.
    fn uses(plan: &[String], index: &str) -> bool {
        plan.iter()
            .any(|l| l.starts_with("SEARCH") && l.contains(&format!("USING INDEX {index} ")))
    }

    /// Whether some line of `plan` uses `index` (searching or walking it).
    fn uses_any(plan: &[String], index: &str) -> bool {
        plan.iter().any(|l| l.contains(&format!("INDEX {index}")))
    }

    #[tokio::test]
    async fn sweeps_and_audit_queries_use_indexes() {
        let store = store().await;
        let now = OffsetDateTime::UNIX_EPOCH;

        // mark_expired: one range of the partial expiry index, already in expiry order.
        let p = plan(
            &store,
            MARK_EXPIRED_SQL.as_str(),
            vec![Arg::Int(0), Arg::Int(10)],
        )
        .await;
        assert_indexed("mark_expired", &p);
        assert!(uses(&p, "tokens_expiry_unrecorded"), "mark_expired: {p:#?}");
        assert!(
            !p.iter().any(|l| l.contains("TEMP B-TREE")),
            "mark_expired sorts: {p:#?}"
        );

        // purge: the revoked and the expiry index, each a bounded range.
        let p = plan(
            &store,
            PURGE_SQL.as_str(),
            vec![
                Arg::Int(0),
                Arg::Int(10),
                Arg::Int(0),
                Arg::Int(10),
                Arg::Int(10),
            ],
        )
        .await;
        assert!(uses(&p, "tokens_revoked"), "purge by revocation: {p:#?}");
        assert!(uses(&p, "tokens_expires"), "purge by expiry: {p:#?}");
        assert!(
            !p.iter()
                .any(|l| l.starts_with("SCAN tokens") || l == "SCAN t"),
            "purge scans tokens: {p:#?}"
        );

        // Revoke unused (retention), bounded and unbounded.
        for (name, request) in [
            (
                "revoke unused",
                revoke_request(RevokeSelector::UnusedSince(now)),
            ),
            (
                "revoke unused, bounded",
                revoke_request(RevokeSelector::UnusedSince(now)).with_limit(10),
            ),
        ] {
            let (sql, args) = revoke_sql(&request).unwrap_or_else(|| panic!("{name}"));
            let p = plan(&store, &sql, args).await;
            assert_indexed(name, &p);
            assert!(uses(&p, "tokens_unused"), "{name}: {p:#?}");
        }
        // Bounded, the matches come in index order: no sort beyond the final result order that
        // every revocation has.
        let sorts = |p: &[String]| p.iter().filter(|l| l.contains("TEMP B-TREE")).count();
        let (sql, args) = revoke_sql(&revoke_request(RevokeSelector::UnusedSince(now)))
            .unwrap_or_else(|| panic!("unbounded"));
        let unbounded = plan(&store, &sql, args).await;
        let (sql, args) =
            revoke_sql(&revoke_request(RevokeSelector::UnusedSince(now)).with_limit(10))
                .unwrap_or_else(|| panic!("bounded"));
        let bounded = plan(&store, &sql, args).await;
        assert_eq!(
            sorts(&bounded),
            sorts(&unbounded),
            "a bounded unused revocation sorts its matches: {bounded:#?}"
        );

        // truncate_audit: walks the primary key from the oldest event and stops after `limit`.
        let p = plan(&store, TRUNCATE_SCAN_SQL, vec![Arg::Int(10)]).await;
        assert_eq!(
            p,
            vec!["SCAN audit_events".to_owned()],
            "truncate_audit: {p:#?}"
        );
        let p = plan(
            &store,
            "DELETE FROM audit_events WHERE seq <= ?",
            vec![Arg::Int(10)],
        )
        .await;
        assert!(
            p.iter()
                .any(|l| l.contains("INTEGER PRIMARY KEY (rowid<?)")),
            "truncate delete: {p:#?}"
        );

        // Audit queries: each filter is an index range in seq order (no sort), also after a seq.
        for (name, query, index) in [
            (
                "audit by subject",
                AuditQuery::new().subject("alice"),
                "audit_events_subject",
            ),
            (
                "audit by subject, next page",
                AuditQuery::new().subject("alice").after(42),
                "audit_events_subject",
            ),
            (
                "audit by actor",
                AuditQuery::new().actor("admin:1").after(42),
                "audit_events_actor",
            ),
            (
                "audit by kind",
                AuditQuery::new().kind(AuditKind::Revoked).after(42),
                "audit_events_kind",
            ),
            (
                "audit by token",
                AuditQuery::new()
                    .token(TokenId::from_bytes([1; 16]))
                    .after(42),
                "audit_events_token",
            ),
        ] {
            let (sql, args) = audit_query_sql(&query);
            let p = plan(&store, &sql, args).await;
            assert_indexed(name, &p);
            assert!(uses(&p, index), "{name}: {p:#?}");
            assert!(
                !p.iter().any(|l| l.contains("TEMP B-TREE")),
                "{name} sorts: {p:#?}"
            );
        }
        let (sql, args) = audit_query_sql(&AuditQuery::new().after(42));
        let p = plan(&store, &sql, args).await;
        assert_indexed("audit, next page", &p);
        assert!(
            p.iter()
                .any(|l| l.contains("INTEGER PRIMARY KEY (rowid>?)")),
            "{p:#?}"
        );
        // The stale-token report spans every state: it walks the listing order and filters.
        let (sql, args) = list_sql(&ListQuery::new(
            ListFilter::all().unused_since(now),
            now,
            None,
            10,
        ));
        let p = plan(&store, &sql, args).await;
        assert!(uses_any(&p, "tokens_created"), "stale-token report: {p:#?}");
        assert!(
            !p.iter().any(|l| l.contains("TEMP B-TREE")),
            "stale-token report sorts: {p:#?}"
        );

        let (sql, args) = audit_query_sql(&AuditQuery::new().between(now, now));
        let p = plan(&store, &sql, args).await;
        assert_indexed("audit by time", &p);
    }

    #[tokio::test]
    async fn access_paths_use_indexes() {
        let store = store().await;
        let now = OffsetDateTime::UNIX_EPOCH;
        let p = plan(&store, LOOKUP_SQL.as_str(), vec![blob()]).await;
        assert_indexed("lookup", &p);
        assert!(
            p.iter()
                .any(|l| l.contains("SEARCH t USING INDEX sqlite_autoindex_tokens_1 (id=?)")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("token_labels_key_value") || l.contains("PRIMARY KEY")),
            "labels of a lookup: {p:#?}"
        );

        for (name, selector) in [
            (
                "revoke by id",
                RevokeSelector::Token(TokenId::from_bytes([1; 16])),
            ),
            ("revoke by subject", RevokeSelector::Subject("alice".into())),
            (
                "revoke by family",
                RevokeSelector::Family(TokenId::from_bytes([1; 16])),
            ),
            (
                "revoke by label",
                RevokeSelector::Label {
                    key: "k".into(),
                    value: "v".into(),
                },
            ),
            ("revoke issued before", RevokeSelector::IssuedBefore(now)),
        ] {
            let (sql, args) =
                revoke_sql(&revoke_request(selector)).unwrap_or_else(|| panic!("{name}"));
            let p = plan(&store, &sql, args).await;
            assert_indexed(name, &p);
            assert!(
                p.iter().any(|l| l.contains("tokens_parent")),
                "{name}: the descendant walk must use the parent index: {p:#?}"
            );
        }
        let (sql, args) = revoke_sql(&revoke_request(RevokeSelector::Subject("alice".into())))
            .unwrap_or_else(|| panic!("subject"));
        let p = plan(&store, &sql, args).await;
        assert!(
            p.iter().any(|l| l.contains("tokens_subject (subject=?)")),
            "{p:#?}"
        );

        let list = |filter: ListFilter, after: Option<Cursor>| {
            list_sql(&ListQuery::new(filter, now, after, 10))
        };
        let cursor = Cursor::new(now, TokenId::from_bytes([1; 16]));
        for (name, (sql, args)) in [
            (
                "list by subject",
                list(ListFilter::all().subject("alice"), None),
            ),
            (
                "list by subject after a cursor",
                list(ListFilter::all().subject("alice"), Some(cursor)),
            ),
            (
                "list by label",
                list(ListFilter::all().label("k", "v"), None),
            ),
            (
                "list by family",
                list(ListFilter::all().family(TokenId::from_bytes([1; 16])), None),
            ),
            (
                "list all after a cursor",
                list(ListFilter::all(), Some(cursor)),
            ),
            (
                "list active of a subject",
                list(
                    ListFilter::all().subject("alice").state(TokenState::Active),
                    None,
                ),
            ),
        ] {
            let p = plan(&store, &sql, args).await;
            assert_indexed(name, &p);
        }
        let (sql, args) = list(ListFilter::all().subject("alice"), None);
        let p = plan(&store, &sql, args).await;
        assert!(
            p.iter().any(|l| l.contains("tokens_subject (subject=?)")),
            "{p:#?}"
        );

        let live_by_subject = format!("SELECT count(*) FROM tokens WHERE subject = ? AND {LIVE}");
        let p = plan(
            &store,
            &live_by_subject,
            vec![Arg::Text("a".into()), Arg::Int(0)],
        )
        .await;
        assert_indexed("live count by subject", &p);
        let live_by_key = format!("SELECT count(*) FROM tokens WHERE hash_key_id = ? AND {LIVE}");
        let p = plan(&store, &live_by_key, vec![Arg::Int(1), Arg::Int(0)]).await;
        assert_indexed("live count by key", &p);
        let audit =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE token_id = ? ORDER BY seq");
        let p = plan(&store, &audit, vec![blob()]).await;
        assert_indexed("audit of a token", &p);
        assert!(
            !p.iter().any(|l| l.contains("TEMP B-TREE")),
            "audit order needs a sort: {p:#?}"
        );
        let consume = "UPDATE tokens SET use_count = use_count + 1 WHERE id = ? \
                       AND (max_uses IS NULL OR use_count < max_uses)";
        let p = plan(&store, consume, vec![blob()]).await;
        assert_indexed("consume a use", &p);
    }

    #[test]
    fn state_conditions_follow_the_precedence() {
        let (active, n) = state_condition(TokenState::Active);
        assert_eq!(n, 3);
        assert_eq!(active.matches("NOT (").count(), 5);
        let (revoked, n) = state_condition(TokenState::Revoked);
        assert_eq!((revoked.as_str(), n), ("((t.revoked_at IS NOT NULL))", 0));
    }
}
