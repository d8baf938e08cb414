//! The store's SQL: every statement, with the quoted schema interpolated once per store, and the
//! builders of the queries whose conditions depend on the request (listing, revocation, audit
//! queries) with their parameters.

use std::sync::Arc;

use sqlx::postgres::PgArguments;
use sqlx::{AssertSqlSafe, Postgres};
use token_core::{AuditQuery, ListQuery, RevokeRequest, RevokeSelector};
use token_store_sql::{
    AUDIT_COLUMNS, Param, TOKEN_INSERT_COLUMNS, audit_conditions, id_bytes, micros, micros_ceil,
};

use crate::chain::Chain;
use crate::codec::TOKEN_COLUMNS;

/// The statements, with the quoted schema interpolated once.
pub(crate) struct Sql {
    pub(crate) get: Arc<str>,
    pub(crate) get_for_share: Arc<str>,
    pub(crate) get_for_update: Arc<str>,
    pub(crate) active: Arc<str>,
    pub(crate) count_live_subject: Arc<str>,
    pub(crate) insert_token: Arc<str>,
    pub(crate) insert_labels: Arc<str>,
    pub(crate) chain: Chain,
    pub(crate) rotate: Arc<str>,
    pub(crate) reparent: Arc<str>,
    pub(crate) lock_for_rotate: Arc<str>,
    pub(crate) cutoff_for_share: Arc<str>,
    pub(crate) raise_cutoff: Arc<str>,
    pub(crate) lock_for_revoke: Arc<str>,
    pub(crate) unused_candidates: Arc<str>,
    pub(crate) lock_unused: Arc<str>,
    pub(crate) revoke: Arc<str>,
    pub(crate) set_suspended: Arc<str>,
    pub(crate) claim_proof: Arc<str>,
    pub(crate) purge_proof_claims: Arc<str>,
    pub(crate) children_for_update: Arc<str>,
    pub(crate) update_token: Arc<str>,
    pub(crate) delete_labels: Arc<str>,
    pub(crate) consume_use: Arc<str>,
    pub(crate) lock_for_usage: Arc<str>,
    pub(crate) record_usage: Arc<str>,
    pub(crate) existing: Arc<str>,
    pub(crate) count_live_key: Arc<str>,
    audit_base: String,
    pub(crate) checkpoint: Arc<str>,
    pub(crate) checkpoint_hash: Arc<str>,
    pub(crate) truncate_scan: Arc<str>,
    pub(crate) truncate_delete: Arc<str>,
    pub(crate) truncate_checkpoint: Arc<str>,
    pub(crate) mark_expired: Arc<str>,
    pub(crate) mark_expired_update: Arc<str>,
    pub(crate) purge: Arc<str>,
    pub(crate) purge_delete: Arc<str>,
    list_base: String,
    /// `tokens` and `token_labels`, quoted, for the revocation's selector queries.
    tokens: String,
    labels: String,
}

impl Sql {
    pub(crate) fn new(schema: &str, s: &str) -> Self {
        let cols = TOKEN_COLUMNS.replace("{schema}", s);
        let arc = |text: String| -> Arc<str> { Arc::from(text) };
        Self {
            get: arc(format!("SELECT {cols} FROM {s}.tokens t WHERE t.id = $1")),
            get_for_share: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = $1 FOR SHARE OF t"
            )),
            get_for_update: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = $1 FOR UPDATE OF t"
            )),
            active: arc(format!(
                "SELECT revoked_at IS NULL AND suspended_at IS NULL AND rotated_to IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) \
                 FROM {s}.tokens WHERE id = $1"
            )),
            count_live_subject: arc(format!(
                "SELECT count(*) FROM {s}.tokens WHERE subject = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            insert_token: arc(format!(
                "INSERT INTO {s}.tokens ({TOKEN_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
                 $22, $23, $24, $25, $26, $27, $28, $29, $30)"
            )),
            insert_labels: arc(format!(
                "INSERT INTO {s}.token_labels (token_id, key, value) \
                 SELECT $1, k, v FROM UNNEST($2::text[], $3::text[]) AS u(k, v)"
            )),
            chain: Chain::new(schema, s),
            rotate: arc(format!(
                "UPDATE {s}.tokens SET rotated_to = $2, expires_at = $3 WHERE id = $1"
            )),
            // A rotation's first lock: the predecessor and its children, in id order (the order
            // usage flushes and revocations lock in), since the rotation moves the children.
            lock_for_rotate: arc(format!(
                "SELECT id FROM {s}.tokens WHERE id = $1 OR parent_id = $1 \
                 ORDER BY id FOR UPDATE"
            )),
            reparent: arc(format!(
                "UPDATE {s}.tokens SET parent_id = $2 WHERE parent_id = $1"
            )),
            cutoff_for_share: arc(format!(
                "SELECT issued_before FROM {s}.revocation_cutoff WHERE id = 1 FOR SHARE"
            )),
            raise_cutoff: arc(format!(
                "INSERT INTO {s}.revocation_cutoff (id, issued_before) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET \
                 issued_before = GREATEST({s}.revocation_cutoff.issued_before, EXCLUDED.issued_before)"
            )),
            // `revoke(UnusedSince)`: the longest-unused live tokens (`LIMIT NULL` is no limit),
            // then the same condition re-checked on each under its row lock (a use committed
            // meanwhile drops the token), locked in id order.
            unused_candidates: arc(format!(
                "SELECT id FROM {s}.tokens WHERE revoked_at IS NULL \
                 AND coalesce(last_used_at, created_at) < $1 \
                 AND (expires_at IS NULL OR expires_at > $2) \
                 ORDER BY coalesce(last_used_at, created_at), id LIMIT $3"
            )),
            lock_unused: arc(format!(
                "SELECT id FROM {s}.tokens WHERE id = ANY($1::bytea[]) AND revoked_at IS NULL \
                 AND coalesce(last_used_at, created_at) < $2 \
                 AND (expires_at IS NULL OR expires_at > $3) \
                 ORDER BY id FOR UPDATE"
            )),
            lock_for_revoke: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id = ANY($1::bytea[]) \
                 AND t.revoked_at IS NULL ORDER BY t.id FOR UPDATE OF t"
            )),
            revoke: arc(format!(
                "UPDATE {s}.tokens SET revoked_at = $2, revoke_reason = $3, revoked_by = $4 \
                 WHERE id = ANY($1::bytea[]) AND revoked_at IS NULL"
            )),
            claim_proof: arc(format!(
                "INSERT INTO {s}.dpop_proofs (key, expires_at) VALUES ($1, $2) \
                 ON CONFLICT (key) DO NOTHING"
            )),
            purge_proof_claims: arc(format!(
                "DELETE FROM {s}.dpop_proofs WHERE key IN (SELECT key FROM {s}.dpop_proofs \
                 WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)"
            )),
            set_suspended: arc(format!(
                "UPDATE {s}.tokens SET suspended_at = $2 WHERE id = ANY($1::bytea[])"
            )),
            // An update narrows children after their parent, each locked before it is read.
            children_for_update: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.parent_id = $1 ORDER BY t.id \
                 FOR UPDATE OF t"
            )),
            update_token: arc({
                let set: Vec<String> = token_store_sql::TOKEN_UPDATE_COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(i, column)| format!("{column} = ${}", i + 2))
                    .collect();
                format!("UPDATE {s}.tokens SET {} WHERE id = $1", set.join(", "))
            }),
            delete_labels: arc(format!("DELETE FROM {s}.token_labels WHERE token_id = $1")),
            consume_use: arc(format!(
                "UPDATE {s}.tokens SET \
                 use_count = CASE WHEN next_refill_at <= $2 THEN 1 ELSE use_count + 1 END, \
                 next_refill_at = CASE WHEN next_refill_at <= $2 THEN $4 ELSE next_refill_at END, \
                 last_used_at = GREATEST(last_used_at, $2) \
                 WHERE id = $1 AND use_refill IS NOT DISTINCT FROM $3 \
                 AND (max_uses IS NULL OR next_refill_at <= $2 OR use_count < max_uses) \
                 AND revoked_at IS NULL AND suspended_at IS NULL AND rotated_to IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2) \
                 RETURNING use_count"
            )),
            // In id order, as revocations lock: two flushes (or a flush and a revocation)
            // never wait on each other in a cycle.
            lock_for_usage: arc(format!(
                "SELECT id FROM {s}.tokens WHERE id = ANY($1::bytea[]) \
                 ORDER BY id FOR NO KEY UPDATE"
            )),
            // Only rows whose use_count is a valid count (a negative one would overflow the
            // saturation below); the ids updated are returned.
            record_usage: arc(format!(
                "UPDATE {s}.tokens t SET \
                   use_count = t.use_count + LEAST(u.uses, 9223372036854775807 - t.use_count), \
                   last_used_at = GREATEST(t.last_used_at, u.at) \
                 FROM UNNEST($1::bytea[], $2::bigint[], $3::bigint[]) AS u(id, at, uses) \
                 WHERE t.id = u.id AND t.use_count >= 0 \
                 RETURNING t.id"
            )),
            existing: arc(format!(
                "SELECT id FROM {s}.tokens WHERE id = ANY($1::bytea[])"
            )),
            count_live_key: arc(format!(
                "SELECT count(*) FROM {s}.tokens WHERE hash_key_id = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            audit_base: format!("SELECT {AUDIT_COLUMNS} FROM {s}.audit_events WHERE TRUE"),
            checkpoint: arc(format!(
                "SELECT seq, hash, at, mac, mac_key_id FROM {s}.audit_checkpoint WHERE id = 1"
            )),
            checkpoint_hash: arc(format!(
                "SELECT seq, hash FROM {s}.audit_checkpoint WHERE id = 1"
            )),
            truncate_scan: arc(format!(
                "SELECT seq, at, hash FROM {s}.audit_events ORDER BY seq LIMIT $1"
            )),
            truncate_delete: arc(format!("DELETE FROM {s}.audit_events WHERE seq <= $1")),
            truncate_checkpoint: arc(format!(
                "INSERT INTO {s}.audit_checkpoint AS c (id, seq, hash, at, mac, mac_key_id) \
                 VALUES (1, $1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
                 at = excluded.at, mac = excluded.mac, mac_key_id = excluded.mac_key_id \
                 WHERE c.seq < excluded.seq"
            )),
            // Rows another sweep has locked are skipped: concurrent sweeps split the work and
            // each expiry is recorded once.
            mark_expired: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.expires_at <= $1 \
                 AND t.revoked_at IS NULL AND t.expiry_recorded_at IS NULL \
                 ORDER BY t.expires_at LIMIT $2 FOR UPDATE OF t SKIP LOCKED"
            )),
            mark_expired_update: arc(format!(
                "UPDATE {s}.tokens SET expiry_recorded_at = $2 WHERE id = ANY($1::bytea[])"
            )),
            purge: arc(format!(
                "SELECT {cols} FROM {s}.tokens t WHERE t.id IN ( \
                   (SELECT id FROM {s}.tokens WHERE revoked_at < $1 ORDER BY revoked_at LIMIT $3) \
                   UNION \
                   (SELECT id FROM {s}.tokens WHERE expires_at < $2 ORDER BY expires_at LIMIT $3)) \
                 ORDER BY t.id LIMIT $3 FOR UPDATE OF t SKIP LOCKED"
            )),
            purge_delete: arc(format!(
                "DELETE FROM {s}.tokens WHERE id = ANY($1::bytea[])"
            )),
            tokens: format!("{s}.tokens"),
            labels: format!("{s}.token_labels"),
            list_base: format!("SELECT {cols} FROM {s}.tokens t WHERE TRUE"),
        }
    }
}

/// A statement's text, for `sqlx::query`.
pub(crate) fn q(sql: &Arc<str>) -> AssertSqlSafe<Arc<str>> {
    AssertSqlSafe(Arc::clone(sql))
}

/// Takes the subject's live-token lock (until the end of the transaction) before its live
/// tokens are counted, so concurrent issues cannot exceed the limit; keyed by schema and subject.
pub(crate) const SUBJECT_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended(\
    'token_store_subject:' || $1 || ':' || $2, 0))";

/// Binds the parameters of a query built at run time, in order.
pub(crate) fn bind_all(
    mut query: sqlx::query::Query<'_, Postgres, PgArguments>,
    args: Vec<Param>,
) -> sqlx::query::Query<'_, Postgres, PgArguments> {
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

impl Sql {
    /// The listing query for `query` and its parameters.
    pub(crate) fn list_sql(&self, query: &ListQuery) -> (String, Vec<Param>) {
        let filter = &query.filter;
        let mut sql = self.list_base.clone();
        let mut args = Vec::new();
        // Adds a parameter; its placeholder number.
        let mut param = |arg: Param| {
            args.push(arg);
            args.len()
        };
        if let Some(subject) = &filter.subject {
            let n = param(Param::Text(subject.clone()));
            sql.push_str(&format!(" AND t.subject = ${n}"));
        }
        if let Some((key, value)) = &filter.label {
            let (k, v) = (
                param(Param::Text(key.clone())),
                param(Param::Text(value.clone())),
            );
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM {} l WHERE l.token_id = t.id \
                 AND l.key = ${k} AND l.value = ${v})",
                self.labels
            ));
        }
        if let Some(family) = filter.family {
            let n = param(Param::Bytes(id_bytes(family)));
            sql.push_str(&format!(" AND t.family_id = ${n}"));
        }
        if let Some(cursor) = query.after {
            let (c, i) = (
                param(Param::Int(micros(cursor.created_at))),
                param(Param::Bytes(id_bytes(cursor.id))),
            );
            sql.push_str(&format!(
                " AND (t.created_at, t.id) > (${c}::bigint, ${i}::bytea)"
            ));
        }
        if let Some(state) = filter.state {
            let (now, state) = (
                param(Param::Int(micros(query.now))),
                param(Param::Text(state.as_str().to_owned())),
            );
            sql.push_str(&format!(" AND {} = ${state}", state_sql(now)));
        }
        if let Some(since) = filter.unused_since {
            let n = param(Param::Int(micros_ceil(since)));
            sql.push_str(&format!(
                " AND coalesce(t.last_used_at, t.created_at) < ${n}"
            ));
        }
        let n = param(Param::Int(i64::from(query.limit)));
        sql.push_str(&format!(" ORDER BY t.created_at, t.id LIMIT ${n}"));
        (sql, args)
    }

    /// The audit query for `query` and its parameters
    /// ([`AuditQuery::matches`](token_core::AuditQuery::matches), in seq order).
    pub(crate) fn audit_query_sql(&self, query: &AuditQuery) -> (String, Vec<Param>) {
        let mut sql = self.audit_base.clone();
        let mut args: Vec<Param> = Vec::new();
        for (condition, arg) in audit_conditions(query) {
            args.push(arg);
            sql.push_str(&format!(" AND {condition} ${}", args.len()));
        }
        args.push(Param::Int(i64::from(query.limit)));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", args.len()));
        (sql, args)
    }

    /// The query selecting the ids a revocation reaches in one round: the selector's matches
    /// (when `matches` is set) plus all descendants of them and of the ids already known, and
    /// its parameters; the known ids (`bytea[]`) are bound after those, as the last parameter.
    /// With [`RevokeRequest::limit`](token_core::RevokeRequest::limit), at most that many
    /// not-yet-revoked matches, the longest-unused first.
    pub(crate) fn revoke_sql(
        &self,
        request: &RevokeRequest,
        matches: bool,
    ) -> (String, Vec<Param>) {
        let (tokens, labels) = (&self.tokens, &self.labels);
        // A condition on `tokens` and its parameters ($1, $2, ...).
        let (condition, mut args): (String, Vec<Param>) = match &request.selector {
            _ if !matches => ("FALSE".to_owned(), Vec::new()),
            RevokeSelector::Token(id) => ("id = $1".to_owned(), vec![Param::Bytes(id_bytes(*id))]),
            RevokeSelector::Subject(subject) => (
                "subject = $1".to_owned(),
                vec![Param::Text(subject.clone())],
            ),
            RevokeSelector::Family(id) => (
                format!("family_id = (SELECT m.family_id FROM {tokens} m WHERE m.id = $1)"),
                vec![Param::Bytes(id_bytes(*id))],
            ),
            RevokeSelector::Label { key, value } => (
                format!("id IN (SELECT token_id FROM {labels} WHERE key = $1 AND value = $2)"),
                vec![Param::Text(key.clone()), Param::Text(value.clone())],
            ),
            RevokeSelector::IssuedBefore(at) => (
                "created_at < $1".to_owned(),
                vec![Param::Int(micros_ceil(*at))],
            ),
            // Live at the request time and not used since `since`: a range of the partial index
            // `tokens_unused_idx`.
            RevokeSelector::UnusedSince(since) => (
                "revoked_at IS NULL AND coalesce(last_used_at, created_at) < $1 \
                 AND (expires_at IS NULL OR expires_at > $2)"
                    .to_owned(),
                vec![
                    Param::Int(micros_ceil(*since)),
                    Param::Int(micros(request.at)),
                ],
            ),
            // Newer selectors this store does not know match nothing rather than everything;
            // descendants of what is already known are still followed.
            _ => ("FALSE".to_owned(), Vec::new()),
        };
        let matched = match request.limit {
            Some(limit) if matches => {
                args.push(Param::Int(i64::from(limit)));
                format!(
                    "SELECT id FROM {tokens} WHERE {condition} AND revoked_at IS NULL \
                     ORDER BY coalesce(last_used_at, created_at), id LIMIT ${}",
                    args.len()
                )
            }
            _ => format!("SELECT id FROM {tokens} WHERE {condition}"),
        };
        let sql = format!(
            "WITH RECURSIVE tree(id) AS ( \
                (({matched}) UNION SELECT unnest(${}::bytea[])) \
              UNION \
                SELECT c.id FROM {tokens} c JOIN tree ON c.parent_id = tree.id \
             ) SELECT id FROM tree",
            args.len() + 1
        );
        (sql, args)
    }
}

/// The state of `t` at `$now` (unix µs), exactly as
/// [`TokenRecord::state_at`](token_core::TokenRecord::state_at) computes it: revoked, expired
/// (`now >= expires_at`), suspended, not yet valid (`now < not_before`), idle
/// (`now >= max(last_used_at, not_before, created_at) + idle_timeout`, in `numeric` so no
/// overflow), used up (`use_count >= max_uses`, unless a refill is due), else active.
fn state_sql(now: usize) -> String {
    format!(
        "(CASE \
           WHEN t.revoked_at IS NOT NULL THEN 'revoked' \
           WHEN t.expires_at IS NOT NULL AND ${now}::bigint >= t.expires_at THEN 'expired' \
           WHEN t.suspended_at IS NOT NULL THEN 'suspended' \
           WHEN t.not_before IS NOT NULL AND ${now}::bigint < t.not_before THEN 'not_yet_valid' \
           WHEN t.idle_timeout_us IS NOT NULL AND ${now}::bigint::numeric \
                >= GREATEST(t.last_used_at, t.not_before, t.created_at)::numeric \
                   + t.idle_timeout_us::numeric THEN 'idle_expired' \
           WHEN t.max_uses IS NOT NULL AND t.use_count >= t.max_uses \
                AND (t.next_refill_at IS NULL OR ${now}::bigint < t.next_refill_at) THEN 'used_up' \
           ELSE 'active' END)"
    )
}
