//! The manager's tracing spans: every operation of a lifecycle has its span with the documented
//! fields, and nothing a subscriber sees at TRACE contains a token's secret (raw, hex, base64 or
//! the token's own base62) or a whole token string.

use std::time::Duration;

use token_core::{
    DeriveRequest, HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenManager,
};
use token_store_memory::MemoryStore;

#[path = "support/secrets.rs"]
mod secrets;

use secrets::{Capture, forms};

#[test]
fn spans_cover_a_lifecycle_and_never_carry_a_secret() {
    let capture = Capture::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scopes = |text: &str| ScopeSet::parse(text).unwrap();
    let mut tokens = Vec::new();
    tracing::subscriber::with_default(capture.clone(), || {
        runtime.block_on(async {
            let manager = TokenManager::builder(
                MemoryStore::new(),
                Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
            )
            .prefix("acme")
            .unwrap()
            .build()
            .unwrap();
            let root = manager
                .issue(IssueRequest::new("user:42", scopes("a b")).ttl(Duration::from_secs(3600)))
                .await
                .unwrap();
            tokens.push(root.token.expose_secret().to_owned());
            let read = "a".parse().unwrap();
            manager
                .validate(root.token.expose_secret(), &[read])
                .await
                .unwrap();
            let mut wrong = root.token.expose_secret().to_owned();
            // A different digit (the random one may already be '0'), so the checksum fails.
            let at = wrong.len() - 30;
            let other = if &wrong[at..=at] == "0" { "1" } else { "0" };
            wrong.replace_range(at..=at, other);
            let _ = manager.validate(&wrong, &[]).await;
            let child = manager
                .derive(root.token.id(), DeriveRequest::new(scopes("a")))
                .await
                .unwrap();
            tokens.push(child.token.expose_secret().to_owned());
            let successor = manager
                .rotate(root.token.id(), Duration::ZERO)
                .await
                .unwrap();
            tokens.push(successor.token.expose_secret().to_owned());
            let _ = manager
                .issue(
                    IssueRequest::new("user:42", scopes("a")).ttl(Duration::from_secs(999_999_999)),
                )
                .await;
            manager
                .revoke(RevokeSelector::Token(successor.token.id()), "done")
                .await
                .unwrap();
            let _ = manager.validate(successor.token.expose_secret(), &[]).await;
            let _ = manager.sweep().await;
            manager.flush_usage().await.unwrap();
        });
    });
    let text = capture.text.lock().unwrap().clone();
    for span in [
        "span token.issue",
        "span token.validate",
        "span token.derive",
        "span token.rotate",
        "span token.revoke",
        "span token.sweep",
    ] {
        assert!(text.contains(span), "no {span} in:\n{text}");
    }
    for field in [
        "outcome=ok",
        "outcome=refused",
        "reason=bad_checksum",
        "reason=revoked",
        "reason=invalid_request",
        "subject=user:42",
        "selector=token",
        "revoked=",
    ] {
        assert!(text.contains(field), "no {field} in:\n{text}");
    }
    for token in &tokens {
        for form in forms(token) {
            assert!(!text.contains(&form), "a secret form leaked: {form}");
        }
    }
}
