//! Crash safety on PostgreSQL: a child process issues and revokes tokens and is killed with
//! SIGKILL mid-stream (its connections die with it, a transaction possibly in flight). Afterwards
//! every operation the child reported as done (it reports only after the call returned `Ok`) is
//! there, revoked tokens are still revoked, nothing else was revoked but the one call that may
//! have been in flight, and the audit chain verifies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use token_core::store::TokenStore;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenId, TokenManager,
};
use token_store_postgres::{PgStore, PgStoreOptions};

mod common;

use common::{drop_schema, fresh_schema, url_or_skip};

const CHILD_SCHEMA: &str = "TOKEN_STORE_POSTGRES_CRASH_CHILD_SCHEMA";
/// Completed operations the parent waits for before killing the child.
const KILL_AFTER: usize = 80;

fn keyring() -> Keyring {
    Keyring::new(HashKey::new(KeyId::new(1), [7; 32]))
}

async fn store(url: &str, schema: &str) -> PgStore {
    PgStore::connect_with(PgStoreOptions::new(url).schema(schema))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// The child: runs only when re-executed by [`sigkill_mid_stream_loses_no_acknowledged_operation`].
#[test]
fn crash_child() {
    let (Ok(schema), Ok(url)) = (
        std::env::var(CHILD_SCHEMA),
        std::env::var("TOKEN_TEST_POSTGRES_URL"),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async move {
        let manager = TokenManager::builder(store(&url, &schema).await, keyring())
            .build()
            .unwrap_or_else(|e| panic!("manager: {e}"));
        let scopes = ScopeSet::parse("a b:c").unwrap_or_else(|e| panic!("{e}"));
        let mut out = std::io::stdout().lock();
        let mut issued: Vec<TokenId> = Vec::new();
        // Effectively endless: the parent kills us.
        for i in 0..1_000_000u64 {
            let token = manager
                .issue(IssueRequest::new(format!("user:{}", i % 7), scopes.clone()))
                .await
                .unwrap_or_else(|e| panic!("issue: {e}"));
            let id = token.token.id();
            writeln!(out, "issued {id}").unwrap_or_else(|e| panic!("{e}"));
            out.flush().unwrap_or_else(|e| panic!("{e}"));
            issued.push(id);
            if i % 3 == 2 {
                let victim = issued[issued.len() - 2];
                let revoked = manager
                    .revoke(RevokeSelector::Token(victim), "crash test")
                    .await
                    .unwrap_or_else(|e| panic!("revoke: {e}"));
                for id in revoked {
                    writeln!(out, "revoked {id}").unwrap_or_else(|e| panic!("{e}"));
                }
                out.flush().unwrap_or_else(|e| panic!("{e}"));
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_operation() {
    let Some(url) = url_or_skip("sigkill_mid_stream_loses_no_acknowledged_operation") else {
        return;
    };
    let schema = fresh_schema();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    store(&url, &schema)
        .await
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));

    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_SCHEMA, &schema)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn child: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("no child stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut issued = Vec::new();
    let mut revoked = Vec::new();
    let record = |line: &str, issued: &mut Vec<TokenId>, revoked: &mut Vec<TokenId>| {
        if let Some(id) = line.strip_prefix("issued ") {
            issued.push(id.parse().unwrap_or_else(|e| panic!("{id}: {e}")));
        } else if let Some(id) = line.strip_prefix("revoked ") {
            revoked.push(id.parse().unwrap_or_else(|e| panic!("{id}: {e}")));
        }
    };
    let mut operations = 0;
    while operations < KILL_AFTER {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("child ended early after {operations} operations"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        if line.starts_with("issued ") || line.starts_with("revoked ") {
            operations += 1;
        }
        record(&line, &mut issued, &mut revoked);
    }
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(!status.success(), "child exited normally: {status}");
    for line in lines {
        let line = line.unwrap_or_else(|e| panic!("read: {e}"));
        record(&line, &mut issued, &mut revoked);
    }
    assert!(issued.len() >= KILL_AFTER / 2);
    assert!(!revoked.is_empty());

    let store = store(&url, &schema).await;
    for id in &issued {
        store
            .get(*id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
            .unwrap_or_else(|| panic!("issued token {id} lost after the crash"));
    }
    for id in &revoked {
        let record = store
            .get(*id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
            .unwrap_or_else(|| panic!("revoked token {id} lost after the crash"));
        assert!(record.is_revoked(), "revoked token {id} is live again");
    }
    let revoked_in_db: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".tokens WHERE revoked_at IS NOT NULL"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked_in_db as usize <= revoked.len() + 1);
    let manager = TokenManager::builder(store, keyring())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.is_intact(),
        "the audit chain broke in the crash: {report:?}"
    );
    drop(manager);
    drop_schema(&url, &schema).await;
}
