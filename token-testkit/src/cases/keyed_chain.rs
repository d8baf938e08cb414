//! The keyed audit chain: with audit keys held outside the database, a writer who rewrites events
//! and recomputes the (unkeyed) chain is caught; an unkeyed history followed by keyed events
//! verifies; a verifier without the key reports the event it cannot check.
//!
//! The attacker edits what the manager reads back ([`CountingStore::rewrite_audit`]
//! (crate::CountingStore::rewrite_audit)), the same on every store: the rows as a writer with
//! raw table access would leave them.

use token_core::audit::chain_hash;
use token_core::{AuditHash, AuditKey, AuditKeyring, AuditRecord, KeyId, RevokeSelector};

use crate::env::TestEnv;
use crate::{Fixture, report_skip};

use super::support::{HOUR, all_events, derive};

/// This file's cases, the one list of them (see `audit.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_keyed_chain {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            rewrite_with_recomputed_unkeyed_hashes_is_detected_on_a_keyed_chain,
            unkeyed_history_followed_by_keyed_events_verifies,
            keyed_event_without_its_key_is_reported,
        }
    };
}

fn audit_key(id: u32) -> AuditKey {
    let mut bytes = [0xa5u8; 32];
    bytes[0] = id as u8;
    AuditKey::new(KeyId::new(id), bytes)
}

/// A manager configured with `keys` over a fresh store keyed with them; `None` (the case is
/// skipped) when the store cannot key its chain.
async fn keyed_env(f: &dyn Fixture, keys: &AuditKeyring, case: &str) -> Option<TestEnv> {
    let verifier = keys.clone();
    let env = TestEnv::with_options(f, |b| b.audit_keys(verifier)).await;
    if !env.key_audit(keys) {
        report_skip(case, "the store cannot key its audit chain");
        return None;
    }
    Some(env)
}

async fn history(env: &TestEnv) {
    let a = env.issue("alice", "a b").await;
    let child = derive(env, a.token.id(), "a").await;
    env.advance(HOUR);
    env.issue("bob", "a").await;
    env.manager
        .revoke(RevokeSelector::Token(child.token.id()), "done")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    env.issue("carol", "a").await;
}

/// The attack: edit event `seq`'s reason, then recompute every link from it on as the unkeyed
/// chain computes them (`downgrade` also clears `chain_key_id`, claiming unkeyed links).
fn rewrite_and_rechain(seq: u64, downgrade: bool) -> impl Fn(&mut Vec<AuditRecord>) {
    move |records: &mut Vec<AuditRecord>| {
        let Some(start) = records.iter().position(|r| r.seq == seq) else {
            return;
        };
        let mut prev = match start {
            0 => AuditHash::GENESIS,
            i => records[i - 1].hash,
        };
        for (i, record) in records.iter_mut().enumerate().skip(start) {
            if i == start {
                record.event.reason = Some("nothing to see".into());
            }
            if downgrade {
                record.chain_key_id = None;
            }
            record.hash = chain_hash(&prev, record.seq, &record.event);
            prev = record.hash;
        }
    }
}

pub async fn rewrite_with_recomputed_unkeyed_hashes_is_detected_on_a_keyed_chain(f: &dyn Fixture) {
    const CASE: &str = "rewrite_with_recomputed_unkeyed_hashes_is_detected_on_a_keyed_chain";
    let keys = AuditKeyring::new(audit_key(1));
    let Some(env) = keyed_env(f, &keys, CASE).await else {
        return;
    };
    history(&env).await;
    let events = all_events(&env).await;
    assert!(events.len() >= 5, "{events:?}");
    assert!(
        events.iter().all(|r| r.chain_key_id == Some(KeyId::new(1))),
        "every event names the key that chained it: {events:?}"
    );
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.keyed, report.checked);
    assert_eq!(report.checked, events.len() as u64);

    // Rewritten with the key ids left in place: the recomputed links do not verify under the key.
    let target = events[2].seq;
    env.store.rewrite_audit(rewrite_and_rechain(target, false));
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.first_broken.map(|b| b.seq),
        Some(target),
        "a rewrite with recomputed unkeyed hashes passes the keyed chain: {report:?}"
    );
    assert!(!report.is_intact());

    // Rewritten as unkeyed links: an unkeyed event after a keyed one is a downgrade.
    env.store.rewrite_audit(rewrite_and_rechain(target, true));
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.downgraded, Some(target), "{report:?}");
    assert!(report.first_broken.is_none(), "{report:?}");
    assert!(!report.is_intact());
}

pub async fn unkeyed_history_followed_by_keyed_events_verifies(f: &dyn Fixture) {
    const CASE: &str = "unkeyed_history_followed_by_keyed_events_verifies";
    let first = AuditKeyring::new(audit_key(1));
    let rotated = first
        .clone()
        .with_key(audit_key(2))
        .with_current(KeyId::new(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let verifier = rotated.clone();
    let env = TestEnv::with_options(f, |b| b.audit_keys(verifier)).await;
    history(&env).await;
    let unkeyed = all_events(&env).await.len() as u64;
    if !env.key_audit(&first) {
        report_skip(CASE, "the store cannot key its audit chain");
        return;
    }
    history(&env).await;
    let after_first = all_events(&env).await.len() as u64;
    // Key rotation: key 2 current, key 1 kept for its events.
    assert!(env.key_audit(&rotated));
    history(&env).await;
    let events = all_events(&env).await;
    let kinds: Vec<Option<u32>> = events
        .iter()
        .map(|r| r.chain_key_id.map(KeyId::get))
        .collect();
    let expected: Vec<Option<u32>> = (0..events.len() as u64)
        .map(|i| match i {
            i if i < unkeyed => None,
            i if i < after_first => Some(1),
            _ => Some(2),
        })
        .collect();
    assert_eq!(kinds, expected);
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checked, events.len() as u64);
    assert_eq!(report.keyed, events.len() as u64 - unkeyed);

    // Truncated into the keyed part: the chain resumes from a keyed checkpoint.
    env.advance(400 * 24 * HOUR);
    let cut = events[after_first as usize].event.at + time::Duration::microseconds(1);
    let removed = token_core::TokenStore::truncate_audit(
        &env.store,
        &token_core::TruncateAudit::new(cut, 1000),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(removed > unkeyed, "{removed}");
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.links_verify(), "{report:?}");
}

pub async fn keyed_event_without_its_key_is_reported(f: &dyn Fixture) {
    const CASE: &str = "keyed_event_without_its_key_is_reported";
    let keys = AuditKeyring::new(audit_key(1));
    let Some(env) = keyed_env(f, &keys, CASE).await else {
        return;
    };
    history(&env).await;
    let first = all_events(&env).await[0].seq;
    // A manager without audit keys, and one with another key only.
    let other = AuditKeyring::new(audit_key(2));
    for manager in [env.sibling(|b| b), env.sibling(|b| b.audit_keys(other))] {
        let report = manager
            .verify_audit_chain(None, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            report.missing_key,
            Some((first, KeyId::new(1))),
            "{report:?}"
        );
        assert_eq!(report.checked, 0);
        assert!(report.first_broken.is_none(), "{report:?}");
        assert!(!report.is_intact());
    }
}
