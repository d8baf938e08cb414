//! The store's SQL: every statement, and the builders of the queries whose conditions depend on
//! the request (listing, revocation, audit queries) with their parameters.

use std::sync::LazyLock;

use sqlx::Sqlite;
use sqlx::sqlite::SqliteArguments;
use token_core::{AuditQuery, ListQuery, RevokeRequest, RevokeSelector, TokenState};
use token_store_sql::{
    AUDIT_COLUMNS, Param, TOKEN_INSERT_COLUMNS, audit_conditions, id_bytes, micros, micros_ceil,
};

use crate::codec::TOKEN_COLUMNS;

/// The lookup by id (the validation hot path): one primary-key search, labels included.
pub(crate) static LOOKUP_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id = ?"));

/// Inserts a record: the values of [`token_params`](token_store_sql::token_params).
pub(crate) static INSERT_TOKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO tokens ({TOKEN_INSERT_COLUMNS}) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
});

/// A token is live (counts against limits and keys) when not revoked and not expired.
pub(crate) const LIVE: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)";

/// SQL translations of the terms of
/// [`TokenRecord::state_at`](token_core::TokenRecord::state_at) at a bound `now` (each `?` is
/// `now`). Every term is `0` or `1`, never `NULL`.
const REVOKED: &str = "(t.revoked_at IS NOT NULL)";
const EXPIRED: &str = "(t.expires_at IS NOT NULL AND ? >= t.expires_at)";
const SUSPENDED: &str = "(t.suspended_at IS NOT NULL)";
const NOT_YET_VALID: &str = "(t.not_before IS NOT NULL AND ? < t.not_before)";
const IDLE: &str = "(t.idle_timeout_us IS NOT NULL AND max(coalesce(t.last_used_at, t.created_at), \
    coalesce(t.not_before, t.created_at), t.created_at) + t.idle_timeout_us <= ?)";
const USED_UP: &str = "(t.max_uses IS NOT NULL AND t.use_count >= t.max_uses \
    AND (t.next_refill_at IS NULL OR ? < t.next_refill_at))";

/// The `WHERE` term selecting tokens in `state` at `now` (the exact precedence of
/// [`TokenRecord::state_at`](token_core::TokenRecord::state_at): revoked, expired, suspended,
/// not yet valid, idle, used up, else active), and how many times `now` must be bound.
pub(crate) fn state_condition(state: TokenState) -> (String, usize) {
    // (term, number of `now` parameters it uses)
    let terms: [(&str, usize); 6] = [
        (REVOKED, 0),
        (EXPIRED, 1),
        (SUSPENDED, 0),
        (NOT_YET_VALID, 1),
        (IDLE, 1),
        (USED_UP, 1),
    ];
    let position = match state {
        TokenState::Revoked => 0,
        TokenState::Expired => 1,
        TokenState::Suspended => 2,
        TokenState::NotYetValid => 3,
        TokenState::IdleExpired => 4,
        TokenState::UsedUp => 5,
        TokenState::Active => 6,
        // A state this store does not know matches nothing rather than everything.
        _ => return ("0".to_owned(), 0),
    };
    let mut parts = Vec::new();
    let mut binds = 0;
    for (term, n) in &terms[..position] {
        parts.push(format!("NOT {term}"));
        binds += n;
    }
    if let Some((term, n)) = terms.get(position) {
        parts.push((*term).to_owned());
        binds += n;
    }
    (format!("({})", parts.join(" AND ")), binds)
}

/// Binds the parameters of a query built at run time, in order.
pub(crate) fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    args: Vec<Param>,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    for arg in args {
        query = match arg {
            Param::Int(v) => query.bind(v),
            Param::Text(v) => query.bind(v),
            Param::Bytes(v) => query.bind(v),
            Param::OptInt(v) => query.bind(v),
            Param::OptText(v) => query.bind(v),
            Param::OptBytes(v) => query.bind(v),
        };
    }
    query
}

/// The listing query for `query` and its parameters.
pub(crate) fn list_sql(query: &ListQuery) -> (String, Vec<Param>) {
    let now = micros(query.now);
    let mut conditions = Vec::new();
    let mut args = Vec::new();
    let filter = &query.filter;
    if let Some(subject) = &filter.subject {
        conditions.push("t.subject = ?".to_owned());
        args.push(Param::Text(subject.clone()));
    }
    if let Some((key, value)) = &filter.label {
        conditions.push(
            "t.id IN (SELECT token_id FROM token_labels WHERE key = ? AND value = ?)".to_owned(),
        );
        args.push(Param::Text(key.clone()));
        args.push(Param::Text(value.clone()));
    }
    if let Some(family) = filter.family {
        conditions.push("t.family_id = ?".to_owned());
        args.push(Param::Bytes(id_bytes(family)));
    }
    if let Some(state) = filter.state {
        let (condition, binds) = state_condition(state);
        conditions.push(condition);
        args.extend((0..binds).map(|_| Param::Int(now)));
    }
    if let Some(since) = filter.unused_since {
        conditions.push("coalesce(t.last_used_at, t.created_at) < ?".to_owned());
        args.push(Param::Int(micros_ceil(since)));
    }
    if let Some(cursor) = query.after {
        conditions.push("(t.created_at, t.id) > (?, ?)".to_owned());
        args.push(Param::Int(micros(cursor.created_at)));
        args.push(Param::Bytes(id_bytes(cursor.id)));
    }
    let mut sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens t");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY t.created_at, t.id LIMIT ?");
    args.push(Param::Int(i64::from(query.limit)));
    (sql, args)
}

/// The query selecting the not-yet-revoked tokens a revocation reaches (the selector's matches
/// plus all their descendants), or `None` for a selector this store does not know.
///
/// With [`RevokeRequest::limit`](token_core::RevokeRequest::limit), at most that many
/// not-yet-revoked matches are taken (the descendant walk then adds their descendants);
/// `UnusedSince` takes the longest-unused first, in the order of its index, so a bounded sweep
/// reads only the rows it revokes.
pub(crate) fn revoke_sql(request: &RevokeRequest) -> Option<(String, Vec<Param>)> {
    selection_sql(&request.selector, request.at, request.limit)
}

/// The unrevoked tokens `selector` matches at `at` (at most `limit` matches) and all their
/// descendants, as [`revoke_sql`] describes; suspension selects the same way.
pub(crate) fn selection_sql(
    selector: &RevokeSelector,
    at: time::OffsetDateTime,
    limit: Option<u32>,
) -> Option<(String, Vec<Param>)> {
    // A condition on `tokens`, its parameters, and the order a limited revocation takes matches in
    // (`None`: whatever order the chosen index yields).
    let (condition, mut args, order) = match selector {
        RevokeSelector::Token(id) => ("id = ?", vec![Param::Bytes(id_bytes(*id))], None),
        RevokeSelector::Subject(subject) => {
            ("subject = ?", vec![Param::Text(subject.clone())], None)
        }
        RevokeSelector::Family(id) => (
            "family_id = (SELECT family_id FROM tokens WHERE id = ?)",
            vec![Param::Bytes(id_bytes(*id))],
            None,
        ),
        RevokeSelector::Label { key, value } => (
            "id IN (SELECT token_id FROM token_labels WHERE key = ? AND value = ?)",
            vec![Param::Text(key.clone()), Param::Text(value.clone())],
            None,
        ),
        RevokeSelector::IssuedBefore(at) => {
            ("created_at < ?", vec![Param::Int(micros_ceil(*at))], None)
        }
        // Live at the request time and not used since `since`; the partial index `tokens_unused`
        // holds exactly the unrevoked rows, keyed by this expression.
        RevokeSelector::UnusedSince(since) => (
            "revoked_at IS NULL AND coalesce(last_used_at, created_at) < ? \
             AND (expires_at IS NULL OR expires_at > ?)",
            vec![Param::Int(micros_ceil(*since)), Param::Int(micros(at))],
            Some("coalesce(last_used_at, created_at)"),
        ),
        // Newer selectors this store does not know match nothing rather than everything.
        _ => return None,
    };
    let matched = match limit {
        None => format!("SELECT id FROM tokens WHERE {condition}"),
        Some(limit) => {
            args.push(Param::Int(i64::from(limit)));
            let order = order.map(|o| format!(" ORDER BY {o}")).unwrap_or_default();
            format!("SELECT id FROM tokens WHERE {condition} AND revoked_at IS NULL{order} LIMIT ?")
        }
    };
    let sql = format!(
        "WITH RECURSIVE matched(id) AS ({matched}), \
         tree(id) AS (SELECT id FROM matched UNION SELECT c.id FROM tokens c JOIN tree ON c.parent_id = tree.id) \
         SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id IN (SELECT id FROM tree) AND t.revoked_at IS NULL \
         ORDER BY t.created_at, t.id"
    );
    Some((sql, args))
}

/// `mark_expired`: expired, unrevoked, unrecorded tokens, earliest expiry first (an index range
/// of `tokens_expiry_unrecorded`).
pub(crate) static MARK_EXPIRED_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.expires_at <= ? AND t.revoked_at IS NULL \
         AND t.expiry_recorded_at IS NULL ORDER BY t.expires_at LIMIT ?"
    )
});

/// `purge`: up to `limit` records revoked before a time (earliest first, `tokens_revoked`) and up
/// to `limit` expiring before a time (`tokens_expires`), of which the first `limit` by id: the
/// reference store's choice.
pub(crate) static PURGE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.id IN ( \
         SELECT id FROM (SELECT id FROM tokens WHERE revoked_at < ? ORDER BY revoked_at LIMIT ?) \
         UNION \
         SELECT id FROM (SELECT id FROM tokens WHERE expires_at < ? ORDER BY expires_at LIMIT ?)) \
         ORDER BY t.id LIMIT ?"
    )
});

/// `truncate_audit`: the oldest events in seq order (a walk of the primary key that stops after
/// `limit` rows).
pub(crate) const TRUNCATE_SCAN_SQL: &str =
    "SELECT seq, at, hash FROM audit_events ORDER BY seq LIMIT ?";

/// The audit query for `query` and its parameters
/// ([`AuditQuery::matches`](token_core::AuditQuery::matches), in seq order).
pub(crate) fn audit_query_sql(query: &AuditQuery) -> (String, Vec<Param>) {
    let (conditions, mut args): (Vec<String>, Vec<Param>) = audit_conditions(query)
        .into_iter()
        .map(|(condition, arg)| (format!("{condition} ?"), arg))
        .unzip();
    let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_events");
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    args.push(Param::Int(i64::from(query.limit)));
    (sql, args)
}

/// Whether a token exists (an insert's or rotation's id must be new).
pub(crate) const EXISTS: &str = "SELECT 1 FROM tokens WHERE id = ?";

/// The children of a token (an update narrows them).
pub(crate) static CHILDREN_SQL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {TOKEN_COLUMNS} FROM tokens t WHERE t.parent_id = ?"));

/// Writes what an update changes: [`TOKEN_UPDATE_COLUMNS`](token_store_sql::TOKEN_UPDATE_COLUMNS),
/// then the id.
pub(crate) static UPDATE_TOKEN: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = token_store_sql::TOKEN_UPDATE_COLUMNS
        .iter()
        .map(|column| format!("{column} = ?"))
        .collect();
    format!("UPDATE tokens SET {} WHERE id = ?", set.join(", "))
});

/// Sets or clears a token's suspension.
pub(crate) const SET_SUSPENDED: &str = "UPDATE tokens SET suspended_at = ? WHERE id = ?";

/// Drops a token's labels (an update rewrites them).
pub(crate) const DELETE_LABELS: &str = "DELETE FROM token_labels WHERE token_id = ?";

pub(crate) const INSERT_LABEL: &str =
    "INSERT INTO token_labels (token_id, key, value) VALUES (?, ?, ?)";

/// The live tokens of a subject (a live-token limit), of a hash key (key retirement).
pub(crate) static COUNT_LIVE_SUBJECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT count(*) FROM tokens WHERE subject = ? AND {LIVE}"));
pub(crate) static COUNT_LIVE_KEY: LazyLock<String> =
    LazyLock::new(|| format!("SELECT count(*) FROM tokens WHERE hash_key_id = ? AND {LIVE}"));

/// The predecessor of a rotation: its successor and its end of grace.
pub(crate) const ROTATE: &str = "UPDATE tokens SET rotated_to = ?, expires_at = ? WHERE id = ?";

/// Moves a rotated token's children under its successor (`parent_id`).
pub(crate) const REPARENT: &str = "UPDATE tokens SET parent_id = ? WHERE parent_id = ?";

/// The revocation cut-off (`revoke(IssuedBefore)`'s latest instant, micros rounded up).
pub(crate) const CUTOFF: &str = "SELECT issued_before FROM revocation_cutoff WHERE id = 1";

/// Raises the revocation cut-off to `?` (never lowers it).
pub(crate) const RAISE_CUTOFF: &str = "INSERT INTO revocation_cutoff (id, issued_before) \
    VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET \
    issued_before = max(coalesce(issued_before, excluded.issued_before), excluded.issued_before)";

/// Revokes one row, by its raw key.
pub(crate) const REVOKE: &str = "UPDATE tokens SET revoked_at = ?, revoke_reason = ?, \
    revoked_by = ? WHERE id = ? AND revoked_at IS NULL";

/// Counts a use of a token that is active and below its limit, in one atomic statement
/// (`?1` id, `?2` now, `?3` the refill as read, `?4` the next period's start): a refill that is
/// due (`next_refill_at <= now`) restarts the count at 1 in the same statement, so concurrent
/// uses refill exactly once per period ([`ConsumeUse`](token_core::ConsumeUse)).
pub(crate) const CONSUME_USE: &str = "UPDATE tokens SET \
    use_count = CASE WHEN next_refill_at <= ?2 THEN 1 ELSE use_count + 1 END, \
    next_refill_at = CASE WHEN next_refill_at <= ?2 THEN ?4 ELSE next_refill_at END, \
    last_used_at = max(coalesce(last_used_at, ?2), ?2) \
    WHERE id = ?1 AND use_refill IS ?3 \
    AND (max_uses IS NULL OR next_refill_at <= ?2 OR use_count < max_uses) \
    AND revoked_at IS NULL AND suspended_at IS NULL AND rotated_to IS NULL \
    AND (expires_at IS NULL OR expires_at > ?2) \
    RETURNING use_count";

/// Whether a token that was not counted is active (so its limit was reached).
pub(crate) const ACTIVE: &str = "SELECT revoked_at IS NULL AND suspended_at IS NULL \
    AND rotated_to IS NULL \
    AND (expires_at IS NULL OR expires_at > ?) FROM tokens WHERE id = ?";

/// Adds coalesced uses of one token.
/// Adds uses (saturating at `i64::MAX`) to a row whose `use_count` is a valid count; a row
/// holding anything else is left alone (see [`EXISTS`] for telling it from a purged one).
pub(crate) const RECORD_USAGE: &str = "UPDATE tokens SET \
    use_count = use_count + min(?, 9223372036854775807 - use_count), \
    last_used_at = max(coalesce(last_used_at, ?), ?) \
    WHERE id = ? AND typeof(use_count) = 'integer' AND use_count >= 0";

pub(crate) const CHECKPOINT: &str =
    "SELECT seq, hash, at, mac, mac_key_id FROM audit_checkpoint WHERE id = 1";
/// The checkpoint's seq and hash (where the remaining chain starts).
pub(crate) const CHECKPOINT_HASH: &str = "SELECT seq, hash FROM audit_checkpoint WHERE id = 1";
pub(crate) const TRUNCATE_DELETE: &str = "DELETE FROM audit_events WHERE seq <= ?";
pub(crate) const TRUNCATE_CHECKPOINT: &str = "INSERT INTO audit_checkpoint \
    (id, seq, hash, at, mac, mac_key_id) VALUES (1, ?, ?, ?, ?, ?) \
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, at = excluded.at, \
    mac = excluded.mac, mac_key_id = excluded.mac_key_id";

pub(crate) const MARK_EXPIRED_UPDATE: &str =
    "UPDATE tokens SET expiry_recorded_at = ? WHERE id = ?";

/// A purged row: labels explicitly too, as a host pool may run without `foreign_keys`.
pub(crate) const PURGE_DELETE: [&str; 2] = [
    "DELETE FROM token_labels WHERE token_id = ?",
    "DELETE FROM tokens WHERE id = ?",
];

#[cfg(test)]
mod tests {
    use token_core::TokenState;

    use super::state_condition;

    #[test]
    fn state_conditions_follow_the_precedence() {
        let (active, n) = state_condition(TokenState::Active);
        assert_eq!(n, 4, "expired, not yet valid, idle and used up bind now");
        assert_eq!(active.matches("NOT (").count(), 6);
        let (suspended, n) = state_condition(TokenState::Suspended);
        assert_eq!(n, 1, "after expired, which binds now");
        assert!(
            suspended.ends_with("(t.suspended_at IS NOT NULL))"),
            "{suspended}"
        );
        let (revoked, n) = state_condition(TokenState::Revoked);
        assert_eq!((revoked.as_str(), n), ("((t.revoked_at IS NOT NULL))", 0));
    }
}
