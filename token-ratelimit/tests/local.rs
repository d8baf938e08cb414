//! The in-process limiter through the public API, with a `ManualClock`: exact GCRA figures,
//! all or nothing across token and subject limits, subject buckets shared by tokens, pruning.

use std::sync::Arc;
use std::time::Duration;

use token_core::{ManualClock, RateLimit, RateLimits, TokenId};
use token_ratelimit::{Backend, CheckError, RateLimiter, Scope};

const SUBJECT: &str = "user:42";

fn clock() -> ManualClock {
    ManualClock::new(time::macros::datetime!(2030-01-01 0:00 UTC))
}

fn limits(list: &[(&str, u32, u64)]) -> RateLimits {
    RateLimits::new(
        list.iter()
            .map(|&(name, n, secs)| RateLimit::new(name, n, Duration::from_secs(secs)).unwrap()),
    )
    .unwrap()
}

fn token(n: u8) -> TokenId {
    TokenId::from_bytes([n; 16])
}

fn limiter(clock: &ManualClock, subject: RateLimits) -> RateLimiter {
    RateLimiter::builder()
        .subject_limits(subject)
        .clock(Arc::new(clock.clone()))
        .build()
}

#[tokio::test]
async fn burst_then_one_every_emission_interval_to_the_microsecond() {
    let clock = clock();
    let limiter = limiter(&clock, RateLimits::none());
    let five = limits(&[("requests", 5, 60)]);
    for left in (0..5).rev() {
        let d = limiter.check(SUBJECT, token(1), &five, 1).await.unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.backend(), Backend::Local);
        assert_eq!(d.limits()[0].remaining(), left);
        assert_eq!(
            d.limits()[0].reset_after(),
            Duration::from_secs(12 * (5 - u64::from(left)))
        );
    }
    let denied = limiter.check(SUBJECT, token(1), &five, 1).await.unwrap();
    assert!(!denied.is_allowed());
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(denied.retry_after_secs(), Some(12));
    assert_eq!(denied.denied_by().unwrap().limit().name(), "requests");

    clock.advance(Duration::from_secs(12) - Duration::from_micros(1));
    let early = limiter.check(SUBJECT, token(1), &five, 1).await.unwrap();
    assert_eq!(early.retry_after(), Some(Duration::from_micros(1)));
    assert_eq!(early.retry_after_secs(), Some(1), "rounded up");
    clock.advance(Duration::from_micros(1));
    let on_time = limiter.check(SUBJECT, token(1), &five, 1).await.unwrap();
    assert!(on_time.is_allowed(), "exactly at tat' - now == window");
    assert_eq!(on_time.limits()[0].remaining(), 0);
    assert!(
        !limiter
            .check(SUBJECT, token(1), &five, 1)
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test]
async fn costs_above_one_spend_several_units_and_cost_zero_only_looks() {
    let clock = clock();
    let limiter = limiter(&clock, RateLimits::none());
    let ten = limits(&[("units", 10, 10)]);
    let d = limiter.check(SUBJECT, token(1), &ten, 4).await.unwrap();
    assert_eq!(d.limits()[0].remaining(), 6);
    let peek = limiter.check(SUBJECT, token(1), &ten, 0).await.unwrap();
    assert!(peek.is_allowed());
    assert_eq!(peek.limits()[0].remaining(), 6, "the peek took nothing");
    let d = limiter.check(SUBJECT, token(1), &ten, 7).await.unwrap();
    assert_eq!(
        d.retry_after(),
        Some(Duration::from_secs(1)),
        "one unit short"
    );
    assert!(
        limiter
            .check(SUBJECT, token(1), &ten, 6)
            .await
            .unwrap()
            .is_allowed()
    );
    // A full bucket takes a cost equal to the limit, once.
    assert!(
        limiter
            .check(SUBJECT, token(2), &ten, 10)
            .await
            .unwrap()
            .is_allowed()
    );
    assert_eq!(
        limiter
            .check(SUBJECT, token(2), &ten, 10)
            .await
            .unwrap()
            .retry_after(),
        Some(Duration::from_secs(10))
    );
}

#[tokio::test]
async fn a_cost_above_a_limit_is_an_error_naming_it() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 100, 60)]));
    let token_limits = limits(&[("expensive", 3, 60), ("requests", 50, 60)]);
    let err = limiter
        .check(SUBJECT, token(1), &token_limits, 4)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CheckError::CostExceedsLimit {
            limit_name: "expensive".into(),
            cost: 4,
            limit: 3
        }
    );
    assert!(err.to_string().contains("\"expensive\""), "{err}");
    let err = limiter
        .check(SUBJECT, token(1), &RateLimits::none(), 101)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CheckError::CostExceedsLimit { limit: 100, .. }
    ));
    assert_eq!(limiter.local_bucket_count(), 0, "nothing was charged");
}

#[tokio::test]
async fn a_denied_subject_limit_charges_nothing_from_the_token_bucket() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 2, 60)]));
    let own = limits(&[("requests", 10, 60)]);
    for _ in 0..2 {
        assert!(
            limiter
                .check(SUBJECT, token(1), &own, 1)
                .await
                .unwrap()
                .is_allowed()
        );
    }
    for _ in 0..5 {
        let denied = limiter.check(SUBJECT, token(1), &own, 1).await.unwrap();
        let by = denied.denied_by().unwrap();
        assert_eq!(by.scope(), Scope::Subject);
        assert_eq!(denied.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(denied.limits()[0].scope(), Scope::Token);
        assert_eq!(denied.limits()[0].remaining(), 8, "denials took nothing");
    }
    // Another subject's token with the same limits is untouched by user:42's subject bucket.
    let other = limiter.check("user:7", token(2), &own, 1).await.unwrap();
    assert!(other.is_allowed());
    assert_eq!(other.limits()[1].remaining(), 1);
}

#[tokio::test]
async fn a_subject_limit_bounds_all_tokens_of_the_subject_together() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 5, 60)]));
    let own = limits(&[("requests", 100, 60)]);
    let mut passed = 0;
    for round in 0..6 {
        for t in 1..=3 {
            let d = limiter.check(SUBJECT, token(t), &own, 1).await.unwrap();
            if d.is_allowed() {
                passed += 1;
            } else {
                assert_eq!(d.denied_by().unwrap().scope(), Scope::Subject, "{round}");
            }
        }
    }
    assert_eq!(passed, 5, "5 in total across 3 tokens");
    // Token limits alone (no subject limits): each token its own 5.
    let per_token = limiter_without_subject(&clock);
    let five = limits(&[("requests", 5, 60)]);
    let mut passed = 0;
    for _ in 0..6 {
        for t in 1..=3 {
            passed += usize::from(
                per_token
                    .check(SUBJECT, token(t), &five, 1)
                    .await
                    .unwrap()
                    .is_allowed(),
            );
        }
    }
    assert_eq!(passed, 15);
}

fn limiter_without_subject(clock: &ManualClock) -> RateLimiter {
    limiter(clock, RateLimits::none())
}

#[tokio::test]
async fn limits_are_reported_token_first_with_header_fields() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 1000, 3600)]));
    let own = limits(&[("requests", 10, 60), ("expensive", 2, 60)]);
    let d = limiter.check(SUBJECT, token(1), &own, 1).await.unwrap();
    let scopes: Vec<(Scope, &str)> = d
        .limits()
        .iter()
        .map(|l| (l.scope(), l.limit().name()))
        .collect();
    assert_eq!(
        scopes,
        [
            (Scope::Token, "expensive"),
            (Scope::Token, "requests"),
            (Scope::Subject, "requests")
        ]
    );
    assert_eq!(
        d.policy_header(),
        r#""expensive";q=2;w=60, "requests";q=10;w=60, "subject.requests";q=1000;w=3600"#
    );
    assert_eq!(
        d.ratelimit_header(),
        r#""expensive";r=1;t=30, "requests";r=9;t=6, "subject.requests";r=999;t=4"#
    );
}

#[tokio::test]
async fn no_limits_anywhere_is_allowed_without_touching_a_bucket() {
    let clock = clock();
    let limiter = limiter(&clock, RateLimits::none());
    let d = limiter
        .check(SUBJECT, token(1), &RateLimits::none(), 1_000_000)
        .await
        .unwrap();
    assert!(d.is_allowed());
    assert!(d.limits().is_empty());
    assert_eq!(d.policy_header(), "");
    assert_eq!(limiter.local_bucket_count(), 0);
}

#[tokio::test]
async fn an_idle_bucket_refills_to_the_burst_and_no_further() {
    let clock = clock();
    let limiter = limiter(&clock, RateLimits::none());
    let five = limits(&[("requests", 5, 60)]);
    limiter.check(SUBJECT, token(1), &five, 5).await.unwrap();
    clock.advance(Duration::from_secs(86_400));
    let d = limiter.check(SUBJECT, token(1), &five, 0).await.unwrap();
    assert_eq!(d.limits()[0].remaining(), 5);
    assert!(
        limiter
            .check(SUBJECT, token(1), &five, 5)
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        !limiter
            .check(SUBJECT, token(1), &five, 1)
            .await
            .unwrap()
            .is_allowed()
    );
}

#[tokio::test]
async fn memory_follows_active_keys() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 100, 60)]));
    let own = limits(&[("requests", 10, 60)]);
    // 40 rounds of 500 fresh tokens (of 500 subjects), each round a window after the last:
    // only the current round's buckets are live.
    let mut peak = 0;
    for round in 0..40u32 {
        for i in 0..500u32 {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&(round * 500 + i).to_le_bytes());
            let subject = format!("user:{}", round * 500 + i);
            let d = limiter
                .check(&subject, TokenId::from_bytes(bytes), &own, 1)
                .await
                .unwrap();
            assert!(d.is_allowed());
        }
        peak = peak.max(limiter.local_bucket_count());
        clock.advance(Duration::from_secs(61));
    }
    // 1000 live buckets per round; 40 rounds without pruning would hold 40_000.
    assert!(peak <= 2 * 1000, "peak {peak}");
    assert_eq!(limiter.prune_expired(), 1000, "the last round's, expired");
    assert_eq!(limiter.local_bucket_count(), 0);
}

#[tokio::test]
async fn clones_share_buckets_and_debug_shows_configuration() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 1, 60)]));
    let clone = limiter.clone();
    let one = limits(&[("requests", 5, 60)]);
    assert!(
        limiter
            .check(SUBJECT, token(1), &one, 1)
            .await
            .unwrap()
            .is_allowed()
    );
    assert!(
        !clone
            .check(SUBJECT, token(2), &one, 1)
            .await
            .unwrap()
            .is_allowed()
    );
    let debug = format!("{limiter:?}");
    assert!(debug.contains("requests=1/60s"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_checks_admit_exactly_the_limit_and_never_deadlock() {
    let clock = clock();
    let limiter = limiter(&clock, limits(&[("requests", 50, 3600)]));
    let own = limits(&[("requests", 30, 3600)]);
    // Tokens whose shards differ from the subjects' in both orders, checked from 4 threads at
    // once: the shard locks are taken in ascending order, so no two checks wait in a cycle.
    let tasks: Vec<_> = (0..4u8)
        .map(|task| {
            let limiter = limiter.clone();
            let own = own.clone();
            tokio::spawn(async move {
                let mut passed = 0u32;
                for i in 0..2_000u32 {
                    let mut bytes = [task; 16];
                    bytes[8] = (i % 16) as u8;
                    let subject = if i % 2 == 0 { "user:42" } else { "user:7" };
                    let d = limiter
                        .check(subject, TokenId::from_bytes(bytes), &own, 1)
                        .await
                        .unwrap();
                    passed += u32::from(d.is_allowed() && subject == "user:42");
                }
                passed
            })
        })
        .collect();
    let mut passed = 0;
    for task in tasks {
        passed += task.await.unwrap();
    }
    assert_eq!(
        passed, 50,
        "the subject's 50, however the checks interleave"
    );
    let peek = limiter.check("user:42", token(200), &own, 0).await.unwrap();
    assert_eq!(peek.limits()[1].remaining(), 0);
}

#[tokio::test]
async fn subject_limits_by_plan_give_each_subject_its_own_capacity() {
    let clock = clock();
    let limiter = RateLimiter::builder()
        .subject_limits_by(|subject| match subject {
            "org:big" => limits(&[("requests", 5, 60)]),
            "org:free" => limits(&[("requests", 1, 60)]),
            _ => RateLimits::none(),
        })
        .clock(Arc::new(clock.clone()))
        .build();
    let none = RateLimits::none();
    let mut passed = std::collections::BTreeMap::new();
    for subject in ["org:big", "org:free", "org:unknown"] {
        for _ in 0..10 {
            if limiter
                .check(subject, token(9), &none, 1)
                .await
                .unwrap()
                .is_allowed()
            {
                *passed.entry(subject).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(passed["org:big"], 5);
    assert_eq!(passed["org:free"], 1);
    assert_eq!(
        passed["org:unknown"], 10,
        "no limits for a subject the plan omits"
    );
    let denied = limiter.check("org:free", token(9), &none, 1).await.unwrap();
    assert_eq!(denied.denied_by().map(|l| l.scope()), Some(Scope::Subject));
    assert_eq!(denied.retry_after_secs(), Some(60));
}
