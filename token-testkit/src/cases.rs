//! One `pub async fn` per behaviour of the contract. Each panics (fails the test) when the store
//! or manager deviates.

#![allow(missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use token_core::store::{InsertOutcome, InsertToken, TokenStore};
use token_core::{
    AuditEvent, AuditKind, Context, DeriveRequest, Error, ErrorClass, HashKey, IssueRequest, KeyId,
    KeyringError, ListFilter, Page, PlaintextToken, Policy, PolicyViolation, RevokeSelector, Scope,
    TokenId, TokenPrefix, TokenState, ValidationError,
};

use crate::Fixture;
use crate::env::{START, TestEnv, key, scopes_of};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn scope(text: &str) -> Scope {
    text.parse()
        .unwrap_or_else(|e| panic!("scope {text:?}: {e}"))
}

fn req(text: &str) -> Vec<Scope> {
    text.split_whitespace().map(scope).collect()
}

async fn assert_rejected(env: &TestEnv, token: &str, expected: &str) {
    match env.manager.validate(token, &[]).await {
        Ok(_) => panic!("token accepted; expected {expected}"),
        Err(e) => assert_eq!(e.reason_code(), expected, "unexpected failure: {e}"),
    }
}

async fn assert_valid(env: &TestEnv, token: &str) {
    if let Err(e) = env.manager.validate(token, &[]).await {
        panic!("expected a valid token, got: {e}");
    }
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

pub async fn max_uses_is_exact_under_64_concurrent_validations(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(10))
        .await;
    let token: Arc<str> = issued.token.expose_secret().into();
    let manager = env.manager.clone();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let manager = manager.clone();
            let token = Arc::clone(&token);
            tokio::spawn(async move { manager.validate(&token, &[]).await })
        })
        .collect();
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("join: {e}")) {
            Ok(_) => ok += 1,
            Err(ValidationError::UseLimitReached) => limited += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, limited), (10, 54));
    let record = env
        .manager
        .inspect(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("record missing"));
    assert_eq!(record.use_count, 10);
    assert_eq!(record.state_at(env.clock_now()), TokenState::UsedUp);
}

impl TestEnv {
    fn clock_now(&self) -> OffsetDateTime {
        token_core::Clock::now(&self.clock)
    }
}

pub async fn scope_failure_does_not_consume_a_use(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(1))
        .await;
    let token = issued.token.expose_secret();
    let err = env.manager.validate(token, &req("b")).await.err();
    assert!(matches!(
        err,
        Some(ValidationError::InsufficientScope { .. })
    ));
    assert_valid(&env, token).await;
    assert_rejected(&env, token, "use_limit_reached").await;
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

async fn revoke(env: &TestEnv, selector: RevokeSelector) -> HashSet<TokenId> {
    env.manager
        .revoke_with(selector, "test", &Context::new().actor("admin"))
        .await
        .unwrap_or_else(|e| panic!("revoke: {e}"))
        .into_iter()
        .collect()
}

pub async fn revoke_by_id(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let a = env.issue("u", "a").await;
    let b = env.issue("u", "a").await;
    let revoked = revoke(&env, RevokeSelector::Token(a.token.id())).await;
    assert_eq!(revoked, HashSet::from([a.token.id()]));
    assert_rejected(&env, a.token.expose_secret(), "revoked").await;
    assert_valid(&env, b.token.expose_secret()).await;
    let record = env
        .manager
        .inspect(a.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    let revocation = record
        .revocation
        .unwrap_or_else(|| panic!("no revocation stored"));
    assert_eq!(revocation.reason, "test");
    assert_eq!(revocation.actor.as_deref(), Some("admin"));
    assert_eq!(revocation.at, START);
}

pub async fn revoke_by_subject(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let a1 = env.issue("alice", "a").await;
    let a2 = env.issue("alice", "b").await;
    let b = env.issue("bob", "a").await;
    let revoked = revoke(&env, RevokeSelector::Subject("alice".into())).await;
    assert_eq!(revoked, HashSet::from([a1.token.id(), a2.token.id()]));
    assert_rejected(&env, a2.token.expose_secret(), "revoked").await;
    assert_valid(&env, b.token.expose_secret()).await;
}

pub async fn revoke_by_family_reaches_every_member(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "a b").await;
    let child = derive(&env, root.token.id(), "a").await;
    let grandchild = derive(&env, child.token.id(), "a").await;
    let rotated_root = env
        .manager
        .rotate(root.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stranger = env.issue("u", "a").await;
    // Selecting by the grandchild kills the whole family, rotations included.
    let revoked = revoke(&env, RevokeSelector::Family(grandchild.token.id())).await;
    assert_eq!(
        revoked,
        HashSet::from([
            root.token.id(),
            child.token.id(),
            grandchild.token.id(),
            rotated_root.token.id()
        ])
    );
    for t in [&root, &child, &grandchild, &rotated_root] {
        assert_rejected(&env, t.token.expose_secret(), "revoked").await;
    }
    assert_valid(&env, stranger.token.expose_secret()).await;
}

async fn derive(env: &TestEnv, parent: TokenId, scopes: &str) -> token_core::IssuedToken {
    env.manager
        .derive(parent, DeriveRequest::new(scopes_of(scopes)))
        .await
        .unwrap_or_else(|e| panic!("derive: {e}"))
}

pub async fn revoke_by_label(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let ci = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).label("env", "ci"))
        .await;
    let prod = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).label("env", "prod"))
        .await;
    let revoked = revoke(
        &env,
        RevokeSelector::Label {
            key: "env".into(),
            value: "ci".into(),
        },
    )
    .await;
    assert_eq!(revoked, HashSet::from([ci.token.id()]));
    assert_valid(&env, prod.token.expose_secret()).await;
}

pub async fn revoke_issued_before(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    env.advance(HOUR);
    let cutoff = env.clock_now();
    let new = env.issue("u", "a").await;
    let revoked = revoke(&env, RevokeSelector::IssuedBefore(cutoff)).await;
    assert_eq!(revoked, HashSet::from([old.token.id()]));
    assert_valid(&env, new.token.expose_secret()).await;
}

pub async fn revoke_is_idempotent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let a = env.issue("u", "a").await;
    assert_eq!(
        revoke(&env, RevokeSelector::Token(a.token.id()))
            .await
            .len(),
        1
    );
    env.advance(HOUR);
    assert!(
        revoke(&env, RevokeSelector::Token(a.token.id()))
            .await
            .is_empty()
    );
    assert!(
        revoke(&env, RevokeSelector::Token(TokenId::from_bytes([0; 16])))
            .await
            .is_empty()
    );
    let record = env
        .manager
        .inspect(a.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        record.revocation.map(|r| r.at),
        Some(START),
        "first revocation kept"
    );
    let revoked_events = env
        .manager
        .audit(a.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|e| e.event.kind == AuditKind::Revoked)
        .count();
    assert_eq!(revoked_events, 1);
}

pub async fn revoked_token_is_rejected_once_revoke_returns(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    let token: Arc<str> = issued.token.expose_secret().into();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let manager = env.manager.clone();
        let token = Arc::clone(&token);
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = manager.validate(&token, &[]).await;
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    revoke(&env, RevokeSelector::Token(issued.token.id())).await;
    for _ in 0..20 {
        assert_rejected(&env, &token, "revoked").await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    hammer.await.unwrap_or_else(|e| panic!("{e}"));
}

pub async fn revoking_parent_revokes_grandchildren(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "a").await;
    let child = derive(&env, root.token.id(), "a").await;
    let grandchild = derive(&env, child.token.id(), "a").await;
    let sibling_root = env.issue("u", "a").await;
    let revoked = revoke(&env, RevokeSelector::Token(root.token.id())).await;
    assert_eq!(
        revoked,
        HashSet::from([root.token.id(), child.token.id(), grandchild.token.id()])
    );
    assert_rejected(&env, grandchild.token.expose_secret(), "revoked").await;
    assert_valid(&env, sibling_root.token.expose_secret()).await;
    let err = env
        .manager
        .derive(grandchild.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .err();
    assert!(matches!(
        err,
        Some(Error::NotActive {
            state: TokenState::Revoked,
            ..
        })
    ));
}

pub async fn derive_cannot_widen_scopes(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "repo:acme:read").await;
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("repo:acme:read repo:*")),
        )
        .await
        .err();
    match err {
        Some(Error::ScopeWidening { scopes }) => assert_eq!(scopes, req("repo:*")),
        other => panic!("expected ScopeWidening, got {other:?}"),
    }
    let narrower = derive(&env, root.token.id(), "repo:acme:read:issues").await;
    assert_eq!(narrower.record.subject, "u");
    assert_eq!(narrower.record.parent_id, Some(root.token.id()));
    assert_eq!(narrower.record.family_id, root.token.id());
}

pub async fn derive_cannot_outlive_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("a")).ttl(2 * HOUR),
        )
        .await
        .err();
    assert!(matches!(err, Some(Error::OutlivesParent { .. })), "{err:?}");
    let err = env
        .manager
        .derive(
            root.token.id(),
            DeriveRequest::new(scopes_of("a")).never_expires(),
        )
        .await
        .err();
    assert!(matches!(err, Some(Error::OutlivesParent { .. })), "{err:?}");
}

pub async fn derive_default_expiry_is_capped_by_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let child = derive(&env, root.token.id(), "a").await;
    assert_eq!(child.record.expires_at, root.record.expires_at);
    env.clock.set(START + time::Duration::hours(1));
    assert_rejected(&env, child.token.expose_secret(), "expired").await;
}

pub async fn derive_from_revoked_parent_fails(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let root = env.issue("u", "a").await;
    revoke(&env, RevokeSelector::Token(root.token.id())).await;
    let err = env
        .manager
        .derive(root.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .err();
    assert!(matches!(err, Some(Error::NotActive { .. })), "{err:?}");
    // The store refuses it too, even if a caller skipped the manager's check.
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let mut record = root.record.clone();
    record.id = token.id();
    record.parent_id = Some(root.token.id());
    record.revocation = None;
    let outcome = env
        .store
        .insert(InsertToken::new(record, None, env.clock_now(), Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        outcome,
        InsertOutcome::ParentNotActive {
            state: Some(TokenState::Revoked)
        }
    );
}

pub async fn rotate_keeps_identity_and_never_extends_lifetime(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a b"))
                .ttl(DAY)
                .label("team", "x")
                .name("deploy"),
        )
        .await;
    env.advance(HOUR);
    let new = env
        .manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(new.token.id(), old.token.id());
    assert_eq!(new.record.subject, "u");
    assert_eq!(new.record.scopes, old.record.scopes);
    assert_eq!(new.record.labels, old.record.labels);
    assert_eq!(new.record.name.as_deref(), Some("deploy"));
    assert_eq!(new.record.expires_at, old.record.expires_at);
    assert_eq!(new.record.rotated_from, Some(old.token.id()));
    assert_valid(&env, new.token.expose_secret()).await;
    env.clock.set(START + time::Duration::days(1));
    assert_rejected(&env, new.token.expose_secret(), "expired").await;
}

pub async fn rotate_grace_window_is_honoured(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let new = env
        .manager
        .rotate(old.token.id(), Duration::from_secs(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.advance(Duration::from_secs(299));
    assert_valid(&env, old.token.expose_secret()).await;
    env.advance(Duration::from_secs(1));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    assert_valid(&env, new.token.expose_secret()).await;
    let old_record = env
        .manager
        .inspect(old.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(old_record.rotated_to, Some(new.token.id()));
}

pub async fn rotate_grace_never_outlives_old_expiry(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    env.advance(Duration::from_secs(50 * 60));
    env.manager
        .rotate(old.token.id(), DAY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.clock.set(START + time::Duration::hours(1));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
}

pub async fn rotating_twice_is_a_conflict(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let new = env
        .manager
        .rotate(old.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = env.manager.rotate(old.token.id(), HOUR).await.err();
    match err {
        Some(Error::AlreadyRotated { successor, .. }) => assert_eq!(successor, new.token.id()),
        other => panic!("expected AlreadyRotated, got {other:?}"),
    }
    // Revoking the successor resurrects nothing: the old token keeps its shortened life.
    revoke(&env, RevokeSelector::Token(new.token.id())).await;
    env.advance(HOUR);
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    assert!(env.manager.rotate(old.token.id(), HOUR).await.is_err());
}

pub async fn rotate_with_zero_grace_ends_old_token_now(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    env.manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
}

pub async fn list_filters_by_subject_label_and_state(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    // Distinct creation instants, so the listing order (created_at, id) is the issue order.
    let a = env
        .issue_with(IssueRequest::new("alice", scopes_of("x")).label("team", "red"))
        .await;
    env.advance(Duration::from_secs(1));
    let b = env
        .issue_with(IssueRequest::new("alice", scopes_of("x")).ttl(HOUR))
        .await;
    env.advance(Duration::from_secs(1));
    let c = env
        .issue_with(IssueRequest::new("bob", scopes_of("x")).label("team", "red"))
        .await;
    revoke(&env, RevokeSelector::Token(c.token.id())).await;
    env.advance(2 * HOUR);
    let ids = |page: token_core::TokenPage| -> Vec<TokenId> {
        page.items.into_iter().map(|r| r.id).collect()
    };
    let list = |filter: ListFilter| {
        let manager = env.manager.clone();
        async move {
            manager
                .list(filter, Page::default())
                .await
                .unwrap_or_else(|e| panic!("list: {e}"))
        }
    };
    assert_eq!(
        ids(list(ListFilter::all().subject("alice")).await),
        vec![a.token.id(), b.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().label("team", "red")).await),
        vec![a.token.id(), c.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Active)).await),
        vec![a.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Expired)).await),
        vec![b.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Revoked)).await),
        vec![c.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().subject("bob").label("team", "red")).await),
        vec![c.token.id()]
    );
    assert!(
        env.manager
            .list(ListFilter::all(), Page::first(0))
            .await
            .is_err()
    );
}

pub async fn list_paginates_without_gaps_or_repeats(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let mut expected = Vec::new();
    for i in 0..23 {
        // Several tokens share a creation instant, so the id tie-break matters.
        if i % 3 == 0 {
            env.advance(Duration::from_secs(1));
        }
        expected.push(env.issue("pager", "a").await.token.id());
    }
    env.issue("someone-else", "a").await;
    let mut seen = Vec::new();
    let mut page = Page::first(5);
    let mut pages = 0;
    loop {
        let result = env
            .manager
            .list(ListFilter::all().subject("pager"), page)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pages += 1;
        assert!(result.items.len() <= 5);
        seen.extend(result.items.iter().map(|r| r.id));
        match result.next {
            Some(cursor) => {
                let text = cursor.to_string();
                page = Page::after(text.parse().unwrap_or_else(|e| panic!("{e}")), 5);
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record was listed twice");
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    assert_eq!(sorted_seen, sorted_expected);
}

pub async fn policy_ttl_cap_is_enforced(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let err = env
        .manager
        .issue(IssueRequest::new("u", scopes_of("a")).ttl(400 * DAY))
        .await
        .err()
        .unwrap_or_else(|| panic!("ttl above the cap accepted"));
    assert_eq!(
        err.to_string(),
        "refused by policy: ttl 400d exceeds the policy maximum 90d"
    );
    assert!(matches!(
        err,
        Error::Policy(PolicyViolation::TtlExceedsMax { .. })
    ));
    env.issue_with(IssueRequest::new("u", scopes_of("a")).ttl(90 * DAY))
        .await;
}

pub async fn policy_requires_expiry(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let err = env
        .manager
        .issue(IssueRequest::new("u", scopes_of("a")).never_expires())
        .await
        .err();
    assert!(matches!(
        err,
        Some(Error::Policy(PolicyViolation::ExpiryRequired))
    ));
    let permissive = TestEnv::with_policy(
        f,
        Policy::builder()
            .allow_non_expiring()
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let forever = permissive
        .issue_with(IssueRequest::new("u", scopes_of("a")).never_expires())
        .await;
    assert_eq!(forever.record.expires_at, None);
    permissive.advance(DAY * 3650);
    // Still subject to idle expiry by default.
    assert_rejected(&permissive, forever.token.expose_secret(), "idle_expired").await;
}

pub async fn policy_scope_ceiling_is_enforced(f: &dyn Fixture) {
    let policy = Policy::builder()
        .scope_ceiling(|subject: &str| {
            subject
                .starts_with("svc:")
                .then(|| token_core::ScopeSet::parse("widgets:read").unwrap_or_default())
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let env = TestEnv::with_policy(f, policy).await;
    let err = env
        .manager
        .issue(IssueRequest::new(
            "svc:ci",
            scopes_of("widgets:read widgets:write"),
        ))
        .await
        .err();
    match err {
        Some(Error::Policy(PolicyViolation::ScopeBeyondCeiling { subject, scopes })) => {
            assert_eq!(subject, "svc:ci");
            assert_eq!(scopes, req("widgets:write"));
        }
        other => panic!("expected ScopeBeyondCeiling, got {other:?}"),
    }
    env.issue("svc:ci", "widgets:read:public").await;
    env.issue("user:1", "widgets:write").await;
    // The violation is in the audit trail (best effort, but the stores here are healthy).
    assert_eq!(env.manager.stats().denied_events_dropped, 0);
}

pub async fn policy_max_live_tokens_per_subject(f: &dyn Fixture) {
    let policy = Policy::builder()
        .max_live_tokens_per_subject(2)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let env = TestEnv::with_policy(f, policy).await;
    let first = env.issue("u", "a").await;
    env.issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let err = env
        .manager
        .issue(IssueRequest::new("u", scopes_of("a")))
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(Error::Policy(PolicyViolation::TooManyLiveTokens {
                max: 2,
                ..
            }))
        ),
        "{err:?}"
    );
    env.issue("other", "a").await;
    revoke(&env, RevokeSelector::Token(first.token.id())).await;
    env.issue("u", "a").await;
    env.advance(HOUR);
    // The one-hour token expired, freeing a slot.
    env.issue("u", "a").await;
}

pub async fn concurrent_issues_respect_live_limit(f: &dyn Fixture) {
    let policy = Policy::builder()
        .max_live_tokens_per_subject(5)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let env = TestEnv::with_policy(f, policy).await;
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let manager = env.manager.clone();
            tokio::spawn(async move {
                manager
                    .issue(IssueRequest::new("racer", scopes_of("a")))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => ok += 1,
            Err(Error::Policy(PolicyViolation::TooManyLiveTokens { .. })) => {}
            Err(Error::Store(token_core::StoreError::Conflict { .. })) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(ok, 5);
}

pub async fn key_rotation_keeps_old_tokens_valid(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    assert_eq!(old.record.hash_key_id, KeyId::new(1));
    env.manager
        .rotate_hash_key(key(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let new = env.issue("u", "a").await;
    assert_eq!(new.record.hash_key_id, KeyId::new(2));
    assert_valid(&env, old.token.expose_secret()).await;
    assert_valid(&env, new.token.expose_secret()).await;
}

pub async fn retiring_a_key_in_use_is_refused(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    env.manager
        .rotate_hash_key(key(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = env.manager.retire_hash_key(KeyId::new(1)).await.err();
    assert!(
        matches!(
            err,
            Some(Error::Keyring(KeyringError::KeyInUse { records: 1, .. }))
        ),
        "{err:?}"
    );
    let err = env.manager.retire_hash_key(KeyId::new(2)).await.err();
    assert!(matches!(
        err,
        Some(Error::Keyring(KeyringError::RetiringCurrentKey(_)))
    ));
    assert_valid(&env, old.token.expose_secret()).await;
    revoke(&env, RevokeSelector::Token(old.token.id())).await;
    env.manager
        .retire_hash_key(KeyId::new(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = HashKey::new(KeyId::new(3), [3; 32]);
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
        let parsed = token_core::parse_token(secret).unwrap_or_else(|e| panic!("{e}"));
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
        let _ = parsed;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub async fn audit_records_lifecycle_in_order(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let ctx = Context::new().actor("admin:7").request_id("r-1");
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).context(ctx.clone()))
        .await;
    let child = derive(&env, issued.token.id(), "a").await;
    let rotated = env
        .manager
        .rotate_with(issued.token.id(), HOUR, &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.manager
        .revoke_with(RevokeSelector::Token(issued.token.id()), "done", &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events = env
        .manager
        .audit(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<AuditKind> = events.iter().map(|e| e.event.kind).collect();
    assert_eq!(
        kinds,
        vec![AuditKind::Issued, AuditKind::Rotated, AuditKind::Revoked]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events[0].event.actor.as_deref(), Some("admin:7"));
    assert_eq!(events[0].event.request_id.as_deref(), Some("r-1"));
    assert_eq!(events[2].event.reason.as_deref(), Some("done"));
    let successor_detail = format!("successor={}", rotated.token.id());
    assert_eq!(
        events[1].event.detail.as_deref(),
        Some(successor_detail.as_str())
    );
    let child_events = env
        .manager
        .audit(child.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let child_kinds: Vec<AuditKind> = child_events.iter().map(|e| e.event.kind).collect();
    assert_eq!(child_kinds, vec![AuditKind::Derived, AuditKind::Revoked]);
    let rotated_events = env
        .manager
        .audit(rotated.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rotated_events.len(), 1);
    assert_eq!(rotated_events[0].event.kind, AuditKind::Issued);
}

pub async fn denied_validation_is_audited_without_token_string(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    revoke(&env, RevokeSelector::Token(issued.token.id())).await;
    let ctx = Context::new().client_ip("203.0.113.9");
    let _ = env
        .manager
        .validate_with(issued.token.expose_secret(), &[], &ctx)
        .await;
    let events = env
        .manager
        .audit(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let denied = events
        .iter()
        .find(|e| e.event.kind == AuditKind::Denied)
        .unwrap_or_else(|| panic!("no Denied event"));
    assert_eq!(denied.event.reason.as_deref(), Some("revoked"));
    assert_eq!(denied.event.client_ip.as_deref(), Some("203.0.113.9"));
    let rendered = format!("{events:?}");
    let secret_part = &issued.token.expose_secret()[5 + 22..5 + 65];
    assert!(!rendered.contains(secret_part));
    assert_eq!(env.manager.stats().denied_events_dropped, 0);
}

pub async fn usage_is_flushed_to_the_store(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    for _ in 0..3 {
        assert_valid(&env, issued.token.expose_secret()).await;
    }
    // Not yet flushed: the store has no usage, the manager merges its buffer.
    let stored = env
        .store
        .get(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(stored.use_count, 0);
    let inspected = env
        .manager
        .inspect(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(inspected.use_count, 3);
    assert_eq!(inspected.last_used_at, Some(START));
    // The first validation after the flush interval writes the batch.
    env.advance(Duration::from_secs(11));
    assert_valid(&env, issued.token.expose_secret()).await;
    let stored = env
        .store
        .get(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(stored.use_count, 4);
    assert_eq!(
        stored.last_used_at,
        Some(START + time::Duration::seconds(11))
    );
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
    let stored = env
        .store
        .get(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
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
        .append_audit(vec![event.clone()])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stored = env
        .store
        .audit_for_token(id)
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
        .insert(InsertToken::new(
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

pub async fn concurrent_rotations_yield_one_successor(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let id = old.token.id();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let manager = env.manager.clone();
            tokio::spawn(async move { manager.rotate(id, HOUR).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => ok += 1,
            Err(Error::AlreadyRotated { .. }) => {}
            Err(Error::Store(token_core::StoreError::Conflict { .. })) => {}
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!(ok, 1);
    let rotations = env
        .manager
        .list(ListFilter::all().subject("u"), Page::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .len();
    assert_eq!(rotations, 2);
}

pub async fn revocation_feed_announces_committed_revocations(f: &dyn Fixture) {
    use futures_util::StreamExt;
    let env = TestEnv::new(f).await;
    let mut feed = env
        .store
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("subscribe: {e}"))
        .unwrap_or_else(|| panic!("the store offers no revocation feed"));
    let root = env.issue("u", "a").await;
    let child = derive(&env, root.token.id(), "a").await;
    env.issue("u", "a").await;
    let revoked = revoke(&env, RevokeSelector::Token(root.token.id())).await;
    let mut announced = HashSet::new();
    while announced.len() < revoked.len() {
        let notice = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no notice within 5 s; got {announced:?}"));
        match notice {
            Some(token_core::RevocationNotice::Revoked(ids)) => announced.extend(ids),
            Some(other) => panic!("unexpected notice {other:?}"),
            None => panic!("feed ended"),
        }
    }
    assert_eq!(
        announced,
        HashSet::from([root.token.id(), child.token.id()])
    );
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

pub async fn revoke_presented_requires_possession(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    let child = derive(&env, issued.token.id(), "a").await;
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let forged = PlaintextToken::from_parts(&prefix, issued.token.id(), [1; 32]);
    let ctx = Context::new();
    let none = env
        .manager
        .revoke_presented(forged.expose_secret(), "x", &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.is_empty(), "revoked without possessing the secret");
    assert!(
        env.manager
            .revoke_presented("not a token", "x", &ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    );
    assert_valid(&env, issued.token.expose_secret()).await;
    let revoked: HashSet<TokenId> = env
        .manager
        .revoke_presented(issued.token.expose_secret(), "leaked", &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect();
    assert_eq!(
        revoked,
        HashSet::from([issued.token.id(), child.token.id()])
    );
    assert_rejected(&env, issued.token.expose_secret(), "revoked").await;
}
