/* statements.c - every query of the auth pool, prepared once per
 * connection. */
#include "auth.h"

const stoa_db_statement_t auth_statements[AUTH_SQL_COUNT] = {
    [AUTH_SQL_USER_INSERT] =
        {"user_insert",
         "INSERT INTO auth.users AS u (email, name, password_hash) "
         "VALUES ($1, $2, $3) ON CONFLICT (lower(email)) DO NOTHING "
         "RETURNING " AUTH_USER_COLUMNS,
         3},
    [AUTH_SQL_USER_BY_EMAIL] =
        {"user_by_email",
         "SELECT " AUTH_USER_COLUMNS ", u.password_hash, u.status "
         "FROM auth.users u WHERE lower(u.email) = $1 AND u.status <> 'deleted'",
         1},
    /* Read again, locked, in the transaction that starts a session: every
     * change that ends sessions (reset, change, role, suspension, erasure)
     * locks this row first (stoa_revoke_sessions), so a session starts
     * either before such a change (which then ends it) or after it (and
     * sees the new password, status and role). */
    [AUTH_SQL_USER_FOR_SESSION] =
        {"user_for_session",
         "SELECT " AUTH_USER_COLUMNS ", u.password_hash, u.status "
         "FROM auth.users u WHERE u.id = $1::uuid FOR SHARE OF u",
         1},
    [AUTH_SQL_MFA_CHALLENGE_OWNER] =
        {"mfa_challenge_owner",
         "SELECT user_id FROM auth.mfa_challenges WHERE token_hash = $1::bytea",
         1},
    [AUTH_SQL_USER_BY_ID] =
        {"user_by_id",
         "SELECT " AUTH_USER_COLUMNS ", u.password_hash, u.status "
         "FROM auth.users u WHERE u.id = $1::uuid AND u.status <> 'deleted'",
         1},
    [AUTH_SQL_USER_SET_PASSWORD] =
        {"user_set_password",
         "UPDATE auth.users SET password_hash = $2, updated_at = now() "
         "WHERE id = $1::uuid",
         2},
    /* Before a change the password proved, in its transaction: the row is
     * locked (a reset or another change waits for this one to end) and
     * its hash read again; then whether the caller's session still lives,
     * in a statement of its own so its snapshot is taken after the lock. */
    [AUTH_SQL_USER_LOCK_PASSWORD] =
        {"user_lock_password",
         "SELECT password_hash FROM auth.users WHERE id = $1::uuid FOR UPDATE",
         1},
    [AUTH_SQL_SESSION_LIVE] =
        {"session_live",
         "SELECT 1 FROM auth.sessions WHERE id = $1::uuid AND user_id = "
         "$2::uuid AND revoked_at IS NULL AND expires_at > now()",
         2},
    [AUTH_SQL_USER_VERIFY_EMAIL] =
        {"user_verify_email",
         "UPDATE auth.users SET email_verified_at = coalesce(email_verified_at, "
         "now()), updated_at = now() WHERE id = $1::uuid AND status <> 'deleted' "
         "RETURNING email, name",
         1},
    [AUTH_SQL_USER_UPDATE_PROFILE] =
        {"user_update_profile",
         "UPDATE auth.users AS u SET name = coalesce($2, u.name), "
         "notification_prefs = u.notification_prefs || coalesce($3::jsonb, "
         "'{}'::jsonb), updated_at = now() WHERE u.id = $1::uuid AND "
         "u.status = 'active' RETURNING " AUTH_USER_COLUMNS,
         3},
    [AUTH_SQL_EMAIL_TOKEN_USE] =
        {"email_token_use",
         "UPDATE auth.email_tokens SET used_at = now() WHERE token_hash = "
         "$1::bytea AND purpose = $2 AND used_at IS NULL AND expires_at > now() "
         "RETURNING user_id",
         2},
    [AUTH_SQL_SESSION_INSERT] =
        {"session_insert",
         "INSERT INTO auth.sessions (user_id, expires_at, user_agent, ip) "
         "VALUES ($1::uuid, now() + make_interval(secs => $2::int), left($3, "
         "512), $4::inet) RETURNING id",
         4},
    [AUTH_SQL_SESSION_TOUCH] =
        {"session_touch",
         "UPDATE auth.sessions SET last_used_at = now(), expires_at = now() + "
         "make_interval(secs => $2::int) WHERE id = $1::uuid",
         2},
    [AUTH_SQL_SESSION_REVOKE_ONE] =
        {"session_revoke_one",
         "UPDATE auth.sessions SET revoked_at = now(), revoke_reason = $3 "
         "WHERE id = $1::uuid AND user_id = $2::uuid AND revoked_at IS NULL "
         "RETURNING id",
         3},
    [AUTH_SQL_SESSIONS_LIST] =
        {"sessions_list",
         "SELECT id, " STOA_DB_TS("created_at") ", " STOA_DB_TS(
             "last_used_at") ", user_agent, "
                             "host(ip) FROM auth.sessions WHERE user_id = $1::uuid AND revoked_at IS "
                             "NULL AND expires_at > now() AND api_key_id IS NULL "
                             "ORDER BY last_used_at DESC LIMIT 100",
         1},
    [AUTH_SQL_REFRESH_INSERT] =
        {"refresh_insert",
         "INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at) "
         "VALUES ($1::bytea, $2::uuid, now() + make_interval(secs => $3::int))",
         3},
    /* Locks the token row: concurrent refreshes of one token serialise
     * here, so exactly one rotates and the others see it spent. */
    [AUTH_SQL_REFRESH_LOOKUP] =
        {"refresh_lookup",
         "SELECT rt.session_id, rt.spent_at IS NOT NULL, "
         "rt.spent_at > now() - make_interval(secs => $2::int), "
         "rt.successor_sealed, s.revoked_at IS NULL AND s.expires_at > now() "
         "AND rt.expires_at > now(), s.user_id, u.role, u.status "
         "FROM auth.refresh_tokens rt JOIN auth.sessions s ON s.id = "
         "rt.session_id JOIN auth.users u ON u.id = s.user_id "
         "WHERE rt.token_hash = $1::bytea FOR UPDATE OF rt",
         2},
    [AUTH_SQL_REFRESH_SPEND] =
        {"refresh_spend",
         "UPDATE auth.refresh_tokens SET spent_at = now(), successor_sealed = "
         "$2::bytea WHERE token_hash = $1::bytea",
         2},
    /* --- TOTP ------------------------------------------------------- */
    [AUTH_SQL_MFA_GET] =
        {"mfa_get",
         "SELECT secret_sealed, confirmed_at IS NOT NULL, last_used_step FROM "
         "auth.mfa_totp WHERE user_id = $1::uuid FOR UPDATE",
         1},
    [AUTH_SQL_MFA_ENABLED] =
        {"mfa_enabled",
         "SELECT EXISTS (SELECT 1 FROM auth.mfa_totp WHERE user_id = $1::uuid "
         "AND confirmed_at IS NOT NULL)",
         1},
    /* A pending (unconfirmed) secret is replaced by a new enrolment; a
     * confirmed one is left alone (the WHERE). */
    [AUTH_SQL_MFA_ENROLL] =
        {"mfa_enroll",
         "INSERT INTO auth.mfa_totp (user_id, secret_sealed) VALUES ($1::uuid, "
         "$2::bytea) ON CONFLICT (user_id) DO UPDATE SET secret_sealed = "
         "EXCLUDED.secret_sealed, created_at = now(), last_used_step = 0 WHERE "
         "auth.mfa_totp.confirmed_at IS NULL RETURNING 1",
         2},
    [AUTH_SQL_MFA_CONFIRM] =
        {"mfa_confirm",
         "UPDATE auth.mfa_totp SET confirmed_at = now(), last_used_step = "
         "$2::bigint WHERE user_id = $1::uuid AND confirmed_at IS NULL",
         2},
    [AUTH_SQL_MFA_USE_STEP] =
        {"mfa_use_step",
         "UPDATE auth.mfa_totp SET last_used_step = $2::bigint WHERE user_id = "
         "$1::uuid AND last_used_step < $2::bigint RETURNING 1",
         2},
    [AUTH_SQL_MFA_DELETE] =
        {"mfa_delete", "DELETE FROM auth.mfa_totp WHERE user_id = $1::uuid", 1},
    [AUTH_SQL_MFA_RECOVERY_DELETE] =
        {"mfa_recovery_delete",
         "DELETE FROM auth.mfa_recovery_codes WHERE user_id = $1::uuid", 1},
    [AUTH_SQL_MFA_RECOVERY_INSERT] =
        {"mfa_recovery_insert",
         "INSERT INTO auth.mfa_recovery_codes (code_hash, user_id) SELECT "
         "decode(h, 'hex'), $1::uuid FROM unnest($2::text[]) AS h",
         2},
    /* Every unused code of the user, so the caller can compare the typed
     * one against all of them in constant time; locked like the codes
     * it may then spend. */
    [AUTH_SQL_MFA_RECOVERY_UNUSED] =
        {"mfa_recovery_unused",
         "SELECT code_hash FROM auth.mfa_recovery_codes WHERE user_id = $1::uuid "
         "AND used_at IS NULL FOR UPDATE",
         1},
    [AUTH_SQL_MFA_RECOVERY_USE] =
        {"mfa_recovery_use",
         "UPDATE auth.mfa_recovery_codes SET used_at = now() WHERE code_hash = "
         "$2::bytea AND user_id = $1::uuid AND used_at IS NULL RETURNING "
         "(SELECT count(*) FROM auth.mfa_recovery_codes WHERE user_id = "
         "$1::uuid AND used_at IS NULL) - 1",
         2},
    [AUTH_SQL_MFA_CHALLENGE_INSERT] =
        {"mfa_challenge_insert",
         "INSERT INTO auth.mfa_challenges (token_hash, user_id, expires_at) "
         "VALUES ($1::bytea, $2::uuid, now() + interval '5 minutes')",
         2},
    /* Locked: two completions of one challenge cannot both succeed, and
     * concurrent guesses on it see each other's failures ($2: how many
     * wrong codes kill it). */
    [AUTH_SQL_MFA_CHALLENGE_GET] =
        {"mfa_challenge_get",
         "SELECT c.user_id, c.used_at IS NULL AND c.expires_at > now() AND "
         "c.failed_codes < $2::int FROM auth.mfa_challenges c WHERE "
         "c.token_hash = $1::bytea FOR UPDATE",
         2},
    [AUTH_SQL_MFA_CHALLENGE_FAIL] =
        {"mfa_challenge_fail",
         "UPDATE auth.mfa_challenges SET failed_codes = failed_codes + 1 WHERE "
         "token_hash = $1::bytea",
         1},
    [AUTH_SQL_MFA_CHALLENGE_USE] =
        {"mfa_challenge_use",
         "UPDATE auth.mfa_challenges SET used_at = now() WHERE token_hash = "
         "$1::bytea",
         1},
    /* Seconds left of the account's lock on codes (0: none) when it has
     * $2 wrong codes in the window of $3 s; locked, so that guesses on one
     * account serialise between this check and their count. */
    [AUTH_SQL_MFA_ACCOUNT_LOCK] =
        {"mfa_account_lock",
         "SELECT CASE WHEN failed_codes >= $2::int AND failed_since > now() - "
         "make_interval(secs => $3::int) THEN greatest(1, ceil(extract(epoch "
         "FROM failed_since + make_interval(secs => $3::int) - now())))::int "
         "ELSE 0 END FROM auth.mfa_totp WHERE user_id = $1::uuid FOR UPDATE",
         3},
    /* One more wrong code in the window of $2 s, or the first of a new
     * window (SET reads the old row, so both CASEs agree). */
    [AUTH_SQL_MFA_ACCOUNT_FAIL] =
        {"mfa_account_fail",
         "UPDATE auth.mfa_totp SET failed_codes = CASE WHEN failed_since > now() "
         "- make_interval(secs => $2::int) THEN failed_codes + 1 ELSE 1 END, "
         "failed_since = CASE WHEN failed_since > now() - make_interval(secs => "
         "$2::int) THEN failed_since ELSE now() END WHERE user_id = $1::uuid",
         2},

    /* --- API keys --------------------------------------------------- */
    [AUTH_SQL_API_KEY_INSERT] =
        {"api_key_insert",
         "INSERT INTO auth.api_keys (user_id, name, prefix, secret_hash, scopes, "
         "expires_at) VALUES ($1::uuid, $2, $3, $4::bytea, $5::text[], "
         "$6::timestamptz) RETURNING id, " STOA_DB_TS(
             "created_at") ", " STOA_DB_TS("expires_at"),
         6},
    [AUTH_SQL_API_KEYS_LIST] =
        {"api_keys_list",
         "SELECT id, name, prefix, array_to_json(scopes)::text, " STOA_DB_TS("created_at") ", " STOA_DB_TS(
             "last_used_at") ", " STOA_DB_TS("expires_at") " FROM auth.api_keys WHERE user_id = $1::uuid AND revoked_at IS NULL "
                                                           "ORDER BY created_at DESC LIMIT 100",
         1},
    [AUTH_SQL_API_KEY_REVOKE] =
        {"api_key_revoke",
         "UPDATE auth.api_keys SET revoked_at = now() WHERE id = $1::uuid AND "
         "user_id = $2::uuid AND revoked_at IS NULL RETURNING id",
         2},
    /* The live sessions of the keys just revoked (one key, or all of a
     * user's): their tokens get revocation markers after the commit. */
    [AUTH_SQL_API_KEY_SESSIONS_REVOKE] =
        {"api_key_sessions_revoke",
         "UPDATE auth.sessions SET revoked_at = now(), revoke_reason = $3 "
         "WHERE api_key_id IN (SELECT id FROM auth.api_keys WHERE user_id = "
         "$1::uuid AND ($2::uuid IS NULL OR id = $2::uuid)) AND revoked_at IS "
         "NULL AND expires_at > now() RETURNING id",
         3},
    /* One round trip for an exchange: the key is marked used and the
     * token's session starts, ending with the key at the latest. */
    /* The key and its user are checked again under their row locks: a
     * revocation, role change or suspension that commits while this waits
     * is seen (Postgres re-reads a locked row before it is used), so no
     * session of a revoked key, and no token with an old role, is made. */
    [AUTH_SQL_API_KEY_SESSION_START] =
        {"api_key_session_start",
         "WITH owner AS (SELECT u.id, u.role FROM auth.users u JOIN "
         "auth.api_keys k ON k.user_id = u.id WHERE k.id = $1::uuid AND "
         "u.status = 'active' FOR SHARE OF u), used AS (UPDATE auth.api_keys "
         "SET last_used_at = now() WHERE id = $1::uuid AND revoked_at IS NULL "
         "AND (expires_at IS NULL OR expires_at > now()) AND user_id IN (SELECT "
         "id FROM owner) RETURNING user_id, expires_at), s AS (INSERT INTO "
         "auth.sessions (user_id, expires_at, user_agent, ip, api_key_id) SELECT "
         "used.user_id, least(now() + make_interval(secs => $2::int), "
         "used.expires_at), left($3, 512), $4::inet, $1::uuid FROM used "
         "RETURNING id, floor(extract(epoch FROM expires_at))::bigint AS exp) "
         "SELECT s.id, s.exp, (SELECT role FROM owner) FROM s",
         4},
    [AUTH_SQL_API_KEY_LOOKUP] =
        {"api_key_lookup",
         "SELECT k.id, k.secret_hash, k.revoked_at IS NULL AND (k.expires_at IS "
         "NULL OR k.expires_at > now()), array_to_string(k.scopes, ' '), "
         "k.user_id, u.role, u.status, u.email FROM auth.api_keys k JOIN "
         "auth.users u ON u.id = k.user_id WHERE k.prefix = $1",
         1},
    /* --- password reset ---------------------------------------------- */
    /* Spends the presented reset link and every other open reset link of
     * its user in one statement, and answers the user only when the
     * presented one was among them: of two resets racing with two links of
     * one user, the second waits on the row locks, finds its link spent
     * and gets nothing. */
    [AUTH_SQL_RESET_TOKENS_SPEND] =
        {"reset_tokens_spend",
         "WITH owner AS (SELECT user_id FROM auth.email_tokens WHERE token_hash = "
         "$1::bytea AND purpose = 'reset_password' AND used_at IS NULL AND "
         "expires_at > now()), spent AS (UPDATE auth.email_tokens t SET used_at "
         "= now() FROM owner WHERE t.user_id = owner.user_id AND t.purpose = "
         "'reset_password' AND t.used_at IS NULL RETURNING t.user_id, "
         "t.token_hash = $1::bytea AND t.expires_at > now() AS presented) "
         "SELECT user_id FROM spent WHERE presented",
         1},

    /* --- failed-login throttle (Postgres side) ------------------------ */
    /* One failure of the pair ($1 subject, $2 address), and a few rows past
     * the window ($3 s) pruned on the way, so the table holds about one
     * window of failures without a job of its own. */
    [AUTH_SQL_LOGIN_FAILURE_INSERT] =
        {"login_failure_insert",
         "WITH pruned AS (DELETE FROM auth.login_failures WHERE id IN (SELECT id "
         "FROM auth.login_failures WHERE at < now() - make_interval(secs => "
         "$3::int) ORDER BY at LIMIT 16 FOR UPDATE SKIP LOCKED)) INSERT INTO auth.login_failures "
         "(subject, address) VALUES ($1, $2)",
         3},
    /* A row when the pair has $4 failures within the window ($3 s): the
     * seconds until the oldest of its last $4 leaves the window. */
    [AUTH_SQL_LOGIN_FAILURE_LOCK] =
        {"login_failure_lock",
         "SELECT greatest(1, ceil(extract(epoch FROM min(at) + make_interval(secs "
         "=> $3::int) - now())))::int FROM (SELECT at FROM auth.login_failures "
         "WHERE subject = $1 AND address = $2 AND at > now() - make_interval(secs "
         "=> $3::int) ORDER BY at DESC LIMIT $4::int) recent HAVING count(*) >= "
         "$4::int",
         4},
    /* A complete login forgets the pair's failures, as it does in Redis. */
    [AUTH_SQL_LOGIN_FAILURE_CLEAR] =
        {"login_failure_clear",
         "DELETE FROM auth.login_failures WHERE subject = $1 AND address = $2",
         2},
};
const size_t auth_statements_len = STOA_ARRAY_LEN(auth_statements);
