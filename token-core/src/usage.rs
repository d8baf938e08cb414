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
use std::sync::{Mutex, PoisonError};

use time::OffsetDateTime;

use crate::format::{TokenId, TokenIdHasherBuilder};
use crate::store::UsageUpdate;

#[derive(Debug)]
pub(crate) struct UsageBuffer {
    inner: Mutex<Pending>,
}

#[derive(Debug)]
struct Pending {
    updates: HashMap<TokenId, UsageUpdate, TokenIdHasherBuilder>,
    last_flush: OffsetDateTime,
}

impl UsageBuffer {
    pub(crate) fn new(now: OffsetDateTime) -> Self {
        Self {
            inner: Mutex::new(Pending {
                updates: HashMap::default(),
                last_flush: now,
            }),
        }
    }

    /// The buffered last use of `id`, if any.
    pub(crate) fn last_used(&self, id: &TokenId) -> Option<OffsetDateTime> {
        self.lock().updates.get(id).map(|u| u.last_used_at)
    }

    /// The buffered update of `id`, if any.
    pub(crate) fn pending(&self, id: &TokenId) -> Option<UsageUpdate> {
        self.lock().updates.get(id).copied()
    }

    /// Records a use; returns the batch to flush if the interval has passed.
    pub(crate) fn record(
        &self,
        id: TokenId,
        now: OffsetDateTime,
        interval: time::Duration,
    ) -> Option<Vec<UsageUpdate>> {
        let mut pending = self.lock();
        pending
            .updates
            .entry(id)
            .and_modify(|u| {
                u.uses += 1;
                u.last_used_at = u.last_used_at.max(now);
            })
            .or_insert(UsageUpdate {
                id,
                last_used_at: now,
                uses: 1,
            });
        if now - pending.last_flush >= interval {
            pending.last_flush = now;
            Some(pending.updates.drain().map(|(_, u)| u).collect())
        } else {
            None
        }
    }

    /// Takes everything buffered.
    pub(crate) fn take(&self, now: OffsetDateTime) -> Vec<UsageUpdate> {
        let mut pending = self.lock();
        pending.last_flush = now;
        pending.updates.drain().map(|(_, u)| u).collect()
    }

    /// Puts back a batch whose flush failed, merging with newer uses.
    pub(crate) fn restore(&self, batch: Vec<UsageUpdate>) {
        let mut pending = self.lock();
        for update in batch {
            pending
                .updates
                .entry(update.id)
                .and_modify(|u| {
                    u.uses += update.uses;
                    u.last_used_at = u.last_used_at.max(update.last_used_at);
                })
                .or_insert(update);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
