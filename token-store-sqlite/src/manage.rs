//! Managing tokens after issue: suspension (by selector, descendants included) and in-place
//! updates (the token, then each descendant narrowed under it), each one write transaction.

use std::collections::VecDeque;

use token_core::{
    AuditEvent, StoreError, SuspendRequest, TokenId, TokenRecord, UpdateOutcome, UpdateToken,
};
use token_store_sql::{id_bytes, opt_micros, suspend_event, update_params};

use crate::audit::append_events;
use crate::codec::{Row, record_from_row};
use crate::error::{STORE, backend};
use crate::statements::{
    CHILDREN_SQL, DELETE_LABELS, LOOKUP_SQL, SET_SUSPENDED, UPDATE_TOKEN, bind_all, selection_sql,
};
use crate::{SqliteStore, Tx, commit, feed};

/// [`TokenStore::suspend`](token_core::TokenStore::suspend): the selector's unrevoked matches
/// and their descendants, under the write lock a derive also takes, so no child escapes.
pub(crate) async fn suspend(
    store: &SqliteStore,
    request: &SuspendRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    use token_core::RevokeSelector as S;
    if !matches!(
        request.selector,
        S::Token(_) | S::Subject(_) | S::Family(_) | S::Label { .. }
    ) {
        return Ok(Vec::new());
    }
    let Some((sql, args)) = selection_sql(&request.selector, request.at, None) else {
        return Ok(Vec::new());
    };
    let mut tx = store.begin().await?;
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let mut changed = Vec::new();
    let mut events = Vec::new();
    for row in rows.iter().map(Row) {
        // A row that does not decode is still suspended, by its raw key (see `suspend_event`).
        let Some(event) = suspend_event(request, &row) else {
            continue;
        };
        sqlx::query(SET_SUSPENDED)
            .bind(opt_micros(request.suspended_at()))
            .bind(row.raw_id()?)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        changed.extend(event.token_id);
        events.push(event);
    }
    append_events(&mut tx, &events).await?;
    commit(tx).await?;
    feed::announce_changed(store, changed);
    Ok(events)
}

/// [`TokenStore::update`](token_core::TokenStore::update): the token and its descendants read
/// and written inside one write transaction.
pub(crate) async fn update(
    store: &SqliteStore,
    request: &UpdateToken,
) -> Result<UpdateOutcome, StoreError> {
    let mut tx = store.begin().await?;
    let Some(current) = fetch(&mut tx, &LOOKUP_SQL, request.id).await?.pop() else {
        return Ok(UpdateOutcome::NotFound);
    };
    if let Err(refused) = request.check_state(&current) {
        return Ok(refused);
    }
    let (updated, event) = match request.apply(&current) {
        Err(widening) => return Ok(UpdateOutcome::Widens(widening)),
        Ok(None) => {
            return Ok(UpdateOutcome::Updated {
                record: Box::new(current),
                events: Vec::new(),
            });
        }
        Ok(Some(change)) => change,
    };
    write(&mut tx, &updated).await?;
    let mut events = vec![event];
    let mut changed = vec![updated.id];
    let mut parents = VecDeque::from([updated.clone()]);
    while let Some(parent) = parents.pop_front() {
        for child in fetch(&mut tx, &CHILDREN_SQL, parent.id).await? {
            if let Some((narrowed, event)) = request.narrow_child(&parent, &child) {
                write(&mut tx, &narrowed).await?;
                events.push(event);
                changed.push(narrowed.id);
                parents.push_back(narrowed);
            }
        }
    }
    append_events(&mut tx, &events).await?;
    commit(tx).await?;
    feed::announce_changed(store, changed);
    Ok(UpdateOutcome::Updated {
        record: Box::new(updated),
        events,
    })
}

/// The records `sql` selects by `id` (the token itself, or its children).
async fn fetch(tx: &mut Tx, sql: &str, id: TokenId) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_bytes(id))
        .fetch_all(&mut **tx)
        .await
        .map_err(backend)?;
    rows.iter().map(record_from_row).collect()
}

/// Writes the columns an update may change, and the labels.
async fn write(tx: &mut Tx, record: &TokenRecord) -> Result<(), StoreError> {
    bind_all(
        sqlx::query(UPDATE_TOKEN.as_str()),
        update_params(STORE, record)?,
    )
    .bind(id_bytes(record.id))
    .execute(&mut **tx)
    .await
    .map_err(backend)?;
    sqlx::query(DELETE_LABELS)
        .bind(id_bytes(record.id))
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
    crate::records::insert_labels(tx, record).await
}
