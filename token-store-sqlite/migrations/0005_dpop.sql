-- token-store-sqlite schema version 5: sender-constrained tokens (DPoP, RFC 9449).
--
-- dpop_jkt: the RFC 7638 thumbprint of the key the token is bound to (cnf.jkt); NULL for a
-- bearer token. Fixed at issue; never updated.
ALTER TABLE tokens ADD COLUMN dpop_jkt TEXT CHECK (dpop_jkt IS NULL OR length(dpop_jkt) = 43);

-- Claimed proof identifiers: BLAKE3(jkt, 0, jti) and until when a replay of the proof could
-- still pass verification. A claim is an INSERT that conflicts on the key, so each proof is
-- accepted once by every instance sharing the file; sweeps delete expired claims.
CREATE TABLE dpop_proofs (
    key        BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dpop_proofs_expires ON dpop_proofs (expires_at);
