//! Starts the example server on a random loopback port (SQLite file storage) and drives its
//! contract over real HTTP.

use std::time::Duration;

use examples::server::{bootstrap_admin, open_manager, serve};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use token_core::{HashKey, KeyId, PlaintextToken};

struct Running {
    base: String,
    /// The bootstrap admin token, kept in its zeroizing type (never copied into a `String`).
    admin: PlaintextToken,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("server.db").display());
        let manager = open_manager(&url, HashKey::new(KeyId::new(1), [9; 32]))
            .await
            .unwrap();
        let admin = bootstrap_admin(&manager).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(listener, manager, Duration::from_millis(50), async {
                let _ = stopped.await;
            })
            .await
            .map_err(|e| e.to_string())
        });
        Self {
            base,
            admin: admin.token,
            client: Client::new(),
            stop: Some(stop),
            server: Some(server),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request to `path` with the bootstrap admin token.
    fn as_admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(self.admin.expose_secret())
    }

    async fn create(&self, body: Value) -> (StatusCode, Value) {
        let response = self
            .as_admin(Method::POST, "/tokens")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn widgets(&self, token: &str) -> reqwest::Response {
        self.client
            .get(self.url("/widgets"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn introspect(&self, token: &str) -> Value {
        let response = self
            .as_admin(Method::POST, "/oauth/introspect")
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("server did not shut down")
                .unwrap()
                .unwrap();
        }
    }
}

fn www_authenticate(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn issue_use_revoke_then_401() {
    let server = Running::start().await;
    let (status, issued) = server
        .create(json!({"subject": "user:1", "scopes": ["widgets:read"], "ttl_seconds": 600, "name": "reader"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(issued["expires_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(server.widgets(&token).await.status(), StatusCode::OK);
    let write = server
        .client
        .post(server.url("/widgets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(&write),
        "Bearer realm=\"token-example\", error=\"insufficient_scope\", scope=\"widgets:write\""
    );

    let record: Value = server
        .as_admin(Method::GET, &format!("/tokens/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["subject"], "user:1");
    assert_eq!(record["state"], "active");
    assert!(record.get("hash").is_none());
    assert!(!record.to_string().contains(&token[8 + 22..8 + 65]));

    let deleted = server
        .as_admin(Method::DELETE, &format!("/tokens/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let rejected = server.widgets(&token).await;
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&rejected),
        "Bearer realm=\"token-example\", error=\"invalid_token\""
    );

    let audit: Value = server
        .as_admin(Method::GET, &format!("/tokens/{id}/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // The denial is written by a background task, so it may land before or after the
    // revocation in the trail's order.
    assert_eq!(kinds[0], "issued");
    assert!(kinds.contains(&"denied"), "{kinds:?}");
    assert!(kinds.contains(&"revoked"), "{kinds:?}");

    // Without credentials, and with a non-admin token, the admin API refuses.
    let anonymous = server
        .client
        .get(server.url(&format!("/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&anonymous),
        "Bearer realm=\"token-example\""
    );
    let unknown = server
        .as_admin(Method::DELETE, "/tokens/0000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad_request = server
        .create(json!({"subject": "x", "scopes": ["Not A Scope"], "ttl_seconds": 60}))
        .await;
    assert_eq!(bad_request.0, StatusCode::BAD_REQUEST);
    for admin_scope in ["tokens:admin", "tokens", "*", "tokens:*"] {
        let escalation = server
            .create(json!({"subject": "x", "scopes": [admin_scope], "ttl_seconds": 60}))
            .await;
        assert_eq!(escalation.0, StatusCode::BAD_REQUEST, "{admin_scope}");
        assert_eq!(escalation.1["error"], "invalid_scope");
    }
    let introspector = server
        .create(json!({"subject": "rs", "scopes": ["tokens:introspect"], "ttl_seconds": 60}))
        .await;
    assert_eq!(introspector.0, StatusCode::CREATED);
    let too_long = server
        .create(json!({"subject": "x", "scopes": ["a"], "ttl_seconds": 400 * 86_400}))
        .await;
    assert_eq!(too_long.0, StatusCode::BAD_REQUEST);
    assert!(
        too_long.1["error_description"]
            .as_str()
            .unwrap()
            .contains("exceeds the policy maximum")
    );
    server.stop().await;
}

#[tokio::test]
async fn rotate_with_grace_then_conflict() {
    let server = Running::start().await;
    let (_, issued) = server
        .create(json!({"subject": "svc", "scopes": ["widgets:read", "widgets:write"], "ttl_seconds": 600}))
        .await;
    let old = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let rotate = |grace: u64| {
        server
            .as_admin(Method::POST, &format!("/tokens/{id}/rotate"))
            .json(&json!({"grace_seconds": grace}))
            .send()
    };
    let response = rotate(60).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        rotated["expires_at"], issued["expires_at"],
        "rotation never extends lifetime"
    );
    assert_eq!(
        server.widgets(&old).await.status(),
        StatusCode::OK,
        "old token in grace"
    );
    assert_eq!(server.widgets(&new).await.status(), StatusCode::OK);
    let write = server
        .client
        .post(server.url("/widgets"))
        .bearer_auth(&new)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::CREATED, "widgets:write");
    assert_eq!(rotate(60).await.unwrap().status(), StatusCode::CONFLICT);

    // Zero grace ends the old token at once.
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    let response = server
        .as_admin(Method::POST, &format!("/tokens/{new_id}/rotate"))
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        server.widgets(&new).await.status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

#[tokio::test]
async fn introspection_active_and_inactive() {
    let server = Running::start().await;
    let (_, issued) = server
        .create(json!({"subject": "user:9", "scopes": ["widgets:read"], "ttl_seconds": 600, "max_uses": 5}))
        .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    let active = server.introspect(&token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], "user:9");
    assert_eq!(active["scope"], "widgets:read");
    assert_eq!(active["jti"], issued["id"]);
    assert_eq!(active["token_type"], "Bearer");
    assert!(active["exp"].as_i64().unwrap() > active["iat"].as_i64().unwrap());
    assert!(active.get("nbf").is_none());

    for inactive in ["garbage", "", &token[..token.len() - 1]] {
        assert_eq!(server.introspect(inactive).await, json!({"active": false}));
    }
    server
        .client
        .post(server.url("/oauth/revoke"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(server.introspect(&token).await, json!({"active": false}));

    // The caller needs tokens:introspect; a token without it is answered 401 with a challenge
    // naming the scope (RFC 7662 §2.3, RFC 6750 §3), not 403.
    let (_, reader) = server
        .create(json!({"subject": "r", "scopes": ["widgets:read"], "ttl_seconds": 60}))
        .await;
    let unprivileged = server
        .client
        .post(server.url("/oauth/introspect"))
        .bearer_auth(reader["token"].as_str().unwrap())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(unprivileged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unprivileged.headers()["www-authenticate"],
        "Bearer realm=\"token-example\", error=\"insufficient_scope\", scope=\"tokens:introspect\""
    );
    // Elsewhere a missing scope stays 403.
    let elsewhere = server
        .client
        .post(server.url("/widgets"))
        .bearer_auth(reader["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let anonymous = server
        .client
        .post(server.url("/oauth/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn rfc7009_revocation_by_possession() {
    let server = Running::start().await;
    let revoke = |form: Vec<(&'static str, String)>| {
        server
            .client
            .post(server.url("/oauth/revoke"))
            .form(&form)
            .send()
    };
    let unknown = revoke(vec![
        (
            "token",
            "example_0000000000000000000000000000000000000000000000000000000000000000000000".into(),
        ),
        ("token_type_hint", "refresh_token".into()),
    ])
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::OK);
    assert_eq!(
        revoke(vec![("token", "junk".into())])
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        revoke(vec![("nothing", "x".into())])
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );

    let (_, issued) = server
        .create(json!({"subject": "leaky", "scopes": ["widgets:read"], "ttl_seconds": 600}))
        .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(server.widgets(&token).await.status(), StatusCode::OK);
    let response = revoke(vec![
        ("token", token.clone()),
        ("token_type_hint", "access_token".into()),
    ])
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        server.widgets(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Tokens in the query string are refused.
    let in_query = server
        .client
        .get(server.url(&format!("/widgets?access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

#[tokio::test]
async fn oauth_bodies_are_checked_and_token_responses_are_not_cached() {
    let server = Running::start().await;
    let response = server
        .as_admin(Method::POST, "/tokens")
        .json(&json!({"subject": "c", "scopes": ["widgets:read"], "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["cache-control"], "no-store", "issue");
    let issued: Value = response.json().await.unwrap();
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    for path in [format!("/tokens/{id}"), format!("/tokens/{id}/audit")] {
        let response = server.as_admin(Method::GET, &path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
    let introspect = |body: String, content_type: &'static str| {
        server
            .as_admin(Method::POST, "/oauth/introspect")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    for (body, content_type) in [
        (format!("token={token}"), FORM),
        ("token=garbage".to_owned(), FORM),
    ] {
        let response = introspect(body, content_type).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["cache-control"],
            "no-store",
            "introspect"
        );
    }
    // A repeated token, another content type: 400 invalid_request, the body never echoed.
    for (body, content_type) in [
        (format!("token={token}&token=garbage"), FORM),
        (json!({"token": token}).to_string(), "application/json"),
    ] {
        let response = introspect(body, content_type).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{content_type}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "invalid_request");
        assert!(!error.to_string().contains(&token), "{error}");
    }
    // Bodies are capped before anything is parsed, on the unauthenticated endpoint too.
    let flood: String = (0..2_000).map(|i| format!("{i}&")).collect();
    let response = server
        .client
        .post(server.url("/oauth/revoke"))
        .header("content-type", FORM)
        .body(flood)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_request");
    let duplicate = server
        .client
        .post(server.url("/oauth/revoke"))
        .header("content-type", FORM)
        .body(format!("token=junk&token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        server.widgets(&token).await.status(),
        StatusCode::OK,
        "a refused revocation request revokes nothing"
    );
    let rotated = server
        .as_admin(Method::POST, &format!("/tokens/{id}/rotate"))
        .json(&json!({"grace_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), StatusCode::CREATED);
    assert_eq!(rotated.headers()["cache-control"], "no-store", "rotate");
    server.stop().await;
}

#[tokio::test]
async fn an_unsupported_database_url_is_refused_without_echoing_its_password() {
    let error = open_manager(
        "mysql://app:s3cr3t-pw@db/x",
        HashKey::new(KeyId::new(1), [9; 32]),
    )
    .await
    .expect_err("MySQL is not supported");
    let shown = format!("{error} / {error:?}");
    assert!(!shown.contains("s3cr3t-pw"), "{shown}");
    assert!(shown.contains("mysql://app:***@db/x"), "{shown}");
}

#[tokio::test]
async fn protected_routes_accept_x_api_key_and_refusals_have_json_bodies() {
    let server = Running::start().await;
    let (status, issued) = server
        .create(json!({"subject": "user:3", "scopes": ["widgets:read"], "ttl_seconds": 600}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let with_key = |method: Method, path: &str, token: &str| {
        server
            .client
            .request(method, server.url(path))
            .header("x-api-key", token)
    };

    let read = with_key(Method::GET, "/widgets", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let id = issued["id"].as_str().unwrap();
    let admin = with_key(
        Method::GET,
        &format!("/tokens/{id}"),
        server.admin.expose_secret(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);

    // Refusals keep the RFC 6750 challenge and carry the RFC 6749 §5.2 body, whichever header
    // carried the token; the token is never echoed.
    let write = with_key(Method::POST, "/widgets", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(&write),
        "Bearer realm=\"token-example\", error=\"insufficient_scope\", scope=\"widgets:write\""
    );
    assert_eq!(
        write.json::<Value>().await.unwrap(),
        json!({
            "error": "insufficient_scope",
            "error_description": "The access token lacks a required scope.",
            "scope": "widgets:write",
        })
    );
    let invalid = with_key(Method::GET, "/widgets", "example_garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&invalid),
        "Bearer realm=\"token-example\", error=\"invalid_token\""
    );
    assert_eq!(invalid.headers()["cache-control"], "no-store");
    assert_eq!(
        invalid.json::<Value>().await.unwrap(),
        json!({"error": "invalid_token", "error_description": "The access token is invalid."})
    );
    let anonymous = server
        .client
        .get(server.url("/widgets"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&anonymous),
        "Bearer realm=\"token-example\""
    );
    assert_eq!(
        anonymous.json::<Value>().await.unwrap(),
        json!({"error_description": "An access token is required."})
    );

    // Exactly one credential per request.
    let both = with_key(Method::GET, "/widgets", &token)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        www_authenticate(&both),
        "Bearer realm=\"token-example\", error=\"invalid_request\""
    );
    let body = both.text().await.unwrap();
    assert!(body.contains("\"invalid_request\""), "{body}");
    assert!(!body.contains(&token));
    server.stop().await;
}

/// `GET /metrics` shows the library's counters in the Prometheus text format, to the admin only.
#[tokio::test]
async fn metrics_page_shows_the_library_counters_to_the_admin() {
    let server = Running::start().await;
    let (_, created) = server
        .create(json!({"subject": "m", "scopes": ["widgets:read"], "ttl_seconds": 60}))
        .await;
    let token = created["token"].as_str().unwrap().to_owned();
    assert_eq!(server.widgets(&token).await.status(), StatusCode::OK);

    let page = server
        .as_admin(Method::GET, "/metrics")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = page.text().await.unwrap();
    assert!(
        text.contains("token_validations_total{outcome=\"ok\"}"),
        "{text}"
    );
    assert!(
        text.contains("token_operations_total{operation=\"issue\",outcome=\"ok\"}"),
        "{text}"
    );
    assert!(!text.contains(&token), "a token on the metrics page");

    // Not for a token without tokens:admin.
    let denied = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_patched_narrower_suspended_and_resumed() {
    let server = Running::start().await;
    let (status, issued) = server
        .create(json!({
            "subject": "svc:ci", "scopes": ["widgets:read", "widgets:write"], "ttl_seconds": 3600,
            "max_uses": 50, "metadata": {"team": "payments"}, "allowed_cidrs": ["127.0.0.0/8"]
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let path = format!("/tokens/{id}");
    // The caller (loopback) is inside the allowlist.
    assert_eq!(server.widgets(&token).await.status(), StatusCode::OK);
    let shown: Value = server
        .as_admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["metadata"], json!({"team": "payments"}));
    assert_eq!(shown["allowed_cidrs"], json!(["127.0.0.0/8"]));
    assert_eq!(shown["suspended_at"], Value::Null);
    assert_eq!(shown["state"], "active");
    assert!(shown.get("hash").is_none());

    let patch = |body: Value| server.as_admin(Method::PATCH, &path).json(&body).send();
    let narrowed = patch(json!({
        "scopes": ["widgets:read"], "ttl_seconds": 600, "max_uses": 10, "name": "reader",
        "metadata": {"team": "billing"}, "allowed_cidrs": ["127.0.0.1"]
    }))
    .await
    .unwrap();
    assert_eq!(narrowed.status(), StatusCode::OK);
    let narrowed: Value = narrowed.json().await.unwrap();
    assert_eq!(narrowed["scopes"], json!(["widgets:read"]));
    assert_eq!(
        (narrowed["max_uses"].clone(), narrowed["name"].clone()),
        (json!(10), json!("reader"))
    );
    assert_eq!(narrowed["allowed_cidrs"], json!(["127.0.0.1/32"]));
    let write = server
        .client
        .post(server.url("/widgets"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        write.status(),
        StatusCode::FORBIDDEN,
        "the narrowed scope holds at once"
    );

    for (widen, field) in [
        (
            json!({"scopes": ["widgets:read", "widgets:admin"]}),
            "scopes",
        ),
        (json!({"ttl_seconds": 7200}), "expires_at"),
        (json!({"max_uses": 11}), "max_uses"),
        (json!({"allowed_cidrs": ["0.0.0.0/0"]}), "allowed_cidrs"),
        (json!({"max_uses": null}), "max_uses"),
    ] {
        let refused = patch(widen.clone()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{widen}");
        let body: Value = refused.json().await.unwrap();
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains(field.trim_end_matches("_cidrs")),
            "{widen}: {description}"
        );
    }

    let suspend = server
        .as_admin(Method::POST, &format!("{path}/suspend"))
        .json(&json!({"reason": "INC-7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(suspend.status(), StatusCode::OK);
    let changed: Value = suspend.json().await.unwrap();
    assert_eq!(changed["changed"], json!([id]));
    assert_eq!(
        server.widgets(&token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.introspect(&token).await, json!({"active": false}));
    let shown: Value = server
        .as_admin(Method::GET, &path)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        shown["suspended_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{shown}"
    );
    assert_eq!(shown["state"], "suspended");
    let resume = server
        .as_admin(Method::POST, &format!("{path}/resume"))
        .json(&json!({"reason": "INC-7 closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), StatusCode::OK);
    assert_eq!(server.widgets(&token).await.status(), StatusCode::OK);
    server.as_admin(Method::DELETE, &path).send().await.unwrap();
    let revived = server
        .as_admin(Method::POST, &format!("{path}/resume"))
        .json(&json!({"reason": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        revived.status(),
        StatusCode::CONFLICT,
        "a revoked token is not resumed"
    );
    server.stop().await;
}

#[tokio::test]
async fn bound_tokens_are_issued_introspected_as_dpop_and_refused_as_bearer() {
    let server = Running::start().await;
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    let (status, issued) = server
        .create(json!({"subject": "svc:bound", "scopes": ["widgets:read"], "ttl_seconds": 600, "dpop_jkt": jkt}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = issued["token"].as_str().unwrap().to_owned();
    let introspected = server.introspect(&token).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["token_type"], "DPoP");
    assert_eq!(introspected["cnf"], json!({"jkt": jkt}));
    let as_bearer = server.widgets(&token).await;
    assert_eq!(as_bearer.status(), StatusCode::UNAUTHORIZED);
    let shown: Value = server
        .as_admin(
            Method::GET,
            &format!("/tokens/{}", issued["id"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["dpop_jkt"], jkt, "inspect shows the binding");
    let (status, refused) = server
        .create(json!({"subject": "s", "scopes": ["widgets:read"], "ttl_seconds": 60, "dpop_jkt": "short"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    // RFC 7009 revocation works with the token alone.
    server
        .client
        .post(server.url("/oauth/revoke"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(server.introspect(&token).await, json!({"active": false}));
    server.stop().await;
}
