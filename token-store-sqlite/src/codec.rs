//! Conversions between rows and token-core types. Every stored value is checked on the way out:
//! a bad value yields [`StoreError::Corrupt`] naming the table, column and token, never a panic and
//! never a record built from garbage.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use token_core::audit::AuditHash;
use token_core::clock::{from_unix_micros, to_unix_micros};
use token_core::{
    AuditEvent, AuditKind, AuditRecord, KeyId, Labels, Revocation, ScopeSet, StoreError, TokenHash,
    TokenId, TokenRecord,
};

use crate::error::{corrupt, unrepresentable};

/// The columns [`record_from_row`] reads, for `SELECT {TOKEN_COLUMNS} FROM tokens t`. Labels come
/// with the row as a JSON object, so a lookup is one query.
pub(crate) const TOKEN_COLUMNS: &str = "t.id, t.hash, t.hash_key_id, t.prefix, t.subject, \
    t.scopes, t.name, t.description, t.created_at, t.created_by, t.expires_at, t.not_before, \
    t.idle_timeout_us, t.last_used_at, t.use_count, t.max_uses, t.parent_id, t.family_id, \
    t.rotated_from, t.rotated_to, t.revoked_at, t.revoke_reason, t.revoked_by, \
    (SELECT json_group_object(l.key, l.value) FROM token_labels l WHERE l.token_id = t.id) AS labels";

/// The columns [`event_from_row`] reads (every column of a version-1 event).
pub(crate) const EVENT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail";

/// The columns [`audit_from_row`] reads: [`EVENT_COLUMNS`] and the chain hash.
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail, hash";

pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    to_unix_micros(t)
}

/// The smallest whole microsecond at or after `t`: for a stored (whole-microsecond) value `a`,
/// `a < t` exactly when `a < micros_ceil(t)`, and `a >= t` exactly when `a >= micros_ceil(t)`.
pub(crate) fn micros_ceil(t: OffsetDateTime) -> i64 {
    let m = to_unix_micros(t);
    match from_unix_micros(m) {
        Some(back) if back < t => m.saturating_add(1),
        _ => m,
    }
}

/// A stored chain hash, checked.
pub(crate) fn audit_hash(bytes: &[u8], table: &str, seq: i64) -> Result<AuditHash, StoreError> {
    AuditHash::from_slice(bytes).ok_or_else(|| {
        corrupt(format!(
            "{table}.hash of seq {seq}: a chain hash must be 32 bytes, found {}",
            bytes.len()
        ))
    })
}

pub(crate) fn id_bytes(id: TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

pub(crate) fn count_to_sql(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| unrepresentable(format!("{what} {value} exceeds i64::MAX")))
}

pub(crate) fn duration_to_sql(value: Duration, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value.as_micros()).map_err(|_| {
        unrepresentable(format!(
            "{what} {value:?} exceeds the storable maximum (i64::MAX microseconds)"
        ))
    })
}

/// Reads columns of one row of `table`, naming the row in errors.
struct Reader<'r> {
    row: &'r SqliteRow,
    table: &'static str,
    /// How the row is named in errors (`token <id>`, `seq <n>`), once known.
    name: String,
}

impl<'r> Reader<'r> {
    fn err(&self, column: &str, what: impl std::fmt::Display) -> StoreError {
        corrupt(format!("{}.{column} of {}: {what}", self.table, self.name))
    }

    fn get<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
    {
        self.row
            .try_get::<T, _>(column)
            .map_err(|e| self.err(column, format!("unreadable value ({e})")))
    }

    fn id(&self, column: &str) -> Result<TokenId, StoreError> {
        let bytes: Vec<u8> = self.get(column)?;
        bytes_to_id(&bytes).ok_or_else(|| {
            self.err(
                column,
                format!("a token id must be 16 bytes, found {}", bytes.len()),
            )
        })
    }

    fn opt_id(&self, column: &str) -> Result<Option<TokenId>, StoreError> {
        match self.get::<Option<Vec<u8>>>(column)? {
            None => Ok(None),
            Some(bytes) => bytes_to_id(&bytes).map(Some).ok_or_else(|| {
                self.err(
                    column,
                    format!("a token id must be 16 bytes, found {}", bytes.len()),
                )
            }),
        }
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        let value: i64 = self.get(column)?;
        from_unix_micros(value)
            .ok_or_else(|| self.err(column, format!("timestamp {value} µs is out of range")))
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        match self.get::<Option<i64>>(column)? {
            None => Ok(None),
            Some(value) => from_unix_micros(value)
                .map(Some)
                .ok_or_else(|| self.err(column, format!("timestamp {value} µs is out of range"))),
        }
    }

    fn count(&self, column: &str) -> Result<u64, StoreError> {
        let value: i64 = self.get(column)?;
        u64::try_from(value).map_err(|_| self.err(column, format!("negative count {value}")))
    }

    fn opt_count(&self, column: &str) -> Result<Option<u64>, StoreError> {
        match self.get::<Option<i64>>(column)? {
            None => Ok(None),
            Some(value) => u64::try_from(value)
                .map(Some)
                .map_err(|_| self.err(column, format!("negative count {value}"))),
        }
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
    let mut r = Reader {
        row,
        table: "tokens",
        name: "a row with an unreadable id".to_owned(),
    };
    let id = r.id("id")?;
    r.name = format!("token {id}");

    let hash_bytes: Vec<u8> = r.get("hash")?;
    let hash = TokenHash::from_slice(&hash_bytes).ok_or_else(|| {
        r.err(
            "hash",
            format!(
                "a hash must be 32 bytes, found {} (truncated?)",
                hash_bytes.len()
            ),
        )
    })?;
    let key: i64 = r.get("hash_key_id")?;
    let hash_key_id = u32::try_from(key)
        .map(KeyId::new)
        .map_err(|_| r.err("hash_key_id", format!("key id {key} is not a u32")))?;
    let scopes_text: String = r.get("scopes")?;
    let scopes = ScopeSet::parse(&scopes_text)
        .map_err(|e| r.err("scopes", format!("invalid scope string ({e})")))?;
    let idle_timeout = r.opt_count("idle_timeout_us")?.map(Duration::from_micros);
    let labels_json: Option<String> = r.get("labels")?;
    let labels = match labels_json {
        None => Labels::new(),
        Some(json) => serde_json::from_str::<BTreeMap<String, String>>(&json).map_err(|e| {
            corrupt(format!(
                "token_labels of {}: labels are not text key/value pairs ({e})",
                r.name
            ))
        })?,
    };
    let revocation = match r.opt_time("revoked_at")? {
        None => None,
        Some(at) => {
            let reason: Option<String> = r.get("revoke_reason")?;
            let reason = reason
                .ok_or_else(|| r.err("revoke_reason", "missing although revoked_at is set"))?;
            Some(Revocation {
                at,
                reason,
                actor: r.get("revoked_by")?,
            })
        }
    };
    Ok(TokenRecord {
        id,
        hash,
        hash_key_id,
        prefix: r.get("prefix")?,
        subject: r.get("subject")?,
        scopes,
        name: r.get("name")?,
        description: r.get("description")?,
        labels,
        created_at: r.time("created_at")?,
        created_by: r.get("created_by")?,
        expires_at: r.opt_time("expires_at")?,
        not_before: r.opt_time("not_before")?,
        idle_timeout,
        last_used_at: r.opt_time("last_used_at")?,
        use_count: r.count("use_count")?,
        max_uses: r.opt_count("max_uses")?,
        parent_id: r.opt_id("parent_id")?,
        family_id: r.id("family_id")?,
        rotated_from: r.opt_id("rotated_from")?,
        rotated_to: r.opt_id("rotated_to")?,
        revocation,
    })
}

/// Builds an [`AuditRecord`] from a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &SqliteRow) -> Result<AuditRecord, StoreError> {
    let (seq, event) = event_from_row(row)?;
    let r = Reader {
        row,
        table: "audit_events",
        name: format!("event seq {seq}"),
    };
    let bytes: Vec<u8> = r.get("hash")?;
    let hash = AuditHash::from_slice(&bytes).ok_or_else(|| {
        r.err(
            "hash",
            format!(
                "a chain hash must be 32 bytes, found {} (truncated?)",
                bytes.len()
            ),
        )
    })?;
    Ok(AuditRecord { seq, event, hash })
}

/// The sequence number and event of a row selected with [`EVENT_COLUMNS`] (or
/// [`AUDIT_COLUMNS`]).
pub(crate) fn event_from_row(row: &SqliteRow) -> Result<(u64, AuditEvent), StoreError> {
    let mut r = Reader {
        row,
        table: "audit_events",
        name: "a row with an unreadable seq".to_owned(),
    };
    let seq = r.count("seq")?;
    r.name = format!("event seq {seq}");
    let kind_text: String = r.get("kind")?;
    let kind = AuditKind::parse(&kind_text)
        .ok_or_else(|| r.err("kind", format!("unknown event kind {kind_text:?}")))?;
    let mut event = AuditEvent::new(kind, r.time("at")?);
    event.token_id = r.opt_id("token_id")?;
    event.fingerprint = r.get("fingerprint")?;
    event.subject = r.get("subject")?;
    event.actor = r.get("actor")?;
    event.client_ip = r.get("client_ip")?;
    event.user_agent = r.get("user_agent")?;
    event.request_id = r.get("request_id")?;
    event.reason = r.get("reason")?;
    event.detail = r.get("detail")?;
    Ok((seq, event))
}
