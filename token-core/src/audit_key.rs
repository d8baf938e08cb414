//! Keys for a keyed audit chain.
//!
//! The unkeyed chain ([`chain_hash`](crate::audit::chain_hash)) detects an edited, inserted or
//! deleted event only until someone recomputes the hashes after it, and anyone who can write to
//! the database can. Keyed by an [`AuditKey`] held outside the database, each link is
//! `blake3::keyed_hash(key, prev ‖ key id ‖ canonical bytes)`: without the key a writer cannot
//! produce a link that verifies. Each stored event names the key that chained it
//! ([`AuditRecord::chain_key_id`](crate::AuditRecord::chain_key_id)), so an [`AuditKeyring`]
//! rotates like the hashing [`Keyring`](crate::Keyring): add a key, make it current, keep the
//! old one for verification.
//!
//! The store computes the hash inside its append transaction, so it needs the keyring too (for
//! example `MemoryStore::with_audit_keys`), as does the verifier
//! ([`ManagerBuilder::audit_keys`](crate::ManagerBuilder::audit_keys)).
//!
//! ```
//! use token_core::{AuditKey, AuditKeyring, KeyId};
//! let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [7; 32]))
//!     .with_key(AuditKey::new(KeyId::new(2), [8; 32]))
//!     .with_current(KeyId::new(2))?;
//! assert_eq!(keys.current_id(), KeyId::new(2));
//! assert!(!format!("{keys:?}").contains('7'));
//! # Ok::<(), token_core::KeyringError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

use crate::audit::{AuditEvent, AuditHash};
use crate::format::{RandomnessError, fill_random};
use crate::keyring::{KeyId, KeyringError};

/// A 256-bit audit chain key and its id. The key bytes are zeroized on drop and never printed.
///
/// ```
/// use token_core::{AuditKey, KeyId};
/// let key = AuditKey::new(KeyId::new(1), [42; 32]);
/// assert_eq!(key.id(), KeyId::new(1));
/// assert!(!format!("{key:?}").contains("42"));
/// ```
#[derive(Clone)]
pub struct AuditKey {
    id: KeyId,
    key: Arc<Zeroizing<[u8; 32]>>,
}

impl AuditKey {
    /// A key from 32 bytes of secret material (load them from your secret manager, not from the
    /// database the trail lives in). The argument is a copy: it is wiped here once stored.
    pub fn new(id: KeyId, mut key: [u8; 32]) -> Self {
        let mut slot = Arc::new(Zeroizing::new([0u8; 32]));
        Arc::make_mut(&mut slot).copy_from_slice(&key);
        key.zeroize();
        Self { id, key: slot }
    }

    /// A fresh random key. Events chained with it cannot be verified once it is lost: persist it
    /// outside the database.
    pub fn generate(id: KeyId) -> Result<Self, RandomnessError> {
        let mut slot = Arc::new(Zeroizing::new([0u8; 32]));
        fill_random(&mut **Arc::make_mut(&mut slot))?;
        Ok(Self { id, key: slot })
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn link(&self, prev: &AuditHash, seq: u64, event: &AuditEvent) -> AuditHash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(prev.as_bytes());
        // The id is covered so a link cannot be relabelled to another key.
        hasher.update(&self.id.get().to_be_bytes());
        hasher.update(&event.canonical_bytes(seq));
        let hash = AuditHash::from_bytes(*hasher.finalize().as_bytes());
        hasher.zeroize();
        hash
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A set of audit chain keys, one of which is current (new events are chained with it).
#[derive(Clone, Debug)]
pub struct AuditKeyring {
    current: KeyId,
    keys: BTreeMap<KeyId, AuditKey>,
}

impl AuditKeyring {
    /// A keyring whose only (and current) key is `key`.
    pub fn new(key: AuditKey) -> Self {
        let current = key.id;
        Self {
            current,
            keys: BTreeMap::from([(current, key)]),
        }
    }

    /// Adds a key (replacing one with the same id) without making it current.
    pub fn with_key(mut self, key: AuditKey) -> Self {
        self.keys.insert(key.id, key);
        self
    }

    /// Makes the key `id` current.
    pub fn with_current(mut self, id: KeyId) -> Result<Self, KeyringError> {
        if !self.keys.contains_key(&id) {
            return Err(KeyringError::UnknownKey(id));
        }
        self.current = id;
        Ok(self)
    }

    /// The id of the current key.
    pub fn current_id(&self) -> KeyId {
        self.current
    }

    /// Whether the keyring holds `id`.
    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    /// Ids of all keys, in ascending order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// The link of event `seq` after `prev`, chained with the current key: what a store writes
    /// (the hash, and the key id into `chain_key_id`).
    pub fn chain(&self, prev: &AuditHash, seq: u64, event: &AuditEvent) -> (KeyId, AuditHash) {
        // `current` is always a member: the constructor and `with_current` guarantee it.
        match self.keys.get(&self.current) {
            Some(key) => (key.id, key.link(prev, seq, event)),
            None => unreachable!("the current audit key is always in the keyring"),
        }
    }

    /// The link of event `seq` after `prev` under key `id`, or `None` when the keyring lacks it.
    pub fn link(
        &self,
        id: KeyId,
        prev: &AuditHash,
        seq: u64,
        event: &AuditEvent,
    ) -> Option<AuditHash> {
        self.keys.get(&id).map(|key| key.link(prev, seq, event))
    }
}

/// The link of event `seq` as a store appends it: keyed with the current key of `keys` when the
/// host configured audit keys, else [`chain_hash`](crate::audit::chain_hash). Returns the key id
/// to store in `chain_key_id` (`None` for an unkeyed link).
pub fn append_link(
    keys: Option<&AuditKeyring>,
    prev: &AuditHash,
    seq: u64,
    event: &AuditEvent,
) -> (Option<KeyId>, AuditHash) {
    match keys {
        Some(keys) => {
            let (id, hash) = keys.chain(prev, seq, event);
            (Some(id), hash)
        }
        None => (None, crate::audit::chain_hash(prev, seq, event)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditKind;
    use crate::audit::chain_hash;

    #[test]
    fn keyed_link_differs_by_key_and_from_the_unkeyed_one() {
        let event = AuditEvent::new(AuditKind::Issued, time::OffsetDateTime::UNIX_EPOCH);
        let a = AuditKeyring::new(AuditKey::new(KeyId::new(1), [1; 32]));
        let b = AuditKeyring::new(AuditKey::new(KeyId::new(1), [2; 32]));
        let relabelled = AuditKeyring::new(AuditKey::new(KeyId::new(2), [1; 32]));
        let (id, h) = a.chain(&AuditHash::GENESIS, 1, &event);
        assert_eq!(id, KeyId::new(1));
        assert_ne!(h, chain_hash(&AuditHash::GENESIS, 1, &event));
        assert_ne!(h, b.chain(&AuditHash::GENESIS, 1, &event).1);
        assert_ne!(h, relabelled.chain(&AuditHash::GENESIS, 1, &event).1);
        assert_eq!(a.link(id, &AuditHash::GENESIS, 1, &event), Some(h));
        assert_eq!(a.link(KeyId::new(9), &AuditHash::GENESIS, 1, &event), None);
        assert_eq!(
            append_link(None, &AuditHash::GENESIS, 1, &event),
            (None, chain_hash(&AuditHash::GENESIS, 1, &event))
        );
    }
}
