//! The access paths use indexes: `EXPLAIN QUERY PLAN` of the store's own SQL (see
//! [Indexes](crate#indexes)).

use time::OffsetDateTime;
use token_core::{
    AuditKind, AuditQuery, Context, Cursor, ListFilter, ListQuery, RevokeRequest, RevokeSelector,
    TokenId, TokenState,
};
use token_store_sql::{AUDIT_COLUMNS, Param};

use crate::SqliteStore;
use crate::statements::{
    LIVE, LOOKUP_SQL, MARK_EXPIRED_SQL, PURGE_SQL, TRUNCATE_SCAN_SQL, audit_query_sql, bind_all,
    list_sql, revoke_sql,
};

async fn store() -> SqliteStore {
    let store = SqliteStore::connect("sqlite::memory:")
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// The plan's detail lines.
async fn plan(store: &SqliteStore, sql: &str, args: Vec<Param>) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(explain)), args)
        .fetch_all(store.pool())
        .await
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
    rows.iter()
        .map(|row| sqlx::Row::try_get::<String, _>(row, "detail").unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// No line scans a table of the store (scanning a CTE's rows is fine: they are the matches).
fn assert_indexed(name: &str, plan: &[String]) {
    let scans: Vec<&String> = plan
        .iter()
        .filter(|line| line.starts_with("SCAN"))
        .filter(|line| {
            !(line.starts_with("SCAN tree")
                || line.starts_with("SCAN matched")
                || line.starts_with("SCAN CONSTANT ROW"))
        })
        .collect();
    assert!(scans.is_empty(), "{name} scans a table: {plan:#?}");
    assert!(
        plan.iter()
            .any(|line| line.contains("USING INDEX") || line.contains("PRIMARY KEY")),
        "{name} uses no index: {plan:#?}"
    );
}

fn blob() -> Param {
    Param::Bytes(vec![1; 16])
}

fn revoke_request(selector: RevokeSelector) -> RevokeRequest {
    RevokeRequest::new(selector, OffsetDateTime::UNIX_EPOCH, "test", Context::new())
}

/// Whether some line of `plan` searches with `index`.
fn uses(plan: &[String], index: &str) -> bool {
    plan.iter()
        .any(|l| l.starts_with("SEARCH") && l.contains(&format!("USING INDEX {index} ")))
}

/// Whether some line of `plan` uses `index` (searching or walking it).
fn uses_any(plan: &[String], index: &str) -> bool {
    plan.iter().any(|l| l.contains(&format!("INDEX {index}")))
}

#[tokio::test]
async fn sweeps_and_audit_queries_use_indexes() {
    let store = store().await;
    let now = OffsetDateTime::UNIX_EPOCH;

    // mark_expired: one range of the partial expiry index, already in expiry order.
    let p = plan(
        &store,
        MARK_EXPIRED_SQL.as_str(),
        vec![Param::Int(0), Param::Int(10)],
    )
    .await;
    assert_indexed("mark_expired", &p);
    assert!(uses(&p, "tokens_expiry_unrecorded"), "mark_expired: {p:#?}");
    assert!(
        !p.iter().any(|l| l.contains("TEMP B-TREE")),
        "mark_expired sorts: {p:#?}"
    );

    // purge: the revoked and the expiry index, each a bounded range.
    let p = plan(
        &store,
        PURGE_SQL.as_str(),
        vec![
            Param::Int(0),
            Param::Int(10),
            Param::Int(0),
            Param::Int(10),
            Param::Int(10),
        ],
    )
    .await;
    assert!(uses(&p, "tokens_revoked"), "purge by revocation: {p:#?}");
    assert!(uses(&p, "tokens_expires"), "purge by expiry: {p:#?}");
    assert!(
        !p.iter()
            .any(|l| l.starts_with("SCAN tokens") || l == "SCAN t"),
        "purge scans tokens: {p:#?}"
    );

    // Revoke unused (retention), bounded and unbounded.
    for (name, request) in [
        (
            "revoke unused",
            revoke_request(RevokeSelector::UnusedSince(now)),
        ),
        (
            "revoke unused, bounded",
            revoke_request(RevokeSelector::UnusedSince(now)).with_limit(10),
        ),
    ] {
        let (sql, args) = revoke_sql(&request).unwrap_or_else(|| panic!("{name}"));
        let p = plan(&store, &sql, args).await;
        assert_indexed(name, &p);
        assert!(uses(&p, "tokens_unused"), "{name}: {p:#?}");
    }
    // Bounded, the matches come in index order: no sort beyond the final result order that
    // every revocation has.
    let sorts = |p: &[String]| p.iter().filter(|l| l.contains("TEMP B-TREE")).count();
    let (sql, args) = revoke_sql(&revoke_request(RevokeSelector::UnusedSince(now)))
        .unwrap_or_else(|| panic!("unbounded"));
    let unbounded = plan(&store, &sql, args).await;
    let (sql, args) = revoke_sql(&revoke_request(RevokeSelector::UnusedSince(now)).with_limit(10))
        .unwrap_or_else(|| panic!("bounded"));
    let bounded = plan(&store, &sql, args).await;
    assert_eq!(
        sorts(&bounded),
        sorts(&unbounded),
        "a bounded unused revocation sorts its matches: {bounded:#?}"
    );

    // truncate_audit: walks the primary key from the oldest event and stops after `limit`.
    let p = plan(&store, TRUNCATE_SCAN_SQL, vec![Param::Int(10)]).await;
    assert_eq!(
        p,
        vec!["SCAN audit_events".to_owned()],
        "truncate_audit: {p:#?}"
    );
    let p = plan(
        &store,
        "DELETE FROM audit_events WHERE seq <= ?",
        vec![Param::Int(10)],
    )
    .await;
    assert!(
        p.iter()
            .any(|l| l.contains("INTEGER PRIMARY KEY (rowid<?)")),
        "truncate delete: {p:#?}"
    );

    // Audit queries: each filter is an index range in seq order (no sort), also after a seq.
    for (name, query, index) in [
        (
            "audit by subject",
            AuditQuery::new().subject("alice"),
            "audit_events_subject",
        ),
        (
            "audit by subject, next page",
            AuditQuery::new().subject("alice").after(42),
            "audit_events_subject",
        ),
        (
            "audit by actor",
            AuditQuery::new().actor("admin:1").after(42),
            "audit_events_actor",
        ),
        (
            "audit by kind",
            AuditQuery::new().kind(AuditKind::Revoked).after(42),
            "audit_events_kind",
        ),
        (
            "audit by token",
            AuditQuery::new()
                .token(TokenId::from_bytes([1; 16]))
                .after(42),
            "audit_events_token",
        ),
    ] {
        let (sql, args) = audit_query_sql(&query);
        let p = plan(&store, &sql, args).await;
        assert_indexed(name, &p);
        assert!(uses(&p, index), "{name}: {p:#?}");
        assert!(
            !p.iter().any(|l| l.contains("TEMP B-TREE")),
            "{name} sorts: {p:#?}"
        );
    }
    let (sql, args) = audit_query_sql(&AuditQuery::new().after(42));
    let p = plan(&store, &sql, args).await;
    assert_indexed("audit, next page", &p);
    assert!(
        p.iter()
            .any(|l| l.contains("INTEGER PRIMARY KEY (rowid>?)")),
        "{p:#?}"
    );
    // The stale-token report spans every state: it walks the listing order and filters.
    let (sql, args) = list_sql(&ListQuery::new(
        ListFilter::all().unused_since(now),
        now,
        None,
        10,
    ));
    let p = plan(&store, &sql, args).await;
    assert!(uses_any(&p, "tokens_created"), "stale-token report: {p:#?}");
    assert!(
        !p.iter().any(|l| l.contains("TEMP B-TREE")),
        "stale-token report sorts: {p:#?}"
    );

    let (sql, args) = audit_query_sql(&AuditQuery::new().between(now, now));
    let p = plan(&store, &sql, args).await;
    assert_indexed("audit by time", &p);
}

#[tokio::test]
async fn access_paths_use_indexes() {
    let store = store().await;
    let now = OffsetDateTime::UNIX_EPOCH;
    let p = plan(&store, LOOKUP_SQL.as_str(), vec![blob()]).await;
    assert_indexed("lookup", &p);
    assert!(
        p.iter()
            .any(|l| l.contains("SEARCH t USING INDEX sqlite_autoindex_tokens_1 (id=?)")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|l| l.contains("token_labels_key_value") || l.contains("PRIMARY KEY")),
        "labels of a lookup: {p:#?}"
    );

    for (name, selector) in [
        (
            "revoke by id",
            RevokeSelector::Token(TokenId::from_bytes([1; 16])),
        ),
        ("revoke by subject", RevokeSelector::Subject("alice".into())),
        (
            "revoke by family",
            RevokeSelector::Family(TokenId::from_bytes([1; 16])),
        ),
        (
            "revoke by label",
            RevokeSelector::Label {
                key: "k".into(),
                value: "v".into(),
            },
        ),
        ("revoke issued before", RevokeSelector::IssuedBefore(now)),
    ] {
        let (sql, args) = revoke_sql(&revoke_request(selector)).unwrap_or_else(|| panic!("{name}"));
        let p = plan(&store, &sql, args).await;
        assert_indexed(name, &p);
        assert!(
            p.iter().any(|l| l.contains("tokens_parent")),
            "{name}: the descendant walk must use the parent index: {p:#?}"
        );
    }
    let (sql, args) = revoke_sql(&revoke_request(RevokeSelector::Subject("alice".into())))
        .unwrap_or_else(|| panic!("subject"));
    let p = plan(&store, &sql, args).await;
    assert!(
        p.iter().any(|l| l.contains("tokens_subject (subject=?)")),
        "{p:#?}"
    );

    let list = |filter: ListFilter, after: Option<Cursor>| {
        list_sql(&ListQuery::new(filter, now, after, 10))
    };
    let cursor = Cursor::new(now, TokenId::from_bytes([1; 16]));
    for (name, (sql, args)) in [
        (
            "list by subject",
            list(ListFilter::all().subject("alice"), None),
        ),
        (
            "list by subject after a cursor",
            list(ListFilter::all().subject("alice"), Some(cursor)),
        ),
        (
            "list by label",
            list(ListFilter::all().label("k", "v"), None),
        ),
        (
            "list by family",
            list(ListFilter::all().family(TokenId::from_bytes([1; 16])), None),
        ),
        (
            "list all after a cursor",
            list(ListFilter::all(), Some(cursor)),
        ),
        (
            "list active of a subject",
            list(
                ListFilter::all().subject("alice").state(TokenState::Active),
                None,
            ),
        ),
    ] {
        let p = plan(&store, &sql, args).await;
        assert_indexed(name, &p);
    }
    let (sql, args) = list(ListFilter::all().subject("alice"), None);
    let p = plan(&store, &sql, args).await;
    assert!(
        p.iter().any(|l| l.contains("tokens_subject (subject=?)")),
        "{p:#?}"
    );

    let live_by_subject = format!("SELECT count(*) FROM tokens WHERE subject = ? AND {LIVE}");
    let p = plan(
        &store,
        &live_by_subject,
        vec![Param::Text("a".into()), Param::Int(0)],
    )
    .await;
    assert_indexed("live count by subject", &p);
    let live_by_key = format!("SELECT count(*) FROM tokens WHERE hash_key_id = ? AND {LIVE}");
    let p = plan(&store, &live_by_key, vec![Param::Int(1), Param::Int(0)]).await;
    assert_indexed("live count by key", &p);
    let audit = format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE token_id = ? ORDER BY seq");
    let p = plan(&store, &audit, vec![blob()]).await;
    assert_indexed("audit of a token", &p);
    assert!(
        !p.iter().any(|l| l.contains("TEMP B-TREE")),
        "audit order needs a sort: {p:#?}"
    );
    let p = plan(
        &store,
        crate::statements::CONSUME_USE,
        vec![
            blob(),
            Param::Int(0),
            Param::OptText(None),
            Param::OptInt(None),
        ],
    )
    .await;
    assert_indexed("consume a use", &p);
}
