//! Rows to records and back. Every column is checked when read: invalid stored data becomes
//! [`StoreError::Corrupt`] naming the table, column and token, never a panic and never a record.

use std::fmt::Write as _;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use token_core::audit::AuditHash;
use token_core::clock::to_unix_micros;
use token_core::{AuditEvent, AuditRecord, Labels, StoreError, TokenId, TokenRecord};

pub(crate) use token_core::columns::{AUDIT_COLUMNS, EVENT_COLUMNS};
use token_core::columns::{
    Columns, count_to_column, decode_audit_record, decode_event, decode_token, duration_to_column,
};

use crate::error::STORE;

/// The `tokens` columns [`record_from_row`] reads, for a query over `tokens t`; `{schema}` is
/// replaced by the quoted schema. Labels come as two arrays sorted by key.
pub(crate) const TOKEN_COLUMNS: &str = "t.id, t.hash, t.hash_key_id, t.prefix, t.subject, \
    t.scopes, t.name, t.description, t.created_at, t.created_by, t.expires_at, t.not_before, \
    t.idle_timeout_us, t.last_used_at, t.use_count, t.max_uses, t.parent_id, t.family_id, \
    t.rotated_from, t.rotated_to, t.revoked_at, t.revoke_reason, t.revoked_by, \
    ARRAY(SELECT l.key FROM {schema}.token_labels l WHERE l.token_id = t.id ORDER BY l.key) \
        AS label_keys, \
    ARRAY(SELECT l.value FROM {schema}.token_labels l WHERE l.token_id = t.id ORDER BY l.key) \
        AS label_values";

/// The bytes stored for an id.
pub(crate) fn id_bytes(id: TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    to_unix_micros(t)
}

pub(crate) use token_core::clock::to_unix_micros_ceil as micros_ceil;

/// A stored chain hash, checked: anything but 32 bytes is [`StoreError::Corrupt`].
pub(crate) fn audit_hash(bytes: &[u8], table: &str, seq: i64) -> Result<AuditHash, StoreError> {
    token_core::columns::decode_audit_hash(STORE, table, seq, bytes)
}

pub(crate) fn opt_micros(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(to_unix_micros)
}

pub(crate) fn count_to_sql(value: u64, what: &str) -> Result<i64, StoreError> {
    count_to_column(STORE, value, what)
}

pub(crate) fn duration_to_sql(value: Duration, what: &str) -> Result<i64, StoreError> {
    duration_to_column(STORE, value, what)
}

/// Lower-case hex, for naming rows whose id column itself is invalid.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Decodes stored id bytes.
pub(crate) fn id_from_bytes(bytes: &[u8]) -> Option<TokenId> {
    <[u8; 16]>::try_from(bytes).ok().map(TokenId::from_bytes)
}

/// Column access for the shared decoder in [`token_core::columns`].
struct PgColumns<'r>(&'r PgRow);

impl Columns for PgColumns<'_> {
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

/// Decodes a row selected with [`TOKEN_COLUMNS`].
pub(crate) fn record_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    decode_token(&PgColumns(row), STORE, |r| {
        // Labels arrive as two aggregated arrays.
        let keys: Vec<String> = row
            .try_get("label_keys")
            .map_err(|e| r.corrupt("label_keys", format!("unreadable ({e})")))?;
        let values: Vec<String> = row
            .try_get("label_values")
            .map_err(|e| r.corrupt("label_values", format!("unreadable ({e})")))?;
        if keys.len() != values.len() {
            return Err(r.corrupt("token_labels", "label keys and values do not pair up"));
        }
        Ok(keys.into_iter().zip(values).collect::<Labels>())
    })
}

/// Decodes a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &PgRow) -> Result<AuditRecord, StoreError> {
    decode_audit_record(&PgColumns(row), STORE)
}

/// The sequence number and event of a row selected with [`EVENT_COLUMNS`] (or
/// [`AUDIT_COLUMNS`]).
pub(crate) fn event_from_row(row: &PgRow) -> Result<(u64, AuditEvent), StoreError> {
    decode_event(&PgColumns(row), STORE)
}
