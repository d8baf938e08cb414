//! The records: insert (issue and derive), get, rotate, list and count.

use std::sync::Arc;

use time::OffsetDateTime;
use token_core::{
    CountLiveWithKey, InsertOutcome, InsertToken, ListQuery, RotateOutcome, RotateToken,
    StoreError, TokenId, TokenRecord,
};
use token_store_sql::{
    cutoff_refusal, id_bytes, micros, parent_refusal, rotation_successor, token_params,
};

use crate::audit::append_events;
use crate::codec::record_from_row;
use crate::error::{STORE, backend, is_unique_violation};
use crate::statements::{
    COUNT_LIVE_KEY, COUNT_LIVE_SUBJECT, CUTOFF, EXISTS, INSERT_LABEL, INSERT_TOKEN, LOOKUP_SQL,
    REPARENT, ROTATE, bind_all, list_sql,
};
use crate::{SqliteStore, Tx, commit, rollback};

/// The record `id`, read inside the write transaction `tx`.
async fn fetch_record(tx: &mut Tx, id: TokenId) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(LOOKUP_SQL.as_str())
        .bind(id_bytes(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    row.as_ref().map(record_from_row).transpose()
}

/// The revocation cut-off if a record created at `created_at` falls before it, read inside the
/// write transaction `tx` (a revocation raising it holds the same write lock).
async fn before_cutoff(
    tx: &mut Tx,
    created_at: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, StoreError> {
    let cutoff: Option<Option<i64>> = sqlx::query_scalar(CUTOFF)
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    cutoff_refusal(STORE, created_at, cutoff.flatten())
}

async fn exists(tx: &mut Tx, id: TokenId) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar(EXISTS)
        .bind(id_bytes(id))
        .fetch_optional(&mut **tx)
        .await
        .map_err(backend)?;
    Ok(found.is_some())
}

async fn insert_record(tx: &mut Tx, record: &TokenRecord) -> Result<(), StoreError> {
    let result = bind_all(
        sqlx::query(INSERT_TOKEN.as_str()),
        token_params(STORE, record)?,
    )
    .execute(&mut **tx)
    .await;
    match result {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        Err(e) => return Err(backend(e)),
    }
    insert_labels(tx, record).await
}

/// Writes `record`'s labels (after its row, or after an update dropped the old ones).
pub(crate) async fn insert_labels(tx: &mut Tx, record: &TokenRecord) -> Result<(), StoreError> {
    for (key, value) in &record.labels {
        sqlx::query(INSERT_LABEL)
            .bind(id_bytes(record.id))
            .bind(key.clone())
            .bind(value.clone())
            .execute(&mut **tx)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// [`TokenStore::insert`](token_core::TokenStore::insert).
pub(crate) async fn insert(
    store: &SqliteStore,
    insert: &InsertToken,
) -> Result<InsertOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let record = &insert.record;
    if exists(&mut tx, record.id).await? {
        rollback(tx).await?;
        return Err(StoreError::AlreadyExists { id: record.id });
    }
    if let Some(cutoff) = before_cutoff(&mut tx, record.created_at).await? {
        rollback(tx).await?;
        return Ok(InsertOutcome::BeforeRevocationCutoff { cutoff });
    }
    if let Some(parent) = record.parent_id {
        // Under the write lock: a concurrent family revocation either committed before (the
        // parent reads as revoked) or waits for this insert (and then revokes the child).
        let parent_record = fetch_record(&mut tx, parent).await?;
        if let Some(refusal) = parent_refusal(insert, parent_record.as_ref()) {
            rollback(tx).await?;
            return Ok(refusal);
        }
    }
    if let Some(max) = insert.max_live_for_subject {
        let live: i64 = sqlx::query_scalar(COUNT_LIVE_SUBJECT.as_str())
            .bind(&record.subject)
            .bind(micros(insert.now))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if live >= i64::from(max) {
            rollback(tx).await?;
            return Ok(InsertOutcome::SubjectLimitReached);
        }
    }
    insert_record(&mut tx, record).await?;
    append_events(&mut tx, &insert.events).await?;
    commit(tx).await?;
    Ok(InsertOutcome::Inserted)
}

/// [`TokenStore::get`](token_core::TokenStore::get).
pub(crate) async fn get(
    store: &SqliteStore,
    id: TokenId,
) -> Result<Option<Arc<TokenRecord>>, StoreError> {
    let pool = store.ready().await?;
    let row = sqlx::query(LOOKUP_SQL.as_str())
        .bind(id_bytes(id))
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    Ok(row.as_ref().map(record_from_row).transpose()?.map(Arc::new))
}

/// [`TokenStore::rotate`](token_core::TokenStore::rotate).
pub(crate) async fn rotate(
    store: &SqliteStore,
    rotation: &RotateToken,
) -> Result<RotateOutcome, StoreError> {
    let mut tx = store.begin().await?;
    // Under the write lock: the uses left as of this transaction, so none is granted twice.
    let old = fetch_record(&mut tx, rotation.predecessor).await?;
    let successor = match rotation_successor(rotation, old.as_ref()) {
        Ok(successor) => successor,
        Err(refusal) => {
            rollback(tx).await?;
            return Ok(refusal);
        }
    };
    if let Some(cutoff) = before_cutoff(&mut tx, successor.created_at).await? {
        rollback(tx).await?;
        return Ok(RotateOutcome::BeforeRevocationCutoff { cutoff });
    }
    if exists(&mut tx, successor.id).await? {
        rollback(tx).await?;
        return Err(StoreError::AlreadyExists { id: successor.id });
    }
    sqlx::query(ROTATE)
        .bind(id_bytes(successor.id))
        .bind(micros(rotation.predecessor_expires_at))
        .bind(id_bytes(rotation.predecessor))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    // The children follow the successor, so revoking it reaches them.
    sqlx::query(REPARENT)
        .bind(id_bytes(successor.id))
        .bind(id_bytes(rotation.predecessor))
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    insert_record(&mut tx, &successor).await?;
    append_events(&mut tx, &rotation.events).await?;
    commit(tx).await?;
    crate::feed::announce_rotation(store, rotation.predecessor);
    Ok(RotateOutcome::Rotated)
}

/// [`TokenStore::list`](token_core::TokenStore::list).
pub(crate) async fn list(
    store: &SqliteStore,
    query: &ListQuery,
) -> Result<Vec<TokenRecord>, StoreError> {
    let pool = store.ready().await?;
    let (sql, args) = list_sql(query);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    rows.iter().map(record_from_row).collect()
}

/// [`TokenStore::count_live_with_key`](token_core::TokenStore::count_live_with_key).
pub(crate) async fn count_live_with_key(
    store: &SqliteStore,
    query: &CountLiveWithKey,
) -> Result<u64, StoreError> {
    let pool = store.ready().await?;
    let count: i64 = sqlx::query_scalar(COUNT_LIVE_KEY.as_str())
        .bind(i64::from(query.key.get()))
        .bind(micros(query.now))
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
