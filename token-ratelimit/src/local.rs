//! The in-process limiter: every bucket's TAT in a sharded map.
//!
//! A bucket is one `u64` (its TAT, in nanoseconds since the Unix epoch) under a fixed-size
//! [`BucketKey`], so memory per key is constant and nothing is allocated per check once a key
//! exists. A TAT at or before now is the same as no entry (a full bucket), so expired entries
//! are dropped: a shard is cleared outright once now passes the latest TAT it holds, and swept
//! when it grows past twice its size after the last sweep. Memory therefore follows the keys
//! active within their windows.
//!
//! The buckets of one owner (a token or a subject) live in one of 16 shards, chosen by the
//! owner's random bytes. A check locks the shards of its keys (at most two: the token's and
//! the subject's) in ascending order, so concurrent checks never deadlock and the all-or-nothing
//! decision sees and moves every bucket atomically.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::{Mutex, MutexGuard, PoisonError};

use token_core::TokenId;

use crate::gcra::{self, Denial, Rate, Standing};

const SHARDS: usize = 16;
/// A shard is never swept below this size: sweeping tiny maps would cost more than it saves.
const PRUNE_MIN: usize = 256;
/// Most keys of one check: a token's limits and its subject's.
pub(crate) const MAX_KEYS: usize = 2 * token_core::rate_limit::MAX_RATE_LIMITS;

/// A limit name, inline (names are at most 32 bytes): keys need no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    Token([u8; 16]),
    /// The subject's BLAKE3 hash (the same one Redis keys carry).
    Subject([u8; 32]),
}

/// Names one bucket: a token's or a subject's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BucketKey {
    owner: Owner,
    name: LimitName,
}

impl BucketKey {
    /// The bucket of `token`'s own limit `name`.
    pub(crate) fn token(token: TokenId, name: &str) -> Self {
        Self {
            owner: Owner::Token(*token.as_bytes()),
            name: LimitName::new(name),
        }
    }

    /// The bucket of the subject limit `name`, for the subject with this hash.
    pub(crate) fn subject(subject_hash: &blake3::Hash, name: &str) -> Self {
        Self {
            owner: Owner::Subject(*subject_hash.as_bytes()),
            name: LimitName::new(name),
        }
    }

    fn shard(&self) -> usize {
        // Token ids are random and subject hashes uniform: their first byte spreads evenly.
        let first = match &self.owner {
            Owner::Token(bytes) => bytes[0],
            Owner::Subject(bytes) => bytes[0],
        };
        usize::from(first) % SHARDS
    }
}

#[derive(Debug)]
struct Shard {
    /// SipHash with a per-process random key: owners' bytes are uniform, but names are not.
    tats: HashMap<BucketKey, u64, RandomState>,
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
        if self.tats.len() >= self.prune_at && !self.tats.contains_key(&key) {
            self.sweep(now);
        }
        self.tats.insert(key, tat);
        self.latest = self.latest.max(tat);
    }
}

/// Buckets in process memory.
#[derive(Debug)]
pub(crate) struct LocalLimiter {
    shards: [Mutex<Shard>; SHARDS],
}

impl LocalLimiter {
    pub(crate) fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(Shard::new())),
        }
    }

    /// Checks `cost` against `keys.len()` buckets at `now` (nanoseconds since the Unix epoch),
    /// all or nothing, writing each one's standing to `standings`. `keys` gives each bucket's
    /// key and rate (in nanoseconds). At most [`MAX_KEYS`] keys; the caller has checked `cost`
    /// against every limit.
    pub(crate) fn check(
        &self,
        keys: &[(BucketKey, Rate)],
        now: u64,
        cost: u32,
        standings: &mut [Standing],
    ) -> Denial {
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
        let mut buckets = [(Rate::new(1, 1), 0u64); MAX_KEYS];
        let buckets = &mut buckets[..keys.len()];
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
        let subject = BucketKey::subject(&blake3::hash(b"user:42"), "requests");
        assert_ne!(subject, a);
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
            bytes[1..5].copy_from_slice(&i.to_le_bytes());
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
