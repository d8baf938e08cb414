//! Every layer option over real HTTP: an axum server on a loopback port, a `reqwest` client,
//! real headers on the wire (the API key header, any-of and path-derived requirements, the
//! optional extractor, rendered rejections with the RFC 6750 challenge intact).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use http::request::Parts;
use token_core::{
    AuditKind, AuditQuery, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, Scope,
    ScopeError, ScopeSet, TokenManager,
};
use token_store_memory::MemoryStore;
use token_tower::{Authenticated, BearerAuth, OAuthErrorJson, ProblemJson, RenderRejection};

fn manager() -> TokenManager {
    TokenManager::builder(
        MemoryStore::new(),
        Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
    )
    .prefix("acme")
    .unwrap_or_else(|e| panic!("{e}"))
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn issue(manager: &TokenManager, subject: &str, scopes: &str) -> String {
    let issued = manager
        .issue(IssueRequest::new(
            subject,
            ScopeSet::parse(scopes).unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    issued.token.expose_secret().to_owned()
}

/// `/repos/{owner}/{repo}` requires `repo:{owner}/{repo}:read`.
fn repo_read(parts: &Parts) -> Result<[Scope; 1], ScopeError> {
    let segments: Vec<&str> = parts.uri.path().split('/').collect();
    match segments.as_slice() {
        ["", "repos", owner, repo] => Ok([Scope::new(&format!("repo:{owner}/{repo}:read"))?]),
        _ => Err(ScopeError::Empty),
    }
}

/// The README's router: API key header, any-of, path-derived and optional routes, rendered
/// bodies.
fn app(manager: TokenManager, renderer: impl RenderRejection) -> Router {
    let auth = BearerAuth::new(manager)
        .realm("acme")
        .api_key_header()
        .render_rejections(renderer);
    let subject = |who: Authenticated| async move { who.subject().to_owned() };
    Router::new()
        .route("/widgets", get(subject))
        .route_layer(
            auth.require_any(["widgets:read", "widgets:admin"])
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .route(
            "/repos/{owner}/{repo}",
            get(subject).route_layer(auth.require_with(repo_read)),
        )
        .route(
            "/news",
            get(|who: Option<Authenticated>| async move {
                who.map_or("anonymous".to_owned(), |w| w.subject().to_owned())
            })
            .route_layer(auth.layer().optional()),
        )
}

/// Serves `app` on a loopback port (with the peer address, as a real deployment has it) and
/// returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{addr}")
}

/// What came back: status, `WWW-Authenticate`, `Content-Type` and body.
struct Answer {
    status: u16,
    challenge: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_else(|e| panic!("{e}")).to_owned())
    };
    let (status, challenge, content_type) = (
        response.status().as_u16(),
        header("www-authenticate"),
        header("content-type"),
    );
    let body = response.text().await.unwrap_or_else(|e| panic!("{e}"));
    Answer {
        status,
        challenge,
        content_type,
        body,
    }
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_header_and_bearer_both_authenticate_and_two_credentials_are_refused() {
    let manager = manager();
    let token = issue(&manager, "user:1", "widgets:read").await;
    let base = serve(app(manager, OAuthErrorJson)).await;
    let client = reqwest::Client::new();
    let by_key = send(
        client
            .get(format!("{base}/widgets"))
            .header("x-api-key", &token),
    )
    .await;
    assert_eq!((by_key.status, by_key.body.as_str()), (200, "user:1"));
    let by_bearer = send(client.get(format!("{base}/widgets")).bearer_auth(&token)).await;
    assert_eq!((by_bearer.status, by_bearer.body.as_str()), (200, "user:1"));
    let both = send(
        client
            .get(format!("{base}/widgets"))
            .bearer_auth(&token)
            .header("x-api-key", &token),
    )
    .await;
    assert_eq!(both.status, 400);
    assert_eq!(
        both.challenge.as_deref(),
        Some("Bearer realm=\"acme\", error=\"invalid_request\"")
    );
    let missing = send(client.get(format!("{base}/widgets"))).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.challenge.as_deref(), Some("Bearer realm=\"acme\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_of_accepts_either_scope_and_names_both_in_the_403() {
    let manager = manager();
    let admin = issue(&manager, "user:admin", "widgets:admin").await;
    let writer = issue(&manager, "user:writer", "widgets:write").await;
    let base = serve(app(manager, OAuthErrorJson)).await;
    let client = reqwest::Client::new();
    let ok = send(
        client
            .get(format!("{base}/widgets"))
            .header("x-api-key", &admin),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "user:admin"));
    let refused = send(
        client
            .get(format!("{base}/widgets"))
            .header("x-api-key", &writer),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.challenge.as_deref(),
        Some(
            "Bearer realm=\"acme\", error=\"insufficient_scope\", \
             scope=\"widgets:read widgets:admin\""
        )
    );
    assert_eq!(json(&refused)["error"], "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_derived_scopes_follow_the_requested_resource() {
    let manager = manager();
    let site = issue(&manager, "user:site", "repo:acme/site:read").await;
    let base = serve(app(manager, OAuthErrorJson)).await;
    let client = reqwest::Client::new();
    let ok = send(
        client
            .get(format!("{base}/repos/acme/site"))
            .bearer_auth(&site),
    )
    .await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "user:site"));
    let other = send(
        client
            .get(format!("{base}/repos/acme/other"))
            .bearer_auth(&site),
    )
    .await;
    assert_eq!(other.status, 403);
    assert_eq!(
        other.challenge.as_deref(),
        Some("Bearer realm=\"acme\", error=\"insufficient_scope\", scope=\"repo:acme/other:read\"")
    );
    // A segment that is no valid scope text is refused, never decoded into another resource.
    let encoded = send(
        client
            .get(format!("{base}/repos/acme%2Fsite/x"))
            .bearer_auth(&site),
    )
    .await;
    assert_eq!(encoded.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_routes_let_anonymous_callers_in_and_still_refuse_bad_credentials() {
    let manager = manager();
    let token = issue(&manager, "user:reader", "news:read").await;
    let revoked = manager
        .issue(IssueRequest::new(
            "user:gone",
            ScopeSet::parse("news:read").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .revoke(RevokeSelector::Token(revoked.token.id()), "test")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let base = serve(app(manager.clone(), OAuthErrorJson)).await;
    let client = reqwest::Client::new();
    let anonymous = send(client.get(format!("{base}/news"))).await;
    assert_eq!(
        (anonymous.status, anonymous.body.as_str()),
        (200, "anonymous")
    );
    let known = send(
        client
            .get(format!("{base}/news"))
            .header("x-api-key", &token),
    )
    .await;
    assert_eq!((known.status, known.body.as_str()), (200, "user:reader"));
    let bad = send(
        client
            .get(format!("{base}/news"))
            .bearer_auth(revoked.token.expose_secret()),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.challenge.as_deref(),
        Some("Bearer realm=\"acme\", error=\"invalid_token\"")
    );
    // The refusal was audited with the caller's address from the connection.
    manager.flush_denials().await;
    let denied = manager
        .query_audit(AuditQuery::new().kind(AuditKind::Denied))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ip = denied
        .items
        .first()
        .and_then(|record| record.event.client_ip.clone());
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_rejections_keep_the_challenge_header() {
    let manager = manager();
    let gadgets = issue(&manager, "user:g", "gadgets:read").await;
    let oauth = serve(app(manager.clone(), OAuthErrorJson)).await;
    let problem = serve(app(manager, ProblemJson)).await;
    let client = reqwest::Client::new();
    let garbage = "acme_garbage";

    let invalid = send(client.get(format!("{oauth}/widgets")).bearer_auth(garbage)).await;
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.challenge.as_deref(),
        Some("Bearer realm=\"acme\", error=\"invalid_token\"")
    );
    assert_eq!(invalid.content_type.as_deref(), Some("application/json"));
    assert_eq!(json(&invalid)["error"], "invalid_token");

    let invalid = send(
        client
            .get(format!("{problem}/widgets"))
            .bearer_auth(garbage),
    )
    .await;
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.challenge.as_deref(),
        Some("Bearer realm=\"acme\", error=\"invalid_token\"")
    );
    assert_eq!(
        invalid.content_type.as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(json(&invalid)["status"], 401);
    let scope = send(
        client
            .get(format!("{problem}/widgets"))
            .header("x-api-key", &gadgets),
    )
    .await;
    assert_eq!(scope.status, 403);
    assert_eq!(json(&scope)["scope"], "widgets:read widgets:admin");
    assert!(
        scope
            .challenge
            .as_deref()
            .is_some_and(|c| c.contains("error=\"insufficient_scope\""))
    );
}
