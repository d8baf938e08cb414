//! Managing tokens after issue: suspension (the rows revocation would reach, locked the same
//! way) and in-place updates (the token locked, then each child locked and narrowed under its
//! parent), each one transaction announced with `pg_notify`.

use std::collections::VecDeque;

use sqlx::postgres::PgConnection;
use token_core::{
    AuditEvent, RevokeRequest, RevokeSelector, StoreError, SuspendRequest, TokenId, TokenRecord,
    UpdateOutcome, UpdateToken,
};
use token_store_sql::{id_bytes, opt_micros, suspend_event, update_params};

use crate::audit::append_events;
use crate::codec::{Row, record_from_row};
use crate::error::{STORE, backend_in};
use crate::revoke::lock_reached;
use crate::statements::{bind_all, q};
use crate::{PgStore, commit, feed, rollback};

/// [`TokenStore::suspend`](token_core::TokenStore::suspend): the selector's unrevoked matches
/// and all their descendants, locked round by round as a revocation locks them (so no child
/// derived meanwhile escapes), then suspended or resumed with an event each.
pub(crate) async fn suspend(
    store: &PgStore,
    request: &SuspendRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    if !matches!(
        request.selector,
        RevokeSelector::Token(_)
            | RevokeSelector::Subject(_)
            | RevokeSelector::Family(_)
            | RevokeSelector::Label { .. }
    ) {
        return Ok(Vec::new());
    }
    // The same reach as a revocation of the selector (the request only selects here).
    let selection = RevokeRequest::new(
        request.selector.clone(),
        request.at,
        String::new(),
        request.context.clone(),
    );
    let mut tx = store.begin().await?;
    let rows = lock_reached(store, &mut tx, &selection).await?;
    let mut changed: Vec<TokenId> = Vec::new();
    let mut ids: Vec<Vec<u8>> = Vec::new();
    let mut events = Vec::new();
    for row in rows.iter().map(Row) {
        // A row that does not decode is still suspended, by its raw key (see `suspend_event`).
        if let Some(event) = suspend_event(request, &row) {
            ids.push(row.raw_id()?);
            changed.extend(event.token_id);
            events.push(event);
        }
    }
    if ids.is_empty() {
        rollback(tx).await?;
        return Ok(Vec::new());
    }
    sqlx::query(q(&store.inner.sql.set_suspended))
        .bind(ids)
        .bind(opt_micros(request.suspended_at()))
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    append_events(store, &mut tx, &events).await?;
    feed::announce_changed(store, &mut tx, &changed).await?;
    commit(tx).await?;
    Ok(events)
}

/// [`TokenStore::update`](token_core::TokenStore::update): the token `FOR UPDATE`, then each
/// child of a changed record `FOR UPDATE` (a derive reads its parent `FOR SHARE`, so it either
/// commits first and is narrowed here, or waits and sees the narrowed parent).
pub(crate) async fn update(
    store: &PgStore,
    request: &UpdateToken,
) -> Result<UpdateOutcome, StoreError> {
    let sql = &store.inner.sql;
    let mut tx = store.begin().await?;
    let row = sqlx::query(q(&sql.get_for_update))
        .bind(id_bytes(request.id))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_in)?;
    let Some(current) = row.as_ref().map(record_from_row).transpose()? else {
        rollback(tx).await?;
        return Ok(UpdateOutcome::NotFound);
    };
    if let Err(refused) = request.check_state(&current) {
        rollback(tx).await?;
        return Ok(refused);
    }
    let (updated, event) = match request.apply(&current) {
        Err(widening) => {
            rollback(tx).await?;
            return Ok(UpdateOutcome::Widens(widening));
        }
        Ok(None) => {
            rollback(tx).await?;
            return Ok(UpdateOutcome::Updated {
                record: Box::new(current),
                events: Vec::new(),
            });
        }
        Ok(Some(change)) => change,
    };
    write(store, &mut tx, &updated).await?;
    let mut events = vec![event];
    let mut changed = vec![updated.id];
    let mut parents = VecDeque::from([updated.clone()]);
    while let Some(parent) = parents.pop_front() {
        let rows = sqlx::query(q(&sql.children_for_update))
            .bind(id_bytes(parent.id))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_in)?;
        for row in &rows {
            let child = record_from_row(row)?;
            if let Some((narrowed, event)) = request.narrow_child(&parent, &child) {
                write(store, &mut tx, &narrowed).await?;
                events.push(event);
                changed.push(narrowed.id);
                parents.push_back(narrowed);
            }
        }
    }
    append_events(store, &mut tx, &events).await?;
    feed::announce_changed(store, &mut tx, &changed).await?;
    commit(tx).await?;
    Ok(UpdateOutcome::Updated {
        record: Box::new(updated),
        events,
    })
}

/// Writes the columns an update may change, and the labels.
async fn write(
    store: &PgStore,
    conn: &mut PgConnection,
    record: &TokenRecord,
) -> Result<(), StoreError> {
    let sql = &store.inner.sql;
    bind_all(
        sqlx::query(q(&sql.update_token)).bind(id_bytes(record.id)),
        update_params(STORE, record)?,
    )
    .execute(&mut *conn)
    .await
    .map_err(backend_in)?;
    sqlx::query(q(&sql.delete_labels))
        .bind(id_bytes(record.id))
        .execute(&mut *conn)
        .await
        .map_err(backend_in)?;
    crate::records::insert_labels(store, conn, record).await
}
