//! PostgreSQL store: validation against a raw sqlx point `SELECT` of the same row on the same
//! server, in the same run; and revocation propagation from one instance (pool) to another
//! instance's LISTEN/NOTIFY feed, with p50/p99 printed from 500 samples.
//!
//! ```text
//! TOKEN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p benches --bench postgres
//! TOKEN_BENCH_PG_TOKENS=100000 ...   # tokens in the table (default 100,000)
//! ```
//!
//! Without `TOKEN_TEST_POSTGRES_URL` the bench prints one line and measures nothing. The table is
//! kept in schema `token_bench` between runs.

use benches::token_count;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::StreamExt;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, Policy, RevocationNotice, RevokeSelector, Scope,
    ScopeSet, TokenId, TokenManager,
};
use token_store_postgres::{PgStore, PgStoreOptions};

const SCHEMA: &str = "token_bench";
const COUNT_SQL: &str = "SELECT count(*) FROM token_bench.tokens";
const SELECT_SQL: &str = "SELECT * FROM token_bench.tokens WHERE id = $1";

fn manager(store: PgStore) -> TokenManager {
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [7; 32])))
        .prefix("acme_live")
        .expect("prefix")
        .policy(
            Policy::builder()
                .no_default_idle_timeout()
                .max_ttl(Duration::from_secs(3650 * 86_400))
                .default_ttl(Duration::from_secs(3650 * 86_400))
                .build()
                .expect("policy"),
        )
        .build()
        .expect("manager")
}

async fn store(url: &str) -> PgStore {
    let store = PgStore::connect_with(PgStoreOptions::new(url).schema(SCHEMA).max_connections(8))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// Fills the table to `count` tokens (kept between runs) and returns tokens to validate: the
/// secrets are not stored, so the run issues its own sample of 10,000 on top of the filler.
async fn populated(url: &str, count: usize) -> Vec<String> {
    let store = store(url).await;
    let existing: i64 = sqlx::query_scalar(COUNT_SQL)
        .fetch_one(store.pool())
        .await
        .expect("count");
    let scopes =
        ScopeSet::parse("widgets:read widgets:write billing:invoices:read").expect("scopes");
    let pool = store.pool().clone();
    let manager = manager(store);
    let missing = count.saturating_sub(existing as usize);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let manager = manager.clone();
            let scopes = scopes.clone();
            tokio::spawn(async move {
                for i in (t..missing).step_by(8) {
                    manager
                        .issue(IssueRequest::new(format!("filler:{i}"), scopes.clone()))
                        .await
                        .expect("issue");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
    // Fresh planner statistics: right after a bulk load they are stale and the descendant walk of
    // a revocation may be planned as a full scan (autovacuum fixes this in production).
    sqlx::query("ANALYZE token_bench.tokens")
        .execute(&pool)
        .await
        .expect("analyze");
    let mut sample = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        sample.push(
            manager
                .issue(IssueRequest::new(format!("sample:{i}"), scopes.clone()))
                .await
                .expect("issue")
                .token
                .expose_secret()
                .to_owned(),
        );
    }
    sample
}

fn bench_postgres(c: &mut Criterion) {
    let Ok(url) = std::env::var("TOKEN_TEST_POSTGRES_URL") else {
        println!("skipped postgres benchmarks: TOKEN_TEST_POSTGRES_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let count = token_count("TOKEN_BENCH_PG_TOKENS", 100_000);
    let tokens = runtime.block_on(populated(&url, count));
    let ids: Vec<TokenId> = tokens
        .iter()
        .map(|t| token_core::parse_token(t).expect("parse").id())
        .collect();
    let instance_a = runtime.block_on(store(&url));
    let pool = instance_a.pool().clone();
    let manager_a = manager(instance_a);
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];

    let mut group = c.benchmark_group(format!("postgres_{count}_tokens"));
    let mut i = 0usize;
    group.bench_function("validate", |b| {
        b.to_async(&runtime).iter(|| {
            i = (i + 7919) % tokens.len();
            let token = &tokens[i];
            let manager = &manager_a;
            let required = &required;
            async move { manager.validate(token, required).await.expect("valid") }
        })
    });
    let mut j = 0usize;
    group.bench_function("raw_sqlx_point_select", |b| {
        b.to_async(&runtime).iter(|| {
            j = (j + 7919) % ids.len();
            let id = ids[j];
            let pool = &pool;
            async move {
                let row = sqlx::query(SELECT_SQL)
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(pool)
                    .await
                    .expect("select");
                assert!(row.is_some());
            }
        })
    });

    // Propagation: revoke on instance A, wait for instance B's feed.
    let instance_b = runtime.block_on(store(&url));
    let mut feed = runtime
        .block_on(token_core::TokenStore::subscribe_revocations(&instance_b))
        .expect("subscribe")
        .expect("feed");
    let scopes = ScopeSet::parse("widgets:read").expect("scopes");
    let mut propagate = |manager: &TokenManager| -> Duration {
        runtime.block_on(async {
            let id = manager
                .issue(IssueRequest::new("propagation", scopes.clone()))
                .await
                .expect("issue")
                .token
                .id();
            let start = Instant::now();
            manager
                .revoke(RevokeSelector::Token(id), "bench")
                .await
                .expect("revoke");
            loop {
                match tokio::time::timeout(Duration::from_secs(5), feed.next()).await {
                    Ok(Some(RevocationNotice::Revoked(ids))) if ids.contains(&id) => {
                        return start.elapsed();
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => panic!("no notice for {id}"),
                }
            }
        })
    };
    group.bench_function("revoke_to_other_instance_feed", |b| {
        b.iter_custom(|n| (0..n).map(|_| propagate(&manager_a)).sum())
    });
    group.finish();

    let mut samples: Vec<Duration> = (0..500).map(|_| propagate(&manager_a)).collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "revocation propagation over {} samples: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).sample_size(30);
    targets = bench_postgres
}
criterion_main!(benches);
