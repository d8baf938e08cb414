//! Usage accounting: the atomic conditional count of a use-limited token, and coalesced usage
//! flushes.

use token_core::{ConsumeUse, StoreError, UsageUpdate, UseOutcome};
use token_store_sql::{count_to_column, id_bytes, micros};

use crate::error::{STORE, backend, corrupt};
use crate::statements::{ACTIVE, CONSUME_USE, RECORD_USAGE};
use crate::{SqliteStore, commit};

/// [`TokenStore::consume_use`](token_core::TokenStore::consume_use).
pub(crate) async fn consume_use(
    store: &SqliteStore,
    request: &ConsumeUse,
) -> Result<UseOutcome, StoreError> {
    let (id, now) = (request.id, micros(request.now));
    let pool = store.ready().await?;
    // One atomic conditional statement: concurrent callers can never count past max_uses.
    let count: Option<i64> = sqlx::query_scalar(CONSUME_USE)
        .bind(now)
        .bind(now)
        .bind(id_bytes(id))
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    if let Some(count) = count {
        let count = u64::try_from(count).map_err(|_| {
            corrupt(format!(
                "tokens.use_count of token {id}: negative count {count}"
            ))
        })?;
        return Ok(UseOutcome::Counted(count));
    }
    let active: Option<bool> = sqlx::query_scalar(ACTIVE)
        .bind(now)
        .bind(id_bytes(id))
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    Ok(match active {
        Some(true) => UseOutcome::LimitReached,
        Some(false) => UseOutcome::NotActive,
        None => UseOutcome::NotFound,
    })
}

/// [`TokenStore::record_usage`](token_core::TokenStore::record_usage): one statement per update,
/// in one transaction.
pub(crate) async fn record_usage(
    store: &SqliteStore,
    updates: &[UsageUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for update in updates {
        let at = micros(update.last_used_at);
        sqlx::query(RECORD_USAGE)
            .bind(count_to_column(STORE, update.uses, "uses")?)
            .bind(at)
            .bind(at)
            .bind(id_bytes(update.id))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    commit(tx).await
}
