//! Rate limits for API tokens: each token's own [`RateLimit`](token_core::RateLimit)s and limits
//! shared by all tokens of a subject, enforced with GCRA, in process or shared across instances
//! through Redis.
//!
//! # GCRA
//!
//! A limit `requests=100/60s` allows a burst of 100 at once, after which capacity comes back
//! steadily: one unit every `60 s / 100 = 600 ms` (the emission interval `T`). Each bucket
//! stores one number, its TAT (theoretical arrival time: when the bucket will be full again);
//! a request of cost `n` moves it `n × T` ahead of `max(TAT, now)` and is allowed while the TAT
//! stays within a window of now. An idle bucket refills to the burst and no further. Denied
//! requests report `retry_after`, the exact wait until the same request would pass; every
//! check reports, per limit, the units `remaining` and `reset_after`, the time until full.
//! Over any interval of length `L`, at most `limit + L / T` units pass.
//!
//! A cost above a limit could never pass and is an error
//! ([`CheckError::CostExceedsLimit`]), not a denial. Cost 0 only reports.
//!
//! # Token and subject buckets
//!
//! [`RateLimiter::check`] spends a request's cost from every limit of the token (the token's
//! own buckets) and every [subject limit](RateLimiterBuilder::subject_limits) (buckets shared
//! by all tokens of that subject), all or nothing: if any bucket denies, none is charged, and
//! the decision names the limit that denies longest.
//!
//! Subject limits are the same for every subject, or per subject with
//! [`subject_limits_by`](RateLimiterBuilder::subject_limits_by) (a customer's plan, looked up
//! on each check).
//!
//! Each token has its own buckets, a derived token too: a child that inherits `requests=100/60s`
//! gets its own 100 per minute, beside its parent's. So a token's limits bound that token;
//! what bounds a whole family (or every token a user holds) is a subject limit.
//!
//! # In process
//!
//! By default the buckets live in this process: 16 mutex-guarded shards, a constant-size entry
//! per bucket, expired entries dropped as checks run so memory follows the active keys. A check
//! costs well under a microsecond; a token without limits (and no subject limits) costs a
//! branch. The clock is a [`token_core::Clock`], so tests drive time with a
//! [`ManualClock`](token_core::ManualClock):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use token_core::{ManualClock, RateLimit, RateLimits, TokenId};
//! use token_ratelimit::{RateLimiter, Scope};
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let clock = ManualClock::starting_now();
//! let limiter = RateLimiter::builder()
//!     // All tokens of one subject together: 8 per minute.
//!     .subject_limits(RateLimits::new([RateLimit::per_minute("requests", 8)?])?)
//!     .clock(Arc::new(clock.clone()))
//!     .build();
//! // Each token alone: 5 per minute (a burst of 5, then one every 12 s).
//! let limits = RateLimits::new([RateLimit::per_minute("requests", 5)?])?;
//! let (a, b) = (TokenId::from_bytes([1; 16]), TokenId::from_bytes([2; 16]));
//!
//! for _ in 0..5 {
//!     assert!(limiter.check("user:42", a, &limits, 1).await?.is_allowed());
//! }
//! let denied = limiter.check("user:42", a, &limits, 1).await?;
//! assert_eq!(denied.denied_by().map(|l| l.scope()), Some(Scope::Token));
//! assert_eq!(denied.retry_after_secs(), Some(12));
//!
//! // Token b has its own bucket, but the subject has 3 left.
//! for _ in 0..3 {
//!     assert!(limiter.check("user:42", b, &limits, 1).await?.is_allowed());
//! }
//! let denied = limiter.check("user:42", b, &limits, 1).await?;
//! assert_eq!(denied.denied_by().map(|l| l.scope()), Some(Scope::Subject));
//! assert_eq!(denied.ratelimit_header(), r#""requests";r=2;t=36, "subject.requests";r=0;t=60"#);
//!
//! clock.advance(Duration::from_secs(60));
//! assert!(limiter.check("user:42", a, &limits, 5).await?.is_allowed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Redis
//!
//! With [`RateLimiterBuilder::redis`], the buckets live in Redis and every instance using the
//! same server (and [key prefix](RedisOptions::key_prefix)) shares them: the limits hold in
//! total, not per instance.
//!
//! - **One round trip per check**: a Lua script reads every bucket of the check, decides all or
//!   nothing and writes the new TATs (`EVALSHA`, loaded at connect).
//! - **Server time**: the script reads Redis's clock (`TIME`), not the caller's, so instances
//!   whose clocks are skewed still agree. Times there are whole microseconds.
//! - **Keys**: `{prefix}t:{token_id}:{limit}` for a token's limits and
//!   `{prefix}s:{blake3(subject) in hex}:{limit}` for subject limits, so subjects (personal data)
//!   never appear in key names. The default prefix is `tokens:rl:`.
//! - **TTLs**: each key expires when its bucket would be full again, so Redis memory follows the
//!   tokens in use.
//! - **Outages**: every check has a timeout (default 50 ms, [`RedisOptions::check_timeout`]).
//!   When Redis fails or times out, the [`RedisUnavailable`] policy applies: by default
//!   [`UseLocal`](RedisUnavailable::UseLocal), the in-process limiter answers (per-instance
//!   limits, [`Backend::LocalFallback`]); with [`Refuse`](RedisUnavailable::Refuse) the check
//!   fails with [`CheckError::RedisUnavailable`] (answer 503). After a failure, checks skip
//!   Redis for [`RedisOptions::retry_interval`] (default 1 s) and then try it again: recovery
//!   is automatic, the connection reconnects by itself. Each outage logs one `warn!` when it
//!   starts and one `info!` when it ends.
//! - **Secrets**: the URL's password never appears in `Debug` output, errors or logs.
//! - **Version**: Redis 5 or later (the script writes after reading `TIME`, which needs
//!   effect replication, the default since 5). Redis Cluster is not supported.
//!
//! ```no_run
//! use token_core::{RateLimit, RateLimits};
//! use token_ratelimit::{RateLimiter, RedisBackend, RedisUnavailable};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let limiter = RateLimiter::builder()
//!     .subject_limits(RateLimits::new([RateLimit::per_minute("requests", 1000)?])?)
//!     .redis(RedisBackend::connect("redis://127.0.0.1:6379").await?)
//!     .on_redis_unavailable(RedisUnavailable::UseLocal)
//!     .build();
//! # Ok(()) }
//! ```
//!
//! # HTTP
//!
//! A [`RateLimitDecision`] gives what a middleware sends: `429` with `Retry-After:`
//! [`retry_after_secs`](RateLimitDecision::retry_after_secs) when denied, and the
//! `RateLimit-Policy` and `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10
//! ([`policy_header`](RateLimitDecision::policy_header),
//! [`ratelimit_header`](RateLimitDecision::ratelimit_header)).
//!
//! # Metrics
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade (install the recorder before
//! [building](RateLimiterBuilder::build) the limiter: the per-check counters are registered
//! then, once, so a check does not build a labelled key):
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `token_ratelimit_checks_total` | `backend` (`local`, `redis`, `local_fallback`), `outcome` (`allowed`, `denied`) | checks of at least one limit, answered |
//! | `token_ratelimit_fallbacks_total` | `reason` (`timeout`, `error`, `skipped`), `action` (`local`, `refused`) | checks Redis did not answer |

mod decision;
mod error;
mod gcra;
mod limiter;
mod local;
mod redis;

pub use decision::{Backend, LimitStatus, RateLimitDecision, Scope};
pub use error::{CheckError, ConnectError};
pub use limiter::{RateLimiter, RateLimiterBuilder, RedisUnavailable};
pub use redis::{RedisBackend, RedisOptions};
