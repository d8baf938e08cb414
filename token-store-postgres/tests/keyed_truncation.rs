//! A writer with access to the database but not the audit key backdates recent events, hoping
//! retention will seal a checkpoint over them ("removed by retention, long ago"). The store
//! checks the links of what it truncates, so retention refuses and the trail still reports the
//! edit (`TOKEN_TEST_POSTGRES_URL`). Before the fix the sweep sealed the forged time and
//! `verify_audit_chain` called the trail intact.

mod common;

use std::time::Duration;

use token_core::audit_key::{AuditKey, AuditKeyring};
use token_core::{
    Error, HashKey, IssueRequest, KeyId, Keyring, ManualClock, Retention, SweepStep, TokenManager,
};

use common::{drop_schema, migrated_store, scopes, url_or_skip};

#[tokio::test]
async fn retention_refuses_to_seal_a_backdated_event() {
    let Some(url) = url_or_skip("retention_refuses_to_seal_a_backdated_event") else {
        return;
    };
    let keys = || AuditKeyring::new(AuditKey::new(KeyId::new(1), [7; 32]));
    let store = migrated_store(&url, 2).await.with_audit_keys(keys());
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
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
            .issue(IssueRequest::new("u", scopes("a")).ttl(10 * day))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    clock.advance(day);
    let first: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT min(seq) FROM \"{schema}\".audit_events"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".audit_events SET at = at - 31536000000000 WHERE seq < {first} + 3"
    )))
    .execute(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    match manager.sweep().await {
        Err(Error::SweepIncomplete(report)) => {
            assert!(
                report
                    .failures
                    .iter()
                    .any(|f| f.step == SweepStep::TruncateAudit
                        && f.error.contains(&format!("seq {first}"))),
                "{report:?}"
            );
            assert_eq!(report.audit_truncated, 0);
        }
        other => panic!("expected the truncation refused, got {other:?}"),
    }
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!report.is_intact(), "{report:?}");
    assert_eq!(report.first_broken.and_then(|b| b.expected), None);
    drop(manager);
    drop_schema(&url, &schema).await;
}
