//! Keyed hashing of token secrets, with key rotation.
//!
//! Stores never see a secret: they keep `blake3::keyed_hash(key, id ‖ secret)` and the id of the key
//! that made it. A fast keyed hash is the right tool for 256-bit random secrets (NIST SP 800-63B
//! allows an approved one-way function for secrets of 112 bits or more); a password hash such as
//! Argon2 would only turn validation into a denial-of-service surface. Because the key is secret, a
//! database leak alone does not allow offline guessing either.
//!
//! A [`Keyring`] holds a current key, used for new tokens, and older keys, so a key can be rotated
//! while tokens hashed under an older key keep validating until they expire or are re-issued.
//!
//! ```
//! use token_core::{HashKey, KeyId, Keyring};
//!
//! let old = HashKey::new(KeyId::new(1), [1; 32]);
//! let new = HashKey::new(KeyId::new(2), [2; 32]);
//! let keyring = Keyring::new(old).with_key(new).with_current(KeyId::new(2))?;
//! assert_eq!(keyring.current_id(), KeyId::new(2));
//! assert!(keyring.contains(KeyId::new(1)));
//! # Ok::<(), token_core::KeyringError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::format::{RandomnessError, TokenId, fill_random};

/// Identifies a hashing key. Stored beside every hash so validation uses the key that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(u32);

impl KeyId {
    /// Wraps a numeric key id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {}", self.0)
    }
}

/// A 256-bit hashing key and its id. The key bytes are zeroized on drop and never printed.
///
/// ```
/// use token_core::{HashKey, KeyId};
/// let key = HashKey::new(KeyId::new(1), [42; 32]);
/// assert!(!format!("{key:?}").contains("42"));
/// ```
#[derive(Clone)]
pub struct HashKey {
    id: KeyId,
    key: Arc<Zeroizing<[u8; 32]>>,
    /// Derived from `key` once: fingerprints of presented strings never share the token key.
    fingerprint_key: Arc<Zeroizing<[u8; 32]>>,
}

/// A zeroed key slot on the heap, filled in place so the material is never moved (a moved-from
/// copy would not be wiped).
fn key_slot() -> Arc<Zeroizing<[u8; 32]>> {
    Arc::new(Zeroizing::new([0u8; 32]))
}

impl HashKey {
    /// A key from 32 bytes of secret material (load them from your secret manager). The argument
    /// is a copy: it is wiped here once stored; wipe your own buffer too.
    pub fn new(id: KeyId, mut key: [u8; 32]) -> Self {
        let mut slot = key_slot();
        Arc::make_mut(&mut slot).copy_from_slice(&key);
        key.zeroize();
        Self::from_slot(id, slot)
    }

    /// A fresh random key. Tokens hashed with it stop validating once it is lost, so persist it
    /// (e.g. [`HashKey::to_hex`]) unless the tokens are meant to die with the process.
    pub fn generate(id: KeyId) -> Result<Self, RandomnessError> {
        let mut slot = key_slot();
        fill_random(&mut **Arc::make_mut(&mut slot))?;
        Ok(Self::from_slot(id, slot))
    }

    /// Completes a key whose material is in `key` (a fresh, unshared slot).
    fn from_slot(id: KeyId, key: Arc<Zeroizing<[u8; 32]>>) -> Self {
        let mut fingerprint_key = key_slot();
        let mut derived = blake3::derive_key("token-core fingerprint v1", &**key);
        Arc::make_mut(&mut fingerprint_key).copy_from_slice(&derived);
        derived.zeroize();
        Self {
            id,
            key,
            fingerprint_key,
        }
    }

    /// Parses 64 hexadecimal characters of key material.
    pub fn from_hex(id: KeyId, hex: &str) -> Result<Self, KeyringError> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err(KeyringError::InvalidKeyMaterial {
                problem: "expected 64 hexadecimal characters",
            });
        }
        let mut key = key_slot();
        fn nibble(c: u8) -> Result<u8, KeyringError> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(KeyringError::InvalidKeyMaterial {
                    problem: "character outside 0-9a-fA-F",
                }),
            }
        }
        let bytes = Arc::make_mut(&mut key);
        for (slot, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            if let [high, low] = pair {
                *slot = (nibble(*high)? << 4) | nibble(*low)?;
            }
        }
        Ok(Self::from_slot(id, key))
    }

    /// The key material as 64 lowercase hexadecimal characters, for persisting a generated key.
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(64));
        for byte in self.key.iter() {
            out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
        }
        out
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The keyed hash of `id ‖ secret`. With `wipe`, the hasher's state (which holds the key and
    /// the secret) is zeroized afterwards: done when hashing a newly generated secret, which
    /// exists nowhere else but the token handed out. Validation skips it: the presented secret
    /// is in the caller's request buffer anyway, and wiping the ~2 KiB state would cost more than
    /// the rest of the hash.
    fn hash(&self, id: &TokenId, secret: &[u8; 32], wipe: bool) -> TokenHash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(id.as_bytes());
        hasher.update(secret);
        let hash = TokenHash(hasher.finalize());
        if wipe {
            hasher.zeroize();
        }
        hash
    }

    fn fingerprint(&self, input: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.fingerprint_key);
        hasher.update(input);
        let hash = hasher.finalize();
        hasher.zeroize();
        hash
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The keyed hash of a token's id and secret, as stored. Equality is constant-time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(blake3::Hash);

impl TokenHash {
    /// Rebuilds a hash read from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(blake3::Hash::from_bytes(bytes))
    }

    /// Rebuilds a hash read from storage; `None` unless exactly 32 bytes (a truncated column).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(bytes))
    }

    /// The 32 hash bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not a secret, but nothing is gained by printing it.
        f.write_str("TokenHash(..)")
    }
}

/// Errors from keyring configuration and key lookups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The keyring has no key with this id.
    #[error("{0} is not in the keyring; add it before using or retiring it")]
    UnknownKey(KeyId),
    /// The current key cannot be removed.
    #[error("{0} is the current key; make another key current before retiring it")]
    RetiringCurrentKey(KeyId),
    /// Records still use the key, so removing it would silently invalidate them.
    #[error(
        "{key} still hashes {records} live token(s); revoke or re-issue them before retiring it"
    )]
    KeyInUse {
        /// The key that was to be retired.
        key: KeyId,
        /// How many live records still use it.
        records: u64,
    },
    /// A key with this id is already in the keyring (with possibly different material).
    #[error("{0} is already in the keyring; give a new key a new id")]
    DuplicateKey(KeyId),
    /// Key material could not be parsed.
    #[error("invalid key material: {problem}")]
    InvalidKeyMaterial {
        /// What was wrong.
        problem: &'static str,
    },
}

/// Keys by id, one of them current: the mechanics the hashing [`Keyring`] and the
/// [`AuditKeyring`](crate::AuditKeyring) share. The current key is always a member: the
/// constructor and `set_current` guarantee it, and `remove` refuses to take it out.
#[derive(Clone, Debug)]
pub(crate) struct KeySet<K> {
    current: KeyId,
    keys: BTreeMap<KeyId, K>,
}

impl<K> KeySet<K> {
    pub(crate) fn new(id: KeyId, key: K) -> Self {
        Self {
            current: id,
            keys: BTreeMap::from([(id, key)]),
        }
    }

    pub(crate) fn insert(&mut self, id: KeyId, key: K) {
        self.keys.insert(id, key);
    }

    pub(crate) fn set_current(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if !self.keys.contains_key(&id) {
            return Err(KeyringError::UnknownKey(id));
        }
        self.current = id;
        Ok(())
    }

    pub(crate) fn current_id(&self) -> KeyId {
        self.current
    }

    pub(crate) fn contains(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    pub(crate) fn get(&self, id: KeyId) -> Option<&K> {
        self.keys.get(&id)
    }

    pub(crate) fn current(&self) -> &K {
        match self.keys.get(&self.current) {
            Some(key) => key,
            None => unreachable!("the current key is always in the set"),
        }
    }

    pub(crate) fn remove(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if id == self.current {
            return Err(KeyringError::RetiringCurrentKey(id));
        }
        if self.keys.remove(&id).is_none() {
            return Err(KeyringError::UnknownKey(id));
        }
        Ok(())
    }
}

/// A set of hashing keys, one of which is current.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: KeySet<HashKey>,
}

impl Keyring {
    /// A keyring whose only (and current) key is `key`.
    pub fn new(key: HashKey) -> Self {
        Self {
            keys: KeySet::new(key.id, key),
        }
    }

    /// Adds a key (replacing one with the same id) without making it current.
    pub fn with_key(mut self, key: HashKey) -> Self {
        self.keys.insert(key.id, key);
        self
    }

    /// Makes the key `id` current: new tokens are hashed with it.
    pub fn with_current(mut self, id: KeyId) -> Result<Self, KeyringError> {
        self.keys.set_current(id)?;
        Ok(self)
    }

    /// The id of the current key.
    pub fn current_id(&self) -> KeyId {
        self.keys.current_id()
    }

    /// Whether the keyring holds `id`.
    pub fn contains(&self, id: KeyId) -> bool {
        self.keys.contains(id)
    }

    /// Ids of all keys, in ascending order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.ids()
    }

    pub(crate) fn without(&self, id: KeyId) -> Result<Self, KeyringError> {
        let mut next = self.clone();
        next.keys.remove(id)?;
        Ok(next)
    }

    fn current_key(&self) -> &HashKey {
        self.keys.current()
    }

    /// Hashes `id ‖ secret` with the current key.
    pub(crate) fn hash_current(&self, id: &TokenId, secret: &[u8; 32]) -> (KeyId, TokenHash) {
        let key = self.current_key();
        (key.id, key.hash(id, secret, true))
    }

    /// Recomputes the hash with key `key_id` and compares in constant time.
    pub(crate) fn verify(
        &self,
        key_id: KeyId,
        id: &TokenId,
        secret: &[u8; 32],
        stored: &TokenHash,
    ) -> Result<bool, KeyringError> {
        let key = self
            .keys
            .get(key_id)
            .ok_or(KeyringError::UnknownKey(key_id))?;
        // blake3::Hash equality is constant-time.
        Ok(key.hash(id, secret, false) == *stored)
    }

    /// A keyed fingerprint of an arbitrary presented string (for auditing unknown tokens without
    /// storing them): the first 16 bytes of a keyed hash, as hex.
    pub(crate) fn fingerprint(&self, input: &[u8]) -> String {
        let hash = self.current_key().fingerprint(input);
        hash.to_hex()
            .as_str()
            .get(..32)
            .unwrap_or_default()
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint is a keyed hash under a subkey derived from the hash key: stable for a key
    /// (so denials coalesce across restarts), different across keys, never the plain BLAKE3 of
    /// the input, and never the token hash key itself. Every constructor derives the same subkey.
    #[test]
    fn fingerprint_is_keyed_under_a_derived_subkey() {
        let material = [9u8; 32];
        let input = b"acme_live_not-a-real-token";
        let subkey = blake3::derive_key("token-core fingerprint v1", &material);
        let expected = blake3::keyed_hash(&subkey, input).to_hex()[..32].to_owned();
        let hex: String = material.iter().map(|b| format!("{b:02x}")).collect();
        for key in [
            HashKey::new(KeyId::new(1), material),
            HashKey::from_hex(KeyId::new(1), &hex).unwrap(),
        ] {
            assert_eq!(Keyring::new(key).fingerprint(input), expected);
        }
        let unkeyed = blake3::hash(input).to_hex()[..32].to_owned();
        let under_token_key = blake3::keyed_hash(&material, input).to_hex()[..32].to_owned();
        assert_ne!(expected, unkeyed);
        assert_ne!(expected, under_token_key);
        let other = Keyring::new(HashKey::new(KeyId::new(1), [8; 32]));
        assert_ne!(other.fingerprint(input), expected);
    }

    #[test]
    fn hash_depends_on_key_id_and_secret() {
        let a = Keyring::new(HashKey::new(KeyId::new(1), [1; 32]));
        let b = Keyring::new(HashKey::new(KeyId::new(1), [2; 32]));
        let id = TokenId::from_bytes([3; 16]);
        let other = TokenId::from_bytes([4; 16]);
        let (_, h1) = a.hash_current(&id, &[5; 32]);
        assert_ne!(h1, b.hash_current(&id, &[5; 32]).1);
        assert_ne!(h1, a.hash_current(&other, &[5; 32]).1);
        assert_ne!(h1, a.hash_current(&id, &[6; 32]).1);
        assert!(a.verify(KeyId::new(1), &id, &[5; 32], &h1).unwrap());
        assert!(!a.verify(KeyId::new(1), &id, &[6; 32], &h1).unwrap());
        assert_eq!(
            a.verify(KeyId::new(9), &id, &[5; 32], &h1),
            Err(KeyringError::UnknownKey(KeyId::new(9)))
        );
    }

    #[test]
    fn old_key_still_verifies_after_rotation() {
        let old = Keyring::new(HashKey::new(KeyId::new(1), [1; 32]));
        let id = TokenId::from_bytes([3; 16]);
        let (kid, hash) = old.hash_current(&id, &[7; 32]);
        let rotated = old
            .with_key(HashKey::new(KeyId::new(2), [2; 32]))
            .with_current(KeyId::new(2))
            .unwrap();
        assert_eq!(rotated.hash_current(&id, &[7; 32]).0, KeyId::new(2));
        assert!(rotated.verify(kid, &id, &[7; 32], &hash).unwrap());
        assert_eq!(
            rotated.without(KeyId::new(2)).unwrap_err(),
            KeyringError::RetiringCurrentKey(KeyId::new(2))
        );
        let retired = rotated.without(KeyId::new(1)).unwrap();
        assert!(retired.verify(kid, &id, &[7; 32], &hash).is_err());
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let key = HashKey::generate(KeyId::new(1)).unwrap();
        let again = HashKey::from_hex(KeyId::new(1), &key.to_hex()).unwrap();
        assert_eq!(*again.key, *key.key);
        assert!(HashKey::from_hex(KeyId::new(1), "abc").is_err());
        assert!(HashKey::from_hex(KeyId::new(1), &"zz".repeat(32)).is_err());
        assert!(HashKey::from_hex(KeyId::new(1), &"é".repeat(32)).is_err());
    }

    #[test]
    fn truncated_hash_is_refused() {
        assert!(TokenHash::from_slice(&[0; 31]).is_none());
        assert!(TokenHash::from_slice(&[0; 32]).is_some());
    }
}
