//! Faults against a real server (`TOKEN_TEST_POSTGRES_URL`): an unreachable server, terminated
//! pool connections and a terminated listener. Validation never accepts while the store fails.

mod common;
#[path = "../../token-core/tests/support/recorder.rs"]
mod recorder;

use std::time::Duration;

use futures_util::StreamExt;
use token_core::{
    ErrorClass, IssueRequest, PlaintextToken, RevocationNotice, RevokeSelector, StoreError,
    TokenPrefix, TokenStore, ValidationError,
};
use token_store_postgres::{PgStore, PgStoreOptions};

use common::{drop_schema, fresh_schema, manager, scopes, terminate, url_or_skip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_typed_error_and_validation_fails_closed() {
    if url_or_skip("unreachable_server_is_a_typed_error_and_validation_fails_closed").is_none() {
        return;
    }
    let nowhere = "postgres://postgres@127.0.0.1:1/test";
    let options = PgStoreOptions::new(nowhere).acquire_timeout(Duration::from_millis(500));
    let err = PgStore::connect_with(options.clone())
        .await
        .err()
        .unwrap_or_else(|| panic!("connected to a closed port"));
    assert!(
        matches!(
            err,
            StoreError::Backend {
                store: "postgres",
                ..
            }
        ),
        "{err}"
    );

    // A lazily connected store (the server is down when the app starts).
    let store = PgStore::connect_with(options.lazy(true))
        .await
        .unwrap_or_else(|e| panic!("lazy connect: {e}"));
    let manager = manager(store.clone());
    let prefix = TokenPrefix::new("test").unwrap_or_else(|e| panic!("{e}"));
    let token = PlaintextToken::generate(&prefix).unwrap_or_else(|e| panic!("{e}"));
    let err = manager
        .validate(token.expose_secret(), &[])
        .await
        .err()
        .unwrap_or_else(|| panic!("validation accepted while the server is down"));
    assert_eq!(err.class(), ErrorClass::ServerError, "{err}");
    assert!(
        matches!(err, ValidationError::Store(StoreError::Backend { .. })),
        "{err}"
    );
    let err = manager
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .err()
        .unwrap_or_else(|| panic!("issued while the server is down"));
    assert!(
        matches!(err, token_core::Error::Store(StoreError::Backend { .. })),
        "{err}"
    );
    assert!(matches!(
        store.subscribe_revocations().await.err(),
        Some(StoreError::Backend { .. })
    ));
    assert!(matches!(
        store.migrate().await.err(),
        Some(StoreError::Backend { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_pool_connections_fail_typed_then_recover() {
    let Some(url) = url_or_skip("terminated_pool_connections_fail_typed_then_recover") else {
        return;
    };
    let schema = fresh_schema();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let app = format!("faults-{schema}");
    let store = PgStore::connect_with(
        PgStoreOptions::new(&url)
            .schema(&schema)
            .max_connections(4)
            .application_name(&app),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let manager = manager(store);
    let issued = manager
        .issue(IssueRequest::new("u", scopes("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = issued.token.expose_secret().to_owned();
    // Open several pooled connections.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let (manager, token) = (manager.clone(), token.clone());
            tokio::spawn(async move { manager.validate(&token, &[]).await.is_ok() })
        })
        .collect();
    for task in warm {
        assert!(task.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let killed = terminate(&url, &app).await;
    assert!(killed > 0, "no pool connection found to terminate");
    // Operations on dead connections fail with a typed error and never accept; the pool then
    // opens fresh connections.
    let mut failures = 0;
    let mut recovered = false;
    for _ in 0..50 {
        match manager.validate(&token, &[]).await {
            Ok(_) => {
                recovered = true;
                break;
            }
            Err(e) => {
                assert_eq!(e.class(), ErrorClass::ServerError, "{e}");
                assert!(
                    matches!(e, ValidationError::Store(StoreError::Backend { .. })),
                    "{e}"
                );
                failures += 1;
            }
        }
    }
    println!(
        "terminated {killed} connections; {failures} validations failed closed before recovery"
    );
    assert!(recovered, "the pool did not recover");
    for _ in 0..10 {
        manager
            .validate(&token, &[])
            .await
            .unwrap_or_else(|e| panic!("after recovery: {e}"));
    }
    manager
        .revoke(RevokeSelector::Token(issued.token.id()), "done")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(manager.validate(&token, &[]).await.is_err());
    drop(manager);
    drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminated_listener_yields_interrupted_then_delivers_again() {
    let Some(url) = url_or_skip("terminated_listener_yields_interrupted_then_delivers_again")
    else {
        return;
    };
    // The feed's counters and lag histogram (the only test of this binary that installs a
    // recorder).
    let counters: &'static recorder::Counters = Box::leak(Box::default());
    metrics::set_global_recorder(counters)
        .unwrap_or_else(|_| panic!("another recorder is installed in this test binary"));
    let schema = fresh_schema();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let app = format!("feedfault-{schema}");
    let store = PgStore::connect_with(
        PgStoreOptions::new(&url)
            .schema(&schema)
            .max_connections(2)
            .application_name(&app),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    store.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    let mut feed = store
        .subscribe_revocations()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no feed"));
    let manager = manager(store.clone());
    for round in 0..2 {
        let killed = terminate(&url, &format!("{app}/feed")).await;
        assert_eq!(killed, 1, "expected one listener connection");
        let notice = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .unwrap_or_else(|_| panic!("no notice after the listener was terminated"));
        assert_eq!(notice, Some(RevocationNotice::Interrupted), "round {round}");
        let issued = manager
            .issue(IssueRequest::new("u", scopes("a")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        manager
            .revoke(RevokeSelector::Token(issued.token.id()), "after reconnect")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        loop {
            let notice = tokio::time::timeout(Duration::from_secs(10), feed.next())
                .await
                .unwrap_or_else(|_| panic!("revocation after reconnect not delivered"));
            match notice {
                Some(RevocationNotice::Revoked(ids)) => {
                    assert_eq!(ids, vec![issued.token.id()]);
                    break;
                }
                Some(RevocationNotice::Interrupted) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let seen = counters.snapshot();
    let interruptions: u64 = seen
        .iter()
        .filter(|(name, _)| name.starts_with("token_feed_interruptions_total"))
        .map(|(_, n)| n)
        .sum();
    assert!(interruptions >= 2, "two terminations counted: {seen:#?}");
    // Each delivered revocation carried its send time: its lag was recorded.
    let lags = seen
        .get("token_feed_notification_lag_seconds{store=postgres}")
        .copied()
        .unwrap_or(0);
    assert!(
        lags >= 2,
        "two delivered revocations, lags recorded: {seen:#?}"
    );
    // The feed ends when the store is dropped.
    drop(manager);
    drop(store);
    let end = tokio::time::timeout(Duration::from_secs(5), feed.next())
        .await
        .unwrap_or_else(|_| panic!("feed did not end with the store"));
    assert_eq!(end, None);
    drop_schema(&url, &schema).await;
}
