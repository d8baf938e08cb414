//! What a rate-limit check adds to a validation, in the same run: `validate` of a memory-store
//! token (the floor), the same plus an in-process GCRA check of one token limit, the same plus
//! a Redis check (one script round trip), a bare Redis `PING` (the floor of that arm), the
//! in-process check alone (one limit; a token and a subject limit), and the in-process check's
//! throughput with two tokio tasks checking at once.
//!
//! ```text
//! cargo bench -p benches --bench ratelimit
//! TOKEN_TEST_REDIS_URL=redis://127.0.0.1:6379 cargo bench -p benches --bench ratelimit
//! ```
//!
//! The Redis arms use `TOKEN_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and are skipped,
//! with a line saying so, when nothing answers there. Their keys carry a per-run prefix and
//! expire within a minute.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use token_core::{IssueRequest, RateLimit, RateLimits, Scope, ScopeSet, TokenId};
use token_ratelimit::{RateLimiter, RedisBackend, RedisOptions};

fn bench_ratelimit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let manager = benches::memory_manager();
    let token = runtime.block_on(async {
        let issued = manager
            .issue(IssueRequest::new(
                "user:42",
                ScopeSet::parse("widgets:read").expect("scopes"),
            ))
            .await
            .expect("issue");
        issued.token.expose_secret().to_owned()
    });
    let required: Vec<Scope> = vec!["widgets:read".parse().expect("scope")];
    // A billion a year: the bucket stays in use (each check moves it 32 ms ahead, so it never
    // refills between checks, as a busy token's does not) and the run never reaches a denial.
    let one_limit = RateLimits::new([RateLimit::new(
        "requests",
        1_000_000_000,
        token_core::rate_limit::RATE_LIMIT_MAX_WINDOW,
    )
    .expect("limit")])
    .expect("limits");
    let local = RateLimiter::builder().build();
    let with_subject = RateLimiter::builder()
        .subject_limits(one_limit.clone())
        .build();

    let mut group = c.benchmark_group("ratelimit");
    group.bench_function("validate", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(manager.validate(&token, &required).await.expect("valid")) })
    });
    group.bench_function("validate_local_check", |b| {
        b.to_async(&runtime).iter(|| async {
            let valid = manager.validate(&token, &required).await.expect("valid");
            let decision = local
                .check(valid.subject(), valid.id(), &one_limit, 1)
                .await
                .expect("check");
            black_box((valid, decision))
        })
    });
    let id = TokenId::from_bytes([3; 16]);
    group.bench_function("local_check_1_limit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(local.check("user:42", id, &one_limit, 1).await) })
    });
    group.bench_function("local_check_token_and_subject_limit", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(with_subject.check("user:42", id, &one_limit, 1).await) })
    });
    group.bench_function("local_check_no_limits", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(local.check("user:42", id, &RateLimits::none(), 1).await) })
    });

    let url = std::env::var("TOKEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("bench:rl:{}:", std::process::id());
    let redis = runtime.block_on(async {
        let options = RedisOptions::default()
            .key_prefix(prefix)
            .check_timeout(Duration::from_secs(1));
        let backend = RedisBackend::connect_with(&url, options).await.ok()?;
        let client = redis::Client::open(url.as_str()).ok()?;
        let connection = client.get_multiplexed_async_connection().await.ok()?;
        Some((backend, connection))
    });
    match redis {
        None => println!("ratelimit/redis_*: skipped, no Redis answers at {url}"),
        Some((backend, connection)) => {
            // Per minute, so the keys expire soon after the run.
            let limits =
                RateLimits::new([RateLimit::per_minute("requests", 1_000_000_000).expect("limit")])
                    .expect("limits");
            let shared = RateLimiter::builder().redis(backend).build();
            group.bench_function("validate_redis_check", |b| {
                b.to_async(&runtime).iter(|| async {
                    let valid = manager.validate(&token, &required).await.expect("valid");
                    let decision = shared
                        .check(valid.subject(), valid.id(), &limits, 1)
                        .await
                        .expect("check");
                    assert_eq!(decision.backend(), token_ratelimit::Backend::Redis);
                    black_box((valid, decision))
                })
            });
            group.bench_function("redis_ping", |b| {
                b.to_async(&runtime).iter(|| {
                    let mut connection = connection.clone();
                    async move {
                        let pong: String = redis::cmd("PING")
                            .query_async(&mut connection)
                            .await
                            .expect("ping");
                        black_box(pong)
                    }
                })
            });
        }
    }
    group.finish();

    let threaded = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("ratelimit_concurrent");
    group.throughput(Throughput::Elements(1));
    group.bench_function("local_check_2_tasks", |b| {
        b.iter_custom(|iters| {
            threaded.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..2u8)
                    .map(|task| {
                        let local = local.clone();
                        let limits = one_limit.clone();
                        tokio::spawn(async move {
                            // Different tokens: the tasks contend only when their shards meet.
                            let id = TokenId::from_bytes([task * 7 + 1; 16]);
                            for _ in 0..iters.div_ceil(2) {
                                black_box(local.check("user:42", id, &limits, 1).await.ok());
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_ratelimit);
criterion_main!(benches);
