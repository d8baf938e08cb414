//! Connection options for a store that builds its own pool.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use token_core::StoreError;

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
            Self::Url(url) => f.debug_tuple("Url").field(&redact_url(url)).finish(),
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

/// What a hidden secret is shown as.
const HIDDEN: &str = "***";

/// `url` for a log or a `Debug`: the password of the user info and the value of any query
/// parameter whose name contains `password` become `***`; the rest is kept. When the user info
/// cannot be told apart with certainty (a `:` then an `@` after the authority, a port that is not
/// a number: signs of an unencoded `/`, `?` or `#` in a password), everything after the scheme is
/// hidden.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // No authority (`postgres:`, `sqlite:tokens.db`): only the query can hold a password,
        // unless the string is not a URL at all (`user:password@host`).
        return if url.contains('@') {
            hidden(url.split_once(':').map(|(scheme, _)| scheme), ":")
        } else {
            redact_query(url)
        };
    };
    if !is_scheme(scheme) {
        return HIDDEN.to_owned();
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (user_info, host) = match authority.rsplit_once('@') {
        Some((user_info, host)) => (Some(user_info), host),
        None => (None, authority),
    };
    let after_ipv6 = host.rsplit_once(']').map_or(host, |(_, after)| after);
    let bad_port = after_ipv6
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.bytes().all(|b| b.is_ascii_digit()));
    // With no `@` in the authority, an `@` after it that follows a `:` may end a password that
    // holds a `/`, `?` or `#`.
    let ambiguous = user_info.is_none()
        && rest
            .rsplit_once('@')
            .is_some_and(|(before, _)| before.contains(':'));
    if bad_port || ambiguous {
        return hidden(Some(scheme), "://");
    }
    let mut out = format!("{scheme}://");
    if let Some(user_info) = user_info {
        match user_info.split_once(':') {
            Some((user, _)) => out.push_str(&format!("{user}:{HIDDEN}@")),
            None => out.push_str(&format!("{user_info}@")),
        }
    }
    out.push_str(host);
    out.push_str(&redact_query(tail));
    out
}

/// `scheme` + `separator` + `***`, or `***` alone when `scheme` is not one.
fn hidden(scheme: Option<&str>, separator: &str) -> String {
    match scheme {
        Some(scheme) if is_scheme(scheme) => format!("{scheme}{separator}{HIDDEN}"),
        _ => HIDDEN.to_owned(),
    }
}

/// RFC 3986 `scheme`: a letter, then letters, digits, `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// `text` (a path, query and fragment) with the value of every query parameter whose name,
/// percent-decoded and in any case, contains `password` replaced by `***`.
fn redact_query(text: &str) -> String {
    let Some((before, after)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if names_a_password(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}{fragment}", pairs.join("&"))
}

fn names_a_password(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|hex| byte == b'%' && hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(escaped) => {
                decoded.push(escaped);
                i += 3;
            }
            None => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded)
        .to_ascii_lowercase()
        .contains("password")
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

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_the_user_info_password_only() {
        for (url, shown) in [
            (
                "postgres://app:pw@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            (
                "postgres://app:p%40w@db/x?a=1#f",
                "postgres://app:***@db/x?a=1#f",
            ),
            ("postgres://a@b:pw@db/x", "postgres://a@b:***@db/x"),
            (
                "postgres://:pw@[::1]:5432/x",
                "postgres://:***@[::1]:5432/x",
            ),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("postgres://db", "postgres://db"),
            ("sqlite://dir/tokens.db", "sqlite://dir/tokens.db"),
            ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn redacts_password_parameters() {
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=pw&sslpassword=k&pass%77ord=q#f"),
            "postgres://db/x?user=a&password=***&sslpassword=***&pass%77ord=***#f"
        );
    }

    #[test]
    fn hides_all_but_the_scheme_when_the_user_info_is_ambiguous() {
        for (url, shown) in [
            ("postgres://app:p/w@db/x", "postgres://***"),
            ("postgres://app:1/pw@db/x", "postgres://***"),
            ("postgres://app:p?w@db/x", "postgres://***"),
            ("postgres://app:pw", "postgres://***"),
            ("app:pw@db", "app:***"),
            ("a b:pw@db://x", "***"),
            ("@:pw@", "***"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
