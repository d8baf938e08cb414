//! SQLite store: validation with 1,000,000 tokens (random access) against a raw sqlx point
//! `SELECT` of the same row on the same file, in the same run; plus issue and revoke latency with
//! the durable default (`synchronous=FULL`).
//!
//! ```text
//! cargo bench -p benches --bench sqlite
//! TOKEN_BENCH_TOKENS=100000 cargo bench -p benches --bench sqlite
//! ```
//!
//! The populated database is cached under `target/bench-data/` (filling 1,000,000 tokens takes a
//! few minutes, done once with `synchronous=NORMAL`).

use benches::{Walk, data_dir, token_count};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, Policy, RevokeSelector, Scope, ScopeSet, TokenId,
    TokenManager,
};
use token_store_sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};

fn keyring() -> Keyring {
    Keyring::new(HashKey::new(KeyId::new(1), [7; 32]))
}

fn policy() -> Policy {
    Policy::builder()
        .no_default_idle_timeout()
        .max_ttl(Duration::from_secs(3650 * 86_400))
        .default_ttl(Duration::from_secs(3650 * 86_400))
        .build()
        .expect("policy")
}

async fn manager(store: SqliteStore) -> TokenManager {
    TokenManager::builder(store, keyring())
        .prefix("acme_live")
        .expect("prefix")
        .policy(policy())
        .build()
        .expect("manager")
}

/// Opens (and on first use fills) the cached database; returns its URL and the token strings.
async fn populated(count: usize) -> (String, Vec<String>) {
    let dir = data_dir();
    let db = dir.join(format!("sqlite-{count}.db"));
    let list = dir.join(format!("sqlite-{count}.tokens"));
    let url = format!("sqlite://{}", db.display());
    if db.exists() && list.exists() {
        let file = std::fs::File::open(&list).expect("token list");
        let tokens: Vec<String> = BufReader::new(file)
            .lines()
            .map(|l| l.expect("line"))
            .collect();
        if tokens.len() == count {
            let store = SqliteStore::connect(&url).await.expect("connect");
            store.migrate().await.expect("migrate");
            return (url, tokens);
        }
    }
    let _ = std::fs::remove_file(&db);
    let options = SqliteStoreOptions::new(&url)
        .expect("options")
        .synchronous(Synchronous::Normal);
    let store = SqliteStore::connect_with(options).await.expect("connect");
    store.migrate().await.expect("migrate");
    let manager = manager(store).await;
    let scopes =
        ScopeSet::parse("widgets:read widgets:write billing:invoices:read").expect("scopes");
    let mut tokens = Vec::with_capacity(count);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&list).expect("token list"));
    for i in 0..count {
        let issued = manager
            .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
            .await
            .expect("issue");
        writeln!(out, "{}", issued.token.expose_secret()).expect("write");
        tokens.push(issued.token.expose_secret().to_owned());
    }
    out.flush().expect("flush");
    (url, tokens)
}

fn bench_sqlite(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let count = token_count("TOKEN_BENCH_TOKENS", 1_000_000);
    let (url, tokens) = runtime.block_on(populated(count));
    let store = runtime
        .block_on(SqliteStore::connect(&url))
        .expect("connect");
    let pool = store.pool().clone();
    let manager = runtime.block_on(manager(store));
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
    let ids: Vec<TokenId> = tokens
        .iter()
        .map(|t| token_core::parse_token(t).expect("parse").id())
        .collect();

    let mut group = c.benchmark_group(format!("sqlite_{count}_tokens"));
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("validate_random", |b| {
        b.to_async(&runtime).iter(|| {
            let token = &tokens[walk.next_index(tokens.len())];
            let manager = &manager;
            let required = &required;
            async move { manager.validate(token, required).await.expect("valid") }
        })
    });
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("raw_sqlx_point_select", |b| {
        b.to_async(&runtime).iter(|| {
            let id = ids[walk.next_index(ids.len())];
            let pool = &pool;
            async move {
                let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(pool)
                    .await
                    .expect("select");
                assert!(row.is_some());
            }
        })
    });
    let scopes = ScopeSet::parse("widgets:read").expect("scopes");
    group.bench_function("issue_durable", |b| {
        b.to_async(&runtime).iter(|| {
            let manager = &manager;
            let scopes = scopes.clone();
            async move {
                manager
                    .issue(IssueRequest::new("bench:issue", scopes))
                    .await
                    .expect("issue")
            }
        })
    });
    let victims: Vec<TokenId> = runtime.block_on(async {
        let mut out = Vec::new();
        for _ in 0..5000 {
            out.push(
                manager
                    .issue(IssueRequest::new("bench:revoke", scopes.clone()))
                    .await
                    .expect("issue")
                    .token
                    .id(),
            );
        }
        out
    });
    let mut next = 0usize;
    group.bench_function("revoke_durable", |b| {
        b.to_async(&runtime).iter(|| {
            let id = victims[next % victims.len()];
            next += 1;
            let manager = &manager;
            async move {
                manager
                    .revoke(RevokeSelector::Token(id), "bench")
                    .await
                    .expect("revoke")
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = bench_sqlite
}
criterion_main!(benches);
