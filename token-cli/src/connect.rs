//! Opening the store named by `--database` / `TOKEN_DATABASE_URL` and building a manager over
//! it with the keys from the environment.

use token_core::{HashKey, KeyId, Keyring, TokenManager, TokenStore};
use token_store_postgres::{PgStore, PgStoreOptions};
use token_store_sql::redacted_url;
use token_store_sqlite::{SqliteStore, SqliteStoreOptions};

use crate::cli::Global;
use crate::error::CliError;
use crate::keys;

/// Whether a command may create the database file (only `migrate` does: elsewhere a typo in a
/// SQLite path must not leave an empty database behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Create a missing SQLite file.
    IfMissing,
    /// Fail when it is missing.
    Never,
}

/// Whether a command hashes tokens, so needs `TOKEN_HASH_KEY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Issues, rotates or checks secrets: `TOKEN_HASH_KEY` is required.
    Required,
    /// Hashes nothing (list, revoke by selector, audit, sweep): no key needed.
    NotNeeded,
}

/// The database URL, or an error saying how to give one.
pub fn database_url(global: &Global) -> Result<&str, CliError> {
    global
        .database
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .ok_or_else(|| {
            CliError::Config(
                "no store given; pass --database sqlite://path/to/tokens.db (or postgres://user@host/db) or set TOKEN_DATABASE_URL"
                    .to_owned(),
            )
        })
}

/// Opens the store (without migrating it).
pub async fn open_store(global: &Global, create: Create) -> Result<Box<dyn Migrate>, CliError> {
    let url = database_url(global)?;
    let audit_keys = keys::audit_keyring()?;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut options = PgStoreOptions::new(url)
            .max_connections(4)
            .application_name("tokenctl");
        if let Some(schema) = &global.schema {
            options = options.schema(schema.clone());
        }
        let mut store = PgStore::connect_with(options).await?;
        if let Some(keys) = audit_keys {
            store = store.with_audit_keys(keys);
        }
        Ok(Box::new(store))
    } else if url.starts_with("sqlite:") {
        let options = SqliteStoreOptions::new(url)?.create_if_missing(create == Create::IfMissing);
        let mut store = SqliteStore::connect_with(options).await.map_err(|e| {
            CliError::Config(format!(
                "cannot open {}: {e}{}",
                redacted_url(url),
                if create == Create::Never {
                    " (run `tokenctl migrate` first to create it)"
                } else {
                    ""
                }
            ))
        })?;
        if let Some(keys) = audit_keys {
            store = store.with_audit_keys(keys);
        }
        Ok(Box::new(store))
    } else {
        Err(CliError::Config(format!(
            "unsupported database URL {}; use sqlite://path/to/tokens.db or postgres://user@host:5432/db",
            redacted_url(url)
        )))
    }
}

/// A store `tokenctl` can migrate and hand to a manager.
#[async_trait::async_trait]
pub trait Migrate: Send + Sync {
    /// Runs the store's migrations.
    async fn migrate(&self) -> Result<(), token_core::StoreError>;
    /// The store as a [`TokenStore`] for the manager.
    fn into_store(self: Box<Self>) -> Box<dyn TokenStore>;
}

#[async_trait::async_trait]
impl Migrate for PgStore {
    async fn migrate(&self) -> Result<(), token_core::StoreError> {
        PgStore::migrate(self).await
    }
    fn into_store(self: Box<Self>) -> Box<dyn TokenStore> {
        self
    }
}

#[async_trait::async_trait]
impl Migrate for SqliteStore {
    async fn migrate(&self) -> Result<(), token_core::StoreError> {
        SqliteStore::migrate(self).await
    }
    fn into_store(self: Box<Self>) -> Box<dyn TokenStore> {
        self
    }
}

/// A manager over the configured store, with the keys from the environment and `prefix` (the
/// `--prefix` / `TOKEN_PREFIX` one when `None`).
pub async fn manager(
    global: &Global,
    hashing: Hashing,
    prefix: Option<&str>,
) -> Result<TokenManager, CliError> {
    let keyring = match (keys::hash_keyring()?, hashing) {
        (Some(keyring), _) => keyring,
        (None, Hashing::Required) => {
            return Err(CliError::Config(format!(
                "{} is not set; it holds the hash key the tokens were issued under (64 hex characters, `tokenctl keygen` makes one)",
                keys::HASH_KEY_VAR
            )));
        }
        // Nothing will be hashed: a throwaway key satisfies the builder and is never used.
        (None, Hashing::NotNeeded) => Keyring::new(
            HashKey::generate(KeyId::new(u32::MAX)).map_err(|e| CliError::Config(e.to_string()))?,
        ),
    };
    let store = open_store(global, Create::Never).await?.into_store();
    let mut builder = TokenManager::builder(store, keyring);
    if let Some(prefix) = prefix.or(global.prefix.as_deref()) {
        builder = builder
            .prefix(prefix)
            .map_err(|e| CliError::Config(format!("--prefix / TOKEN_PREFIX: {e}")))?;
    }
    if let Some(keys) = keys::audit_keyring()? {
        builder = builder.audit_keys(keys);
    }
    builder
        .build()
        .map_err(|e| CliError::Config(format!("cannot configure the token manager: {e}")))
}
