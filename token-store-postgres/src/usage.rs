//! Usage accounting: the atomic conditional count of a use-limited token, and coalesced usage
//! flushes.

use std::collections::{BTreeMap, HashSet};

use token_core::{ConsumeUse, StoreError, TokenId, UsageUpdate, UseOutcome};
use token_store_sql::{id_bytes, id_from_bytes, micros};

use crate::error::{backend_in, corrupt, sqlstate};
use crate::statements::q;
use crate::{PgStore, Tx, commit};

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
        .bind(request.use_refill.map(|r| r.to_string()))
        .bind(request.next_refill_at.map(micros))
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

/// [`TokenStore::record_usage`](token_core::TokenStore::record_usage): one transaction that locks
/// the rows in id order (the order revocations lock in), then updates them all in one statement.
/// Rows that cannot take their update are skipped and returned (see [`apply_usage`]).
pub(crate) async fn record_usage(
    store: &PgStore,
    updates: &[UsageUpdate],
) -> Result<Vec<TokenId>, StoreError> {
    if updates.is_empty() {
        return Ok(Vec::new());
    }
    // One row per id (an UPDATE ... FROM applies only one matching row per target), in id order.
    let mut merged: BTreeMap<TokenId, (i64, i64)> = BTreeMap::new();
    for update in updates {
        let at = micros(update.last_used_at);
        let uses = i64::try_from(update.uses).unwrap_or(i64::MAX);
        let entry = merged.entry(update.id).or_insert((at, 0));
        entry.0 = entry.0.max(at);
        entry.1 = entry.1.saturating_add(uses);
    }
    let batch: Vec<(TokenId, i64, i64)> = merged
        .into_iter()
        .map(|(id, (at, uses))| (id, at, uses))
        .collect();
    let mut tx = store.begin().await?;
    let refused = apply_usage(store, &mut tx, &batch).await?;
    commit(tx).await?;
    Ok(refused)
}

/// Applies `batch` (sorted by id) in `tx`: locks the rows in id order, updates every valid one in
/// one statement, and returns the ids of rows that exist but were not updated (a `use_count`
/// that is not a valid count). If the statement fails on a row's contents (a `CHECK` the update
/// re-evaluates on a row written before the constraint), each update is retried alone under a
/// savepoint, and only the rows that fail are skipped.
async fn apply_usage(
    store: &PgStore,
    tx: &mut Tx,
    batch: &[(TokenId, i64, i64)],
) -> Result<Vec<TokenId>, StoreError> {
    let sql = &store.inner.sql;
    let ids: Vec<Vec<u8>> = batch.iter().map(|(id, _, _)| id_bytes(*id)).collect();
    sqlx::query(q(&sql.lock_for_usage))
        .bind(ids.clone())
        .execute(&mut **tx)
        .await
        .map_err(backend_in)?;
    savepoint(tx, "SAVEPOINT usage_batch").await?;
    let updated = sqlx::query_scalar::<_, Vec<u8>>(q(&sql.record_usage))
        .bind(ids.clone())
        .bind(batch.iter().map(|(_, at, _)| *at).collect::<Vec<_>>())
        .bind(batch.iter().map(|(_, _, uses)| *uses).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await;
    let updated: HashSet<Vec<u8>> = match updated {
        Ok(updated) => {
            savepoint(tx, "RELEASE SAVEPOINT usage_batch").await?;
            updated.into_iter().collect()
        }
        Err(error) if is_bad_row(&error) => {
            savepoint(tx, "ROLLBACK TO SAVEPOINT usage_batch").await?;
            return apply_one_by_one(store, tx, batch).await;
        }
        Err(error) => return Err(backend_in(error)),
    };
    let missed: Vec<Vec<u8>> = ids.into_iter().filter(|id| !updated.contains(id)).collect();
    if missed.is_empty() {
        return Ok(Vec::new());
    }
    // Not updated: purged (ignored), or present with an invalid use_count (refused).
    let present: Vec<Vec<u8>> = sqlx::query_scalar(q(&sql.existing))
        .bind(missed)
        .fetch_all(&mut **tx)
        .await
        .map_err(backend_in)?;
    Ok(present.iter().filter_map(|id| id_from_bytes(id)).collect())
}

/// [`apply_usage`]'s fallback: each update alone, under a savepoint; a row whose contents fail
/// it is skipped and returned.
async fn apply_one_by_one(
    store: &PgStore,
    tx: &mut Tx,
    batch: &[(TokenId, i64, i64)],
) -> Result<Vec<TokenId>, StoreError> {
    let mut refused = Vec::new();
    for (id, at, uses) in batch {
        savepoint(tx, "SAVEPOINT usage_row").await?;
        let result = sqlx::query_scalar::<_, Vec<u8>>(q(&store.inner.sql.record_usage))
            .bind(vec![id_bytes(*id)])
            .bind(vec![*at])
            .bind(vec![*uses])
            .fetch_optional(&mut **tx)
            .await;
        match result {
            Ok(Some(_)) => savepoint(tx, "RELEASE SAVEPOINT usage_row").await?,
            Ok(None) => {
                savepoint(tx, "RELEASE SAVEPOINT usage_row").await?;
                let present: Vec<Vec<u8>> = sqlx::query_scalar(q(&store.inner.sql.existing))
                    .bind(vec![id_bytes(*id)])
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(backend_in)?;
                if !present.is_empty() {
                    refused.push(*id);
                }
            }
            Err(error) if is_bad_row(&error) => {
                savepoint(tx, "ROLLBACK TO SAVEPOINT usage_row").await?;
                refused.push(*id);
            }
            Err(error) => return Err(backend_in(error)),
        }
    }
    Ok(refused)
}

/// Runs a savepoint statement (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`) in `tx`.
async fn savepoint(tx: &mut Tx, statement: &'static str) -> Result<(), StoreError> {
    sqlx::query(statement)
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(backend_in)
}

/// Whether `error` is about a row's contents (a constraint it breaks, a value out of range)
/// rather than the backend.
fn is_bad_row(error: &sqlx::Error) -> bool {
    matches!(
        sqlstate(error).as_deref(),
        // check_violation, not_null_violation, numeric_value_out_of_range
        Some("23514" | "23502" | "22003")
    )
}
