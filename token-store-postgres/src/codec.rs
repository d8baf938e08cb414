//! Rows to records: the shared decoders of `token-store-sql` over PostgreSQL rows. Every column
//! is checked when read: invalid stored data becomes [`StoreError::Corrupt`] naming the table,
//! column and token, never a panic and never a record.

use sqlx::Row as _;
use sqlx::postgres::PgRow;
use token_core::audit::AuditHash;
use token_core::{AuditEvent, AuditRecord, Labels, StoreError, TokenRecord};
use token_store_sql::{
    Columns, TokenRow, decode_audit_hash, decode_audit_record, decode_event, decode_token,
};

use crate::error::{STORE, corrupt};

/// The `tokens` columns [`record_from_row`] reads, for a query over `tokens t`; `{schema}` is
/// replaced by the quoted schema. Labels come as two arrays sorted by key.
pub(crate) const TOKEN_COLUMNS: &str = "t.id, t.hash, t.hash_key_id, t.prefix, t.subject, \
    t.scopes, t.name, t.description, t.created_at, t.created_by, t.expires_at, t.not_before, \
    t.idle_timeout_us, t.last_used_at, t.use_count, t.max_uses, t.parent_id, t.family_id, \
    t.rotated_from, t.rotated_to, t.revoked_at, t.revoke_reason, t.revoked_by, \
    t.suspended_at, t.metadata, t.allowed_cidrs, t.dpop_jkt, t.use_refill, t.next_refill_at, \
    t.rate_limits, \
    ARRAY(SELECT l.key FROM {schema}.token_labels l WHERE l.token_id = t.id ORDER BY l.key) \
        AS label_keys, \
    ARRAY(SELECT l.value FROM {schema}.token_labels l WHERE l.token_id = t.id ORDER BY l.key) \
        AS label_values";

/// A stored chain hash, checked: anything but 32 bytes is [`StoreError::Corrupt`].
pub(crate) fn audit_hash(bytes: &[u8], table: &str, seq: i64) -> Result<AuditHash, StoreError> {
    decode_audit_hash(STORE, table, seq, bytes)
}

/// A row, as the shared decoders read it.
pub(crate) struct Row<'r>(pub(crate) &'r PgRow);

impl Columns for Row<'_> {
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String> {
        self.0.try_get(column).map_err(|e| e.to_string())
    }
    fn int(&self, column: &str) -> Result<Option<i64>, String> {
        self.0.try_get(column).map_err(|e| e.to_string())
    }
    fn text(&self, column: &str) -> Result<Option<String>, String> {
        self.0.try_get(column).map_err(|e| e.to_string())
    }
}

/// A row selected with [`TOKEN_COLUMNS`].
impl TokenRow for Row<'_> {
    fn record(&self) -> Result<TokenRecord, StoreError> {
        decode_token(self, STORE, |r| {
            // Labels arrive as two aggregated arrays.
            let keys: Vec<String> = self
                .0
                .try_get("label_keys")
                .map_err(|e| r.corrupt("label_keys", format!("unreadable ({e})")))?;
            let values: Vec<String> = self
                .0
                .try_get("label_values")
                .map_err(|e| r.corrupt("label_values", format!("unreadable ({e})")))?;
            if keys.len() != values.len() {
                return Err(r.corrupt("token_labels", "label keys and values do not pair up"));
            }
            Ok(keys.into_iter().zip(values).collect::<Labels>())
        })
    }
}

impl Row<'_> {
    /// The `id` column as stored: the key to update or delete the row by, even when it is not a
    /// token id.
    pub(crate) fn raw_id(&self) -> Result<Vec<u8>, StoreError> {
        self.0
            .try_get("id")
            .map_err(|e| corrupt(format!("tokens: column id: unreadable ({e})")))
    }
}

/// Decodes a row selected with [`TOKEN_COLUMNS`].
pub(crate) fn record_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    Row(row).record()
}

/// Decodes a row selected with [`AUDIT_COLUMNS`](token_store_sql::AUDIT_COLUMNS).
pub(crate) fn audit_from_row(row: &PgRow) -> Result<AuditRecord, StoreError> {
    decode_audit_record(&Row(row), STORE)
}

/// The sequence number and event of a row selected with
/// [`EVENT_COLUMNS`](token_store_sql::EVENT_COLUMNS) (or
/// [`AUDIT_COLUMNS`](token_store_sql::AUDIT_COLUMNS)).
pub(crate) fn event_from_row(row: &PgRow) -> Result<(u64, AuditEvent), StoreError> {
    decode_event(&Row(row), STORE)
}
