-- Tokens traded from an API key belong to a session of their own, tied to
-- the key: everything that ends sessions (a role change, a password reset,
-- erasure, suspension, the key's revocation) ends them too, through the
-- same revocation markers. Such a session never holds a refresh token and
-- ends no later than its key.
ALTER TABLE auth.sessions
    ADD COLUMN api_key_id uuid REFERENCES auth.api_keys (id) ON DELETE CASCADE;
CREATE INDEX sessions_api_key_live_idx ON auth.sessions (api_key_id)
    WHERE api_key_id IS NOT NULL AND revoked_at IS NULL;

-- A key made without scopes was worth its owner's full rights with no
-- scope claim in its tokens, so nothing told them apart from a login.
-- Keys now always name their scopes; "*" is the explicit whole.
UPDATE auth.api_keys SET scopes = '{*}' WHERE scopes = '{}';
ALTER TABLE auth.api_keys
    ADD CONSTRAINT api_keys_scopes_nonempty CHECK (cardinality(scopes) > 0);
