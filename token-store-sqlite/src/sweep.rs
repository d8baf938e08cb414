//! Retention sweeps: recording expiries and purging old records, each bounded per call and read
//! from an index range.

use token_core::{AuditEvent, AuditKind, MarkExpired, PurgeRequest, StoreError};
use token_store_sql::{micros, micros_ceil, sweeper_event};

use crate::audit::append_events;
use crate::codec::Row;
use crate::error::backend;
use crate::statements::{MARK_EXPIRED_SQL, MARK_EXPIRED_UPDATE, PURGE_DELETE, PURGE_SQL};
use crate::{SqliteStore, commit};

/// [`TokenStore::mark_expired`](token_core::TokenStore::mark_expired): concurrent sweeps
/// serialize on the write lock, so each expiry is reported once.
pub(crate) async fn mark_expired(
    store: &SqliteStore,
    request: &MarkExpired,
) -> Result<Vec<AuditEvent>, StoreError> {
    let (now, limit) = (request.now, request.limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    let rows = sqlx::query(MARK_EXPIRED_SQL.as_str())
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows.iter().map(Row) {
        let raw_id = row.raw_id()?;
        // The marker is store-internal: a row that cannot even be named is marked too (so it
        // does not hold the front of every sweep), but not reported.
        events.extend(sweeper_event(AuditKind::Expired, &row, now));
        sqlx::query(MARK_EXPIRED_UPDATE)
            .bind(micros(now))
            .bind(raw_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    append_events(&mut tx, &events).await?;
    commit(tx).await?;
    Ok(events)
}

/// [`TokenStore::purge`](token_core::TokenStore::purge): deletes the records with their labels
/// and appends a `Purged` event each; their audit events stay.
pub(crate) async fn purge(
    store: &SqliteStore,
    request: &PurgeRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::from(request.limit);
    let mut tx = store.begin().await?;
    let rows = sqlx::query(PURGE_SQL.as_str())
        .bind(micros_ceil(request.revoked_before))
        .bind(limit)
        .bind(micros_ceil(request.expired_before))
        .bind(limit)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let mut events = Vec::with_capacity(rows.len());
    for row in rows.iter().map(Row) {
        // Deleting a record is a lifecycle change: a row that cannot be named in its event
        // stays.
        let Some(event) = sweeper_event(AuditKind::Purged, &row, request.now) else {
            continue;
        };
        if event.token_id.is_none() {
            continue;
        }
        let raw_id = row.raw_id()?;
        for sql in PURGE_DELETE {
            sqlx::query(sql)
                .bind(raw_id.clone())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        events.push(event);
    }
    append_events(&mut tx, &events).await?;
    commit(tx).await?;
    Ok(events)
}
