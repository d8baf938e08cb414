//! Flushing coalesced usage (`last_used_at`, `use_count`) to the store. The hot path only buffers
//! and, once per flush interval, hands the batch to a background task (see `validate.rs`); these
//! write the buffer out on demand, before a derive or rotate, and from the sweeper, after any
//! batch in flight (one writer at a time).

use super::{Counters, TokenManager};
use crate::error::Error;
use crate::format::TokenId;
use crate::store::StoreError;

impl TokenManager {
    /// Flushes buffered usage if `id` has any, so the store (which re-checks the token's state in
    /// the transaction of a derive or rotate) does not see it idle when this process knows better.
    pub(super) async fn flush_usage_of(&self, id: TokenId) -> Result<(), Error> {
        // Uses stay pending until their batch is written (also one in flight in the
        // background, which `flush_usage` waits for).
        if self.inner.usage.pending(&id).is_some() {
            self.flush_usage().await?;
        }
        Ok(())
    }

    /// Writes buffered usage to the store now (call on shutdown; the sweeper calls it too),
    /// after any batch already being written in the background. A failed batch is kept for the
    /// next flush and reported here. Queued `Denied` events are written first
    /// ([`flush_denials`](Self::flush_denials)), so one call on shutdown writes everything the
    /// manager holds back.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        self.flush_denials().await;
        Ok(self.write_buffered_usage().await?)
    }

    /// Writes what is buffered, one writer at a time: the uses stay visible in the buffer until
    /// the store has them, and a failed batch simply stays for the next attempt (counted).
    pub(super) async fn write_buffered_usage(&self) -> Result<(), StoreError> {
        let _writing = self.inner.usage_writer.lock().await;
        let batch = self.inner.usage.snapshot(self.now());
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.store.record_usage(&batch).await {
            Ok(()) => {
                // Written uses stay visible for a flush interval (or a cache entry's lifetime,
                // if longer): a record read just before the write landed does not show them.
                let keep_us = self.inner.flush_interval_us.max(self.cache_max_age_us());
                self.inner.usage.settle(&batch, self.now(), keep_us);
                Ok(())
            }
            Err(error) => {
                Counters::bump(&self.inner.stats.usage_flush_failures);
                Err(error)
            }
        }
    }
}
