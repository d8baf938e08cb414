-- token-store-sqlite schema version 4: managing tokens after issue.
--
-- suspended_at: set while a token is suspended (TokenManager::suspend), NULL otherwise; a
-- suspended token is refused like a revoked one until resumed.
-- metadata: the host's JSON object (at most 4 KiB, checked by token_core::Metadata), never
-- interpreted.
-- allowed_cidrs: the network allowlist, canonical CIDR blocks separated by spaces
-- (token_core::NetworkAllowlist); NULL: any address.
ALTER TABLE tokens ADD COLUMN suspended_at INTEGER;
ALTER TABLE tokens ADD COLUMN metadata TEXT CHECK (metadata IS NULL OR length(metadata) <= 16384);
ALTER TABLE tokens ADD COLUMN allowed_cidrs TEXT;
