//! The in-process limiter: every bucket's TAT in a sharded map.
//!
//! A bucket is one `u64` (its TAT, in nanoseconds since the Unix epoch) under a fixed-size
//! [`BucketKey`], so memory per key is constant and the map allocates nothing for a key it
//! holds. A TAT at or before now is the same as no entry (a full bucket), so expired entries
//! are dropped: a shard is cleared outright once now passes the latest TAT it holds, and swept
//! when it grows past twice its size after the last sweep. Memory therefore follows the keys
//! active within their windows.
//!
//! The buckets of one owner (a token or a subject) live in one of 16 shards, chosen by the
//! owner's random bytes. A check locks the shards of its keys (at most two: the token's and
//! the subject's) in ascending order, so concurrent checks never deadlock and the all-or-nothing
//! decision sees and moves every bucket atomically.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};

use token_core::TokenId;

use crate::gcra::{self, Denial, Rate, Standing};

const SHARDS: usize = 16;
/// A shard is never swept below this size: sweeping tiny maps would cost more than it saves.
const PRUNE_MIN: usize = 256;
/// Keys of a check whose scratch space stays on the stack: a token limit and a subject limit
/// (a larger array would cost more to fill than a rare heap allocation saves).
const INLINE: usize = 2;

/// Runs `f` on `n` copies of `fill`: on the stack when few, else on the heap.
pub(crate) fn with_scratch<T: Copy, R>(n: usize, fill: T, f: impl FnOnce(&mut [T]) -> R) -> R {
    if n <= INLINE {
        let mut inline = [fill; INLINE];
        f(&mut inline[..n])
    } else {
        f(&mut vec![fill; n])
    }
}

/// A limit name, inline (names are at most 32 bytes): keys need no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LimitName {
    len: u8,
    bytes: [u8; token_core::rate_limit::RATE_LIMIT_NAME_MAX],
}

impl LimitName {
    fn new(name: &str) -> Self {
        let mut bytes = [0; token_core::rate_limit::RATE_LIMIT_NAME_MAX];
        let len = name.len().min(bytes.len());
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        Self {
            len: len as u8,
            bytes,
        }
    }
}

/// Names one bucket: a token's or a subject's limit.
///
/// Its hash is computed once, from the owner's bytes (uniformly random: a token id from the
/// OS CSPRNG, or a 128-bit hash of the subject under keys secret to this process, so nobody
/// can choose subjects that collide) mixed with the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BucketKey {
    /// A token id or a keyed subject hash.
    owner: [u8; 16],
    subject: bool,
    name: LimitName,
    hash: u64,
}

impl BucketKey {
    /// The bucket of `token`'s own limit `name`.
    pub(crate) fn token(token: TokenId, name: &str) -> Self {
        Self::new(*token.as_bytes(), false, name)
    }

    /// The bucket of the subject limit `name`, for the subject with this
    /// ([keyed](LocalLimiter::subject_hash)) hash.
    pub(crate) fn subject(subject_hash: [u8; 16], name: &str) -> Self {
        Self::new(subject_hash, true, name)
    }

    fn new(owner: [u8; 16], subject: bool, name: &str) -> Self {
        let name = LimitName::new(name);
        let mut word = [0; 8];
        word.copy_from_slice(&owner[..8]);
        let mut mix = u64::from(name.len) ^ u64::from(subject);
        for chunk in name.bytes.chunks_exact(8) {
            let mut part = [0; 8];
            part.copy_from_slice(chunk);
            mix =
                (mix.rotate_left(5) ^ u64::from_le_bytes(part)).wrapping_mul(0x517C_C1B7_2722_0A95);
        }
        Self {
            owner,
            subject,
            name,
            hash: u64::from_le_bytes(word) ^ mix,
        }
    }

    fn shard(&self) -> usize {
        // A byte the hash does not use, so the keys of one shard still spread over its map.
        usize::from(self.owner[8]) % SHARDS
    }
}

impl Hash for BucketKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes [`BucketKey`]'s precomputed hash through.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug)]
struct Shard {
    tats: HashMap<BucketKey, u64, BuildHasherDefault<KeyHasher>>,
    /// The latest TAT ever stored here: once now reaches it, every entry has expired.
    latest: u64,
    /// Sweep expired entries when the map reaches this size.
    prune_at: usize,
}

impl Shard {
    fn new() -> Self {
        Self {
            tats: HashMap::default(),
            latest: 0,
            prune_at: PRUNE_MIN,
        }
    }

    /// Drops what has expired cheaply: everything, when now is past the latest TAT.
    fn forget_if_all_expired(&mut self, now: u64) {
        if now >= self.latest && !self.tats.is_empty() {
            self.tats.clear();
            self.tats.shrink_to(PRUNE_MIN);
            self.prune_at = PRUNE_MIN;
        }
    }

    fn sweep(&mut self, now: u64) -> usize {
        let before = self.tats.len();
        self.tats.retain(|_, tat| *tat > now);
        self.prune_at = (2 * self.tats.len()).max(PRUNE_MIN);
        before - self.tats.len()
    }

    fn store(&mut self, key: BucketKey, tat: u64, now: u64) {
        self.latest = self.latest.max(tat);
        if let Some(stored) = self.tats.get_mut(&key) {
            *stored = tat;
            return;
        }
        self.insert_new(key, tat, now);
    }

    /// Adds a key not yet held, sweeping expired entries first when the map has grown.
    fn insert_new(&mut self, key: BucketKey, tat: u64, now: u64) {
        if self.tats.len() >= self.prune_at {
            self.sweep(now);
        }
        self.tats.insert(key, tat);
    }
}

/// Buckets in process memory.
pub(crate) struct LocalLimiter {
    shards: [Mutex<Shard>; SHARDS],
    /// Key the subject hash: random per limiter, never shown.
    subject_keys: [RandomState; 2],
}

impl LocalLimiter {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::new())),
            subject_keys: [RandomState::new(), RandomState::new()],
        }
    }

    /// The subject's hash in this limiter's keys: two SipHashes under random keys (std seeds
    /// them from the OS), 128 bits that nobody outside this process can predict or aim at a
    /// collision. A fifth of a BLAKE3 hash's cost on short subjects.
    pub(crate) fn subject_hash(&self, subject: &str) -> [u8; 16] {
        let mut hash = [0; 16];
        hash[..8].copy_from_slice(&self.subject_keys[0].hash_one(subject).to_le_bytes());
        hash[8..].copy_from_slice(&self.subject_keys[1].hash_one(subject).to_le_bytes());
        hash
    }

    /// Checks `cost` against the buckets `keys` (each with its rate, in nanoseconds) at `now`
    /// (nanoseconds since the Unix epoch), all or nothing, writing each one's standing to
    /// `standings` (as long as `keys`). The caller has checked `cost` against every limit.
    pub(crate) fn check(
        &self,
        keys: &[(BucketKey, Rate)],
        now: u64,
        cost: u32,
        standings: &mut [Standing],
    ) -> Denial {
        if let [(key, rate)] = keys {
            return self.check_one(key, *rate, now, cost, standings);
        }
        let mut wanted = [false; SHARDS];
        for (key, _) in keys {
            wanted[key.shard()] = true;
        }
        // Ascending shard order: two checks never wait on each other in a cycle.
        let mut guards: [Option<MutexGuard<'_, Shard>>; SHARDS] = Default::default();
        for (i, guard) in guards.iter_mut().enumerate() {
            if wanted[i] {
                let mut shard = lock(&self.shards[i]);
                shard.forget_if_all_expired(now);
                *guard = Some(shard);
            }
        }
        with_scratch(keys.len(), (Rate::new(1, 1), 0u64), |buckets| {
            for ((key, rate), bucket) in keys.iter().zip(buckets.iter_mut()) {
                let tat = guards[key.shard()]
                    .as_ref()
                    .and_then(|shard| shard.tats.get(key).copied());
                *bucket = (*rate, tat.unwrap_or(0));
            }
            let denied = gcra::check_all(buckets, now, cost, standings);
            if denied.is_none() && cost > 0 {
                for ((key, _), (_, tat)) in keys.iter().zip(buckets.iter()) {
                    if let Some(shard) = guards[key.shard()].as_mut() {
                        shard.store(*key, *tat, now);
                    }
                }
            }
            denied
        })
    }

    /// [`check`](Self::check) of a single bucket: one lock, one map lookup when it exists.
    fn check_one(
        &self,
        key: &BucketKey,
        rate: Rate,
        now: u64,
        cost: u32,
        standings: &mut [Standing],
    ) -> Denial {
        let mut shard = lock(&self.shards[key.shard()]);
        shard.forget_if_all_expired(now);
        let shard = &mut *shard;
        let stored = shard.tats.get_mut(key);
        let tat = stored.as_ref().map_or(0, |tat| **tat);
        match gcra::spend(rate, tat, now, cost) {
            Ok(after) => {
                if cost > 0 {
                    shard.latest = shard.latest.max(after);
                    match stored {
                        Some(slot) => *slot = after,
                        None => shard.insert_new(*key, after, now),
                    }
                }
                if let Some(standing) = standings.first_mut() {
                    *standing =
                        gcra::standing(rate, if cost > 0 { after } else { tat.max(now) }, now);
                }
                None
            }
            Err(retry) => {
                if let Some(standing) = standings.first_mut() {
                    *standing = gcra::standing(rate, tat, now);
                }
                Some((0, retry))
            }
        }
    }

    /// Drops every expired bucket now; how many were dropped.
    pub(crate) fn prune(&self, now: u64) -> usize {
        self.shards.iter().map(|shard| lock(shard).sweep(now)).sum()
    }

    /// How many buckets are held (expired ones not yet dropped included).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).tats.len()).sum()
    }
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("buckets", &self.len())
            .finish_non_exhaustive()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * S;

    fn token(n: u8) -> TokenId {
        TokenId::from_bytes([n; 16])
    }

    #[test]
    fn keys_of_one_owner_share_a_shard_and_names_tell_buckets_apart() {
        let a = BucketKey::token(token(3), "requests");
        let b = BucketKey::token(token(3), "expensive");
        assert_eq!(a.shard(), b.shard());
        assert_ne!(a, b);
        let limiter = LocalLimiter::new();
        let subject = BucketKey::subject(limiter.subject_hash("user:42"), "requests");
        assert_ne!(subject, a);
        assert_ne!(
            limiter.subject_hash("user:42"),
            LocalLimiter::new().subject_hash("user:42"),
            "keyed per limiter"
        );
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn a_shard_past_its_latest_tat_is_cleared_and_growth_sweeps() {
        let limiter = LocalLimiter::new();
        let rate = Rate::new(S, 10);
        let mut out = [Standing {
            remaining: 0,
            reset_after: 0,
        }];
        // Many tokens in one shard (same first byte), each spending once.
        for i in 0..1000u32 {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            let key = BucketKey::token(TokenId::from_bytes(bytes), "r");
            // Each bucket expires 1 s after its check; checks are 10 ms apart.
            let now = T0 + u64::from(i) * S / 100;
            assert_eq!(limiter.check(&[(key, rate)], now, 1, &mut out), None);
            // Live keys are those of the last second: 100. Growth sweeps keep the shard
            // below twice what was live at the last sweep, and never below PRUNE_MIN.
            assert!(limiter.len() <= 2 * PRUNE_MIN, "{} at {i}", limiter.len());
        }
        let key = BucketKey::token(TokenId::from_bytes([0; 16]), "other");
        limiter.check(&[(key, rate)], T0 + 3600 * S, 0, &mut out);
        assert_eq!(
            limiter.len(),
            0,
            "a peek past the latest TAT clears the shard"
        );
    }
}
