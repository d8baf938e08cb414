-- token-store-postgres schema version 2, second half (after the v1 events got their chain
-- hashes): the hash becomes mandatory, and the retention and audit query indexes. {schema} is
-- substituted by the runner, as in 0001_initial.sql.

ALTER TABLE {schema}.audit_events
    ALTER COLUMN hash SET NOT NULL,
    ADD CONSTRAINT audit_events_hash_len CHECK (octet_length(hash) = 32);

-- mark_expired: expired, unrevoked, unrecorded tokens in expiry order. Recorded and revoked
-- tokens leave the index, so a sweep costs in proportion to what it finds.
CREATE INDEX tokens_expiry_unrecorded_idx ON {schema}.tokens (expires_at)
    WHERE revoked_at IS NULL AND expiry_recorded_at IS NULL;

-- RevokeSelector::UnusedSince: unrevoked tokens by last use (or creation), longest unused
-- first (id breaks ties, so a bounded pass reads its rows in index order, without a sort).
-- Costs an index update per usage flush (record_usage / consume_use).
CREATE INDEX tokens_unused_idx ON {schema}.tokens ((coalesce(last_used_at, created_at)), id)
    WHERE revoked_at IS NULL;

-- Audit queries: a filter plus seq > after, in seq order, is one index range.
CREATE INDEX audit_events_subject_idx ON {schema}.audit_events (subject, seq)
    WHERE subject IS NOT NULL;
CREATE INDEX audit_events_actor_idx ON {schema}.audit_events (actor, seq)
    WHERE actor IS NOT NULL;
CREATE INDEX audit_events_kind_idx ON {schema}.audit_events (kind, seq);
CREATE INDEX audit_events_at_idx ON {schema}.audit_events (at, seq);
