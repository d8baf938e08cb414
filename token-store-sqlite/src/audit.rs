//! The audit trail: appends (inside a change's transaction, see [`crate::chain`]), queries,
//! the retention checkpoint and truncation.

use token_core::audit_key::{check_links_before_truncation, seal_checkpoint};
use token_core::clock::from_unix_micros;
use token_core::{
    AuditCheckpoint, AuditEvent, AuditHash, AuditKeyring, AuditQuery, AuditRecord, StoreError,
    TruncateAudit,
};
use token_store_sql::{decode_checkpoint, encode_checkpoint_mac, micros_ceil};

use crate::codec::{audit_from_row, audit_hash};
use crate::error::{STORE, backend};
use crate::statements::{
    CHECKPOINT, CHECKPOINT_HASH, TRUNCATE_CHECKPOINT, TRUNCATE_DELETE, TRUNCATE_SCAN_SQL,
    audit_query_sql, bind_all,
};
use crate::{SqliteStore, Tx, chain, commit, rollback};

/// Appends `events` to the hash chain inside the write transaction `tx` (see [`chain::append`]).
pub(crate) async fn append_events(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    chain::append(tx, events).await
}

/// [`TokenStore::append_audit`](token_core::TokenStore::append_audit).
pub(crate) async fn append_audit(
    store: &SqliteStore,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    append_events(&mut tx, events).await?;
    commit(tx).await
}

/// [`TokenStore::query_audit`](token_core::TokenStore::query_audit).
pub(crate) async fn query_audit(
    store: &SqliteStore,
    query: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let pool = store.ready().await?;
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = audit_query_sql(query);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    rows.iter().map(audit_from_row).collect()
}

/// [`TokenStore::audit_checkpoint`](token_core::TokenStore::audit_checkpoint).
pub(crate) async fn audit_checkpoint(
    store: &SqliteStore,
) -> Result<Option<AuditCheckpoint>, StoreError> {
    let pool = store.ready().await?;
    type Row = (i64, Vec<u8>, Option<i64>, Option<Vec<u8>>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(CHECKPOINT)
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    row.map(|(seq, hash, at, mac, mac_key_id)| {
        decode_checkpoint(STORE, seq, &hash, at, mac.as_deref(), mac_key_id)
    })
    .transpose()
}

/// [`TokenStore::truncate_audit`](token_core::TokenStore::truncate_audit): under the write lock,
/// deletes the longest prefix of old events and moves the checkpoint to its last event.
pub(crate) async fn truncate_audit(
    store: &SqliteStore,
    request: &TruncateAudit,
) -> Result<u64, StoreError> {
    let (before, limit) = (request.before, request.limit);
    if limit == 0 {
        return Ok(0);
    }
    let before = micros_ceil(before);
    let mut tx = store.begin().await?;
    let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(TRUNCATE_SCAN_SQL)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    // The longest prefix of old events: it ends at the first event at or after `before`.
    let prefix = rows.iter().take_while(|(_, at, _)| *at < before).count();
    let Some((last_seq, last_at, last_hash)) = prefix.checked_sub(1).map(|i| &rows[i]) else {
        rollback(tx).await?;
        return Ok(0);
    };
    let hash = audit_hash(last_hash, "audit_events", *last_seq)?;
    // Never seal a checkpoint over events that do not verify: a writer who backdated (or
    // re-hashed) one would otherwise have retention vouch for it.
    let (sql, args) = audit_query_sql(&AuditQuery::new().limit(prefix as u32));
    let removed: Vec<AuditRecord> = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?
        .iter()
        .map(audit_from_row)
        .collect::<Result<_, _>>()?;
    let current: Option<(i64, Vec<u8>)> = sqlx::query_as(CHECKPOINT_HASH)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
    let start = match current {
        Some((seq, hash)) => audit_hash(&hash, "audit_checkpoint", seq)?,
        None => AuditHash::GENESIS,
    };
    check_links_before_truncation(STORE, tx.audit_keys.as_deref(), &start, &removed)?;
    let checkpoint = sealed(tx.audit_keys.as_deref(), *last_seq, hash, *last_at)?;
    let (mac, mac_key_id) = encode_checkpoint_mac(&checkpoint);
    sqlx::query(TRUNCATE_DELETE)
        .bind(*last_seq)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query(TRUNCATE_CHECKPOINT)
        .bind(*last_seq)
        .bind(hash.as_bytes().to_vec())
        .bind(*last_at)
        .bind(mac)
        .bind(mac_key_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    commit(tx).await?;
    Ok(prefix as u64)
}

/// The checkpoint naming the last removed event (`seq`, `hash`, `at` in micros), sealed with
/// the current audit key when the store has audit keys.
fn sealed(
    keys: Option<&AuditKeyring>,
    seq: i64,
    hash: AuditHash,
    at: i64,
) -> Result<AuditCheckpoint, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        store: STORE,
        message,
    };
    let at = from_unix_micros(at).ok_or_else(|| {
        corrupt(format!(
            "audit_events.at of seq {seq}: {at} µs is out of range"
        ))
    })?;
    let seq =
        u64::try_from(seq).map_err(|_| corrupt(format!("audit_events.seq {seq} is negative")))?;
    Ok(seal_checkpoint(keys, seq, hash, at))
}
