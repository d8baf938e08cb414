//! Connection options for a store that builds its own pool.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use token_core::StoreError;
use token_store_sql::redacted_url;

use crate::error::backend;

/// The schema used when none is configured.
pub const DEFAULT_SCHEMA: &str = "token_store";
/// Default pool size.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default time to wait for a pooled connection (or to open one) before an operation fails with
/// [`StoreError::Backend`]. Short, so validation fails closed quickly while the server is down.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `application_name` of the store's connections (visible in `pg_stat_activity`); the
/// revocation listener uses this name followed by `/feed`.
pub const DEFAULT_APPLICATION_NAME: &str = "token-store-postgres";

#[derive(Clone)]
enum Target {
    Url(String),
    Options(Box<PgConnectOptions>),
}

/// Redacted: sqlx's own `Debug` of [`PgConnectOptions`] prints the password (and an inline client
/// key), so only the fields that locate the server are shown.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(url) => f.debug_tuple("Url").field(&redacted_url(url)).finish(),
            Self::Options(options) => f
                .debug_struct("ConnectOptions")
                .field("host", &options.get_host())
                .field("port", &options.get_port())
                .field("socket", &options.get_socket())
                .field("username", &options.get_username())
                .field("database", &options.get_database())
                .field("ssl_mode", &options.get_ssl_mode())
                .finish_non_exhaustive(),
        }
    }
}

/// How [`PgStore::connect_with`](crate::PgStore::connect_with) builds its pool.
///
/// `Debug` never shows a password: in a URL it is replaced by `***` (as is a `password` query
/// parameter); of [`PgConnectOptions`] only the host, port, socket, user, database and TLS mode are
/// shown.
///
/// ```
/// use std::time::Duration;
/// use token_store_postgres::PgStoreOptions;
///
/// let options = PgStoreOptions::new("postgres://app:hunter2@db.internal/app")
///     .schema("tokens")
///     .max_connections(16)
///     .acquire_timeout(Duration::from_secs(2));
/// assert_eq!(options.get_schema(), "tokens");
/// let debug = format!("{options:?}");
/// assert!(debug.contains("postgres://app:***@db.internal/app"));
/// assert!(!debug.contains("hunter2"));
/// ```
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    target: Target,
    schema: String,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    application_name: String,
    lazy: bool,
}

impl PgStoreOptions {
    /// Options for `url` (`postgres://user:password@host:port/database?sslmode=...`). The URL is
    /// parsed when connecting; a malformed one fails there with [`StoreError::Backend`].
    pub fn new(url: &str) -> Self {
        Self::with_target(Target::Url(url.to_owned()))
    }

    /// Options from sqlx connect options the host already built (TLS, socket, credentials).
    /// Their `application_name` is replaced by [`application_name`](Self::application_name).
    pub fn from_connect_options(connect: PgConnectOptions) -> Self {
        Self::with_target(Target::Options(Box::new(connect)))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            schema: DEFAULT_SCHEMA.to_owned(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_connections: 0,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            application_name: DEFAULT_APPLICATION_NAME.to_owned(),
            lazy: false,
        }
    }

    /// The schema holding the store's tables (default [`DEFAULT_SCHEMA`]). It must match
    /// `[a-z_][a-z0-9_]{0,62}` and not start with `pg_`; anything else is refused when
    /// connecting ([`InvalidSchemaName`](crate::InvalidSchemaName)).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections in the pool (default [`DEFAULT_MAX_CONNECTIONS`]; at least 1).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Connections kept open even when idle (default 0).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Longest wait for a connection (default [`DEFAULT_ACQUIRE_TIMEOUT`]).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// The `application_name` of the store's connections (default
    /// [`DEFAULT_APPLICATION_NAME`]).
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// When `true`, connecting does not open a connection (nor fail when the server is down);
    /// connections open on first use. Default `false`: connecting proves the server is reachable.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.lazy = lazy;
        self
    }

    /// The configured schema name (not yet validated).
    pub fn get_schema(&self) -> &str {
        &self.schema
    }

    /// Whether connecting is lazy.
    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    /// The sqlx connect options these options describe.
    pub fn connect_options(&self) -> Result<PgConnectOptions, StoreError> {
        let options = match &self.target {
            Target::Url(url) => PgConnectOptions::from_str(url).map_err(backend)?,
            Target::Options(options) => (**options).clone(),
        };
        Ok(options.application_name(&self.application_name))
    }

    /// The pool options the store uses: the sizes and timeout above, and no ping before each
    /// acquire (`test_before_acquire(false)`: it costs 18–27 % per query; a dead connection
    /// instead fails one operation with a typed error and is discarded).
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections.min(self.max_connections))
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
    }
}
