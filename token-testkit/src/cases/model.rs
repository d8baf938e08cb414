//! The model-based case: random sequences of operations (issue, with credits that refill or
//! not, derive, rotate, revoke by token, family and subject, suspend, resume, narrow by update,
//! validate, the clock, restarting the manager, and interleaving two managers on one store) run
//! against the [reference model](crate::model) and the store; every step's answer must be the
//! model's. A failing sequence is shrunk (proptest's value tree, driven here because the steps
//! are async) and reported with the minimal sequence, to be pinned as a regression below.
//!
//! `TOKEN_MODEL_CASES` sets how many sequences run per store (default 24, so CI stays within
//! seconds; a long run is e.g. `TOKEN_MODEL_CASES=5000 cargo test -p token-store-sqlite model`).

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, TestRunner};
use token_core::{
    DeriveRequest, Error, IssueRequest, RevokeSelector, TokenManager, TokenUpdate, UseRefill,
};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};
use crate::model::{Answer, Ids, Model, Op, SCOPES, scopes_of_mask};

/// This file's cases, the one list of them (see `validate.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_model {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            random_sequences_agree_with_the_model,
            regression_resume_after_rotation_of_a_suspended_parent,
            pinned_credits_refill_and_narrowing_agree_with_the_model,
        }
    };
}

fn op() -> impl Strategy<Value = Op> {
    // Few distinct tokens, so sequences come back to the same ones (used up, refilled, narrowed).
    let index = 0u8..4;
    let mask = 1u8..4;
    let uses = proptest::option::of(1u8..4);
    prop_oneof![
        3 => (0u8..3, mask.clone(), uses.clone(), any::<bool>())
            .prop_map(|(subject, mask, uses, refill)| Op::Issue { subject, mask, uses, refill }),
        2 => (index.clone(), mask.clone(), uses).prop_map(|(parent, mask, uses)| Op::Derive { parent, mask, uses }),
        1 => (index.clone(), mask).prop_map(|(token, mask)| Op::Narrow { token, mask }),
        1 => index.clone().prop_map(|token| Op::Rotate { token }),
        1 => (index.clone(), 0u8..3).prop_map(|(token, kind)| Op::Revoke { token, kind }),
        1 => index.clone().prop_map(|token| Op::Suspend { token }),
        1 => index.clone().prop_map(|token| Op::Resume { token }),
        6 => (index, 0u8..3).prop_map(|(token, scope)| Op::Validate { token, scope }),
        // Short steps cross refill boundaries (hourly) one at a time; long ones skip several.
        1 => (1u16..90).prop_map(|minutes| Op::Advance { minutes }),
        1 => (1u16..600).prop_map(|minutes| Op::Advance { minutes }),
        1 => Just(Op::Restart),
        2 => Just(Op::Switch),
    ]
}

fn sequences() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..30)
}

fn cases() -> u32 {
    std::env::var("TOKEN_MODEL_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24)
}

/// Runs `ops` on a fresh store; `Err` names the first step where the library and the model
/// disagree.
async fn run(f: &dyn Fixture, ops: &[Op]) -> Result<(), String> {
    let env = TestEnv::new(f).await;
    let mut manager = env.manager.clone();
    // The second instance on the same store, for `Switch`.
    let mut other = env.sibling(|b| b);
    let mut model = Model::default();
    let mut ids = Ids::default();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op);
        if *op == Op::Switch && env.cache.is_none() {
            std::mem::swap(&mut manager, &mut other);
            continue;
        }
        let got = library(&env, &mut manager, &mut ids, &model, op).await;
        if got != expected {
            return Err(format!(
                "step {step} {op:?}: the library answered {got:?}, the model {expected:?}"
            ));
        }
    }
    Ok(())
}

/// The library's answer to `op`, in the model's terms. `model` is already updated by `op`
/// (for the indices of tokens it names).
async fn library(
    env: &TestEnv,
    manager: &mut TokenManager,
    ids: &mut Ids,
    model: &Model,
    op: &Op,
) -> Answer {
    let id_of = |index: u8| ids.tokens[usize::from(index) % ids.tokens.len()].0;
    let changed = |result: Result<Vec<token_core::TokenId>, Error>| match result {
        Ok(changed) => Answer::Changed(
            changed
                .iter()
                .filter_map(|id| ids.index.get(id).copied())
                .collect::<BTreeSet<usize>>(),
        ),
        Err(_) => Answer::Refused,
    };
    match *op {
        Op::Issue {
            subject,
            mask,
            uses,
            refill,
        } => {
            let mut request =
                IssueRequest::new(format!("s{subject}"), scopes_of(&scopes_of_mask(mask)));
            if let Some(uses) = uses {
                request = request.max_uses(u64::from(uses));
                if refill {
                    let hourly = UseRefill::every(Duration::from_secs(3600))
                        .unwrap_or_else(|e| panic!("{e}"));
                    request = request.refill_uses(hourly);
                }
            }
            match manager.issue(request).await {
                Ok(issued) => Answer::Created(
                    ids.push(issued.token.id(), issued.token.expose_secret().to_owned()),
                ),
                Err(_) => Answer::Refused,
            }
        }
        Op::Derive { parent, mask, uses } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            let mut request = DeriveRequest::new(scopes_of(&scopes_of_mask(mask)));
            if let Some(uses) = uses {
                request = request.max_uses(u64::from(uses));
            }
            match manager.derive(id_of(parent), request).await {
                Ok(issued) => Answer::Created(
                    ids.push(issued.token.id(), issued.token.expose_secret().to_owned()),
                ),
                Err(_) => Answer::Refused,
            }
        }
        Op::Rotate { token } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            match manager.rotate(id_of(token), Duration::ZERO).await {
                Ok(issued) => Answer::Created(
                    ids.push(issued.token.id(), issued.token.expose_secret().to_owned()),
                ),
                Err(_) => Answer::Refused,
            }
        }
        Op::Revoke { token, kind } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            let id = id_of(token);
            let selector = match kind % 3 {
                0 => RevokeSelector::Token(id),
                1 => RevokeSelector::Family(id),
                _ => {
                    let index = usize::from(token) % ids.tokens.len();
                    RevokeSelector::Subject(format!("s{}", model.tokens[index].subject))
                }
            };
            changed(manager.revoke(selector, "model").await)
        }
        Op::Suspend { token } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            changed(
                manager
                    .suspend(RevokeSelector::Token(id_of(token)), "model")
                    .await,
            )
        }
        Op::Resume { token } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            changed(
                manager
                    .resume(RevokeSelector::Token(id_of(token)), "model")
                    .await,
            )
        }
        Op::Validate { token, scope } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            let secret = ids.tokens[usize::from(token) % ids.tokens.len()].1.clone();
            let required: Vec<token_core::Scope> = SCOPES
                .get(usize::from(scope))
                .map(|s| s.parse().unwrap_or_else(|e| panic!("{e}")))
                .into_iter()
                .collect();
            Answer::Validated(
                manager
                    .validate(&secret, &required)
                    .await
                    .err()
                    .map(|e| e.reason_code()),
            )
        }
        Op::Narrow { token, mask } => {
            if ids.tokens.is_empty() {
                return Answer::Nothing;
            }
            let update = TokenUpdate::new().scopes(scopes_of(&scopes_of_mask(mask)));
            match manager.update(id_of(token), update).await {
                Ok(_) => Answer::Updated,
                Err(_) => Answer::Refused,
            }
        }
        Op::Advance { minutes } => {
            env.advance(Duration::from_secs(u64::from(minutes) * 60));
            Answer::Nothing
        }
        Op::Restart | Op::Switch => {
            manager
                .flush_usage()
                .await
                .unwrap_or_else(|e| panic!("flush before restart: {e}"));
            *manager = env.sibling(|b| b);
            Answer::Nothing
        }
    }
}

/// Random sequences on this store agree with the model at every step; a disagreement is shrunk
/// to a minimal sequence before the test fails with it.
pub async fn random_sequences_agree_with_the_model(f: &dyn Fixture) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        ..Config::default()
    });
    let strategy = sequences();
    for _ in 0..cases() {
        let mut tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("{e}"));
        let Err(first) = run(f, &tree.current()).await else {
            continue;
        };
        // Shrink: simplify while the failure persists, step back when it disappears.
        let (mut minimal, mut reason) = (tree.current(), first);
        for _ in 0..256 {
            if !tree.simplify() {
                break;
            }
            match run(f, &tree.current()).await {
                Err(why) => (minimal, reason) = (tree.current(), why),
                Ok(()) => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
        panic!(
            "the library disagrees with the model: {reason}\nminimal sequence ({} steps): {minimal:#?}",
            minimal.len()
        );
    }
}

/// Pinned: a suspended parent rotated is refused (not active), and resuming the family's root
/// then resumes only what is suspended and not ended.
pub async fn regression_resume_after_rotation_of_a_suspended_parent(f: &dyn Fixture) {
    let ops = [
        Op::Issue {
            subject: 0,
            mask: 3,
            uses: None,
            refill: false,
        },
        Op::Derive {
            parent: 0,
            mask: 1,
            uses: Some(2),
        },
        Op::Suspend { token: 0 },
        Op::Rotate { token: 0 },
        Op::Validate { token: 1, scope: 0 },
        Op::Resume { token: 0 },
        Op::Validate { token: 1, scope: 0 },
        Op::Rotate { token: 1 },
        Op::Validate { token: 1, scope: 0 },
        Op::Validate { token: 2, scope: 0 },
        Op::Revoke { token: 0, kind: 1 },
        Op::Validate { token: 2, scope: 1 },
    ];
    if let Err(why) = run(f, &ops).await {
        panic!("{why}");
    }
}

/// Pinned: credits that refill come back after the hour (once, whatever the idle time), a
/// derived token inherits the refill, rotation carries the period's uses, and narrowing a
/// parent narrows its child until the child has nothing left.
pub async fn pinned_credits_refill_and_narrowing_agree_with_the_model(f: &dyn Fixture) {
    let ops = [
        Op::Issue {
            subject: 0,
            mask: 3,
            uses: Some(2),
            refill: true,
        },
        Op::Validate { token: 0, scope: 0 },
        Op::Derive {
            parent: 0,
            mask: 3,
            uses: None,
        },
        Op::Validate { token: 0, scope: 1 },
        Op::Validate { token: 0, scope: 1 },
        Op::Advance { minutes: 70 },
        Op::Validate { token: 0, scope: 0 },
        Op::Rotate { token: 0 },
        Op::Validate { token: 2, scope: 0 },
        Op::Validate { token: 2, scope: 0 },
        Op::Validate { token: 1, scope: 0 },
        Op::Advance { minutes: 200 },
        Op::Validate { token: 2, scope: 0 },
        Op::Narrow { token: 2, mask: 1 },
        Op::Validate { token: 1, scope: 1 },
        Op::Validate { token: 1, scope: 0 },
        Op::Narrow { token: 1, mask: 3 },
        Op::Narrow { token: 2, mask: 2 },
        Op::Narrow { token: 2, mask: 1 },
        Op::Validate { token: 1, scope: 0 },
    ];
    if let Err(why) = run(f, &ops).await {
        panic!("{why}");
    }
}
