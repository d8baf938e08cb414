//! Hash keys: rotating the hashing key keeps old tokens valid; retiring a key still in use (or
//! the current one) and reusing a key id are refused.

use token_core::{Error, HashKey, KeyId, KeyringError, RevokeSelector};

use crate::Fixture;
use crate::env::{TestEnv, key};

use super::support::{assert_valid, revoke};

/// This file's cases, the one list of them: expands to `$callback! { $args case, ... }`, which
/// is how `conformance_tests!` makes a test of each and `cases` re-exports them.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_keys {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)*! { $($args)*
            key_rotation_keeps_old_tokens_valid,
            retiring_a_key_in_use_is_refused,
            replacing_a_key_id_is_refused,
        }
    };
}

pub async fn key_rotation_keeps_old_tokens_valid(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    assert_eq!(old.record.hash_key_id, KeyId::new(1));
    env.manager
        .rotate_hash_key(key(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let new = env.issue("u", "a").await;
    assert_eq!(new.record.hash_key_id, KeyId::new(2));
    assert_valid(&env, old.token.expose_secret()).await;
    assert_valid(&env, new.token.expose_secret()).await;
}

pub async fn retiring_a_key_in_use_is_refused(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let old = env.issue("u", "a").await;
    env.manager
        .rotate_hash_key(key(2))
        .unwrap_or_else(|e| panic!("{e}"));
    let err = env.manager.retire_hash_key(KeyId::new(1)).await.err();
    assert!(
        matches!(
            err,
            Some(Error::Keyring(KeyringError::KeyInUse { records: 1, .. }))
        ),
        "{err:?}"
    );
    let err = env.manager.retire_hash_key(KeyId::new(2)).await.err();
    assert!(matches!(
        err,
        Some(Error::Keyring(KeyringError::RetiringCurrentKey(_)))
    ));
    assert_valid(&env, old.token.expose_secret()).await;
    revoke(&env, RevokeSelector::Token(old.token.id())).await;
    env.manager
        .retire_hash_key(KeyId::new(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

pub async fn replacing_a_key_id_is_refused(f: &dyn Fixture) {
    let env = TestEnv::new(f).await;
    let issued = env.issue("u", "a").await;
    let err = env
        .manager
        .rotate_hash_key(HashKey::new(KeyId::new(1), [0xee; 32]))
        .err();
    assert!(
        matches!(err, Some(Error::Keyring(KeyringError::DuplicateKey(_)))),
        "{err:?}"
    );
    assert_valid(&env, issued.token.expose_secret()).await;
}
