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
//! The sections below are the store's design notes: [connecting](#connecting) and
//! [durability](#durability), [concurrency](#concurrency-and-atomicity), the
//! [audit hash chain](#audit-hash-chain), the [revocation feed](#revocation-feed),
//! [bad data](#bad-data), the [schema](#schema) with its [indexes](#indexes) and
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
#[cfg(test)]
mod query_plans;
mod records;
mod revoke;
mod statements;
mod store;
mod sweep;
mod usage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};
use token_core::{AuditKeyring, StoreError};

use crate::error::backend;

pub use crate::migrate::{MIGRATIONS_TABLE, SCHEMA_VERSION};
pub use crate::options::{
    DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS, SqliteStoreOptions, Synchronous,
};
pub use token_store_sql::UnrepresentableValue;

/// The SQLite store. Cheap to clone: clones share the pool and the revocation feed.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: SqlitePool,
    revocations: feed::Sender,
    /// Set once the schema was seen at [`SCHEMA_VERSION`]; until then every operation checks.
    schema_ok: AtomicBool,
    /// The audit keys appends chain with ([`SqliteStore::with_audit_keys`]).
    audit_keys: RwLock<Option<Arc<AuditKeyring>>>,
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
        Self {
            inner: Arc::new(Inner {
                pool,
                revocations: feed::channel(),
                schema_ok: AtomicBool::new(false),
                audit_keys: RwLock::new(None),
            }),
        }
    }

    /// Chains every audit event appended from now on with the current key of `keys`: a keyed
    /// audit chain ([`token_core::audit_key`]), each event's `chain_key_id` naming the key. Give
    /// the manager the same keyring
    /// ([`ManagerBuilder::audit_keys`](token_core::ManagerBuilder::audit_keys)) to verify it.
    /// Clones share the setting; set it before the store is used, in every process that writes.
    ///
    /// **Without audit keys (the default) the chain is unkeyed**: it detects accidental or partial
    /// tampering, not a writer who rewrites events and recomputes the hashes. The store cannot
    /// invent a key that lives outside the database file, so keying is the host's choice: load
    /// the key from a secret manager, never from this database.
    ///
    /// ```
    /// use token_core::{AuditKey, AuditKeyring, KeyId};
    /// use token_store_sqlite::SqliteStore;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [7; 32])); // from your secrets
    /// let store = SqliteStore::connect("sqlite::memory:").await?.with_audit_keys(keys);
    /// store.migrate().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_audit_keys(self, keys: AuditKeyring) -> Self {
        *self
            .inner
            .audit_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
        self
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

    /// `result`, or the schema's own error when a change of the schema by another process
    /// explains its failure: the cached version check is dropped and the version read again, so
    /// a file migrated past this library after it connected is reported as
    /// [`StoreError::SchemaTooNew`] on the first statement the change breaks.
    async fn explained<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Err(error) if error::schema_may_explain(&error) => {
                self.inner.schema_ok.store(false, Ordering::Release);
                match migrate::check(&self.inner.pool).await {
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

    /// A write transaction holding SQLite's write lock from its first statement.
    async fn begin(&self) -> Result<Tx, StoreError> {
        let tx = self
            .ready()
            .await?
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let audit_keys = self
            .inner
            .audit_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(Tx { tx, audit_keys })
    }
}

/// A write transaction, holding SQLite's write lock from its first statement, with the audit
/// keys its appends chain with (read once, so one change's events share a key). Dereferences to
/// the connection, like sqlx's transaction.
struct Tx {
    tx: Transaction<'static, Sqlite>,
    audit_keys: Option<Arc<AuditKeyring>>,
}

impl std::ops::Deref for Tx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// Commits `tx`.
async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.tx.commit().await.map_err(backend)
}

/// Ends a transaction that changed nothing.
async fn rollback(tx: Tx) -> Result<(), StoreError> {
    tx.tx.rollback().await.map_err(backend)
}
