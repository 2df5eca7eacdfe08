/* login.c - login, refresh-token rotation with reuse detection, logout. */
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "stoa/format.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/revoke.h"

/* Columns after AUTH_USER_COLUMNS in user_by_email / user_by_id. */
#define COL_PASSWORD_HASH AUTH_USER_NCOLUMNS
#define COL_STATUS (AUTH_USER_NCOLUMNS + 1)

int auth_login(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"email", "password", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *raw_email =
        stoa_field_string(req, body, "email", STOA_FIELD_REQUIRED, 1, 320);
    const char *password =
        stoa_field_string(req, body, "password", STOA_FIELD_REQUIRED, 1, 4096);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    char *email = stoa_email_normalise(req->arena, raw_email);
    if (!email)
        email = stoa_arena_strdup(req->arena, "-invalid-");
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;

    auth_state_t *st = auth_state(req);
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {email};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(db, req->arena, "user_by_email", p1, &user);
    if (rc != STOA_OK)
        return rc;
    bool found = stoa_db_rows(user) == 1;
    const char *phc = found ? stoa_db_value(user, 0, COL_PASSWORD_HASH) : NULL;
    /* Unknown email or an account without a password: verify against the
     * dummy hash anyway, so the answer takes as long either way. */
    bool ok = stoa_password_verify(phc ? phc : st->dummy_hash, password) ==
                  STOA_OK &&
              phc;
    const char *user_id = found ? stoa_db_value(user, 0, 0) : NULL;
    if (!ok) {
        auth_throttle_fail(req, email);
        if (stoa_request_audit(req, user_id, "login.failed", user_id, NULL) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "audit of a failed login not written");
        return stoa_http_error(req, 401, "invalid_credentials",
                               "email or password is wrong");
    }
    if (strcmp(stoa_db_value(user, 0, COL_STATUS), "active") != 0) {
        if (stoa_request_audit(req, user_id, "login.refused_suspended", user_id,
                               NULL) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "audit of a refused login not written");
        return stoa_http_error(req, 403, "account_suspended",
                               "this account is suspended");
    }
    /* The hash took tens of milliseconds: a reset, suspension or role
     * change may have committed since. Read the user again, locked, and
     * start from that (a changed password refuses this login). */
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = auth_user_for_session(req, user_id, phc, &user)) != STOA_OK)
        return rc;
    bool mfa = false;
    if ((rc = auth_mfa_enabled(req, user_id, &mfa)) != STOA_OK)
        return rc;
    if (mfa) {
        /* The password was right; the session waits for the second
         * factor (POST /v1/auth/mfa/verify with this challenge), which
         * must exist only if this password still is the password. */
        rc = auth_mfa_challenge(req, user_id);
        if (rc == STOA_ERROR || rc == STOA_AGAIN)
            return rc;
        if ((rc = stoa_db_commit(db)) != STOA_OK)
            return rc;
        return STOA_DECLINED;
    }
    if (stoa_password_needs_rehash(phc, &st->params)) {
        char *hash;
        if (auth_password_hash(req, password, &hash) != STOA_OK)
            return STOA_ERROR;
        const char *p2[] = {user_id, hash};
        if ((rc = stoa_db_exec(db, req->arena, "user_set_password", p2,
                               NULL)) != STOA_OK)
            return rc;
    }
    if ((rc = auth_start_session(req, user)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "login.succeeded", user_id, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    /* Only a complete login clears the failures: with MFA on, a right
     * password alone must not reset the count of wrong codes. */
    auth_throttle_clear(req, email);
    return STOA_OK;
}

/* The key sealing a spent token's successor: derived from the spent token
 * itself, which the database never stores (only its SHA-256). */
static void successor_key(const char *token, uint8_t key[STOA_AEAD_KEY_LEN])
{
    static const char label[] = "stoa refresh successor v1";
    stoa_hmac_sha256(token, strlen(token), label, sizeof(label) - 1, key);
}

/* Replays the successor pair sealed in the spent row. */
static int replay_successor(stoa_request_t *req, const char *token,
                            const char *sealed_hex)
{
    uint8_t sealed[4096], plain[4096], key[STOA_AEAD_KEY_LEN];
    size_t sealed_len, plain_len;
    if (stoa_bytea_decode(sealed_hex, sealed, sizeof(sealed), &sealed_len) !=
        STOA_OK)
        return STOA_DECLINED;
    successor_key(token, key);
    int rc = stoa_aead_open(key, sealed, sealed_len, NULL, 0, plain,
                            &plain_len);
    stoa_wipe(key, sizeof(key));
    if (rc != STOA_OK)
        return STOA_DECLINED;
    char *text = stoa_arena_strndup(req->arena, (char *)plain, plain_len);
    stoa_wipe(plain, plain_len);
    char *nl = strchr(text, '\n');
    if (!nl)
        return STOA_DECLINED;
    *nl = '\0';
    auth_write_tokens(req, text, nl + 1, NULL);
    return STOA_OK;
}

int auth_refresh(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"refresh_token", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *token = stoa_field_string(req, body, "refresh_token",
                                          STOA_FIELD_REQUIRED, 1, 200);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    const stoa_conf_t *conf = &req->ctx->conf;
    stoa_db_t *db = stoa_request_db(req);
    char *hash = auth_token_hash_param(req, token);
    char window[24], ttl[24];
    snprintf(window, sizeof(window), "%ld", conf->refresh_reuse_interval);
    snprintf(ttl, sizeof(ttl), "%ld", conf->refresh_token_ttl);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *p1[] = {hash, window};
    stoa_db_result_t *row;
    if ((rc = stoa_db_exec(db, req->arena, "refresh_lookup", p1, &row)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(row) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 401, "invalid_token",
                               "unknown or expired refresh token");
    }
    const char *session_id = stoa_db_value(row, 0, 0);
    bool spent = stoa_db_value(row, 0, 1)[0] == 't';
    const char *in_window = stoa_db_value(row, 0, 2);
    const char *sealed = stoa_db_value(row, 0, 3);
    bool live = stoa_db_value(row, 0, 4)[0] == 't';
    const char *user_id = stoa_db_value(row, 0, 5);
    const char *role = stoa_db_value(row, 0, 6);
    bool active = strcmp(stoa_db_value(row, 0, 7), "active") == 0;
    if (!live || !active) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 401, "invalid_token",
                               "the session has ended");
    }
    if (spent) {
        /* Two tabs refreshing at once: within the window the parent gives
         * back the same successor pair. */
        if (in_window && in_window[0] == 't' &&
            replay_successor(req, token, sealed) == STOA_OK) {
            stoa_db_rollback(db);
            return STOA_OK;
        }
        /* Reuse after the window: the token family is compromised. */
        const char *p2[] = {session_id, user_id, "refresh_token_reused"};
        if ((rc = stoa_db_exec(db, req->arena, "session_revoke_one", p2,
                               NULL)) != STOA_OK ||
            (rc = stoa_request_audit(req, user_id, "refresh.reused", user_id,
                             NULL)) != STOA_OK ||
            (rc = stoa_db_commit(db)) != STOA_OK)
            return rc;
        stoa_revoke_session_committed(&req->conns, req->arena, session_id);
        return stoa_http_error(req, 401, "token_reused",
                               "this refresh token was already used; the "
                               "session has been revoked");
    }

    char *next, *next_hash, *access;
    auth_new_token(req, &next, &next_hash);
    if ((rc = auth_access_token(req, user_id, role, session_id, &access)) !=
        STOA_OK)
        return rc;
    size_t alen = strlen(access), nlen = strlen(next);
    size_t plain_len = alen + 1 + nlen;
    uint8_t key[STOA_AEAD_KEY_LEN];
    uint8_t *box = stoa_arena_alloc(req->arena, plain_len + STOA_AEAD_OVERHEAD);
    char *plain = stoa_arena_sprintf(req->arena, "%s\n%s", access, next);
    successor_key(token, key);
    rc = stoa_aead_seal(key, plain, plain_len, NULL, 0, box);
    stoa_wipe(key, sizeof(key));
    stoa_wipe(plain, plain_len);
    if (rc != STOA_OK)
        return STOA_ERROR;
    size_t box_len = plain_len + STOA_AEAD_OVERHEAD;
    char *box_hex = stoa_arena_alloc(req->arena, 2 + 2 * box_len + 1);
    box_hex[0] = '\\';
    box_hex[1] = 'x';
    stoa_hex_encode(box, box_len, box_hex + 2);
    const char *p3[] = {hash, box_hex};
    const char *p4[] = {next_hash, session_id, ttl};
    const char *p5[] = {session_id, ttl};
    if ((rc = stoa_db_exec(db, req->arena, "refresh_spend", p3, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "refresh_insert", p4, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "session_touch", p5, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_write_tokens(req, access, next, NULL);
    return STOA_OK;
}

int auth_logout(stoa_request_t *req)
{
    const stoa_principal_t *p = &req->principal;
    /* A key's token ends with its key: there is no login to end (revoke
     * the key instead). */
    if (!p->session_id || stoa_principal_from_api_key(p))
        return stoa_http_error(req, 400, "invalid_request",
                               "this token has no login session to end");
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *params[] = {p->session_id, p->user_id, "logout"};
    stoa_db_result_t *res;
    if ((rc = stoa_db_exec(db, req->arena, "session_revoke_one", params,
                           &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_request",
                               "this token has no login session to end");
    }
    if ((rc = stoa_request_audit(req, NULL, "logout", p->user_id, NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_revoke_session_committed(&req->conns, req->arena, p->session_id);
    return stoa_http_empty(req, 204);
}
