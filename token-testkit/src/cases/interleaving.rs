//! Two managers on one store running random operations at the same time (not taking turns, as
//! the model's `Switch` does): the model cannot say what each step answers, so the case checks
//! the invariants every interleaving must keep, from what each task observed.
//!
//! - **No use beyond `max_uses`**: the validations that passed, summed over both managers, stay
//!   within each token's limit.
//! - **Nothing live after its revoke returned**: a validation that started after a family's
//!   revocation returned fails (on either manager; with a validation cache, on the manager that
//!   revoked: another instance's cache follows the feed, which may lag, as documented).
//! - **No child outliving its family's revocation**: once both tasks are done, every token of a
//!   revoked family, including those derived or rotated while the revocation ran, is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use token_core::{DeriveRequest, IssueRequest, RevokeSelector, TokenId, TokenManager};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::HOUR;

/// This file's cases, the one list of them (see `validate.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_interleaving {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            two_managers_at_once_keep_the_invariants,
        }
    };
}

/// A token either task created (or the setup issued): its string and family.
#[derive(Clone)]
struct Known {
    secret: Arc<str>,
    family: TokenId,
}

/// What both tasks share and record.
#[derive(Default)]
struct Shared {
    tokens: Mutex<Vec<(TokenId, Known)>>,
    /// Validations that passed, per token.
    passed: Mutex<BTreeMap<TokenId, u64>>,
    /// Bumped when a revocation returns; a family revoked at epoch `e` must refuse every
    /// validation that starts at `e` or later.
    epoch: AtomicU64,
    /// Family → (epoch its revocation returned, the task that revoked it).
    revoked: Mutex<BTreeMap<TokenId, (u64, usize)>>,
    /// Validations that passed: (token, family, epoch when started, task).
    successes: Mutex<Vec<(TokenId, TokenId, u64, usize)>>,
}

/// xorshift64*: a task's own reproducible sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pick(shared: &Shared, rng: &mut Rng) -> Option<(TokenId, Known)> {
    let tokens = lock(&shared.tokens);
    (!tokens.is_empty()).then(|| tokens[rng.below(tokens.len())].clone())
}

/// One task: `steps` random validations, derivations, rotations and family revocations.
async fn task(manager: TokenManager, shared: Arc<Shared>, who: usize, seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    for _ in 0..steps {
        let Some((id, known)) = pick(&shared, &mut rng) else {
            continue;
        };
        match rng.below(10) {
            0..=5 => {
                let started = shared.epoch.load(Ordering::SeqCst);
                if manager.validate(&known.secret, &[]).await.is_ok() {
                    *lock(&shared.passed).entry(id).or_default() += 1;
                    lock(&shared.successes).push((id, known.family, started, who));
                }
            }
            6 | 7 => {
                if let Ok(child) = manager
                    .derive(id, DeriveRequest::new(scopes_of("a")).max_uses(3))
                    .await
                {
                    let known = Known {
                        secret: child.token.expose_secret().into(),
                        family: child.record.family_id,
                    };
                    lock(&shared.tokens).push((child.token.id(), known));
                }
            }
            8 => {
                if let Ok(successor) = manager.rotate(id, std::time::Duration::ZERO).await {
                    let known = Known {
                        secret: successor.token.expose_secret().into(),
                        family: successor.record.family_id,
                    };
                    lock(&shared.tokens).push((successor.token.id(), known));
                }
            }
            _ => {
                if manager
                    .revoke(RevokeSelector::Family(known.family), "interleaving")
                    .await
                    .is_ok()
                {
                    let at = shared.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                    lock(&shared.revoked)
                        .entry(known.family)
                        .or_insert((at, who));
                }
            }
        }
    }
}

/// Rounds of the case, each on a fresh store with its own seeds: a third of
/// `TOKEN_MODEL_CASES` (default 24, so 8), the long run's knob too.
fn rounds() -> u64 {
    std::env::var("TOKEN_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(8, |n| (n / 3).max(1))
}

pub async fn two_managers_at_once_keep_the_invariants(f: &dyn Fixture) {
    for round in 0..rounds() {
        one_round(f, round).await;
    }
}

async fn one_round(f: &dyn Fixture, round: u64) {
    let env = TestEnv::new(f).await;
    let other = env.sibling(|b| b);
    let shared = Arc::new(Shared::default());
    for i in 0..6 {
        let issued = env
            .issue_with(
                IssueRequest::new(format!("s{}", i % 2), scopes_of("a b"))
                    .ttl(HOUR)
                    .max_uses(8),
            )
            .await;
        let known = Known {
            secret: issued.token.expose_secret().into(),
            family: issued.record.family_id,
        };
        lock(&shared.tokens).push((issued.token.id(), known));
    }
    let tasks = [
        tokio::spawn(task(
            env.manager.clone(),
            Arc::clone(&shared),
            0,
            seed(round, 0),
            120,
        )),
        tokio::spawn(task(
            other.clone(),
            Arc::clone(&shared),
            1,
            seed(round, 1),
            120,
        )),
    ];
    for handle in tasks {
        handle.await.unwrap_or_else(|e| panic!("task: {e}"));
    }

    // No use beyond max_uses (a successor holds what its predecessor had left, so each token's
    // own limit bounds its own successes).
    let passed = lock(&shared.passed).clone();
    for (id, count) in &passed {
        let record = env
            .manager
            .inspect(*id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("token {id} vanished"));
        let max = record
            .max_uses
            .unwrap_or_else(|| panic!("every token here is use-limited"));
        assert!(
            *count <= max,
            "token {id} passed {count} validations with max_uses {max}"
        );
    }

    // Nothing live after its revoke returned.
    let revoked = lock(&shared.revoked).clone();
    for (id, family, started, who) in lock(&shared.successes).iter() {
        if let Some((at, revoker)) = revoked.get(family) {
            let visible = env.cache.is_none() || revoker == who;
            assert!(
                !(visible && started >= at),
                "token {id} passed a validation that started after its family {family} was revoked"
            );
        }
    }

    // No child outliving its family's revocation, on either manager.
    let families: BTreeSet<TokenId> = revoked.keys().copied().collect();
    for manager in [&env.manager, &other] {
        manager
            .flush_usage()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let tokens = lock(&shared.tokens).clone();
    for (id, known) in tokens {
        if !families.contains(&known.family) {
            continue;
        }
        let record = env
            .manager
            .inspect(id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("token {id} vanished"));
        assert!(
            record.is_revoked() || record.rotated_to.is_some(),
            "token {id} of revoked family {} is neither revoked nor replaced",
            known.family
        );
        assert!(
            env.manager.validate(&known.secret, &[]).await.is_err(),
            "token {id} of a revoked family still validates"
        );
    }
    assert!(
        !passed.is_empty(),
        "round {round} validated nothing: the sequences test nothing"
    );
}

/// A task's seed in a round (never 0, which xorshift would keep).
fn seed(round: u64, task: u64) -> u64 {
    (round * 2 + task + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}
