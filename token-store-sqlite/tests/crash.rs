//! Crash safety: a child process issues and revokes tokens and is killed with SIGKILL mid-stream.
//! Reopening the file must show every operation the child reported as done (it reports only after
//! the call returned `Ok`), with revoked tokens still revoked, and the file must pass
//! `PRAGMA integrity_check`.
//!
//! A killed process leaves the OS page cache intact, so this proves "nothing acknowledged is lost
//! when the process dies", not durability across power loss; that rests on `synchronous=FULL`,
//! whose setting `tests/schema.rs` checks.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use token_core::store::TokenStore;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, RevokeSelector, ScopeSet, TokenId, TokenManager,
};
use token_store_sqlite::SqliteStore;

const CHILD_ENV: &str = "TOKEN_STORE_SQLITE_CRASH_CHILD_DB";
/// Lines (completed operations) the parent waits for before killing the child.
const KILL_AFTER: usize = 120;

fn url(path: &str) -> String {
    format!("sqlite://{path}")
}

/// The child: runs only when re-executed by [`sigkill_mid_stream_loses_no_acknowledged_operation`].
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(async move {
        let store = SqliteStore::connect(&url(&path))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let keyring = Keyring::new(HashKey::new(KeyId::new(1), [7; 32]));
        let manager = TokenManager::builder(store, keyring)
            .build()
            .unwrap_or_else(|e| panic!("manager: {e}"));
        let scopes = ScopeSet::parse("a b:c").unwrap_or_else(|e| panic!("{e}"));
        let mut out = std::io::stdout().lock();
        let mut issued: Vec<TokenId> = Vec::new();
        // Effectively endless: the parent kills us.
        for i in 0..1_000_000u64 {
            let token = manager
                .issue(
                    IssueRequest::new(format!("user:{}", i % 7), scopes.clone())
                        .label("n", i.to_string()),
                )
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
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let path = dir.path().join("crash.db").display().to_string();
    {
        let store = SqliteStore::connect(&url(&path))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        store.close().await;
    }

    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
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
    // SIGKILL while the child is in the middle of its loop.
    child.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    let status = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert!(!status.success(), "child exited normally: {status}");
    // Lines already in the pipe were also acknowledged operations.
    for line in lines {
        let line = line.unwrap_or_else(|e| panic!("read: {e}"));
        record(&line, &mut issued, &mut revoked);
    }
    assert!(issued.len() >= KILL_AFTER / 2);
    assert!(!revoked.is_empty());

    let store = SqliteStore::connect(&url(&path))
        .await
        .unwrap_or_else(|e| panic!("reopen: {e}"));
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("integrity_check: {e}"));
    assert_eq!(check, "ok");
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    for id in &issued {
        let record = store
            .get(*id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
            .unwrap_or_else(|| panic!("issued token {id} lost after the crash"));
        assert_eq!(record.id, *id);
    }
    for id in &revoked {
        let record = store
            .get(*id)
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e}"))
            .unwrap_or_else(|| panic!("revoked token {id} lost after the crash"));
        assert!(
            record.is_revoked(),
            "revoked token {id} is live again after the crash"
        );
    }
    // Nothing else than what the child reported can have been revoked by it: at most one
    // revocation in flight at the kill.
    let revoked_in_db: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(revoked_in_db as usize <= revoked.len() + 1);
}
