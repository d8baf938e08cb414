//! Hash-key rotation: add a key and make it current, retire an old one once nothing live uses it.

use std::sync::{Arc, PoisonError};

use super::TokenManager;
use crate::error::Error;
use crate::keyring::{HashKey, KeyId, KeyringError};
use crate::store::CountLiveWithKey;

impl TokenManager {
    /// Adds `key` and makes it current: new tokens are hashed with it, existing tokens keep
    /// validating under their own key.
    pub fn rotate_hash_key(&self, key: HashKey) -> Result<(), Error> {
        let mut guard = self
            .inner
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let id = key.id();
        if guard.contains(id) {
            // Replacing key material under an id in use would silently invalidate its tokens.
            return Err(KeyringError::DuplicateKey(id).into());
        }
        let next = (**guard).clone().with_key(key).with_current(id)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// Removes a non-current key, refused while live (unrevoked, unexpired) tokens still use it.
    ///
    /// Issues, derivations and rotations of this manager in flight finish first (the count sees
    /// them), and new ones wait for the retirement, so a token hashed with the key can never
    /// land after the count. Other instances sharing the store have their own keyrings: make the
    /// new key current on every instance ([`rotate_hash_key`](Self::rotate_hash_key)) before
    /// retiring the old one anywhere, or they keep issuing under it.
    pub async fn retire_hash_key(&self, key: KeyId) -> Result<(), Error> {
        let _quiet = self.inner.hashing.write().await;
        self.keyring().without(key)?;
        let records = self
            .inner
            .store
            .count_live_with_key(&CountLiveWithKey::new(key, self.now()))
            .await?;
        if records > 0 {
            return Err(KeyringError::KeyInUse { key, records }.into());
        }
        let mut guard = self
            .inner
            .keyring
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = guard.without(key)?;
        *guard = Arc::new(next);
        Ok(())
    }

    /// The current hashing key id.
    pub fn current_hash_key(&self) -> KeyId {
        self.keyring().current_id()
    }
}
