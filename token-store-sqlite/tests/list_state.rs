//! The SQL translation of the state filter agrees with `TokenRecord::state_at` (the reference
//! semantics) on every combination of the columns it reads, including the exact boundaries.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use time::macros::datetime;
use token_core::store::{InsertToken, ListQuery, TokenStore};
use token_core::{
    KeyId, Labels, ListFilter, RateLimits, Revocation, ScopeSet, TokenHash, TokenId, TokenRecord,
    TokenState, UseRefill,
};

const T: time::OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

fn at(seconds: i64) -> time::OffsetDateTime {
    T + time::Duration::seconds(seconds)
}

fn records() -> Vec<TokenRecord> {
    let mut out = Vec::new();
    let mut n: u32 = 0;
    for revoked in [false, true] {
        for expires in [None, Some(10)] {
            for not_before in [None, Some(5)] {
                for (idle, last_used) in [
                    (None, None),
                    (Some(3), None),
                    (Some(3), Some(4)),
                    (Some(3), Some(8)),
                ] {
                    for (max_uses, use_count) in [(None, 0), (Some(2), 0), (Some(2), 2)] {
                        for created in [0, 1] {
                            n += 1;
                            let mut bytes = [0u8; 16];
                            bytes[12..].copy_from_slice(&n.to_be_bytes());
                            // Vary the leading byte so id order differs from insertion order.
                            bytes[0] = (n.wrapping_mul(37) % 251) as u8;
                            let id = TokenId::from_bytes(bytes);
                            out.push(TokenRecord {
                                id,
                                hash: TokenHash::from_bytes([n as u8; 32]),
                                hash_key_id: KeyId::new(1),
                                prefix: "t".into(),
                                subject: format!("s{}", n % 3),
                                scopes: ScopeSet::parse("a").unwrap_or_default(),
                                name: None,
                                description: None,
                                labels: Labels::new(),
                                created_at: at(created),
                                created_by: None,
                                expires_at: expires.map(at),
                                not_before: not_before.map(at),
                                idle_timeout: idle.map(Duration::from_secs),
                                last_used_at: last_used.map(at),
                                use_count,
                                max_uses,
                                // Every other use-limited record refills at 6: used up
                                // before, active from then on.
                                use_refill: (max_uses.is_some() && n.is_multiple_of(2))
                                    .then(|| UseRefill::Every(Duration::from_secs(60))),
                                next_refill_at: (max_uses.is_some() && n.is_multiple_of(2))
                                    .then(|| at(6)),
                                rate_limits: RateLimits::none(),
                                parent_id: None,
                                family_id: id,
                                rotated_from: None,
                                rotated_to: None,
                                revocation: revoked.then(|| Revocation {
                                    at: at(2),
                                    reason: "r".into(),
                                    actor: None,
                                }),
                                // Every fifth record suspended: the state filter's
                                // precedence puts it after expired, before not yet valid.
                                suspended_at: n.is_multiple_of(5).then(|| at(1)),
                                metadata: None,
                                allowed_networks: None,
                                dpop_jkt: None,
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn state_filter_matches_state_at_exactly() {
    let store = common::migrated_in_memory().await;
    let records = records();
    for record in &records {
        store
            .insert(&InsertToken::new(record.clone(), None, T, Vec::new()))
            .await
            .unwrap_or_else(|e| panic!("insert: {e}"));
    }
    // Read back equals written.
    for record in &records {
        let stored = store
            .get(record.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("missing"));
        assert_eq!(*stored, *record);
    }
    let states = [
        TokenState::Active,
        TokenState::Revoked,
        TokenState::Expired,
        TokenState::Suspended,
        TokenState::NotYetValid,
        TokenState::IdleExpired,
        TokenState::UsedUp,
    ];
    let micro = time::Duration::microseconds(1);
    let mut instants = Vec::new();
    for s in [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 100] {
        instants.extend([at(s) - micro, at(s), at(s) + micro]);
    }
    for now in instants {
        for state in states {
            for filter in [
                ListFilter::all().state(state),
                ListFilter::all().state(state).subject("s1"),
            ] {
                let listed = store
                    .list(&ListQuery::new(filter.clone(), now, None, 10_000))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut expected: Vec<&TokenRecord> =
                    records.iter().filter(|r| filter.matches(r, now)).collect();
                expected.sort_by_key(|r| (r.created_at, r.id));
                let expected: Vec<TokenId> = expected.iter().map(|r| r.id).collect();
                let got: Vec<TokenId> = listed.iter().map(|r| r.id).collect();
                assert_eq!(got, expected, "state {state} at {now} with {filter:?}");
            }
        }
    }
}

#[tokio::test]
async fn pagination_follows_created_at_then_id_order() {
    let store = common::migrated_in_memory().await;
    let records = records();
    for record in &records {
        store
            .insert(&InsertToken::new(record.clone(), None, T, Vec::new()))
            .await
            .unwrap_or_else(|e| panic!("insert: {e}"));
    }
    let mut expected: Vec<(time::OffsetDateTime, TokenId)> =
        records.iter().map(|r| (r.created_at, r.id)).collect();
    expected.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list(&ListQuery::new(ListFilter::all(), T, after, 7))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let Some(last) = page.last() else { break };
        after = Some(token_core::Cursor::after(last));
        seen.extend(page.iter().map(|r| (r.created_at, r.id)));
    }
    assert_eq!(seen, expected);
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
}
