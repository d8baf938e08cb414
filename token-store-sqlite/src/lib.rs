//! # token-store-sqlite
//!
//! The embedded default [`TokenStore`]: one SQLite file (WAL mode) through sqlx, durable by
//! default, indexed for every access path the manager uses, and passing the whole
//! `token-testkit` conformance suite.
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
//! operation. Operations on a database that was never migrated fail with
//! [`StoreError::Backend`] whose source is [`NotMigrated`].
//!
//! Tables (schema version 1):
//! - `tokens`: one row per token. Ids are the 16 raw id bytes (`BLOB`, whose byte order is
//!   [`TokenId`]'s order), the keyed hash is 32 raw bytes, scopes are the space-separated scope
//!   string, timestamps and durations are `INTEGER` unix microseconds.
//! - `token_labels(token_id, key, value)`: labels, deleted with their token (`ON DELETE CASCADE`).
//! - `audit_events(seq, at, kind, token_id, fingerprint, subject, actor, client_ip, user_agent,
//!   request_id, reason, detail)`: the audit trail, `seq` strictly increasing
//!   (`AUTOINCREMENT`, never reused).
//!
//! ## Indexes
//! Every access path is indexed, so a lookup, a bulk revocation or a sweep costs in proportion to
//! the rows it touches, not to the table: the primary key on `tokens.id` (lookup, rotate,
//! consume a use), `tokens(subject)` (revoke/list by subject, live-token count),
//! `tokens(family_id)` (family revocation), `tokens(parent_id)` (the descendant walk every
//! revocation does), `tokens(created_at, id)` (listing order, keyset pagination, revoke issued
//! before), `tokens(expires_at)` and `tokens(revoked_at)` (sweeps and purges),
//! `tokens(hash_key_id)` (key retirement), `token_labels(key, value)` (by label) and
//! `audit_events(token_id, seq)` (a token's trail).
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
use token_core::store::{
    InsertOutcome, InsertToken, ListQuery, RevocationNotice, RevocationStream, RevokeRequest,
    RevokeSelector, RotateOutcome, RotateToken, StoreError, TokenStore, UsageUpdate, UseOutcome,
};
use token_core::{AuditEvent, AuditKind, AuditRecord, KeyId, TokenId, TokenRecord, TokenState};
use tokio::sync::broadcast;

use crate::codec::{
    AUDIT_COLUMNS, TOKEN_COLUMNS, audit_from_row, count_to_sql, duration_to_sql, id_bytes, micros,
    record_from_row, row_id,
};
use crate::error::{backend, is_unique_violation};

pub use crate::error::{NotMigrated, UnrepresentableValue};
pub use crate::migrate::{MIGRATIONS_TABLE, SCHEMA_VERSION};
pub use crate::options::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, SqliteStoreOptions, Synchronous,
};

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

async fn append_events(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    for event in events {
        sqlx::query(
            "INSERT INTO audit_events (at, kind, token_id, fingerprint, subject, actor, client_ip, \
             user_agent, request_id, reason, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(micros(event.at))
        .bind(event.kind.as_str())
        .bind(event.token_id.map(id_bytes))
        .bind(event.fingerprint.clone())
        .bind(event.subject.clone())
        .bind(event.actor.clone())
        .bind(event.client_ip.clone())
        .bind(event.user_agent.clone())
        .bind(event.request_id.clone())
        .bind(event.reason.clone())
        .bind(event.detail.clone())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    }
    Ok(())
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
fn revoke_sql(selector: &RevokeSelector) -> Option<(String, Vec<Arg>)> {
    let (matched, args) = match selector {
        RevokeSelector::Token(id) => (
            "SELECT id FROM tokens WHERE id = ?",
            vec![Arg::Blob(id_bytes(*id))],
        ),
        RevokeSelector::Subject(subject) => (
            "SELECT id FROM tokens WHERE subject = ?",
            vec![Arg::Text(subject.clone())],
        ),
        RevokeSelector::Family(id) => (
            "SELECT id FROM tokens WHERE family_id = (SELECT family_id FROM tokens WHERE id = ?)",
            vec![Arg::Blob(id_bytes(*id))],
        ),
        RevokeSelector::Label { key, value } => (
            "SELECT token_id FROM token_labels WHERE key = ? AND value = ?",
            vec![Arg::Text(key.clone()), Arg::Text(value.clone())],
        ),
        RevokeSelector::IssuedBefore(at) => (
            "SELECT id FROM tokens WHERE created_at < ?",
            vec![Arg::Int(micros(*at))],
        ),
        // Newer selectors this store does not know match nothing rather than everything.
        _ => return None,
    };
    let sql = format!(
        "WITH RECURSIVE matched(id) AS ({matched}), \
         tree(id) AS (SELECT id FROM matched UNION SELECT c.id FROM tokens c JOIN tree ON c.parent_id = tree.id) \
         SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id IN (SELECT id FROM tree) AND t.revoked_at IS NULL \
         ORDER BY t.created_at, t.id"
    );
    Some((sql, args))
}

/// The `Revoked` event for a row that cannot be decoded: the revocation still happens (revocation
/// must never be blocked by a damaged row), named by id and subject as
/// [`RevokeRequest::event_for`] would.
fn fallback_revoked_event(request: &RevokeRequest, id: TokenId, row: &SqliteRow) -> AuditEvent {
    use sqlx::Row;
    let subject: String = row.try_get("subject").unwrap_or_default();
    AuditEvent::new(AuditKind::Revoked, request.at)
        .with_token(id, subject)
        .with_context(&request.context)
        .with_reason(request.reason.clone())
}

#[async_trait]
impl TokenStore for SqliteStore {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn insert(&self, insert: InsertToken) -> Result<InsertOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let record = &insert.record;
        if exists(&mut tx, record.id).await? {
            rollback(tx).await?;
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        if let Some(parent) = record.parent_id {
            // Under the write lock: a concurrent family revocation either committed before (the
            // parent reads as revoked) or waits for this insert (and then revokes the child).
            let state = fetch_record(&mut tx, parent)
                .await?
                .map(|p| p.state_at(insert.now));
            if state != Some(TokenState::Active) {
                rollback(tx).await?;
                return Ok(InsertOutcome::ParentNotActive { state });
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

    async fn rotate(&self, rotation: RotateToken) -> Result<RotateOutcome, StoreError> {
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
        let successor = &rotation.successor;
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

    async fn revoke(&self, request: &RevokeRequest) -> Result<Vec<TokenId>, StoreError> {
        let Some((sql, args)) = revoke_sql(&request.selector) else {
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
                        events.push(fallback_revoked_event(request, id, row));
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
            let _ = self.inner.revocations.send(revoked.clone());
        }
        Ok(revoked)
    }

    async fn consume_use(
        &self,
        id: TokenId,
        now: OffsetDateTime,
    ) -> Result<UseOutcome, StoreError> {
        let pool = self.ready().await?;
        let now = micros(now);
        // One atomic conditional statement: concurrent callers can never count past max_uses.
        let counted: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET use_count = use_count + 1, \
             last_used_at = max(coalesce(last_used_at, ?), ?) \
             WHERE id = ? AND (max_uses IS NULL OR use_count < max_uses) \
             RETURNING use_count",
        )
        .bind(now)
        .bind(now)
        .bind(id_bytes(id))
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
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tokens WHERE id = ?")
            .bind(id_bytes(id))
            .fetch_optional(pool)
            .await
            .map_err(backend)?;
        Ok(if found.is_some() {
            UseOutcome::LimitReached
        } else {
            UseOutcome::NotFound
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

    async fn count_live_with_key(
        &self,
        key: KeyId,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
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

    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        append_events(&mut tx, &events).await?;
        tx.commit().await.map_err(backend)
    }

    async fn audit_for_token(&self, id: TokenId) -> Result<Vec<AuditRecord>, StoreError> {
        let pool = self.ready().await?;
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE token_id = ? ORDER BY seq");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_bytes(id))
            .fetch_all(pool)
            .await
            .map_err(backend)?;
        rows.iter().map(audit_from_row).collect()
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
            let (sql, args) = revoke_sql(&selector).unwrap_or_else(|| panic!("{name}"));
            let p = plan(&store, &sql, args).await;
            assert_indexed(name, &p);
            assert!(
                p.iter().any(|l| l.contains("tokens_parent")),
                "{name}: the descendant walk must use the parent index: {p:#?}"
            );
        }
        let (sql, args) = revoke_sql(&RevokeSelector::Subject("alice".into()))
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
