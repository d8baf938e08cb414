//! Keys for a keyed audit chain.
//!
//! The unkeyed chain ([`chain_hash`](crate::audit::chain_hash)) detects an edited, inserted or
//! deleted event only until someone recomputes the hashes after it, and anyone who can write to
//! the database can. Keyed by an [`AuditKey`] held outside the database, each link is
//! `blake3::keyed_hash(link key, prev ‖ key id ‖ canonical bytes)`, where the link key is
//! `blake3::derive_key` of the audit key for links (checkpoint MACs use another derived key):
//! without the key a writer cannot produce a link that verifies. Each stored event names the key that chained it
//! ([`AuditRecord::chain_key_id`](crate::AuditRecord::chain_key_id)), so an [`AuditKeyring`]
//! rotates like the hashing [`Keyring`](crate::Keyring): add a key, make it current, keep the
//! old one for verification.
//!
//! The store computes the hash inside its append transaction, so it needs the keyring too (for
//! example `MemoryStore::with_audit_keys`), as does the verifier
//! ([`ManagerBuilder::audit_keys`](crate::ManagerBuilder::audit_keys)). With the keys, a store
//! also seals each retention checkpoint it writes ([`seal_checkpoint`], [`CheckpointMac`]), so a
//! writer without the key cannot pass a deletion of recent events off as retention; every
//! instance that sweeps must therefore hold the keys. To catch a trail whose every keyed event
//! was relabelled as unkeyed, tell the verifier where keyed links start
//! ([`ManagerBuilder::audit_keys_required_from`](crate::ManagerBuilder::audit_keys_required_from)).
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

use std::fmt;
use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::{AuditCheckpoint, AuditEvent, AuditHash, AuditRecord};
use crate::format::{RandomnessError, fill_random};
use crate::keyring::{KeyId, KeySet, KeyringError};
use crate::store::StoreError;

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
    /// The keys actually used, derived once from the audit key (which is not kept).
    subkeys: Arc<Subkeys>,
}

/// The per-purpose keys derived from an audit key (`blake3::derive_key`, one context each), so
/// links and checkpoint MACs never share a key, whatever their inputs.
struct Subkeys {
    link: Zeroizing<[u8; 32]>,
    checkpoint: Zeroizing<[u8; 32]>,
}

impl Subkeys {
    fn derive(key: &[u8; 32]) -> Self {
        Self {
            link: Zeroizing::new(blake3::derive_key(LINK_CONTEXT, key)),
            checkpoint: Zeroizing::new(blake3::derive_key(CHECKPOINT_CONTEXT, key)),
        }
    }
}

impl AuditKey {
    /// A key from 32 bytes of secret material (load them from your secret manager, not from the
    /// database the trail lives in). The argument is a copy: it is wiped here once stored.
    pub fn new(id: KeyId, mut key: [u8; 32]) -> Self {
        let subkeys = Arc::new(Subkeys::derive(&key));
        key.zeroize();
        Self { id, subkeys }
    }

    /// A fresh random key. Events chained with it cannot be verified once it is lost: persist it
    /// outside the database.
    pub fn generate(id: KeyId) -> Result<Self, RandomnessError> {
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(&mut *key)?;
        Ok(Self {
            id,
            subkeys: Arc::new(Subkeys::derive(&key)),
        })
    }

    /// This key's id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn link(&self, prev: &AuditHash, seq: u64, event: &AuditEvent) -> AuditHash {
        let mut hasher = blake3::Hasher::new_keyed(&self.subkeys.link);
        hasher.update(prev.as_bytes());
        // The id is covered so a link cannot be relabelled to another key.
        hasher.update(&self.id.get().to_be_bytes());
        hasher.update(&event.canonical_bytes(seq));
        let hash = AuditHash::from_bytes(*hasher.finalize().as_bytes());
        hasher.zeroize();
        hash
    }
}

impl AuditKey {
    fn checkpoint_tag(&self, seq: u64, hash: &AuditHash, at: OffsetDateTime) -> AuditHash {
        let mut hasher = blake3::Hasher::new_keyed(&self.subkeys.checkpoint);
        hasher.update(&checkpoint_bytes(self.id, seq, hash, at));
        let tag = AuditHash::from_bytes(*hasher.finalize().as_bytes());
        hasher.zeroize();
        tag
    }
}

/// `blake3::derive_key` context of the key that chains links.
const LINK_CONTEXT: &str = "token-lifecycle 2026-12 audit chain link";
/// `blake3::derive_key` context of the key that seals checkpoints.
const CHECKPOINT_CONTEXT: &str = "token-lifecycle 2026-12 audit checkpoint seal";

/// What a checkpoint MAC covers: a domain tag (the MAC is also under its own derived key, so no
/// chain link is ever a valid checkpoint MAC, nor the reverse), the key id, the sequence number,
/// the hash and the time in Unix microseconds (the precision stores keep).
fn checkpoint_bytes(id: KeyId, seq: u64, hash: &AuditHash, at: OffsetDateTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    out.extend_from_slice(b"token-audit-checkpoint/v1\0");
    out.extend_from_slice(&id.get().to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(&crate::clock::to_unix_micros(at).to_be_bytes());
    out
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
    keys: KeySet<AuditKey>,
}

impl AuditKeyring {
    /// A keyring whose only (and current) key is `key`.
    pub fn new(key: AuditKey) -> Self {
        Self {
            keys: KeySet::new(key.id, key),
        }
    }

    /// Adds a key (replacing one with the same id) without making it current.
    pub fn with_key(mut self, key: AuditKey) -> Self {
        self.keys.insert(key.id, key);
        self
    }

    /// Makes the key `id` current.
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

    /// The link of event `seq` after `prev`, chained with the current key: what a store writes
    /// (the hash, and the key id into `chain_key_id`).
    pub fn chain(&self, prev: &AuditHash, seq: u64, event: &AuditEvent) -> (KeyId, AuditHash) {
        let key = self.keys.current();
        (key.id, key.link(prev, seq, event))
    }

    /// The link of event `seq` after `prev` under key `id`, or `None` when the keyring lacks it.
    pub fn link(
        &self,
        id: KeyId,
        prev: &AuditHash,
        seq: u64,
        event: &AuditEvent,
    ) -> Option<AuditHash> {
        self.keys.get(id).map(|key| key.link(prev, seq, event))
    }
}

/// A keyed MAC of a retention checkpoint ([`AuditCheckpoint::mac`]): what a store with audit
/// keys writes with the checkpoint, so that a writer without the key cannot move the checkpoint
/// (delete recent events and claim retention removed them) without the verifier noticing.
///
/// The tag is `blake3::keyed_hash(key, "token-audit-checkpoint/v1\0" ‖ key id ‖ seq ‖ hash ‖ at
/// in Unix microseconds)`, domain-separated from the chain's links. Stores make it with
/// [`seal_checkpoint`]; [`AuditKeyring::check_checkpoint`] verifies it.
///
/// ```
/// use token_core::audit_key::seal_checkpoint;
/// use token_core::{AuditHash, AuditKey, AuditKeyring, KeyId};
/// let keys = AuditKeyring::new(AuditKey::new(KeyId::new(3), [7; 32]));
/// let at = time::macros::datetime!(2030-01-01 0:00 UTC);
/// let checkpoint = seal_checkpoint(Some(&keys), 41, AuditHash::GENESIS, at);
/// let mac = checkpoint.mac.expect("sealed with the current key");
/// assert_eq!(mac.key_id, KeyId::new(3));
/// assert!(keys.check_checkpoint(&checkpoint).is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CheckpointMac {
    /// The audit key the MAC was made with.
    pub key_id: KeyId,
    /// The 32-byte tag (printed and serialized as 64 hexadecimal characters, like a chain hash).
    pub tag: AuditHash,
}

/// Why a checkpoint's MAC does not verify ([`AuditKeyring::check_checkpoint`],
/// [`ChainReport::checkpoint_broken`](crate::ChainReport::checkpoint_broken)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointBreak {
    /// The MAC does not match the checkpoint's sequence number, hash and time under the key it
    /// names (or the checkpoint has no time): the row was written or edited without the key.
    MacMismatch {
        /// The key the MAC names.
        key_id: KeyId,
    },
    /// The MAC names an audit key the verifier lacks, so it cannot be checked.
    MissingKey {
        /// The key the MAC names.
        key_id: KeyId,
    },
}

impl fmt::Display for CheckpointBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MacMismatch { key_id } => write!(
                f,
                "the retention checkpoint's MAC does not verify under audit key {}",
                key_id.get()
            ),
            Self::MissingKey { key_id } => write!(
                f,
                "the retention checkpoint's MAC names audit key {}, which the verifier lacks",
                key_id.get()
            ),
        }
    }
}

impl AuditKeyring {
    /// The MAC of checkpoint (`seq`, `hash`, `at`) under the current key.
    pub fn checkpoint_mac(&self, seq: u64, hash: &AuditHash, at: OffsetDateTime) -> CheckpointMac {
        let key = self.keys.current();
        CheckpointMac {
            key_id: key.id,
            tag: key.checkpoint_tag(seq, hash, at),
        }
    }

    /// Verifies `checkpoint`'s MAC. `Ok(true)` when it verifies, `Ok(false)` when the
    /// checkpoint carries none, an error when it does not verify or names a key this keyring
    /// lacks. A checkpoint with a MAC but without a time never verifies (stores seal the time).
    pub fn check_checkpoint(&self, checkpoint: &AuditCheckpoint) -> Result<bool, CheckpointBreak> {
        let Some(mac) = checkpoint.mac else {
            return Ok(false);
        };
        let Some(key) = self.keys.get(mac.key_id) else {
            return Err(CheckpointBreak::MissingKey { key_id: mac.key_id });
        };
        let verifies = checkpoint.at.is_some_and(|at| {
            let expected = key.checkpoint_tag(checkpoint.seq, &checkpoint.hash, at);
            // blake3::Hash compares in constant time.
            blake3::Hash::from_bytes(*expected.as_bytes())
                == blake3::Hash::from_bytes(*mac.tag.as_bytes())
        });
        if verifies {
            Ok(true)
        } else {
            Err(CheckpointBreak::MacMismatch { key_id: mac.key_id })
        }
    }
}

/// The checkpoint a store writes when truncation removed events up to (`seq`, `hash`, `at`):
/// sealed with a [`CheckpointMac`] under the current key of `keys` when the host configured
/// audit keys, unsealed (`mac: None`) otherwise.
pub fn seal_checkpoint(
    keys: Option<&AuditKeyring>,
    seq: u64,
    hash: AuditHash,
    at: OffsetDateTime,
) -> AuditCheckpoint {
    AuditCheckpoint {
        seq,
        hash,
        at: Some(at),
        mac: keys.map(|keys| keys.checkpoint_mac(seq, &hash, at)),
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

/// Whether two chain hashes are equal, in constant time (a keyed link is a MAC).
pub(crate) fn same_hash(a: &AuditHash, b: &AuditHash) -> bool {
    blake3::Hash::from(*a.as_bytes()) == blake3::Hash::from(*b.as_bytes())
}

/// Why a stored link does not verify ([`check_link`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkFault {
    /// The stored hash is not the link recomputed from the previous hash and the event.
    Mismatch,
    /// The event was chained with an audit key the checker does not hold.
    MissingKey(KeyId),
}

/// Recomputes the link of `record` after `prev` (keyed with `record.chain_key_id` when set) and
/// compares it with the stored hash, in constant time.
pub fn check_link(
    keys: Option<&AuditKeyring>,
    prev: &AuditHash,
    record: &AuditRecord,
) -> Result<(), LinkFault> {
    let expected = match record.chain_key_id {
        Some(id) => keys
            .and_then(|keys| keys.link(id, prev, record.seq, &record.event))
            .ok_or(LinkFault::MissingKey(id))?,
        None => crate::audit::chain_hash(prev, record.seq, &record.event),
    };
    if same_hash(&expected, &record.hash) {
        Ok(())
    } else {
        Err(LinkFault::Mismatch)
    }
}

/// Checks that `records` (consecutive events in seq order, as stored) chain from `start` (the
/// current checkpoint's hash, or [`AuditHash::GENESIS`]): what a store does before truncating
/// them, so retention never seals a checkpoint over events that do not verify (a writer who
/// backdated, or re-hashed, the last removed event would otherwise have it sealed as genuine).
/// A failure is [`StoreError::Corrupt`] naming the event: the truncation must not happen.
pub fn check_links_before_truncation(
    store: &'static str,
    keys: Option<&AuditKeyring>,
    start: &AuditHash,
    records: &[AuditRecord],
) -> Result<(), StoreError> {
    let mut prev = *start;
    for record in records {
        if let Err(fault) = check_link(keys, &prev, record) {
            let why = match fault {
                LinkFault::Mismatch => {
                    "its stored hash is not its link (the trail was edited)".to_owned()
                }
                LinkFault::MissingKey(id) => format!(
                    "it was chained with audit key {id}, which this store does not hold (every instance that sweeps needs the audit keys)"
                ),
            };
            return Err(StoreError::Corrupt {
                store,
                message: format!(
                    "audit_events seq {}: {why}; retention refuses to truncate behind it, run verify_audit_chain",
                    record.seq
                ),
            });
        }
        prev = record.hash;
    }
    Ok(())
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
