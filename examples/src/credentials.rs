//! `POST /credentials/revoke`: anyone who found tokens (a secret-scanning service, a researcher,
//! a user who pasted one) reports them, and each one that proves possession is revoked.
//!
//! No authentication: possession of a token is the authorization to kill it, as in RFC 7009.
//! The answer never says whether a string was a token: every string of the batch is answered
//! `"processed"`, so the endpoint cannot be used to test guesses (it calls
//! [`TokenManager::revoke_found`]).
//!
//! | request | answer |
//! |---|---|
//! | `{"tokens": ["...", ...]}` or `["...", ...]`, at most [`MAX_FOUND_BATCH`] strings, body at most [`CREDENTIALS_BODY_LIMIT`] bytes | 200 `{"processed": n, "results": [{"index": 0, "status": "processed"}, ...]}` |
//! | more than [`MAX_FOUND_BATCH`] strings, or not that JSON | 400 `{"error": "invalid_request", ...}` |
//! | a larger body | 413 |
//! | more than [`CallerLimit`] allows from one address | 429 `{"error": "slow_down", ...}` with `Retry-After` (seconds) |
//! | the store is unavailable | 503 `{"error": "temporarily_unavailable", ...}` |
//!
//! Each revocation's audit event has the actor `credentials-revocation-endpoint`, the caller's
//! address and user agent, and the reason `reported as found (POST /credentials/revoke)`.
//!
//! **Rate limiting** is per caller address, by a small in-process token bucket local to this
//! example ([`CallerLimit`]): enough to keep one caller from hammering the store. It is not the
//! library's rate limiting (a separate, later piece of work), it is per process, and behind a
//! proxy every caller shares the proxy's address unless you key it on a trusted forwarded
//! header instead.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use token_core::{Context, MAX_FOUND_BATCH, TokenManager};
use zeroize::Zeroizing;

/// The largest body `POST /credentials/revoke` reads: a full batch of the longest tokens (104
/// bytes) with JSON quoting, and room to spare.
pub const CREDENTIALS_BODY_LIMIT: usize = 128 * 1024;

/// The reason written in each revocation's audit event.
pub const FOUND_REASON: &str = "reported as found (POST /credentials/revoke)";

/// How many batches one caller address may send: a bucket of `burst` requests refilled at one
/// request per `refill`.
///
/// ```
/// use std::time::Duration;
/// use examples::credentials::CallerLimit;
/// let limit = CallerLimit { burst: 5, refill: Duration::from_secs(6) }; // 5 at once, 10 a minute
/// assert_eq!(CallerLimit::default().burst, 10);
/// # let _ = limit;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CallerLimit {
    /// Requests a caller may send at once.
    pub burst: u32,
    /// Time to earn one more request.
    pub refill: Duration,
}

impl Default for CallerLimit {
    /// 10 at once, then one every 6 seconds (10 a minute).
    fn default() -> Self {
        Self {
            burst: 10,
            refill: Duration::from_secs(6),
        }
    }
}

/// Callers kept before idle ones are forgotten (bounds the limiter's memory).
const MAX_TRACKED_CALLERS: usize = 10_000;

/// Per-address buckets: (tokens left, when last refilled).
struct CallerBuckets {
    limit: CallerLimit,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl CallerBuckets {
    /// Takes one request from `caller`'s bucket, or says how long until one is available.
    fn take(&self, caller: IpAddr, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.limit.burst.max(1));
        let per_second = 1.0 / self.limit.refill.as_secs_f64().max(1e-3);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CALLERS {
            // Forget callers whose bucket has refilled: they are back at the start anyway.
            buckets.retain(|_, (left, at)| {
                *left + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (left, at) = buckets.entry(caller).or_insert((burst, now));
        *left = (*left + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *left) / per_second))
        }
    }
}

#[derive(Clone)]
struct CredentialsState {
    manager: TokenManager,
    limiter: Arc<CallerBuckets>,
}

/// The route `POST /credentials/revoke` over `manager`, limited per caller by `limit`. Serve it
/// with `into_make_service_with_connect_info::<SocketAddr>()` so callers are told apart (without
/// it, every caller shares one bucket).
pub fn router(manager: TokenManager, limit: CallerLimit) -> Router {
    let state = CredentialsState {
        manager,
        limiter: Arc::new(CallerBuckets {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }),
    };
    Router::new()
        .route("/credentials/revoke", post(revoke_found))
        .layer(DefaultBodyLimit::max(CREDENTIALS_BODY_LIMIT))
        .with_state(state)
}

/// A batch: a bare list of strings, or `{"tokens": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Batch {
    List(Vec<String>),
    Object { tokens: Vec<String> },
}

fn error(status: StatusCode, code: &'static str, description: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description.into()})),
    )
        .into_response()
}

async fn revoke_found(
    State(state): State<CredentialsState>,
    parts: Parts,
    body: Result<Json<Batch>, JsonRejection>,
) -> Response {
    let caller = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    if let Err(wait) = state.limiter.take(caller, Instant::now()) {
        let seconds = wait.as_secs() + 1;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            format!("too many batches from this address; retry in {seconds} s"),
        );
        if let Ok(value) = seconds.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let tokens = match body {
        Ok(Json(Batch::List(tokens) | Batch::Object { tokens })) => Zeroizing::new(tokens),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("the request body is larger than {CREDENTIALS_BODY_LIMIT} bytes"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!(
                    "expected a JSON list of token strings, or {{\"tokens\": [...]}}, with at most {MAX_FOUND_BATCH} strings"
                ),
            );
        }
    };
    let mut ctx = Context::new()
        .actor("credentials-revocation-endpoint")
        .client_ip(caller.to_string());
    if let Some(agent) = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        ctx = ctx.user_agent(agent);
    }
    match state
        .manager
        .revoke_found(&tokens, FOUND_REASON, &ctx)
        .await
    {
        Ok(report) => {
            let results: Vec<_> = (0..report.processed)
                .map(|index| json!({"index": index, "status": "processed"}))
                .collect();
            (
                [(header::CACHE_CONTROL, "no-store")],
                Json(json!({"processed": report.processed, "results": results})),
            )
                .into_response()
        }
        Err(token_core::Error::InvalidRequest { problem, .. }) => {
            error(StatusCode::BAD_REQUEST, "invalid_request", problem)
        }
        Err(e) => {
            // Details (driver messages) stay in the server's log.
            eprintln!("found-token revocation failed: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the token service is unavailable; try again",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_for_the_refill() {
        let buckets = CallerBuckets {
            limit: CallerLimit {
                burst: 2,
                refill: Duration::from_secs(10),
            },
            buckets: Mutex::new(HashMap::new()),
        };
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        assert!(buckets.take(a, t0).is_ok());
        assert!(buckets.take(a, t0).is_ok());
        let wait = buckets.take(a, t0).unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10));
        assert!(
            buckets.take(b, t0).is_ok(),
            "callers have their own buckets"
        );
        assert!(buckets.take(a, t0 + Duration::from_secs(10)).is_ok());
        assert!(buckets.take(a, t0 + Duration::from_secs(10)).is_err());
    }
}
