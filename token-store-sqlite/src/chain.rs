//! The tamper-evident audit chain: appending events with their hashes, and the chaining of
//! version-1 events during migration 2.
//!
//! Every append runs inside the caller's `BEGIN IMMEDIATE` transaction, which holds SQLite's write
//! lock: appends from any process sharing the file are serialized, so the head read here is the
//! head the new events follow and the chain cannot fork.

use sqlx::SqliteConnection;
use token_core::audit::{AuditHash, chain_hash};
use token_core::audit_key::append_link;
use token_core::{AuditEvent, KeyId, StoreError};
use token_store_sql::{EVENT_COLUMNS, id_bytes, micros};

use crate::Tx;
use crate::codec::{audit_hash, event_from_row};
use crate::error::{backend, corrupt};

/// Where the next event goes: the largest seq ever used and the hash it must chain from.
struct Head {
    last_seq: i64,
    prev: AuditHash,
}

/// The chain's head: the last event's hash, else the checkpoint's, else [`AuditHash::GENESIS`].
/// The next seq is past every seq ever used (the last event, the checkpoint and SQLite's
/// `AUTOINCREMENT` counter), so sequence numbers are never reused, even after truncation.
async fn head(conn: &mut SqliteConnection) -> Result<Head, StoreError> {
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    let checkpoint: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_checkpoint WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    let counter: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    let prev = match (&last, &checkpoint) {
        (Some((seq, hash)), _) => audit_hash(hash, "audit_events", *seq)?,
        (None, Some((seq, hash))) => audit_hash(hash, "audit_checkpoint", *seq)?,
        (None, None) => AuditHash::GENESIS,
    };
    let last_seq = [
        last.map(|(s, _)| s),
        checkpoint.map(|(s, _)| s),
        counter,
        Some(0),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0);
    Ok(Head { last_seq, prev })
}

const INSERT_EVENT: &str = "INSERT INTO audit_events (seq, at, kind, token_id, fingerprint, \
    subject, actor, client_ip, user_agent, request_id, reason, detail, hash, chain_key_id) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const INSERT_EVENT_V2: &str = "INSERT INTO audit_events_v2 (seq, at, kind, token_id, \
    fingerprint, subject, actor, client_ip, user_agent, request_id, reason, detail, hash) \
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

async fn insert_event(
    conn: &mut SqliteConnection,
    sql: &'static str,
    seq: i64,
    event: &AuditEvent,
    hash: &AuditHash,
    chain_key_id: Option<KeyId>,
) -> Result<(), StoreError> {
    let query = sqlx::query(sql)
        .bind(seq)
        .bind(micros(event.at))
        .bind(event.kind.as_str())
        .bind(event.token_id.map(id_bytes))
        .bind(event.fingerprint.clone())
        .bind(event.subject.clone())
        .bind(event.actor.clone())
        .bind(event.client_ip.clone())
        .bind(event.user_agent.clone())
        .bind(event.request_id.clone())
        .bind(event.reason.clone())
        .bind(event.detail.clone())
        .bind(hash.as_bytes().to_vec());
    // The version-2 copy made by migration 2 has no `chain_key_id` column (version 3 adds it).
    let query = match sql {
        INSERT_EVENT => query.bind(chain_key_id.map(|id| i64::from(id.get()))),
        _ => query,
    };
    query.execute(&mut *conn).await.map_err(backend)?;
    Ok(())
}

fn seq_of(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| corrupt(format!("audit_events.seq {seq} is negative")))
}

/// Appends `events` to the chain, in order, inside the caller's write transaction: each gets the
/// next seq and `hash = chain_hash(previous hash, seq, event)`, or the keyed link and its key id
/// when the transaction carries audit keys. The canonical bytes hold the time in whole
/// microseconds, the column's precision, so the event as read back verifies.
pub(crate) async fn append(tx: &mut Tx, events: &[AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let keys = tx.audit_keys.clone();
    let conn: &mut SqliteConnection = tx;
    let Head {
        mut last_seq,
        mut prev,
    } = head(conn).await?;
    for event in events {
        let seq = last_seq
            .checked_add(1)
            .ok_or_else(|| corrupt("audit_events.seq has reached i64::MAX".to_owned()))?;
        let (key_id, hash) = append_link(keys.as_deref(), &prev, seq_of(seq)?, event);
        insert_event(conn, INSERT_EVENT, seq, event, &hash, key_id).await?;
        last_seq = seq;
        prev = hash;
    }
    Ok(())
}

/// Events copied per round trip while chaining version-1 events.
const BACKFILL_PAGE: i64 = 1000;

/// Migration 2's Rust step: copies every version-1 event from `audit_events` into
/// `audit_events_v2` in seq order (seqs unchanged), each with its chain hash from
/// [`AuditHash::GENESIS`] on; then replaces the old table with the new one, keeping the
/// `AUTOINCREMENT` counter. Runs inside the migration's transaction.
pub(crate) async fn chain_v1_events(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let counter: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    let select = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > ? ORDER BY seq LIMIT {BACKFILL_PAGE}"
    );
    let mut prev = AuditHash::GENESIS;
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let (seq, event) = event_from_row(row)?;
            let stored_seq = i64::try_from(seq)
                .map_err(|_| corrupt(format!("audit_events.seq {seq} exceeds i64::MAX")))?;
            let hash = chain_hash(&prev, seq, &event);
            insert_event(conn, INSERT_EVENT_V2, stored_seq, &event, &hash, None).await?;
            prev = hash;
            after = stored_seq;
        }
    }
    for sql in [
        "DROP TABLE audit_events",
        "ALTER TABLE audit_events_v2 RENAME TO audit_events",
    ] {
        sqlx::query(sql)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    // Dropping the v1 table dropped its counter; the copy set the new table's counter to the
    // largest copied seq. Restore the v1 counter when it was larger (events deleted at the end).
    if let Some(counter) = counter {
        let updated =
            sqlx::query("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'audit_events'")
                .bind(counter)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        if updated.rows_affected() == 0 {
            sqlx::query("INSERT INTO sqlite_sequence (name, seq) VALUES ('audit_events', ?)")
                .bind(counter)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
        }
    }
    Ok(())
}
