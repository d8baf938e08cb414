//! The Redis limiter over a real `redis-server` (each test starts its own, on a free port), and
//! over the shared server named by `TOKEN_TEST_REDIS_URL` when it is set.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{RedisServer, connect, free_port, prefix, raw};
use redis::AsyncCommands;
use token_core::{ManualClock, RateLimit, RateLimits, TokenId};
use token_ratelimit::{Backend, ConnectError, RateLimiter, RedisBackend, Scope};

fn token(n: u8) -> TokenId {
    TokenId::from_bytes([n; 16])
}

/// Two limiters (two instances) on one Redis: the limit holds in total. One instance's clock
/// stands in 2100: Redis decides with its own clock, so it does not matter.
async fn two_instances_share_the_limit(url: &str, prefix: &str) {
    let a = RateLimiter::builder()
        .redis(connect(url, prefix).await)
        .clock(Arc::new(ManualClock::new(
            time::macros::datetime!(2100-01-01 0:00 UTC),
        )))
        .build();
    let b = RateLimiter::builder()
        .redis(connect(url, prefix).await)
        .build();
    let limits = RateLimits::new([RateLimit::per_hour("requests", 5).unwrap()]).unwrap();
    let mut passed = 0;
    for i in 0..10 {
        let instance = if i % 2 == 0 { &a } else { &b };
        let d = instance
            .check("user:42", token(1), &limits, 1)
            .await
            .unwrap();
        assert_eq!(d.backend(), Backend::Redis);
        if d.is_allowed() {
            passed += 1;
            assert_eq!(d.limits()[0].remaining(), 5 - passed);
        } else {
            let retry = d.retry_after().unwrap();
            // One interval (720 s) after the 5th pass, less the time since.
            assert!(retry <= Duration::from_secs(720), "{retry:?}");
            assert!(retry > Duration::from_secs(710), "{retry:?}");
            assert_eq!(d.limits()[0].remaining(), 0);
        }
    }
    assert_eq!(passed, 5, "5 in total, not 5 per instance");
    // Leave nothing behind on a shared server.
    let mut redis = raw(url).await;
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    assert_eq!(keys.len(), 1, "one bucket: {keys:?}");
    let _: () = redis.del(keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_allow_the_limit_in_total() {
    let server = RedisServer::start();
    two_instances_share_the_limit(&server.url(), &prefix("total")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_server_holds_the_limit_in_total() {
    let Ok(url) = std::env::var("TOKEN_TEST_REDIS_URL") else {
        println!("skipped: TOKEN_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
        return;
    };
    two_instances_share_the_limit(&url, &prefix("shared")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_or_nothing_across_token_and_subject_buckets() {
    let server = RedisServer::start();
    let limiter = RateLimiter::builder()
        .subject_limits(RateLimits::new([RateLimit::per_hour("requests", 2).unwrap()]).unwrap())
        .redis(connect(&server.url(), &prefix("aon")).await)
        .build();
    let own = RateLimits::new([RateLimit::per_hour("requests", 10).unwrap()]).unwrap();
    for t in [1, 2] {
        assert!(
            limiter
                .check("user:42", token(t), &own, 1)
                .await
                .unwrap()
                .is_allowed()
        );
    }
    for _ in 0..3 {
        let denied = limiter.check("user:42", token(1), &own, 1).await.unwrap();
        assert_eq!(denied.denied_by().unwrap().scope(), Scope::Subject);
        assert_eq!(
            denied.limits()[0].remaining(),
            9,
            "the token bucket kept its units"
        );
    }
    let peek = limiter.check("user:42", token(1), &own, 0).await.unwrap();
    assert!(peek.is_allowed());
    assert_eq!(peek.limits()[0].remaining(), 9);
    assert_eq!(peek.limits()[1].remaining(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_name_no_subject_carry_ttls_and_expire() {
    let server = RedisServer::start();
    let prefix = prefix("ttl");
    let backend = connect(&server.url(), &prefix).await;
    let limiter = RateLimiter::builder()
        // 1000 per second: one unit comes back in 1 ms, so its key lives about 1 ms.
        .subject_limits(RateLimits::new([RateLimit::per_second("burst", 1000).unwrap()]).unwrap())
        .redis(backend.clone())
        .build();
    let own = RateLimits::new([RateLimit::per_minute("requests", 5).unwrap()]).unwrap();
    let subject = "alice@example.com";
    assert!(
        limiter
            .check(subject, token(3), &own, 1)
            .await
            .unwrap()
            .is_allowed()
    );

    let token_key = backend.token_key(token(3), "requests");
    assert_eq!(token_key, format!("{prefix}t:{}:requests", token(3)));
    let subject_key = backend.subject_key(subject, "burst");
    assert_eq!(
        subject_key,
        format!(
            "{prefix}s:{}:burst",
            blake3::hash(subject.as_bytes()).to_hex()
        )
    );
    let mut redis = raw(&server.url()).await;
    let ttl: i64 = redis.pttl(&token_key).await.unwrap();
    assert!(ttl > 0 && ttl <= 12_000, "one interval: {ttl} ms");
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    assert!(keys.iter().all(|k| !k.contains("alice")), "{keys:?}");
    // The subject key expires by itself (polled; nothing is timed).
    let mut gone = false;
    for _ in 0..200 {
        if !redis.exists::<_, bool>(&subject_key).await.unwrap() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gone, "the subject key expired");
    let still: bool = redis.exists(&token_key).await.unwrap();
    assert!(still, "the token key lives until its bucket is full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_nothing_fails_fast_with_a_typed_error() {
    let url = format!("redis://app:n0t-th3-pass@127.0.0.1:{}", free_port());
    let err = RedisBackend::connect(&url).await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("n0t-th3-pass"), "{shown}");
    assert!(shown.contains("app:***@127.0.0.1"), "{shown}");
    let err = RedisBackend::connect("http://nope").await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stay_out_of_debug_and_errors() {
    let server = RedisServer::start_with(&["--requirepass", "s3cr3t-pw"]);
    let good = format!("redis://:s3cr3t-pw@127.0.0.1:{}", server.port());
    let backend = connect(&good, &prefix("pw")).await;
    let limiter = RateLimiter::builder().redis(backend.clone()).build();
    let limits = RateLimits::new([RateLimit::per_minute("requests", 5).unwrap()]).unwrap();
    let d = limiter.check("u", token(1), &limits, 1).await.unwrap();
    assert_eq!(d.backend(), Backend::Redis);
    let debug = format!("{backend:?} {limiter:?}");
    assert!(!debug.contains("s3cr3t-pw"), "{debug}");
    assert!(debug.contains(":***@127.0.0.1"), "{debug}");

    let bad = format!("redis://:n0t-th3-pass@127.0.0.1:{}", server.port());
    let err = RedisBackend::connect(&bad).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("n0t-th3-pass"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_from_two_instances_admit_exactly_the_limit() {
    let server = RedisServer::start();
    let prefix = prefix("concurrent");
    let subject_limits = RateLimits::new([RateLimit::per_hour("requests", 40).unwrap()]).unwrap();
    let instances = [
        RateLimiter::builder()
            .subject_limits(subject_limits.clone())
            .redis(connect(&server.url(), &prefix).await)
            .build(),
        RateLimiter::builder()
            .subject_limits(subject_limits)
            .redis(connect(&server.url(), &prefix).await)
            .build(),
    ];
    let own = RateLimits::new([RateLimit::per_hour("requests", 25).unwrap()]).unwrap();
    let tasks: Vec<_> = (0..4u8)
        .map(|task| {
            let limiter = instances[usize::from(task % 2)].clone();
            let own = own.clone();
            tokio::spawn(async move {
                let mut passed = 0u32;
                for _ in 0..30 {
                    let d = limiter
                        .check("user:42", token(task % 2), &own, 1)
                        .await
                        .unwrap();
                    assert_eq!(d.backend(), Backend::Redis);
                    passed += u32::from(d.is_allowed());
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += task.await.unwrap();
    }
    // Two tokens of 25 each, but the subject's 40 bound them together.
    assert_eq!(passed, 40);
}
