//! The audit trail: appends (inside a change's transaction, see [`crate::chain`]), queries,
//! the retention checkpoint and truncation.

use sqlx::postgres::PgConnection;
use token_core::audit_key::check_links_before_truncation;
use token_core::{
    AuditCheckpoint, AuditEvent, AuditHash, AuditKeyring, AuditQuery, AuditRecord, StoreError,
    TruncateAudit,
};
use token_store_sql::{decode_checkpoint, encode_checkpoint_mac, micros_ceil};

use crate::codec::{audit_from_row, audit_hash};
use crate::error::{STORE, backend_in};
use crate::statements::{bind_all, q};
use crate::{PgStore, commit, rollback};

impl PgStore {
    /// Chains every audit event appended from now on with the current key of `keys`: a keyed
    /// audit chain ([`token_core::audit_key`]), each event's `chain_key_id` naming the key. Give
    /// the manager the same keyring
    /// ([`ManagerBuilder::audit_keys`](token_core::ManagerBuilder::audit_keys)) to verify it.
    /// Clones share the setting; set it before the store is used, on every instance that writes.
    ///
    /// **Without audit keys (the default) the chain is unkeyed**: it detects accidental or partial
    /// tampering, not a writer who rewrites events and recomputes the hashes. The store cannot
    /// invent a key that lives outside the database, so keying is the host's choice: load the key
    /// from a secret manager, never from this database.
    ///
    /// ```no_run
    /// use token_core::{AuditKey, AuditKeyring, KeyId};
    /// use token_store_postgres::PgStore;
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let keys = AuditKeyring::new(AuditKey::new(KeyId::new(1), [7; 32])); // from your secrets
    /// let store = PgStore::connect("postgres://app@db.internal/app")
    ///     .await?
    ///     .with_audit_keys(keys);
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_audit_keys(self, keys: AuditKeyring) -> Self {
        self.inner.sql.chain.set_keys(keys);
        self
    }
}

/// Appends `events` to the audit chain inside the caller's transaction (see
/// [Audit hash chain](crate#audit-hash-chain)).
pub(crate) async fn append_events(
    store: &PgStore,
    conn: &mut PgConnection,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    store.inner.sql.chain.append(conn, events).await
}

/// [`TokenStore::append_audit`](token_core::TokenStore::append_audit).
pub(crate) async fn append_audit(store: &PgStore, events: &[AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    append_events(store, &mut tx, events).await?;
    commit(tx).await
}

/// [`TokenStore::query_audit`](token_core::TokenStore::query_audit).
pub(crate) async fn query_audit(
    store: &PgStore,
    query: &AuditQuery,
) -> Result<Vec<AuditRecord>, StoreError> {
    let pool = store.ready().await?;
    if query.limit == 0 {
        return Ok(Vec::new());
    }
    let (sql, args) = store.inner.sql.audit_query_sql(query);
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(pool)
        .await
        .map_err(backend_in)?;
    rows.iter().map(audit_from_row).collect()
}

/// [`TokenStore::audit_checkpoint`](token_core::TokenStore::audit_checkpoint).
pub(crate) async fn audit_checkpoint(
    store: &PgStore,
) -> Result<Option<AuditCheckpoint>, StoreError> {
    let pool = store.ready().await?;
    type Row = (i64, Vec<u8>, Option<i64>, Option<Vec<u8>>, Option<i64>);
    let row: Option<Row> = sqlx::query_as(q(&store.inner.sql.checkpoint))
        .fetch_optional(pool)
        .await
        .map_err(backend_in)?;
    row.map(|(seq, hash, at, mac, mac_key_id)| {
        decode_checkpoint(STORE, seq, &hash, at, mac.as_deref(), mac_key_id)
    })
    .transpose()
}

/// [`TokenStore::truncate_audit`](token_core::TokenStore::truncate_audit): under the chain lock,
/// deletes the longest prefix of old events and moves the checkpoint to its last event.
pub(crate) async fn truncate_audit(
    store: &PgStore,
    request: &TruncateAudit,
) -> Result<u64, StoreError> {
    let (before, limit) = (request.before, request.limit);
    if limit == 0 {
        return Ok(0);
    }
    let before = micros_ceil(before);
    let mut tx = store.begin().await?;
    // The chain lock: no append (nor another truncation) runs meanwhile, so the prefix read
    // below is the chain's real start and the checkpoint never moves backwards.
    store.inner.sql.chain.lock(&mut tx).await?;
    let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(q(&store.inner.sql.truncate_scan))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_in)?;
    // The longest prefix of old events: it ends at the first event at or after `before`.
    let prefix = rows.iter().take_while(|(_, at, _)| *at < before).count();
    let Some((last_seq, last_at, last_hash)) = prefix.checked_sub(1).map(|i| &rows[i]) else {
        rollback(tx).await?;
        return Ok(0);
    };
    let hash = audit_hash(last_hash, "audit_events", *last_seq)?;
    // Never seal a checkpoint over events that do not verify: a writer who backdated (or
    // re-hashed) one would otherwise have retention vouch for it.
    let (sql, args) = store
        .inner
        .sql
        .audit_query_sql(&AuditQuery::new().limit(prefix as u32));
    let removed: Vec<AuditRecord> = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), args)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_in)?
        .iter()
        .map(audit_from_row)
        .collect::<Result<_, _>>()?;
    let current: Option<(i64, Vec<u8>)> = sqlx::query_as(q(&store.inner.sql.checkpoint_hash))
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_in)?;
    let start = match current {
        Some((seq, hash)) => audit_hash(&hash, "audit_checkpoint", seq)?,
        None => AuditHash::GENESIS,
    };
    let keys = store.inner.sql.chain.keys();
    check_links_before_truncation(STORE, keys.as_deref(), &start, &removed)?;
    let checkpoint = store
        .inner
        .sql
        .chain
        .seal_checkpoint(*last_seq, hash, *last_at)?;
    let (mac, mac_key_id) = encode_checkpoint_mac(&checkpoint);
    let deleted = sqlx::query(q(&store.inner.sql.truncate_delete))
        .bind(*last_seq)
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?
        .rows_affected();
    sqlx::query(q(&store.inner.sql.truncate_checkpoint))
        .bind(*last_seq)
        .bind(hash.as_bytes().to_vec())
        .bind(*last_at)
        .bind(mac)
        .bind(mac_key_id)
        .execute(&mut *tx)
        .await
        .map_err(backend_in)?;
    commit(tx).await?;
    Ok(deleted)
}
