//! Managing tokens after issue: suspend and resume (reversible, by selector, descendants
//! included, never reviving what something else ended), in-place updates that only narrow (and
//! narrow the descendants with them), metadata stored and returned, network allowlists.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use token_core::{
    AuditKind, AuditQuery, Context, DeriveRequest, Error, IssueRequest, Metadata, NetworkAllowlist,
    RevokeSelector, TokenState, TokenUpdate, ValidationError,
};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{DAY, HOUR, assert_rejected, assert_valid, req, stored};

/// This file's cases, the one list of them (see `validate.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_manage {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            suspended_token_is_refused_everywhere_until_resumed,
            suspension_reaches_selectors_and_descendants,
            resume_never_revives_an_ended_token,
            update_narrows_every_field_and_refuses_widening,
            update_narrows_descendants,
            metadata_is_stored_and_returned,
            allowlist_is_checked_and_only_narrows,
            concurrent_updates_validations_and_revocation_never_see_a_wider_state,
        }
    };
}

fn networks(text: &str) -> NetworkAllowlist {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

pub async fn suspended_token_is_refused_everywhere_until_resumed(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "widgets:read").await;
    let (id, token) = (issued.token.id(), issued.token.expose_secret());
    assert_valid(&env, token).await;
    let ctx = Context::new().actor("admin:1");
    let suspended = env
        .manager
        .suspend_with(RevokeSelector::Token(id), "investigating", &ctx)
        .await
        .unwrap_or_else(|e| panic!("suspend: {e}"));
    assert_eq!(suspended, vec![id]);
    assert_rejected(&env, token, "suspended").await;
    let refusal = env.manager.validate(token, &[]).await.err();
    assert_eq!(
        refusal.map(|e| e.class()),
        Some(token_core::ErrorClass::InvalidToken),
        "the same public answer as a revoked token"
    );
    let introspected = env
        .manager
        .introspect(token)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        introspected.is_none(),
        "introspection of a suspended token is inactive"
    );
    let derived = env
        .manager
        .derive(id, DeriveRequest::new(scopes_of("widgets:read")))
        .await;
    assert!(
        matches!(
            derived,
            Err(Error::NotActive {
                state: TokenState::Suspended,
                ..
            })
        ),
        "{derived:?}"
    );
    let rotated = env.manager.rotate(id, HOUR).await;
    assert!(
        matches!(rotated, Err(Error::NotActive { .. })),
        "{rotated:?}"
    );
    assert_eq!(
        stored(&env, id).await.state_at(env.clock_now()),
        TokenState::Suspended
    );
    let again = env
        .manager
        .suspend(RevokeSelector::Token(id), "twice")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        again.is_empty(),
        "suspending a suspended token changes nothing"
    );
    let resumed = env
        .manager
        .resume_with(RevokeSelector::Token(id), "all clear", &ctx)
        .await
        .unwrap_or_else(|e| panic!("resume: {e}"));
    assert_eq!(resumed, vec![id]);
    assert_valid(&env, token).await;
    let trail = env
        .manager
        .audit(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<AuditKind> = trail.iter().map(|r| r.event.kind).collect();
    assert!(kinds.contains(&AuditKind::Suspended) && kinds.contains(&AuditKind::Resumed));
    let suspension = trail
        .iter()
        .find(|r| r.event.kind == AuditKind::Suspended)
        .unwrap_or_else(|| panic!("no Suspended event"));
    assert_eq!(suspension.event.reason.as_deref(), Some("investigating"));
    assert_eq!(suspension.event.actor.as_deref(), Some("admin:1"));
    assert!(
        env.manager
            .verify_audit_chain(None, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_intact()
    );
}

pub async fn suspension_reaches_selectors_and_descendants(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let a = env.issue("team:x", "a").await;
    let b = env.issue("team:x", "a").await;
    let other = env.issue("team:y", "a").await;
    let child = env
        .manager
        .derive(a.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut suspended = env
        .manager
        .suspend(RevokeSelector::Subject("team:x".into()), "incident")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    suspended.sort();
    let mut expected = vec![a.token.id(), b.token.id(), child.token.id()];
    expected.sort();
    assert_eq!(suspended, expected);
    for token in [&a, &b, &child] {
        assert_rejected(&env, token.token.expose_secret(), "suspended").await;
    }
    assert_valid(&env, other.token.expose_secret()).await;
    let unsupported = env
        .manager
        .suspend(RevokeSelector::IssuedBefore(env.clock_now()), "x")
        .await;
    assert!(matches!(
        unsupported,
        Err(Error::InvalidRequest {
            field: "selector",
            ..
        })
    ));
    env.manager
        .resume(RevokeSelector::Family(a.token.id()), "family cleared")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_valid(&env, a.token.expose_secret()).await;
    assert_valid(&env, child.token.expose_secret()).await;
    assert_rejected(&env, b.token.expose_secret(), "suspended").await;
}

pub async fn resume_never_revives_an_ended_token(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let revoked = env.issue("u", "a").await;
    env.manager
        .suspend(RevokeSelector::Token(revoked.token.id()), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.manager
        .revoke(RevokeSelector::Token(revoked.token.id()), "gone")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let answer = env
        .manager
        .resume(RevokeSelector::Token(revoked.token.id()), "x")
        .await;
    assert!(
        matches!(
            answer,
            Err(Error::NotActive {
                state: TokenState::Revoked,
                ..
            })
        ),
        "{answer:?}"
    );
    assert_rejected(&env, revoked.token.expose_secret(), "revoked").await;

    // Suspension does not stop the clock: a token that expired while suspended stays expired.
    let expiring = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(HOUR))
        .await;
    env.manager
        .suspend(RevokeSelector::Token(expiring.token.id()), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.advance(2 * HOUR);
    let answer = env
        .manager
        .resume(RevokeSelector::Token(expiring.token.id()), "x")
        .await;
    assert!(
        matches!(
            answer,
            Err(Error::NotActive {
                state: TokenState::Expired,
                ..
            })
        ),
        "{answer:?}"
    );
    assert_rejected(&env, expiring.token.expose_secret(), "expired").await;

    let live = env.issue("u", "a").await;
    let nothing = env
        .manager
        .resume(RevokeSelector::Token(live.token.id()), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        nothing.is_empty(),
        "resuming a token that is not suspended changes nothing"
    );
}

pub async fn update_narrows_every_field_and_refuses_widening(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(
            IssueRequest::new("u", scopes_of("repo:*:read deploy"))
                .ttl(10 * DAY)
                .max_uses(100)
                .idle_timeout(DAY)
                .allowed_networks(networks("10.0.0.0/8")),
        )
        .await;
    let id = issued.token.id();
    let before = stored(&env, id).await;
    for (update, field) in [
        (TokenUpdate::new().scopes(scopes_of("repo:*")), "scopes"),
        (TokenUpdate::new().expires_in(20 * DAY), "expires_at"),
        (TokenUpdate::new().max_uses(101), "max_uses"),
        (TokenUpdate::new().idle_timeout(2 * DAY), "idle_timeout"),
        (
            TokenUpdate::new().allowed_networks(networks("0.0.0.0/0")),
            "allowed_networks",
        ),
    ] {
        match env.manager.update(id, update).await {
            Err(Error::UpdateWidens { field: got, .. }) => assert_eq!(got, field),
            other => panic!("widening {field} was not refused: {other:?}"),
        }
    }
    assert_eq!(
        *stored(&env, id).await,
        *before,
        "a refused update changed the record"
    );
    let mut labels = token_core::Labels::new();
    labels.insert("team".into(), "site".into());
    let updated = env
        .manager
        .update(
            id,
            TokenUpdate::new()
                .scopes(scopes_of("repo:site:read"))
                .expires_in(DAY)
                .max_uses(10)
                .idle_timeout(HOUR)
                .allowed_networks(networks("10.1.0.0/16"))
                .name("site reader")
                .labels(labels.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("update: {e}"));
    let now = stored(&env, id).await;
    assert_eq!(*now, updated, "the answer is the stored record");
    assert_eq!(now.scopes, scopes_of("repo:site:read"));
    assert_eq!(now.expires_at, Some(env.clock_now() + DAY));
    assert_eq!((now.max_uses, now.idle_timeout), (Some(10), Some(HOUR)));
    assert_eq!(now.allowed_networks, Some(networks("10.1.0.0/16")));
    assert_eq!(
        (now.name.as_deref(), &now.labels),
        (Some("site reader"), &labels)
    );
    let inside = Context::new().client_ip("10.1.2.3");
    let err = env
        .manager
        .validate_with(issued.token.expose_secret(), &req("deploy"), &inside)
        .await
        .err();
    assert!(
        matches!(err, Some(ValidationError::InsufficientScope { .. })),
        "{err:?}"
    );
    let trail = env
        .manager
        .audit(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let event = trail
        .iter()
        .find(|r| r.event.kind == AuditKind::Updated)
        .unwrap_or_else(|| panic!("no Updated event"));
    let detail: serde_json::Value =
        serde_json::from_str(event.event.detail.as_deref().unwrap_or("{}")).unwrap_or_default();
    for field in [
        "scopes",
        "expires_at",
        "max_uses",
        "idle_timeout",
        "allowed_networks",
        "name",
        "labels",
    ] {
        assert!(
            detail.get(field).is_some(),
            "{field} not listed in {detail}"
        );
    }
    assert_eq!(detail["scopes"]["old"], "deploy repo:*:read");
    let missing = env
        .manager
        .update(
            token_core::TokenId::from_bytes([7; 16]),
            TokenUpdate::new().name("x"),
        )
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    env.manager
        .revoke(RevokeSelector::Token(id), "done")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ended = env.manager.update(id, TokenUpdate::new().name("x")).await;
    assert!(matches!(
        ended,
        Err(Error::NotActive {
            state: TokenState::Revoked,
            ..
        })
    ));
}

pub async fn update_narrows_descendants(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(IssueRequest::new("u", scopes_of("repo:*:read")).ttl(10 * DAY))
        .await;
    let child = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("repo:*:read")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grandchild = env
        .manager
        .derive(
            child.token.id(),
            DeriveRequest::new(scopes_of("repo:b:read")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.manager
        .update(
            parent.token.id(),
            TokenUpdate::new()
                .scopes(scopes_of("repo:a:read"))
                .expires_in(DAY)
                .allowed_networks(networks("192.0.2.0/24")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let parent_now = stored(&env, parent.token.id()).await;
    let child_now = stored(&env, child.token.id()).await;
    assert_eq!(child_now.scopes, scopes_of("repo:a:read"));
    assert_eq!(child_now.expires_at, parent_now.expires_at);
    assert_eq!(child_now.allowed_networks, parent_now.allowed_networks);
    // Nothing in common with the narrowed parent: it expires now.
    let grandchild_now = stored(&env, grandchild.token.id()).await;
    assert!(grandchild_now.expires_at <= Some(env.clock_now()));
    assert_rejected(&env, grandchild.token.expose_secret(), "expired").await;
    let narrowed_events = env
        .manager
        .query_audit(AuditQuery::new().kind(AuditKind::Updated))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(
        narrowed_events.len(),
        3,
        "one Updated event per changed token"
    );
    // A derive after the update is checked against the narrowed parent.
    let wider = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("repo:b:read")),
        )
        .await;
    assert!(
        matches!(wider, Err(Error::ScopeWidening { .. })),
        "{wider:?}"
    );
}

pub async fn metadata_is_stored_and_returned(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let meta = Metadata::from_value(serde_json::json!({
        "team": "payments", "ticket": 4711, "nested": {"list": [1, "two", null]}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    let issued = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).metadata(meta.clone()))
        .await;
    let valid = env
        .manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(valid.metadata(), Some(&meta));
    assert_eq!(
        stored(&env, issued.token.id()).await.metadata,
        Some(meta.clone())
    );
    let changed = Metadata::from_value(serde_json::json!({"team": "billing"}))
        .unwrap_or_else(|e| panic!("{e}"));
    env.manager
        .update(
            issued.token.id(),
            TokenUpdate::new().metadata(changed.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let valid = env
        .manager
        .validate(issued.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        valid.metadata(),
        Some(&changed),
        "an update reaches cached copies too"
    );
    env.manager
        .update(issued.token.id(), TokenUpdate::new().clear_metadata())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored(&env, issued.token.id()).await.metadata, None);
}

pub async fn allowlist_is_checked_and_only_narrows(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env
        .issue_with(
            IssueRequest::new("svc:ci", scopes_of("deploy"))
                .allowed_networks(networks("10.20.0.0/16 2001:db8::/32")),
        )
        .await;
    let token = issued.token.expose_secret();
    let from = |ip: &str| Context::new().client_ip(ip);
    for inside in ["10.20.1.2", "2001:db8::1"] {
        env.manager
            .validate_with(token, &[], &from(inside))
            .await
            .unwrap_or_else(|e| panic!("{inside}: {e}"));
    }
    for outside in ["10.21.0.1", "2001:db9::1", "garbage"] {
        let err = env
            .manager
            .validate_with(token, &[], &from(outside))
            .await
            .err();
        assert!(
            matches!(err, Some(ValidationError::AddressNotAllowed)),
            "{outside}: {err:?}"
        );
    }
    assert_rejected(&env, token, "address_not_allowed").await;
    let inherits = env
        .manager
        .derive(issued.token.id(), DeriveRequest::new(scopes_of("deploy")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        inherits.record.allowed_networks,
        Some(networks("10.20.0.0/16 2001:db8::/32"))
    );
    let narrower = env
        .manager
        .derive(
            issued.token.id(),
            DeriveRequest::new(scopes_of("deploy")).allowed_networks(networks("10.20.5.0/24")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = env
        .manager
        .validate_with(narrower.token.expose_secret(), &[], &from("10.20.1.2"))
        .await
        .err();
    assert!(matches!(err, Some(ValidationError::AddressNotAllowed)));
    let wider = env
        .manager
        .derive(
            issued.token.id(),
            DeriveRequest::new(scopes_of("deploy")).allowed_networks(networks("10.0.0.0/8")),
        )
        .await;
    assert!(
        matches!(
            wider,
            Err(Error::LimitWidening {
                limit: "allowed_networks",
                ..
            })
        ),
        "{wider:?}"
    );
}

/// 64 tasks: validations requiring a scope, updates narrowing it away, then a revocation. No
/// validation that starts after an update (or the revocation) returned sees the wider state.
pub async fn concurrent_updates_validations_and_revocation_never_see_a_wider_state(
    f: &dyn Fixture,
) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a b").await;
    let (id, token) = (issued.token.id(), issued.token.expose_secret().to_owned());
    let narrowed = Arc::new(AtomicBool::new(false));
    let revoked = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..60 {
        let (manager, token) = (env.manager.clone(), token.clone());
        let (narrowed, revoked, violations) = (
            Arc::clone(&narrowed),
            Arc::clone(&revoked),
            Arc::clone(&violations),
        );
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                let (was_narrowed, was_revoked) = (
                    narrowed.load(Ordering::SeqCst),
                    revoked.load(Ordering::SeqCst),
                );
                let scope = if worker % 2 == 0 { "b" } else { "a" };
                let result = manager.validate(&token, &req(scope)).await;
                let wider = (was_narrowed && scope == "b" && result.is_ok())
                    || (was_revoked && result.is_ok());
                if wider {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for _ in 0..3 {
        let (manager, narrowed) = (env.manager.clone(), Arc::clone(&narrowed));
        tasks.push(tokio::spawn(async move {
            match manager
                .update(id, TokenUpdate::new().scopes(scopes_of("a")))
                .await
            {
                Ok(_) => narrowed.store(true, Ordering::SeqCst),
                // The revocation committed first: nothing left to narrow.
                Err(Error::NotActive {
                    state: TokenState::Revoked,
                    ..
                }) => {}
                Err(e) => panic!("update: {e}"),
            }
        }));
    }
    {
        let (manager, revoked) = (env.manager.clone(), Arc::clone(&revoked));
        tasks.push(tokio::spawn(async move {
            tokio::task::yield_now().await;
            manager
                .revoke(RevokeSelector::Token(id), "done")
                .await
                .unwrap_or_else(|e| panic!("revoke: {e}"));
            revoked.store(true, Ordering::SeqCst);
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("task: {e}"));
    }
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "a validation saw a wider state than committed"
    );
    assert_rejected(&env, &token, "revoked").await;
}
