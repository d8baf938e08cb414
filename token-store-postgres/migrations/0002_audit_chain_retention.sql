-- token-store-postgres schema version 2, first half: the tamper-evident audit chain and
-- retention support. {schema} is substituted by the runner, as in 0001_initial.sql.
--
-- The migration then (in Rust, in the same transaction) computes the chain hash of every v1 event
-- in seq order (token_core::audit::chain_hash) and stores it in the new hash column, and runs
-- 0002_audit_indexes.sql. ADD COLUMN takes audit_events' exclusive lock: no event is appended (by
-- an instance still running version 1) until the migration commits, and such an append fails
-- afterwards (no hash), so no unchained event appears.

-- The chain hash: blake3(previous event's hash || canonical bytes of this event at this seq).
ALTER TABLE {schema}.audit_events ADD COLUMN hash BYTEA;

-- Where the chain resumes after truncate_audit removed its oldest events: the last removed
-- event's seq and hash. At most one row.
CREATE TABLE {schema}.audit_checkpoint (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL CHECK (seq >= 0),
    hash BYTEA NOT NULL CHECK (octet_length(hash) = 32)
);

-- Store-internal: when mark_expired reported this token's expiry (each expiry is reported once).
ALTER TABLE {schema}.tokens ADD COLUMN expiry_recorded_at BIGINT;
