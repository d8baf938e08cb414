//! Revocation: every selector (id, subject, family, label, issue time, a presented token)
//! revokes exactly its tokens and their descendants, once, and a revoked token is refused as
//! soon as `revoke` returns.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use token_core::{
    AuditKind, Context, DeriveRequest, Error, IssueRequest, PlaintextToken, RevokeSelector,
    TokenId, TokenPrefix, TokenState,
};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{HOUR, assert_rejected, assert_valid, derive, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_revoke {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            revoke_by_id,
            revoke_by_subject,
            revoke_by_family_reaches_every_member,
            revoke_by_label,
            revoke_issued_before,
            revoke_is_idempotent,
            revoked_token_is_rejected_once_revoke_returns,
            revoking_parent_revokes_grandchildren,
            revoke_presented_requires_possession,
        }
    };
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
