//! Revocation: the selector's matches and all their descendants in one recursive query, revoked
//! under the write lock with an event each, then announced on the feed.

use token_core::{AuditEvent, RevokeRequest, RevokeSelector, StoreError};
use token_store_sql::{micros, micros_ceil, revoke_event, row_id};

use crate::audit::append_events;
use crate::codec::Row;
use crate::error::backend;
use crate::statements::{RAISE_CUTOFF, REVOKE, bind_all, revoke_sql};
use crate::{SqliteStore, commit, feed};

/// [`TokenStore::revoke`](token_core::TokenStore::revoke): one transaction under SQLite's write
/// lock, which a concurrent derive also needs, so no child escapes.
pub(crate) async fn revoke(
    store: &SqliteStore,
    request: &RevokeRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    // A zero limit revokes nothing, but an `IssuedBefore` cut-off is still kept.
    let keeps_cutoff = matches!(request.selector, RevokeSelector::IssuedBefore(_));
    if request.limit == Some(0) && !keeps_cutoff {
        return Ok(Vec::new());
    }
    let Some((sql, args)) = revoke_sql(request) else {
        return Ok(Vec::new());
    };
    let mut tx = store.begin().await?;
    if let RevokeSelector::IssuedBefore(cutoff) = request.selector {
        // Under the same write lock as every insert and rotation, which check it. Never past
        // the revoker's own time: a cut-off can only be raised, so a future one would block
        // every issue until then.
        sqlx::query(RAISE_CUTOFF)
            .bind(micros_ceil(cutoff.min(request.at)))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let revocation = request.revocation();
    let mut revoked = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in rows.iter().map(Row) {
        // A row whose id cannot even be read cannot be named; it matched by its raw key, so
        // revoke it by that key anyway.
        let raw_id = row.raw_id()?;
        events.extend(revoke_event(request, &row));
        sqlx::query(REVOKE)
            .bind(micros(revocation.at))
            .bind(revocation.reason.clone())
            .bind(revocation.actor.clone())
            .bind(raw_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        revoked.extend(row_id(&row));
    }
    append_events(&mut tx, &events).await?;
    commit(tx).await?;
    // After the commit.
    feed::announce(store, revoked);
    Ok(events)
}
