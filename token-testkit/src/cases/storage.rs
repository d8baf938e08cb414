//! What a store persists: no token secret in any form, every record and audit-event field
//! round-tripping, and a duplicate id refused.

use std::time::Duration;

use token_core::store::{InsertToken, TokenStore};
use token_core::{AuditEvent, AuditKind, Context, DeriveRequest, IssueRequest, TokenId};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{HOUR, req, stored};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_storage {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            stored_bytes_contain_no_secret,
            record_round_trips_every_field,
            audit_event_round_trips_every_field,
            duplicate_id_is_already_exists,
        }
    };
}

pub async fn stored_bytes_contain_no_secret(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let mut secrets = Vec::new();
    for i in 0..5 {
        let issued = env
            .issue_with(IssueRequest::new(format!("user:{i}"), scopes_of("a")).name("k"))
            .await;
        let rotated = env
            .manager
            .rotate(issued.token.id(), HOUR)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = env
            .manager
            .validate(issued.token.expose_secret(), &req("b"))
            .await;
        secrets.push(issued.token.expose_secret().to_owned());
        secrets.push(rotated.token.expose_secret().to_owned());
    }
    env.manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = (env.raw)().await;
    assert!(
        !raw.is_empty(),
        "raw dump is empty; the check would be vacuous"
    );
    for secret in &secrets {
        // The id is public and expected in the store; the secret part is not.
        let body = &secret[secret.len() - 71..];
        let secret_chars = &body[22..65];
        assert!(
            !contains(&raw, secret.as_bytes()),
            "a whole token string is stored"
        );
        assert!(
            !contains(&raw, secret_chars.as_bytes()),
            "a token secret (base62) is stored"
        );
        assert!(
            !contains(&raw, &secret_chars.as_bytes()[..16]),
            "part of a token secret (base62) is stored"
        );
        let bytes = base62_to_32_bytes(secret_chars);
        assert!(
            !contains(&raw, &bytes),
            "a token secret (raw bytes) is stored"
        );
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            !contains(&raw, hex.as_bytes()) && !contains(&raw, hex.to_uppercase().as_bytes()),
            "a token secret (hex) is stored"
        );
    }
}

/// Decodes 43 base62 characters (the secret part of a token) into its 32 bytes.
fn base62_to_32_bytes(chars: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for c in chars.bytes() {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            _ => c - b'a' + 36,
        };
        let mut carry = u32::from(digit);
        for byte in out.iter_mut().rev() {
            let acc = u32::from(*byte) * 62 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn record_round_trips_every_field(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env.issue("parent", "a b").await;
    let issued = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a:x/y.z-1_2 b"))
                .ttl(HOUR)
                .not_before(START + time::Duration::seconds(1))
                .idle_timeout(Duration::from_secs(1800))
                .max_uses(7)
                .name("name ü")
                .description("desc \"quoted\" 'x'")
                .label("k1", "v1")
                .label("k2", "")
                .context(Context::new().actor("creator")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = stored(&env, issued.token.id()).await;
    assert_eq!(*stored, issued.record);
    assert_eq!(stored.created_by.as_deref(), Some("creator"));
    assert_eq!(stored.idle_timeout, Some(Duration::from_secs(1800)));
    assert!(stored.not_before.is_some());
}

pub async fn audit_event_round_trips_every_field(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let id = TokenId::from_bytes([7; 16]);
    let mut event = AuditEvent::new(AuditKind::PolicyViolation, START)
        .with_token(id, "subject ü")
        .with_context(
            &Context::new()
                .actor("actor")
                .client_ip("2001:db8::1")
                .user_agent("agent/1.0")
                .request_id("req"),
        )
        .with_reason("reason")
        .with_detail("detail");
    event.fingerprint = Some("00ff".into());
    env.store
        .append_audit(&[event.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = env
        .store
        .query_audit(&token_core::AuditQuery::new().token(id).limit(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].event, event);
}

pub async fn duplicate_id_is_already_exists(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    let err = env
        .store
        .insert(&InsertToken::new(
            issued.record.clone(),
            None,
            env.clock_now(),
            Vec::new(),
        ))
        .await
        .err();
    assert!(
        matches!(err, Some(token_core::StoreError::AlreadyExists { id }) if id == issued.token.id())
    );
}
