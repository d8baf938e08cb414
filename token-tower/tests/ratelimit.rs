//! Rate limits through the layer (feature `ratelimit`): the IETF fields on every answer, 429 with
//! `Retry-After` and a body naming the limit, per-route cost, subject limits across tokens, and
//! what is not limited (refused and anonymous requests).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, ManualClock, RateLimit, RateLimits, ScopeSet,
    TokenManager,
};
use token_ratelimit::RateLimiter;
use token_store_memory::MemoryStore;
use token_tower::{BearerAuth, BearerAuthLayer, ProblemJson};
use tower::{Layer, ServiceExt, service_fn};

struct Setup {
    manager: TokenManager,
    clock: ManualClock,
}

fn setup() -> Setup {
    let clock = ManualClock::starting_now();
    let manager = TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .prefix("acme")
    .unwrap()
    .clock(clock.clone())
    .build()
    .unwrap();
    Setup { manager, clock }
}

fn limiter(clock: &ManualClock, subject_limits: RateLimits) -> RateLimiter {
    RateLimiter::builder()
        .subject_limits(subject_limits)
        .clock(Arc::new(clock.clone()))
        .build()
}

fn limits(list: &[(&str, u32, u64)]) -> RateLimits {
    RateLimits::new(
        list.iter()
            .map(|(name, n, secs)| RateLimit::new(*name, *n, Duration::from_secs(*secs)).unwrap()),
    )
    .unwrap()
}

async fn issue(manager: &TokenManager, subject: &str, token_limits: RateLimits) -> String {
    manager
        .issue(
            IssueRequest::new(subject, ScopeSet::parse("widgets:read").unwrap())
                .rate_limits(token_limits),
        )
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

async fn send(layer: &BearerAuthLayer, token: Option<&str>) -> Response<String> {
    let inner =
        service_fn(
            |_: Request<()>| async move { Ok::<_, Infallible>(Response::new("ok".to_owned())) },
        );
    let mut request = Request::builder().uri("/");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    layer
        .layer(inner)
        .oneshot(request.body(()).unwrap())
        .await
        .unwrap()
}

fn header<'a>(response: &'a Response<String>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn within_the_limit_the_fields_count_down_then_429_names_the_limit() {
    let s = setup();
    let token = issue(&s.manager, "user:1", limits(&[("requests", 2, 60)])).await;
    let layer = BearerAuth::new(s.manager.clone())
        .rate_limit(limiter(&s.clock, RateLimits::none()))
        .require("widgets:read")
        .unwrap();

    let first = send(&layer, Some(&token)).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""requests";q=2;w=60"#)
    );
    assert_eq!(header(&first, "ratelimit"), Some(r#""requests";r=1;t=30"#));
    let second = send(&layer, Some(&token)).await;
    assert_eq!(header(&second, "ratelimit"), Some(r#""requests";r=0;t=60"#));

    let refused = send(&layer, Some(&token)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, RETRY_AFTER.as_str()), Some("30"));
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some(r#""requests";q=2;w=60"#)
    );
    assert_eq!(
        header(&refused, "ratelimit"),
        Some(r#""requests";r=0;t=60"#)
    );
    assert!(
        refused.headers().get(WWW_AUTHENTICATE).is_none(),
        "the credential is fine"
    );
    assert_eq!(header(&refused, "cache-control"), Some("no-store"));
    assert_eq!(
        header(&refused, CONTENT_TYPE.as_str()),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_str(refused.body()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["limit"], "requests");
    assert_eq!(body["retry_after"], 30);

    s.clock.advance(Duration::from_secs(29));
    assert_eq!(
        send(&layer, Some(&token)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    s.clock.advance(Duration::from_secs(1));
    assert_eq!(
        send(&layer, Some(&token)).await.status(),
        StatusCode::OK,
        "one came back"
    );
}

#[tokio::test]
async fn a_route_cost_takes_that_much_and_one_above_the_limit_never_passes() {
    let s = setup();
    let token = issue(&s.manager, "user:1", limits(&[("requests", 3, 60)])).await;
    let auth = BearerAuth::new(s.manager.clone()).rate_limit(limiter(&s.clock, RateLimits::none()));
    let expensive = auth.require("widgets:read").unwrap().cost(2);
    let ok = send(&expensive, Some(&token)).await;
    assert_eq!(header(&ok, "ratelimit"), Some(r#""requests";r=1;t=40"#));
    assert_eq!(
        send(&expensive, Some(&token)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let cheap = auth.require("widgets:read").unwrap();
    assert_eq!(
        send(&cheap, Some(&token)).await.status(),
        StatusCode::OK,
        "1 left"
    );

    let impossible = auth.require("widgets:read").unwrap().cost(4);
    let refused = send(&impossible, Some(&token)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused.headers().get(RETRY_AFTER).is_none(),
        "retrying cannot help"
    );
    let body: serde_json::Value = serde_json::from_str(refused.body()).unwrap();
    assert_eq!(body["limit"], "requests");
    assert!(body.get("retry_after").is_none());
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("costs more"),
        "{body}"
    );
}

#[tokio::test]
async fn subject_limits_bound_all_tokens_of_a_subject_together() {
    let s = setup();
    let layer = BearerAuth::new(s.manager.clone())
        .rate_limit(limiter(&s.clock, limits(&[("requests", 3, 60)])))
        .render_rejections(ProblemJson)
        .layer();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(issue(&s.manager, "user:1", RateLimits::none()).await);
    }
    let other = issue(&s.manager, "user:2", RateLimits::none()).await;
    let mut passed = 0;
    for round in 0..3 {
        for token in &tokens {
            let response = send(&layer, Some(token)).await;
            match response.status() {
                StatusCode::OK => passed += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    assert!(round > 0);
                    let body: serde_json::Value = serde_json::from_str(response.body()).unwrap();
                    assert_eq!(body["limit"], "subject.requests", "{body}");
                    assert_eq!(body["status"], 429);
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    assert_eq!(
        passed, 3,
        "three in total for the subject, not three per token"
    );
    assert_eq!(
        send(&layer, Some(&other)).await.status(),
        StatusCode::OK,
        "another subject has its own bucket"
    );
}

#[tokio::test]
async fn refused_and_anonymous_requests_are_not_limited() {
    let s = setup();
    let token = issue(&s.manager, "user:1", limits(&[("requests", 1, 60)])).await;
    let auth = BearerAuth::new(s.manager.clone()).rate_limit(limiter(&s.clock, RateLimits::none()));
    let admin = auth.require("widgets:admin").unwrap();
    for _ in 0..3 {
        assert_eq!(
            send(&admin, Some(&token)).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    let optional = auth.require("widgets:read").unwrap().optional();
    for _ in 0..3 {
        let anonymous = send(&optional, None).await;
        assert_eq!(anonymous.status(), StatusCode::OK);
        assert!(anonymous.headers().get("ratelimit").is_none());
    }
    assert_eq!(
        send(&optional, Some(&token)).await.status(),
        StatusCode::OK,
        "the one request the token has was not spent by refusals"
    );
    assert_eq!(
        send(&optional, Some(&token)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_token_without_limits_and_no_subject_limits_gets_no_fields() {
    let s = setup();
    let token = issue(&s.manager, "user:1", RateLimits::none()).await;
    let layer = BearerAuth::new(s.manager.clone())
        .rate_limit(limiter(&s.clock, RateLimits::none()))
        .layer();
    let response = send(&layer, Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit-policy").is_none());
    assert!(response.headers().get("ratelimit").is_none());
}

#[tokio::test]
async fn a_429_consumes_none_of_a_use_limited_tokens_uses() {
    let s = setup();
    let issued = s
        .manager
        .issue(
            IssueRequest::new("user:1", ScopeSet::parse("widgets:read").unwrap())
                .max_uses(3)
                .rate_limits(limits(&[("requests", 1, 60)])),
        )
        .await
        .unwrap();
    let token = issued.token.expose_secret();
    let layer = BearerAuth::new(s.manager.clone())
        .rate_limit(limiter(&s.clock, RateLimits::none()))
        .layer();
    assert_eq!(send(&layer, Some(token)).await.status(), StatusCode::OK);
    for _ in 0..5 {
        assert_eq!(
            send(&layer, Some(token)).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    let record = s.manager.inspect(issued.token.id()).await.unwrap().unwrap();
    assert_eq!(
        record.use_count, 1,
        "only the request that passed counted a use"
    );
}

#[tokio::test]
async fn on_demand_limits_apply_only_on_the_routes_that_spend_them() {
    let s = setup();
    let token_limits = RateLimits::new([
        RateLimit::per_minute("requests", 10).unwrap(),
        RateLimit::per_hour("expensive", 2).unwrap().on_demand(),
    ])
    .unwrap();
    let token = issue(&s.manager, "user:1", token_limits).await;
    let subject_limits =
        RateLimits::new([RateLimit::per_hour("exports", 1).unwrap().on_demand()]).unwrap();
    let auth = BearerAuth::new(s.manager.clone()).rate_limit(limiter(&s.clock, subject_limits));
    let cheap = auth.require("widgets:read").unwrap();
    let costly = auth
        .require("widgets:read")
        .unwrap()
        .spend("expensive")
        .unwrap();
    let export = auth
        .require("widgets:read")
        .unwrap()
        .spend("exports")
        .unwrap();
    assert!(
        auth.require("widgets:read")
            .unwrap()
            .spend("Expensive")
            .is_err(),
        "a name no limit can have"
    );

    let plain = send(&cheap, Some(&token)).await;
    assert_eq!(
        header(&plain, "ratelimit-policy"),
        Some(r#""requests";q=10;w=60"#)
    );
    let spent = send(&costly, Some(&token)).await;
    assert_eq!(
        header(&spent, "ratelimit-policy"),
        Some(r#""expensive";q=2;w=3600, "requests";q=10;w=60"#)
    );
    assert_eq!(send(&costly, Some(&token)).await.status(), StatusCode::OK);
    let over = send(&costly, Some(&token)).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = serde_json::from_str(over.body()).unwrap();
    assert_eq!(body["limit"], "expensive");
    assert_eq!(
        send(&cheap, Some(&token)).await.status(),
        StatusCode::OK,
        "requests left"
    );

    assert_eq!(send(&export, Some(&token)).await.status(), StatusCode::OK);
    let second = send(&export, Some(&token)).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = serde_json::from_str(second.body()).unwrap();
    assert_eq!(body["limit"], "subject.exports");
}
