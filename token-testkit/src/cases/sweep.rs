//! Retention sweeps: expiry recorded once, unused tokens revoked, old records purged while
//! their audit stays, the audit truncated behind a checkpoint, and each sweep bounded by its
//! batch size.
//!
//! Concurrent sweeps are in `concurrency`.

use token_core::store::TokenStore;
use token_core::{AuditKind, IssueRequest, Policy, RevokeSelector};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{
    DAY, HOUR, all_events, assert_rejected, assert_valid, derive, retention, revoke,
};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_sweep {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            sweep_records_expiry_once,
            sweep_revokes_unused_tokens,
            sweep_purges_old_records_and_keeps_their_audit,
            sweep_truncates_audit_behind_a_checkpoint,
            sweep_is_bounded_by_batch_size,
        }
    };
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
