//! The audit chain under concurrency and across the version 1 -> 2 upgrade, against a real
//! server (`TOKEN_TEST_POSTGRES_URL`).

mod common;

use std::sync::Arc;

use sqlx::AssertSqlSafe;
use token_core::store::TokenStore;
use token_core::{
    AuditEvent, AuditKind, AuditQuery, AuditRecord, HashKey, IssueRequest, KeyId, Keyring,
    ManualClock, RevokeSelector, ScopeSet, StoreError, TokenId, TokenManager,
};
use token_store_postgres::{PgStore, PgStoreOptions, SCHEMA_VERSION};

use common::{SchemaJanitor, admin, fresh_schema, migrated_store, second_instance, url_or_skip};

fn manager(store: PgStore, clock: &ManualClock) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [5; 32])))
        .clock(clock.clone())
        .build()
        .unwrap_or_else(|e| panic!("manager: {e}"))
}

async fn all_events(store: &PgStore) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut query = AuditQuery::new().limit(1000);
    loop {
        let page = store
            .query_audit(&query)
            .await
            .unwrap_or_else(|e| panic!("query_audit: {e}"));
        let Some(last) = page.last() else {
            return out;
        };
        query = query.after(last.seq);
        out.extend(page);
    }
}

/// Many tasks (two instances, pools of 8 and 4) issue, revoke and append at once: every append
/// reads the head under the chain lock, so the chain does not fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_one_chain() {
    let Some(url) = url_or_skip("concurrent_appends_keep_one_chain") else {
        return;
    };
    let store = migrated_store(&url, 8).await;
    let janitor = SchemaJanitor::default();
    janitor.track(store.schema());
    let other = second_instance(&url, store.schema(), "other-instance").await;
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let managers = [
        manager(store.clone(), &clock),
        manager(other.clone(), &clock),
    ];
    let mut tasks = Vec::new();
    for task in 0..24usize {
        let manager = managers[task % 2].clone();
        let raw: Arc<dyn TokenStore> = if task % 3 == 0 {
            Arc::new(other.clone())
        } else {
            Arc::new(store.clone())
        };
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                let issued = manager
                    .issue(IssueRequest::new(
                        format!("user:{task}"),
                        ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("issue: {e}"));
                raw.append_audit(&[
                    AuditEvent::new(AuditKind::PolicyViolation, token_core::Clock::now(&clock))
                        .with_reason(format!("task {task} round {round}")),
                    AuditEvent::new(AuditKind::Denied, token_core::Clock::now(&clock))
                        .with_fingerprint(format!("fp{task}-{round}")),
                ])
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
    let events = all_events(&store).await;
    // issue + 2 appended + revoke, 4 rounds, 24 tasks.
    assert_eq!(events.len(), 24 * 4 * 4);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let report = managers[0]
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
    // Independently of `verify_audit_chain`: every event chains from the one before it (a fork
    // would chain two events from the same predecessor).
    assert!(
        events
            .windows(2)
            .all(|w| w[1].hash == token_core::audit::chain_hash(&w[0].hash, w[1].seq, &w[1].event)),
        "an event does not chain from its predecessor"
    );
}

/// A store in a fresh schema migrated only to version 1 (dropped with the janitor).
async fn version_1_store(url: &str) -> (PgStore, SchemaJanitor) {
    let schema = fresh_schema();
    let janitor = SchemaJanitor::default();
    janitor.track(&schema);
    let store = PgStore::connect_with(PgStoreOptions::new(url).schema(&schema))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .migrate_up_to(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (store, janitor)
}

/// Builds a version-1 schema, writes events into it with raw SQL (with a gap), upgrades, and
/// checks the old events are chained and new ones continue the chain.
#[tokio::test]
async fn upgrade_from_version_1_chains_existing_events() {
    let Some(url) = url_or_skip("upgrade_from_version_1_chains_existing_events") else {
        return;
    };
    let (store, _janitor) = version_1_store(&url).await;
    let schema = store.schema().to_owned();
    assert_eq!(store.schema_version().await.ok(), Some(Some(1)));
    // A version-1 schema is not usable by this library until migrated.
    match store.get(TokenId::from_bytes([1; 16])).await {
        Err(StoreError::NotMigrated {
            found: Some(1),
            required,
            ..
        }) => assert_eq!(required, SCHEMA_VERSION),
        other => panic!("expected NotMigrated, got {other:?}"),
    }
    let mut conn = admin(&url).await;
    let token = vec![7u8; 16];
    for (at, kind, reason) in [
        (1_000_000i64, "issued", None),
        (2_000_000, "denied", Some("revoked")),
        (3_000_000, "rotated", None),
        (4_000_000, "revoked", Some("leaked")),
    ] {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".audit_events (at, kind, token_id, subject, actor, reason) \
             VALUES ($1, $2, $3, 'alice', 'admin:1', $4)"
        )))
        .bind(at)
        .bind(kind)
        .bind(token.clone())
        .bind(reason)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\".audit_events WHERE seq = 2"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.schema_version().await.ok(),
        Some(Some(SCHEMA_VERSION))
    );
    let events = all_events(&store).await;
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    let mut prev = token_core::AuditHash::GENESIS;
    for record in &events {
        assert_eq!(
            record.hash,
            token_core::audit::chain_hash(&prev, record.seq, &record.event)
        );
        prev = record.hash;
    }
    assert_eq!(events[2].event.reason.as_deref(), Some("leaked"));

    // New events continue the chain, past every old seq.
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = manager(store.clone(), &clock);
    manager
        .issue(IssueRequest::new(
            "bob",
            ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = all_events(&store).await;
    assert_eq!(after.len(), 4);
    assert!(after[3].seq > 4);
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, 4);
    // Migrating again is a no-op.
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all_events(&store).await, after);
}

/// A version-1 event that cannot be decoded fails the upgrade with `Corrupt`, changing nothing.
#[tokio::test]
async fn upgrade_with_a_corrupt_v1_event_changes_nothing() {
    let Some(url) = url_or_skip("upgrade_with_a_corrupt_v1_event_changes_nothing") else {
        return;
    };
    let (store, _janitor) = version_1_store(&url).await;
    let schema = store.schema().to_owned();
    let mut conn = admin(&url).await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".audit_events (at, kind) VALUES (1, 'issued'), (2, 'exploded')"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    match store.migrate().await {
        Err(StoreError::Corrupt { message, .. }) => {
            assert!(
                message.contains("seq 2") && message.contains("kind"),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(store.schema_version().await.ok(), Some(Some(1)));
    let hash_column: Option<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'audit_events' AND column_name = 'hash'",
    )
    .bind(&schema)
    .fetch_optional(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hash_column, None, "the failed upgrade rolled back");
    // Repairing the row lets the upgrade through.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE \"{schema}\".audit_events SET kind = 'denied' WHERE kind = 'exploded'"
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all_events(&store).await.len(), 2);
}
