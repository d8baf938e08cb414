//! Validation: a token is accepted only with its own secret, checksum and prefix, inside its
//! validity window (`not_before`, `expires_at`, idle timeout) and with the required scopes;
//! malformed input never reaches the store, and introspection validates without side effects.
//!
//! Use accounting is in `usage`, the exact use limit under concurrent validations in
//! `concurrency`, and validations racing a revocation in `revoke`.

use std::time::Duration;

use token_core::{
    AnyOf, AuditKind, Context, ErrorClass, IssueRequest, PlaintextToken, TokenPrefix,
    ValidationError,
};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{HOUR, assert_rejected, assert_valid, req};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_validate {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            issue_then_validate_round_trip,
            wrong_secret_is_rejected,
            malformed_strings_never_reach_the_store,
            bad_checksum_never_reaches_the_store,
            foreign_prefix_never_reaches_the_store,
            unknown_id_is_rejected,
            token_is_invalid_exactly_at_expires_at,
            not_before_is_enforced,
            idle_timeout_expires_unused_token,
            use_postpones_idle_expiry,
            insufficient_scope_lists_missing_scopes,
            any_of_costs_what_validate_costs_and_names_every_alternative,
            wildcard_requirement_is_refused,
            introspect_neither_uses_nor_audits,
            prefix_is_bound_to_the_record,
        }
    };
}

pub async fn issue_then_validate_round_trip(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("user:1", "widgets:read billing").await;
    let ok = env
        .manager
        .validate(
            issued.token.expose_secret(),
            &req("widgets:read billing:invoices"),
        )
        .await
        .unwrap_or_else(|e| panic!("validate: {e}"));
    assert_eq!(ok.id(), issued.token.id());
    assert_eq!(ok.subject(), "user:1");
    assert_eq!(ok.scopes(), &scopes_of("widgets:read billing"));
    assert_eq!(ok.expires_at(), Some(START + time::Duration::days(30)));
}

pub async fn wrong_secret_is_rejected(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("user:1", "a").await;
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let forged = PlaintextToken::from_parts(&prefix, issued.token.id(), [9; 32]);
    let err = env
        .manager
        .validate(forged.expose_secret(), &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("forged secret accepted"));
    assert!(matches!(err, ValidationError::WrongSecret), "{err}");
    assert_eq!(err.class(), ErrorClass::InvalidToken);
    assert_valid(&env, issued.token.expose_secret()).await;
}

pub async fn malformed_strings_never_reach_the_store(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("user:1", "a").await;
    let text = issued.token.expose_secret().to_owned();
    let before = env.store.calls();
    let long = format!("{}{}", "x".repeat(200), text);
    let inputs = [
        String::new(),
        "Bearer".to_owned(),
        text[..text.len() - 1].to_owned(),
        format!("{text}x"),
        text.replace("test_", "test-"),
        format!("TEST{}", &text[4..]),
        long,
        "test_".to_owned() + &"!".repeat(71),
        "\u{0}".repeat(80),
    ];
    for input in &inputs {
        let err = env
            .manager
            .validate(input, &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("malformed input accepted"));
        assert_eq!(err.class(), ErrorClass::InvalidToken);
    }
    assert_eq!(
        env.store.calls(),
        before,
        "malformed input reached the store"
    );
    assert_eq!(
        env.manager.stats().rejected_before_store,
        inputs.len() as u64
    );
}

pub async fn bad_checksum_never_reaches_the_store(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("user:1", "a").await;
    let mut bytes = issued.token.expose_secret().as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
    let altered = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
    let before = env.store.calls();
    let err = env.manager.validate(&altered, &[]).await.err();
    assert!(matches!(err, Some(ValidationError::BadChecksum)), "{err:?}");
    assert_eq!(env.store.calls(), before);
}

pub async fn foreign_prefix_never_reaches_the_store(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let other = TokenPrefix::new("other").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&other).unwrap_or_else(|e| panic!("{e}"));
    let before = env.store.calls();
    let err = env.manager.validate(token.expose_secret(), &[]).await.err();
    assert!(
        matches!(err, Some(ValidationError::ForeignPrefix)),
        "{err:?}"
    );
    assert_eq!(env.store.calls(), before);
}

pub async fn unknown_id_is_rejected(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    assert_rejected(&env, token.expose_secret(), "unknown_token").await;
}

pub async fn token_is_invalid_exactly_at_expires_at(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let token = issued.token.expose_secret();
    env.clock
        .set(START + time::Duration::hours(1) - time::Duration::microseconds(1));
    assert_valid(&env, token).await;
    env.clock.set(START + time::Duration::hours(1));
    assert_rejected(&env, token, "expired").await;
}

pub async fn not_before_is_enforced(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let at = START + time::Duration::minutes(10);
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).not_before(at))
        .await;
    let token = issued.token.expose_secret();
    assert_rejected(&env, token, "not_yet_valid").await;
    env.clock.set(at);
    assert_valid(&env, token).await;
}

pub async fn idle_timeout_expires_unused_token(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).idle_timeout(HOUR))
        .await;
    env.advance(HOUR - Duration::from_secs(1));
    let fresh = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).idle_timeout(HOUR))
        .await;
    env.advance(Duration::from_secs(1));
    assert_rejected(&env, issued.token.expose_secret(), "idle_expired").await;
    assert_valid(&env, fresh.token.expose_secret()).await;
}

pub async fn use_postpones_idle_expiry(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).idle_timeout(HOUR))
        .await;
    let token = issued.token.expose_secret();
    for _ in 0..3 {
        env.advance(Duration::from_secs(50 * 60));
        assert_valid(&env, token).await;
    }
    env.manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.advance(HOUR);
    assert_rejected(&env, token, "idle_expired").await;
}

pub async fn insufficient_scope_lists_missing_scopes(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "repo:*:read").await;
    let err = env
        .manager
        .validate(
            issued.token.expose_secret(),
            &req("repo:x:read repo:x:write deploy"),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted without scopes"));
    assert_eq!(err.class(), ErrorClass::InsufficientScope);
    match err {
        ValidationError::InsufficientScope { missing } => {
            assert_eq!(missing, req("repo:x:write deploy"));
        }
        other => panic!("wrong error {other}"),
    }
}

/// `validate_any` passes a token holding one alternative with the store calls `validate` makes
/// (one lookup, one atomic use count for a use-limited token), refuses a token holding none with
/// every alternative named, and a refusal spends no use.
pub async fn any_of_costs_what_validate_costs_and_names_every_alternative(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let admin = env
        .issue_with(IssueRequest::new("u", scopes_of("widgets:admin")).max_uses(3))
        .await;
    let token = admin.token.expose_secret();
    let readers = AnyOf::parse("widgets:read widgets:admin").unwrap_or_else(|e| panic!("{e}"));
    // Settle a validation cache first (it starts following the feed on its first miss and
    // keeps records once following), so both measured calls meet the same cache state.
    for _ in 0..2 {
        env.manager
            .introspect(token)
            .await
            .unwrap_or_else(|e| panic!("introspect: {e}"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let before = env.store.calls();
    env.manager
        .validate(token, &req("widgets:admin"))
        .await
        .unwrap_or_else(|e| panic!("validate: {e}"));
    let validate_calls = env.store.calls() - before;
    let before = env.store.calls();
    let ok = env
        .manager
        .validate_any(token, &readers)
        .await
        .unwrap_or_else(|e| panic!("validate_any: {e}"));
    assert_eq!(ok.id(), admin.token.id());
    assert_eq!(
        env.store.calls() - before,
        validate_calls,
        "an any-of validation costs more store calls than an all-of one"
    );

    let writers = AnyOf::parse("widgets:write widgets:delete").unwrap_or_else(|e| panic!("{e}"));
    match env.manager.validate_any(token, &writers).await {
        Err(ValidationError::InsufficientScope { missing }) => {
            assert_eq!(missing, req("widgets:write widgets:delete"));
        }
        other => panic!("expected InsufficientScope, got {other:?}"),
    }
    let record = env
        .manager
        .inspect(admin.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("record gone"));
    assert_eq!(
        record.use_count, 2,
        "the refused any-of validation spent a use"
    );
}

pub async fn wildcard_requirement_is_refused(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "*").await;
    let err = env
        .manager
        .validate(issued.token.expose_secret(), &req("repo:*"))
        .await
        .err();
    assert!(matches!(err, Some(ValidationError::InvalidRequirement(_))));
    assert_eq!(err.map(|e| e.class()), Some(ErrorClass::ServerError));
}

pub async fn introspect_neither_uses_nor_audits(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(1))
        .await;
    let token = issued.token.expose_secret();
    for _ in 0..3 {
        let seen = env
            .manager
            .introspect(token)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("active token introspected as inactive"));
        assert_eq!(seen.id(), issued.token.id());
    }
    assert_valid(&env, token).await;
    assert!(
        env.manager
            .introspect(token)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "used-up token is active"
    );
    for garbage in ["", "test_abc", &token.replace("test_", "other_")] {
        assert!(
            env.manager
                .introspect(garbage)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none()
        );
    }
    let kinds: Vec<AuditKind> = env
        .manager
        .audit(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![AuditKind::Issued],
        "introspection wrote audit events"
    );
}

pub async fn prefix_is_bound_to_the_record(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    // Another manager over the same store and key, with another prefix (a "live" deployment
    // next to a "test" one). Rewriting the prefix keeps the checksum valid (it covers the body).
    let live = env.sibling(|b| b.prefix("live").unwrap_or_else(|e| panic!("{e}")));
    let rewritten = issued.token.expose_secret().replacen("test_", "live_", 1);
    let err = live.validate(&rewritten, &[]).await.err();
    assert!(
        matches!(err, Some(ValidationError::ForeignPrefix)),
        "{err:?}"
    );
    // Introspection and possession-based revocation prove possession the same way.
    let introspected = live
        .introspect(&rewritten)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        introspected.is_none(),
        "introspection called a foreign-prefix token active"
    );
    let revoked = live
        .revoke_presented(&rewritten, "leaked", &Context::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked.is_empty(), "revoked through a foreign prefix");
    assert_valid(&env, issued.token.expose_secret()).await;
    assert!(
        env.manager
            .introspect(issued.token.expose_secret())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some(),
        "the token under its own prefix is active"
    );
}
