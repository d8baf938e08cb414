//! The example server's rate limits over real HTTP: `POST /tokens` with `rate_limits`, the
//! fields and the 429 on a protected route, credits that refill shown by `GET /tokens/{id}`, and
//! two instances sharing one store and one Redis (`TOKEN_TEST_REDIS_URL`) allowing the limit in
//! total.

use std::time::Duration;

use examples::server::{ServerOptions, bootstrap_admin, open_manager, serve_with};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use token_core::{HashKey, KeyId, PlaintextToken};
use token_ratelimit::{RateLimiter, RedisBackend};

struct Instance {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server over the SQLite file `db` with `limiter`.
async fn start(db: &std::path::Path, limiter: RateLimiter) -> Instance {
    let url = format!("sqlite://{}", db.display());
    let manager = open_manager(&url, HashKey::new(KeyId::new(1), [9; 32]))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut options = ServerOptions::default();
    options.rate_limiter = Some(limiter);
    tokio::spawn(async move {
        let _ = serve_with(
            listener,
            manager,
            &options,
            Duration::from_secs(60),
            async {
                let _ = stopped.await;
            },
        )
        .await;
    });
    Instance {
        base,
        stop: Some(stop),
    }
}

async fn admin_token(db: &std::path::Path) -> PlaintextToken {
    let url = format!("sqlite://{}", db.display());
    let manager = open_manager(&url, HashKey::new(KeyId::new(1), [9; 32]))
        .await
        .unwrap();
    bootstrap_admin(&manager).await.unwrap().token
}

async fn create(client: &Client, at: &Instance, admin: &PlaintextToken, body: Value) -> Value {
    let response = client
        .post(format!("{}/tokens", at.base))
        .bearer_auth(admin.expose_secret())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn widgets(client: &Client, at: &Instance, token: &str) -> reqwest::Response {
    client
        .get(format!("{}/widgets", at.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn issued_limits_are_enforced_with_the_ietf_fields_and_a_429() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("limits.db");
    let admin = admin_token(&db).await;
    let server = start(&db, RateLimiter::builder().build()).await;
    let client = Client::new();
    let issued = create(
        &client,
        &server,
        &admin,
        json!({"subject": "svc", "scopes": ["widgets:read"], "ttl_seconds": 3600,
               "max_uses": 100, "refill": "daily",
               "rate_limits": [{"name": "requests", "limit": 2, "per_seconds": 3600}]}),
    )
    .await;
    let token = issued["token"].as_str().unwrap();
    for remaining in [1, 0] {
        let ok = widgets(&client, &server, token).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["ratelimit-policy"], r#""requests";q=2;w=3600"#);
        let current = ok.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            current.starts_with(&format!("\"requests\";r={remaining};t=")),
            "{current}"
        );
    }
    let refused = widgets(&client, &server, token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1_700..=1_800).contains(&retry), "half the window: {retry}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        (body["error"].as_str(), body["limit"].as_str()),
        (Some("rate_limited"), Some("requests"))
    );

    let view: Value = client
        .get(format!(
            "{}/tokens/{}",
            server.base,
            issued["id"].as_str().unwrap()
        ))
        .bearer_auth(admin.expose_secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        view["rate_limits"],
        json!([{"name": "requests", "limit": 2, "per_seconds": 3600}])
    );
    assert_eq!(view["use_refill"], "every 86400s");
    assert_eq!(
        view["remaining_uses"], 98,
        "two validations passed; the refused one was not counted"
    );
    assert!(view["next_refill_at"].is_string());

    // PATCH narrows them, never loosens them.
    let patch = |body: Value| {
        client
            .patch(format!(
                "{}/tokens/{}",
                server.base,
                issued["id"].as_str().unwrap()
            ))
            .bearer_auth(admin.expose_secret())
            .json(&body)
            .send()
    };
    let looser = patch(json!({"rate_limits": []})).await.unwrap();
    assert_eq!(looser.status(), StatusCode::BAD_REQUEST);
    let error: Value = looser.json().await.unwrap();
    assert!(
        error["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("rate_limits"),
        "{error}"
    );
    let tighter = patch(json!({
        "rate_limits": [{"name": "requests", "limit": 1, "per_seconds": 3600}],
        "refill": "weekly"
    }))
    .await
    .unwrap();
    assert_eq!(tighter.status(), StatusCode::OK);
    let view: Value = tighter.json().await.unwrap();
    assert_eq!(view["rate_limits"][0]["limit"], 1);
    assert_eq!(view["use_refill"], "every 604800s");

    for (body, problem) in [
        (
            json!({"rate_limits": [{"name": "requests", "limit": 0, "per_seconds": 60}]}),
            "limit",
        ),
        (
            json!({"rate_limits": [{"name": "Requests", "limit": 1, "per_seconds": 60}]}),
            "name",
        ),
        (json!({"refill": "yearly", "max_uses": 5}), "refill period"),
        (json!({"refill": "daily"}), "max_uses"),
    ] {
        let mut full = json!({"subject": "svc", "scopes": ["widgets:read"], "ttl_seconds": 60});
        full.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        let response = client
            .post(format!("{}/tokens", server.base))
            .bearer_auth(admin.expose_secret())
            .json(&full)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{full}");
        let error: Value = response.json().await.unwrap();
        let text = error["error_description"].as_str().unwrap_or_default();
        assert!(text.contains(problem), "{full}: {text}");
    }
}

#[tokio::test]
async fn two_instances_on_one_redis_allow_the_limit_in_total() {
    let Ok(redis_url) = std::env::var("TOKEN_TEST_REDIS_URL") else {
        println!(
            "skipped: TOKEN_TEST_REDIS_URL is not set (a shared Redis, e.g. redis://127.0.0.1:6379)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let admin = admin_token(&db).await;
    let limiter = || async {
        RateLimiter::builder()
            .redis(RedisBackend::connect(&redis_url).await.unwrap())
            .build()
    };
    let (a, b) = (
        start(&db, limiter().await).await,
        start(&db, limiter().await).await,
    );
    let client = Client::new();
    let issued = create(
        &client,
        &a,
        &admin,
        json!({"subject": "svc", "scopes": ["widgets:read"], "ttl_seconds": 3600,
               "rate_limits": [{"name": "requests", "limit": 5, "per_seconds": 3600}]}),
    )
    .await;
    let token = issued["token"].as_str().unwrap();
    let mut passed = 0;
    for i in 0..12 {
        let at = if i % 2 == 0 { &a } else { &b };
        match widgets(&client, at, token).await.status() {
            StatusCode::OK => passed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(passed, 5, "5 for both instances together, not 5 each");
}
