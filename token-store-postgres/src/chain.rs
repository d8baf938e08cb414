//! The tamper-evident audit chain: appending events with their hashes (serialized per schema by a
//! transaction-scoped advisory lock), and the chaining of version-1 events during migration 2.

use std::sync::{Arc, PoisonError, RwLock};

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Row};
use token_core::audit::{AuditHash, chain_hash};
use token_core::audit_key::{append_link, seal_checkpoint};
use token_core::clock::from_unix_micros;
use token_core::{AuditCheckpoint, AuditEvent, AuditKeyring, StoreError};
use token_store_sql::{EVENT_COLUMNS, id_bytes, micros};

use crate::codec::{audit_hash, event_from_row};
use crate::error::{backend, backend_in, corrupt};

/// The advisory lock every append (and truncation) takes before reading the chain's head. Keyed
/// by the schema, so stores in different schemas do not wait for each other.
const LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('token_store_audit:' || $1, 0))";

/// The chain statements of one schema.
pub(crate) struct Chain {
    schema: String,
    head: Arc<str>,
    insert: Arc<str>,
    /// The audit keys appends chain with ([`PgStore::with_audit_keys`](crate::PgStore::with_audit_keys)).
    keys: RwLock<Option<Arc<AuditKeyring>>>,
}

/// Where the next events go: the hash they chain from, the largest seq already used, and the
/// seqs reserved for them.
struct Head {
    prev: AuditHash,
    last_seq: i64,
    seqs: Vec<i64>,
}

impl Chain {
    /// Statements for the store in `schema` (`quoted`: the quoted schema name).
    pub(crate) fn new(schema: &str, quoted: &str) -> Self {
        // The schema name is validated ([a-z_][a-z0-9_]*), so it is safe inside a literal.
        let sequence = format!("pg_get_serial_sequence('{quoted}.audit_events', 'seq')");
        Self {
            schema: schema.to_owned(),
            head: Arc::from(format!(
                "SELECT last.seq AS last_seq, last.hash AS last_hash, \
                        cp.seq AS cp_seq, cp.hash AS cp_hash, \
                        ARRAY(SELECT nextval({sequence}) FROM generate_series(1, $1::int4)) \
                            AS seqs \
                 FROM (SELECT 1) AS one \
                 LEFT JOIN LATERAL (SELECT seq, hash FROM {quoted}.audit_events \
                                    ORDER BY seq DESC LIMIT 1) AS last ON TRUE \
                 LEFT JOIN {quoted}.audit_checkpoint cp ON cp.id = 1"
            )),
            insert: Arc::from(format!(
                "INSERT INTO {quoted}.audit_events (seq, at, kind, token_id, fingerprint, \
                 subject, actor, client_ip, user_agent, request_id, reason, detail, hash, \
                 chain_key_id) \
                 OVERRIDING SYSTEM VALUE \
                 SELECT seq, at, kind, token_id, fingerprint, subject, actor, client_ip, \
                        user_agent, request_id, reason, detail, hash, chain_key_id \
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::text[], \
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], \
                             $11::text[], $12::text[], $13::bytea[], $14::bigint[]) \
                      AS u(seq, at, kind, token_id, fingerprint, subject, actor, client_ip, \
                           user_agent, request_id, reason, detail, hash, chain_key_id) \
                 ORDER BY seq"
            )),
            keys: RwLock::new(None),
        }
    }

    /// The audit keys, if the store has them.
    pub(crate) fn keys(&self) -> Option<Arc<AuditKeyring>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Chains every later append with the current key of `keys`.
    pub(crate) fn set_keys(&self, keys: AuditKeyring) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
    }

    /// The checkpoint naming the last removed event (`seq`, `hash`, `at` in micros), sealed
    /// with the current audit key when the store has audit keys (see
    /// [`seal_checkpoint`](token_core::audit_key::seal_checkpoint)).
    pub(crate) fn seal_checkpoint(
        &self,
        seq: i64,
        hash: AuditHash,
        at: i64,
    ) -> Result<AuditCheckpoint, StoreError> {
        let at = from_unix_micros(at).ok_or_else(|| {
            corrupt(format!(
                "audit_events.at of seq {seq}: {at} µs is out of range"
            ))
        })?;
        let seq =
            u64::try_from(seq).map_err(|_| corrupt(format!("audit_events: negative seq {seq}")))?;
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(seal_checkpoint(keys.as_deref(), seq, hash, at))
    }

    /// Takes the schema's chain lock until the end of the caller's transaction. Every writer of
    /// the chain takes it (last, after any row locks), so appends are serialized and each reads
    /// the head its predecessor committed.
    pub(crate) async fn lock(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        sqlx::query(LOCK_SQL)
            .bind(&self.schema)
            .execute(&mut *conn)
            .await
            .map_err(backend_in)?;
        Ok(())
    }

    /// Reads the head (with a snapshot taken after the lock) and reserves `n` sequence numbers.
    async fn head(&self, conn: &mut PgConnection, n: usize) -> Result<Head, StoreError> {
        let count = i32::try_from(n).map_err(|_| StoreError::Conflict {
            message: format!("{n} audit events in one change is too many"),
        })?;
        let row = sqlx::query(AssertSqlSafe(Arc::clone(&self.head)))
            .bind(count)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend_in)?;
        let read = |column: &str| -> Result<Option<i64>, StoreError> {
            row.try_get(column)
                .map_err(|e| corrupt(format!("audit chain head: {column} unreadable ({e})")))
        };
        let read_bytes = |column: &str| -> Result<Option<Vec<u8>>, StoreError> {
            row.try_get(column)
                .map_err(|e| corrupt(format!("audit chain head: {column} unreadable ({e})")))
        };
        let last_seq = read("last_seq")?;
        let last_hash = read_bytes("last_hash")?;
        let cp_seq = read("cp_seq")?;
        let cp_hash = read_bytes("cp_hash")?;
        let mut seqs: Vec<i64> = row
            .try_get("seqs")
            .map_err(|e| corrupt(format!("audit chain head: seqs unreadable ({e})")))?;
        seqs.sort_unstable();
        let prev = match (last_seq, &last_hash, cp_seq, &cp_hash) {
            (Some(seq), Some(hash), _, _) => audit_hash(hash, "audit_events", seq)?,
            (Some(seq), None, _, _) => {
                return Err(corrupt(format!(
                    "audit_events row seq {seq}: column hash: missing"
                )));
            }
            (None, _, Some(seq), Some(hash)) => audit_hash(hash, "audit_checkpoint", seq)?,
            _ => AuditHash::GENESIS,
        };
        Ok(Head {
            prev,
            last_seq: last_seq.into_iter().chain(cp_seq).max().unwrap_or(0),
            seqs,
        })
    }

    /// Appends `events` in order inside the caller's transaction: takes the chain lock, reads the
    /// head (the last event's hash, else the checkpoint's, else [`AuditHash::GENESIS`]), gives
    /// each event the next identity value as its seq and stores
    /// `hash = chain_hash(previous hash, seq, event)`, or the keyed link and its key id when the
    /// store has audit keys.
    pub(crate) async fn append(
        &self,
        conn: &mut PgConnection,
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.lock(conn).await?;
        let Head {
            mut prev,
            last_seq,
            seqs,
        } = self.head(conn, events.len()).await?;
        if seqs.len() != events.len() || seqs.first().is_some_and(|s| *s <= last_seq) {
            // Someone reset the identity sequence (or inserted seqs past it): appending would
            // reuse or reorder sequence numbers.
            return Err(corrupt(format!(
                "audit_events: the seq identity yields {seqs:?}, not past the last used seq \
                 {last_seq}"
            )));
        }
        let keys = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut hashes = Vec::with_capacity(events.len());
        let mut key_ids = Vec::with_capacity(events.len());
        for (event, seq) in events.iter().zip(&seqs) {
            let unsigned = u64::try_from(*seq)
                .map_err(|_| corrupt(format!("audit_events: negative seq {seq}")))?;
            let (key_id, hash) = append_link(keys.as_deref(), &prev, unsigned, event);
            hashes.push(hash.as_bytes().to_vec());
            key_ids.push(key_id.map(|id| i64::from(id.get())));
            prev = hash;
        }
        let text = |f: fn(&AuditEvent) -> &Option<String>| -> Vec<Option<&str>> {
            events.iter().map(|e| f(e).as_deref()).collect()
        };
        sqlx::query(AssertSqlSafe(Arc::clone(&self.insert)))
            .bind(seqs)
            .bind(events.iter().map(|e| micros(e.at)).collect::<Vec<i64>>())
            .bind(
                events
                    .iter()
                    .map(|e| e.kind.as_str())
                    .collect::<Vec<&str>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|e| e.token_id.map(id_bytes))
                    .collect::<Vec<Option<Vec<u8>>>>(),
            )
            .bind(text(|e| &e.fingerprint))
            .bind(text(|e| &e.subject))
            .bind(text(|e| &e.actor))
            .bind(text(|e| &e.client_ip))
            .bind(text(|e| &e.user_agent))
            .bind(text(|e| &e.request_id))
            .bind(text(|e| &e.reason))
            .bind(text(|e| &e.detail))
            .bind(hashes)
            .bind(key_ids)
            .execute(&mut *conn)
            .await
            .map_err(backend_in)?;
        Ok(())
    }
}

/// Events hashed per round trip while chaining version-1 events.
const BACKFILL_PAGE: i64 = 1000;

/// Migration 2's Rust step: computes the chain hash of every version-1 event in seq order from
/// [`AuditHash::GENESIS`] and stores it in the new `hash` column. Runs inside the migration's
/// transaction, after `ALTER TABLE ... ADD COLUMN hash` took `audit_events`' exclusive lock, so no
/// event is added meanwhile. An event that cannot be decoded fails the migration with
/// [`StoreError::Corrupt`] naming its seq.
pub(crate) async fn chain_v1_events(
    conn: &mut PgConnection,
    quoted: &str,
) -> Result<(), StoreError> {
    let select = format!(
        "SELECT {EVENT_COLUMNS} FROM {quoted}.audit_events WHERE seq > $1 ORDER BY seq \
         LIMIT {BACKFILL_PAGE}"
    );
    let update = format!(
        "UPDATE {quoted}.audit_events a SET hash = u.hash \
         FROM UNNEST($1::bigint[], $2::bytea[]) AS u(seq, hash) WHERE a.seq = u.seq"
    );
    let mut prev = AuditHash::GENESIS;
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(AssertSqlSafe(select.clone()))
            .bind(after)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        for row in &rows {
            let (seq, event) = event_from_row(row)?;
            let hash = chain_hash(&prev, seq, &event);
            let stored = i64::try_from(seq)
                .map_err(|_| corrupt(format!("audit_events row seq {seq}: beyond i64")))?;
            seqs.push(stored);
            hashes.push(hash.as_bytes().to_vec());
            prev = hash;
            after = stored;
        }
        sqlx::query(AssertSqlSafe(update.clone()))
            .bind(seqs)
            .bind(hashes)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
}
