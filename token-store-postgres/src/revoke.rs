//! Revocation: the selector's matches and all their descendants, locked `FOR UPDATE` round by
//! round until no new descendant appears, revoked with an event each and announced with
//! `pg_notify` in the same transaction.

use std::collections::HashSet;

use sqlx::Row as _;
use sqlx::postgres::PgConnection;
use token_core::{AuditEvent, RevokeRequest, RevokeSelector, StoreError, TokenId};
use token_store_sql::{micros, micros_ceil, revoke_event, unnamed_revoke_event};

use crate::audit::append_events;
use crate::codec::Row;
use crate::error::{backend_in, corrupt};
use crate::statements::{bind_all, q};
use crate::{PgStore, commit, feed, rollback};

/// Most rounds a revocation spends locking newly found descendants before giving up with
/// [`StoreError::Conflict`] (each round handles everything committed meanwhile; more than a few
/// rounds means tokens are being derived faster than they can be revoked).
const MAX_REVOKE_ROUNDS: usize = 64;

/// [`TokenStore::revoke`](token_core::TokenStore::revoke): see
/// [Concurrency model](crate#concurrency-model) for why no child escapes.
pub(crate) async fn revoke(
    store: &PgStore,
    request: &RevokeRequest,
) -> Result<Vec<AuditEvent>, StoreError> {
    // A zero limit revokes nothing, but an `IssuedBefore` cut-off is still kept.
    let keeps_cutoff = matches!(request.selector, RevokeSelector::IssuedBefore(_));
    if request.limit == Some(0) && !keeps_cutoff {
        return Ok(Vec::new());
    }
    let mut tx = store.begin().await?;
    if let RevokeSelector::IssuedBefore(cutoff) = request.selector {
        // First, so every insert and rotation that read the old cut-off (FOR SHARE) has
        // committed before the selection below reads its snapshot, and every later one waits
        // for our commit and then reads the new cut-off.
        // Never past the revoker's own time (a cut-off is only ever raised).
        sqlx::query(q(&store.inner.sql.raise_cutoff))
            .bind(micros_ceil(cutoff.min(request.at)))
            .execute(&mut *tx)
            .await
            .map_err(backend_in)?;
    }
    let rows = lock_reached(store, &mut tx, request).await?;
    let mut locked: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
    let mut revoked = Vec::new();
    let mut events = Vec::new();
    for row in rows.iter().map(Row) {
        let raw_id = row.raw_id()?;
        let (id, event) = row_event(request, &row);
        revoked.extend(id);
        events.push(event);
        locked.push(raw_id);
    }
    if locked.is_empty() {
        // Nothing to revoke; a raised cut-off still commits.
        if matches!(request.selector, RevokeSelector::IssuedBefore(_)) {
            commit(tx).await?;
        } else {
            rollback(tx).await?;
        }
        return Ok(Vec::new());
    }
    let revocation = request.revocation();
    sqlx::query(q(&store.inner.sql.revoke))
        .bind(locked)
        .bind(micros(revocation.at))
        .bind(revocation.reason)
        .bind(revocation.actor)
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    append_events(store, &mut tx, &events).await?;
    // Before the commit: PostgreSQL delivers notifications only when it commits.
    feed::announce(store, &mut tx, &revoked).await?;
    commit(tx).await?;
    Ok(events)
}

/// Every unrevoked token `request` reaches (its selector's matches and all their descendants),
/// locked `FOR UPDATE` round by round until a round finds nothing new, as rows of
/// `lock_for_revoke`. Suspension selects the same way.
pub(crate) async fn lock_reached(
    store: &PgStore,
    tx: &mut PgConnection,
    request: &RevokeRequest,
) -> Result<Vec<sqlx::postgres::PgRow>, StoreError> {
    // Every id found so far (revoked or not), and the unrevoked rows we locked.
    let mut known: Vec<Vec<u8>> = Vec::new();
    let mut known_set: HashSet<Vec<u8>> = HashSet::new();
    let mut locked = Vec::new();
    // Unused tokens are matched once, under their row locks (see `lock_unused`); the rounds then
    // follow their descendants only.
    let mut seed = match request.selector {
        RevokeSelector::UnusedSince(since) => Some(lock_unused(store, tx, request, since).await?),
        _ => None,
    };
    for round in 0..MAX_REVOKE_ROUNDS {
        // A bounded revocation takes its matches once (so it never exceeds its limit); later
        // rounds follow descendants. An unbounded one re-reads the selector every round.
        let unused = matches!(request.selector, RevokeSelector::UnusedSince(_));
        let matches = !unused && (round == 0 || request.limit.is_none());
        let mut found = select_targets(store, tx, request, &known, matches).await?;
        if round == 0 {
            found.extend(seed.take().unwrap_or_default());
        }
        let new: Vec<Vec<u8>> = found
            .into_iter()
            .filter(|id| known_set.insert(id.clone()))
            .collect();
        if new.is_empty() {
            return Ok(locked);
        }
        // Lock the new unrevoked rows; the next round re-reads with a snapshot taken after
        // these locks, so children committed before them are found.
        let rows = sqlx::query(q(&store.inner.sql.lock_for_revoke))
            .bind(new.clone())
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_in)?;
        locked.extend(rows);
        known.extend(new);
    }
    Err(StoreError::Conflict {
        message: format!(
            "revocation did not settle after {MAX_REVOKE_ROUNDS} rounds: tokens are being derived faster than they are revoked"
        ),
    })
}

/// The tokens `revoke(UnusedSince(since))` matches, locked: candidates from a snapshot (at most
/// the request's limit, longest-unused first), then the condition re-checked on each under its
/// row lock, so a use committed after the snapshot keeps its token.
async fn lock_unused(
    store: &PgStore,
    conn: &mut PgConnection,
    request: &RevokeRequest,
    since: time::OffsetDateTime,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let sql = &store.inner.sql;
    let (since, at) = (micros_ceil(since), micros(request.at));
    let candidates: Vec<Vec<u8>> = sqlx::query_scalar(q(&sql.unused_candidates))
        .bind(since)
        .bind(at)
        .bind(request.limit.map(i64::from))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend_in)?;
    if candidates.is_empty() {
        return Ok(candidates);
    }
    sqlx::query_scalar(q(&sql.lock_unused))
        .bind(candidates)
        .bind(since)
        .bind(at)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend_in)
}

/// The ids the selector matches (when `matches` is set) plus all descendants of them and of
/// `known`, read with a fresh snapshot (see [`Sql::revoke_sql`](crate::statements::Sql)).
async fn select_targets(
    store: &PgStore,
    conn: &mut PgConnection,
    request: &RevokeRequest,
    known: &[Vec<u8>],
    matches: bool,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let (sql, args) = store.inner.sql.revoke_sql(request, matches);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .bind(known.to_vec())
        .fetch_all(&mut *conn)
        .await
        .map_err(backend_in)?;
    rows.iter()
        .map(|row| {
            row.try_get::<Vec<u8>, _>("id")
                .map_err(|e| corrupt(format!("tokens: column id: unreadable ({e})")))
        })
        .collect()
}

/// The `Revoked` event for a locked row ([`revoke_event`]) and the id it names. A row whose id
/// is not 16 bytes is revoked too; its event names no token ([`unnamed_revoke_event`]).
fn row_event(request: &RevokeRequest, row: &Row<'_>) -> (Option<TokenId>, AuditEvent) {
    match revoke_event(request, row) {
        Some(event) => (event.token_id, event),
        None => (None, unnamed_revoke_event(request, row)),
    }
}
