//! Policy: the TTL cap and required expiry, absurd TTLs, scope ceilings, the live-token limit
//! per subject, consent to opt out of idle expiry, and rotation re-checking the current policy
//! (scopes, grace cap).
//!
//! The live-token limit under concurrent issues is in `concurrency`.

use std::time::Duration;

use token_core::{AuditKind, Error, IssueRequest, Policy, PolicyViolation, RevokeSelector};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{DAY, HOUR, assert_rejected, assert_valid, req, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_policy {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            policy_ttl_cap_is_enforced,
            policy_requires_expiry,
            policy_scope_ceiling_is_enforced,
            policy_max_live_tokens_per_subject,
            rotation_rechecks_the_current_policy,
            absurd_ttl_is_refused,
            opting_out_of_idle_expiry_needs_policy_consent,
            rotation_grace_is_capped_by_policy,
        }
    };
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
