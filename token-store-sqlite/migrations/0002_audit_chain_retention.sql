-- token-store-sqlite schema version 2: the tamper-evident audit chain and retention support.
--
-- This file is the first half of migration 2. The migration then (in Rust, in the same
-- transaction) copies every v1 event into audit_events_v2 in seq order, computing its chain hash
-- (token_core::audit::chain_hash) from the previous one, drops the v1 table, renames
-- audit_events_v2 to audit_events, carries over the AUTOINCREMENT counter and creates the audit
-- indexes (0002_audit_indexes.sql). A v1 event that cannot be decoded fails the migration with
-- StoreError::Corrupt naming its seq; nothing is changed then.

-- The audit trail with its chain hash: hash = blake3(previous event's hash || canonical bytes of
-- this event at this seq). The table is rebuilt (rather than given a new column) so that the hash
-- is NOT NULL for every row.
CREATE TABLE audit_events_v2 (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    token_id    BLOB,
    fingerprint TEXT,
    subject     TEXT,
    actor       TEXT,
    client_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    reason      TEXT,
    detail      TEXT,
    hash        BLOB    NOT NULL CHECK (length(hash) = 32)
);

-- Where the chain resumes after truncate_audit removed its oldest events: the last removed event's
-- seq and hash. At most one row.
CREATE TABLE audit_checkpoint (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL CHECK (seq >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
);

-- Store-internal marker: when mark_expired recorded this token's expiry (so each expiry is reported
-- once). Not part of TokenRecord.
ALTER TABLE tokens ADD COLUMN expiry_recorded_at INTEGER;

-- mark_expired: expired, unrevoked, not yet recorded tokens in expiry order. Recorded and revoked
-- tokens leave the index, so a sweep's cost follows the tokens it finds, not the table.
CREATE INDEX tokens_expiry_unrecorded ON tokens (expires_at)
    WHERE revoked_at IS NULL AND expiry_recorded_at IS NULL;

-- RevokeSelector::UnusedSince (retention): live tokens by last use (or creation, if never used),
-- oldest first. The price is index maintenance on every usage flush (record_usage / consume_use
-- update last_used_at); usage is coalesced, so that is one update per token per flush.
CREATE INDEX tokens_unused ON tokens (coalesce(last_used_at, created_at))
    WHERE revoked_at IS NULL;
