//! Redis killed mid-run: with `UseLocal` the in-process limiter answers, with `Refuse` checks
//! fail with a typed error; both count the fallback, log the outage once, and go back to Redis
//! by themselves once `redis-server` is restarted on the same port.

mod common;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{RedisServer, connect, prefix};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use token_core::{RateLimit, RateLimits, TokenId};
use token_ratelimit::{Backend, CheckError, RateLimiter, RedisUnavailable};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, span};

/// Counters by `name{label=value,...}`.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        let mut counters = self.0.lock().unwrap();
        Counter::from_arc(counters.entry(name).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every event: (level, message, the `redis` field).
#[derive(Default)]
struct Events(Mutex<Vec<(Level, String, String)>>);

#[derive(Default)]
struct Fields {
    message: String,
    redis: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "redis" {
            self.redis = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

struct Capture(&'static Events);

impl Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.0
            .0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.message, fields.redis));
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

struct Observed {
    counters: &'static Counters,
    events: &'static Events,
}

impl Observed {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Events of `level` about the server at `url`.
    fn events(&self, level: Level, url: &str) -> Vec<String> {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _, redis)| *l == level && redis == url)
            .map(|(_, message, _)| message.clone())
            .collect()
    }
}

/// The recorder and the subscriber, installed once for this test binary.
fn observed() -> &'static Observed {
    static OBSERVED: OnceLock<Observed> = OnceLock::new();
    OBSERVED.get_or_init(|| {
        let counters: &'static Counters = Box::leak(Box::default());
        let events: &'static Events = Box::leak(Box::default());
        metrics::set_global_recorder(counters).expect("the only recorder");
        tracing::subscriber::set_global_default(Capture(events)).expect("the only subscriber");
        Observed { counters, events }
    })
}

fn limits() -> RateLimits {
    RateLimits::new([RateLimit::per_minute("requests", 1000).unwrap()]).unwrap()
}

const TOKEN: TokenId = TokenId::from_bytes([9; 16]);

/// Checks until Redis answers again (the reconnection takes a few attempts); how many it took.
async fn until_redis_answers(limiter: &RateLimiter) -> usize {
    for attempt in 1..=500 {
        if let Ok(d) = limiter.check("user:1", TOKEN, &limits(), 1).await
            && d.backend() == Backend::Redis
        {
            return attempt;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("Redis never answered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_local_answers_from_the_local_limiter_during_an_outage_and_recovers() {
    let observed = observed();
    let mut server = RedisServer::start();
    let url = server.url();
    let limiter = RateLimiter::builder()
        .redis(connect(&url, &prefix("use_local")).await)
        .build();
    assert_eq!(
        limiter
            .check("user:1", TOKEN, &limits(), 1)
            .await
            .unwrap()
            .backend(),
        Backend::Redis
    );

    let fallbacks = "token_ratelimit_fallbacks_total{action=local,reason=error}";
    let before = observed.counter(fallbacks);
    let answered = "token_ratelimit_checks_total{backend=local_fallback,outcome=allowed}";
    let answered_before = observed.counter(answered);
    server.kill();
    for _ in 0..5 {
        // Each check returns an answer (bounded by the check timeout), from the local limiter.
        let d = limiter.check("user:1", TOKEN, &limits(), 1).await.unwrap();
        assert_eq!(d.backend(), Backend::LocalFallback);
        assert!(d.is_allowed());
    }
    let timeouts = "token_ratelimit_fallbacks_total{action=local,reason=timeout}";
    assert!(
        observed.counter(fallbacks) + observed.counter(timeouts) >= before + 5,
        "every fallback counted"
    );
    // Other tests of this binary count too: at least this test's 5.
    assert!(observed.counter(answered) >= answered_before + 5);
    let warnings = observed.events(Level::WARN, &url);
    assert_eq!(warnings.len(), 1, "one warning per outage: {warnings:?}");

    server.restart();
    until_redis_answers(&limiter).await;
    let recovered = observed.events(Level::INFO, &url);
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(recovered[0].contains("recovered"), "{recovered:?}");
    // Re-armed: the next outage warns again.
    server.kill();
    let d = limiter.check("user:1", TOKEN, &limits(), 1).await.unwrap();
    assert_eq!(d.backend(), Backend::LocalFallback);
    assert_eq!(observed.events(Level::WARN, &url).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_fails_checks_with_a_typed_error_during_an_outage_and_recovers() {
    let observed = observed();
    let mut server = RedisServer::start();
    let url = server.url();
    let limiter = RateLimiter::builder()
        .redis(connect(&url, &prefix("refuse")).await)
        .on_redis_unavailable(RedisUnavailable::Refuse)
        .build();
    assert_eq!(
        limiter
            .check("user:1", TOKEN, &limits(), 1)
            .await
            .unwrap()
            .backend(),
        Backend::Redis
    );

    server.kill();
    for _ in 0..3 {
        let err = limiter
            .check("user:1", TOKEN, &limits(), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CheckError::RedisUnavailable { .. }),
            "{err:?}"
        );
    }
    let refused: u64 = ["error", "timeout"]
        .iter()
        .map(|reason| {
            observed.counter(&format!(
                "token_ratelimit_fallbacks_total{{action=refused,reason={reason}}}"
            ))
        })
        .sum();
    assert_eq!(refused, 3);
    assert_eq!(observed.events(Level::WARN, &url).len(), 1);

    server.restart();
    until_redis_answers(&limiter).await;
    assert_eq!(observed.events(Level::INFO, &url).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_interval_skips_redis_during_an_outage() {
    let observed = observed();
    let mut server = RedisServer::start();
    let url = server.url();
    let backend = token_ratelimit::RedisBackend::connect_with(
        &url,
        token_ratelimit::RedisOptions::default()
            .key_prefix(prefix("skip"))
            .retry_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let limiter = RateLimiter::builder().redis(backend).build();
    server.kill();
    let skipped = "token_ratelimit_fallbacks_total{action=local,reason=skipped}";
    let before = observed.counter(skipped);
    for _ in 0..4 {
        let d = limiter.check("user:1", TOKEN, &limits(), 1).await.unwrap();
        assert_eq!(d.backend(), Backend::LocalFallback);
    }
    assert_eq!(
        observed.counter(skipped),
        before + 3,
        "only the first check tried Redis"
    );
}
