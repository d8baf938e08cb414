//! The records: insert (issue and derive), get, rotate, list and count.

use std::sync::Arc;

use sqlx::postgres::PgConnection;
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
use crate::error::{STORE, backend_in, is_unique_violation};
use crate::statements::{SUBJECT_LOCK, bind_all, q};
use crate::{PgStore, commit, rollback};

/// The record `id`, read (and locked, by `sql`) inside the caller's transaction.
async fn fetch_record(
    conn: &mut PgConnection,
    sql: &Arc<str>,
    id: TokenId,
) -> Result<Option<TokenRecord>, StoreError> {
    let row = sqlx::query(q(sql))
        .bind(id_bytes(id))
        .fetch_optional(conn)
        .await
        .map_err(backend_in)?;
    row.as_ref().map(record_from_row).transpose()
}

/// The revocation cut-off if a record created at `created_at` falls before it, read `FOR SHARE`
/// in the caller's transaction: a revocation raising the cut-off updates that row first, so it
/// either waits for this transaction (and then revokes what it inserted) or committed before
/// (and the raised cut-off is read here).
async fn before_cutoff(
    store: &PgStore,
    conn: &mut PgConnection,
    created_at: OffsetDateTime,
) -> Result<Option<OffsetDateTime>, StoreError> {
    let cutoff: Option<Option<i64>> = sqlx::query_scalar(q(&store.inner.sql.cutoff_for_share))
        .fetch_optional(conn)
        .await
        .map_err(backend_in)?;
    cutoff_refusal(STORE, created_at, cutoff.flatten())
}

async fn insert_record(
    store: &PgStore,
    conn: &mut PgConnection,
    record: &TokenRecord,
) -> Result<(), StoreError> {
    let result = bind_all(
        sqlx::query(q(&store.inner.sql.insert_token)),
        token_params(STORE, record)?,
    )
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::AlreadyExists { id: record.id });
        }
        Err(e) => return Err(backend_in(e)),
    }
    insert_labels(store, conn, record).await
}

/// Writes `record`'s labels (after its row, or after an update dropped the old ones).
pub(crate) async fn insert_labels(
    store: &PgStore,
    conn: &mut PgConnection,
    record: &TokenRecord,
) -> Result<(), StoreError> {
    if !record.labels.is_empty() {
        let (keys, values): (Vec<&str>, Vec<&str>) = record
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .unzip();
        sqlx::query(q(&store.inner.sql.insert_labels))
            .bind(id_bytes(record.id))
            .bind(keys)
            .bind(values)
            .execute(&mut *conn)
            .await
            .map_err(backend_in)?;
    }
    Ok(())
}

/// [`TokenStore::insert`](token_core::TokenStore::insert).
pub(crate) async fn insert(
    store: &PgStore,
    insert: &InsertToken,
) -> Result<InsertOutcome, StoreError> {
    let sql = &store.inner.sql;
    let mut tx = store.begin().await?;
    let record = &insert.record;
    if let Some(cutoff) = before_cutoff(store, &mut tx, record.created_at).await? {
        rollback(tx).await?;
        return Ok(InsertOutcome::BeforeRevocationCutoff { cutoff });
    }
    if let Some(parent) = record.parent_id {
        // FOR SHARE conflicts with the FOR UPDATE a revocation takes: the parent cannot be
        // revoked between this check and our commit, and a revocation that locked it first
        // is seen here.
        let parent_record = fetch_record(&mut tx, &sql.get_for_share, parent).await?;
        if let Some(refusal) = parent_refusal(insert, parent_record.as_ref()) {
            rollback(tx).await?;
            return Ok(refusal);
        }
    }
    if let Some(max) = insert.max_live_for_subject {
        sqlx::query(SUBJECT_LOCK)
            .bind(&store.inner.schema)
            .bind(&record.subject)
            .execute(&mut *tx)
            .await
            .map_err(backend_in)?;
        let live: i64 = sqlx::query_scalar(q(&sql.count_live_subject))
            .bind(&record.subject)
            .bind(micros(insert.now))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_in)?;
        if live >= i64::from(max) {
            rollback(tx).await?;
            return Ok(InsertOutcome::SubjectLimitReached);
        }
    }
    insert_record(store, &mut tx, record).await?;
    append_events(store, &mut tx, &insert.events).await?;
    commit(tx).await?;
    Ok(InsertOutcome::Inserted)
}

/// [`TokenStore::get`](token_core::TokenStore::get).
pub(crate) async fn get(
    store: &PgStore,
    id: TokenId,
) -> Result<Option<Arc<TokenRecord>>, StoreError> {
    let pool = store.ready().await?;
    let row = sqlx::query(q(&store.inner.sql.get))
        .bind(id_bytes(id))
        .fetch_optional(pool)
        .await
        .map_err(backend_in)?;
    Ok(row.as_ref().map(record_from_row).transpose()?.map(Arc::new))
}

/// [`TokenStore::rotate`](token_core::TokenStore::rotate).
pub(crate) async fn rotate(
    store: &PgStore,
    rotation: &RotateToken,
) -> Result<RotateOutcome, StoreError> {
    let sql = &store.inner.sql;
    let mut tx = store.begin().await?;
    if let Some(cutoff) = before_cutoff(store, &mut tx, rotation.successor.created_at).await? {
        rollback(tx).await?;
        return Ok(RotateOutcome::BeforeRevocationCutoff { cutoff });
    }
    // The predecessor and its children locked in id order first (the rotation moves them), so a
    // concurrent usage flush or revocation, which lock in id order too, never waits in a cycle.
    sqlx::query(q(&sql.lock_for_rotate))
        .bind(id_bytes(rotation.predecessor))
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    // Locked FOR UPDATE: the uses left as read under the row lock, so none is granted twice.
    let old = fetch_record(&mut tx, &sql.get_for_update, rotation.predecessor).await?;
    let successor = match rotation_successor(rotation, old.as_ref()) {
        Ok(successor) => successor,
        Err(refusal) => {
            rollback(tx).await?;
            return Ok(refusal);
        }
    };
    insert_record(store, &mut tx, &successor).await?;
    sqlx::query(q(&sql.rotate))
        .bind(id_bytes(rotation.predecessor))
        .bind(id_bytes(successor.id))
        .bind(micros(rotation.predecessor_expires_at))
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    // The children follow the successor, so revoking it reaches them. A derive under the
    // predecessor holds it FOR SHARE, which our FOR UPDATE waited for: it committed before this
    // statement's snapshot (and is moved) or it waits and then sees the predecessor rotated.
    sqlx::query(q(&sql.reparent))
        .bind(id_bytes(rotation.predecessor))
        .bind(id_bytes(successor.id))
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    append_events(store, &mut tx, &rotation.events).await?;
    crate::feed::announce_rotation(store, &mut tx, rotation.predecessor).await?;
    commit(tx).await?;
    Ok(RotateOutcome::Rotated)
}

/// [`TokenStore::list`](token_core::TokenStore::list).
pub(crate) async fn list(
    store: &PgStore,
    query: &ListQuery,
) -> Result<Vec<TokenRecord>, StoreError> {
    let pool = store.ready().await?;
    let (sql, args) = store.inner.sql.list_sql(query);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(pool)
        .await
        .map_err(backend_in)?;
    rows.iter().map(record_from_row).collect()
}

/// [`TokenStore::count_live_with_key`](token_core::TokenStore::count_live_with_key).
pub(crate) async fn count_live_with_key(
    store: &PgStore,
    query: &CountLiveWithKey,
) -> Result<u64, StoreError> {
    let pool = store.ready().await?;
    let count: i64 = sqlx::query_scalar(q(&store.inner.sql.count_live_key))
        .bind(i64::from(query.key.get()))
        .bind(micros(query.now))
        .fetch_one(pool)
        .await
        .map_err(backend_in)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
