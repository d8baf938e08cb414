//! Parameters of statements, the values a token row is written with, and the conditions of an
//! audit query.

use token_core::{AuditQuery, StoreError, TokenRecord};

use crate::values::{
    count_to_column, duration_to_column, id_bytes, micros, micros_ceil, opt_micros,
};

/// A value bound to a statement parameter, in the column types the SQL stores use. The
/// optional variants are typed `NULL`s where the value is missing (PostgreSQL infers a
/// parameter's type from what is bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer (times in Unix microseconds, counts, limits).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes (ids, hashes).
    Bytes(Vec<u8>),
    /// An integer or `NULL`.
    OptInt(Option<i64>),
    /// Text or `NULL`.
    OptText(Option<String>),
    /// Bytes or `NULL`.
    OptBytes(Option<Vec<u8>>),
}

/// The `tokens` columns a new record is inserted with, in the order of [`token_params`].
pub const TOKEN_INSERT_COLUMNS: &str = "id, hash, hash_key_id, prefix, subject, scopes, name, \
    description, created_at, created_by, expires_at, not_before, idle_timeout_us, last_used_at, \
    use_count, max_uses, parent_id, family_id, rotated_from, rotated_to, revoked_at, \
    revoke_reason, revoked_by, suspended_at, metadata, allowed_cidrs, dpop_jkt, use_refill, \
    next_refill_at, rate_limits";

/// The `tokens` columns an update writes (what [`TokenManager::update`](token_core::TokenManager::update)
/// may change, labels aside), in the order of [`update_params`]; the id follows them.
pub const TOKEN_UPDATE_COLUMNS: [&str; 12] = [
    "scopes",
    "name",
    "description",
    "expires_at",
    "idle_timeout_us",
    "max_uses",
    "metadata",
    "allowed_cidrs",
    "use_count",
    "use_refill",
    "next_refill_at",
    "rate_limits",
];

/// The values of [`TOKEN_UPDATE_COLUMNS`] for `record`.
pub fn update_params(store: &'static str, record: &TokenRecord) -> Result<Vec<Param>, StoreError> {
    let idle = record
        .idle_timeout
        .map(|d| duration_to_column(store, d, "idle_timeout"))
        .transpose()?;
    let max_uses = record
        .max_uses
        .map(|m| count_to_column(store, m, "max_uses"))
        .transpose()?;
    Ok(vec![
        Param::Text(record.scopes.to_string()),
        Param::OptText(record.name.clone()),
        Param::OptText(record.description.clone()),
        Param::OptInt(opt_micros(record.expires_at)),
        Param::OptInt(idle),
        Param::OptInt(max_uses),
        Param::OptText(record.metadata.as_ref().map(ToString::to_string)),
        Param::OptText(record.allowed_networks.as_ref().map(ToString::to_string)),
        Param::Int(count_to_column(store, record.use_count, "use_count")?),
        Param::OptText(record.use_refill.map(|r| r.to_string())),
        Param::OptInt(opt_micros(record.next_refill_at)),
        Param::OptText(rate_limits_column(record)),
    ])
}

/// The `rate_limits` column: the JSON array, `NULL` for none.
fn rate_limits_column(record: &TokenRecord) -> Option<String> {
    (!record.rate_limits.is_empty()).then(|| record.rate_limits.to_json())
}

/// The values of [`TOKEN_INSERT_COLUMNS`] for `record` (the inverse of
/// [`decode_token`](crate::decode_token), labels aside): ids as 16 bytes, times as Unix
/// microseconds, the idle timeout in microseconds, scopes as the space-separated scope string.
/// A duration or counter beyond `i64` fails with [`UnrepresentableValue`](crate::UnrepresentableValue)
/// (as the source of [`StoreError::Backend`] of `store`).
pub fn token_params(store: &'static str, record: &TokenRecord) -> Result<Vec<Param>, StoreError> {
    let idle = record
        .idle_timeout
        .map(|d| duration_to_column(store, d, "idle_timeout"))
        .transpose()?;
    let use_count = count_to_column(store, record.use_count, "use_count")?;
    let max_uses = record
        .max_uses
        .map(|m| count_to_column(store, m, "max_uses"))
        .transpose()?;
    let revocation = record.revocation.as_ref();
    Ok(vec![
        Param::Bytes(id_bytes(record.id)),
        Param::Bytes(record.hash.as_bytes().to_vec()),
        Param::Int(i64::from(record.hash_key_id.get())),
        Param::Text(record.prefix.clone()),
        Param::Text(record.subject.clone()),
        Param::Text(record.scopes.to_string()),
        Param::OptText(record.name.clone()),
        Param::OptText(record.description.clone()),
        Param::Int(micros(record.created_at)),
        Param::OptText(record.created_by.clone()),
        Param::OptInt(opt_micros(record.expires_at)),
        Param::OptInt(opt_micros(record.not_before)),
        Param::OptInt(idle),
        Param::OptInt(opt_micros(record.last_used_at)),
        Param::Int(use_count),
        Param::OptInt(max_uses),
        Param::OptBytes(record.parent_id.map(id_bytes)),
        Param::Bytes(id_bytes(record.family_id)),
        Param::OptBytes(record.rotated_from.map(id_bytes)),
        Param::OptBytes(record.rotated_to.map(id_bytes)),
        Param::OptInt(revocation.map(|r| micros(r.at))),
        Param::OptText(revocation.map(|r| r.reason.clone())),
        Param::OptText(revocation.and_then(|r| r.actor.clone())),
        Param::OptInt(opt_micros(record.suspended_at)),
        Param::OptText(record.metadata.as_ref().map(ToString::to_string)),
        Param::OptText(record.allowed_networks.as_ref().map(ToString::to_string)),
        Param::OptText(record.dpop_jkt.as_ref().map(ToString::to_string)),
        Param::OptText(record.use_refill.map(|r| r.to_string())),
        Param::OptInt(opt_micros(record.next_refill_at)),
        Param::OptText(rate_limits_column(record)),
    ])
}

/// The conditions on `audit_events` that select `query`'s events ([`AuditQuery::matches`]), in
/// the order `token_id`, `subject`, `actor`, `kind`, `at` (from, until), `seq` (after): each a
/// column with its operator (`"token_id ="`, `"at >="`, ...), to be followed by a placeholder,
/// and the value to bind there. Time bounds use [`micros_ceil`], so the strict cutoffs of the
/// query hold for stored whole microseconds. The limit is not included.
///
/// ```
/// use token_core::AuditQuery;
/// use token_store_sql::{Param, audit_conditions};
///
/// let conditions = audit_conditions(&AuditQuery::new().subject("alice").after(7));
/// assert_eq!(
///     conditions,
///     vec![("subject =", Param::Text("alice".into())), ("seq >", Param::Int(7))]
/// );
/// ```
pub fn audit_conditions(query: &AuditQuery) -> Vec<(&'static str, Param)> {
    let mut conditions = Vec::new();
    if let Some(id) = query.token_id {
        conditions.push(("token_id =", Param::Bytes(id_bytes(id))));
    }
    if let Some(subject) = &query.subject {
        conditions.push(("subject =", Param::Text(subject.clone())));
    }
    if let Some(actor) = &query.actor {
        conditions.push(("actor =", Param::Text(actor.clone())));
    }
    if let Some(kind) = query.kind {
        conditions.push(("kind =", Param::Text(kind.as_str().to_owned())));
    }
    if let Some(from) = query.from {
        conditions.push(("at >=", Param::Int(micros_ceil(from))));
    }
    if let Some(until) = query.until {
        conditions.push(("at <", Param::Int(micros_ceil(until))));
    }
    if let Some(after) = query.after_seq {
        // Past i64::MAX nothing can follow.
        conditions.push((
            "seq >",
            Param::Int(i64::try_from(after).unwrap_or(i64::MAX)),
        ));
    }
    conditions
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use token_core::{AuditKind, StoreError, TokenId};

    use super::*;
    use crate::TokenRow;
    use crate::UnrepresentableValue;
    use crate::testing::{MapRow, at, full_record, revoked};

    #[test]
    fn token_params_are_what_decode_token_reads() {
        for record in [full_record(), revoked(full_record())] {
            let mut decoded = MapRow::of(&record)
                .record()
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decoded.labels, record.labels);
            decoded.labels = record.labels.clone();
            assert_eq!(decoded, record);
        }
        let mut sparse = full_record();
        sparse.name = None;
        sparse.expires_at = None;
        sparse.idle_timeout = None;
        sparse.max_uses = None;
        sparse.parent_id = None;
        let row = MapRow::of(&sparse);
        assert_eq!(row.0.get("expires_at"), Some(&Param::OptInt(None)));
        assert_eq!(row.0.get("parent_id"), Some(&Param::OptBytes(None)));
        assert_eq!(row.record().ok(), Some(sparse));
    }

    #[test]
    fn values_beyond_i64_are_unrepresentable() {
        let mut record = full_record();
        record.idle_timeout = Some(Duration::MAX);
        let mut counted = full_record();
        counted.use_count = u64::MAX;
        for (record, what) in [(record, "idle_timeout"), (counted, "use_count")] {
            match token_params("test", &record) {
                Err(StoreError::Backend { store, source }) => {
                    assert_eq!(store, "test");
                    assert!(source.to_string().contains(what), "{source}");
                    assert!(source.downcast_ref::<UnrepresentableValue>().is_some());
                }
                other => panic!("{what}: expected Backend, got {other:?}"),
            }
        }
    }

    #[test]
    fn audit_conditions_cover_every_filter_in_order() {
        let id = TokenId::from_bytes([9; 16]);
        let query = AuditQuery::new()
            .token(id)
            .subject("alice")
            .actor("admin")
            .kind(AuditKind::Revoked)
            .between(at(1), at(2))
            .after(u64::MAX);
        let columns: Vec<&str> = audit_conditions(&query).iter().map(|(c, _)| *c).collect();
        assert_eq!(
            columns,
            [
                "token_id =",
                "subject =",
                "actor =",
                "kind =",
                "at >=",
                "at <",
                "seq >"
            ]
        );
        let values: Vec<Param> = audit_conditions(&query)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(values[0], Param::Bytes(vec![9; 16]));
        assert_eq!(values[3], Param::Text("revoked".into()));
        assert_eq!(values[4], Param::Int(1_000_000));
        // Past i64::MAX nothing can follow.
        assert_eq!(values[6], Param::Int(i64::MAX));
        assert!(audit_conditions(&AuditQuery::new()).is_empty());
    }
}
