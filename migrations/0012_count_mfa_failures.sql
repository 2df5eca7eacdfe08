-- Wrong second-factor codes, counted where the challenge and the secret
-- live (Postgres) rather than in Redis: the limits on guessing must hold
-- when Redis is down, where the Redis login throttle is off by design.

-- Per challenge: an mfa_token dies after a few wrong codes, whatever the
-- client address. Updated under the row lock that verification takes.
ALTER TABLE auth.mfa_challenges
    ADD COLUMN failed_codes integer NOT NULL DEFAULT 0 CHECK (failed_codes >= 0);

-- Per account: wrong codes in a fixed window that opens at the first one,
-- so fresh challenges and fresh addresses do not buy more guesses.
ALTER TABLE auth.mfa_totp
    ADD COLUMN failed_codes integer NOT NULL DEFAULT 0 CHECK (failed_codes >= 0),
    ADD COLUMN failed_since timestamptz;
