//! Concurrency against a real server (`TOKEN_TEST_POSTGRES_URL`): exact use limits, revoke vs.
//! validate, family revoke vs. derive, and the revocation feed between two instances.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use token_core::{
    DeriveRequest, Error, IssueRequest, ListFilter, Page, RevocationNotice, RevokeSelector,
    TokenId, TokenStore, ValidationError,
};

use common::{drop_schema, manager, migrated_store, scopes, second_instance, url_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_uses_is_exact_with_64_tasks_over_8_connections() {
    let Some(url) = url_or_skip("max_uses_is_exact_with_64_tasks_over_8_connections") else {
        return;
    };
    let store = migrated_store(&url, 8).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store);
    let issued = manager
        .issue(IssueRequest::new("u", scopes("a")).max_uses(10))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token: Arc<str> = issued.token.expose_secret().into();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let manager = manager.clone();
            let token = Arc::clone(&token);
            tokio::spawn(async move { manager.validate(&token, &[]).await })
        })
        .collect();
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        match task.await.unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => ok += 1,
            Err(ValidationError::UseLimitReached) => limited += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((ok, limited), (10, 54));
    let stored = manager
        .store()
        .get(issued.token.id())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("missing"));
    assert_eq!(stored.use_count, 10);
    drop(manager);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_validation_starting_after_revoke_returned_succeeds() {
    let Some(url) = url_or_skip("no_validation_starting_after_revoke_returned_succeeds") else {
        return;
    };
    let store = migrated_store(&url, 8).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store);
    let issued = manager
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token: Arc<str> = issued.token.expose_secret().into();
    let revoked = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let accepted_before = Arc::new(AtomicU64::new(0));
    let checked_after = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (manager, token) = (manager.clone(), Arc::clone(&token));
            let (revoked, stop) = (Arc::clone(&revoked), Arc::clone(&stop));
            let (before, after, bad) = (
                Arc::clone(&accepted_before),
                Arc::clone(&checked_after),
                Arc::clone(&violations),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let started_after_revoke = revoked.load(Ordering::SeqCst);
                    let result = manager.validate(&token, &[]).await;
                    if started_after_revoke {
                        after.fetch_add(1, Ordering::Relaxed);
                        if result.is_ok() {
                            bad.fetch_add(1, Ordering::SeqCst);
                        }
                    } else if result.is_ok() {
                        before.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Revoke once the validators have been accepted, and stop once enough have started after
    // the revoke returned: waits on what happened, bounded, never on the scheduler's speed.
    wait_until(|| accepted_before.load(Ordering::Relaxed) > 0).await;
    manager
        .revoke(RevokeSelector::Token(issued.token.id()), "race")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    revoked.store(true, Ordering::SeqCst);
    wait_until(|| checked_after.load(Ordering::Relaxed) >= 50).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    println!(
        "validations accepted before revoke: {}, checked after revoke: {}",
        accepted_before.load(Ordering::Relaxed),
        checked_after.load(Ordering::Relaxed)
    );
    assert!(
        accepted_before.load(Ordering::Relaxed) > 0,
        "race never ran"
    );
    assert!(checked_after.load(Ordering::Relaxed) > 0, "race never ran");
    assert_eq!(
        violations.load(Ordering::SeqCst),
        0,
        "accepted after revoke"
    );
    drop(manager);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn family_revoke_racing_derives_leaves_no_child_unrevoked() {
    let Some(url) = url_or_skip("family_revoke_racing_derives_leaves_no_child_unrevoked") else {
        return;
    };
    let store = migrated_store(&url, 8).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store);
    for round in 0..5 {
        let root = manager
            .issue(IssueRequest::new(format!("u{round}"), scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let root_id = root.token.id();
        let revoked = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..6)
            .map(|task| {
                let manager = manager.clone();
                let revoked = Arc::clone(&revoked);
                tokio::spawn(async move {
                    let mut members = vec![root_id];
                    let mut late_successes = 0u32;
                    let mut i: usize = task;
                    loop {
                        // Derive from a spread of members, so the tree grows in depth and width.
                        i = i.wrapping_mul(31).wrapping_add(7);
                        let parent = members[i % members.len()];
                        let started_after = revoked.load(Ordering::SeqCst);
                        match manager
                            .derive(parent, DeriveRequest::new(scopes("a")))
                            .await
                        {
                            Ok(child) => {
                                if started_after {
                                    late_successes += 1;
                                }
                                members.push(child.token.id());
                            }
                            Err(Error::NotActive { .. }) => {
                                if started_after {
                                    break;
                                }
                            }
                            Err(e) => panic!("unexpected derive error: {e}"),
                        }
                    }
                    (members, late_successes)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let revoked_ids: HashSet<TokenId> = manager
            .revoke(RevokeSelector::Family(root_id), "family race")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect();
        revoked.store(true, Ordering::SeqCst);
        let mut derived = HashSet::new();
        for task in tasks {
            let (members, late) = task.await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                late, 0,
                "a derive that started after revoke returned succeeded"
            );
            derived.extend(members);
        }
        // Every token the derivers got is in the family and revoked by that one call.
        let mut listed = Vec::new();
        let mut page = Page::first(500);
        loop {
            let result = manager
                .list(ListFilter::all().family(root_id), page)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            listed.extend(result.items);
            match result.next {
                Some(cursor) => page = Page::after(cursor, 500),
                None => break,
            }
        }
        let unrevoked: Vec<_> = listed.iter().filter(|r| r.revocation.is_none()).collect();
        assert!(unrevoked.is_empty(), "children escaped: {unrevoked:?}");
        let listed_ids: HashSet<TokenId> = listed.iter().map(|r| r.id).collect();
        assert_eq!(
            listed_ids, derived,
            "family listing differs from what was derived"
        );
        assert_eq!(
            revoked_ids, derived,
            "revoke did not return the whole family"
        );
        println!("round {round}: family of {} revoked", derived.len());
    }
    drop(manager);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_reaches_the_other_instances_feed() {
    let Some(url) = url_or_skip("revocation_on_one_instance_reaches_the_other_instances_feed")
    else {
        return;
    };
    let a = migrated_store(&url, 4).await;
    let schema = a.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let b = second_instance(&url, &schema, "instance-b").await;
    let mut feed = b
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no feed"));
    // A store in another schema must not hear these revocations.
    let stranger = migrated_store(&url, 2).await;
    janitor.track(stranger.schema());
    let mut stranger_feed = stranger
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no feed"));
    let manager = manager(a);
    let mut delays = Vec::new();
    for _ in 0..100 {
        let issued = manager
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        manager
            .revoke(RevokeSelector::Token(issued.token.id()), "feed")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        loop {
            let notice = tokio::time::timeout(Duration::from_secs(5), feed.next())
                .await
                .unwrap_or_else(|_| panic!("no notice within 5 s"));
            match notice {
                Some(RevocationNotice::Revoked(ids)) if ids.contains(&issued.token.id()) => break,
                Some(RevocationNotice::Revoked(_)) => {}
                other => panic!("unexpected notice {other:?}"),
            }
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let pct = |p: usize| delays[(delays.len() * p / 100).min(delays.len() - 1)];
    println!(
        "feed delay, revoke call on instance A -> notice on instance B ({} samples): p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        pct(50),
        pct(99),
        delays[delays.len() - 1]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stranger_feed.next())
            .await
            .is_err(),
        "a store in another schema heard the revocations"
    );
    drop(manager);
    drop(b);
    drop_schema(&url, &schema).await;
    drop_schema(&url, stranger.schema()).await;
}

/// Polls `done` until it holds or 10 s have passed; the caller's assertions report a timeout.
async fn wait_until(done: impl Fn() -> bool) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// `revoke(UnusedSince)` selects its candidates from a snapshot; a use committed before it locks
/// a candidate must keep that token: the condition is re-checked under the lock. (Before the fix
/// only `revoked_at IS NULL` was re-checked, and the just-used token was revoked anyway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_revocation_spares_a_token_used_while_it_waited_for_the_lock() {
    let Some(url) =
        url_or_skip("unused_revocation_spares_a_token_used_while_it_waited_for_the_lock")
    else {
        return;
    };
    let store = migrated_store(&url, 4).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store.clone());
    let issued = manager
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = issued.token.id();
    let since = issued.record.created_at + time::Duration::seconds(1);
    let hex = token_store_sql::hex(id.as_bytes());
    let used_at = token_store_sql::micros(since + time::Duration::seconds(1));

    // A use being written, not yet committed: it holds the row.
    let mut writer = common::admin(&url).await;
    sqlx::query("BEGIN")
        .execute(&mut writer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE \"{schema}\".tokens SET last_used_at = {used_at} WHERE id = '\\x{hex}'::bytea"
    )))
    .execute(&mut writer)
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let request = token_core::RevokeRequest::new(
        RevokeSelector::UnusedSince(since),
        since,
        "unused",
        token_core::Context::new(),
    )
    .with_limit(100);
    let revoker = {
        let store = store.clone();
        tokio::spawn(async move { store.revoke(&request).await })
    };
    // Wait (no timing asserted) until the revocation waits for the row lock.
    let mut watcher = common::admin(&url).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE NOT l.granted AND a.datname = current_database()",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revocation never waited for the row"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sqlx::query("COMMIT")
        .execute(&mut writer)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let events = revoker
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("revoke: {e}"));
    assert!(
        events.is_empty(),
        "a token used after `since` was revoked as unused: {events:?}"
    );
    let record = store
        .get(id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert!(record.revocation.is_none());
    drop(manager);
    drop_schema(&url, &schema).await;
}

/// Concurrent usage flushes over the same tokens, each listing them in its own order, with
/// revocations of some of them and rotations of parents (which move their children) meanwhile:
/// none fails. (Rows are locked in id order, the order revocations lock in, and a deadlock the
/// server still breaks is retried. Before, rows were updated in hash-map order and flushes
/// deadlocked: `40P01`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_usage_flushes_and_revocations_do_not_deadlock() {
    let Some(url) = url_or_skip("concurrent_usage_flushes_and_revocations_do_not_deadlock") else {
        return;
    };
    let store = migrated_store(&url, 8).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let manager = manager(store.clone());
    // 20 parents with 5 children each: rotating a parent moves (locks) its children.
    let mut ids = Vec::new();
    let mut parents = Vec::new();
    for _ in 0..20 {
        let parent = manager
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        parents.push(parent.token.id());
        ids.push(parent.token.id());
        for _ in 0..5 {
            let child = manager
                .derive(parent.token.id(), DeriveRequest::new(scopes("a")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            ids.push(child.token.id());
        }
    }
    let ids = Arc::new(ids);
    let now = time::OffsetDateTime::now_utc();
    let flushers: Vec<_> = (0..6)
        .map(|task| {
            let (store, ids) = (store.clone(), Arc::clone(&ids));
            tokio::spawn(async move {
                for round in 0..15 {
                    // Each flush lists the ids in a different order.
                    let mut order: Vec<TokenId> = ids.to_vec();
                    let shift = (task * 37 + round * 11) % order.len();
                    order.rotate_left(shift);
                    if (task + round) % 2 == 1 {
                        order.reverse();
                    }
                    let batch: Vec<token_core::UsageUpdate> = order
                        .into_iter()
                        .map(|id| token_core::UsageUpdate {
                            id,
                            last_used_at: now,
                            uses: 1,
                        })
                        .collect();
                    store.record_usage(&batch).await?;
                }
                Ok::<_, token_core::StoreError>(())
            })
        })
        .collect();
    let revoker = {
        let manager = manager.clone();
        let ids = Arc::clone(&ids);
        tokio::spawn(async move {
            for id in ids.iter().skip(1).step_by(10) {
                manager.revoke(RevokeSelector::Token(*id), "t").await?;
            }
            Ok::<_, Error>(())
        })
    };
    let rotator = {
        let manager = manager.clone();
        tokio::spawn(async move {
            for parent in parents.iter().skip(1) {
                match manager.rotate(*parent, Duration::from_secs(60)).await {
                    // A revocation above may have ended it first.
                    Ok(_) | Err(Error::NotActive { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, Error>(())
        })
    };
    for flusher in flushers {
        flusher
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("a usage flush failed: {e}"));
    }
    revoker
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("a revocation failed: {e}"));
    rotator
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("a rotation failed: {e}"));
    let record = store
        .get(ids[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("gone"));
    assert_eq!(record.use_count, 6 * 15, "every flush counted once");
    drop(manager);
    drop_schema(&url, &schema).await;
}
