//! Listing: filters by subject, label and state, pagination without gaps or repeats, and the
//! stale-token report.

use std::collections::HashSet;
use std::time::Duration;

use token_core::{Error, IssueRequest, ListFilter, Page, RevokeSelector, TokenId, TokenState};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{DAY, HOUR, assert_valid, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_list {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            list_filters_by_subject_label_and_state,
            list_paginates_without_gaps_or_repeats,
            stale_token_report_lists_unused_tokens,
        }
    };
}

pub async fn list_filters_by_subject_label_and_state(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    // Distinct creation instants, so the listing order (created_at, id) is the issue order.
    let a = env
        .issue_with(IssueRequest::new("alice", scopes_of("x")).label("team", "red"))
        .await;
    env.advance(Duration::from_secs(1));
    let b = env
        .issue_with(IssueRequest::new("alice", scopes_of("x")).ttl(HOUR))
        .await;
    env.advance(Duration::from_secs(1));
    let c = env
        .issue_with(IssueRequest::new("bob", scopes_of("x")).label("team", "red"))
        .await;
    revoke(&env, RevokeSelector::Token(c.token.id())).await;
    env.advance(2 * HOUR);
    let ids = |page: token_core::TokenPage| -> Vec<TokenId> {
        page.items.into_iter().map(|r| r.id).collect()
    };
    let list = |filter: ListFilter| {
        let manager = env.manager.clone();
        async move {
            manager
                .list(filter, Page::default())
                .await
                .unwrap_or_else(|e| panic!("list: {e}"))
        }
    };
    assert_eq!(
        ids(list(ListFilter::all().subject("alice")).await),
        vec![a.token.id(), b.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().label("team", "red")).await),
        vec![a.token.id(), c.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Active)).await),
        vec![a.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Expired)).await),
        vec![b.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().state(TokenState::Revoked)).await),
        vec![c.token.id()]
    );
    assert_eq!(
        ids(list(ListFilter::all().subject("bob").label("team", "red")).await),
        vec![c.token.id()]
    );
    assert!(matches!(
        env.manager.list(ListFilter::all(), Page::first(0)).await,
        Err(Error::InvalidRequest {
            field: "page.limit",
            ..
        })
    ));
}

pub async fn list_paginates_without_gaps_or_repeats(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let mut expected = Vec::new();
    for i in 0..23 {
        // Several tokens share a creation instant, so the id tie-break matters.
        if i % 3 == 0 {
            env.advance(Duration::from_secs(1));
        }
        expected.push(env.issue("pager", "a").await.token.id());
    }
    env.issue("someone-else", "a").await;
    let mut seen = Vec::new();
    let mut page = Page::first(5);
    let mut pages = 0;
    loop {
        let result = env
            .manager
            .list(ListFilter::all().subject("pager"), page)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pages += 1;
        assert!(result.items.len() <= 5);
        seen.extend(result.items.iter().map(|r| r.id));
        match result.next {
            Some(cursor) => {
                let text = cursor.to_string();
                page = Page::after(text.parse().unwrap_or_else(|e| panic!("{e}")), 5);
            }
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record was listed twice");
    let mut sorted_expected = expected.clone();
    sorted_expected.sort();
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    assert_eq!(sorted_seen, sorted_expected);
}

pub async fn stale_token_report_lists_unused_tokens(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let never_used = env.issue("u", "a").await;
    let used_long_ago = env.issue("u", "a").await;
    let recently_used = env.issue("u", "a").await;
    env.advance(DAY);
    assert_valid(&env, used_long_ago.token.expose_secret()).await;
    env.advance(10 * DAY);
    assert_valid(&env, recently_used.token.expose_secret()).await;
    env.advance(DAY);
    env.manager
        .flush_usage()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let stale: HashSet<TokenId> = env
        .manager
        .stale_tokens(5 * DAY, Page::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        stale,
        HashSet::from([never_used.token.id(), used_long_ago.token.id()])
    );
}
