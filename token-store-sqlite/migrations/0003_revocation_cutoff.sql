-- token-store-sqlite schema version 3: the revocation cut-off.
--
-- revoke(IssuedBefore(t)) raises issued_before to t (micros, rounded up as the selector is) in its
-- write transaction; every insert and rotation reads it in its own and refuses a record created
-- before it. Both hold SQLite's write lock (BEGIN IMMEDIATE), so an issue in flight when the
-- revocation commits (or minted by an instance whose clock lags) is never born live.
CREATE TABLE revocation_cutoff (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    issued_before INTEGER
);
INSERT INTO revocation_cutoff (id, issued_before) VALUES (1, NULL);

-- The retention checkpoint's time: the last removed event's `at` (micros), written by
-- truncate_audit with seq and hash, so the chain report can tell retention (old events) from
-- deletion (recent ones). NULL on a checkpoint written before this version.
ALTER TABLE audit_checkpoint ADD COLUMN at INTEGER;

-- The audit key that chained each event (a keyed chain, see token_core::audit_key); NULL for an
-- unkeyed link, which every event written before this version is.
ALTER TABLE audit_events ADD COLUMN chain_key_id INTEGER CHECK (chain_key_id BETWEEN 0 AND 4294967295);

-- The retention checkpoint's MAC (token_core::CheckpointMac): with audit keys, truncate_audit
-- seals seq, hash and at with the current audit key, so a checkpoint written or moved without
-- the key is caught by the verifier. Both NULL on a checkpoint written without audit keys.
ALTER TABLE audit_checkpoint ADD COLUMN mac BLOB CHECK (mac IS NULL OR length(mac) = 32);
ALTER TABLE audit_checkpoint ADD COLUMN mac_key_id INTEGER
    CHECK (mac_key_id BETWEEN 0 AND 4294967295);
