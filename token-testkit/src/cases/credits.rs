//! Usage credits that refill (exactly once per period, in every store, under concurrency) and
//! the named rate limits a token carries (stored, inherited, only tightened).

use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use token_core::{
    DeriveRequest, Error, IssueRequest, RateLimit, RateLimits, TokenState, TokenUpdate, UseRefill,
    ValidationError,
};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{DAY, HOUR, stored};

/// This file's cases, the one list of them (see `validate.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_credits {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            credits_refill_exactly_once_per_period_under_64_concurrent_uses,
            monthly_credits_refill_on_the_first_of_the_month,
            credits_are_inherited_and_only_narrowed,
            rotation_carries_credits_and_rate_limits,
            a_successor_keeps_its_predecessors_refill_schedule,
            rate_limits_are_stored_inherited_and_only_tightened,
        }
    };
}

fn refill(text: &str) -> UseRefill {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn limits(list: &[(&str, u32, u64)]) -> RateLimits {
    RateLimits::new(list.iter().map(|(name, limit, secs)| {
        RateLimit::new(*name, *limit, Duration::from_secs(*secs)).unwrap_or_else(|e| panic!("{e}"))
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Validates `token` from 64 tasks at once, half through a second manager on the same store;
/// returns how many passed. Every refusal must be the use limit.
async fn burst_of_64(env: &TestEnv, sibling: &token_core::TokenManager, token: &str) -> usize {
    let token: Arc<str> = token.into();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let manager = if i % 2 == 0 {
                env.manager.clone()
            } else {
                sibling.clone()
            };
            let token = Arc::clone(&token);
            tokio::spawn(async move { manager.validate(&token, &[]).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("join: {e}")) {
            Ok(_) => ok += 1,
            Err(ValidationError::UseLimitReached) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    ok
}

pub async fn credits_refill_exactly_once_per_period_under_64_concurrent_uses(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let sibling = env.sibling(|b| b);
    let issued = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(10 * DAY)
                .max_uses(10)
                .refill_uses(refill("hourly")),
        )
        .await;
    let id = issued.token.id();
    let token = issued.token.expose_secret();
    let issued_at = env.clock_now();
    assert_eq!(burst_of_64(&env, &sibling, token).await, 10, "first period");
    let record = stored(&env, id).await;
    assert_eq!((record.use_count, record.max_uses), (10, Some(10)));
    assert_eq!(record.next_refill_at, Some(issued_at + HOUR));
    assert_eq!(record.state_at(env.clock_now()), TokenState::UsedUp);
    env.advance(HOUR - Duration::from_secs(1));
    assert_eq!(
        burst_of_64(&env, &sibling, token).await,
        0,
        "still the first period"
    );
    env.advance(Duration::from_secs(1));
    assert_eq!(
        record.state_at(env.clock_now()),
        TokenState::Active,
        "a due refill counts before the store applies it"
    );
    assert_eq!(
        burst_of_64(&env, &sibling, token).await,
        10,
        "second period"
    );
    let record = stored(&env, id).await;
    assert_eq!(
        record.use_count, 10,
        "the count restarted once, not per use"
    );
    assert_eq!(record.next_refill_at, Some(issued_at + 2 * HOUR));
    // Three idle periods later: one refill, not three (credits do not carry over).
    env.advance(3 * HOUR + Duration::from_secs(5));
    assert_eq!(
        burst_of_64(&env, &sibling, token).await,
        10,
        "after idle periods"
    );
    let view = stored(&env, id).await.view_at(env.clock_now());
    assert_eq!(view.remaining_uses, Some(0));
    assert_eq!(view.use_refill.as_deref(), Some("every 3600s"));
    assert_eq!(view.next_refill_at, Some(issued_at + 5 * HOUR));
}

pub async fn monthly_credits_refill_on_the_first_of_the_month(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    env.clock.set(datetime!(2030-01-31 23:00 UTC));
    let issued = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(90 * DAY)
                .max_uses(2)
                .refill_uses(UseRefill::Monthly),
        )
        .await;
    let token = issued.token.expose_secret();
    for _ in 0..2 {
        env.manager
            .validate(token, &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(matches!(
        env.manager.validate(token, &[]).await,
        Err(ValidationError::UseLimitReached)
    ));
    let record = stored(&env, issued.token.id()).await;
    assert_eq!(record.next_refill_at, Some(datetime!(2030-02-01 0:00 UTC)));
    env.clock.set(datetime!(2030-02-01 0:00 UTC));
    env.manager
        .validate(token, &[])
        .await
        .unwrap_or_else(|e| panic!("refilled on the first: {e}"));
    let record = stored(&env, issued.token.id()).await;
    assert_eq!(record.use_count, 1);
    assert_eq!(record.next_refill_at, Some(datetime!(2030-03-01 0:00 UTC)));
}

pub async fn credits_are_inherited_and_only_narrowed(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(10 * DAY)
                .max_uses(100)
                .refill_uses(refill("daily")),
        )
        .await;
    let pid = parent.token.id();
    let child = env
        .manager
        .derive(parent.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(child.record.use_refill, Some(refill("daily")), "inherited");
    assert_eq!(child.record.max_uses, Some(100));
    let faster = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a"))
                .max_uses(5)
                .refill_uses(refill("hourly")),
        )
        .await;
    assert!(
        matches!(
            faster,
            Err(Error::LimitWidening {
                limit: "use_refill",
                ..
            })
        ),
        "{faster:?}"
    );
    let lifetime = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).ttl(DAY).max_uses(3))
        .await;
    for (id, update) in [
        (pid, TokenUpdate::new().refill_uses(refill("hourly"))),
        (
            lifetime.token.id(),
            TokenUpdate::new().refill_uses(refill("daily")),
        ),
    ] {
        match env.manager.update(id, update).await {
            Err(Error::UpdateWidens {
                field: "use_refill",
                ..
            }) => {}
            other => panic!("a more generous refill was not refused: {other:?}"),
        }
    }
    let no_limit = env.issue("u", "a").await;
    let refused = env
        .manager
        .update(
            no_limit.token.id(),
            TokenUpdate::new().refill_uses(refill("daily")),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::UpdateWidens {
                field: "use_refill",
                ..
            })
        ),
        "{refused:?}"
    );
    env.manager
        .update(
            no_limit.token.id(),
            TokenUpdate::new().max_uses(5).refill_uses(refill("daily")),
        )
        .await
        .unwrap_or_else(|e| panic!("a limit with a refill narrows an unlimited token: {e}"));
    // Lengthening the parent's period lengthens the child's with it; stopping it stops both.
    env.manager
        .update(pid, TokenUpdate::new().refill_uses(refill("weekly")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored(&env, child.token.id()).await.use_refill,
        Some(refill("weekly"))
    );
    env.manager
        .validate(parent.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.manager
        .update(pid, TokenUpdate::new().stop_refill())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (p, c) = (
        stored(&env, pid).await,
        stored(&env, child.token.id()).await,
    );
    assert_eq!((p.use_refill, p.next_refill_at), (None, None));
    assert_eq!((c.use_refill, c.next_refill_at), (None, None));
    assert_eq!(
        p.remaining_uses_at(env.clock_now()),
        Some(99),
        "the credits left stay"
    );
}

pub async fn rotation_carries_credits_and_rate_limits(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(10 * DAY)
                .max_uses(4)
                .refill_uses(refill("daily"))
                .rate_limits(limits(&[("requests", 5, 60)])),
        )
        .await;
    for _ in 0..3 {
        env.manager
            .validate(old.token.expose_secret(), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = stored(&env, old.token.id()).await;
    let new = env
        .manager
        .rotate(old.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let successor = stored(&env, new.token.id()).await;
    assert_eq!(successor.rate_limits, limits(&[("requests", 5, 60)]));
    assert_eq!(successor.use_refill, Some(refill("daily")));
    assert_eq!(
        successor.max_uses,
        Some(4),
        "the quota, not what is left of it"
    );
    assert_eq!(successor.use_count, 3, "this period's uses come along");
    assert_eq!(successor.next_refill_at, before.next_refill_at);
    env.manager
        .validate(new.token.expose_secret(), &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        env.manager.validate(new.token.expose_secret(), &[]).await,
        Err(ValidationError::UseLimitReached)
    ));
}

/// Found in review: a successor computed its next boundary from its own issue, so the first
/// period after a rotation was cut short (a rotation half-way through an hour refilled again
/// half an hour later). The schedule is the stored boundary's, whatever the rotation.
pub async fn a_successor_keeps_its_predecessors_refill_schedule(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued_at = env.clock_now();
    let old = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(10 * DAY)
                .max_uses(2)
                .refill_uses(refill("hourly")),
        )
        .await;
    env.advance(HOUR / 2);
    let new = env
        .manager
        .rotate(old.token.id(), Duration::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = new.token.expose_secret();
    env.advance(HOUR / 2);
    let uses = |env: &TestEnv, token: &str| {
        let manager = env.manager.clone();
        let token = token.to_owned();
        async move {
            let mut passed = 0;
            for _ in 0..4 {
                if manager.validate(&token, &[]).await.is_ok() {
                    passed += 1;
                }
            }
            passed
        }
    };
    assert_eq!(uses(&env, token).await, 2, "the refill at the hour");
    let record = stored(&env, new.token.id()).await;
    assert_eq!(record.next_refill_at, Some(issued_at + 2 * HOUR));
    env.advance(HOUR / 2);
    assert_eq!(
        uses(&env, token).await,
        0,
        "half an hour later the period is not over"
    );
    env.advance(HOUR / 2);
    assert_eq!(uses(&env, token).await, 2, "the next hour");
}

pub async fn rate_limits_are_stored_inherited_and_only_tightened(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let parent_limits = limits(&[("requests", 100, 60), ("expensive", 10, 3600)]);
    let parent = env
        .issue_with(
            IssueRequest::new("u", scopes_of("a"))
                .ttl(DAY)
                .rate_limits(parent_limits.clone()),
        )
        .await;
    let pid = parent.token.id();
    assert_eq!(
        stored(&env, pid).await.rate_limits,
        parent_limits,
        "round trip"
    );
    let inherited = env
        .manager
        .derive(parent.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inherited.record.rate_limits, parent_limits);
    for looser in [
        limits(&[("requests", 100, 60)]),
        limits(&[("requests", 101, 60), ("expensive", 10, 3600)]),
        limits(&[("requests", 100, 30), ("expensive", 10, 3600)]),
    ] {
        let derived = env
            .manager
            .derive(
                parent.token.id(),
                DeriveRequest::new(scopes_of("a")).rate_limits(looser.clone()),
            )
            .await;
        assert!(
            matches!(
                derived,
                Err(Error::LimitWidening {
                    limit: "rate_limits",
                    ..
                })
            ),
            "{looser}: {derived:?}"
        );
        match env
            .manager
            .update(pid, TokenUpdate::new().rate_limits(looser.clone()))
            .await
        {
            Err(Error::UpdateWidens {
                field: "rate_limits",
                ..
            }) => {}
            other => panic!("{looser} was not refused: {other:?}"),
        }
    }
    let tighter = limits(&[
        ("requests", 10, 60),
        ("expensive", 10, 3600),
        ("writes", 1, 1),
    ]);
    let child = env
        .manager
        .derive(
            parent.token.id(),
            DeriveRequest::new(scopes_of("a")).rate_limits(tighter.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored(&env, child.token.id()).await.rate_limits, tighter);
    // Tightening the parent below its children tightens them to fit, keeping their extras.
    env.manager
        .update(
            pid,
            TokenUpdate::new().rate_limits(limits(&[("requests", 5, 60), ("expensive", 10, 3600)])),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let narrowed = stored(&env, child.token.id()).await.rate_limits.clone();
    assert_eq!(
        narrowed.to_string(),
        "expensive=10/3600s requests=5/60s writes=1/1s"
    );
    assert_eq!(
        stored(&env, inherited.token.id())
            .await
            .rate_limits
            .to_string(),
        "expensive=10/3600s requests=5/60s"
    );
}
