//! The headline comparison, every arm in one run and at two store sizes (10,000 and 1,000,000
//! tokens, random access):
//!
//! | arm | what |
//! |---|---|
//! | `floor` | `parse_token` + an id-keyed map get + keyed BLAKE3 of 48 bytes + expiry and scope checks on a compact record: what no token validation can avoid |
//! | `jwt_hs256` | `jsonwebtoken` HS256 verify of a comparable claim set + the scope check (revocation impossible) |
//! | `memory` | `TokenManager::validate` on the memory store, **default policy** (idle timeout on), polled once |
//! | `sqlite_cached` / `sqlite_uncached` / `sqlite_raw_select` | the SQLite store behind the validation cache, without it, and a raw sqlx point `SELECT` of the same row |
//! | `postgres_cached` / `postgres_uncached` / `postgres_raw_select` | the same on PostgreSQL (needs `TOKEN_TEST_POSTGRES_URL`) |
//! | `memory_2_threads` / `sqlite_cached_2_threads` | validations spread over 2 threads (time per validation; throughput is its inverse) |
//!
//! After the timed arms it prints the cross-instance revocation delay with the cache on (two
//! managers with their own pools on one PostgreSQL: from `revoke` starting on A until B's cached
//! validation refuses; p50/p99/max over 500 samples).
//!
//! ```text
//! TOKEN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p benches --bench compare
//! TOKEN_COMPARE_SIZES=10000 cargo bench -p benches --bench compare      # one size only
//! ```
//!
//! Cached arms run with a cache that holds every token, warmed before measuring, and a 60 s
//! maximum age (so entries do not expire mid-measurement); uncached arms never cache.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use benches::{Jwts, Walk, data_dir};
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use futures_util::FutureExt;
use token_core::{
    CacheConfig, HashKey, InsertToken, IssueRequest, KeyId, Keyring, RevokeSelector, Scope,
    ScopeSet, TokenId, TokenIdHasherBuilder, TokenManager, TokenRecord, TokenStore, parse_token,
};
use token_store_memory::MemoryStore;
use token_store_postgres::{PgStore, PgStoreOptions};
use token_store_sqlite::{SqliteStore, SqliteStoreOptions, Synchronous};

const KEY: [u8; 32] = [7; 32];
const SCOPES: &str = "widgets:read widgets:write billing:invoices:read";

fn keyring() -> Keyring {
    Keyring::new(HashKey::new(KeyId::new(1), KEY))
}

fn required() -> Vec<Scope> {
    vec!["widgets:read".parse().expect("scope")]
}

fn sizes() -> Vec<usize> {
    std::env::var("TOKEN_COMPARE_SIZES")
        .unwrap_or_else(|_| "10000,1000000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Room for every token twice over (shards fill unevenly), so the cached arms measure hits.
fn cache_for(count: usize) -> CacheConfig {
    let entries = 2 * count as u64 + 1024;
    CacheConfig::new()
        .max_entries(entries)
        .max_bytes(entries * 1024)
        .max_age(Duration::from_secs(60))
}

/// A manager over a SQL store for the timed arms: its clock is frozen at the moment the tokens
/// were issued, so that no usage batch comes due mid-measurement (a batch of every token used in
/// the interval is a write per token: at 1,000,000 tokens it competes with the reads being
/// measured) and cached entries do not age out. Reading a frozen clock costs about what reading
/// the system clock does; the memory arm keeps the system clock and the default flush.
fn sql_builder(
    store: impl TokenStore,
    clock: &token_core::ManualClock,
) -> token_core::ManagerBuilder {
    builder(store).clock(clock.clone())
}

/// An uncached and a cached manager over `store` (see [`sql_builder`]), the cached one warmed
/// with every token.
fn sql_managers<S: TokenStore + Clone>(
    store: S,
    tokens: &Tokens,
    runtime: &tokio::runtime::Runtime,
) -> (TokenManager, TokenManager) {
    let uncached = sql_builder(store.clone(), &tokens.clock)
        .build()
        .expect("manager");
    let cached = sql_builder(store, &tokens.clock)
        .cache(cache_for(tokens.strings.len()))
        .build()
        .expect("manager");
    runtime.block_on(warm(&cached, &tokens.strings));
    (uncached, cached)
}

fn builder(store: impl TokenStore) -> token_core::ManagerBuilder {
    TokenManager::builder(store, keyring())
        .prefix("acme_live")
        .expect("prefix")
}

/// The tokens of one size: issued once through a manager over the memory store (the memory arm
/// uses it as is), their records copied into the SQL stores.
struct Tokens {
    manager: TokenManager,
    /// Frozen at issue time, for the SQL arms (see [`sql_builder`]).
    clock: token_core::ManualClock,
    strings: Vec<String>,
    records: Vec<TokenRecord>,
}

fn issue_all(count: usize) -> Tokens {
    let store = MemoryStore::new();
    let manager = builder(store.clone()).build().expect("manager");
    let scopes = ScopeSet::parse(SCOPES).expect("scopes");
    let mut strings = Vec::with_capacity(count);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let issued = manager
            .issue(IssueRequest::new(format!("user:{i}"), scopes.clone()))
            .now_or_never()
            .expect("the memory store never suspends")
            .expect("issue");
        strings.push(issued.token.expose_secret().to_owned());
        records.push(issued.record);
    }
    Tokens {
        manager,
        clock: token_core::ManualClock::starting_now(),
        strings,
        records,
    }
}

/// Copies the records into `store` (no audit events: bench data), `parallel` inserts at a time
/// (1 for SQLite: concurrent writers only wait on each other's locks).
async fn load(store: &Arc<dyn TokenStore>, records: &[TokenRecord], parallel: usize) {
    let now = time::OffsetDateTime::now_utc();
    for chunk in records.chunks(parallel) {
        let inserts = chunk.iter().map(|record| {
            let store = Arc::clone(store);
            let insert = InsertToken::new(record.clone(), None, now, Vec::new());
            async move { store.insert(&insert).await.expect("insert") }
        });
        futures_util::future::join_all(inserts).await;
    }
}

/// Validates every token once through `manager` (4 tasks), filling its cache.
async fn warm(manager: &TokenManager, tokens: &[String]) {
    let required = required();
    let halves: Vec<Vec<String>> = tokens
        .chunks(tokens.len().div_ceil(2))
        .map(<[String]>::to_vec)
        .collect();
    let tasks: Vec<_> = halves
        .into_iter()
        .map(|half| {
            let manager = manager.clone();
            let required = required.clone();
            tokio::spawn(async move {
                for token in &half {
                    manager.validate(token, &required).await.expect("valid");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("join");
    }
}

/// The floor's record: only what the checks read.
struct FloorRecord {
    hash: blake3::Hash,
    expires_at_us: i64,
    scopes: Vec<Box<str>>,
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn floor_input(token: &str, id: TokenId) -> [u8; 48] {
    // The same number of bytes validation hashes (16 id bytes + 32 secret bytes).
    let mut input = [0u8; 48];
    input[..16].copy_from_slice(id.as_bytes());
    let body = &token.as_bytes()[token.len() - 49..token.len() - 6];
    input[16..].copy_from_slice(&body[..32]);
    input
}

fn bench_floor(group: &mut BenchmarkGroup<'_, WallTime>, tokens: &Tokens) {
    let expires = unix_micros() + 3_600_000_000;
    let mut map: HashMap<TokenId, FloorRecord, TokenIdHasherBuilder> = HashMap::default();
    for token in &tokens.strings {
        let id = parse_token(token).expect("parse").id();
        map.insert(
            id,
            FloorRecord {
                hash: blake3::keyed_hash(&KEY, &floor_input(token, id)),
                expires_at_us: expires,
                scopes: SCOPES.split(' ').map(Box::from).collect(),
            },
        );
    }
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("floor", |b| {
        b.iter(|| {
            let token = &tokens.strings[walk.next_index(tokens.strings.len())];
            let parsed = parse_token(token).expect("parse");
            let record = map.get(&parsed.id()).expect("known");
            let ok = blake3::keyed_hash(&KEY, &floor_input(token, parsed.id())) == record.hash
                && unix_micros() < record.expires_at_us
                && record.scopes.iter().any(|s| {
                    let required = "widgets:read";
                    required.starts_with(&**s)
                        && (required.len() == s.len() || required.as_bytes()[s.len()] == b':')
                });
            assert!(black_box(ok));
        })
    });
}

fn bench_jwt(group: &mut BenchmarkGroup<'_, WallTime>) {
    let jwts = Jwts::new(&KEY, SCOPES, 1000);
    let mut walk = Walk(0x1234_5678_9ABC_DEF1);
    group.bench_function("jwt_hs256", |b| {
        b.iter(|| black_box(jwts.verify(walk.next_index(jwts.len()), "widgets:read")))
    });
}

fn bench_memory(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    tokens: &Tokens,
) {
    let required = required();
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function("memory", |b| {
        let _runtime = runtime.enter();
        b.iter(|| {
            let token = &tokens.strings[walk.next_index(tokens.strings.len())];
            tokens
                .manager
                .validate(token, &required)
                .now_or_never()
                .expect("the memory store never suspends")
                .expect("valid")
        })
    });
    group.bench_function("memory_2_threads", |b| {
        b.iter_custom(|n| two_threads_polled(&tokens.manager, &tokens.strings, n))
    });
}

/// `n` validations split over 2 threads polling once (the memory store never suspends).
fn two_threads_polled(manager: &TokenManager, tokens: &[String], n: u64) -> Duration {
    let required = required();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for seed in [1u64, 2] {
            let (manager, required) = (manager, &required);
            scope.spawn(move || {
                let mut walk = Walk(0x9E37_79B9_7F4A_7C15 ^ seed);
                for _ in 0..n.div_ceil(2) {
                    let token = &tokens[walk.next_index(tokens.len())];
                    manager
                        .validate(token, required)
                        .now_or_never()
                        .expect("never suspends")
                        .expect("valid");
                }
            });
        }
    });
    start.elapsed()
}

/// Polls `future` once (on the runtime's context, so it may spawn); finishes it on the runtime
/// only if it suspended.
fn poll_once_or_block<F: std::future::Future>(
    runtime: &tokio::runtime::Runtime,
    future: F,
) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => runtime.block_on(future),
    }
}

/// The three arms of one SQL store: cached, uncached, raw select.
fn bench_sql(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    uncached: &TokenManager,
    cached: &TokenManager,
    tokens: &Tokens,
    raw: impl Fn(TokenId) -> futures_util::future::BoxFuture<'static, ()>,
) {
    let required = required();
    let ids: Vec<TokenId> = tokens.records.iter().map(|r| r.id).collect();
    // A cache hit completes on its first poll, like the memory arm: measured the same way.
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function(format!("{name}_cached"), |b| {
        let _runtime = runtime.enter();
        b.iter(|| {
            let token = &tokens.strings[walk.next_index(tokens.strings.len())];
            poll_once_or_block(runtime, cached.validate(token, &required)).expect("valid")
        })
    });
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function(format!("{name}_uncached"), |b| {
        b.to_async(runtime).iter(|| {
            let token = &tokens.strings[walk.next_index(tokens.strings.len())];
            let (manager, required) = (uncached, &required);
            async move { manager.validate(token, required).await.expect("valid") }
        })
    });
    let mut walk = Walk(0x9E37_79B9_7F4A_7C15);
    group.bench_function(format!("{name}_raw_select"), |b| {
        b.to_async(runtime)
            .iter(|| raw(ids[walk.next_index(ids.len())]))
    });
}

fn bench_sqlite(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    tokens: &Tokens,
) {
    let count = tokens.strings.len();
    let path = data_dir().join(format!("compare-sqlite-{count}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite://{}", path.display());
    let store = runtime.block_on(async {
        let options = SqliteStoreOptions::new(&url)
            .expect("options")
            .synchronous(Synchronous::Normal);
        let store = SqliteStore::connect_with(options).await.expect("connect");
        store.migrate().await.expect("migrate");
        let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
        load(&shared, &tokens.records, 1).await;
        store
    });
    let pool = store.pool().clone();
    let (uncached, cached) = sql_managers(store, tokens, runtime);
    bench_sql(
        group,
        runtime,
        "sqlite",
        &uncached,
        &cached,
        tokens,
        move |id| {
            let pool = pool.clone();
            Box::pin(async move {
                let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
                    .bind(id.as_bytes().to_vec())
                    .fetch_optional(&pool)
                    .await
                    .expect("select");
                assert!(row.is_some());
            })
        },
    );
    let strings = Arc::new(tokens.strings.clone());
    group.bench_function("sqlite_cached_2_threads", |b| {
        b.iter_custom(|n| {
            runtime.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = [1u64, 2]
                    .into_iter()
                    .map(|seed| {
                        let (manager, tokens) = (cached.clone(), Arc::clone(&strings));
                        tokio::spawn(async move {
                            let required = required();
                            let mut walk = Walk(0x9E37_79B9_7F4A_7C15 ^ seed);
                            for _ in 0..n.div_ceil(2) {
                                let token = &tokens[walk.next_index(tokens.len())];
                                manager.validate(token, &required).await.expect("valid");
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("join");
                }
                start.elapsed()
            })
        })
    });
}

async fn pg_store(url: &str, schema: &str) -> PgStore {
    let options = PgStoreOptions::new(url).schema(schema).max_connections(8);
    let store = PgStore::connect_with(options).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

fn bench_postgres(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    tokens: &Tokens,
    url: &str,
) -> (TokenManager, TokenManager) {
    let count = tokens.strings.len();
    let schema = format!("token_compare_{count}");
    let store = runtime.block_on(async {
        let admin = sqlx::PgPool::connect(url).await.expect("connect");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&admin)
        .await
        .expect("drop schema");
        let store = pg_store(url, &schema).await;
        let shared: Arc<dyn TokenStore> = Arc::new(store.clone());
        load(&shared, &tokens.records, 8).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {schema}.tokens")))
            .execute(store.pool())
            .await
            .expect("analyze");
        store
    });
    let pool = store.pool().clone();
    let (uncached, cached) = sql_managers(store, tokens, runtime);
    let select = format!("SELECT * FROM {schema}.tokens WHERE id = $1");
    bench_sql(
        group,
        runtime,
        "postgres",
        &uncached,
        &cached,
        tokens,
        move |id| {
            let (pool, select) = (pool.clone(), select.clone());
            Box::pin(async move {
                let row = sqlx::query(sqlx::AssertSqlSafe(select))
                    .bind(id.as_bytes().to_vec())
                    .fetch_optional(&pool)
                    .await
                    .expect("select");
                assert!(row.is_some());
            })
        },
    );
    // Instance B: its own pool (another "process"), cached.
    let other = runtime.block_on(pg_store(url, &format!("token_compare_{count}")));
    let b = builder(other)
        .cache(cache_for(count))
        .build()
        .expect("manager");
    (cached, b)
}

/// From `revoke` starting on A until B's cached validation refuses, 500 times.
fn cross_instance_revocation(
    runtime: &tokio::runtime::Runtime,
    a: &TokenManager,
    b: &TokenManager,
) {
    let required = required();
    let scopes = ScopeSet::parse("widgets:read").expect("scopes");
    let mut samples: Vec<Duration> = runtime.block_on(async {
        let mut samples = Vec::with_capacity(500);
        for _ in 0..500 {
            let issued = a
                .issue(IssueRequest::new("propagation", scopes.clone()))
                .await
                .expect("issue");
            let token = issued.token.expose_secret();
            // B caches it (the second validation is a hit).
            for _ in 0..2 {
                b.validate(token, &required).await.expect("valid on B");
            }
            let start = Instant::now();
            a.revoke(RevokeSelector::Token(issued.token.id()), "bench")
                .await
                .expect("revoke");
            while b.validate(token, &required).await.is_ok() {
                assert!(start.elapsed() < Duration::from_secs(5), "B never refused");
                tokio::task::yield_now().await;
            }
            samples.push(start.elapsed());
        }
        samples
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "cross-instance revocation with the cache on (PostgreSQL, {} samples): p50 {:?}, p99 {:?}, max {:?}; B's cache hits {}",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1],
        b.stats().cache_hits,
    );
}

fn compare(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let postgres = std::env::var("TOKEN_TEST_POSTGRES_URL").ok();
    if postgres.is_none() {
        println!("postgres arms skipped: TOKEN_TEST_POSTGRES_URL is not set");
    }
    let mut propagation = None;
    for count in sizes() {
        let tokens = issue_all(count);
        let mut group = c.benchmark_group(format!("compare_{count}"));
        bench_floor(&mut group, &tokens);
        bench_jwt(&mut group);
        bench_memory(&mut group, &runtime, &tokens);
        bench_sqlite(&mut group, &runtime, &tokens);
        if let Some(url) = &postgres {
            let pair = bench_postgres(&mut group, &runtime, &tokens, url);
            propagation.get_or_insert(pair);
        }
        group.finish();
    }
    if let Some((a, b)) = propagation {
        cross_instance_revocation(&runtime, &a, &b);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = compare
}
criterion_main!(benches);
