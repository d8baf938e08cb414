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
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let revoked = Arc::new(AtomicBool::new(false));
    let accepted_before = Arc::new(AtomicU32::new(0));
    let checked_after = Arc::new(AtomicU32::new(0));
    // Validations run concurrently with the revocation; each notes whether it started after
    // `revoke` returned, and every such one must be refused.
    let hammer = {
        let manager = env.manager.clone();
        let token = Arc::clone(&token);
        let (stop, revoked) = (Arc::clone(&stop), Arc::clone(&revoked));
        let (accepted_before, checked_after) =
            (Arc::clone(&accepted_before), Arc::clone(&checked_after));
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let started_after_revoke = revoked.load(Ordering::SeqCst);
                let result = manager.validate(&token, &[]).await;
                if started_after_revoke {
                    assert!(result.is_err(), "accepted after revoke returned");
                    checked_after.fetch_add(1, Ordering::SeqCst);
                } else if result.is_ok() {
                    accepted_before.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    // The race is open once the concurrent validator has been accepted at least once.
    while accepted_before.load(Ordering::SeqCst) == 0 && !hammer.is_finished() {
        tokio::task::yield_now().await;
    }
    revoke(&env, RevokeSelector::Token(issued.token.id())).await;
    revoked.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        assert_rejected(&env, &token, "revoked").await;
    }
    // Let the concurrent validator run after the revoke too (bounded wait).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while checked_after.load(Ordering::SeqCst) < 10 && !hammer.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    hammer.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        accepted_before.load(Ordering::SeqCst) > 0,
        "the race never opened"
    );
    assert!(
        checked_after.load(Ordering::SeqCst) > 0,
        "no concurrent validation started after the revoke"
    );
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
        .insert(&InsertToken::new(record, None, env.clock_now(), Vec::new()))
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
    assert!(matches!(
        env.manager.rotate(old.token.id(), HOUR).await,
        Err(Error::AlreadyRotated { .. } | Error::NotActive { .. })
    ));
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
    assert!(matches!(
        env.manager.list(ListFilter::all(), Page::first(0)).await,
        Err(Error::InvalidRequest {
            field: "page.limit",
            ..
        })
    ));
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
    let violations = env
        .manager
        .query_audit(
            token_core::AuditQuery::new()
                .kind(AuditKind::PolicyViolation)
                .subject("svc:ci"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(violations.len(), 1, "{violations:?}");
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
            // A real listener may lose its connection; then the contract is "flush", and
            // the store itself must show the revocations.
            Some(token_core::RevocationNotice::Interrupted) => {
                assert!(
                    f.feed_may_interrupt(),
                    "an in-process feed was interrupted without losing anything"
                );
                for id in &revoked {
                    let record = env
                        .store
                        .get(*id)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"))
                        .unwrap_or_else(|| panic!("missing"));
                    assert!(record.is_revoked());
                }
                return;
            }
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

// ----- audit trail and retention -------------------------------------------------------------

async fn all_events(env: &TestEnv) -> Vec<token_core::AuditRecord> {
    let mut out = Vec::new();
    let mut query = token_core::AuditQuery::new().limit(1000);
    loop {
        let page = env
            .manager
            .query_audit(query.clone())
            .await
            .unwrap_or_else(|e| panic!("query_audit: {e}"));
        out.extend(page.items);
        match page.next_after {
            Some(seq) => query = query.after(seq),
            None => return out,
        }
    }
}

async fn busy_history(env: &TestEnv) {
    let ctx = Context::new().actor("admin:1").client_ip("192.0.2.1");
    let a = env
        .issue_with(IssueRequest::new("alice", scopes_of("a b")).context(ctx.clone()))
        .await;
    let child = derive(env, a.token.id(), "a").await;
    env.advance(Duration::from_secs(60));
    env.manager
        .rotate_with(a.token.id(), HOUR, &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = env.issue("bob", "a").await;
    let _ = env
        .manager
        .validate(b.token.expose_secret(), &req("zzz"))
        .await;
    env.advance(Duration::from_secs(60));
    env.manager
        .revoke_with(RevokeSelector::Token(child.token.id()), "done", &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub async fn audit_chain_links_every_event_and_verifies(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    busy_history(&env).await;
    let events = all_events(&env).await;
    assert!(
        events.len() >= 6,
        "expected a history, got {}",
        events.len()
    );
    let mut prev = token_core::AuditHash::GENESIS;
    for record in &events {
        assert_eq!(
            record.hash,
            token_core::audit::chain_hash(&prev, record.seq, &record.event),
            "event {} is not chained to its predecessor",
            record.seq
        );
        prev = record.hash;
    }
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
    assert_eq!(
        report.head,
        events.last().map(|r| (r.seq, r.hash)),
        "head is the last event"
    );
    // A range starting mid-chain verifies from its anchor.
    let mid = events[events.len() / 2].seq;
    let partial = env
        .manager
        .verify_audit_chain(Some(mid), Some(events[events.len() - 2].seq))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(partial.is_intact());
    assert!(partial.checked >= 1 && partial.checked < events.len() as u64);
}

pub async fn audit_query_filters_and_paginates_by_sequence(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    busy_history(&env).await;
    let events = all_events(&env).await;
    let check = |query: token_core::AuditQuery| {
        let expected: Vec<u64> = events
            .iter()
            .filter(|r| query.matches(r))
            .map(|r| r.seq)
            .collect();
        let manager = env.manager.clone();
        async move {
            let mut got = Vec::new();
            let mut q = query.clone().limit(2);
            loop {
                let page = manager
                    .query_audit(q.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(page.items.len() <= 2);
                got.extend(page.items.iter().map(|r| r.seq));
                match page.next_after {
                    Some(seq) => q = q.after(seq),
                    None => break,
                }
            }
            assert_eq!(got, expected, "query {query:?}");
            got.len()
        }
    };
    assert!(check(token_core::AuditQuery::new().subject("alice")).await >= 3);
    assert!(check(token_core::AuditQuery::new().actor("admin:1")).await >= 3);
    assert_eq!(
        check(token_core::AuditQuery::new().kind(AuditKind::Derived)).await,
        1
    );
    assert_eq!(
        check(token_core::AuditQuery::new().kind(AuditKind::Denied)).await,
        1
    );
    let first_token = events[0]
        .event
        .token_id
        .unwrap_or_else(|| panic!("no token"));
    assert!(check(token_core::AuditQuery::new().token(first_token)).await >= 2);
    let later = START + time::Duration::seconds(60);
    let window =
        check(token_core::AuditQuery::new().between(later, later + time::Duration::seconds(60)))
            .await;
    assert!(window >= 2 && window < events.len());
    assert!(matches!(
        env.manager
            .query_audit(token_core::AuditQuery::new().limit(0))
            .await,
        Err(Error::InvalidRequest {
            field: "query.limit",
            ..
        })
    ));
}

pub async fn audit_export_is_json_lines_without_secrets(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("alice", "a").await;
    busy_history(&env).await;
    let mut out = Vec::new();
    let written = env
        .manager
        .export_audit_jsonl(token_core::AuditQuery::new().limit(3), &mut out)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, written);
    assert_eq!(written as usize, all_events(&env).await.len());
    for line in &lines {
        let record: token_core::AuditRecord =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}"));
        for key in ["seq", "at", "kind", "token_id", "subject", "actor", "hash"] {
            assert!(value.get(key).is_some(), "field {key} missing in {line}");
        }
        assert!(record.seq > 0);
    }
    let secret = &issued.token.expose_secret()[5 + 22..5 + 65];
    assert!(!text.contains(secret));
}

pub async fn denied_events_are_coalesced_per_token(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    revoke(&env, RevokeSelector::Token(issued.token.id())).await;
    for _ in 0..50 {
        assert_rejected(&env, issued.token.expose_secret(), "revoked").await;
    }
    let unknown =
        PlaintextToken::generate(&TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..10 {
        assert_rejected(&env, unknown.expose_secret(), "unknown_token").await;
    }
    let denied = |events: &[token_core::AuditRecord]| -> Vec<token_core::AuditRecord> {
        events
            .iter()
            .filter(|e| e.event.kind == AuditKind::Denied)
            .cloned()
            .collect()
    };
    let events = all_events(&env).await;
    let first = denied(&events);
    assert_eq!(
        first.len(),
        2,
        "one per token/fingerprint per window: {first:?}"
    );
    assert_eq!(env.manager.stats().denied_events_coalesced, 49 + 9);
    let fingerprint = first
        .iter()
        .find_map(|e| e.event.fingerprint.clone())
        .unwrap_or_else(|| panic!("unknown token denial has no fingerprint"));
    assert!(!fingerprint.is_empty() && !unknown.expose_secret().contains(&fingerprint));
    env.advance(Duration::from_secs(61));
    assert_rejected(&env, issued.token.expose_secret(), "revoked").await;
    let later = denied(&all_events(&env).await);
    assert_eq!(later.len(), 3);
    assert_eq!(later[2].event.detail.as_deref(), Some("coalesced=49"));
}

pub async fn used_events_are_written_when_enabled(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| b.audit_uses(token_core::UseAudit::OneIn(3))).await;
    let issued = env.issue("u", "a").await;
    for _ in 0..9 {
        assert_valid(&env, issued.token.expose_secret()).await;
    }
    let used = all_events(&env)
        .await
        .into_iter()
        .filter(|e| e.event.kind == AuditKind::Used)
        .count();
    assert_eq!(used, 3);
    let every = TestEnv::with_options(f, |b| b.audit_uses(token_core::UseAudit::Every)).await;
    let issued = every.issue("u", "a").await;
    for _ in 0..4 {
        assert_valid(&every, issued.token.expose_secret()).await;
    }
    let used: Vec<_> = all_events(&every)
        .await
        .into_iter()
        .filter(|e| e.event.kind == AuditKind::Used)
        .collect();
    assert_eq!(used.len(), 4, "UseAudit::Every writes one event per use");
    assert!(
        used.iter()
            .all(|e| e.event.token_id == Some(issued.token.id()))
    );
    let off = TestEnv::new(f).await;
    let issued = off.issue("u", "a").await;
    assert_valid(&off, issued.token.expose_secret()).await;
    assert!(
        all_events(&off)
            .await
            .iter()
            .all(|e| e.event.kind != AuditKind::Used),
        "Used events are off by default"
    );
}

#[derive(Default)]
struct CollectingSink(std::sync::Mutex<Vec<AuditKind>>);

impl token_core::AuditSink for CollectingSink {
    fn record(&self, event: &AuditEvent) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.kind);
    }
}

pub async fn audit_sink_sees_written_events(f: &dyn Fixture) {
    let sink = Arc::new(CollectingSink::default());
    let env = TestEnv::with_options(f, |b| b.audit_sink(Arc::clone(&sink))).await;
    busy_history(&env).await;
    let seen = sink
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let stored: Vec<AuditKind> = all_events(&env)
        .await
        .iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(seen, stored);
}

fn retention(
    configure: impl FnOnce(token_core::RetentionBuilder) -> token_core::RetentionBuilder,
) -> token_core::Retention {
    configure(token_core::Retention::builder())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn sweep_records_expiry_once(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let short = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let long = env.issue("u", "a").await;
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_empty(), "{report:?}");
    env.advance(2 * HOUR);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.expired, 1);
    let again = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again.is_empty(),
        "a second sweep changes nothing: {again:?}"
    );
    let kinds: Vec<AuditKind> = env
        .manager
        .audit(short.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(kinds, vec![AuditKind::Issued, AuditKind::Expired]);
    let expired_event = env
        .manager
        .audit(short.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .unwrap_or_else(|| panic!("no event"));
    assert_eq!(expired_event.event.actor.as_deref(), Some("sweeper"));
    assert_valid(&env, long.token.expose_secret()).await;
}

pub async fn sweep_revokes_unused_tokens(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| {
        b.policy(
            Policy::builder()
                .no_default_idle_timeout()
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .retention(retention(|r| r.revoke_unused_after(10 * DAY)))
    })
    .await;
    let used = env.issue("u", "a").await;
    let unused = env.issue("u", "a").await;
    let child = derive(&env, unused.token.id(), "a").await;
    env.advance(9 * DAY);
    assert_valid(&env, used.token.expose_secret()).await;
    assert_valid(&env, child.token.expose_secret()).await;
    env.advance(2 * DAY);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    // The unused parent goes, and its (used) child with it: derived tokens never outlive it.
    assert_eq!(report.unused_revoked, 2, "{report:?}");
    assert_rejected(&env, unused.token.expose_secret(), "revoked").await;
    assert_rejected(&env, child.token.expose_secret(), "revoked").await;
    assert_valid(&env, used.token.expose_secret()).await;
    let record = env
        .manager
        .inspect(unused.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    let revocation = record.revocation.unwrap_or_else(|| panic!("not revoked"));
    assert_eq!(revocation.reason, "unused for 10d");
    assert_eq!(revocation.actor.as_deref(), Some("sweeper"));
}

pub async fn sweep_purges_old_records_and_keeps_their_audit(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| {
        b.retention(retention(|r| {
            r.purge_revoked_after(30 * DAY)
                .purge_expired_after(7 * DAY)
                .never_revoke_unused()
        }))
    })
    .await;
    let revoked = env.issue("u", "a").await;
    let expiring = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    let kept = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(60 * DAY))
        .await;
    revoke(&env, RevokeSelector::Token(revoked.token.id())).await;
    env.advance(8 * DAY);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.purged, 1,
        "only the expired record is due: {report:?}"
    );
    assert!(
        env.manager
            .inspect(expiring.token.id())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    env.advance(23 * DAY);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.purged, 1, "{report:?}");
    assert!(
        env.manager
            .inspect(revoked.token.id())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        env.manager
            .inspect(kept.token.id())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    let kinds: Vec<AuditKind> = env
        .manager
        .audit(revoked.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![AuditKind::Issued, AuditKind::Revoked, AuditKind::Purged]
    );
    assert_rejected(&env, revoked.token.expose_secret(), "unknown_token").await;
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact());
}

pub async fn sweep_truncates_audit_behind_a_checkpoint(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| {
        b.retention(retention(|r| {
            r.audit_max_age(30 * DAY).never_revoke_unused()
        }))
    })
    .await;
    for _ in 0..5 {
        env.issue("old", "a").await;
    }
    env.advance(20 * DAY);
    for _ in 0..3 {
        env.issue("new", "a").await;
    }
    env.advance(15 * DAY);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.audit_truncated, 5, "{report:?}");
    let remaining = all_events(&env).await;
    // The old tokens' Issued events are gone (the sweep itself just wrote their Expired events).
    assert!(remaining.iter().all(|e| {
        e.event.subject.as_deref() != Some("old") || e.event.kind == AuditKind::Expired
    }));
    let checkpoint = env
        .store
        .audit_checkpoint()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no checkpoint after truncation"));
    assert!(remaining.iter().all(|e| e.seq > checkpoint.seq));
    let verified = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(verified.is_intact(), "{verified:?}");
    assert_eq!(verified.checked, remaining.len() as u64);
    // New events keep chaining after a truncation.
    env.issue("later", "a").await;
    let again = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.audit_truncated, 0);
    assert!(
        env.manager
            .verify_audit_chain(None, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_intact()
    );
}

pub async fn sweep_is_bounded_by_batch_size(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| {
        b.retention(retention(|r| r.batch_size(10).never_revoke_unused()))
    })
    .await;
    for _ in 0..25 {
        env.issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
            .await;
    }
    env.advance(2 * HOUR);
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(
            env.manager
                .sweep()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .expired,
        );
    }
    assert_eq!(counts, vec![10, 10, 5, 0]);
}

pub async fn concurrent_sweeps_record_each_expiry_once(f: &dyn Fixture) {
    let env = TestEnv::with_options(f, |b| {
        b.retention(retention(|r| r.batch_size(7).never_revoke_unused()))
    })
    .await;
    for _ in 0..40 {
        env.issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
            .await;
    }
    env.advance(2 * HOUR);
    let other = env.sibling(|b| b.retention(retention(|r| r.batch_size(7).never_revoke_unused())));
    let mut tasks = Vec::new();
    for manager in [
        env.manager.clone(),
        other.clone(),
        env.manager.clone(),
        other,
    ] {
        tasks.push(tokio::spawn(async move {
            let mut total = 0;
            loop {
                match manager.sweep().await {
                    Ok(report) if report.expired == 0 => return total,
                    Ok(report) => total += report.expired,
                    Err(Error::Store(token_core::StoreError::Conflict { .. })) => {}
                    Err(e) => panic!("sweep failed: {e}"),
                }
            }
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(total, 40);
    let expired_events = all_events(&env)
        .await
        .iter()
        .filter(|e| e.event.kind == AuditKind::Expired)
        .count();
    assert_eq!(expired_events, 40);
}

pub async fn stale_token_report_lists_unused_tokens(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let never_used = env.issue("u", "a").await;
    let used_long_ago = env.issue("u", "a").await;
    let recently_used = env.issue("u", "a").await;
    env.advance(DAY);
    assert_valid(&env, used_long_ago.token.expose_secret()).await;
    env.advance(10 * DAY);
    assert_valid(&env, recently_used.token.expose_secret()).await;
    env.advance(DAY);
    env.manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stale: HashSet<TokenId> = env
        .manager
        .stale_tokens(5 * DAY, Page::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        stale,
        HashSet::from([never_used.token.id(), used_long_ago.token.id()])
    );
}

// ----- hardening (security review) -------------------------------------------------------------

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

pub async fn derive_cannot_widen_use_limit_or_idle_timeout(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .max_uses(3)
                .idle_timeout(HOUR),
        )
        .await;
    assert_valid(&env, parent.token.expose_secret()).await;
    let wider_uses = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).max_uses(5),
        )
        .await
        .err();
    assert!(
        matches!(
            wider_uses,
            Some(Error::LimitWidening {
                limit: "max_uses",
                ..
            })
        ),
        "{wider_uses:?}"
    );
    let no_idle = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).no_idle_timeout(),
        )
        .await
        .err();
    assert!(
        matches!(
            no_idle,
            Some(Error::LimitWidening {
                limit: "idle_timeout",
                ..
            })
        ),
        "{no_idle:?}"
    );
    let longer_idle = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).idle_timeout(2 * HOUR),
        )
        .await
        .err();
    assert!(matches!(longer_idle, Some(Error::LimitWidening { .. })));
    // Unspecified limits are inherited: the parent's remaining uses and its idle timeout.
    let child = derive(&env, parent.token.id(), "a").await;
    assert_eq!(child.record.max_uses, Some(2));
    assert_eq!(child.record.idle_timeout, Some(HOUR));
}

pub async fn rotating_a_use_limited_token_never_grants_uses_twice(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    assert_valid(&env, old.token.expose_secret()).await;
    let new = env
        .manager
        .rotate(old.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // No grace for use-limited tokens: two live copies would double the budget.
    assert_rejected(&env, old.token.expose_secret(), "expired").await;
    let stored = env
        .store
        .get(new.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(stored.max_uses, Some(2));
    let mut ok = 0;
    for _ in 0..5 {
        if env
            .manager
            .validate(new.token.expose_secret(), &[])
            .await
            .is_ok()
        {
            ok += 1;
        }
    }
    assert_eq!(ok, 2);
}

pub async fn no_use_is_counted_on_a_revoked_or_expired_token(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let revoked = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(5))
        .await;
    let expiring = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(5).ttl(HOUR))
        .await;
    revoke(&env, RevokeSelector::Token(revoked.token.id())).await;
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            revoked.token.id(),
            env.clock_now(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
    env.advance(HOUR);
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            expiring.token.id(),
            env.clock_now(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
    for id in [revoked.token.id(), expiring.token.id()] {
        let record = env
            .store
            .get(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("missing"));
        assert_eq!(record.use_count, 0);
    }
}

pub async fn rotation_rechecks_the_current_policy(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let wide = env.issue("svc:ci", "widgets:read widgets:write").await;
    let narrowed = env.sibling(|b| {
        b.policy(
            Policy::builder()
                .scope_ceiling(|s: &str| {
                    s.starts_with("svc:")
                        .then(|| token_core::ScopeSet::parse("widgets:read").unwrap_or_default())
                })
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
        )
    });
    let err = narrowed.rotate(wide.token.id(), HOUR).await.err();
    assert!(
        matches!(
            err,
            Some(Error::Policy(PolicyViolation::ScopeBeyondCeiling { .. }))
        ),
        "{err:?}"
    );
    assert_valid(&env, wide.token.expose_secret()).await;
}

pub async fn replacing_a_key_id_is_refused(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    let err = env
        .manager
        .rotate_hash_key(HashKey::new(KeyId::new(1), [0xee; 32]))
        .err();
    assert!(
        matches!(err, Some(Error::Keyring(KeyringError::DuplicateKey(_)))),
        "{err:?}"
    );
    assert_valid(&env, issued.token.expose_secret()).await;
}

pub async fn absurd_ttl_is_refused(f: &dyn Fixture) {
    let env = TestEnv::with_policy(
        f,
        Policy::builder()
            .no_max_ttl()
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let err = env
        .manager
        .issue(IssueRequest::new("u", scopes_of("a")).ttl(Duration::MAX))
        .await
        .err();
    assert!(
        matches!(err, Some(Error::InvalidRequest { field: "ttl", .. })),
        "{err:?}"
    );
}

pub async fn opting_out_of_idle_expiry_needs_policy_consent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let err = env
        .manager
        .issue(IssueRequest::new("u", scopes_of("a")).no_idle_timeout())
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(Error::Policy(PolicyViolation::IdleTimeoutRequired))
        ),
        "{err:?}"
    );
    let consenting = TestEnv::with_policy(
        f,
        Policy::builder()
            .allow_no_idle_timeout()
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let issued = consenting
        .issue_with(IssueRequest::new("u", scopes_of("a")).no_idle_timeout())
        .await;
    assert_eq!(issued.record.idle_timeout, None);
}

pub async fn store_refuses_a_child_that_outlives_its_parent(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    // As if the parent was shortened by a rotation after the manager computed the child.
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let mut child = parent.record.clone();
    child.id = token.id();
    child.parent_id = Some(parent.token.id());
    child.expires_at = parent
        .record
        .expires_at
        .map(|e| e + time::Duration::seconds(1));
    let outcome = env
        .store
        .insert(&InsertToken::new(
            child.clone(),
            None,
            env.clock_now(),
            Vec::new(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(outcome, InsertOutcome::OutlivesParent { .. }),
        "{outcome:?}"
    );
    child.expires_at = parent.record.expires_at;
    let outcome = env
        .store
        .insert(&InsertToken::new(child, None, env.clock_now(), Vec::new()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, InsertOutcome::Inserted);
}

pub async fn rotation_grace_is_capped_by_policy(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    let err = env.manager.rotate(old.token.id(), 2 * DAY).await.err();
    match err {
        Some(Error::Policy(violation @ PolicyViolation::GraceExceedsMax { .. })) => {
            assert_eq!(
                violation.to_string(),
                "rotation grace 2d exceeds the policy maximum 1d"
            );
        }
        other => panic!("expected GraceExceedsMax, got {other:?}"),
    }
    // Nothing changed: the token can still be rotated within the cap.
    env.manager
        .rotate(old.token.id(), DAY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub async fn store_refuses_a_child_with_more_uses_than_its_parent_has_left(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    // As if the parent was used after the manager computed the child's limit.
    assert_valid(&env, parent.token.expose_secret()).await;
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let mut child = parent.record.clone();
    child.id = PlaintextToken::generate(&prefix)
        .unwrap_or_else(|e| panic!("{e}"))
        .id();
    child.parent_id = Some(parent.token.id());
    for (uses, expected) in [
        (Some(3), InsertOutcome::UsesExceedParent { remaining: 2 }),
        (None, InsertOutcome::UsesExceedParent { remaining: 2 }),
        (Some(2), InsertOutcome::Inserted),
    ] {
        child.max_uses = uses;
        let outcome = env
            .store
            .insert(&InsertToken::new(
                child.clone(),
                None,
                env.clock_now(),
                Vec::new(),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome, expected, "child max_uses {uses:?}");
    }
}

pub async fn no_use_is_counted_on_a_rotated_token_even_at_an_earlier_instant(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).max_uses(3))
        .await;
    let before_rotation = env.clock_now();
    env.advance(Duration::from_secs(5));
    env.manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A validation that read the record before the rotation reaches the store afterwards with
    // its earlier `now`: the successor already holds every use left, so none may be counted.
    let outcome = env
        .store
        .consume_use(&token_core::ConsumeUse::new(
            old.token.id(),
            before_rotation,
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, token_core::UseOutcome::NotActive);
}

/// A token used within the last flush interval, at an instant when the store alone (without this
/// process's buffered use) would call it idle-expired.
async fn token_idle_only_in_the_store(env: &TestEnv) -> token_core::IssuedToken {
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).idle_timeout(HOUR))
        .await;
    let token = issued.token.expose_secret();
    let issued_at = env.clock_now();
    env.advance(Duration::from_secs(50 * 60));
    assert_valid(env, token).await; // flushed with this batch: the store has +0:50:00
    env.advance(Duration::from_secs(9));
    assert_valid(env, token).await; // within the flush interval: buffered (+0:50:09)
    // Just past the store's idea of the idle deadline, before this process's.
    env.clock
        .set(issued_at + time::Duration::minutes(110) + time::Duration::seconds(5));
    let stored = env
        .store
        .get(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(
        stored.state_at(env.clock_now()),
        TokenState::IdleExpired,
        "the store alone sees the token idle"
    );
    issued
}

pub async fn derive_and_rotate_see_unflushed_use(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = token_idle_only_in_the_store(&env).await;
    derive(&env, issued.token.id(), "a").await;
    // Rotate on its own token, so the derive's flush does not do the rotation's work.
    let env = TestEnv::new(f).await;
    let issued = token_idle_only_in_the_store(&env).await;
    env.manager
        .rotate(issued.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("rotate of a recently used token: {e}"));
}

/// Many writers at once (issues, revocations, raw appends, through two managers over one store):
/// every append continues the one chain (a fork would leave an event whose predecessor hash is
/// not the event before it, which `verify_audit_chain` reports).
pub async fn concurrent_writers_keep_one_audit_chain(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let managers = [env.manager.clone(), env.sibling(|b| b)];
    let mut tasks = Vec::new();
    for task in 0..12usize {
        let manager = managers[task % 2].clone();
        let store = env.store.clone();
        let now = env.clock_now();
        tasks.push(tokio::spawn(async move {
            for round in 0..3 {
                let issued = manager
                    .issue(IssueRequest::new(format!("user:{task}"), scopes_of("a")))
                    .await
                    .unwrap_or_else(|e| panic!("issue: {e}"));
                store
                    .append_audit(&[AuditEvent::new(AuditKind::PolicyViolation, now)
                        .with_reason(format!("task {task} round {round}"))])
                    .await
                    .unwrap_or_else(|e| panic!("append_audit: {e}"));
                manager
                    .revoke(RevokeSelector::Token(issued.token.id()), "done")
                    .await
                    .unwrap_or_else(|e| panic!("revoke: {e}"));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let events = all_events(&env).await;
    assert_eq!(
        events.len(),
        12 * 3 * 3,
        "issue, append and revoke per round"
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
    // Independently of `verify_audit_chain`: every event chains from the one before it.
    assert!(
        events
            .windows(2)
            .all(|w| w[1].hash == token_core::audit::chain_hash(&w[0].hash, w[1].seq, &w[1].event)),
        "an event does not chain from its predecessor"
    );
}
