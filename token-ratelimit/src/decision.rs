//! [`RateLimitDecision`]: the answer to one check, and the HTTP header fields it becomes.

use std::fmt::Write as _;
use std::time::Duration;

use token_core::RateLimit;

/// Whose bucket a limit spends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The token's own bucket: each token has its own, a derived token too.
    Token,
    /// The subject's bucket, shared by all of the subject's tokens.
    Subject,
}

/// Which limiter answered a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The in-process limiter (no Redis configured).
    Local,
    /// Redis: the limits are shared by every instance using the same Redis.
    Redis,
    /// The in-process limiter, because Redis did not answer and the policy is
    /// [`RedisUnavailable::UseLocal`](crate::RedisUnavailable::UseLocal). Limits then hold per
    /// instance, not in total.
    LocalFallback,
}

impl Backend {
    /// `local`, `redis` or `local_fallback` (the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::Redis => "redis",
            Backend::LocalFallback => "local_fallback",
        }
    }
}

/// One limit of a check and where its bucket stands after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    pub(crate) scope: Scope,
    pub(crate) limit: RateLimit,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Duration,
}

impl LimitStatus {
    /// The token's or the subject's bucket.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The limit.
    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// Units of cost that could be spent right now, after this check (if it was allowed; a
    /// denied check spent nothing).
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the bucket is full again (`limit` available) if nothing more is spent.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    /// The policy's name in the header fields: the limit's name for a token limit
    /// (`requests`), `subject.` and the name for a subject limit (`subject.requests`), so the
    /// two never share a name.
    pub fn policy_name(&self) -> String {
        match self.scope {
            Scope::Token => self.limit.name().to_owned(),
            Scope::Subject => format!("subject.{}", self.limit.name()),
        }
    }
}

/// The answer to one check: allowed or not, and every limit's standing.
///
/// A check is all or nothing: when any limit denies, no bucket is charged, and
/// [`denied_by`](Self::denied_by) names the limit that denies longest.
///
/// The middleware turns it into HTTP: `429 Too Many Requests` with `Retry-After:`
/// [`retry_after_secs`](Self::retry_after_secs) when denied, and on every response the header
/// fields of draft-ietf-httpapi-ratelimit-headers-10, [`policy_header`](Self::policy_header)
/// and [`ratelimit_header`](Self::ratelimit_header) (omit both when
/// [`limits`](Self::limits) is empty).
///
/// ```
/// use std::sync::Arc;
/// use token_core::{ManualClock, RateLimit, RateLimits, TokenId};
/// use token_ratelimit::{Backend, RateLimiter, Scope};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let limiter = RateLimiter::builder()
///     .clock(Arc::new(ManualClock::starting_now()))
///     .build();
/// let limits = RateLimits::new([RateLimit::per_minute("requests", 100)?])?;
/// let decision = limiter
///     .check("user:42", TokenId::from_bytes([1; 16]), &limits, 1)
///     .await?;
/// assert!(decision.is_allowed());
/// assert_eq!(decision.backend(), Backend::Local);
/// assert_eq!(decision.limits()[0].scope(), Scope::Token);
/// assert_eq!(decision.limits()[0].remaining(), 99);
/// assert_eq!(decision.policy_header(), r#""requests";q=100;w=60"#);
/// assert_eq!(decision.ratelimit_header(), r#""requests";r=99;t=1"#);
/// assert_eq!(decision.retry_after_secs(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDecision {
    pub(crate) limits: Vec<LimitStatus>,
    /// The denying limit's index in `limits` and its retry delay.
    pub(crate) denied: Option<(usize, Duration)>,
    pub(crate) backend: Backend,
}

impl RateLimitDecision {
    /// Whether the request may go ahead (its cost was taken from every bucket).
    pub fn is_allowed(&self) -> bool {
        self.denied.is_none()
    }

    /// Every limit checked: the token's (sorted by name), then the subject's (sorted by name).
    pub fn limits(&self) -> &[LimitStatus] {
        &self.limits
    }

    /// On denial, the limit that denies (the one with the longest wait).
    pub fn denied_by(&self) -> Option<&LimitStatus> {
        self.denied.map(|(i, _)| &self.limits[i])
    }

    /// On denial, how long until this same request would pass (if nothing else spends).
    pub fn retry_after(&self) -> Option<Duration> {
        self.denied.map(|(_, after)| after)
    }

    /// [`retry_after`](Self::retry_after) in whole seconds, rounded up (so a client that waits
    /// that long passes): the `Retry-After` header's value.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after().map(ceil_secs)
    }

    /// Which limiter answered.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The `RateLimit-Policy` field: a structured-field list with one item per limit, its
    /// [policy name](LimitStatus::policy_name), `q` the limit (quota) and `w` the window in
    /// seconds: `"requests";q=100;w=60, "subject.requests";q=1000;w=60`. Empty when no limit
    /// was checked (send no field then).
    pub fn policy_header(&self) -> String {
        let mut out = String::new();
        for (i, status) in self.limits.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                out,
                "{sep}\"{}\";q={};w={}",
                status.policy_name(),
                status.limit.limit(),
                status.limit.per().as_secs()
            );
        }
        out
    }

    /// The `RateLimit` field: one item per limit, `r` the units remaining and `t` the seconds
    /// (rounded up) until the bucket is full again: `"requests";r=42;t=35`. Empty when no
    /// limit was checked.
    pub fn ratelimit_header(&self) -> String {
        let mut out = String::new();
        for (i, status) in self.limits.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                out,
                "{sep}\"{}\";r={};t={}",
                status.policy_name(),
                status.remaining,
                ceil_secs(status.reset_after)
            );
        }
        out
    }

    /// Allowed, no limits: what a check of a token without limits answers.
    pub(crate) fn unlimited() -> Self {
        Self {
            limits: Vec::new(),
            denied: None,
            backend: Backend::Local,
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(scope: Scope, limit: RateLimit, remaining: u32, reset_ms: u64) -> LimitStatus {
        LimitStatus {
            scope,
            limit,
            remaining,
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn header_fields_are_exact_structured_field_lists() {
        let decision = RateLimitDecision {
            limits: vec![
                status(
                    Scope::Token,
                    RateLimit::per_minute("requests", 100).unwrap(),
                    42,
                    29_001,
                ),
                status(
                    Scope::Subject,
                    RateLimit::per_hour("requests", 5000).unwrap(),
                    4998,
                    1_440,
                ),
            ],
            denied: None,
            backend: Backend::Redis,
        };
        assert_eq!(
            decision.policy_header(),
            r#""requests";q=100;w=60, "subject.requests";q=5000;w=3600"#
        );
        assert_eq!(
            decision.ratelimit_header(),
            r#""requests";r=42;t=30, "subject.requests";r=4998;t=2"#
        );
        assert_eq!(decision.retry_after_secs(), None);
        assert!(decision.denied_by().is_none());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limit = RateLimit::per_minute("requests", 5).unwrap();
        let denied = |retry: Duration| RateLimitDecision {
            limits: vec![status(Scope::Token, limit.clone(), 0, 60_000)],
            denied: Some((0, retry)),
            backend: Backend::Local,
        };
        assert_eq!(denied(Duration::from_secs(12)).retry_after_secs(), Some(12));
        assert_eq!(
            denied(Duration::from_millis(11_001)).retry_after_secs(),
            Some(12)
        );
        assert_eq!(denied(Duration::from_nanos(1)).retry_after_secs(), Some(1));
        let decision = denied(Duration::from_secs(12));
        assert!(!decision.is_allowed());
        assert_eq!(decision.denied_by().unwrap().limit(), &limit);
        assert_eq!(decision.ratelimit_header(), r#""requests";r=0;t=60"#);
    }

    #[test]
    fn no_limits_means_empty_fields() {
        let decision = RateLimitDecision::unlimited();
        assert!(decision.is_allowed());
        assert_eq!(decision.policy_header(), "");
        assert_eq!(decision.ratelimit_header(), "");
    }
}
