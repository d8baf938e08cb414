//! Races: concurrent validations, issues, rotations, sweeps and audit writers keep the
//! contract's limits (the exact use limit, the live-token limit, one successor, each expiry
//! recorded once, one unforked audit chain).

use std::sync::Arc;

use token_core::store::TokenStore;
use token_core::{
    AuditEvent, AuditKind, Error, IssueRequest, ListFilter, Page, Policy, PolicyViolation,
    RevokeSelector, TokenState, ValidationError,
};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{HOUR, all_events, retention};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_concurrency {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            max_uses_is_exact_under_64_concurrent_validations,
            concurrent_issues_respect_live_limit,
            concurrent_rotations_yield_one_successor,
            concurrent_sweeps_record_each_expiry_once,
            concurrent_writers_keep_one_audit_chain,
        }
    };
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
