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
//! The sections below are the store's design notes: [connecting](#connecting), the
//! [concurrency model](#concurrency-model), the [audit hash chain](#audit-hash-chain), the
//! [revocation feed](#revocation-feed), [bad data](#bad-data), the [schema](#schema) and its
//! [retention](#retention) queries, and [migrations](#migrations). (They are also in the crate's
//! `docs/` folder.)
//!
//! [`TokenStore`]: token_core::TokenStore
#![doc = include_str!("../docs/design.md")]
#![doc = include_str!("../docs/schema.md")]
#![doc = include_str!("../docs/migrations.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod chain;
mod codec;
mod error;
mod feed;
mod manage;
mod migrate;
mod options;
mod records;
mod revoke;
mod schema;
mod statements;
mod store;
mod sweep;
mod usage;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::{PgPool, Postgres, Transaction};
use token_core::StoreError;
use tokio::sync::watch;

use crate::error::{STORE, backend_in};
use crate::statements::Sql;

pub use crate::migrate::{MIGRATIONS_TABLE, SCHEMA_VERSION};
pub use crate::options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_APPLICATION_NAME, DEFAULT_MAX_CONNECTIONS, DEFAULT_SCHEMA,
    PgStoreOptions,
};
pub use crate::schema::InvalidSchemaName;
pub use token_store_sql::UnrepresentableValue;

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

    /// A `READ COMMITTED` transaction.
    async fn begin(&self) -> Result<Tx, StoreError> {
        self.ready()
            .await?
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(backend_in)
    }
}

/// Drops `value` on the current Tokio runtime, or, outside any, inside a short-lived
/// current-thread one: sqlx's connections and listeners spawn their cleanup when dropped and
/// panic without a runtime. The cleanup tasks are abandoned with that runtime (the sockets close
/// as they are dropped).
pub(crate) fn drop_in_runtime<T>(value: T) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(value);
        return;
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let entered = runtime.enter();
            drop(value);
            drop(entered);
            runtime.shutdown_background();
        }
        // Without a runtime the cleanup would panic: leak the value rather than abort.
        Err(_) => std::mem::forget(value),
    }
}

/// Most times a transaction that failed on a deadlock or a serialization failure is run (see
/// [`PgStore::retrying`]).
const MAX_ATTEMPTS: u32 = 4;

impl PgStore {
    /// Runs `op` (one whole transaction) again when it failed on a deadlock the server broke or
    /// a serialization failure, up to [`MAX_ATTEMPTS`] times in all, with a short growing pause;
    /// then reports the last conflict. Used by every transaction that locks rows: inserts,
    /// rotations (which also move children), revocations, usage flushes and sweeps. Each is all
    /// or nothing, so running it again after a rolled-back attempt is safe.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(error) if attempt < MAX_ATTEMPTS && error::is_retryable(&error) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// `result`, or the schema's own error when a change of the schema (by a newer deployment,
    /// or a partial rollback) explains its failure: the cached version check is dropped and the
    /// version read again, so a schema migrated past this library after connecting is reported
    /// as [`StoreError::SchemaTooNew`] (or [`StoreError::NotMigrated`]) instead of a driver
    /// error, on the first statement it breaks.
    async fn explained<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(error) if error::schema_may_explain(&error) => {
                self.inner.schema_ok.store(false, Ordering::Release);
                match migrate::check(&self.inner.pool, &self.inner.quoted).await {
                    Ok(()) => {
                        self.inner.schema_ok.store(true, Ordering::Release);
                        Err(error)
                    }
                    // The schema is not this library's: that explains the failure.
                    Err(
                        schema @ (StoreError::SchemaTooNew { .. } | StoreError::NotMigrated { .. }),
                    ) => Err(schema),
                    // The re-check itself failed (the connection, say): keep the original error;
                    // the next call checks again.
                    Err(_) => Err(error),
                }
            }
            result => result,
        }
    }
}

/// A transaction of the store (see [`PgStore::begin`]).
type Tx = Transaction<'static, Postgres>;

/// Commits `tx`.
async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.map_err(backend_in)
}

/// Ends a transaction that changed nothing.
async fn rollback(tx: Tx) -> Result<(), StoreError> {
    tx.rollback().await.map_err(backend_in)
}

fn invalid_schema(error: InvalidSchemaName) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: Box::new(error),
    }
}
