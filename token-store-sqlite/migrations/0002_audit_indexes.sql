-- token-store-sqlite schema version 2, second half: indexes of the rebuilt audit_events table
-- (run after the v1 events were copied with their chain hashes and the table renamed).
-- Each ends in seq, so a filtered query in seq order after a given seq (keyset pagination) is one
-- index range, without sorting.

-- A token's trail (as in version 1).
CREATE INDEX audit_events_token ON audit_events (token_id, seq) WHERE token_id IS NOT NULL;
-- Audit queries by subject, actor, kind and time.
CREATE INDEX audit_events_subject ON audit_events (subject, seq) WHERE subject IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, seq) WHERE actor IS NOT NULL;
CREATE INDEX audit_events_kind ON audit_events (kind, seq);
CREATE INDEX audit_events_at ON audit_events (at, seq);
