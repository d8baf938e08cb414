//! Sender-constrained tokens (DPoP): a bound token validates only with a proof by its key, an
//! unbound one never with a proof, each proof once across every manager sharing the store;
//! derived tokens and rotation keep the binding.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use token_core::{
    Context, DeriveRequest, Error, IssueRequest, KeyThumbprint, ProofOfPossession, ValidationError,
};

use crate::Fixture;
use crate::env::{TestEnv, scopes_of};

use super::support::{HOUR, stored};

/// This file's cases, the one list of them (see `validate.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_binding {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            bound_token_needs_a_proof_by_its_key,
            proof_is_accepted_once_across_managers,
            concurrent_replays_of_one_proof_are_accepted_once,
            binding_is_kept_by_derived_tokens_and_rotation,
            expired_proof_claims_are_swept,
        }
    };
}

const KEY_A: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
const KEY_B: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn key(text: &str) -> KeyThumbprint {
    text.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn proof(env: &TestEnv, jkt: &str, jti: &str) -> ProofOfPossession {
    ProofOfPossession::new(key(jkt), jti, env.clock_now() + time::Duration::seconds(60))
}

pub async fn bound_token_needs_a_proof_by_its_key(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let bound = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).bind_to_key(key(KEY_A)))
        .await;
    let token = bound.token.expose_secret();
    assert_eq!(
        stored(&env, bound.token.id()).await.dpop_jkt,
        Some(key(KEY_A))
    );
    let ctx = Context::new();
    let as_bearer = env.manager.validate(token, &[]).await.err();
    assert!(
        matches!(as_bearer, Some(ValidationError::ProofRequired)),
        "{as_bearer:?}"
    );
    let other_key = env
        .manager
        .validate_with_proof(token, &[], &ctx, &proof(&env, KEY_B, "j-1"))
        .await
        .err();
    assert!(
        matches!(other_key, Some(ValidationError::ProofKeyMismatch)),
        "{other_key:?}"
    );
    env.manager
        .validate_with_proof(token, &[], &ctx, &proof(&env, KEY_A, "j-2"))
        .await
        .unwrap_or_else(|e| panic!("a proof by the bound key: {e}"));

    let plain = env.issue("u", "a").await;
    let with_proof = env
        .manager
        .validate_with_proof(
            plain.token.expose_secret(),
            &[],
            &ctx,
            &proof(&env, KEY_A, "j-3"),
        )
        .await
        .err();
    assert!(
        matches!(with_proof, Some(ValidationError::NotBound)),
        "{with_proof:?}"
    );
    for refusal in [as_bearer, other_key, with_proof].into_iter().flatten() {
        assert_eq!(refusal.class(), token_core::ErrorClass::InvalidToken);
    }
}

pub async fn proof_is_accepted_once_across_managers(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let bound = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).bind_to_key(key(KEY_A)))
        .await;
    let token = bound.token.expose_secret();
    let other = env.sibling(|b| b);
    let once = proof(&env, KEY_A, "replayed-jti");
    env.manager
        .validate_with_proof(token, &[], &Context::new(), &once)
        .await
        .unwrap_or_else(|e| panic!("first use: {e}"));
    let here = env
        .manager
        .validate_with_proof(token, &[], &Context::new(), &once)
        .await
        .err();
    assert!(
        matches!(here, Some(ValidationError::ProofReplayed)),
        "{here:?}"
    );
    let there = other
        .validate_with_proof(token, &[], &Context::new(), &once)
        .await
        .err();
    assert!(
        matches!(there, Some(ValidationError::ProofReplayed)),
        "another manager on the same store accepted a replay: {there:?}"
    );
    // A refused token never claims its proof: the proof stays usable for a valid request.
    let fresh = proof(&env, KEY_A, "fresh-jti");
    let unbound = env.issue("u", "a").await;
    assert!(
        env.manager
            .validate_with_proof(unbound.token.expose_secret(), &[], &Context::new(), &fresh)
            .await
            .is_err()
    );
    other
        .validate_with_proof(token, &[], &Context::new(), &fresh)
        .await
        .unwrap_or_else(|e| panic!("a proof refused with another token was claimed: {e}"));
}

pub async fn concurrent_replays_of_one_proof_are_accepted_once(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let bound = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).bind_to_key(key(KEY_A)))
        .await;
    let token = bound.token.expose_secret().to_owned();
    let one = proof(&env, KEY_A, "one-proof");
    let accepted = Arc::new(AtomicUsize::new(0));
    let managers = [env.manager.clone(), env.sibling(|b| b)];
    let mut tasks = Vec::new();
    for task in 0..64 {
        let manager = managers[task % 2].clone();
        let (token, one, accepted) = (token.clone(), one.clone(), Arc::clone(&accepted));
        tasks.push(tokio::spawn(async move {
            match manager
                .validate_with_proof(&token, &[], &Context::new(), &one)
                .await
            {
                Ok(_) => {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                Err(ValidationError::ProofReplayed) => {}
                Err(other) => panic!("unexpected refusal: {other}"),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one proof accepted more than once"
    );
}

pub async fn binding_is_kept_by_derived_tokens_and_rotation(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let bound = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).bind_to_key(key(KEY_A)))
        .await;
    let child = env
        .manager
        .derive(bound.token.id(), DeriveRequest::new(scopes_of("a")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        child.record.dpop_jkt,
        Some(key(KEY_A)),
        "a child keeps the binding"
    );
    let rebound = env
        .manager
        .derive(
            bound.token.id(),
            DeriveRequest::new(scopes_of("a")).bind_to_key(key(KEY_B)),
        )
        .await;
    assert!(
        matches!(
            rebound,
            Err(Error::InvalidRequest {
                field: "dpop_jkt",
                ..
            })
        ),
        "{rebound:?}"
    );
    let successor = env
        .manager
        .rotate(bound.token.id(), HOUR)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        stored(&env, successor.token.id()).await.dpop_jkt,
        Some(key(KEY_A))
    );
    // An unbound parent may have a bound child (that only narrows who can use it).
    let plain = env.issue("u", "a").await;
    let narrowed = env
        .manager
        .derive(
            plain.token.id(),
            DeriveRequest::new(scopes_of("a")).bind_to_key(key(KEY_B)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(narrowed.record.dpop_jkt, Some(key(KEY_B)));
}

pub async fn expired_proof_claims_are_swept(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let bound = env
        .issue_with(IssueRequest::new("u", scopes_of("a")).bind_to_key(key(KEY_A)))
        .await;
    env.manager
        .validate_with_proof(
            bound.token.expose_secret(),
            &[],
            &Context::new(),
            &proof(&env, KEY_A, "swept"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let kept = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        kept.proof_claims_purged, 0,
        "a claim is kept while a replay could pass"
    );
    env.advance(2 * HOUR);
    let report = env.manager.sweep().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.proof_claims_purged, 1);
}
