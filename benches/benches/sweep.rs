//! Retention sweep cost on the SQLite store: one pass over 1,000 freshly expired tokens (marked
//! expired, and the previous batch purged) next to 10,000 and next to 1,000,000 live tokens, in the
//! same run. The cost should follow the rows changed, not the table size.
//!
//! ```text
//! cargo bench -p benches --bench sweep
//! TOKEN_BENCH_TOKENS=100000 cargo bench -p benches --bench sweep   # smaller large table
//! ```
//!
//! Databases are cached under `target/bench-data/` (the large one takes minutes to fill once).

use benches::{data_dir, token_count};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, ManualClock, Policy, Retention, ScopeSet, TokenManager,
};
use token_store_sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};

const EXPIRED_PER_PASS: usize = 1000;

fn policy() -> Policy {
    Policy::builder()
        .no_default_idle_timeout()
        .max_ttl(Duration::from_secs(3650 * 86_400))
        .default_ttl(Duration::from_secs(3650 * 86_400))
        .build()
        .expect("policy")
}

fn retention() -> Retention {
    Retention::builder()
        .purge_expired_after(Duration::from_secs(3600))
        .never_revoke_unused()
        .keep_audit_forever()
        .batch_size(EXPIRED_PER_PASS as u32)
        .build()
        .expect("retention")
}

async fn manager(url: &str, clock: ManualClock, synchronous: Synchronous) -> TokenManager {
    let options = SqliteStoreOptions::new(url)
        .expect("options")
        .synchronous(synchronous);
    let store = SqliteStore::connect_with(options).await.expect("connect");
    store.migrate().await.expect("migrate");
    TokenManager::builder(store, Keyring::new(HashKey::new(KeyId::new(1), [7; 32])))
        .prefix("acme_live")
        .expect("prefix")
        .policy(policy())
        .retention(retention())
        .clock(clock)
        .build()
        .expect("manager")
}

/// A database holding `live` long-lived tokens (cached between runs).
async fn with_live_tokens(live: usize) -> String {
    let db = data_dir().join(format!("sweep-live-{live}.db"));
    let ready = data_dir().join(format!("sweep-live-{live}.ready"));
    let url = format!("sqlite://{}", db.display());
    if db.exists() && ready.exists() {
        return url;
    }
    let _ = std::fs::remove_file(&db);
    // Reuse the validation bench's table of the same size if it exists (a consistent copy).
    let shared = data_dir().join(format!("sqlite-{live}.db"));
    if shared.exists() {
        let source = SqliteStore::connect(&format!("sqlite://{}", shared.display()))
            .await
            .expect("connect");
        source.migrate().await.expect("migrate");
        sqlx::query("VACUUM INTO ?")
            .bind(db.display().to_string())
            .execute(source.pool())
            .await
            .expect("vacuum into");
        std::fs::write(&ready, b"ok").expect("marker");
        return url;
    }
    let manager = manager(&url, ManualClock::starting_now(), Synchronous::Normal).await;
    let scopes = ScopeSet::parse("widgets:read").expect("scopes");
    for i in 0..live {
        manager
            .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
            .await
            .expect("issue");
    }
    std::fs::write(&ready, b"ok").expect("marker");
    url
}

fn bench_sweep(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("sweep_1000_expired");
    group.sample_size(10);
    for live in [10_000, token_count("TOKEN_BENCH_TOKENS", 1_000_000)] {
        let url = runtime.block_on(with_live_tokens(live));
        let clock = ManualClock::starting_now();
        // NORMAL keeps the untimed setup (1,000 issues per pass) short; the sweep itself is measured
        // with the same setting for both table sizes.
        let manager = runtime.block_on(manager(&url, clock.clone(), Synchronous::Normal));
        let scopes = ScopeSet::parse("widgets:read").expect("scopes");
        group.bench_function(format!("{live}_live"), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    // Not timed: a fresh batch of short-lived tokens, then time passes.
                    runtime.block_on(async {
                        for i in 0..EXPIRED_PER_PASS {
                            manager
                                .issue(
                                    IssueRequest::new(format!("short:{i}"), scopes.clone())
                                        .ttl(Duration::from_secs(60)),
                                )
                                .await
                                .expect("issue");
                        }
                    });
                    clock.advance(Duration::from_secs(2 * 3600));
                    let start = Instant::now();
                    let report = runtime.block_on(manager.sweep()).expect("sweep");
                    total += start.elapsed();
                    assert_eq!(report.expired, EXPIRED_PER_PASS);
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench_sweep
}
criterion_main!(benches);
