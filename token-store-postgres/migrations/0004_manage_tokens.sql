-- token-store-postgres schema version 4: managing tokens after issue. {schema} is substituted by
-- the runner, as in 0001_initial.sql.
--
-- suspended_at: set while a token is suspended (TokenManager::suspend), NULL otherwise; a
-- suspended token is refused like a revoked one until resumed.
-- metadata: the host's JSON object as text (at most 4 KiB, checked by token_core::Metadata),
-- never interpreted (text rather than jsonb: it is stored and returned byte for byte).
-- allowed_cidrs: the network allowlist, canonical CIDR blocks separated by spaces
-- (token_core::NetworkAllowlist); NULL: any address.
ALTER TABLE {schema}.tokens
    ADD COLUMN suspended_at BIGINT,
    ADD COLUMN metadata TEXT CHECK (metadata IS NULL OR length(metadata) <= 16384),
    ADD COLUMN allowed_cidrs TEXT;
