//! Tamper evidence of the audit hash chain against a real server (`TOKEN_TEST_POSTGRES_URL`):
//! edits, deletions and reorderings made with raw SQL in the test's schema are reported by
//! `verify_audit_chain` at the first broken link; and a lifecycle change whose audit event cannot
//! be written does not happen.

mod common;

use std::time::Duration;

use sqlx::AssertSqlSafe;
use token_core::store::TokenStore;
use token_core::{
    AuditQuery, AuditRecord, Error, HashKey, IssueRequest, IssuedToken, KeyId, Keyring,
    ManualClock, RevokeSelector, ScopeSet, StoreError, TokenManager,
};
use token_store_postgres::PgStore;
use token_testkit::tamper::{EVENT_COLUMNS_BUT_SEQ, RawAudit, TamperEnv, TamperFixture};

use common::{SchemaJanitor, admin, migrated_store, url_or_skip};

struct Env {
    url: String,
    store: PgStore,
    manager: TokenManager,
    clock: ManualClock,
    _janitor: SchemaJanitor,
}

async fn new_env(test: &str) -> Option<Env> {
    let url = url_or_skip(test)?;
    let store = migrated_store(&url, 4).await;
    let janitor = SchemaJanitor::default();
    janitor.track(store.schema());
    let clock = ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [5; 32])),
    )
    .clock(clock.clone())
    .build()
    .unwrap_or_else(|e| panic!("manager: {e}"));
    Some(Env {
        url,
        store,
        manager,
        clock,
        _janitor: janitor,
    })
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

    /// Issues, rotates and revokes: a history of several events, seqs 1..=n.
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

    /// Raw SQL on the test's schema, bypassing the store; `{s}` is the quoted schema.
    async fn tamper(&self, sql: &str) {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.store.schema()));
        let mut conn = admin(&self.url).await;
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let sql = sql.replace("{s}", &format!("\"{}\"", self.store.schema()));
        let mut conn = admin(&self.url).await;
        sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
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
async fn every_stored_hash_is_32_bytes() {
    let Some(env) = new_env("every_stored_hash_is_32_bytes").await else {
        return;
    };
    let events = env.history().await;
    assert_eq!(
        env.scalar("SELECT count(*) FROM {s}.audit_events WHERE octet_length(hash) = 32")
            .await,
        events.len() as i64
    );
}

#[tokio::test]
async fn truncated_hash_is_corrupt_not_accepted() {
    let Some(env) = new_env("truncated_hash_is_corrupt_not_accepted").await else {
        return;
    };
    env.history().await;
    // The schema refuses it ...
    let mut conn = admin(&env.url).await;
    let refused = sqlx::raw_sql(AssertSqlSafe(format!(
        "UPDATE \"{}\".audit_events SET hash = '\\x0102' WHERE seq = 2",
        env.store.schema()
    )))
    .execute(&mut conn)
    .await;
    assert!(refused.is_err(), "the length check refuses a short hash");
    // ... and once the check is dropped, reading it is Corrupt.
    env.tamper(
        "ALTER TABLE {s}.audit_events DROP CONSTRAINT audit_events_hash_len; \
         UPDATE {s}.audit_events SET hash = '\\x0102' WHERE seq = 2;",
    )
    .await;
    match env.manager.verify_audit_chain(None, None).await {
        Err(Error::Store(StoreError::Corrupt { message, .. })) => {
            assert!(
                message.contains("hash") && message.contains('2'),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

const AUDIT_DOWN: &str = "CREATE FUNCTION {s}.audit_down() RETURNS trigger LANGUAGE plpgsql AS \
    $$ BEGIN RAISE EXCEPTION 'audit down'; END $$; \
    CREATE TRIGGER audit_down BEFORE INSERT ON {s}.audit_events \
    FOR EACH ROW EXECUTE FUNCTION {s}.audit_down();";

const AUDIT_UP: &str = "DROP TRIGGER audit_down ON {s}.audit_events";

#[tokio::test]
async fn change_without_its_audit_event_does_not_happen() {
    let Some(env) = new_env("change_without_its_audit_event_does_not_happen").await else {
        return;
    };
    let kept = env.issue("alice").await.unwrap_or_else(|e| panic!("{e}"));
    let tokens_before = env.scalar("SELECT count(*) FROM {s}.tokens").await;
    let events_before = env.events().await;
    env.tamper(AUDIT_DOWN).await;

    // Issue fails with a store error and leaves no token.
    match env.issue("bob").await {
        Err(Error::Store(e)) => assert!(e.to_string().contains("audit down"), "{e}"),
        other => panic!("issue without its audit event: {other:?}"),
    }
    assert_eq!(
        env.scalar("SELECT count(*) FROM {s}.tokens").await,
        tokens_before
    );
    assert_eq!(
        env.scalar("SELECT count(*) FROM {s}.tokens WHERE subject = 'bob'")
            .await,
        0
    );

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

    // Rotation is refused the same way.
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

    // Once the audit trail works again, so does revocation, and the chain is intact (the seqs
    // the failed attempts took are gaps, which the chain allows).
    env.tamper(AUDIT_UP).await;
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
    let Some(env) = new_env("sweep_without_its_audit_events_changes_nothing").await else {
        return;
    };
    env.manager
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
    env.tamper(AUDIT_DOWN).await;
    assert!(env.manager.sweep().await.is_err());
    assert_eq!(
        env.scalar("SELECT count(*) FROM {s}.tokens WHERE expiry_recorded_at IS NOT NULL")
            .await,
        0,
        "the expiry marker was not set"
    );
    env.tamper(AUDIT_UP).await;
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.expired, 1);
    assert_eq!(env.first_broken().await, None);
}

// ----- the shared tamper cases (token-testkit) ----------------------------------------------

/// Raw access to the test schema's audit table (through an admin connection).
struct PgRaw {
    env: Env,
}

impl PgRaw {
    async fn run(&self, sql: String) {
        self.env
            .tamper(&sql.replace("{events}", "{s}.audit_events"))
            .await;
    }
}

#[async_trait::async_trait]
impl RawAudit for PgRaw {
    async fn exec(&self, sql: &str) {
        self.run(sql.to_owned()).await;
    }
    async fn swap_seq(&self, a: u64, b: u64) {
        // `seq` is an identity column: the tamperer first makes it writable.
        self.run(format!(
            "ALTER TABLE {{events}} ALTER COLUMN seq SET GENERATED BY DEFAULT; \
             UPDATE {{events}} SET seq = -1 WHERE seq = {a}; \
             UPDATE {{events}} SET seq = {a} WHERE seq = {b}; \
             UPDATE {{events}} SET seq = {b} WHERE seq = -1;"
        ))
        .await;
    }
    async fn swap_content(&self, a: u64, b: u64) {
        let set = EVENT_COLUMNS_BUT_SEQ
            .iter()
            .map(|c| format!("{c} = o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.run(format!(
            "UPDATE {{events}} e SET {set} \
             FROM (SELECT * FROM {{events}} WHERE seq IN ({a}, {b})) o \
             WHERE e.seq IN ({a}, {b}) AND o.seq = {} - e.seq",
            a + b
        ))
        .await;
    }
    async fn zero_hash(&self, seq: u64) {
        self.run(format!(
            "UPDATE {{events}} SET hash = decode(repeat('00', 32), 'hex') WHERE seq = {seq}"
        ))
        .await;
    }
}

struct PgTamper;

#[async_trait::async_trait]
impl TamperFixture for PgTamper {
    fn available(&self) -> Result<(), String> {
        common::url()
            .map(|_| ())
            .ok_or_else(|| "TOKEN_TEST_POSTGRES_URL is not set".to_owned())
    }
    async fn fresh(&self) -> TamperEnv {
        let env = new_env("tamper")
            .await
            .unwrap_or_else(|| panic!("TOKEN_TEST_POSTGRES_URL is not set"));
        TamperEnv {
            manager: env.manager.clone(),
            clock: env.clock.clone(),
            raw: Box::new(PgRaw { env }),
        }
    }
}

token_testkit::tamper_tests!(PgTamper);
