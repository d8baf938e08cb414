//! [`RedisBackend`]: the buckets in Redis, shared by every instance that uses the same server.
//!
//! One check is one round trip: a Lua script (`gcra.lua`, sent once and then run by its SHA1
//! with `EVALSHA`) reads every bucket of the check, decides all or nothing with the server's
//! clock (`TIME`), and writes the new TATs with a TTL of the time until each bucket is full
//! again. Times are microseconds there (Lua numbers are doubles, exact to 2^53), with the
//! emission interval rounded up to a whole microsecond: a limit faster than one unit per
//! microsecond (over a million per second) keeps its burst but refills at one unit per
//! microsecond.
//!
//! Key layout, under a prefix (default `tokens:rl:`):
//!
//! | bucket | key |
//! |---|---|
//! | a token's own limit | `{prefix}t:{token_id}:{limit_name}` |
//! | a subject limit | `{prefix}s:{hex BLAKE3 of the subject}:{limit_name}` |
//!
//! The subject is hashed so that subjects (often personal data: user ids, e-mail addresses)
//! never appear in key names, `MONITOR` output or `SCAN`s. The hash is unkeyed, so it
//! pseudonymizes rather than anonymizes: whoever can guess a subject can compute its key.
//!
//! One server (or a primary with its replicas) holds all keys: Redis Cluster is not supported,
//! since a check's keys would span hash slots.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use token_core::{RateLimits, TokenId};

use crate::error::{ConnectError, redact_url, scrub, url_secrets};
use crate::gcra::{Denial, Rate, Standing};

const SCRIPT: &str = include_str!("gcra.lua");

/// How [`RedisBackend`] connects and checks.
///
/// ```
/// use std::time::Duration;
/// use token_ratelimit::RedisOptions;
///
/// let options = RedisOptions::default()
///     .key_prefix("acme:rl:")
///     .check_timeout(Duration::from_millis(20));
/// assert_eq!(options.prefix(), "acme:rl:");
/// assert_eq!(options.timeout(), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    prefix: String,
    check_timeout: Duration,
    connect_timeout: Duration,
    retry_interval: Duration,
}

impl Default for RedisOptions {
    /// Prefix `tokens:rl:`, check timeout 50 ms, connect timeout 2 s, retry interval 1 s.
    fn default() -> Self {
        Self {
            prefix: "tokens:rl:".to_owned(),
            check_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_secs(1),
        }
    }
}

impl RedisOptions {
    /// The prefix of every key (default `tokens:rl:`): give each application (or test) sharing
    /// a server its own.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a check waits for Redis before it counts as unavailable (default 50 ms), so an
    /// outage never stalls requests.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.check_timeout = timeout;
        self
    }

    /// How long [`RedisBackend::connect`] and each reconnection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// After a failed check, how long checks skip Redis (answering by the outage policy at
    /// once) before one tries it again (default 1 s). During an outage a check then costs a
    /// timeout at most once per interval instead of every time. `Duration::ZERO` tries every
    /// check.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The check timeout.
    pub fn timeout(&self) -> Duration {
        self.check_timeout
    }
}

/// A connection to the Redis server that holds the buckets. Cheap to clone (clones share the
/// connection). It reconnects by itself after a failure.
///
/// Debug output and errors show the URL with its password redacted.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    script: redis::Script,
    options: RedisOptions,
    /// The URL as shown: the password redacted.
    url: String,
    /// The URL's secrets, removed from any driver message before it is shown.
    secrets: Vec<String>,
    health: Health,
}

/// Why a check got no answer from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// No answer within the check timeout.
    Timeout(Duration),
    /// The driver or the server failed (message scrubbed of secrets).
    Failed(String),
    /// A recent check failed; this one did not try (see `retry_interval`).
    Skipped,
}

impl Unavailable {
    /// The metric label.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Unavailable::Timeout(_) => "timeout",
            Unavailable::Failed(_) => "error",
            Unavailable::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Timeout(after) => write!(f, "no answer within {after:?}"),
            Unavailable::Failed(reason) => write!(f, "{reason}"),
            Unavailable::Skipped => write!(f, "Redis failed recently; not retried yet"),
        }
    }
}

/// Redis's answer to one check, in microseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) standings: Vec<Standing>,
    pub(crate) denied: Denial,
}

impl RedisBackend {
    /// Connects to `url` (`redis://[user[:password]@]host[:port][/db]`) with the default
    /// [`RedisOptions`]. Fails fast, with the reason, if the server cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, ConnectError> {
        let shown = redact_url(url);
        let secrets = url_secrets(url);
        let client = redis::Client::open(url).map_err(|e| ConnectError::InvalidUrl {
            url: shown.clone(),
            reason: scrub(&e.to_string(), &secrets),
        })?;
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: shown.clone(),
            reason: scrub(&reason, &secrets),
        };
        let config = ConnectionManagerConfig::new()
            // Reconnect quickly and briefly: checks time out on their own, and the next failed
            // check starts another reconnection.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100))
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.check_timeout));
        let script = redis::Script::new(SCRIPT);
        let connect = async {
            let mut connection = ConnectionManager::new_with_config(client, config).await?;
            // Loaded now, so the first check is already an EVALSHA.
            script.load_async(&mut connection).await?;
            Ok::<_, redis::RedisError>(connection)
        };
        let connection = tokio::time::timeout(options.connect_timeout, connect)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", options.connect_timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection,
                script,
                options,
                url: shown,
                secrets,
                health: Health::new(),
            }),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// The key of `token`'s own limit `name`.
    pub fn token_key(&self, token: TokenId, name: &str) -> String {
        format!("{}t:{token}:{name}", self.inner.options.prefix)
    }

    /// The key of the subject limit `name` of `subject`.
    pub fn subject_key(&self, subject: &str, name: &str) -> String {
        let hash = blake3::hash(subject.as_bytes());
        format!("{}s:{}:{name}", self.inner.options.prefix, hash.to_hex())
    }

    /// Runs one check: `token`'s `limits` and the subject's `subject_limits`, in this order.
    pub(crate) async fn check(
        &self,
        subject: &str,
        token: TokenId,
        limits: &RateLimits,
        subject_limits: &RateLimits,
        cost: u32,
    ) -> Result<Answer, Unavailable> {
        let inner = &*self.inner;
        if !inner.health.should_try(inner.options.retry_interval) {
            return Err(Unavailable::Skipped);
        }
        let mut invocation = inner.script.prepare_invoke();
        invocation.arg(cost);
        let mut add = |key: String, rate: Rate| {
            invocation
                .key(key)
                .arg(rate.interval())
                .arg(rate.capacity());
        };
        for limit in limits {
            add(self.token_key(token, limit.name()), Rate::micros(limit));
        }
        if !subject_limits.is_empty() {
            let hash = blake3::hash(subject.as_bytes()).to_hex();
            for limit in subject_limits {
                let key = format!("{}s:{hash}:{}", inner.options.prefix, limit.name());
                add(key, Rate::micros(limit));
            }
        }
        let mut connection = inner.connection.clone();
        let reply = tokio::time::timeout(
            inner.options.check_timeout,
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        let count = limits.len() + subject_limits.len();
        let result = match reply {
            Err(_) => Err(Unavailable::Timeout(inner.options.check_timeout)),
            Ok(Err(e)) => Err(Unavailable::Failed(scrub(&e.to_string(), &inner.secrets))),
            Ok(Ok(reply)) => parse(&reply, count, limits.iter().chain(subject_limits)),
        };
        match &result {
            Ok(_) => {
                inner.health.succeeded(&inner.url);
            }
            Err(why) => {
                inner
                    .health
                    .failed(&inner.url, why, inner.options.retry_interval);
            }
        }
        result
    }
}

fn parse<'a>(
    reply: &[i64],
    count: usize,
    limits: impl Iterator<Item = &'a token_core::RateLimit>,
) -> Result<Answer, Unavailable> {
    if reply.len() != 2 + 2 * count {
        return Err(Unavailable::Failed(format!(
            "the rate-limit script answered {} values, expected {}",
            reply.len(),
            2 + 2 * count
        )));
    }
    let micros = |v: i64| u64::try_from(v).unwrap_or(0);
    // Anything but 0 (allowed) or a limit's 1-based index is not an answer: fail, so the
    // outage policy applies, rather than allow.
    let denied = match usize::try_from(reply[0]) {
        Ok(0) => None,
        Ok(i) if i <= count => Some((i - 1, micros(reply[1]))),
        _ => {
            return Err(Unavailable::Failed(format!(
                "the rate-limit script named limit {} of {count}",
                reply[0]
            )));
        }
    };
    let standings = reply[2..]
        .chunks_exact(2)
        .zip(limits)
        .map(|(pair, limit)| Standing {
            remaining: u32::try_from(pair[0].max(0))
                .unwrap_or(u32::MAX)
                .min(limit.limit()),
            reset_after: micros(pair[1]),
        })
        .collect();
    Ok(Answer { standings, denied })
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("url", &self.inner.url)
            .field("options", &self.inner.options)
            .field(
                "available",
                &!self.inner.health.down.load(Ordering::Relaxed),
            )
            .finish()
    }
}

/// Whether Redis is answering: logs an outage once when it starts and once when it ends, and
/// spaces out retries during it.
#[derive(Debug)]
struct Health {
    down: AtomicBool,
    /// Nanoseconds after `since` before which checks skip Redis.
    retry_at: AtomicU64,
    since: Instant,
}

impl Health {
    fn new() -> Self {
        Self {
            down: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            since: Instant::now(),
        }
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn should_try(&self, interval: Duration) -> bool {
        !self.down.load(Ordering::Relaxed)
            || interval.is_zero()
            || self.elapsed() >= self.retry_at.load(Ordering::Relaxed)
    }

    /// Records a failure; `true` when it starts an outage (and was logged).
    fn failed(&self, url: &str, why: &Unavailable, retry_interval: Duration) -> bool {
        let interval = u64::try_from(retry_interval.as_nanos()).unwrap_or(u64::MAX);
        self.retry_at
            .store(self.elapsed().saturating_add(interval), Ordering::Relaxed);
        let first = !self.down.swap(true, Ordering::AcqRel);
        if first {
            tracing::warn!(
                redis = url,
                reason = %why,
                "rate-limit Redis unavailable; checks follow the outage policy until it answers again"
            );
        }
        first
    }

    /// Records a success; `true` when it ends an outage (and was logged).
    fn succeeded(&self, url: &str) -> bool {
        let recovered =
            self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::AcqRel);
        if recovered {
            tracing::info!(
                redis = url,
                "rate-limit Redis recovered; checks are shared again"
            );
        }
        recovered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_logged_once_and_its_end_once() {
        const HOUR: Duration = Duration::from_secs(3600);
        let health = Health::new();
        let why = Unavailable::Timeout(Duration::from_millis(50));
        assert!(!health.succeeded("redis://x"), "no outage yet");
        assert!(
            health.failed("redis://x", &why, HOUR),
            "the first failure starts it"
        );
        assert!(
            !health.failed("redis://x", &why, HOUR),
            "later ones do not log"
        );
        assert!(
            !health.should_try(Duration::from_secs(3600)),
            "retries spaced"
        );
        assert!(health.should_try(Duration::ZERO));
        assert!(health.succeeded("redis://x"), "recovered");
        assert!(!health.succeeded("redis://x"), "once");
        assert!(health.should_try(Duration::from_secs(3600)));
        assert!(
            health.failed("redis://x", &why, HOUR),
            "re-armed: a new outage logs again"
        );
    }

    #[test]
    fn replies_are_checked_before_they_are_believed() {
        let limits = [token_core::RateLimit::per_minute("requests", 5).unwrap()];
        let ok = parse(&[0, 0, 4, 12_000_000], 1, limits.iter()).unwrap();
        assert_eq!(ok.denied, None);
        assert_eq!(ok.standings[0].remaining, 4);
        let denied = parse(&[1, 12_000_000, 0, 60_000_000], 1, limits.iter()).unwrap();
        assert_eq!(denied.denied, Some((0, 12_000_000)));
        assert!(parse(&[0, 0], 1, limits.iter()).is_err(), "too short");
        assert!(
            parse(&[2, 5, 0, 0], 1, limits.iter()).is_err(),
            "no such limit"
        );
        assert!(
            parse(&[-1, 5, 0, 0], 1, limits.iter()).is_err(),
            "a negative index is no answer, not an allowance"
        );
    }
}
