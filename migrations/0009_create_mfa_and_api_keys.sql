-- TOTP second factor, its recovery codes, login challenges waiting for a
-- code, and API keys for agents and scripts.
CREATE TABLE auth.mfa_totp (
    user_id        uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    -- AES-256-GCM under the configured mfa_encryption_key.
    secret_sealed  bytea NOT NULL,
    confirmed_at   timestamptz,
    -- The last 30-second step accepted: a code is good once.
    last_used_step bigint NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE auth.mfa_recovery_codes (
    code_hash  bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX mfa_recovery_codes_user_idx ON auth.mfa_recovery_codes (user_id);

-- A password accepted for an account with MFA: the mfa_token is a random
-- value stored as SHA-256, good for one completion within five minutes.
CREATE TABLE auth.mfa_challenges (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE TABLE auth.api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix       text NOT NULL UNIQUE CHECK (prefix ~ '^[0-9a-f]{12}$'),
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes       text[] NOT NULL DEFAULT '{}',
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON auth.api_keys (user_id) WHERE revoked_at IS NULL;
