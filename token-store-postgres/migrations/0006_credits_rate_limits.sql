-- token-store-postgres schema version 6: usage credits that refill, and rate limits. {schema}
-- is substituted by the runner, as in 0001_initial.sql.
--
-- use_refill: when max_uses credits come back, 'monthly' or 'every <seconds>s'
-- (token_core::UseRefill), in that canonical form only: the use-counting UPDATE compares it
-- as text; NULL: a lifetime limit. With it, use_count counts the uses of the
-- current period.
-- next_refill_at: the start of the next period (Unix microseconds), set exactly when
-- use_refill is; the use-counting UPDATE restarts use_count once it has passed.
-- rate_limits: the token's named rate limits, a JSON array of {name, limit, per_seconds}
-- (token_core::RateLimits); NULL: none.
ALTER TABLE {schema}.tokens ADD COLUMN use_refill TEXT
    CHECK (use_refill IS NULL OR use_refill ~ '^(monthly|every [1-9][0-9]{0,8}s)$');
ALTER TABLE {schema}.tokens ADD COLUMN next_refill_at BIGINT;
ALTER TABLE {schema}.tokens ADD COLUMN rate_limits TEXT CHECK (rate_limits IS NULL OR char_length(rate_limits) <= 4096);
