/* login.c - POST /v1/auth/login: password (then MFA when enabled), the
 * failed-login throttle, a new session. */
#include <string.h>

#include "auth.h"
#include "stoa/format.h"
#include "stoa/log.h"

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
    int rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_BY_EMAIL), p1, &user);
    if (rc != STOA_OK)
        return rc;
    bool found = stoa_db_rows(user) == 1;
    const char *phc =
        found ? stoa_db_value(user, 0, USER_COL_PASSWORD_HASH) : NULL;
    /* Unknown email or an account without a password: verify against the
     * dummy hash anyway, so the answer takes as long either way. */
    bool ok =
        stoa_password_verify(phc ? phc : st->dummy_hash, password) == STOA_OK &&
        phc;
    const char *user_id = found ? stoa_db_value(user, 0, USER_COL_ID) : NULL;
    if (!ok) {
        auth_throttle_fail(req, email);
        if (stoa_request_audit(req, user_id, "login.failed", user_id, NULL) !=
            STOA_OK)
            stoa_log(STOA_LOG_ERR, "audit of a failed login not written");
        return stoa_http_fail(req, STOA_ERR_INVALID_CREDENTIALS,
                              "email or password is wrong");
    }
    if (strcmp(stoa_db_value(user, 0, USER_COL_STATUS), "active") != 0) {
        if (stoa_request_audit(req, user_id, "login.refused_suspended", user_id,
                               NULL) != STOA_OK)
            stoa_log(STOA_LOG_ERR, "audit of a refused login not written");
        return stoa_http_fail(req, STOA_ERR_ACCOUNT_SUSPENDED,
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
        char *mfa_token;
        if ((rc = auth_mfa_challenge(req, user_id, &mfa_token)) != STOA_OK ||
            (rc = stoa_db_commit(db)) != STOA_OK)
            return rc;
        return auth_mfa_required(req, mfa_token);
    }
    if (stoa_password_needs_rehash(phc, &st->params)) {
        char *hash;
        if (auth_password_hash(req, password, &hash) != STOA_OK)
            return STOA_ERROR;
        const char *p2[] = {user_id, hash};
        if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_SET_PASSWORD), p2,
                               NULL)) != STOA_OK)
            return rc;
    }
    auth_tokens_t tokens;
    if ((rc = auth_start_session(req, user, &tokens)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "login.succeeded", user_id,
                                 NULL)) != STOA_OK ||
        (rc = stoa_request_commit(req, NULL, NULL, NULL)) != STOA_OK)
        return rc;
    auth_write_tokens(req, tokens.access, tokens.refresh, user);
    /* Only a complete login clears the failures: with MFA on, a right
     * password alone must not reset the count of wrong codes. */
    auth_throttle_clear(req, email);
    return STOA_OK;
}
