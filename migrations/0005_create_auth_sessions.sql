-- Sessions (one per login), their rotating refresh tokens, and the
-- single-use tokens mailed for email verification and password reset.
CREATE TABLE auth.sessions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    user_agent    text,
    ip            inet,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX sessions_live_idx ON auth.sessions (user_id)
    WHERE revoked_at IS NULL;

-- Refresh tokens are stored only as SHA-256. A spent token keeps its
-- successor pair, sealed with a key derived from the spent token itself
-- (so the database alone cannot open it), for the reuse window only.
CREATE TABLE auth.refresh_tokens (
    token_hash       bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id       uuid NOT NULL REFERENCES auth.sessions (id)
                     ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    spent_at         timestamptz,
    successor_sealed bytea
);
CREATE INDEX refresh_tokens_session_idx ON auth.refresh_tokens (session_id);

CREATE TABLE auth.email_tokens (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
    purpose    text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_user_idx ON auth.email_tokens (user_id, purpose);
