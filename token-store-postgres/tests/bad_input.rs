//! Bad input against a real server (`TOKEN_TEST_POSTGRES_URL`): hostile schema names, newer and
//! missing schemas, corrupt rows. Nothing panics and nothing corrupt ever validates.

mod common;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;
use token_core::{
    AuditEvent, AuditKind, ErrorClass, IssueRequest, ListFilter, Page, PlaintextToken,
    RevokeSelector, StoreError, TokenId, TokenPrefix, TokenStore,
};
use token_store_postgres::{InvalidSchemaName, PgStore, PgStoreOptions, SCHEMA_VERSION};
use token_store_sql::id_bytes;

use common::{admin, drop_schema, fresh_schema, manager, migrated_store, scopes, url_or_skip};

async fn exec(url: &str, sql: String) {
    let mut conn = admin(url).await;
    sqlx::query(AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The row invariants schema version 3 adds (`NOT VALID`: rows written before it are kept).
const ROW_CHECKS: &[&str] = &[
    "tokens_id_16_bytes",
    "tokens_hash_32_bytes",
    "tokens_family_id_16_bytes",
    "tokens_use_count_not_negative",
    "tokens_max_uses_not_negative",
    "tokens_idle_timeout_not_negative",
];

/// Drops the row checks, so a test can write the rows a database migrated from version 2 (or
/// written around the library) may still hold.
async fn without_row_checks(url: &str, schema: &str) {
    for check in ROW_CHECKS {
        exec(
            url,
            format!("ALTER TABLE \"{schema}\".tokens DROP CONSTRAINT {check}"),
        )
        .await;
    }
}

const HOSTILE: &[&str] = &[
    "",
    "x\"; DROP SCHEMA public CASCADE; --",
    "public\".tokens --",
    "Token_Store",
    "1st",
    "a b",
    "a-b",
    "pg_catalog",
    "tokens\u{0}",
    "ünïcode",
    "a_very_long_schema_name_that_goes_on_and_on_past_the_identifier_limit",
];

#[tokio::test]
async fn hostile_schema_names_are_refused() {
    let Some(url) = url_or_skip("hostile_schema_names_are_refused") else {
        return;
    };
    let pool = PgPoolOptions::new().max_connections(1).connect_lazy(&url);
    let pool = pool.unwrap_or_else(|e| panic!("{e}"));
    for name in HOSTILE {
        let err = PgStore::connect_with(PgStoreOptions::new(&url).schema(*name))
            .await
            .err()
            .unwrap_or_else(|| panic!("schema {name:?} accepted"));
        let StoreError::Backend { source, .. } = &err else {
            panic!("unexpected error for {name:?}: {err}");
        };
        assert!(
            source.downcast_ref::<InvalidSchemaName>().is_some(),
            "{err}"
        );
        assert!(
            PgStore::from_pool(pool.clone(), name).is_err(),
            "from_pool accepted {name:?}"
        );
    }
    // `public` survived the attempts.
    let mut conn = admin(&url).await;
    let public: Option<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = 'public'")
            .fetch_optional(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(public.as_deref(), Some("public"));
}

#[tokio::test]
async fn newer_schema_version_is_refused() {
    let Some(url) = url_or_skip("newer_schema_version_is_refused") else {
        return;
    };
    let store = migrated_store(&url, 2).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    assert_eq!(
        store
            .schema_version()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Some(token_store_postgres::SCHEMA_VERSION)
    );
    exec(
        &url,
        format!(
            "INSERT INTO \"{schema}\".token_store_migrations (version, description, applied_at) \
             VALUES (999, 'from the future', 0)"
        ),
    )
    .await;
    let older_library = PgStore::connect_with(PgStoreOptions::new(&url).schema(&schema))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for err in [
        older_library.migrate().await.err(),
        older_library.get(TokenId::from_bytes([1; 16])).await.err(),
    ] {
        assert!(
            matches!(
                err,
                Some(StoreError::SchemaTooNew {
                    store: "postgres",
                    found: 999,
                    supported: token_store_postgres::SCHEMA_VERSION
                })
            ),
            "{err:?}"
        );
    }
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn unmigrated_schema_is_a_clear_typed_error() {
    let Some(url) = url_or_skip("unmigrated_schema_is_a_clear_typed_error") else {
        return;
    };
    let schema = fresh_schema();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let store = PgStore::connect_with(PgStoreOptions::new(&url).schema(&schema))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.schema_version().await.ok(), Some(None));
    let err = store
        .get(TokenId::from_bytes([1; 16]))
        .await
        .err()
        .unwrap_or_else(|| panic!("unmigrated schema worked"));
    let StoreError::NotMigrated {
        found, required, ..
    } = &err
    else {
        panic!("not a NotMigrated error: {err}");
    };
    assert_eq!(*found, None);
    assert_eq!(*required, SCHEMA_VERSION);
    assert!(err.to_string().contains("migrate"), "{err}");
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let err = manager(store.clone())
        .validate(token.expose_secret(), &[])
        .await
        .err()
        .map(|e| e.class());
    assert_eq!(err, Some(ErrorClass::ServerError), "fails closed");
    // Migrating fixes it; migrating again is a no-op.
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.get(TokenId::from_bytes([1; 16])).await.ok(),
        Some(None)
    );
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_serialize() {
    let Some(url) = url_or_skip("concurrent_migrations_serialize") else {
        return;
    };
    let schema = fresh_schema();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let (url, schema) = (url.clone(), schema.clone());
            tokio::spawn(async move {
                let store = PgStore::connect_with(
                    PgStoreOptions::new(&url).schema(&schema).max_connections(1),
                )
                .await?;
                store.migrate().await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("concurrent migrate: {e}"));
    }
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_and_never_validate() {
    let Some(url) = url_or_skip("corrupt_rows_are_reported_and_never_validate") else {
        return;
    };
    let store = migrated_store(&url, 2).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    without_row_checks(&url, &schema).await;
    let manager = manager(store.clone());
    let corruptions: &[(&str, &str)] = &[
        ("scopes", "scopes = 'NOT A SCOPE!'"),
        ("hash", "hash = substring(hash from 1 for 31)"),
        ("use_count", "use_count = -1"),
        ("expires_at", "expires_at = 9223372036854775807"),
        ("created_at", "created_at = -9223372036854775808"),
        ("hash_key_id", "hash_key_id = -5"),
        ("family_id", "family_id = '\\x00'::bytea"),
        ("idle_timeout_us", "idle_timeout_us = -1"),
    ];
    for (column, assignment) in corruptions {
        let issued = manager
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = issued.token.id();
        let hex = token_store_sql::hex(id.as_bytes());
        exec(
            &url,
            format!("UPDATE \"{schema}\".tokens SET {assignment} WHERE id = '\\x{hex}'::bytea"),
        )
        .await;
        let err = store
            .get(id)
            .await
            .err()
            .unwrap_or_else(|| panic!("corrupt {column} read back"));
        let StoreError::Corrupt {
            store: name,
            message,
        } = &err
        else {
            panic!("expected Corrupt for {column}, got {err}");
        };
        assert_eq!(*name, "postgres");
        assert!(message.contains("tokens"), "{message}");
        assert!(message.contains(column), "{message}");
        assert!(message.contains(&id.to_string()), "{message}");
        let err = manager
            .validate(issued.token.expose_secret(), &[])
            .await
            .err()
            .unwrap_or_else(|| panic!("a corrupt record ({column}) validated"));
        assert_eq!(err.class(), ErrorClass::ServerError, "{err}");
        // Listing refuses too, rather than returning a half-read record.
        assert!(
            manager
                .list(ListFilter::all(), Page::default())
                .await
                .is_err()
        );
        // Revocation still reaches the corrupt row.
        let revoked = manager
            .revoke(RevokeSelector::Token(id), "corrupt")
            .await
            .unwrap_or_else(|e| panic!("revoking a corrupt row: {e}"));
        assert_eq!(revoked, vec![id]);
        exec(
            &url,
            format!("DELETE FROM \"{schema}\".tokens WHERE id = '\\x{hex}'::bytea"),
        )
        .await;
    }

    // Unknown audit kind and bad audit token id.
    let id = TokenId::from_bytes([9; 16]);
    store
        .append_audit(&[
            AuditEvent::new(AuditKind::Denied, time::OffsetDateTime::UNIX_EPOCH)
                .with_token(id, "s"),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exec(
        &url,
        format!("UPDATE \"{schema}\".audit_events SET kind = 'exploded'"),
    )
    .await;
    let err = store
        .query_audit(&token_core::AuditQuery::new().token(id).limit(1000))
        .await
        .err();
    assert!(
        matches!(&err, Some(StoreError::Corrupt { message, .. }) if message.contains("audit_events") && message.contains("kind")),
        "{err:?}"
    );
    drop(manager);
    drop_schema(&url, &schema).await;
}

/// A row that cannot take a usage update (here a negative `use_count`, as a database written
/// before schema version 3 may hold) must not poison usage flushes: the batch's other updates are
/// written, the bad one is reported (by id) and dropped, and the next flush, derive, rotation and
/// sweep work. Before the fix the whole flush failed (`bigint out of range`) and kept failing.
#[tokio::test]
async fn a_corrupt_row_does_not_poison_usage_flushes() {
    let Some(url) = url_or_skip("a_corrupt_row_does_not_poison_usage_flushes") else {
        return;
    };
    poisoned_flush(&url, |schema, hex| {
        vec![format!(
            "UPDATE \"{schema}\".tokens SET use_count = -1 WHERE id = '\\x{hex}'::bytea"
        )]
    })
    .await;
}

/// The same with a row that breaks one of version 3's `NOT VALID` checks (written before it):
/// every update of that row fails the check, so the batch statement fails and each update is
/// retried alone.
#[tokio::test]
async fn a_row_breaking_a_check_does_not_poison_usage_flushes() {
    let Some(url) = url_or_skip("a_row_breaking_a_check_does_not_poison_usage_flushes") else {
        return;
    };
    poisoned_flush(&url, |schema, hex| {
        vec![
            format!("UPDATE \"{schema}\".tokens SET hash = substring(hash from 1 for 31) WHERE id = '\\x{hex}'::bytea"),
            format!("ALTER TABLE \"{schema}\".tokens ADD CONSTRAINT tokens_hash_32_bytes CHECK (octet_length(hash) = 32) NOT VALID"),
        ]
    })
    .await;
}

/// Two tokens with buffered uses; `corrupt(schema, hex id)` spoils the first one's row (with the
/// row checks dropped); then the flush must write the second and report the first.
async fn poisoned_flush(url: &str, corrupt: impl Fn(&str, &str) -> Vec<String>) {
    let url = url.to_owned();
    let store = migrated_store(&url, 2).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    without_row_checks(&url, &schema).await;
    let manager = manager(store.clone());
    let issue = || async {
        manager
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let (bad, good) = (issue().await, issue().await);
    for token in [&bad, &good] {
        manager
            .validate(token.token.expose_secret(), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let hex = token_store_sql::hex(bad.token.id().as_bytes());
    for statement in corrupt(&schema, &hex) {
        exec(&url, statement).await;
    }

    let reported = manager.flush_usage().await;
    match &reported {
        Err(token_core::Error::Store(StoreError::Corrupt { message, .. })) => {
            assert!(message.contains(&bad.token.id().to_string()), "{message}");
            assert!(!message.contains(&good.token.id().to_string()), "{message}");
        }
        other => panic!("expected the bad row reported as Corrupt, got {other:?}"),
    }
    let written = |id| {
        let store = store.clone();
        async move {
            let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT use_count FROM \"{}\".tokens WHERE id = $1",
                store.schema()
            )))
            .bind(id_bytes(id))
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            count
        }
    };
    assert_eq!(
        written(good.token.id()).await,
        1,
        "the good update is written"
    );
    assert!(
        written(bad.token.id()).await <= 0,
        "the bad row is left as it was"
    );

    // Nothing stays poisoned.
    manager
        .validate(good.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("the next flush: {e}"));
    assert_eq!(written(good.token.id()).await, 2);
    manager
        .derive(good.token.id(), token_core::DeriveRequest::new(scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("derive: {e}"));
    manager
        .sweep()
        .await
        .unwrap_or_else(|e| panic!("sweep: {e}"));
    drop(manager);
    drop_schema(&url, &schema).await;
}

/// A database whose default isolation is REPEATABLE READ: concurrent `migrate()` calls must still
/// apply each version once. (Before the fix a migrator that waited on the advisory lock read the
/// version from a snapshot older than the other's commit, re-ran version 1 and failed.) The
/// database is this test's own, so the setting touches no other test.
#[tokio::test]
async fn migrate_is_safe_under_a_repeatable_read_default() {
    let Some(url) = url_or_skip("migrate_is_safe_under_a_repeatable_read_default") else {
        return;
    };
    let database = fresh_schema();
    exec(&url, format!("CREATE DATABASE {database}")).await;
    exec(
        &url,
        format!("ALTER DATABASE {database} SET default_transaction_isolation = 'repeatable read'"),
    )
    .await;
    let (base, _) = url
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("no database in {url}"));
    let db_url = format!("{base}/{database}");
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let db_url = db_url.clone();
            tokio::spawn(async move {
                let store = PgStore::connect_with(
                    PgStoreOptions::new(&db_url)
                        .schema("tokens")
                        .max_connections(1),
                )
                .await?;
                store.migrate().await?;
                store.close().await;
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.unwrap_or_else(|e| panic!("{e}")) {
            failures.push(e.to_string());
        }
    }
    exec(&url, format!("DROP DATABASE {database} WITH (FORCE)")).await;
    assert!(
        failures.is_empty(),
        "concurrent migrate under REPEATABLE READ: {failures:?}"
    );
}

/// A newer deployment migrates the schema past this library after it connected (and cached its
/// version check): the first statement the change breaks reports `SchemaTooNew`, not a driver
/// error or a misleading "not migrated". (Before the fix it said NotMigrated { found: None }.)
#[tokio::test]
async fn a_schema_migrated_past_the_library_later_is_reported() {
    let Some(url) = url_or_skip("a_schema_migrated_past_the_library_later_is_reported") else {
        return;
    };
    let store = migrated_store(&url, 2).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store.clone());
    let issued = manager
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The version check is cached now. The newer deployment's migration:
    exec(
        &url,
        format!("ALTER TABLE \"{schema}\".tokens RENAME COLUMN scopes TO scope_set"),
    )
    .await;
    exec(
        &url,
        format!(
            "INSERT INTO \"{schema}\".token_store_migrations (version, description, applied_at) \
             VALUES ({}, 'from the future', 0)",
            SCHEMA_VERSION + 1
        ),
    )
    .await;
    let err = store.get(issued.token.id()).await.err();
    assert!(
        matches!(err, Some(StoreError::SchemaTooNew { found, .. }) if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
    drop(manager);
    drop_schema(&url, &schema).await;
}

/// A row that does not decode does not block a suspension: it is suspended by its raw key with
/// the others (and never resumed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_row_is_suspended_with_the_rest_and_never_resumed() {
    let Some(url) = url_or_skip("a_corrupt_row_is_suspended_with_the_rest_and_never_resumed")
    else {
        return;
    };
    let store = migrated_store(&url, 2).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store.clone());
    let good = manager
        .issue(IssueRequest::new("team:x", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bad = manager
        .issue(IssueRequest::new("team:x", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hex = token_store_sql::hex(bad.token.id().as_bytes());
    exec(
        &url,
        format!(
            "UPDATE \"{schema}\".tokens SET metadata = 'not json' WHERE id = '\\x{hex}'::bytea"
        ),
    )
    .await;
    let suspended = manager
        .suspend(
            token_core::RevokeSelector::Subject("team:x".into()),
            "incident",
        )
        .await
        .unwrap_or_else(|e| panic!("a corrupt row blocked the suspension: {e}"));
    assert_eq!(suspended.len(), 2, "{suspended:?}");
    let resumed = manager
        .resume(
            token_core::RevokeSelector::Subject("team:x".into()),
            "cleared",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resumed,
        vec![good.token.id()],
        "only the readable row is resumed"
    );
    drop_schema(&url, &schema).await;
}
