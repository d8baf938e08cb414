//! A writer with access to the database file but not the audit key backdates the newest event
//! of a recent prefix it deleted, hoping retention will seal a checkpoint over it ("removed by
//! retention, long ago"). The store checks the links of what it truncates, so retention refuses
//! and the trail still reports the edit. (Before the fix the sweep sealed the forged event's
//! time, and `verify_audit_chain` called the trail intact.)

mod common;

use std::time::Duration;

use token_core::audit_key::{AuditKey, AuditKeyring};
use token_core::{
    Error, HashKey, IssueRequest, KeyId, Keyring, ManualClock, Retention, ScopeSet, SweepStep,
    TokenManager,
};

#[tokio::test]
async fn retention_refuses_to_seal_a_backdated_event() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let keys = || AuditKeyring::new(AuditKey::new(KeyId::new(1), [7; 32]));
    let store = common::migrated(&dir.path().join("t.db"))
        .await
        .with_audit_keys(keys());
    let day = Duration::from_secs(86_400);
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [3; 32])),
    )
    .clock(clock.clone())
    .audit_keys(keys())
    .retention(
        Retention::builder()
            .audit_max_age(30 * day)
            .never_revoke_unused()
            .build()
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..4 {
        manager
            .issue(
                IssueRequest::new("u", ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")))
                    .ttl(10 * day),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The attacker: events 1..3 are a day old; claim they happened a year ago, so a sweep
    // would remove them and seal the claim into its checkpoint.
    clock.advance(day);
    sqlx::query("UPDATE audit_events SET at = at - 31536000000000 WHERE seq IN (1, 2, 3)")
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    match manager.sweep().await {
        Err(Error::SweepIncomplete(report)) => {
            let failure = report
                .failures
                .iter()
                .find(|f| f.step == SweepStep::TruncateAudit)
                .unwrap_or_else(|| panic!("truncation did not fail: {report:?}"));
            assert!(failure.error.contains("seq 1"), "{failure}");
            assert_eq!(report.audit_truncated, 0);
        }
        other => panic!("expected the truncation refused, got {other:?}"),
    }
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.is_intact(), "{report:?}");
    assert_eq!(report.first_broken.map(|b| b.seq), Some(1), "{report:?}");
    // A keyed link's correct value is never reported.
    assert_eq!(report.first_broken.and_then(|b| b.expected), None);
}
