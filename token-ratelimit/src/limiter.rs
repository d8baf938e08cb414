//! [`RateLimiter`]: one check per request, against the token's limits and its subject's.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use token_core::{Clock, RateLimit, RateLimits, SystemClock, TokenId};

use crate::decision::{Backend, LimitStatus, RateLimitDecision, Scope};
use crate::error::CheckError;
use crate::gcra::{Rate, Standing};
use crate::local::{BucketKey, LocalLimiter, with_scratch};
use crate::redis::RedisBackend;

/// What a check does when Redis does not answer (down, unreachable, or slower than the
/// [check timeout](crate::RedisOptions::check_timeout)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisUnavailable {
    /// Check the in-process limiter instead (the default): requests keep flowing, limited per
    /// instance rather than in total, and the decision says
    /// [`Backend::LocalFallback`].
    #[default]
    UseLocal,
    /// Fail the check with [`CheckError::RedisUnavailable`] (answer 503): no request
    /// passes unless the shared limit allows it.
    Refuse,
}

/// Enforces rate limits: each token's own, and limits every subject has, in process or shared
/// through Redis. Cheap to clone (clones share the buckets).
///
/// ```
/// use std::sync::Arc;
/// use std::time::{Duration, SystemTime};
/// use token_core::{ManualClock, RateLimit, RateLimits, TokenId};
/// use token_ratelimit::RateLimiter;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let clock = ManualClock::starting_now();
/// let limiter = RateLimiter::builder()
///     .subject_limits(RateLimits::new([RateLimit::per_minute("requests", 1000)?])?)
///     .clock(Arc::new(clock.clone()))
///     .build();
/// let token = TokenId::from_bytes([7; 16]);
/// let limits = RateLimits::new([RateLimit::per_minute("requests", 5)?])?;
/// for _ in 0..5 {
///     assert!(limiter.check("user:42", token, &limits, 1).await?.is_allowed());
/// }
/// let denied = limiter.check("user:42", token, &limits, 1).await?;
/// assert_eq!(denied.retry_after(), Some(Duration::from_secs(12)));
/// clock.advance(Duration::from_secs(12));
/// assert!(limiter.check("user:42", token, &limits, 1).await?.is_allowed());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    subject_limits: RateLimits,
    /// Per-subject limits, when set: asked on each check instead of `subject_limits`.
    subject_resolver: Option<SubjectResolver>,
    /// No subject limit is on demand: every check applies them all.
    subject_all_automatic: bool,
    /// `subject_limits`' rates in nanoseconds, computed once.
    subject_rates: Vec<Rate>,
    local: LocalLimiter,
    redis: Option<RedisBackend>,
    on_unavailable: RedisUnavailable,
    /// `None`: the system clock, read directly.
    clock: Option<Arc<dyn Clock>>,
    counters: Counters,
}

/// `token_ratelimit_checks_total`, registered once: building a labelled key per check would
/// cost more than the check.
struct Counters {
    /// By backend (`Backend as usize`), then allowed (0) or denied (1).
    checks: [[metrics::Counter; 2]; 3],
}

impl Counters {
    fn new() -> Self {
        let by_backend = |backend: Backend| {
            ["allowed", "denied"].map(|outcome| {
                metrics::counter!(
                    "token_ratelimit_checks_total",
                    "backend" => backend.as_str(),
                    "outcome" => outcome
                )
            })
        };
        Self {
            checks: [Backend::Local, Backend::Redis, Backend::LocalFallback].map(by_backend),
        }
    }

    fn record(&self, decision: RateLimitDecision) -> RateLimitDecision {
        let backend = match decision.backend() {
            Backend::Local => 0,
            Backend::Redis => 1,
            Backend::LocalFallback => 2,
        };
        self.checks[backend][usize::from(!decision.is_allowed())].increment(1);
        decision
    }
}

/// Configures a [`RateLimiter`]: in process, no subject limits and the system clock unless
/// told otherwise.
#[derive(Default)]
#[must_use]
pub struct RateLimiterBuilder {
    subject_limits: RateLimits,
    subject_resolver: Option<SubjectResolver>,
    redis: Option<RedisBackend>,
    on_unavailable: RedisUnavailable,
    clock: Option<Arc<dyn Clock>>,
}

/// Each subject's own limits (its plan's), asked on every check.
type SubjectResolver = Arc<dyn Fn(&str) -> RateLimits + Send + Sync>;

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("subject_limits", &self.subject_limits)
            .field("subject_limits_by", &self.subject_resolver.is_some())
            .field("redis", &self.redis)
            .field("on_redis_unavailable", &self.on_unavailable)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// Limits every subject has: all tokens of one subject spend from the same buckets, so
    /// these bound a subject's tokens together (a token's own limits bound only that token).
    pub fn subject_limits(mut self, limits: RateLimits) -> Self {
        self.subject_limits = limits;
        self
    }

    /// Limits that differ by subject (a customer's plan): `resolve` answers a subject's
    /// limits on every check, in place of [`subject_limits`](Self::subject_limits). Keep it
    /// cheap (a map lookup, not I/O); a subject it answers no limits for has none. Buckets are
    /// keyed by subject and limit name, so a subject moved to a larger plan keeps its bucket's
    /// level and gains the new capacity at once.
    ///
    /// ```
    /// use token_core::{RateLimit, RateLimits};
    /// use token_ratelimit::RateLimiter;
    ///
    /// let standard = RateLimits::new([RateLimit::per_minute("requests", 100).unwrap()]).unwrap();
    /// let enterprise = RateLimits::new([RateLimit::per_minute("requests", 10_000).unwrap()]).unwrap();
    /// let limiter = RateLimiter::builder()
    ///     .subject_limits_by(move |subject| {
    ///         if subject.starts_with("org:big-") { enterprise.clone() } else { standard.clone() }
    ///     })
    ///     .build();
    /// # let _ = limiter;
    /// ```
    pub fn subject_limits_by(
        mut self,
        resolve: impl Fn(&str) -> RateLimits + Send + Sync + 'static,
    ) -> Self {
        self.subject_resolver = Some(Arc::new(resolve));
        self
    }

    /// Keeps the buckets in Redis, shared by every instance using it.
    pub fn redis(mut self, backend: RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// What a check does when Redis does not answer (default
    /// [`RedisUnavailable::UseLocal`]).
    pub fn on_redis_unavailable(mut self, policy: RedisUnavailable) -> Self {
        self.on_unavailable = policy;
        self
    }

    /// The clock of the in-process limiter (default [`SystemClock`]). Redis uses its own
    /// clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The limiter. Install a [`metrics`](https://docs.rs/metrics) recorder before this to
    /// see its counters: they are registered here, once.
    pub fn build(self) -> RateLimiter {
        RateLimiter {
            inner: Arc::new(Inner {
                subject_rates: self.subject_limits.iter().map(Rate::nanos).collect(),
                subject_all_automatic: self.subject_limits.all_automatic(),
                subject_limits: self.subject_limits,
                subject_resolver: self.subject_resolver,
                local: LocalLimiter::new(),
                redis: self.redis,
                on_unavailable: self.on_unavailable,
                clock: self.clock,
                counters: Counters::new(),
            }),
        }
    }
}

impl Default for RateLimiter {
    /// In process, no subject limits, the system clock.
    fn default() -> Self {
        Self::builder().build()
    }
}

impl RateLimiter {
    /// A builder.
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder::default()
    }

    /// The limits every subject has.
    pub fn subject_limits(&self) -> &RateLimits {
        &self.inner.subject_limits
    }

    /// Checks one request of cost `cost` (usually 1) made with `token`, whose subject is
    /// `subject` and whose own limits are `limits`: every limit in `limits` (the token's own
    /// buckets) and every [subject limit](RateLimiterBuilder::subject_limits) (the subject's
    /// buckets), all or nothing. Cost 0 only reports where the buckets stand.
    ///
    /// A token without limits, when there are no subject limits, is allowed at once: no lock,
    /// no Redis call.
    ///
    /// Check after validation: `token` must be the id of a token this library issued. Ids are
    /// random, and the in-process map uses their bytes as its hash, so ids an attacker chose
    /// could be made to collide.
    ///
    /// # Errors
    ///
    /// [`CheckError::CostExceedsLimit`] when `cost` is above one of the limits (it could
    /// never pass); [`CheckError::RedisUnavailable`] when Redis does not answer and the
    /// policy is [`RedisUnavailable::Refuse`].
    pub async fn check(
        &self,
        subject: &str,
        token: TokenId,
        limits: &RateLimits,
        cost: u32,
    ) -> Result<RateLimitDecision, CheckError> {
        self.check_spending(subject, token, limits, &[] as &[&str], cost)
            .await
    }

    /// [`check`](Self::check) for a request that also spends the [on-demand](RateLimit::on_demand)
    /// limits named in `spent` (an expensive route spending `expensive`): the automatic limits
    /// of the token and the subject apply to every request, an on-demand one only when named
    /// here.
    pub async fn check_spending<S: AsRef<str>>(
        &self,
        subject: &str,
        token: TokenId,
        limits: &RateLimits,
        spent: &[S],
        cost: u32,
    ) -> Result<RateLimitDecision, CheckError> {
        let inner = &*self.inner;
        if limits.is_empty() && inner.subject_limits.is_empty() && inner.subject_resolver.is_none()
        {
            return Ok(RateLimitDecision::unlimited());
        }
        let limits: Cow<'_, RateLimits> = if limits.all_automatic() {
            Cow::Borrowed(limits)
        } else {
            Cow::Owned(limits.applying_to(spent))
        };
        let subjects = if let Some(resolve) = &inner.subject_resolver {
            let applying = resolve(subject).applying_to(spent);
            Subjects {
                rates: Cow::Owned(applying.iter().map(Rate::nanos).collect()),
                limits: Cow::Owned(applying),
            }
        } else if inner.subject_all_automatic {
            Subjects {
                limits: Cow::Borrowed(&inner.subject_limits),
                rates: Cow::Borrowed(&inner.subject_rates),
            }
        } else {
            let applying = inner.subject_limits.applying_to(spent);
            Subjects {
                rates: Cow::Owned(applying.iter().map(Rate::nanos).collect()),
                limits: Cow::Owned(applying),
            }
        };
        if limits.is_empty() && subjects.limits.is_empty() {
            return Ok(RateLimitDecision::unlimited());
        }
        if let Some(limit) = limits
            .iter()
            .chain(subjects.limits.iter())
            .find(|limit| cost > limit.limit())
        {
            return Err(CheckError::CostExceedsLimit {
                limit_name: limit.name().to_owned(),
                cost,
                limit: limit.limit(),
            });
        }
        match &inner.redis {
            None => Ok(self.check_local(subject, token, &limits, &subjects, cost, Backend::Local)),
            // Boxed: the in-process path's future stays small.
            Some(redis) => {
                Box::pin(self.check_redis(redis, subject, token, &limits, &subjects, cost)).await
            }
        }
    }

    async fn check_redis(
        &self,
        redis: &RedisBackend,
        subject: &str,
        token: TokenId,
        limits: &RateLimits,
        subjects: &Subjects<'_>,
        cost: u32,
    ) -> Result<RateLimitDecision, CheckError> {
        let inner = &*self.inner;
        match redis
            .check(subject, token, limits, &subjects.limits, cost)
            .await
        {
            Ok(answer) => Ok(inner.counters.record(RateLimitDecision {
                limits: statuses(limits, &subjects.limits, &answer.standings, 1_000),
                denied: answer
                    .denied
                    .map(|(i, retry)| (i, Duration::from_micros(retry))),
                backend: Backend::Redis,
            })),
            Err(why) => match inner.on_unavailable {
                RedisUnavailable::UseLocal => {
                    metrics::counter!(
                        "token_ratelimit_fallbacks_total",
                        "reason" => why.label(),
                        "action" => "local"
                    )
                    .increment(1);
                    Ok(self.check_local(
                        subject,
                        token,
                        limits,
                        subjects,
                        cost,
                        Backend::LocalFallback,
                    ))
                }
                RedisUnavailable::Refuse => {
                    metrics::counter!(
                        "token_ratelimit_fallbacks_total",
                        "reason" => why.label(),
                        "action" => "refused"
                    )
                    .increment(1);
                    Err(CheckError::RedisUnavailable {
                        reason: why.to_string(),
                    })
                }
            },
        }
    }

    fn check_local(
        &self,
        subject: &str,
        token: TokenId,
        limits: &RateLimits,
        subjects: &Subjects<'_>,
        cost: u32,
        backend: Backend,
    ) -> RateLimitDecision {
        let inner = &*self.inner;
        let subject_hash = if subjects.limits.is_empty() {
            [0; 16]
        } else {
            inner.local.subject_hash(subject)
        };
        let keys = limits
            .iter()
            .map(|limit| (BucketKey::token(token, limit.name()), Rate::nanos(limit)))
            .chain(
                subjects
                    .limits
                    .iter()
                    .zip(subjects.rates.iter())
                    .map(|(limit, rate)| (BucketKey::subject(subject_hash, limit.name()), *rate)),
            );
        let count = limits.len() + subjects.limits.len();
        let now = inner.now();
        let blank = Standing {
            remaining: 0,
            reset_after: 0,
        };
        let (statuses, denied) = with_scratch(
            count,
            (BucketKey::token(token, ""), Rate::new(1, 1)),
            |slots| {
                for (slot, key) in slots.iter_mut().zip(keys) {
                    *slot = key;
                }
                with_scratch(count, blank, |standings| {
                    let denied = inner.local.check(slots, now, cost, standings);
                    (statuses(limits, &subjects.limits, standings, 1), denied)
                })
            },
        );
        inner.counters.record(RateLimitDecision {
            limits: statuses,
            denied: denied.map(|(i, retry)| (i, Duration::from_nanos(retry))),
            backend,
        })
    }

    /// Drops every expired in-process bucket now and returns how many. This happens on its
    /// own as checks run (memory follows the keys active within their windows); call it to
    /// give memory back after a burst of keys that will not come back.
    pub fn prune_expired(&self) -> usize {
        self.inner.local.prune(self.inner.now())
    }

    /// How many in-process buckets are held, expired ones not yet dropped included. For tests
    /// and diagnostics.
    #[doc(hidden)]
    pub fn local_bucket_count(&self) -> usize {
        self.inner.local.len()
    }
}

/// The subject limits one check applies, with their rates in nanoseconds.
struct Subjects<'a> {
    limits: Cow<'a, RateLimits>,
    rates: Cow<'a, [Rate]>,
}

/// Each limit's status from its standing, with times in units of `unit_ns` nanoseconds.
fn statuses(
    limits: &RateLimits,
    subjects: &RateLimits,
    standings: &[Standing],
    unit_ns: u64,
) -> Vec<LimitStatus> {
    let scoped = limits
        .iter()
        .map(|limit| (Scope::Token, limit))
        .chain(subjects.iter().map(|limit| (Scope::Subject, limit)));
    scoped
        .zip(standings)
        .map(|((scope, limit), standing)| LimitStatus {
            scope,
            limit: RateLimit::clone(limit),
            remaining: standing.remaining,
            reset_after: Duration::from_nanos(standing.reset_after.saturating_mul(unit_ns)),
        })
        .collect()
}

impl Inner {
    /// Nanoseconds since the Unix epoch.
    fn now(&self) -> u64 {
        let nanos = match &self.clock {
            Some(clock) => clock.now().unix_timestamp_nanos().max(0).unsigned_abs(),
            // What `SystemClock` reads, without the calendar arithmetic of a date.
            None => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos()),
        };
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("subject_limits", &self.inner.subject_limits)
            .field("subject_limits_by", &self.inner.subject_resolver.is_some())
            .field("redis", &self.inner.redis)
            .field("on_redis_unavailable", &self.inner.on_unavailable)
            .field(
                "clock",
                self.inner
                    .clock
                    .as_ref()
                    .map_or(&SystemClock as &dyn fmt::Debug, |clock| {
                        clock as &dyn fmt::Debug
                    }),
            )
            .finish_non_exhaustive()
    }
}
