-- token-store-sqlite schema version 1: tokens, their labels, and the audit trail.
-- Timestamps are INTEGER unix microseconds; ids are the 16 raw id bytes (BLOB, memcmp order equals
-- TokenId's order); hashes are the 32 raw keyed-hash bytes. No secret is ever stored.

CREATE TABLE tokens (
    id              BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    hash            BLOB    NOT NULL CHECK (length(hash) = 32),
    hash_key_id     INTEGER NOT NULL,
    prefix          TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    scopes          TEXT    NOT NULL,
    name            TEXT,
    description     TEXT,
    created_at      INTEGER NOT NULL,
    created_by      TEXT,
    expires_at      INTEGER,
    not_before      INTEGER,
    idle_timeout_us INTEGER CHECK (idle_timeout_us >= 0),
    last_used_at    INTEGER,
    use_count       INTEGER NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    max_uses        INTEGER CHECK (max_uses >= 0),
    parent_id       BLOB,
    family_id       BLOB    NOT NULL,
    rotated_from    BLOB,
    rotated_to      BLOB,
    revoked_at      INTEGER,
    revoke_reason   TEXT,
    revoked_by      TEXT
);

-- Access paths: revoke/list by subject and the live-token count per subject.
CREATE INDEX tokens_subject ON tokens (subject);
-- Family revocation.
CREATE INDEX tokens_family ON tokens (family_id);
-- Descendant walk (WITH RECURSIVE over parent_id) on every revocation.
CREATE INDEX tokens_parent ON tokens (parent_id) WHERE parent_id IS NOT NULL;
-- Sweeps of expired tokens.
CREATE INDEX tokens_expires ON tokens (expires_at) WHERE expires_at IS NOT NULL;
-- Sweeps/purges of revoked tokens.
CREATE INDEX tokens_revoked ON tokens (revoked_at) WHERE revoked_at IS NOT NULL;
-- Listing order and keyset pagination; revoke issued-before.
CREATE INDEX tokens_created ON tokens (created_at, id);
-- Counting tokens per hash key before retiring a key.
CREATE INDEX tokens_hash_key ON tokens (hash_key_id);

CREATE TABLE token_labels (
    token_id BLOB NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (token_id, key)
) WITHOUT ROWID;

-- Revoke/list by label.
CREATE INDEX token_labels_key_value ON token_labels (key, value);

-- Events outlive the tokens they name (purges), so token_id has no foreign key.
CREATE TABLE audit_events (
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
    detail      TEXT
);

CREATE INDEX audit_events_token ON audit_events (token_id, seq) WHERE token_id IS NOT NULL;
