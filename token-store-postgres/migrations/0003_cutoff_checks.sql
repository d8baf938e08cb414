-- token-store-postgres schema version 3: the revocation cut-off, and the row invariants SQLite
-- has always checked. {schema} is substituted by the runner, as in 0001_initial.sql.

-- revoke(IssuedBefore(t)) raises issued_before to t (micros, rounded up as the selector is) with
-- an UPDATE of this row, its first statement; every insert and rotation reads the row FOR SHARE
-- first. The row lock orders them: an insert that read an older cut-off commits before the
-- revocation selects (and is revoked with the rest); one that waits reads the new cut-off and is
-- refused. So an issue in flight when the revocation commits, or minted by an instance whose
-- clock lags, is never born live.
CREATE TABLE {schema}.revocation_cutoff (
    id            SMALLINT PRIMARY KEY CHECK (id = 1),
    issued_before BIGINT
);
INSERT INTO {schema}.revocation_cutoff (id, issued_before) VALUES (1, NULL);

-- Row invariants. NOT VALID: enforced on every insert and update from now on, without scanning
-- (or failing on) rows written before; a row that already breaks one is reported by the
-- statements that meet it (see the crate docs, Bad data) and can be repaired, then
-- `ALTER TABLE ... VALIDATE CONSTRAINT`.
ALTER TABLE {schema}.tokens
    ADD CONSTRAINT tokens_id_16_bytes CHECK (octet_length(id) = 16) NOT VALID,
    ADD CONSTRAINT tokens_hash_32_bytes CHECK (octet_length(hash) = 32) NOT VALID,
    ADD CONSTRAINT tokens_family_id_16_bytes CHECK (octet_length(family_id) = 16) NOT VALID,
    ADD CONSTRAINT tokens_use_count_not_negative CHECK (use_count >= 0) NOT VALID,
    ADD CONSTRAINT tokens_max_uses_not_negative CHECK (max_uses >= 0) NOT VALID,
    ADD CONSTRAINT tokens_idle_timeout_not_negative CHECK (idle_timeout_us >= 0) NOT VALID;

-- The retention checkpoint's time: the last removed event's `at` (micros), written by
-- truncate_audit with seq and hash, so the chain report can tell retention (old events) from
-- deletion (recent ones). NULL on a checkpoint written before this version.
ALTER TABLE {schema}.audit_checkpoint ADD COLUMN at BIGINT;

-- The audit key that chained each event (a keyed chain, see token_core::audit_key); NULL for an
-- unkeyed link, which every event written before this version is.
ALTER TABLE {schema}.audit_events ADD COLUMN chain_key_id BIGINT
    CHECK (chain_key_id BETWEEN 0 AND 4294967295);

-- The retention checkpoint's MAC (token_core::CheckpointMac): with audit keys, truncate_audit
-- seals seq, hash and at with the current audit key, so a checkpoint written or moved without
-- the key is caught by the verifier. Both NULL on a checkpoint written without audit keys.
ALTER TABLE {schema}.audit_checkpoint
    ADD COLUMN mac BYTEA CHECK (mac IS NULL OR octet_length(mac) = 32),
    ADD COLUMN mac_key_id BIGINT CHECK (mac_key_id BETWEEN 0 AND 4294967295);
