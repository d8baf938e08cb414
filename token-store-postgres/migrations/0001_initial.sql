-- token-store-postgres schema version 1: tokens, their labels, and the audit trail.
-- Timestamps and durations are BIGINT unix microseconds; ids are the 16 raw id bytes (BYTEA);
-- hashes are the 32 raw keyed-hash bytes. No secret is ever stored.
--
-- {schema} stands for the store's schema name, double-quoted: the migration runner substitutes it
-- before running the script (see the crate docs, Migrations).

CREATE TABLE {schema}.tokens (
    id              BYTEA PRIMARY KEY,
    hash            BYTEA NOT NULL,
    hash_key_id     BIGINT NOT NULL,
    prefix          TEXT NOT NULL,
    subject         TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    name            TEXT,
    description     TEXT,
    created_at      BIGINT NOT NULL,
    created_by      TEXT,
    expires_at      BIGINT,
    not_before      BIGINT,
    idle_timeout_us BIGINT,
    last_used_at    BIGINT,
    use_count       BIGINT NOT NULL DEFAULT 0,
    max_uses        BIGINT,
    parent_id       BYTEA,
    family_id       BYTEA NOT NULL,
    rotated_from    BYTEA,
    rotated_to      BYTEA,
    revoked_at      BIGINT,
    revoke_reason   TEXT,
    revoked_by      TEXT
);
CREATE INDEX tokens_subject_idx ON {schema}.tokens (subject);
CREATE INDEX tokens_family_idx ON {schema}.tokens (family_id);
CREATE INDEX tokens_parent_idx ON {schema}.tokens (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX tokens_expires_idx ON {schema}.tokens (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX tokens_revoked_idx ON {schema}.tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX tokens_created_idx ON {schema}.tokens (created_at, id);
CREATE INDEX tokens_hash_key_idx ON {schema}.tokens (hash_key_id);

CREATE TABLE {schema}.token_labels (
    token_id BYTEA NOT NULL REFERENCES {schema}.tokens (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
);
CREATE INDEX token_labels_key_value_idx ON {schema}.token_labels (key, value);

CREATE TABLE {schema}.audit_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    token_id    BYTEA,
    fingerprint TEXT,
    subject     TEXT,
    actor       TEXT,
    client_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    reason      TEXT,
    detail      TEXT
);
CREATE INDEX audit_events_token_idx ON {schema}.audit_events (token_id, seq)
    WHERE token_id IS NOT NULL;
