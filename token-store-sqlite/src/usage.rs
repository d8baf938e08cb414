//! Usage accounting: the atomic conditional count of a use-limited token, and coalesced usage
//! flushes.

use token_core::{ConsumeUse, StoreError, TokenId, UsageUpdate, UseOutcome};
use token_store_sql::{id_bytes, micros};

use crate::error::{backend, corrupt, is_constraint_violation};
use crate::statements::{ACTIVE, CONSUME_USE, EXISTS, RECORD_USAGE};
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
        .bind(id_bytes(id))
        .bind(now)
        .bind(request.use_refill.map(|r| r.to_string()))
        .bind(request.next_refill_at.map(micros))
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
/// in one transaction. A row that cannot take its update (an invalid `use_count`, or a column
/// breaking a `CHECK` the update re-evaluates) is skipped and returned: a failed statement undoes
/// only itself in SQLite, so the others commit.
pub(crate) async fn record_usage(
    store: &SqliteStore,
    updates: &[UsageUpdate],
) -> Result<Vec<TokenId>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    let mut refused = Vec::new();
    let mut tx = store.begin().await?;
    for update in updates {
        let at = micros(update.last_used_at);
        let uses = i64::try_from(update.uses).unwrap_or(i64::MAX);
        let result = sqlx::query(RECORD_USAGE)
            .bind(uses)
            .bind(at)
            .bind(at)
            .bind(id_bytes(update.id))
            .execute(&mut *tx)
            .await;
        let skipped = match result {
            Ok(done) if done.rows_affected() == 1 => false,
            // Not updated: purged (ignored), or a row whose use_count is not a valid count.
            Ok(_) => sqlx::query_scalar::<_, i64>(EXISTS)
                .bind(id_bytes(update.id))
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .is_some(),
            Err(e) if is_constraint_violation(&e) => true,
            Err(e) => return Err(backend(e)),
        };
        if skipped {
            refused.push(update.id);
        }
    }
    commit(tx).await?;
    Ok(refused)
}
