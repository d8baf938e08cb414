//! The audit trail: lifecycle events in order with their context, denied validations (without
//! the token string, coalesced per token), optional `Used` events, the hash chain and its
//! verification, queries by sequence, the JSON Lines export, and the audit sink.
//!
//! Chain continuity under concurrent writers is in `concurrency`; truncation in `sweep`; a
//! checkpoint retention could not have written is here.

use std::sync::Arc;
use std::time::Duration;

use token_core::{
    AuditEvent, AuditKind, Context, Error, IssueRequest, PlaintextToken, RevokeSelector,
    TokenPrefix,
};

use crate::Fixture;
use crate::env::{START, TestEnv, scopes_of};

use super::support::{HOUR, all_events, assert_rejected, assert_valid, derive, req, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_audit {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            audit_records_lifecycle_in_order,
            denied_validation_is_audited_without_token_string,
            audit_chain_links_every_event_and_verifies,
            audit_query_filters_and_paginates_by_sequence,
            audit_export_is_json_lines_without_secrets,
            denied_events_are_coalesced_per_token,
            used_events_are_written_when_enabled,
            audit_sink_sees_written_events,
            recent_events_deleted_behind_a_checkpoint_are_flagged,
        }
    };
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
    // The rotation moved the child under the successor: ending the predecessor's grace left it.
    assert_eq!(child_kinds, vec![AuditKind::Derived]);
    let rotated_events = env
        .manager
        .audit(rotated.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rotated_events.len(), 1);
    assert_eq!(rotated_events[0].event.kind, AuditKind::Issued);
    env.manager
        .revoke_with(RevokeSelector::Token(rotated.token.id()), "done", &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let child_events = env
        .manager
        .audit(child.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let child_kinds: Vec<AuditKind> = child_events.iter().map(|e| e.event.kind).collect();
    assert_eq!(child_kinds, vec![AuditKind::Derived, AuditKind::Revoked]);
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
    // The history's denial is written in the background: reading through the manager waits
    // for it, so read the store first and the sink after.
    let stored: Vec<AuditKind> = all_events(&env)
        .await
        .iter()
        .map(|e| e.event.kind)
        .collect();
    let seen = sink
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    // Exactly the written events; a background denial may arrive before or after a concurrent
    // change's events (see `AuditSink`), so compare without the arrival order, and the
    // lifecycle events (written in line) in order.
    let lifecycle = |kinds: &[AuditKind]| -> Vec<AuditKind> {
        kinds
            .iter()
            .copied()
            .filter(|k| *k != AuditKind::Denied)
            .collect()
    };
    assert_eq!(lifecycle(&seen), lifecycle(&stored));
    let count = |kinds: &[AuditKind]| kinds.iter().filter(|k| **k == AuditKind::Denied).count();
    assert_eq!(count(&seen), count(&stored));
}

/// Deletes the trail's prefix up to `before` the way retention would, but whatever its age: as
/// someone with write access to the database could (delete the rows, write the checkpoint).
async fn delete_prefix_behind_a_checkpoint(env: &TestEnv, before: time::OffsetDateTime) -> u64 {
    let request = token_core::TruncateAudit::new(before, 1000);
    token_core::TokenStore::truncate_audit(&env.store, &request)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn recent_events_deleted_behind_a_checkpoint_are_flagged(f: &dyn Fixture) {
    let keep_30_days = |b: token_core::ManagerBuilder| {
        b.retention(super::support::retention(|r| {
            r.audit_max_age(30 * super::support::DAY)
                .never_revoke_unused()
        }))
    };
    let env = TestEnv::with_options(f, keep_30_days).await;
    for _ in 0..3 {
        env.issue("alice", "a").await;
    }
    env.advance(HOUR);
    let cut = env.clock_now();
    env.advance(HOUR);
    env.issue("bob", "a").await;
    env.issue("bob", "a").await;
    // The three events of two hours ago go, far younger than the 30 days retention keeps.
    assert_eq!(delete_prefix_behind_a_checkpoint(&env, cut).await, 3);
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.links_verify(), "the links alone verify: {report:?}");
    let checkpoint = report
        .checkpoint
        .unwrap_or_else(|| panic!("the checkpoint is reported: {report:?}"));
    assert_eq!(checkpoint.seq, 3);
    assert_eq!(report.checked, 2);
    // Every store records when the last removed event happened, so the report proves it.
    assert_eq!(checkpoint.at, Some(START), "{checkpoint:?}");
    assert!(
        matches!(
            report.checkpoint_check,
            token_core::CheckpointCheck::TooRecent { removed_at, .. } if removed_at == START
        ),
        "{report:?}"
    );
    assert!(
        !report.is_intact(),
        "recent deletion passes as retention: {report:?}"
    );

    // Genuine retention, 31 days on: the flag stays down.
    let env = TestEnv::with_options(f, keep_30_days).await;
    for _ in 0..3 {
        env.issue("alice", "a").await;
    }
    env.advance(31 * super::support::DAY);
    env.issue("bob", "a").await;
    let swept = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(swept.audit_truncated, 3, "{swept:?}");
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.is_intact(),
        "retention flagged as tampering: {report:?}"
    );
    let checkpoint = report
        .checkpoint
        .unwrap_or_else(|| panic!("the checkpoint is reported: {report:?}"));
    assert_eq!(checkpoint.seq, 3);
    assert!(checkpoint.at.is_some(), "{checkpoint:?}");
    assert_eq!(
        report.checkpoint_check,
        token_core::CheckpointCheck::WithinRetention
    );

    // The same checkpoint under a manager that keeps the trail forever is not its doing.
    let forever = env
        .sibling(|b| {
            b.retention(super::support::retention(|r| {
                r.keep_audit_forever().never_revoke_unused()
            }))
        })
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        forever.checkpoint_check,
        token_core::CheckpointCheck::RetentionOff
    );
    assert!(!forever.is_intact());
}
