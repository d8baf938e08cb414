-- token-store-postgres schema version 5: sender-constrained tokens (DPoP, RFC 9449). {schema}
-- is substituted by the runner, as in 0001_initial.sql.
--
-- dpop_jkt: the RFC 7638 thumbprint of the key the token is bound to (cnf.jkt); NULL for a
-- bearer token. Fixed at issue; never updated.
ALTER TABLE {schema}.tokens
    ADD COLUMN dpop_jkt TEXT CHECK (dpop_jkt IS NULL OR length(dpop_jkt) = 43);

-- Claimed proof identifiers: BLAKE3(jkt, 0, jti) and until when a replay of the proof could
-- still pass verification. A claim is an INSERT ... ON CONFLICT DO NOTHING, so each proof is
-- accepted once by every instance sharing the database; sweeps delete expired claims.
CREATE TABLE {schema}.dpop_proofs (
    key        BYTEA  NOT NULL PRIMARY KEY CHECK (octet_length(key) = 32),
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expires_idx ON {schema}.dpop_proofs (expires_at);
