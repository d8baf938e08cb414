//! Rows to records and back. Every column is checked when read: invalid stored data becomes
//! [`StoreError::Corrupt`] naming the table, column and token, never a panic and never a record.

use std::fmt::Write as _;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use token_core::audit::AuditHash;
use token_core::clock::{from_unix_micros, to_unix_micros};
use token_core::{
    AuditEvent, AuditKind, AuditRecord, KeyId, Labels, Revocation, ScopeSet, StoreError, TokenHash,
    TokenId, TokenRecord,
};

use crate::error::{corrupt, unrepresentable};

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

/// The `audit_events` columns [`event_from_row`] reads (every column of a version-1 event).
pub(crate) const EVENT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail";

/// The `audit_events` columns [`audit_from_row`] reads: [`EVENT_COLUMNS`] and the chain hash.
pub(crate) const AUDIT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail, hash";

/// The bytes stored for an id.
pub(crate) fn id_bytes(id: TokenId) -> Vec<u8> {
    id.as_bytes().to_vec()
}

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

/// A stored chain hash, checked: anything but 32 bytes is [`StoreError::Corrupt`].
pub(crate) fn audit_hash(bytes: &[u8], table: &str, seq: i64) -> Result<AuditHash, StoreError> {
    AuditHash::from_slice(bytes).ok_or_else(|| {
        corrupt(format!(
            "{table} row seq {seq}: column hash: a chain hash must be 32 bytes, found {}",
            bytes.len()
        ))
    })
}

pub(crate) fn opt_micros(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(to_unix_micros)
}

pub(crate) fn count_to_sql(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| unrepresentable(format!("{what} {value} exceeds the largest storable count")))
}

pub(crate) fn duration_to_sql(value: Duration, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value.as_micros()).map_err(|_| {
        unrepresentable(format!(
            "{what} of {} s exceeds the largest storable duration",
            value.as_secs()
        ))
    })
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

/// Names the row in error messages.
struct RowName<'a> {
    table: &'static str,
    row: &'a str,
}

impl RowName<'_> {
    fn corrupt(&self, column: &str, problem: impl std::fmt::Display) -> StoreError {
        corrupt(format!(
            "{} row {}: column {column}: {problem}",
            self.table, self.row
        ))
    }

    fn get<'r, T>(&self, row: &'r PgRow, column: &str) -> Result<T, StoreError>
    where
        T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        row.try_get::<T, _>(column)
            .map_err(|e| self.corrupt(column, format!("unreadable ({e})")))
    }

    fn time(&self, column: &str, value: i64) -> Result<OffsetDateTime, StoreError> {
        from_unix_micros(value).ok_or_else(|| {
            self.corrupt(
                column,
                format!("timestamp {value} µs is out of the representable range"),
            )
        })
    }

    fn opt_time(&self, row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.get::<Option<i64>>(row, column)?
            .map(|v| self.time(column, v))
            .transpose()
    }

    fn count(&self, column: &str, value: i64) -> Result<u64, StoreError> {
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("negative count {value}")))
    }

    fn id(&self, column: &str, bytes: &[u8]) -> Result<TokenId, StoreError> {
        id_from_bytes(bytes).ok_or_else(|| {
            self.corrupt(
                column,
                format!("expected a 16-byte id, found {} bytes", bytes.len()),
            )
        })
    }

    fn opt_id(&self, row: &PgRow, column: &str) -> Result<Option<TokenId>, StoreError> {
        self.get::<Option<Vec<u8>>>(row, column)?
            .map(|b| self.id(column, &b))
            .transpose()
    }
}

/// Decodes a row selected with [`TOKEN_COLUMNS`].
pub(crate) fn record_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    let raw_id: Vec<u8> = row.try_get("id").map_err(|e| {
        corrupt(format!(
            "tokens row (unknown id): column id: unreadable ({e})"
        ))
    })?;
    let name_text = match id_from_bytes(&raw_id) {
        Some(id) => id.to_string(),
        None => format!("with id bytes x'{}'", hex(&raw_id)),
    };
    let n = RowName {
        table: "tokens",
        row: &name_text,
    };
    let id = n.id("id", &raw_id)?;
    let hash_bytes: Vec<u8> = n.get(row, "hash")?;
    let hash = TokenHash::from_slice(&hash_bytes).ok_or_else(|| {
        n.corrupt(
            "hash",
            format!("expected 32 bytes, found {}", hash_bytes.len()),
        )
    })?;
    let key: i64 = n.get(row, "hash_key_id")?;
    let hash_key_id = u32::try_from(key)
        .map(KeyId::new)
        .map_err(|_| n.corrupt("hash_key_id", format!("{key} is not a key id (0..2^32)")))?;
    let scope_text: String = n.get(row, "scopes")?;
    let scopes = ScopeSet::parse(&scope_text)
        .map_err(|e| n.corrupt("scopes", format!("invalid scope string: {e}")))?;
    let created_at = n.time("created_at", n.get(row, "created_at")?)?;
    let idle_timeout = match n.get::<Option<i64>>(row, "idle_timeout_us")? {
        None => None,
        Some(us) => Some(Duration::from_micros(u64::try_from(us).map_err(|_| {
            n.corrupt("idle_timeout_us", format!("negative duration {us}"))
        })?)),
    };
    let use_count = n.count("use_count", n.get(row, "use_count")?)?;
    let max_uses = match n.get::<Option<i64>>(row, "max_uses")? {
        None => None,
        Some(v) => Some(n.count("max_uses", v)?),
    };
    let family_raw: Vec<u8> = n.get(row, "family_id")?;
    let family_id = n.id("family_id", &family_raw)?;
    let revocation = match n.opt_time(row, "revoked_at")? {
        None => None,
        Some(at) => Some(Revocation {
            at,
            reason: n
                .get::<Option<String>>(row, "revoke_reason")?
                .unwrap_or_default(),
            actor: n.get(row, "revoked_by")?,
        }),
    };
    let keys: Vec<String> = n.get(row, "label_keys")?;
    let values: Vec<String> = n.get(row, "label_values")?;
    if keys.len() != values.len() {
        return Err(n.corrupt("token_labels", "label keys and values do not pair up"));
    }
    let labels: Labels = keys.into_iter().zip(values).collect();
    Ok(TokenRecord {
        id,
        hash,
        hash_key_id,
        prefix: n.get(row, "prefix")?,
        subject: n.get(row, "subject")?,
        scopes,
        name: n.get(row, "name")?,
        description: n.get(row, "description")?,
        labels,
        created_at,
        created_by: n.get(row, "created_by")?,
        expires_at: n.opt_time(row, "expires_at")?,
        not_before: n.opt_time(row, "not_before")?,
        idle_timeout,
        last_used_at: n.opt_time(row, "last_used_at")?,
        use_count,
        max_uses,
        parent_id: n.opt_id(row, "parent_id")?,
        family_id,
        rotated_from: n.opt_id(row, "rotated_from")?,
        rotated_to: n.opt_id(row, "rotated_to")?,
        revocation,
    })
}

/// Decodes a row selected with [`AUDIT_COLUMNS`].
pub(crate) fn audit_from_row(row: &PgRow) -> Result<AuditRecord, StoreError> {
    let (seq, event) = event_from_row(row)?;
    let bytes: Vec<u8> = row.try_get("hash").map_err(|e| {
        corrupt(format!(
            "audit_events row seq {seq}: column hash: unreadable ({e})"
        ))
    })?;
    let stored_seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let hash = audit_hash(&bytes, "audit_events", stored_seq)?;
    Ok(AuditRecord { seq, event, hash })
}

/// The sequence number and event of a row selected with [`EVENT_COLUMNS`] (or
/// [`AUDIT_COLUMNS`]).
pub(crate) fn event_from_row(row: &PgRow) -> Result<(u64, AuditEvent), StoreError> {
    let seq: i64 = row
        .try_get("seq")
        .map_err(|e| corrupt(format!("audit_events row: column seq: unreadable ({e})")))?;
    let name_text = format!("seq {seq}");
    let n = RowName {
        table: "audit_events",
        row: &name_text,
    };
    let seq = n.count("seq", seq)?;
    let at = n.time("at", n.get(row, "at")?)?;
    let kind_text: String = n.get(row, "kind")?;
    let kind = AuditKind::parse(&kind_text)
        .ok_or_else(|| n.corrupt("kind", format!("unknown audit kind {kind_text:?}")))?;
    let mut event = AuditEvent::new(kind, at);
    event.token_id = n.opt_id(row, "token_id")?;
    event.fingerprint = n.get(row, "fingerprint")?;
    event.subject = n.get(row, "subject")?;
    event.actor = n.get(row, "actor")?;
    event.client_ip = n.get(row, "client_ip")?;
    event.user_agent = n.get(row, "user_agent")?;
    event.request_id = n.get(row, "request_id")?;
    event.reason = n.get(row, "reason")?;
    event.detail = n.get(row, "detail")?;
    Ok((seq, event))
}
