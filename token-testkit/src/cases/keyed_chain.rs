//! The keyed audit chain: with audit keys held outside the database, a writer who rewrites events
//! and recomputes the (unkeyed) chain is caught; an unkeyed history followed by keyed events
//! verifies; a verifier without the key reports the event it cannot check. The retention
//! checkpoint is sealed with the key (a forged or moved one is caught), and a verifier told from
//! which event on the chain is keyed rejects an all-unkeyed relabelling.
//!
//! The attacker edits what the manager reads back ([`CountingStore::rewrite_audit`]
//! (crate::CountingStore::rewrite_audit)), the same on every store: the rows as a writer with
//! raw table access would leave them.

use token_core::audit::chain_hash;
use token_core::{
    AuditHash, AuditKey, AuditKeyring, AuditRecord, CheckpointBreak, CheckpointCheck, KeyId,
    ManagerBuilder, RevokeSelector,
};

use crate::env::TestEnv;
use crate::{Fixture, report_skip};

use super::support::{DAY, HOUR, all_events, derive, retention};

/// This file's cases, the one list of them (see `audit.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_keyed_chain {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            rewrite_with_recomputed_unkeyed_hashes_is_detected_on_a_keyed_chain,
            unkeyed_history_followed_by_keyed_events_verifies,
            keyed_event_without_its_key_is_reported,
            forged_checkpoint_behind_a_recent_deletion_is_flagged_on_a_keyed_chain,
            genuine_keyed_truncation_verifies_within_retention,
            unkeyed_relabelling_after_the_required_point_is_a_break,
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

/// A 30-day audit retention, as the checkpoint cases judge against.
fn keep_30_days(b: ManagerBuilder) -> ManagerBuilder {
    b.retention(retention(|r| {
        r.audit_max_age(30 * DAY).never_revoke_unused()
    }))
}

/// The attack of F3: every event from `from` on relabelled as an unkeyed link, the unkeyed
/// hashes recomputed, nothing else changed.
fn relabel_unkeyed_from(from: u64) -> impl Fn(&mut Vec<AuditRecord>) {
    move |records: &mut Vec<AuditRecord>| {
        let Some(start) = records.iter().position(|r| r.seq >= from) else {
            return;
        };
        let mut prev = match start {
            0 => AuditHash::GENESIS,
            i => records[i - 1].hash,
        };
        for record in records.iter_mut().skip(start) {
            record.chain_key_id = None;
            record.hash = chain_hash(&prev, record.seq, &record.event);
            prev = record.hash;
        }
    }
}

pub async fn forged_checkpoint_behind_a_recent_deletion_is_flagged_on_a_keyed_chain(
    f: &dyn Fixture,
) {
    const CASE: &str = "forged_checkpoint_behind_a_recent_deletion_is_flagged_on_a_keyed_chain";
    let keys = AuditKeyring::new(audit_key(1));
    let verifier = keys.clone();
    let env = TestEnv::with_options(f, |b| keep_30_days(b).audit_keys(verifier)).await;
    if !env.key_audit(&keys) {
        report_skip(CASE, "the store cannot key its audit chain");
        return;
    }
    for _ in 0..3 {
        env.issue("alice", "a").await;
    }
    env.advance(HOUR);
    let cut = env.clock_now();
    env.advance(HOUR);
    env.issue("bob", "a").await;
    env.issue("bob", "a").await;
    // The attacker deletes the three recent events (here with the store's own truncation, which
    // writes a sealed checkpoint naming their real time), then rewrites the checkpoint row.
    let removed = token_core::TokenStore::truncate_audit(
        &env.store,
        &token_core::TruncateAudit::new(cut, 1000),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(removed, 3);
    let verify = || async {
        env.manager
            .verify_audit_chain(None, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let report = verify().await;
    assert!(
        matches!(report.checkpoint_check, CheckpointCheck::TooRecent { .. }),
        "{report:?}"
    );
    assert!(!report.is_intact(), "{report:?}");

    let long_ago = env.clock_now() - time::Duration::days(400);
    for at in [Some(long_ago), None] {
        // The MAC dropped: a keyed trail behind an unsealed checkpoint.
        env.store.rewrite_checkpoint(move |c| {
            if let Some(c) = c {
                c.at = at;
                c.mac = None;
            }
        });
        let report = verify().await;
        assert_eq!(
            report.checkpoint_check,
            CheckpointCheck::Unauthenticated,
            "an unsealed checkpoint (at {at:?}) in front of keyed events passes: {report:?}"
        );
        assert!(report.checkpoint_broken.is_none(), "{report:?}");
        assert!(report.links_verify(), "{report:?}");
        assert!(!report.is_intact(), "{report:?}");

        // The MAC kept: it no longer matches the rewritten time.
        env.store.rewrite_checkpoint(move |c| {
            if let Some(c) = c {
                c.at = at;
            }
        });
        let report = verify().await;
        assert_eq!(
            report.checkpoint_broken,
            Some(CheckpointBreak::MacMismatch {
                key_id: KeyId::new(1)
            }),
            "a checkpoint whose time was rewritten (to {at:?}) keeps a valid MAC: {report:?}"
        );
        assert!(!report.links_verify(), "{report:?}");
        assert!(!report.is_intact(), "{report:?}");
    }

    // A verifier lacking the key the checkpoint was sealed with cannot vouch for it.
    env.store.rewrite_checkpoint(|_| {});
    let other = AuditKeyring::new(audit_key(2));
    let report = env
        .sibling(|b| keep_30_days(b).audit_keys(other))
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.checkpoint_broken,
        Some(CheckpointBreak::MissingKey {
            key_id: KeyId::new(1)
        }),
        "{report:?}"
    );
    assert!(!report.is_intact());
}

pub async fn genuine_keyed_truncation_verifies_within_retention(f: &dyn Fixture) {
    const CASE: &str = "genuine_keyed_truncation_verifies_within_retention";
    let keys = AuditKeyring::new(audit_key(1));
    let verifier = keys.clone();
    let env = TestEnv::with_options(f, |b| keep_30_days(b).audit_keys(verifier)).await;
    if !env.key_audit(&keys) {
        report_skip(CASE, "the store cannot key its audit chain");
        return;
    }
    for _ in 0..3 {
        env.issue("alice", "a").await;
    }
    env.advance(31 * DAY);
    env.issue("bob", "a").await;
    let swept = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(swept.audit_truncated, 3, "{swept:?}");
    let report = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let checkpoint = report
        .checkpoint
        .unwrap_or_else(|| panic!("the checkpoint is reported: {report:?}"));
    assert_eq!(checkpoint.seq, 3);
    assert_eq!(
        checkpoint.mac.map(|m| m.key_id),
        Some(KeyId::new(1)),
        "a store with audit keys seals its checkpoint: {checkpoint:?}"
    );
    assert_eq!(
        report.checkpoint_check,
        CheckpointCheck::WithinRetention,
        "{report:?}"
    );
    assert!(
        report.is_intact(),
        "retention flagged as tampering: {report:?}"
    );
    assert_eq!(report.keyed, report.checked);

    // A second truncation after a key rotation re-seals with the new key.
    let rotated = keys
        .with_key(audit_key(2))
        .with_current(KeyId::new(2))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(env.key_audit(&rotated));
    env.issue("carol", "a").await;
    env.advance(31 * DAY);
    env.issue("dave", "a").await;
    let swept = env
        .sibling(|b| keep_30_days(b).audit_keys(rotated.clone()))
        .sweep()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(swept.audit_truncated >= 2, "{swept:?}");
    let report = env
        .sibling(|b| keep_30_days(b).audit_keys(rotated))
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.checkpoint.and_then(|c| c.mac).map(|m| m.key_id),
        Some(KeyId::new(2)),
        "{report:?}"
    );
    assert!(report.is_intact(), "{report:?}");
}

pub async fn unkeyed_relabelling_after_the_required_point_is_a_break(f: &dyn Fixture) {
    const CASE: &str = "unkeyed_relabelling_after_the_required_point_is_a_break";
    let keys = AuditKeyring::new(audit_key(1));
    let verifier = keys.clone();
    let env = TestEnv::with_options(f, |b| b.audit_keys(verifier)).await;
    history(&env).await;
    // The host enables audit keys and records the point: the head just before, plus one.
    let before = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from = before.head.map_or(1, |(seq, _)| seq + 1);
    if !env.key_audit(&keys) {
        report_skip(CASE, "the store cannot key its audit chain");
        return;
    }
    history(&env).await;
    let strict = env.sibling(|b| b.audit_keys(keys.clone()).audit_keys_required_from(from));
    let report = strict
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        report.is_intact(),
        "unkeyed events before the required point are fine: {report:?}"
    );
    assert!(
        report.keyed > 0 && report.keyed < report.checked,
        "{report:?}"
    );

    // Every event from the first keyed one on relabelled unkeyed, the hashes recomputed.
    let first_keyed = all_events(&env)
        .await
        .iter()
        .find(|r| r.chain_key_id.is_some())
        .map(|r| r.seq)
        .unwrap_or_else(|| panic!("keyed events were written"));
    assert!(first_keyed >= from);
    env.store.rewrite_audit(relabel_unkeyed_from(first_keyed));
    // Without the required point nothing shows the trail was ever keyed.
    let lax = env
        .manager
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(lax.links_verify(), "{lax:?}");
    assert_eq!(lax.keyed, 0);
    let report = strict
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        report.downgraded,
        Some(first_keyed),
        "an all-unkeyed relabelling past the required point verifies: {report:?}"
    );
    assert!(!report.is_intact(), "{report:?}");
    // Required from a later point only, the relabelled events before it are not judged.
    let later = all_events(&env).await.last().map_or(0, |r| r.seq) + 1;
    let report = env
        .sibling(|b| b.audit_keys(keys).audit_keys_required_from(later))
        .verify_audit_chain(None, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_intact(), "{report:?}");
}
