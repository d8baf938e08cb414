//! Tamper evidence of the audit hash chain, against the SQLite file itself: edits, deletions and
//! reorderings made with raw SQL are reported by `verify_audit_chain` at the first broken link;
//! and a lifecycle change whose audit event cannot be written does not happen.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use token_core::store::TokenStore;
use token_core::{
    AuditQuery, AuditRecord, Error, HashKey, IssueRequest, IssuedToken, KeyId, Keyring,
    ManualClock, RevokeSelector, ScopeSet, TokenManager,
};
use token_store_sqlite::SqliteStore;
use token_testkit::tamper::{EVENT_COLUMNS_BUT_SEQ, RawAudit, TamperEnv, TamperFixture};

struct Env {
    _dir: TempDir,
    store: SqliteStore,
    manager: TokenManager,
    clock: ManualClock,
}

async fn new_env() -> Env {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = open(&dir.path().join("tokens.db")).await;
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
    )
    .clock(clock.clone())
    .build()
    .unwrap_or_else(|e| panic!("manager: {e}"));
    Env {
        _dir: dir,
        store,
        manager,
        clock,
    }
}

async fn open(path: &Path) -> SqliteStore {
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

impl Env {
    async fn issue(&self, subject: &str) -> Result<IssuedToken, Error> {
        self.manager
            .issue(IssueRequest::new(
                subject,
                ScopeSet::parse("a b").unwrap_or_else(|e| panic!("{e}")),
            ))
            .await
    }

    /// Issues, rotates and revokes: a history of several events.
    async fn history(&self) -> Vec<AuditRecord> {
        let a = self.issue("alice").await.unwrap_or_else(|e| panic!("{e}"));
        self.clock.advance(Duration::from_secs(10));
        let b = self.issue("bob").await.unwrap_or_else(|e| panic!("{e}"));
        self.clock.advance(Duration::from_secs(10));
        self.manager
            .rotate(a.token.id(), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("rotate: {e}"));
        self.clock.advance(Duration::from_secs(10));
        self.manager
            .revoke(RevokeSelector::Token(b.token.id()), "leaked")
            .await
            .unwrap_or_else(|e| panic!("revoke: {e}"));
        self.issue("carol").await.unwrap_or_else(|e| panic!("{e}"));
        let events = self.events().await;
        assert!(events.len() >= 5, "a history: {events:#?}");
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=events.len() as u64).collect::<Vec<_>>()
        );
        events
    }

    async fn events(&self) -> Vec<AuditRecord> {
        self.store
            .query_audit(&AuditQuery::new().limit(1000))
            .await
            .unwrap_or_else(|e| panic!("query_audit: {e}"))
    }

    /// Raw SQL on the database file, bypassing the store.
    async fn tamper(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The seq of the first broken link, `None` when the chain verifies.
    async fn first_broken(&self) -> Option<u64> {
        self.manager
            .verify_audit_chain(None, None)
            .await
            .unwrap_or_else(|e| panic!("verify: {e}"))
            .first_broken
            .map(|b| b.seq)
    }
}

#[tokio::test]
async fn the_chain_survives_reopening_the_file() {
    let env = new_env().await;
    let events = env.history().await;
    let reopened = open(&env._dir.path().join("tokens.db")).await;
    let again = reopened
        .query_audit(&AuditQuery::new().limit(1000))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, events);
}

#[tokio::test]
async fn truncated_hash_is_corrupt_not_accepted() {
    let env = new_env().await;
    env.history().await;
    // The schema refuses it; a damaged file (CHECKs off) is reported as corrupt.
    let mut conn = env
        .store
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

#[tokio::test]
async fn change_without_its_audit_event_does_not_happen() {
    let env = new_env().await;
    let kept = env.issue("alice").await.unwrap_or_else(|e| panic!("{e}"));
    let tokens_before: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
        .fetch_one(env.store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let events_before = env.events().await;
    env.tamper(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit down'); END;",
    )
    .await;

    // Issue fails with a store error and leaves no token.
    match env.issue("bob").await {
        Err(Error::Store(e)) => assert!(e.to_string().contains("audit down"), "{e}"),
        other => panic!("issue without its audit event: {other:?}"),
    }
    let tokens_after: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
        .fetch_one(env.store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tokens_after, tokens_before);
    let bobs: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens WHERE subject = 'bob'")
        .fetch_one(env.store.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bobs, 0);

    // Revoke fails and the token stays valid.
    assert!(matches!(
        env.manager
            .revoke(RevokeSelector::Token(kept.token.id()), "try")
            .await,
        Err(Error::Store(_))
    ));
    env.manager
        .validate(kept.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("still valid: {e}"));
    let record = env
        .store
        .get(kept.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("kept token missing"));
    assert!(record.revocation.is_none());

    // Rotation and sweeps are refused the same way.
    assert!(
        env.manager
            .rotate(kept.token.id(), Duration::from_secs(60))
            .await
            .is_err()
    );
    let record = env
        .store
        .get(kept.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("kept token missing"));
    assert!(record.rotated_to.is_none());
    assert_eq!(env.events().await, events_before);

    // Once the audit trail works again, so does revocation, and the chain is intact.
    env.tamper("DROP TRIGGER audit_down").await;
    env.manager
        .revoke(RevokeSelector::Token(kept.token.id()), "now")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        env.manager
            .validate(kept.token.expose_secret(), &[])
            .await
            .is_err()
    );
    assert_eq!(env.first_broken().await, None);
}

#[tokio::test]
async fn sweep_without_its_audit_events_changes_nothing() {
    let env = new_env().await;
    let short = env
        .manager
        .issue(
            IssueRequest::new(
                "alice",
                ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}")),
            )
            .ttl(Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.clock.advance(Duration::from_secs(3600));
    env.tamper(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit down'); END;",
    )
    .await;
    assert!(env.manager.sweep().await.is_err());
    let marked: Option<i64> =
        sqlx::query_scalar("SELECT expiry_recorded_at FROM tokens WHERE id = ?")
            .bind(short.token.id().as_bytes().to_vec())
            .fetch_one(env.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(marked, None, "the expiry marker was not set");
    env.tamper("DROP TRIGGER audit_down").await;
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.expired, 1);
    assert_eq!(env.first_broken().await, None);
}

// ----- the shared tamper cases (token-testkit) ----------------------------------------------

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
}

struct SqliteTamper;

#[async_trait::async_trait]
impl TamperFixture for SqliteTamper {
    async fn fresh(&self) -> TamperEnv {
        let env = new_env().await;
        TamperEnv {
            manager: env.manager,
            clock: env.clock,
            raw: Box::new(SqliteRaw {
                _dir: env._dir,
                store: env.store,
            }),
        }
    }
}

token_testkit::tamper_tests!(SqliteTamper);
