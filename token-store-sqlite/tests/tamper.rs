//! Tamper evidence of the audit hash chain against the SQLite file itself: the shared cases of
//! `token_testkit::tamper` (edits, deletions, reorderings made with raw SQL are reported at the
//! first broken link; a change whose audit event cannot be written does not happen), plus what
//! only SQLite has (a reopened file, a damaged hash column).

mod common;

use std::path::Path;

use tempfile::TempDir;
use token_core::store::TokenStore;
use token_core::{AuditQuery, Error, HashKey, KeyId, Keyring, ManualClock, TokenManager};
use token_store_sqlite::SqliteStore;
use token_testkit::tamper::{EVENT_COLUMNS_BUT_SEQ, RawAudit, TamperEnv, TamperFixture, history};

async fn open(path: &Path) -> SqliteStore {
    common::migrated(path).await
}

/// Raw access to the SQLite file's audit table.
struct SqliteRaw {
    _dir: TempDir,
    store: SqliteStore,
}

impl SqliteRaw {
    async fn run(&self, sql: String) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.replace("{events}", "audit_events")))
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[async_trait::async_trait]
impl RawAudit for SqliteRaw {
    async fn exec(&self, sql: &str) {
        self.run(sql.to_owned()).await;
    }
    async fn swap_seq(&self, a: u64, b: u64) {
        self.run(format!(
            "UPDATE {{events}} SET seq = -1 WHERE seq = {a}; \
             UPDATE {{events}} SET seq = {a} WHERE seq = {b}; \
             UPDATE {{events}} SET seq = {b} WHERE seq = -1;"
        ))
        .await;
    }
    async fn swap_content(&self, a: u64, b: u64) {
        let set = EVENT_COLUMNS_BUT_SEQ
            .iter()
            .map(|c| {
                format!(
                    "{c} = (SELECT {c} FROM snapshot o WHERE o.seq = {} - {{events}}.seq)",
                    a + b
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.run(format!(
            "DROP TABLE IF EXISTS temp.snapshot; \
             CREATE TEMP TABLE snapshot AS SELECT * FROM {{events}}; \
             UPDATE {{events}} SET {set} WHERE seq IN ({a}, {b});"
        ))
        .await;
    }
    async fn zero_hash(&self, seq: u64) {
        self.run(format!(
            "UPDATE {{events}} SET hash = zeroblob(32) WHERE seq = {seq}"
        ))
        .await;
    }
    async fn block_appends(&self) {
        self.run(
            "CREATE TRIGGER audit_down BEFORE INSERT ON {events} \
             BEGIN SELECT RAISE(ABORT, 'audit down'); END;"
                .to_owned(),
        )
        .await;
    }
    async fn unblock_appends(&self) {
        self.run("DROP TRIGGER audit_down".to_owned()).await;
    }
}

/// A fresh store in a temporary file, and the raw handle that also keeps the file alive.
async fn fresh() -> (TamperEnv, SqliteStore, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("tokens.db");
    let store = open(&path).await;
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
    )
    .clock(clock.clone())
    .build()
    .unwrap_or_else(|e| panic!("manager: {e}"));
    let env = TamperEnv {
        manager,
        clock,
        raw: Box::new(SqliteRaw {
            _dir: dir,
            store: store.clone(),
        }),
    };
    (env, store, path)
}

struct SqliteTamper;

#[async_trait::async_trait]
impl TamperFixture for SqliteTamper {
    async fn fresh(&self) -> TamperEnv {
        fresh().await.0
    }
}

token_testkit::tamper_tests!(SqliteTamper);

#[tokio::test]
async fn the_chain_survives_reopening_the_file() {
    let (env, _store, path) = fresh().await;
    let events = history(&env).await;
    let reopened = open(&path).await;
    let again = reopened
        .query_audit(&AuditQuery::new().limit(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, events);
}

#[tokio::test]
async fn truncated_hash_is_corrupt_not_accepted() {
    let (env, store, _path) = fresh().await;
    history(&env).await;
    // The schema refuses it; a damaged file (CHECKs off) is reported as corrupt.
    let mut conn = store
        .pool()
        .acquire()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::raw_sql(
        "PRAGMA ignore_check_constraints = ON; \
         UPDATE audit_events SET hash = x'0102' WHERE seq = 2; \
         PRAGMA ignore_check_constraints = OFF;",
    )
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    drop(conn);
    match env.manager.verify_audit_chain(None, None).await {
        Err(Error::Store(token_core::StoreError::Corrupt { message, .. })) => {
            assert!(
                message.contains("hash") && message.contains('2'),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
