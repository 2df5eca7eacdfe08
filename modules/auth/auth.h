/* auth.h - shared state and helpers of the auth pool. */
#ifndef AUTH_H
#define AUTH_H

#include <pthread.h>

#include "stoa/app.h"
#include "stoa/jwt.h"
#include "stoa/password.h"

#define AUTH_RETIRED_KEYS 8
/* An API key is stoa_<prefix>_<secret>: the prefix (hex digits) finds its
 * row, the secret is checked against its hash (api_keys.c, token.c). */
#define AUTH_KEY_PREFIX_LEN 12

/* Per-process state, built once at start (ctx->data) and shared by the
 * handler threads: the fields under `lock` change at run time (a key
 * rotation, a new jwks.json); the rest is read-only after init. */
typedef struct {
    pthread_mutex_t lock;
    stoa_password_params_t params;
    /* Login hashes against this when the email is unknown, so both paths
     * cost one Argon2id verification (no timing oracle). */
    char dummy_hash[STOA_PASSWORD_HASH_MAX];
    stoa_jwt_key_t *signing_key; /* under lock */
    /* Keys replaced by a rotation stay allocated for a while: another
     * thread may be signing with one right now. */
    stoa_jwt_key_t *retired[AUTH_RETIRED_KEYS];
    unsigned nretired;
    uint64_t keys_checked_us;
    stoa_buf_t jwks;         /* keys_dir/jwks.json as served; under lock */
    long long jwks_mtime_ns; /* of the file behind jwks */
    bool mfa_key_set;
    uint8_t mfa_key[32]; /* seals TOTP secrets (mfa_encryption_key) */
    /* Where the failed-login throttle looks (see throttle.c), as this
     * process last saw it: each change is logged once. */
    _Atomic int throttle_mode;
} auth_state_t;

auth_state_t *auth_state(stoa_request_t *req);

/* Columns of a user as the API shows it, in the order auth_write_user()
 * reads them: id, email, name, role, email_verified, created_at,
 * notification_prefs, mfa_enabled. */
#define AUTH_USER_COLUMNS                                                      \
    "u.id, u.email, u.name, u.role, u.email_verified_at IS NOT NULL, "         \
    STOA_DB_TS("u.created_at") ", u.notification_prefs::text, "               \
    "EXISTS (SELECT 1 FROM auth.mfa_totp m WHERE m.user_id = u.id AND "        \
    "m.confirmed_at IS NOT NULL)"
#define AUTH_USER_NCOLUMNS 8
/* Its columns; user_by_email, user_by_id and user_for_session add the
 * password hash and the status after them. */
enum {
    USER_COL_ID,
    USER_COL_EMAIL,
    USER_COL_NAME,
    USER_COL_ROLE,
    USER_COL_EMAIL_VERIFIED,
    USER_COL_CREATED_AT,
    USER_COL_NOTIFICATION_PREFS,
    USER_COL_MFA_ENABLED,
    USER_COL_PASSWORD_HASH,
    USER_COL_STATUS
};
_Static_assert(USER_COL_PASSWORD_HASH == AUTH_USER_NCOLUMNS,
               "AUTH_USER_COLUMNS and its column ids agree");

/* --- user.c: the process state, a user as JSON, the profile cache --------- */
/* Writes the user object from columns col..col+6 of row. */
void auth_write_user(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                     int col);

/* --- password_policy.c ---------------------------------------------------- */
/* SPEC §4 password policy (stoa_password_refusal); records a field error
 * under field and returns false when password is refused. email and name
 * may be NULL. */
bool auth_password_acceptable(stoa_request_t *req, const char *field,
                              const char *password, const char *email,
                              const char *name);

/* Hashes with the configured Argon2id parameters; arena-owned PHC. */
STOA_MUSTCHECK int auth_password_hash(stoa_request_t *req, const char *pw,
                                      char **phc);

/* --- tokens.c ------------------------------------------------------------- */
/* A fresh random token (32 bytes, base64url) and its SHA-256 as a bytea
 * literal for Postgres ("\x..."), both arena-owned. */
void auth_new_token(stoa_request_t *req, char **token, char **hash_param);
/* The bytea literal of SHA-256(token). */
char *auth_token_hash_param(stoa_request_t *req, const char *token);
/* Runs st in the open transaction of a mailed link's route. No row means
 * the link is invalid, used or expired: rolled back and answered 400
 * invalid_token (STOA_DECLINED). STOA_OK with *res, else the route's result. */
STOA_MUSTCHECK int auth_link_exec(stoa_request_t *req, stoa_db_t *db,
                                  const stoa_db_statement_t *st,
                                  const char *const *params,
                                  stoa_db_result_t **res);

/* Signs an access token for the user/session; arena-owned. scope is NULL
 * for logins; API-key tokens carry the key's scopes. not_after (unix
 * seconds, 0: none) caps the expiry, so a token never outlives its key. */
STOA_MUSTCHECK int auth_access_token(stoa_request_t *req, const char *user_id,
                                     const char *role, const char *session_id,
                                     char **token);
STOA_MUSTCHECK int auth_access_token_scoped(stoa_request_t *req,
                                            const char *user_id,
                                            const char *role,
                                            const char *session_id,
                                            const char *scope,
                                            int64_t not_after, char **token);

/* --- signin.c ------------------------------------------------------------- */
/* The tokens of a session just started (arena-owned). */
typedef struct {
    char *access;
    char *refresh;
} auth_tokens_t;

/* Starts a session for the user row (AUTH_USER_COLUMNS at col 0) inside
 * the caller's transaction, and mints its tokens into *tokens. Writes no
 * answer: after its commit, the caller answers with
 * auth_write_tokens(req, tokens->access, tokens->refresh, user). */
STOA_MUSTCHECK int auth_start_session(stoa_request_t *req,
                                      const stoa_db_result_t *user,
                                      auth_tokens_t *tokens);

/* In the caller's transaction, before a session starts: reads the user
 * again, locked against every change that ends sessions (see
 * "user_for_session"). *user gets the fresh row (AUTH_USER_COLUMNS, then
 * password hash and status). When the account is no longer active (403
 * account_suspended), or verified_hash is given and the password changed
 * meanwhile (401 invalid_credentials), answers and returns STOA_DECLINED. */
STOA_MUSTCHECK int auth_user_for_session(stoa_request_t *req,
                                         const char *user_id,
                                         const char *verified_hash,
                                         stoa_db_result_t **user);

/* Writes {access_token, token_type, expires_in, refresh_token[, user]}. */
void auth_write_tokens(stoa_request_t *req, const char *access,
                       const char *refresh, const stoa_db_result_t *user);

/* --- sessions.c: ending sessions ------------------------------------------ */
/* Revokes sessions of user_id in the caller's transaction (all, or all but
 * keep_session_id when it is not NULL; API-key exchanges included) and,
 * with with_keys, every API key of the user (a reset, erasure); returns
 * the ended session ids (arena) so the caller marks them after commit. */
STOA_MUSTCHECK int auth_revoke_sessions(stoa_request_t *req,
                                        const char *user_id,
                                        const char *keep_session_id,
                                        const char *reason, bool with_keys,
                                        stoa_db_result_t **revoked);
void auth_mark_revoked(stoa_request_t *req, const stoa_db_result_t *revoked);

/* --- mail.c --------------------------------------------------------------- */
/* Queues a templated mail in the caller's transaction. data_json is a
 * JSON object of our own making. */
STOA_MUSTCHECK int auth_queue_mail(stoa_request_t *req, const char *tmpl,
                                   const char *to, const char *data_json,
                                   const char *dedupe_key);

/* A mail whose only value is the recipient's name (welcome, password
 * changed, MFA notices), in the caller's transaction. */
STOA_MUSTCHECK int auth_mail_name(stoa_request_t *req, const char *tmpl,
                                  const char *to, const char *name,
                                  const char *dedupe_key);
/* The same for a user row of AUTH_USER_COLUMNS. */
STOA_MUSTCHECK int auth_mail_user(stoa_request_t *req,
                                  const stoa_db_result_t *user,
                                  const char *tmpl);

/* The caller's own row (USER_BY_ID's columns): STOA_OK, STOA_DECLINED
 * once 404 is answered (an account erased meanwhile), or the failure. */
STOA_MUSTCHECK int auth_caller_user(stoa_request_t *req,
                                    stoa_db_result_t **user);

/* In the caller's open transaction, before a change that its password
 * (verified_phc, checked before the transaction began) or its session
 * proved: locks the user's row and checks that neither moved since - the
 * stored hash is still verified_phc and the caller's session is live. A
 * reset that committed while this request hashed replaced the hash and
 * revoked the session; going on would undo it. STOA_OK, or the
 * transaction is rolled back, 401 is answered and STOA_DECLINED returned
 * (or the database failure). */
STOA_MUSTCHECK int auth_credentials_unchanged(stoa_request_t *req,
                                              const char *verified_phc);

/* Drops the cached /v1/me answer of a user. */
void auth_forget_profile(stoa_request_t *req, const char *user_id);

/* --- throttle.c ----------------------------------------------------------- */
/* Failed-login throttle: Redis, and Postgres while Redis is unreachable
 * or has not yet held a whole window of failures. */
STOA_MUSTCHECK int auth_throttle_check(stoa_request_t *req, const char *email);
void auth_throttle_fail(stoa_request_t *req, const char *email);
void auth_throttle_clear(stoa_request_t *req, const char *email);

/* The optional/required "name" field of register and PATCH /v1/me. */
const char *auth_name_field(stoa_request_t *req, const stoa_json_t *body,
                            unsigned flags);
/* The "token" field of mailed-token routes (unknown fields refused). */
const char *auth_token_field(stoa_request_t *req, const stoa_json_t *body,
                             const char *const *allowed);

/* Handlers. */
int auth_register(stoa_request_t *req);
int auth_verify_email(stoa_request_t *req);
int auth_login(stoa_request_t *req);
int auth_refresh(stoa_request_t *req);
int auth_logout(stoa_request_t *req);
int auth_sessions_list(stoa_request_t *req);
int auth_sessions_delete(stoa_request_t *req);
int auth_sessions_delete_others(stoa_request_t *req);
int auth_password_forgot(stoa_request_t *req);
int auth_password_reset(stoa_request_t *req);
int auth_password_change(stoa_request_t *req);
int auth_me_get(stoa_request_t *req);
int auth_me_patch(stoa_request_t *req);
int auth_me_export(stoa_request_t *req);
int auth_me_delete(stoa_request_t *req);
int auth_jwks(stoa_request_t *req);
int auth_mfa_enroll(stoa_request_t *req);
int auth_mfa_confirm(stoa_request_t *req);
int auth_mfa_disable(stoa_request_t *req);
int auth_mfa_verify(stoa_request_t *req);
int auth_api_keys_create(stoa_request_t *req);
int auth_api_keys_list(stoa_request_t *req);
int auth_api_keys_delete(stoa_request_t *req);
int auth_token(stoa_request_t *req);
int auth_realtime(stoa_request_t *req);
int auth_realtime_ticket(stoa_request_t *req);

/* Login continues here when the account has TOTP on: a fresh challenge
 * in the caller's transaction, its mfa_token in *mfa_token (arena) for
 * auth_mfa_required() to answer with once the transaction has committed.
 * STOA_DECLINED when the account takes no codes now (rolled back, 429
 * answered); else STOA_OK or the failure. */
STOA_MUSTCHECK int auth_mfa_challenge(stoa_request_t *req, const char *user_id,
                                      char **mfa_token);
/* 401 mfa_required with the challenge's mfa_token. */
int auth_mfa_required(stoa_request_t *req, const char *mfa_token);
/* True when the user has a confirmed TOTP. */
STOA_MUSTCHECK int auth_mfa_enabled(stoa_request_t *req, const char *user_id,
                                    bool *enabled);

#include "statements.h"

#endif
