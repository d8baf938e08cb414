//! Every RFC 6750 response class of the layer, driven with `tower::ServiceExt::oneshot`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, USER_AGENT, WWW_AUTHENTICATE};
use http::{HeaderName, Request, Response, StatusCode};
use token_core::store::{
    ConsumeUse, CountLiveWithKey, ImmediateLookup, InsertOutcome, InsertToken, ListQuery,
    MarkExpired, PurgeRequest, RevocationStream, RevokeRequest, RotateOutcome, RotateToken,
    StoreError, TokenStore, TruncateAudit, UsageUpdate, UseOutcome,
};
use token_core::{
    AuditCheckpoint, AuditEvent, AuditKind, AuditQuery, AuditRecord, HashKey, IssueRequest, KeyId,
    Keyring, ManualClock, RevokeSelector, ScopeSet, TokenId, TokenManager, TokenRecord,
};
use token_store_memory::MemoryStore;
use token_tower::{Authenticated, BearerAuth, BearerAuthLayer, ClientAddr};
use tower::{Layer, ServiceExt, service_fn};

fn manager() -> TokenManager {
    manager_with_clock(ManualClock::starting_now())
}

fn manager_with_clock(clock: ManualClock) -> TokenManager {
    TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .prefix("acme")
    .unwrap()
    .clock(clock)
    .build()
    .unwrap()
}

async fn issue(manager: &TokenManager, scopes: &str) -> (TokenId, String) {
    let issued = manager
        .issue(IssueRequest::new(
            "user:7",
            ScopeSet::parse(scopes).unwrap(),
        ))
        .await
        .unwrap();
    (issued.token.id(), issued.token.expose_secret().to_owned())
}

/// Sends `request` through `layer` in front of a handler that echoes the subject and whether the
/// Authorization header was marked sensitive.
async fn send(layer: &BearerAuthLayer, request: Request<()>) -> Response<String> {
    let inner = service_fn(|req: Request<()>| async move {
        let who = req.extensions().get::<Authenticated>().cloned();
        let sensitive = req
            .headers()
            .get(AUTHORIZATION)
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

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A GET of `uri` with `Authorization: Bearer <token>`.
fn authorized(uri: &str, token: &str) -> Request<()> {
    get(uri)
        .header(AUTHORIZATION, bearer(token))
        .body(())
        .unwrap()
}

fn challenge(response: &Response<String>) -> Option<&str> {
    response
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_identity_and_sensitive_header() {
    let manager = manager();
    let (_, token) = issue(&manager, "widgets:read").await;
    let layer = BearerAuth::new(manager).require("widgets:read").unwrap();
    let response = send(&layer, authorized("/w", &token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "user:7|sensitive=true");
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let manager = manager();
    let (_, token) = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager).layer();
    let response = send(
        &layer,
        get("/")
            .header(AUTHORIZATION, format!("bearer {token}"))
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_credentials_get_a_bare_challenge() {
    let layer = BearerAuth::new(manager()).realm("acme").layer();
    let response = send(&layer, get("/").body(()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), Some("Bearer realm=\"acme\""));
    assert_eq!(response.body(), "");
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn other_schemes_count_as_no_credentials() {
    let layer = BearerAuth::new(manager()).layer();
    let response = send(
        &layer,
        get("/")
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), Some("Bearer realm=\"api\""));
}

#[tokio::test]
async fn malformed_headers_are_invalid_request() {
    let manager = manager();
    let (_, token) = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager).layer();
    for value in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer \"x\"",
        "Bearer ===",
        "",
        "  ",
        "Bearer\tabc",
        "Bearer,abc",
        "Bearerabc",
        "BEARER\t",
    ] {
        let response = send(
            &layer,
            get("/").header(AUTHORIZATION, value).body(()).unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
        assert_eq!(
            challenge(&response),
            Some("Bearer realm=\"api\", error=\"invalid_request\"")
        );
    }
    let non_utf8 = http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
    let response = send(
        &layer,
        get("/").header(AUTHORIZATION, non_utf8).body(()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let twice = get("/")
        .header(AUTHORIZATION, bearer(&token))
        .header(AUTHORIZATION, bearer(&token))
        .body(())
        .unwrap();
    let response = send(&layer, twice).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tokens_in_query_strings_are_refused() {
    let manager = manager();
    let (_, token) = issue(&manager, "a").await;
    let layer = BearerAuth::new(manager).layer();
    let response = send(
        &layer,
        get(&format!("/?access_token={token}")).body(()).unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        challenge(&response),
        Some("Bearer realm=\"api\", error=\"invalid_request\"")
    );
    // However the parameter name is encoded.
    for query in ["access%5Ftoken", "access_%74oken", "%61ccess_token"] {
        let response = send(&layer, get(&format!("/?{query}={token}")).body(()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    let both = get(&format!("/?x=1&access_token={token}"))
        .header(AUTHORIZATION, bearer(&token))
        .body(())
        .unwrap();
    assert_eq!(send(&layer, both).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_revoked_expired_and_garbage_tokens_get_identical_invalid_token_responses() {
    let clock = ManualClock::starting_now();
    let manager = manager_with_clock(clock.clone());
    let expired = manager
        .issue(
            IssueRequest::new("user:7", ScopeSet::parse("a").unwrap()).ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let expired = expired.token.expose_secret().to_owned();
    clock.advance(Duration::from_secs(61));
    let (revoked_id, revoked) = issue(&manager, "a").await;
    manager
        .revoke(RevokeSelector::Token(revoked_id), "test")
        .await
        .unwrap();
    let (_, valid) = issue(&manager, "a").await;
    let unknown_token =
        token_core::PlaintextToken::generate(&token_core::TokenPrefix::new("acme").unwrap())
            .unwrap();
    let unknown = unknown_token.expose_secret().to_owned();
    // Same length, one character changed: fails the checksum.
    let altered = format!(
        "{}{}",
        &valid[..valid.len() - 1],
        if valid.ends_with('0') { '1' } else { '0' }
    );
    let layer = BearerAuth::new(manager).layer();
    let mut seen = Vec::new();
    for token in [
        revoked.as_str(),
        expired.as_str(),
        unknown.as_str(),
        altered.as_str(),
        "not-a-token",
        "acme_short",
    ] {
        let response = send(&layer, authorized("/", token)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        seen.push(format!("{:?} {}", response.headers(), response.body()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    assert!(seen[0].contains("error=\\\"invalid_token\\\""));
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_required_scopes() {
    let manager = manager();
    let (_, token) = issue(&manager, "widgets:read").await;
    let layer = BearerAuth::new(manager)
        .require("widgets:write widgets:read")
        .unwrap();
    let response = send(&layer, authorized("/", &token)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"widgets:write widgets:read\""
        )
    );
}

#[tokio::test]
async fn insufficient_scope_as_401_answers_401_with_the_insufficient_scope_challenge() {
    let manager = manager();
    let (_, reader) = issue(&manager, "widgets:read").await;
    let (_, introspector) = issue(&manager, "tokens:introspect").await;
    let layer = BearerAuth::new(manager)
        .realm("acme")
        .require("tokens:introspect")
        .unwrap()
        .insufficient_scope_as_401();
    let response = send(&layer, authorized("/introspect", &reader)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&response),
        Some("Bearer realm=\"acme\", error=\"insufficient_scope\", scope=\"tokens:introspect\"")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.body(), "");

    // Only the insufficient-scope answer changes.
    let allowed = send(&layer, authorized("/introspect", &introspector)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    let anonymous = send(&layer, get("/introspect").body(()).unwrap()).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&anonymous), Some("Bearer realm=\"acme\""));
    let invalid = send(&layer, authorized("/introspect", "acme_garbage")).await;
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&invalid),
        Some("Bearer realm=\"acme\", error=\"invalid_token\"")
    );
    assert!(format!("{layer:?}").contains("401"), "{layer:?}");
}

#[tokio::test]
async fn wildcard_requirements_are_refused_at_configuration() {
    let auth = BearerAuth::new(manager());
    assert!(auth.require("widgets:*").is_err());
    assert!(auth.require("Widgets").is_err());
    assert!(auth.require("widgets:read").is_ok());
}

#[tokio::test]
async fn context_flows_into_audit_events() {
    // Every denial is written (no coalescing), so each request's context is visible.
    let manager = TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .prefix("acme")
    .unwrap()
    .denied_event_interval(std::time::Duration::ZERO)
    .build()
    .unwrap();
    let (id, token) = issue(&manager, "a").await;
    manager
        .revoke(RevokeSelector::Token(id), "t")
        .await
        .unwrap();
    let layer = BearerAuth::new(manager.clone())
        .trust_client_ip_header(HeaderName::from_static("x-forwarded-for"))
        .layer();
    let request = get("/")
        .header(AUTHORIZATION, bearer(&token))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .header(USER_AGENT, "client/1.0")
        .header("x-request-id", "req-42")
        .body(())
        .unwrap();
    assert_eq!(
        send(&layer, request).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let events = manager.audit(id).await.unwrap();
    let denied = events
        .iter()
        .find(|e| e.event.kind == AuditKind::Denied)
        .expect("denied event");
    assert_eq!(denied.event.client_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(denied.event.user_agent.as_deref(), Some("client/1.0"));
    assert_eq!(denied.event.request_id.as_deref(), Some("req-42"));

    // Without a trusted header, the connection address is used.
    let layer = BearerAuth::new(manager.clone()).layer();
    let mut request = authorized("/", &token);
    request
        .extensions_mut()
        .insert(ClientAddr(SocketAddr::from(([192, 0, 2, 5], 4000))));
    send(&layer, request).await;
    let events = manager.audit(id).await.unwrap();
    assert_eq!(
        events.last().unwrap().event.client_ip.as_deref(),
        Some("192.0.2.5")
    );

    // A forged first header line is ignored: the last line is the proxy's. A value that is not
    // an IP address falls back to the connection address.
    let layer = BearerAuth::new(manager.clone())
        .trust_client_ip_header(HeaderName::from_static("x-forwarded-for"))
        .layer();
    for (lines, expected) in [
        (vec!["6.6.6.6", "198.51.100.1, 203.0.113.8"], "203.0.113.8"),
        (vec!["not-an-ip"], "192.0.2.5"),
    ] {
        let mut builder = get("/").header(AUTHORIZATION, bearer(&token));
        for line in lines {
            builder = builder.header("x-forwarded-for", line);
        }
        let mut request = builder.body(()).unwrap();
        request
            .extensions_mut()
            .insert(ClientAddr(SocketAddr::from(([192, 0, 2, 5], 4000))));
        send(&layer, request).await;
        let events = manager.audit(id).await.unwrap();
        assert_eq!(
            events.last().unwrap().event.client_ip.as_deref(),
            Some(expected)
        );
    }
}

/// A store whose every call fails, to show validation fails closed.
struct DownStore;

fn down() -> StoreError {
    StoreError::Backend {
        store: "down",
        source: "connection refused".into(),
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl TokenStore for DownStore {
    fn name(&self) -> &'static str {
        "down"
    }
    async fn insert(&self, _: &InsertToken) -> Result<InsertOutcome, StoreError> {
        Err(down())
    }
    async fn get(&self, _: TokenId) -> Result<Option<Arc<TokenRecord>>, StoreError> {
        Err(down())
    }
    fn get_now(&self, _: TokenId) -> ImmediateLookup {
        ImmediateLookup::MustWait
    }
    async fn rotate(&self, _: &RotateToken) -> Result<RotateOutcome, StoreError> {
        Err(down())
    }
    async fn revoke(&self, _: &RevokeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        Err(down())
    }
    async fn suspend(&self, _: &token_core::SuspendRequest) -> Result<Vec<AuditEvent>, StoreError> {
        Err(down())
    }
    async fn update(
        &self,
        _: &token_core::UpdateToken,
    ) -> Result<token_core::UpdateOutcome, StoreError> {
        Err(down())
    }
    async fn consume_use(&self, _: &ConsumeUse) -> Result<UseOutcome, StoreError> {
        Err(down())
    }
    async fn record_usage(&self, _: &[UsageUpdate]) -> Result<Vec<TokenId>, StoreError> {
        Err(down())
    }
    async fn list(&self, _: &ListQuery) -> Result<Vec<TokenRecord>, StoreError> {
        Err(down())
    }
    async fn count_live_with_key(&self, _: &CountLiveWithKey) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn append_audit(&self, _: &[AuditEvent]) -> Result<(), StoreError> {
        Err(down())
    }
    async fn query_audit(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Err(down())
    }
    async fn audit_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        Err(down())
    }
    async fn truncate_audit(&self, _: &TruncateAudit) -> Result<u64, StoreError> {
        Err(down())
    }
    async fn mark_expired(&self, _: &MarkExpired) -> Result<Vec<AuditEvent>, StoreError> {
        Err(down())
    }
    async fn purge(&self, _: &PurgeRequest) -> Result<Vec<AuditEvent>, StoreError> {
        Err(down())
    }
    async fn subscribe_revocations(&self) -> Result<Option<RevocationStream>, StoreError> {
        Err(down())
    }
}

#[tokio::test]
async fn store_failure_is_503_and_never_accepts() {
    let good = manager();
    let (_, token) = issue(&good, "a").await;
    let manager = TokenManager::builder(
        DownStore,
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .prefix("acme")
    .unwrap()
    .build()
    .unwrap();
    let layer = BearerAuth::new(manager).layer();
    let response = send(&layer, authorized("/", &token)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.body().is_empty(), "handler must not run");
}

#[tokio::test]
async fn axum_extractor_yields_the_identity() {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get as axum_get;

    let manager = manager();
    let (_, token) = issue(&manager, "widgets:read").await;
    let auth = BearerAuth::new(manager);
    let app: Router = Router::new()
        .route(
            "/widgets",
            axum_get(|who: Authenticated| async move { who.subject().to_owned() }),
        )
        .route_layer(auth.require("widgets:read").unwrap())
        .route(
            "/unprotected",
            axum_get(|who: Authenticated| async move { who.subject().to_owned() }),
        );
    let response = app
        .clone()
        .oneshot(
            Request::get("/widgets")
                .header(AUTHORIZATION, bearer(&token))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"user:7");
    let response = app
        .oneshot(Request::get("/unprotected").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
