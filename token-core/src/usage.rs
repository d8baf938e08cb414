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

    /// The buffered update of `id` not yet written, if any.
    pub(crate) fn pending(&self, id: &TokenId) -> Option<UsageUpdate> {
        self.shard(id).get(id).copied().filter(|u| u.uses > 0)
    }

    /// Records a use; `true` (to exactly one of the callers that see it) when the flush
    /// interval has passed and a batch should be written.
    pub(crate) fn record(&self, id: TokenId, now: OffsetDateTime, interval_us: i64) -> bool {
        merge(
            &mut self.shard(&id),
            UsageUpdate {
                id,
                last_used_at: now,
                uses: 1,
            },
        );
        let now_us = to_unix_micros(now);
        let last = self.last_flush.load(Ordering::Relaxed);
        now_us.saturating_sub(last) >= interval_us
            && self
                .last_flush
                .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// A copy of everything buffered, to be written. The uses stay in the buffer (so idle
    /// decisions and `inspect` keep seeing them) until [`settle`](Self::settle) removes what was
    /// written; the caller must hold the manager's single usage-writer lock, so two batches
    /// never carry the same uses.
    pub(crate) fn snapshot(&self, now: OffsetDateTime) -> Vec<UsageUpdate> {
        self.last_flush
            .store(to_unix_micros(now), Ordering::Release);
        let mut batch = Vec::new();
        for shard in &self.shards {
            batch.extend(lock(shard).values().filter(|u| u.uses > 0).copied());
        }
        batch
    }

    /// Removes a written batch: its uses are subtracted. An entry with no use left keeps its
    /// `last_used_at` for `keep_us` more (it goes at a later settle), because a record read from
    /// the store (or cached) just before the batch landed does not show it yet: idle decisions
    /// must still see that use. A use recorded meanwhile stays for the next batch.
    pub(crate) fn settle(&self, written: &[UsageUpdate], now: OffsetDateTime, keep_us: i64) {
        let horizon = to_unix_micros(now).saturating_sub(keep_us);
        for shard in &self.shards {
            lock(shard).retain(|_, u| u.uses > 0 || to_unix_micros(u.last_used_at) > horizon);
        }
        for update in written {
            if let Some(entry) = self.shard(&update.id).get_mut(&update.id) {
                entry.uses = entry.uses.saturating_sub(update.uses);
            }
        }
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

    fn at(s: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(s)
    }

    #[test]
    fn uses_merge_and_a_batch_comes_due_once_per_interval() {
        let buffer = UsageBuffer::new(T0);
        let interval = 10_000_000;
        assert!(!buffer.record(id(1), at(1), interval));
        assert!(!buffer.record(id(1), at(3), interval));
        assert!(!buffer.record(id(2), at(2), interval));
        assert_eq!(buffer.last_used(&id(1)), Some(at(3)));
        assert!(buffer.record(id(3), at(10), interval), "due");
        assert!(!buffer.record(id(3), at(10), interval), "claimed once");
        let mut batch = buffer.snapshot(at(10));
        batch.sort_by_key(|u| u.id);
        let got: Vec<(TokenId, u64, OffsetDateTime)> = batch
            .iter()
            .map(|u| (u.id, u.uses, u.last_used_at))
            .collect();
        assert_eq!(
            got,
            vec![(id(1), 2, at(3)), (id(2), 1, at(2)), (id(3), 2, at(10))]
        );
    }

    #[test]
    fn uses_stay_visible_until_their_batch_is_written() {
        let buffer = UsageBuffer::new(T0);
        buffer.record(id(1), at(1), 3_600_000_000);
        let batch = buffer.snapshot(at(2));
        // In flight: still seen by idle decisions and inspect.
        assert_eq!(buffer.last_used(&id(1)), Some(at(1)));
        // A use while the batch is written stays for the next batch.
        buffer.record(id(1), at(5), 3_600_000_000);
        buffer.settle(&batch, at(5), 10_000_000);
        let pending = buffer.pending(&id(1)).expect("the later use");
        assert_eq!((pending.uses, pending.last_used_at), (1, at(5)));
        let next = buffer.snapshot(at(6));
        buffer.settle(&next, at(6), 10_000_000);
        assert!(buffer.pending(&id(1)).is_none(), "written");
        // Written, but remembered a while for records read before the write landed.
        assert_eq!(buffer.last_used(&id(1)), Some(at(5)));
        assert!(buffer.snapshot(at(7)).is_empty(), "not written twice");
        buffer.settle(&[], at(16), 10_000_000);
        assert_eq!(buffer.last_used(&id(1)), None, "forgotten after keep");
    }

    #[test]
    fn a_failed_batch_is_simply_not_settled() {
        let buffer = UsageBuffer::new(T0);
        buffer.record(id(1), at(1), 3_600_000_000);
        let _failed = buffer.snapshot(at(2));
        let retry = buffer.snapshot(at(3));
        assert_eq!(retry.len(), 1);
        assert_eq!(retry[0].uses, 1);
    }
}
