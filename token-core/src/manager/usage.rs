//! Flushing coalesced usage (`last_used_at`, `use_count`) to the store. The hot path only buffers
//! and, once per flush interval, hands the batch to a background task (see `validate.rs`); these
//! write the buffer out on demand, before a derive or rotate, and from the sweeper, after any
//! batch in flight (one writer at a time).

use std::sync::atomic::Ordering;

use super::{Counters, TokenManager};
use crate::error::Error;
use crate::format::TokenId;
use crate::store::StoreError;

impl TokenManager {
    /// Flushes buffered usage if `id` has any, so the store (which re-checks the token's state in
    /// the transaction of a derive or rotate) does not see it idle when this process knows better.
    /// Another token's invalid row does not fail this: only `id`'s own refusal is reported.
    pub(super) async fn flush_usage_of(&self, id: TokenId) -> Result<(), Error> {
        // Uses stay pending until their batch is written (also one in flight in the
        // background, which `flush_usage` waits for).
        if self.inner.usage.pending(&id).is_some() {
            let refused = self.write_buffered_usage().await?;
            if refused.contains(&id) {
                return Err(self.refused_usage(&[id]).into());
            }
        }
        Ok(())
    }

    /// Writes buffered usage to the store now (call on shutdown; the sweeper calls it too),
    /// after any batch already being written in the background. A failed batch is kept for the
    /// next flush and reported here. Updates the store refused because a token's row is invalid
    /// ([`StoreError::Corrupt`], naming the tokens) are reported here too, after the rest of the
    /// batch was written; they are dropped, so they never block a later flush. Queued `Denied`
    /// events are written first ([`flush_denials`](Self::flush_denials)), so one call on shutdown
    /// writes everything the manager holds back.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        self.flush_denials().await;
        let refused = self.write_buffered_usage().await?;
        if refused.is_empty() {
            Ok(())
        } else {
            Err(self.refused_usage(&refused).into())
        }
    }

    /// Writes what is buffered, one writer at a time: the uses stay visible in the buffer until
    /// the store has them, and a failed batch simply stays for the next attempt (counted). Returns
    /// the tokens whose updates the store refused (their rows are invalid), dropped and counted.
    pub(super) async fn write_buffered_usage(&self) -> Result<Vec<TokenId>, StoreError> {
        let _writing = self.inner.usage_writer.lock().await;
        let batch = self.inner.usage.snapshot(self.now());
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match self.inner.store.record_usage(&batch).await {
            Ok(refused) => {
                metrics::counter!("token_usage_flush_batches_total").increment(1);
                // Written uses stay visible for a flush interval (or a cache entry's lifetime,
                // if longer): a record read just before the write landed does not show them.
                // Refused ones are settled too: kept, they would be refused again forever.
                let keep_us = self.inner.flush_interval_us.max(self.cache_max_age_us());
                self.inner.usage.settle(&batch, self.now(), keep_us);
                self.inner
                    .stats
                    .usage_updates_refused
                    .fetch_add(refused.len() as u64, Ordering::Relaxed);
                if !refused.is_empty() {
                    super::spans::usage_refused(refused.len());
                }
                Ok(refused)
            }
            Err(error) => {
                Counters::bump(&self.inner.stats.usage_flush_failures);
                super::spans::usage_flush_failed();
                Err(error)
            }
        }
    }

    /// The error reporting refused usage updates.
    pub(super) fn refused_usage(&self, refused: &[TokenId]) -> StoreError {
        let ids: Vec<String> = refused.iter().map(ToString::to_string).collect();
        StoreError::Corrupt {
            store: self.inner.store.name(),
            message: format!(
                "usage of {} token(s) could not be written, their rows are invalid (the rest of the batch was written): {}",
                refused.len(),
                ids.join(", ")
            ),
        }
    }
}
