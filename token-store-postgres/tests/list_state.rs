//! The SQL state filter of `list` reproduces `TokenRecord::state_at` exactly, for every state
//! and around every boundary (`TOKEN_TEST_POSTGRES_URL`).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;
use token_core::{
    HashKey, IssueRequest, KeyId, Keyring, ListFilter, ListQuery, ManualClock, Policy,
    RevokeSelector, ScopeSet, TokenId, TokenManager, TokenRecord, TokenState, TokenStore,
};

use common::{drop_schema, migrated_store, url_or_skip};

const STATES: [TokenState; 7] = [
    TokenState::Active,
    TokenState::Revoked,
    TokenState::Expired,
    TokenState::Suspended,
    TokenState::NotYetValid,
    TokenState::IdleExpired,
    TokenState::UsedUp,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_state_filter_matches_state_at() {
    let Some(url) = url_or_skip("list_state_filter_matches_state_at") else {
        return;
    };
    let store = migrated_store(&url, 4).await;
    let schema = store.schema().to_owned();
    let janitor = common::SchemaJanitor::default();
    janitor.track(&schema);
    let start = datetime!(2030-01-01 0:00 UTC);
    let clock = ManualClock::new(start);
    let policy = Policy::builder()
        .allow_non_expiring()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let manager = TokenManager::builder(
        store.clone(),
        Keyring::new(HashKey::new(KeyId::new(1), [7; 32])),
    )
    .prefix("test")
    .unwrap_or_else(|e| panic!("{e}"))
    .policy(policy)
    .clock(clock.clone())
    .usage_flush_interval(Duration::from_secs(10))
    .build()
    .unwrap_or_else(|e| panic!("{e}"));
    let hour = Duration::from_secs(3600);
    let a = ScopeSet::parse("a").unwrap_or_else(|e| panic!("{e}"));
    let requests = vec![
        IssueRequest::new("s", a.clone()).ttl(hour),
        IssueRequest::new("s", a.clone()).ttl(3 * hour),
        IssueRequest::new("s", a.clone()).not_before(start + time::Duration::minutes(30)),
        IssueRequest::new("s", a.clone()).idle_timeout(2 * hour),
        IssueRequest::new("s", a.clone())
            .idle_timeout(2 * hour)
            .not_before(start + time::Duration::hours(1)),
        IssueRequest::new("s", a.clone()).max_uses(1),
        IssueRequest::new("s", a.clone()).max_uses(3),
        IssueRequest::new("s", a.clone())
            .never_expires()
            .idle_timeout(hour * 24 * 365 * 50),
        IssueRequest::new("s", a.clone()),
    ];
    let mut tokens = Vec::new();
    for request in requests {
        tokens.push(
            manager
                .issue(request)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    // Uses: used-up token, a use that postpones idleness, then a revocation.
    clock.advance(Duration::from_secs(40 * 60));
    for index in [5, 6, 3] {
        manager
            .validate(tokens[index].token.expose_secret(), &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    manager
        .revoke(RevokeSelector::Token(tokens[8].token.id()), "x")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Suspended: after expired, before not yet valid, in the SQL filter as in `state_at`.
    for token in [&tokens[1], &tokens[7]] {
        manager
            .suspend(RevokeSelector::Token(token.token.id()), "x")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    let mut instants: Vec<OffsetDateTime> = vec![start, start - time::Duration::hours(1)];
    for minutes in [
        0, 29, 30, 40, 59, 60, 61, 119, 120, 160, 161, 179, 180, 181, 200, 10_000,
    ] {
        let at = start + time::Duration::minutes(minutes);
        instants.extend([
            at - time::Duration::microseconds(1),
            at,
            at + time::Duration::microseconds(1),
        ]);
    }
    let records: Vec<TokenRecord> = {
        let mut out = Vec::new();
        for t in &tokens {
            out.push(
                (*store
                    .get(t.token.id())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .unwrap_or_else(|| panic!("missing")))
                .clone(),
            );
        }
        out
    };
    let mut seen_states = BTreeSet::new();
    for now in instants {
        for state in STATES {
            let expected: BTreeSet<TokenId> = records
                .iter()
                .filter(|r| r.state_at(now) == state)
                .map(|r| r.id)
                .collect();
            if !expected.is_empty() {
                seen_states.insert(state.as_str());
            }
            let listed: BTreeSet<TokenId> = store
                .list(&ListQuery::new(
                    ListFilter::all().state(state),
                    now,
                    None,
                    1000,
                ))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(listed, expected, "state {state} at {now}");
        }
    }
    assert_eq!(
        seen_states.len(),
        STATES.len(),
        "not every state was exercised: {seen_states:?}"
    );
    drop(manager);
    drop_schema(&url, &schema).await;
}
