//! Conversions between rows and token-core types. Every stored value is checked on the way out:
//! a bad value yields [`StoreError::Corrupt`] naming the table, column and token, never a panic and
//! never a record built from garbage.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use token_core::audit::AuditHash;
use token_core::clock::to_unix_micros;
use token_core::{AuditEvent, AuditRecord, Labels, StoreError, TokenId, TokenRecord};

pub(crate) use token_core::columns::{AUDIT_COLUMNS, EVENT_COLUMNS};
use token_core::columns::{
    Columns, count_to_column, decode_audit_record, decode_event, decode_token, duration_to_column,
};

use crate::error::STORE;

/// The columns [`record_from_row`] reads, for `SELECT {TOKEN_COLUMNS} FROM tokens t`. Labels come
/// with the row as a JSON object, so a lookup is one query.
pub(crate) const TOKEN_COLUMNS: &str = "t.id, t.hash, t.hash_key_id, t.prefix, t.subject, \
    t.scopes, t.name, t.description, t.created_at, t.created_by, t.expires_at, t.not_before, \
    t.idle_timeout_us, t.last_used_at, t.use_count, t.max_uses, t.parent_id, t.family_id, \
    t.rotated_from, t.rotated_to, t.revoked_at, t.revoke_reason, t.revoked_by, \
    (SELECT json_group_object(l.key, l.value) FROM token_labels l WHERE l.token_id = t.id) AS labels";

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    to_unix_micros(t)
}

pub(crate) use token_core::clock::to_unix_micros_ceil as micros_ceil;

/// A stored chain hash, checked.
pub(crate) fn audit_hash(bytes: &[u8], table: &str, seq: i64) -> Result<AuditHash, StoreError> {
    token_core::columns::decode_audit_hash(STORE, table, seq, bytes)
}

pub(crate) fn id_bytes(id: TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

pub(crate) fn count_to_sql(value: u64, what: &str) -> Result<i64, StoreError> {
    count_to_column(STORE, value, what)
}

pub(crate) fn duration_to_sql(value: Duration, what: &str) -> Result<i64, StoreError> {
    duration_to_column(STORE, value, what)
}

/// Column access for the shared decoder in [`token_core::columns`].
struct SqliteColumns<'r>(&'r SqliteRow);

impl Columns for SqliteColumns<'_> {
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

fn bytes_to_id(bytes: &[u8]) -> Option<TokenId> {
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(TokenId::from_bytes(bytes))
}

/// The raw id bytes of a row, when they are a valid id (used to name rows that fail to decode).
pub(crate) fn row_id(row: &SqliteRow) -> Option<TokenId> {
    row.try_get::<Vec<u8>, _>("id")
        .ok()
        .and_then(|b| bytes_to_id(&b))
}

/// Builds a [`TokenRecord`] from a row selected with [`TOKEN_COLUMNS`].
pub(crate) fn record_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let columns = SqliteColumns(row);
    decode_token(&columns, STORE, |r| {
        // Labels arrive as one JSON object (json_group_object over token_labels).
        match r.opt_text("labels")? {
            None => Ok(Labels::new()),
            Some(json) => serde_json::from_str::<BTreeMap<String, String>>(&json)
                .map_err(|e| r.corrupt("labels", format!("not text key/value pairs ({e})"))),
        }
    })
}

/// Builds an [`AuditRecord`] from a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    decode_audit_record(&SqliteColumns(row), STORE)
}

/// The sequence number and event of a row selected with [`EVENT_COLUMNS`] (or
/// [`AUDIT_COLUMNS`]).
pub(crate) fn event_from_row(row: &SqliteRow) -> Result<(u64, AuditEvent), StoreError> {
    decode_event(&SqliteColumns(row), STORE)
}
