//! Rate limits after authentication (feature `ratelimit`): the token's and its subject's limits
//! checked with a [`RateLimiter`](token_ratelimit::RateLimiter), `429 Too Many Requests` when
//! one is exhausted, and the IETF `RateLimit-Policy` / `RateLimit` fields on every answer
//! (draft-ietf-httpapi-ratelimit-headers).

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use token_core::ValidatedToken;
use token_ratelimit::{CheckError, RateLimitDecision, RateLimiter};

use crate::rejection::{Limited, RejectionKind};
use crate::service::LimitRefusal;

/// `RateLimit-Policy`: the limits that apply, their quota and window.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of each, and when it is full again.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Checks `identity` against `limiter` at `cost`, spending the on-demand limits named in
/// `spend`: the fields for the answer, or the refusal (429, or 503 when Redis is down and the
/// policy refuses).
pub(crate) async fn check(
    limiter: &RateLimiter,
    identity: &ValidatedToken,
    cost: u32,
    spend: &[String],
) -> Result<HeaderMap, LimitRefusal> {
    let record = identity.record();
    match limiter
        .check_spending(&record.subject, record.id, &record.rate_limits, spend, cost)
        .await
    {
        Ok(decision) if decision.is_allowed() => Ok(fields(&decision)),
        Ok(decision) => {
            let mut headers = fields(&decision);
            let retry_after = decision.retry_after_secs();
            if let Some(secs) = retry_after {
                headers.insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            Err(LimitRefusal {
                kind: RejectionKind::RateLimited,
                limited: Some(Limited {
                    limit: decision
                        .denied_by()
                        .map(|status| status.policy_name())
                        .unwrap_or_default(),
                    retry_after,
                }),
                headers,
            })
        }
        // The route costs more than the token's limit holds at once: retrying cannot help, so
        // no Retry-After; the body names the limit.
        Err(CheckError::CostExceedsLimit { limit_name, .. }) => Err(LimitRefusal {
            kind: RejectionKind::RateLimited,
            limited: Some(Limited {
                limit: limit_name,
                retry_after: None,
            }),
            headers: HeaderMap::new(),
        }),
        Err(_) => Err(LimitRefusal {
            kind: RejectionKind::Unavailable,
            limited: None,
            headers: HeaderMap::new(),
        }),
    }
}

/// The `RateLimit-Policy` and `RateLimit` fields of `decision` (none when no limit applied).
fn fields(decision: &RateLimitDecision) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let (policy, current) = (decision.policy_header(), decision.ratelimit_header());
    if let (Ok(policy), Ok(current)) = (
        HeaderValue::from_str(&policy),
        HeaderValue::from_str(&current),
    ) && !policy.is_empty()
    {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, current);
    }
    headers
}
