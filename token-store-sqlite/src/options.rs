//! Connection options: [`SqliteStoreOptions`] and [`Synchronous`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use token_core::StoreError;

use crate::error::backend;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`), in WAL mode.
///
/// | setting | a commit that returned survives | cost |
/// |---|---|---|
/// | [`Full`](Self::Full) (default) | process crash **and** power loss / OS crash | one `fsync` of the WAL per commit |
/// | [`Normal`](Self::Normal) | process crash; on power loss the last commits may be lost (never corruption) | `fsync` only at checkpoints |
/// | [`Extra`](Self::Extra) | as `Full`, also syncing the directory after a WAL reset | slightly more than `Full` |
///
/// `Full` is the default because a revocation that was reported done must not come back to life
/// after a power cut. Choose `Normal` only when every revocation is also recorded elsewhere (or
/// can be replayed), in exchange for lower write latency. `OFF` is not offered: it can corrupt the
/// database on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `PRAGMA synchronous = FULL` (2): durable across power loss.
    #[default]
    Full,
    /// `PRAGMA synchronous = NORMAL` (1): durable across process crashes; power loss may drop the
    /// most recent commits, without corrupting the file.
    Normal,
    /// `PRAGMA synchronous = EXTRA` (3): `Full` plus a directory sync.
    Extra,
}

impl Synchronous {
    fn to_sqlx(self) -> SqliteSynchronous {
        match self {
            Self::Full => SqliteSynchronous::Full,
            Self::Normal => SqliteSynchronous::Normal,
            Self::Extra => SqliteSynchronous::Extra,
        }
    }
}

/// Default busy timeout: how long a writer waits for the write lock before giving up with
/// [`StoreError::Conflict`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Default number of pooled connections for a file database. WAL lets readers run in parallel with
/// the single writer; writers queue on the write lock.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// Options for [`SqliteStore::connect_with`](crate::SqliteStore::connect_with).
///
/// Whatever the underlying [`SqliteConnectOptions`] say, the store always applies WAL journaling,
/// foreign keys, the busy timeout and the [`Synchronous`] setting chosen here, because its
/// guarantees depend on them.
///
/// `Debug` shows the file name and the store's settings but none of the connect options' pragmas,
/// which may hold a secret (SQLCipher's `key`).
///
/// ```
/// use std::time::Duration;
/// use token_store_sqlite::{SqliteStoreOptions, Synchronous};
///
/// let options = SqliteStoreOptions::new("sqlite://tokens.db")?
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(10))
///     .max_connections(4);
/// assert!(format!("{options:?}").contains("tokens.db"));
/// # Ok::<(), token_core::StoreError>(())
/// ```
#[derive(Clone)]
pub struct SqliteStoreOptions {
    connect: SqliteConnectOptions,
    synchronous: Synchronous,
    busy_timeout: Duration,
    max_connections: u32,
    acquire_timeout: Duration,
    in_memory: bool,
}

/// Redacted: sqlx's own `Debug` of [`SqliteConnectOptions`] prints every pragma's value.
impl fmt::Debug for SqliteStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStoreOptions")
            .field("filename", &self.connect.get_filename())
            .field("in_memory", &self.in_memory)
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

impl SqliteStoreOptions {
    /// Options from a URL such as `sqlite://path/tokens.db` or `sqlite::memory:`. The file is
    /// created if missing.
    ///
    /// An in-memory database lives as long as its one connection: the store keeps exactly one,
    /// never closed, so the data lasts as long as the store.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Ok(Self::build(connect, in_memory))
    }

    /// Options from connect options the host built. `create_if_missing` is left as the host set
    /// it; WAL, foreign keys, the busy timeout and [`Synchronous`] are applied by the store.
    pub fn from_connect_options(connect: SqliteConnectOptions) -> Self {
        let name = connect.get_filename().to_string_lossy();
        let in_memory = name == ":memory:" || name.starts_with("file:sqlx-in-memory-");
        Self::build(connect, in_memory)
    }

    fn build(connect: SqliteConnectOptions, in_memory: bool) -> Self {
        Self {
            connect,
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: Duration::from_secs(30),
            in_memory,
        }
    }

    /// Durability of commits (default [`Synchronous::Full`]); see [`Synchronous`] for the
    /// trade-off.
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How long a connection waits for a lock held by another connection or process before the
    /// operation fails with [`StoreError::Conflict`] (default 5 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Pool size (default 8; at least 1). Ignored for in-memory databases, which use exactly one
    /// connection.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long an operation waits for a free pooled connection (default 30 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether the database file is created when missing (default `true` for [`new`](Self::new)).
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.connect = self.connect.create_if_missing(create);
        self
    }

    /// The chosen durability setting.
    pub fn get_synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// The connect options with the store's settings applied, as every pooled connection uses
    /// them.
    pub fn connect_options(&self) -> SqliteConnectOptions {
        self.connect
            .clone()
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(self.busy_timeout)
            .synchronous(self.synchronous.to_sqlx())
    }

    /// The pool options the store uses: no ping before each acquire (it costs 18–27 % per query
    /// and SQLite connections do not go stale), and for in-memory databases a single connection
    /// that is never closed.
    pub(crate) fn pool_options(&self) -> SqlitePoolOptions {
        let pool = SqlitePoolOptions::new()
            .test_before_acquire(false)
            .acquire_timeout(self.acquire_timeout);
        if self.in_memory {
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(self.max_connections)
        }
    }
}
