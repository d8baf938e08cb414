//! Decoding stored rows into [`TokenRecord`]s and [`AuditRecord`]s.
//!
//! Stores keep tokens and events in columns of primitive types (bytes, integers, text). This
//! module holds the one place where those columns are checked and turned back into records, so
//! every store refuses bad database contents the same way: a [`StoreError::Corrupt`] naming the
//! table, the column and the row (`tokens.scopes of token 4dNXZcRQD2OKyayT4qYXmj: ...`), never a
//! panic and never a record built from garbage.

use std::fmt::Display;
use std::time::Duration;

use time::OffsetDateTime;

use token_core::CheckpointMac;
use token_core::audit::{AuditCheckpoint, AuditEvent, AuditHash, AuditKind, AuditRecord};
use token_core::clock::from_unix_micros;
use token_core::keyring::{KeyId, TokenHash};
use token_core::{
    KeyThumbprint, Labels, Metadata, NetworkAllowlist, RateLimits, Revocation, ScopeSet,
    StoreError, TokenId, TokenRecord, UseRefill,
};

/// Read access to the columns of one row. `Ok(None)` is SQL `NULL`; `Err` says why a value could
/// not be read as the asked type (it becomes part of a [`StoreError::Corrupt`] message).
///
/// A store implements it for (a newtype around) its driver's row type, then calls
/// [`decode_token`], [`decode_event`] or [`decode_audit_record`]:
///
/// ```
/// use std::collections::HashMap;
/// use token_store_sql::{Columns, decode_event};
///
/// struct Row(HashMap<&'static str, i64>, HashMap<&'static str, String>);
/// impl Columns for Row {
///     fn bytes(&self, _: &str) -> Result<Option<Vec<u8>>, String> { Ok(None) }
///     fn int(&self, c: &str) -> Result<Option<i64>, String> { Ok(self.0.get(c).copied()) }
///     fn text(&self, c: &str) -> Result<Option<String>, String> { Ok(self.1.get(c).cloned()) }
/// }
/// let row = Row(
///     HashMap::from([("seq", 7), ("at", 0)]),
///     HashMap::from([("kind", "teleported".to_owned())]),
/// );
/// let err = decode_event(&row, "example").unwrap_err();
/// assert!(err.to_string().contains("audit_events.kind of seq 7"));
/// ```
pub trait Columns {
    /// A byte-string column (BLOB, BYTEA).
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, String>;
    /// An integer column.
    fn int(&self, column: &str) -> Result<Option<i64>, String>;
    /// A text column.
    fn text(&self, column: &str) -> Result<Option<String>, String>;
}

/// Reads the columns of one row, naming it in errors.
pub struct RowReader<'r, C: ?Sized> {
    row: &'r C,
    store: &'static str,
    table: &'static str,
    name: String,
}

impl<'r, C: Columns + ?Sized> RowReader<'r, C> {
    /// A reader for a row of `table` in `store`, named `name` in errors until [`rename`]d.
    ///
    /// [`rename`]: Self::rename
    pub fn new(
        row: &'r C,
        store: &'static str,
        table: &'static str,
        name: impl Into<String>,
    ) -> Self {
        Self {
            row,
            store,
            table,
            name: name.into(),
        }
    }

    /// Names the row in later errors (once its id is known).
    pub fn rename(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// A [`StoreError::Corrupt`] for `column` of this row.
    pub fn corrupt(&self, column: &str, problem: impl Display) -> StoreError {
        StoreError::Corrupt {
            store: self.store,
            message: format!("{}.{column} of {}: {problem}", self.table, self.name),
        }
    }

    fn required<T>(&self, column: &str, value: Result<Option<T>, String>) -> Result<T, StoreError> {
        match value {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(self.corrupt(column, "missing (NULL)")),
            Err(e) => Err(self.corrupt(column, format!("unreadable ({e})"))),
        }
    }

    fn optional<T>(
        &self,
        column: &str,
        value: Result<Option<T>, String>,
    ) -> Result<Option<T>, StoreError> {
        value.map_err(|e| self.corrupt(column, format!("unreadable ({e})")))
    }

    /// A required text column.
    pub fn text(&self, column: &str) -> Result<String, StoreError> {
        self.required(column, self.row.text(column))
    }

    /// An optional text column.
    pub fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.optional(column, self.row.text(column))
    }

    /// A required integer column.
    pub fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.required(column, self.row.int(column))
    }

    /// An optional integer column.
    pub fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        self.optional(column, self.row.int(column))
    }

    /// A required byte column.
    pub fn bytes(&self, column: &str) -> Result<Vec<u8>, StoreError> {
        self.required(column, self.row.bytes(column))
    }

    fn to_id(&self, column: &str, bytes: &[u8]) -> Result<TokenId, StoreError> {
        <[u8; 16]>::try_from(bytes)
            .map(TokenId::from_bytes)
            .map_err(|_| {
                self.corrupt(
                    column,
                    format!("a token id must be 16 bytes, found {}", bytes.len()),
                )
            })
    }

    /// A required token id (16 bytes).
    pub fn id(&self, column: &str) -> Result<TokenId, StoreError> {
        let bytes = self.bytes(column)?;
        self.to_id(column, &bytes)
    }

    /// An optional token id.
    pub fn opt_id(&self, column: &str) -> Result<Option<TokenId>, StoreError> {
        self.optional(column, self.row.bytes(column))?
            .map(|b| self.to_id(column, &b))
            .transpose()
    }

    fn to_time(&self, column: &str, micros: i64) -> Result<OffsetDateTime, StoreError> {
        from_unix_micros(micros)
            .ok_or_else(|| self.corrupt(column, format!("timestamp {micros} µs is out of range")))
    }

    /// A required time (Unix microseconds).
    pub fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        let micros = self.int(column)?;
        self.to_time(column, micros)
    }

    /// An optional time.
    pub fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.opt_int(column)?
            .map(|m| self.to_time(column, m))
            .transpose()
    }

    fn to_count(&self, column: &str, value: i64) -> Result<u64, StoreError> {
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("negative count {value}")))
    }

    /// A required non-negative count.
    pub fn count(&self, column: &str) -> Result<u64, StoreError> {
        let value = self.int(column)?;
        self.to_count(column, value)
    }

    /// An optional non-negative count.
    pub fn opt_count(&self, column: &str) -> Result<Option<u64>, StoreError> {
        self.opt_int(column)?
            .map(|v| self.to_count(column, v))
            .transpose()
    }
}

/// Decodes a token row. `labels` reads the row's labels (stores keep them in different shapes);
/// it gets the reader, already named after the token, for its errors.
///
/// The columns read are `id`, `hash`, `hash_key_id`, `prefix`, `subject`, `scopes`
/// (space-separated), `name`, `description`, `created_at`, `created_by`, `expires_at`,
/// `not_before`, `idle_timeout_us`, `last_used_at`, `use_count`, `max_uses`, `parent_id`,
/// `family_id`, `rotated_from`, `rotated_to`, `revoked_at`, `revoke_reason`, `revoked_by`,
/// `suspended_at`, `metadata` (JSON object text), `allowed_cidrs` (space-separated CIDR
/// blocks), `dpop_jkt` (a key thumbprint), `use_refill` (`monthly` or `every <n>s`),
/// `next_refill_at` and `rate_limits` (a JSON array of `{name, limit, per_seconds}`): ids as 16 raw bytes, times as Unix microseconds, durations in microseconds.
pub fn decode_token<C: Columns + ?Sized>(
    row: &C,
    store: &'static str,
    labels: impl FnOnce(&RowReader<'_, C>) -> Result<Labels, StoreError>,
) -> Result<TokenRecord, StoreError> {
    let mut r = RowReader::new(row, store, "tokens", "a row with an unreadable id");
    let id_bytes = r.bytes("id")?;
    if let Ok(id) = <[u8; 16]>::try_from(id_bytes.as_slice()) {
        r.rename(format!("token {}", TokenId::from_bytes(id)));
    }
    let id = r.to_id("id", &id_bytes)?;
    let hash_bytes = r.bytes("hash")?;
    let hash = TokenHash::from_slice(&hash_bytes).ok_or_else(|| {
        r.corrupt(
            "hash",
            format!(
                "a hash must be 32 bytes, found {} (truncated?)",
                hash_bytes.len()
            ),
        )
    })?;
    let key = r.int("hash_key_id")?;
    let hash_key_id = u32::try_from(key)
        .map(KeyId::new)
        .map_err(|_| r.corrupt("hash_key_id", format!("key id {key} is not a u32")))?;
    let scopes_text = r.text("scopes")?;
    let scopes = ScopeSet::parse(&scopes_text)
        .map_err(|e| r.corrupt("scopes", format!("invalid scope string ({e})")))?;
    let revocation = match r.opt_time("revoked_at")? {
        None => None,
        Some(at) => Some(Revocation {
            at,
            reason: r
                .opt_text("revoke_reason")?
                .ok_or_else(|| r.corrupt("revoke_reason", "missing although revoked_at is set"))?,
            actor: r.opt_text("revoked_by")?,
        }),
    };
    let metadata = r
        .opt_text("metadata")?
        .map(|text| Metadata::from_json(&text))
        .transpose()
        .map_err(|e| r.corrupt("metadata", e))?;
    let allowed_networks = r
        .opt_text("allowed_cidrs")?
        .map(|text| NetworkAllowlist::parse(&text))
        .transpose()
        .map_err(|e| r.corrupt("allowed_cidrs", e))?;
    let dpop_jkt = r
        .opt_text("dpop_jkt")?
        .map(|text| KeyThumbprint::parse(&text))
        .transpose()
        .map_err(|e| r.corrupt("dpop_jkt", e))?;
    let use_refill = r
        .opt_text("use_refill")?
        .map(|text| text.parse::<UseRefill>())
        .transpose()
        .map_err(|e| r.corrupt("use_refill", e))?;
    let next_refill_at = r.opt_time("next_refill_at")?;
    if use_refill.is_some() != next_refill_at.is_some() {
        return Err(r.corrupt("next_refill_at", "must be set exactly when use_refill is"));
    }
    let rate_limits = r
        .opt_text("rate_limits")?
        .map(|text| RateLimits::from_json(&text))
        .transpose()
        .map_err(|e| r.corrupt("rate_limits", e))?
        .unwrap_or_default();
    Ok(TokenRecord {
        id,
        hash,
        hash_key_id,
        prefix: r.text("prefix")?,
        subject: r.text("subject")?,
        scopes,
        name: r.opt_text("name")?,
        description: r.opt_text("description")?,
        labels: labels(&r)?,
        created_at: r.time("created_at")?,
        created_by: r.opt_text("created_by")?,
        expires_at: r.opt_time("expires_at")?,
        not_before: r.opt_time("not_before")?,
        idle_timeout: r.opt_count("idle_timeout_us")?.map(Duration::from_micros),
        last_used_at: r.opt_time("last_used_at")?,
        use_count: r.count("use_count")?,
        max_uses: r.opt_count("max_uses")?,
        use_refill,
        next_refill_at,
        rate_limits,
        parent_id: r.opt_id("parent_id")?,
        family_id: r.id("family_id")?,
        rotated_from: r.opt_id("rotated_from")?,
        rotated_to: r.opt_id("rotated_to")?,
        revocation,
        suspended_at: r.opt_time("suspended_at")?,
        metadata,
        allowed_networks,
        dpop_jkt,
    })
}

/// Decodes the sequence number and event of an audit row (the hash is not read): the columns
/// of [`EVENT_COLUMNS`].
pub fn decode_event<C: Columns + ?Sized>(
    row: &C,
    store: &'static str,
) -> Result<(u64, AuditEvent), StoreError> {
    let mut r = RowReader::new(row, store, "audit_events", "a row with an unreadable seq");
    let seq = r.count("seq")?;
    r.rename(format!("seq {seq}"));
    let kind_text = r.text("kind")?;
    let kind = AuditKind::parse(&kind_text)
        .ok_or_else(|| r.corrupt("kind", format!("unknown event kind {kind_text:?}")))?;
    let mut event = AuditEvent::new(kind, r.time("at")?);
    event.token_id = r.opt_id("token_id")?;
    event.fingerprint = r.opt_text("fingerprint")?;
    event.subject = r.opt_text("subject")?;
    event.actor = r.opt_text("actor")?;
    event.client_ip = r.opt_text("client_ip")?;
    event.user_agent = r.opt_text("user_agent")?;
    event.request_id = r.opt_text("request_id")?;
    event.reason = r.opt_text("reason")?;
    event.detail = r.opt_text("detail")?;
    Ok((seq, event))
}

/// Decodes an audit row including its chain hash (anything but 32 bytes is corrupt).
pub fn decode_audit_record<C: Columns + ?Sized>(
    row: &C,
    store: &'static str,
) -> Result<AuditRecord, StoreError> {
    let (seq, event) = decode_event(row, store)?;
    let r = RowReader::new(row, store, "audit_events", format!("seq {seq}"));
    let bytes = r.bytes("hash")?;
    let hash = AuditHash::from_slice(&bytes).ok_or_else(|| {
        r.corrupt(
            "hash",
            format!(
                "a chain hash must be 32 bytes, found {} (truncated?)",
                bytes.len()
            ),
        )
    })?;
    let chain_key_id = r
        .opt_int("chain_key_id")?
        .map(|id| {
            u32::try_from(id)
                .map(KeyId::new)
                .map_err(|_| r.corrupt("chain_key_id", format!("{id} is not a key id")))
        })
        .transpose()?;
    Ok(AuditRecord {
        seq,
        event,
        hash,
        chain_key_id,
    })
}

/// The `audit_events` columns [`decode_event`] reads (every column of a version-1 event), as a
/// SQL select list.
pub const EVENT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail";

/// The `audit_events` columns [`decode_audit_record`] reads: [`EVENT_COLUMNS`], the chain hash
/// and the audit key that chained it (`chain_key_id`, schema version 3).
pub const AUDIT_COLUMNS: &str = "seq, at, kind, token_id, fingerprint, subject, actor, \
    client_ip, user_agent, request_id, reason, detail, hash, chain_key_id";

/// A stored chain hash of event `seq` in `table`; anything but 32 bytes is corrupt.
pub fn decode_audit_hash(
    store: &'static str,
    table: &str,
    seq: i64,
    bytes: &[u8],
) -> Result<AuditHash, StoreError> {
    AuditHash::from_slice(bytes).ok_or_else(|| StoreError::Corrupt {
        store,
        message: format!(
            "{table}.hash of seq {seq}: a chain hash must be 32 bytes, found {} (truncated?)",
            bytes.len()
        ),
    })
}

/// The retention checkpoint row (`seq`, `hash`, `at`, `mac`, `mac_key_id`): `at` is the last
/// removed event's time in Unix microseconds, `NULL` on a checkpoint written before schema
/// version 3 recorded it; `mac` (32 bytes) and `mac_key_id` are the checkpoint's
/// [`CheckpointMac`](token_core::CheckpointMac), both `NULL` when the store had no audit keys.
pub fn decode_checkpoint(
    store: &'static str,
    seq: i64,
    hash: &[u8],
    at: Option<i64>,
    mac: Option<&[u8]>,
    mac_key_id: Option<i64>,
) -> Result<AuditCheckpoint, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { store, message };
    let at = at
        .map(|micros| {
            from_unix_micros(micros)
                .ok_or_else(|| corrupt(format!("audit_checkpoint.at {micros} µs is out of range")))
        })
        .transpose()?;
    let mac = match (mac, mac_key_id) {
        (None, None) => None,
        (Some(tag), Some(id)) => Some(CheckpointMac {
            key_id: u32::try_from(id).map(KeyId::new).map_err(|_| {
                corrupt(format!("audit_checkpoint.mac_key_id {id} is not a key id"))
            })?,
            tag: AuditHash::from_slice(tag).ok_or_else(|| {
                corrupt(format!(
                    "audit_checkpoint.mac must be 32 bytes, found {} (truncated?)",
                    tag.len()
                ))
            })?,
        }),
        (Some(_), None) => {
            return Err(corrupt(
                "audit_checkpoint.mac is set but mac_key_id is NULL".to_owned(),
            ));
        }
        (None, Some(id)) => {
            return Err(corrupt(format!(
                "audit_checkpoint.mac_key_id is {id} but mac is NULL"
            )));
        }
    };
    Ok(AuditCheckpoint {
        seq: u64::try_from(seq)
            .map_err(|_| corrupt(format!("audit_checkpoint.seq {seq} is negative")))?,
        hash: decode_audit_hash(store, "audit_checkpoint", seq, hash)?,
        at,
        mac,
    })
}

/// The `mac` and `mac_key_id` columns of `checkpoint` (see [`decode_checkpoint`]).
pub fn encode_checkpoint_mac(checkpoint: &AuditCheckpoint) -> (Option<Vec<u8>>, Option<i64>) {
    match checkpoint.mac {
        Some(mac) => (
            Some(mac.tag.as_bytes().to_vec()),
            Some(i64::from(mac.key_id.get())),
        ),
        None => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Row {
        bytes: HashMap<&'static str, Vec<u8>>,
        ints: HashMap<&'static str, i64>,
        texts: HashMap<&'static str, String>,
    }

    impl Columns for Row {
        fn bytes(&self, c: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.bytes.get(c).cloned())
        }
        fn int(&self, c: &str) -> Result<Option<i64>, String> {
            Ok(self.ints.get(c).copied())
        }
        fn text(&self, c: &str) -> Result<Option<String>, String> {
            Ok(self.texts.get(c).cloned())
        }
    }

    fn token_row() -> Row {
        let mut row = Row::default();
        row.bytes.insert("id", vec![1; 16]);
        row.bytes.insert("family_id", vec![1; 16]);
        row.bytes.insert("hash", vec![2; 32]);
        row.ints.insert("hash_key_id", 1);
        row.ints.insert("created_at", 0);
        row.ints.insert("use_count", 0);
        row.texts.insert("prefix", "t".into());
        row.texts.insert("subject", "s".into());
        row.texts.insert("scopes", "a b".into());
        row
    }

    #[test]
    fn valid_row_decodes() {
        let record = decode_token(&token_row(), "test", |_| Ok(Labels::new())).unwrap();
        assert_eq!(record.scopes.len(), 2);
        assert_eq!(record.id, TokenId::from_bytes([1; 16]));
    }

    #[test]
    fn every_kind_of_damage_is_corrupt_and_named() {
        type Damage = Box<dyn Fn(&mut Row)>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "hash",
                Box::new(|r: &mut Row| {
                    r.bytes.insert("hash", vec![0; 31]);
                }),
            ),
            (
                "scopes",
                Box::new(|r: &mut Row| {
                    r.texts.insert("scopes", "BAD".into());
                }),
            ),
            (
                "use_count",
                Box::new(|r: &mut Row| {
                    r.ints.insert("use_count", -1);
                }),
            ),
            (
                "created_at",
                Box::new(|r: &mut Row| {
                    r.ints.insert("created_at", i64::MAX);
                }),
            ),
            (
                "family_id",
                Box::new(|r: &mut Row| {
                    r.bytes.insert("family_id", vec![0; 3]);
                }),
            ),
            (
                "hash_key_id",
                Box::new(|r: &mut Row| {
                    r.ints.insert("hash_key_id", -5);
                }),
            ),
            (
                "subject",
                Box::new(|r: &mut Row| {
                    r.texts.remove("subject");
                }),
            ),
            (
                "revoke_reason",
                Box::new(|r: &mut Row| {
                    r.ints.insert("revoked_at", 5);
                }),
            ),
        ];
        for (column, damage) in cases {
            let mut row = token_row();
            damage(&mut row);
            match decode_token(&row, "test", |_| Ok(Labels::new())) {
                Err(StoreError::Corrupt { message, .. }) => {
                    assert!(message.contains(&format!("tokens.{column}")), "{message}");
                    assert!(message.contains("token "), "{message}");
                }
                other => panic!("{column}: expected Corrupt, got {other:?}"),
            }
        }
    }
}
