//! Flushing coalesced usage (`last_used_at`, `use_count`) to the store. The hot path only buffers
//! (see `validate.rs`); these write the buffer out on demand, before a derive or rotate, and from
//! the sweeper.

use super::{Counters, TokenManager};
use crate::error::Error;
use crate::format::TokenId;

impl TokenManager {
    /// Flushes buffered usage if `id` has any, so the store (which re-checks the token's state in
    /// the transaction of a derive or rotate) does not see it idle when this process knows better.
    pub(super) async fn flush_usage_of(&self, id: TokenId) -> Result<(), Error> {
        if self.inner.usage.pending(&id).is_some() {
            self.flush_usage().await?;
        }
        Ok(())
    }

    /// Writes buffered usage to the store now (call on shutdown; the sweeper calls it too).
    /// A failed batch is kept for the next flush and reported here.
    pub async fn flush_usage(&self) -> Result<(), Error> {
        let batch = self.inner.usage.take(self.now());
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.store.record_usage(&batch).await {
            Ok(()) => Ok(()),
            Err(error) => {
                Counters::bump(&self.inner.stats.usage_flush_failures);
                self.inner.usage.restore(batch);
                Err(error.into())
            }
        }
    }
}
