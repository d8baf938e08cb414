//! Usage accounting: the atomic conditional count of a use-limited token, and coalesced usage
//! flushes.

use std::collections::HashMap;

use token_core::{ConsumeUse, StoreError, TokenId, UsageUpdate, UseOutcome};
use token_store_sql::{id_bytes, micros};

use crate::PgStore;
use crate::error::{backend_in, corrupt};
use crate::statements::q;

/// [`TokenStore::consume_use`](token_core::TokenStore::consume_use).
pub(crate) async fn consume_use(
    store: &PgStore,
    request: &ConsumeUse,
) -> Result<UseOutcome, StoreError> {
    let (id, now) = (request.id, request.now);
    let pool = store.ready().await?;
    // One atomic conditional statement: concurrent callers can never count past max_uses.
    let count: Option<i64> = sqlx::query_scalar(q(&store.inner.sql.consume_use))
        .bind(id_bytes(id))
        .bind(micros(now))
        .fetch_optional(pool)
        .await
        .map_err(backend_in)?;
    if let Some(count) = count {
        let count = u64::try_from(count).map_err(|_| {
            corrupt(format!(
                "tokens row {id}: column use_count: negative count {count}"
            ))
        })?;
        return Ok(UseOutcome::Counted(count));
    }
    let active: Option<bool> = sqlx::query_scalar(q(&store.inner.sql.active))
        .bind(id_bytes(id))
        .bind(micros(now))
        .fetch_optional(pool)
        .await
        .map_err(backend_in)?;
    Ok(match active {
        Some(true) => UseOutcome::LimitReached,
        Some(false) => UseOutcome::NotActive,
        None => UseOutcome::NotFound,
    })
}

/// [`TokenStore::record_usage`](token_core::TokenStore::record_usage): one statement for every
/// update.
pub(crate) async fn record_usage(
    store: &PgStore,
    updates: &[UsageUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    // One row per id (an UPDATE ... FROM applies only one matching row per target).
    let mut merged: HashMap<TokenId, (i64, i64)> = HashMap::new();
    for update in updates {
        let at = micros(update.last_used_at);
        let uses = i64::try_from(update.uses).unwrap_or(i64::MAX);
        let entry = merged.entry(update.id).or_insert((at, 0));
        entry.0 = entry.0.max(at);
        entry.1 = entry.1.saturating_add(uses);
    }
    let mut ids = Vec::with_capacity(merged.len());
    let mut ats = Vec::with_capacity(merged.len());
    let mut uses = Vec::with_capacity(merged.len());
    for (id, (at, n)) in merged {
        ids.push(id_bytes(id));
        ats.push(at);
        uses.push(n);
    }
    let pool = store.ready().await?;
    sqlx::query(q(&store.inner.sql.record_usage))
        .bind(ids)
        .bind(ats)
        .bind(uses)
        .execute(pool)
        .await
        .map_err(backend_in)?;
    Ok(())
}
