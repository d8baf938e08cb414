//! The layer's options: the API key header, any-of and computed requirements, optional
//! authentication and rendered error bodies, driven with `tower::ServiceExt::oneshot` (axum
//! routers where routing matters).

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::get as axum_get;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, ManualClock, RevokeSelector, Scope, ScopeError,
    ScopeSet, TokenManager,
};
use token_store_memory::MemoryStore;
use token_tower::{
    Authenticated, BearerAuth, BearerAuthLayer, OAuthErrorJson, ProblemJson, Rejection,
    RejectionBody, RejectionKind, RequirementError,
};
use tower::{Layer, ServiceExt, service_fn};

fn manager() -> TokenManager {
    TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .prefix("acme")
    .unwrap()
    .clock(ManualClock::starting_now())
    .build()
    .unwrap()
}

async fn issue(manager: &TokenManager, scopes: &str) -> String {
    let issued = manager
        .issue(IssueRequest::new(
            "user:7",
            ScopeSet::parse(scopes).unwrap(),
        ))
        .await
        .unwrap();
    issued.token.expose_secret().to_owned()
}

/// Sends `request` through `layer` in front of a handler that echoes the subject and whether the
/// `x-api-key` header was marked sensitive.
async fn send(layer: &BearerAuthLayer, request: Request<()>) -> Response<String> {
    let inner = service_fn(|req: Request<()>| async move {
        let who = req.extensions().get::<Authenticated>().cloned();
        let sensitive = req
            .headers()
            .get("x-api-key")
            .is_some_and(|v| v.is_sensitive());
        Ok::<_, Infallible>(Response::new(format!(
            "{}|sensitive={sensitive}",
            who.map(|w| w.subject().to_owned()).unwrap_or_default()
        )))
    });
    layer.layer(inner).oneshot(request).await.unwrap()
}

fn get(uri: &str) -> http::request::Builder {
    Request::builder().uri(uri)
}

fn with_key(token: &str) -> Request<()> {
    get("/").header("x-api-key", token).body(()).unwrap()
}

fn with_bearer(token: &str) -> Request<()> {
    get("/")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(())
        .unwrap()
}

fn challenge<B>(response: &Response<B>) -> Option<&str> {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let challenge = challenge(&response).map(str::to_owned);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

fn axum_get_request(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    builder.body(Body::empty()).unwrap()
}

// --- API key header -----------------------------------------------------------------------

#[tokio::test]
async fn api_key_header_is_ignored_unless_enabled() {
    let manager = manager();
    let token = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager).layer();
    let response = send(&layer, with_key(&token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), Some("Bearer realm=\"api\""));
}

#[tokio::test]
async fn api_key_header_carries_the_token_and_is_marked_sensitive() {
    let manager = manager();
    let token = issue(&manager, "widgets:read").await;
    let layer = BearerAuth::new(manager)
        .api_key_header()
        .require("widgets:read")
        .unwrap();
    let response = send(&layer, with_key(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "user:7|sensitive=true");
    // Bearer still works alongside.
    assert_eq!(
        send(&layer, with_bearer(&token)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn api_key_header_named_reads_only_that_header() {
    let manager = manager();
    let token = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager)
        .api_key_header_named(HeaderName::from_static("api-key"))
        .layer();
    let named = get("/").header("api-key", &token).body(()).unwrap();
    assert_eq!(send(&layer, named).await.status(), StatusCode::OK);
    assert_eq!(
        send(&layer, with_key(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn more_than_one_credential_or_a_malformed_api_key_is_invalid_request() {
    let manager = manager();
    let token = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager).api_key_header().layer();
    let both = get("/")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header("x-api-key", &token)
        .body(())
        .unwrap();
    let twice = get("/")
        .header("x-api-key", &token)
        .header("x-api-key", &token)
        .body(())
        .unwrap();
    let query = get(&format!("/?access_token={token}"))
        .header("x-api-key", &token)
        .body(())
        .unwrap();
    let mut requests = vec![("both", both), ("twice", twice), ("query", query)];
    for value in ["", "Bearer x", "a b", "\"tok\""] {
        requests.push((value, get("/").header("x-api-key", value).body(()).unwrap()));
    }
    for (label, request) in requests {
        let response = send(&layer, request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{label}");
        assert_eq!(
            challenge(&response),
            Some("Bearer realm=\"api\", error=\"invalid_request\""),
            "{label}"
        );
    }
    // Another scheme in Authorization is not a bearer credential: the API key is the only one.
    let basic = get("/")
        .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .header("x-api-key", &token)
        .body(())
        .unwrap();
    assert_eq!(send(&layer, basic).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn invalid_api_key_gets_the_same_bearer_challenge_as_an_invalid_bearer_token() {
    let manager = manager();
    let layer = BearerAuth::new(manager).api_key_header().layer();
    let by_key = send(&layer, with_key("acme_garbage")).await;
    let by_bearer = send(&layer, with_bearer("acme_garbage")).await;
    assert_eq!(by_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&by_key),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert_eq!(
        format!("{:?}{}", by_key.headers(), by_key.body()),
        format!("{:?}{}", by_bearer.headers(), by_bearer.body())
    );
}

// --- any-of requirements --------------------------------------------------------------------

#[tokio::test]
async fn require_any_passes_a_token_with_one_alternative_and_names_all_in_the_403() {
    let manager = manager();
    let admin = issue(&manager, "widgets:admin").await;
    let reader = issue(&manager, "widgets:read").await;
    let everything = issue(&manager, "widgets:*").await;
    let other = issue(&manager, "gadgets:read").await;
    let layer = BearerAuth::new(manager)
        .require_any(["widgets:read", "widgets:admin"])
        .unwrap();
    for token in [&admin, &reader, &everything] {
        assert_eq!(
            send(&layer, with_bearer(token)).await.status(),
            StatusCode::OK
        );
    }
    let response = send(&layer, with_bearer(&other)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"widgets:read widgets:admin\""
        )
    );
    let invalid = send(&layer, with_bearer("acme_garbage")).await;
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&invalid),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn require_any_refused_for_scope_does_not_spend_a_use() {
    let manager = manager();
    let issued = manager
        .issue(IssueRequest::new("user:7", ScopeSet::parse("gadgets:read").unwrap()).max_uses(1))
        .await
        .unwrap();
    let token = issued.token.expose_secret().to_owned();
    let any = BearerAuth::new(manager.clone())
        .require_any(["widgets:read", "widgets:admin"])
        .unwrap();
    for _ in 0..3 {
        let response = send(&any, with_bearer(&token)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let gadgets = BearerAuth::new(manager).require("gadgets:read").unwrap();
    assert_eq!(
        send(&gadgets, with_bearer(&token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&gadgets, with_bearer(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn require_any_refuses_empty_and_wildcard_alternatives() {
    let auth = BearerAuth::new(manager());
    assert_eq!(
        auth.require_any(Vec::<&str>::new()).unwrap_err(),
        RequirementError::EmptyAnyOf
    );
    assert!(matches!(
        auth.require_any(["widgets:read", "widgets:*"]),
        Err(RequirementError::Wildcard(_))
    ));
    assert!(matches!(
        auth.require_any(["Widgets"]),
        Err(RequirementError::Scope(_))
    ));
}

// --- requirements computed from the request ---------------------------------------------------

/// `/repos/{owner}/{repo}` requires `repo:{owner}/{repo}:read`; `/orgs/{org}` requires
/// `org:{org}:read`, from the raw (still percent-encoded) path segments.
fn resource_scope(parts: &Parts) -> Result<Vec<Scope>, ScopeError> {
    let segments: Vec<&str> = parts
        .uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let text = match segments.as_slice() {
        ["repos", owner, repo] => format!("repo:{owner}/{repo}:read"),
        ["orgs", org] => format!("org:{org}:read"),
        _ => String::new(),
    };
    Ok(vec![Scope::new(&text)?])
}

fn resource_app(auth: &BearerAuth) -> Router {
    Router::new()
        .route(
            "/repos/{owner}/{repo}",
            axum_get(|who: Authenticated| async move { who.subject().to_owned() }),
        )
        .route("/orgs/{org}", axum_get(|| async { "org" }))
        .route_layer(auth.require_with(resource_scope))
}

#[tokio::test]
async fn require_with_takes_the_scope_from_the_path() {
    let manager = manager();
    let site = issue(&manager, "repo:acme/site:read").await;
    let app = resource_app(&BearerAuth::new(manager));
    let (status, _, body) = call(&app, axum_get_request("/repos/acme/site", Some(&site))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "user:7"));
    let (status, challenge, _) =
        call(&app, axum_get_request("/repos/acme/other", Some(&site))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"repo:acme/other:read\"")
    );
    let (status, challenge, _) = call(&app, axum_get_request("/repos/acme/site", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"api\""));
}

#[tokio::test]
async fn require_with_answers_a_path_it_cannot_read_or_a_wildcard_with_invalid_request() {
    let manager = manager();
    let everything = issue(&manager, "org:*").await;
    let app = resource_app(&BearerAuth::new(manager).render_rejections(OAuthErrorJson));
    for uri in ["/repos/ACME/site", "/repos/acme%2Fx/site", "/orgs/*"] {
        let (status, challenge, body) = call(&app, axum_get_request(uri, Some(&everything))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer realm=\"api\", error=\"invalid_request\"")
        );
        assert_eq!(
            body, r#"{"error":"invalid_request","error_description":"The request is malformed."}"#,
            "{uri}"
        );
    }
    let (status, _, _) = call(&app, axum_get_request("/orgs/acme", Some(&everything))).await;
    assert_eq!(status, StatusCode::OK);
}

// --- optional authentication ----------------------------------------------------------------------

fn feed_app(layer: BearerAuthLayer) -> Router {
    Router::new()
        .route(
            "/feed",
            axum_get(|who: Option<Authenticated>| async move {
                who.map_or("anonymous".to_owned(), |w| w.subject().to_owned())
            }),
        )
        .route_layer(layer)
        .route(
            "/unprotected",
            axum_get(|who: Option<Authenticated>| async move { format!("{}", who.is_some()) }),
        )
}

#[tokio::test]
async fn optional_layer_lets_anonymous_requests_through_but_refuses_bad_credentials() {
    let manager = manager();
    let token = issue(&manager, "feed:read").await;
    let (revoked_id, revoked) = {
        let issued = manager
            .issue(IssueRequest::new(
                "user:8",
                ScopeSet::parse("feed:read").unwrap(),
            ))
            .await
            .unwrap();
        (issued.token.id(), issued.token.expose_secret().to_owned())
    };
    manager
        .revoke(RevokeSelector::Token(revoked_id), "test")
        .await
        .unwrap();
    let other = issue(&manager, "gadgets:read").await;
    let app = feed_app(
        BearerAuth::new(manager)
            .require("feed:read")
            .unwrap()
            .optional(),
    );
    let (status, _, body) = call(&app, axum_get_request("/feed", None)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "anonymous"));
    let (status, _, body) = call(&app, axum_get_request("/feed", Some(&token))).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "user:7"));
    let (status, challenge, _) = call(&app, axum_get_request("/feed", Some(&revoked))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    let (status, _, _) = call(&app, axum_get_request("/feed", Some(&other))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let malformed = Request::get("/feed")
        .header(AUTHORIZATION, "Bearer")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, malformed).await.0, StatusCode::BAD_REQUEST);
    // Without any layer, Option<Authenticated> is still a misconfiguration, not anonymous.
    let (status, _, _) = call(&app, axum_get_request("/unprotected", None)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

// --- rendered bodies ----------------------------------------------------------------------------

fn json(response: &Response<String>) -> serde_json::Value {
    serde_json::from_str(response.body()).unwrap()
}

#[tokio::test]
async fn bodies_are_empty_by_default_and_keep_no_content_type() {
    let layer = BearerAuth::new(manager()).layer();
    let response = send(&layer, with_bearer("acme_garbage")).await;
    assert_eq!(response.body(), "");
    assert!(response.headers().get(CONTENT_TYPE).is_none());
}

#[tokio::test]
async fn oauth_json_bodies_follow_the_challenge_and_keep_its_headers() {
    let manager = manager();
    let reader = issue(&manager, "widgets:read").await;
    let auth = BearerAuth::new(manager)
        .realm("acme")
        .render_rejections(OAuthErrorJson);
    let layer = auth.require("widgets:write").unwrap();

    let missing = send(&layer, get("/").body(()).unwrap()).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&missing), Some("Bearer realm=\"acme\""));
    assert_eq!(
        json(&missing),
        serde_json::json!({"error_description": "An access token is required."})
    );

    let invalid = send(&layer, with_bearer("acme_garbage")).await;
    assert_eq!(invalid.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(invalid.headers()["cache-control"], "no-store");
    assert_eq!(
        challenge(&invalid),
        Some("Bearer realm=\"acme\", error=\"invalid_token\"")
    );
    assert_eq!(
        json(&invalid),
        serde_json::json!({"error": "invalid_token", "error_description": "The access token is invalid."})
    );

    let scope = send(&layer, with_bearer(&reader)).await;
    assert_eq!(scope.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        json(&scope),
        serde_json::json!({
            "error": "insufficient_scope",
            "error_description": "The access token lacks a required scope.",
            "scope": "widgets:write",
        })
    );
    assert!(!scope.body().contains(&reader));

    let bad = send(
        &layer,
        get("/").header(AUTHORIZATION, "Bearer").body(()).unwrap(),
    )
    .await;
    assert_eq!(json(&bad)["error"], "invalid_request");
}

#[tokio::test]
async fn problem_json_bodies_carry_type_title_status_and_detail() {
    let manager = manager();
    let gadgets = issue(&manager, "gadgets:read").await;
    let auth = BearerAuth::new(manager).render_rejections(ProblemJson);
    let invalid = send(&auth.layer(), with_bearer("acme_garbage")).await;
    assert_eq!(invalid.headers()[CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        challenge(&invalid),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert_eq!(
        json(&invalid),
        serde_json::json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "The access token is invalid.",
            "error": "invalid_token",
        })
    );
    let any = auth.require_any(["widgets:read", "widgets:admin"]).unwrap();
    let scope = send(&any, with_bearer(&gadgets)).await;
    assert_eq!(
        json(&scope),
        serde_json::json!({
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "detail": "The access token has none of the accepted scopes.",
            "error": "insufficient_scope",
            "scope": "widgets:read widgets:admin",
        })
    );
}

#[tokio::test]
async fn rendered_invalid_token_bodies_are_identical_for_every_cause() {
    let manager = manager();
    let (revoked_id, revoked) = {
        let issued = manager
            .issue(IssueRequest::new("user:7", ScopeSet::parse("a").unwrap()))
            .await
            .unwrap();
        (issued.token.id(), issued.token.expose_secret().to_owned())
    };
    manager
        .revoke(RevokeSelector::Token(revoked_id), "test")
        .await
        .unwrap();
    let valid = issue(&manager, "a").await;
    let altered = format!(
        "{}{}",
        &valid[..valid.len() - 1],
        if valid.ends_with('0') { '1' } else { '0' }
    );
    let unknown =
        token_core::PlaintextToken::generate(&token_core::TokenPrefix::new("acme").unwrap())
            .unwrap()
            .expose_secret()
            .to_owned();
    for renderer in [0, 1] {
        let auth = BearerAuth::new(manager.clone()).api_key_header();
        let auth = if renderer == 0 {
            auth.render_rejections(OAuthErrorJson)
        } else {
            auth.render_rejections(ProblemJson)
        };
        let layer = auth.layer();
        let mut seen = Vec::new();
        for token in [&revoked, &altered, &unknown, &"not-a-token".to_owned()] {
            for request in [with_bearer(token), with_key(token)] {
                let response = send(&layer, request).await;
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert!(!response.body().contains(token.as_str()));
                seen.push(format!("{:?} {}", response.headers(), response.body()));
            }
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    }
}

#[tokio::test]
async fn a_closure_renders_bodies_and_none_keeps_the_empty_body() {
    let manager = manager();
    let layer = BearerAuth::new(manager)
        .render_rejections(|r: &Rejection<'_>| {
            (r.kind() == RejectionKind::InvalidToken).then(|| {
                RejectionBody::new(
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                    format!("{} {}", r.status().as_u16(), r.description()),
                )
            })
        })
        .layer();
    let invalid = send(&layer, with_bearer("acme_garbage")).await;
    assert_eq!(invalid.body(), "401 The access token is invalid.");
    assert_eq!(invalid.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(
        challenge(&invalid),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    let missing = send(&layer, get("/").body(()).unwrap()).await;
    assert_eq!(missing.body(), "");
    assert!(missing.headers().get(CONTENT_TYPE).is_none());
}

#[tokio::test]
async fn bodies_reach_text_body_types_and_other_body_types_keep_the_empty_body() {
    let layer = BearerAuth::new(manager())
        .render_rejections(OAuthErrorJson)
        .layer();
    let bytes = layer
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Vec::<u8>::new()))
        }))
        .oneshot(with_bearer("acme_garbage"))
        .await
        .unwrap();
    assert_eq!(bytes.headers()[CONTENT_TYPE], "application/json");
    assert!(bytes.body().starts_with(b"{\"error\":\"invalid_token\""));
    // A body type that cannot hold text (here `()`) still works: challenge kept, no body.
    let unit = layer
        .layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }))
        .oneshot(with_bearer("acme_garbage"))
        .await
        .unwrap();
    assert_eq!(unit.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&unit),
        Some("Bearer realm=\"api\", error=\"invalid_token\"")
    );
    assert!(unit.headers().get(CONTENT_TYPE).is_none());
}
