//! Retention sweeps: recording expiries and purging old records, each bounded per call, read
//! from an index range and locked `FOR UPDATE SKIP LOCKED`, so sweeps of several instances split
//! the work.

use token_core::{AuditEvent, AuditKind, MarkExpired, PurgeRequest, StoreError};
use token_store_sql::{id_bytes, micros, micros_ceil, sweeper_event};

use crate::audit::append_events;
use crate::codec::Row;
use crate::error::backend_in;
use crate::statements::q;
use crate::{PgStore, commit, rollback};

/// [`TokenStore::mark_expired`](token_core::TokenStore::mark_expired): rows another sweep has
/// locked are skipped, so each expiry is recorded once.
pub(crate) async fn mark_expired(
    store: &PgStore,
    request: &MarkExpired,
) -> Result<Vec<AuditEvent>, StoreError> {
    let (now, limit) = (request.now, request.limit);
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    let rows = sqlx::query(q(&store.inner.sql.mark_expired))
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_in)?;
    if rows.is_empty() {
        rollback(tx).await?;
        return Ok(Vec::new());
    }
    let mut raw_ids = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows.iter().map(Row) {
        let raw_id = row.raw_id()?;
        // The marker is store-internal: a row that cannot even be named is marked too (so it
        // does not hold the front of every sweep), but not reported.
        events.extend(sweeper_event(AuditKind::Expired, &row, now));
        raw_ids.push(raw_id);
    }
    sqlx::query(q(&store.inner.sql.mark_expired_update))
        .bind(raw_ids)
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    append_events(store, &mut tx, &events).await?;
    commit(tx).await?;
    Ok(events)
}

/// [`TokenStore::purge`](token_core::TokenStore::purge): deletes the records (labels cascade)
/// and appends a `Purged` event each; their audit events stay.
pub(crate) async fn purge(
    store: &PgStore,
    request: &PurgeRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    let rows = sqlx::query(q(&store.inner.sql.purge))
        .bind(micros_ceil(request.revoked_before))
        .bind(micros_ceil(request.expired_before))
        .bind(i64::from(request.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_in)?;
    let mut raw_ids = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows.iter().map(Row) {
        // Deleting a record is a lifecycle change: a row that cannot be named in its event
        // stays.
        let Some(event) = sweeper_event(AuditKind::Purged, &row, request.now) else {
            continue;
        };
        let Some(id) = event.token_id else {
            continue;
        };
        raw_ids.push(id_bytes(id));
        events.push(event);
    }
    if events.is_empty() {
        rollback(tx).await?;
        return Ok(Vec::new());
    }
    // Labels go with their rows (ON DELETE CASCADE); audit events have no foreign key.
    sqlx::query(q(&store.inner.sql.purge_delete))
        .bind(raw_ids)
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    append_events(store, &mut tx, &events).await?;
    commit(tx).await?;
    Ok(events)
}
