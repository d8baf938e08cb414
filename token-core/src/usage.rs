//! Write-behind buffer for `last_used_at` / `use_count`.
//!
//! Writing usage on every validation would double or quadruple the cost of a SQL validation and
//! stall at WAL checkpoints, so uses of tokens without `max_uses` are coalesced here and flushed at
//! most every flush interval `F`: by the first validation after `F` has passed, before a derive or
//! rotate of the token, by a sweep, or by an explicit
//! [`TokenManager::flush_usage`](crate::TokenManager::flush_usage). There is no timer: a process
//! that stops validating keeps its last batch until one of those happens (call `flush_usage` on
//! shutdown, or run the `Sweeper`). Within this process the buffer is consulted, so idle decisions
//! are exact; other processes sharing the store see usage up to `F` late while validations keep
//! arriving, which is why idle timeouts shorter than `10 x F` are refused (the error is then at
//! most 10%).
//! Tokens with `max_uses` bypass the buffer: every use is the store's atomic conditional update.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use crate::clock::to_unix_micros;
use crate::format::{TokenId, TokenIdHasherBuilder};
use crate::store::UsageUpdate;

/// Shards of the buffer: validations of different tokens take different locks, so concurrent
/// validations rarely wait on each other (ids are random, so their first byte spreads evenly).
const SHARDS: usize = 16;

type Shard = HashMap<TokenId, UsageUpdate, TokenIdHasherBuilder>;

#[derive(Debug)]
pub(crate) struct UsageBuffer {
    shards: [Mutex<Shard>; SHARDS],
    /// When the buffer was last taken, in Unix microseconds; whoever moves it takes the batch.
    last_flush: AtomicI64,
}

impl UsageBuffer {
    pub(crate) fn new(now: OffsetDateTime) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            last_flush: AtomicI64::new(to_unix_micros(now)),
        }
    }

    /// The buffered last use of `id`, if any.
    pub(crate) fn last_used(&self, id: &TokenId) -> Option<OffsetDateTime> {
        self.shard(id).get(id).map(|u| u.last_used_at)
    }

    /// The buffered update of `id`, if any.
    pub(crate) fn pending(&self, id: &TokenId) -> Option<UsageUpdate> {
        self.shard(id).get(id).copied()
    }

    /// Records a use; returns the batch to flush if the interval has passed (to exactly one of
    /// the callers that see it pass).
    pub(crate) fn record(
        &self,
        id: TokenId,
        now: OffsetDateTime,
        interval: time::Duration,
    ) -> Option<Vec<UsageUpdate>> {
        merge(
            &mut self.shard(&id),
            UsageUpdate {
                id,
                last_used_at: now,
                uses: 1,
            },
        );
        let now_us = to_unix_micros(now);
        let interval_us = i64::try_from(interval.whole_microseconds()).unwrap_or(i64::MAX);
        let last = self.last_flush.load(Ordering::Relaxed);
        if now_us.saturating_sub(last) < interval_us {
            return None;
        }
        self.last_flush
            .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| self.drain())
    }

    /// Takes everything buffered.
    pub(crate) fn take(&self, now: OffsetDateTime) -> Vec<UsageUpdate> {
        self.last_flush
            .store(to_unix_micros(now), Ordering::Release);
        self.drain()
    }

    /// Puts back a batch whose flush failed, merging with newer uses.
    pub(crate) fn restore(&self, batch: Vec<UsageUpdate>) {
        for update in batch {
            merge(&mut self.shard(&update.id), update);
        }
    }

    fn drain(&self) -> Vec<UsageUpdate> {
        let mut batch = Vec::new();
        for shard in &self.shards {
            batch.extend(lock(shard).drain().map(|(_, u)| u));
        }
        batch
    }

    fn shard(&self, id: &TokenId) -> MutexGuard<'_, Shard> {
        lock(&self.shards[usize::from(id.as_bytes()[0]) % SHARDS])
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn merge(shard: &mut Shard, update: UsageUpdate) {
    shard
        .entry(update.id)
        .and_modify(|u| {
            u.uses += update.uses;
            u.last_used_at = u.last_used_at.max(update.last_used_at);
        })
        .or_insert(update);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = time::macros::datetime!(2030-01-01 0:00 UTC);

    fn id(n: u8) -> TokenId {
        TokenId::from_bytes([n; 16])
    }

    #[test]
    fn uses_merge_and_the_batch_comes_due_once_per_interval() {
        let buffer = UsageBuffer::new(T0);
        let interval = time::Duration::seconds(10);
        let at = |s: i64| T0 + time::Duration::seconds(s);
        assert!(buffer.record(id(1), at(1), interval).is_none());
        assert!(buffer.record(id(1), at(3), interval).is_none());
        assert!(buffer.record(id(2), at(2), interval).is_none());
        assert_eq!(buffer.last_used(&id(1)), Some(at(3)));
        let mut batch = buffer.record(id(3), at(10), interval).expect("due");
        batch.sort_by_key(|u| u.id);
        let got: Vec<(TokenId, u64, OffsetDateTime)> = batch
            .iter()
            .map(|u| (u.id, u.uses, u.last_used_at))
            .collect();
        assert_eq!(
            got,
            vec![(id(1), 2, at(3)), (id(2), 1, at(2)), (id(3), 1, at(10))]
        );
        // Taken: the next use starts a new batch, not due before another interval.
        assert!(buffer.pending(&id(1)).is_none());
        assert!(buffer.record(id(1), at(11), interval).is_none());
        assert!(buffer.record(id(1), at(19), interval).is_none());
        assert!(buffer.record(id(1), at(20), interval).is_some());
    }

    #[test]
    fn a_restored_batch_merges_with_newer_uses() {
        let buffer = UsageBuffer::new(T0);
        let at = |s: i64| T0 + time::Duration::seconds(s);
        buffer.record(id(1), at(1), time::Duration::HOUR);
        let batch = buffer.take(at(2));
        buffer.record(id(1), at(5), time::Duration::HOUR);
        buffer.restore(batch);
        let pending = buffer.pending(&id(1)).expect("pending");
        assert_eq!((pending.uses, pending.last_used_at), (2, at(5)));
    }
}
