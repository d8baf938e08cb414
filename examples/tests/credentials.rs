//! `POST /credentials/revoke` over real HTTP: a batch mixing valid, invalid, duplicate and
//! foreign tokens revokes exactly the valid ones, and its answer is the same as for a batch of
//! garbage of the same length; the per-caller limit answers 429.

use std::time::Duration;

use examples::server::{open_manager, serve};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use token_core::{
    AuditKind, AuditQuery, HashKey, IssueRequest, KeyId, PlaintextToken, ScopeSet, TokenManager,
    TokenPrefix,
};

struct Running {
    base: String,
    manager: TokenManager,
    client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("server.db").display());
        let manager = open_manager(&url, HashKey::new(KeyId::new(1), [9; 32]))
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = manager.clone();
        tokio::spawn(async move {
            let _ = serve(listener, served, Duration::from_secs(60), async {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            base,
            manager,
            client: Client::new(),
            stop: Some(stop),
            _dir: dir,
        }
    }

    async fn issue(&self, subject: &str) -> PlaintextToken {
        self.manager
            .issue(IssueRequest::new(
                subject,
                ScopeSet::parse("widgets:read").unwrap(),
            ))
            .await
            .unwrap()
            .token
    }

    async fn report(&self, body: &Value) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}/credentials/revoke", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn is_active(&self, token: &PlaintextToken) -> bool {
        self.manager
            .introspect(token.expose_secret())
            .await
            .unwrap()
            .is_some()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_revokes_the_valid_tokens_and_reveals_nothing() {
    let server = Running::start().await;
    let (a, b, bystander) = (
        server.issue("alice").await,
        server.issue("bob").await,
        server.issue("carol").await,
    );
    let foreign = PlaintextToken::generate(&TokenPrefix::new("othervendor").unwrap()).unwrap();
    let unknown = PlaintextToken::generate(&TokenPrefix::new("example").unwrap()).unwrap();
    let batch = json!([
        a.expose_secret(),
        "example_not-a-token",
        b.expose_secret(),
        a.expose_secret(),
        foreign.expose_secret(),
        unknown.expose_secret(),
        "",
    ]);
    let (status, body) = server.report(&json!({"tokens": batch})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["processed"], 7);
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["processed"; 7]);
    for secret in [
        a.expose_secret(),
        b.expose_secret(),
        foreign.expose_secret(),
    ] {
        assert!(!body.contains(secret));
    }

    assert!(
        !server.is_active(&a).await && !server.is_active(&b).await,
        "the valid tokens are dead"
    );
    assert!(
        server.is_active(&bystander).await,
        "nothing else is revoked"
    );

    // The same answer, byte for byte, for seven strings none of which is a token.
    let garbage: Vec<String> = (0..7).map(|n| format!("garbage-{n}")).collect();
    let (status, garbage_body) = server.report(&json!(garbage)).await;
    assert_eq!(
        (status, garbage_body),
        (StatusCode::OK, body),
        "the answer does not reveal which existed"
    );

    // The audit trail says who killed them and why.
    let events = server
        .manager
        .query_audit(AuditQuery::new().kind(AuditKind::Revoked))
        .await
        .unwrap();
    assert_eq!(
        events.items.len(),
        2,
        "one event per revoked token; the duplicate is a no-op"
    );
    for event in &events.items {
        assert_eq!(
            event.event.actor.as_deref(),
            Some("credentials-revocation-endpoint")
        );
        assert_eq!(
            event.event.reason.as_deref(),
            Some(examples::credentials::FOUND_REASON)
        );
        assert_eq!(event.event.client_ip.as_deref(), Some("127.0.0.1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_batches_are_refused_and_callers_are_rate_limited() {
    let server = Running::start().await;
    let token = server.issue("dave").await;
    let too_many: Vec<String> = (0..1001).map(|n| format!("t{n}")).collect();
    let (status, body) = server.report(&json!(too_many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("at most 1000"), "{body}");
    let (status, body) = server
        .report(&json!({"token": token.expose_secret()}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("JSON list"), "{body}");
    assert!(!body.contains(token.expose_secret()));
    assert!(
        server.is_active(&token).await,
        "a refused batch revokes nothing"
    );

    // The default limit: a burst of 10 batches per caller; two were used above.
    let mut limited = None;
    for n in 0..12 {
        let (status, body) = server.report(&json!(["x"])).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((n, body));
            break;
        }
        assert_eq!(status, StatusCode::OK);
    }
    let (n, body) = limited.expect("the caller is limited");
    assert_eq!(n, 8, "10 batches, then 429");
    assert!(body.contains("slow_down"), "{body}");
}
