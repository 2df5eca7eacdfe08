/* password.c - /v1/auth/password/...: forgotten password, reset by mailed
 * token, change. */
#include "auth.h"
#include "stoa/audit.h"
#include "stoa/format.h"
#include "stoa/log.h"
#include "stoa/mail_link.h"

int auth_password_forgot(stoa_request_t *req)
{
    const char *raw = stoa_request_only_string(req, "email", 320);
    if (!raw)
        return STOA_DECLINED;
    char *email = stoa_email_normalise(req->arena, raw);
    /* 202 whatever happens: the answer never tells whether an account
     * exists. (An address that cannot be one has no account to hide.) */
    if (!email)
        return stoa_http_empty(req, 202);
    /* No lookup here: every address costs the same one-row transaction,
     * and stoa-jobs finds the account, applies the per-address mail limit,
     * mails the link and audits (SPEC §4: the same time either way). */
    stoa_mail_link_reset_t reset = {email, req->remote_addr, req->request_id};
    stoa_db_t *db = stoa_request_db(req);
    int rc;
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = stoa_mail_link_request_reset(db, req->arena, &reset)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    return stoa_http_empty(req, 202);
}

/* Sets a new password, revokes sessions (all, or all but keep), audits
 * and mails, inside the caller's transaction; commits. */
static int replace_password(stoa_request_t *req, const stoa_db_result_t *user,
                            const char *password, const char *keep_session,
                            const char *action)
{
    const char *user_id = stoa_db_value(user, 0, USER_COL_ID);
    char *hash;
    if (auth_password_hash(req, password, &hash) != STOA_OK)
        return STOA_ERROR;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id, hash};
    stoa_db_result_t *revoked;
    int rc;
    if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_SET_PASSWORD), p1,
                           NULL)) != STOA_OK ||
        /* A reset (no session kept: the caller proved only the mailbox)
         * also revokes every API key: whoever held the account before
         * must not keep a way in. */
        (rc = auth_revoke_sessions(req, user_id, keep_session,
                                   "password_changed", keep_session == NULL,
                                   &revoked)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, action, user_id, NULL)) !=
            STOA_OK ||
        (rc = auth_mail_user(req, user, "password_changed")) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_mark_revoked(req, revoked);
    return stoa_http_empty(req, 204);
}

int auth_password_reset(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"token", "password", NULL};
    const char *token = auth_token_field(req, body, allowed);
    const char *password =
        stoa_field_string(req, body, "password", STOA_FIELD_REQUIRED, 1, 4096);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    /* The link and every other reset link of the user die together: an
     * older mail lying in the inbox cannot set the password again. */
    const char *p1[] = {auth_token_hash_param(req, token)};
    stoa_db_result_t *res, *user;
    if ((rc = auth_link_exec(req, db, AUTH_SQL(RESET_TOKENS_SPEND), p1,
                             &res)) != STOA_OK)
        return rc;
    const char *p2[] = {stoa_db_value(res, 0, TOKEN_COL_USER_ID)};
    if ((rc = auth_link_exec(req, db, AUTH_SQL(USER_BY_ID), p2, &user)) !=
        STOA_OK)
        return rc;
    /* A refused password rolls back, so the token stays usable. */
    if (!auth_password_acceptable(req, "password", password,
                                  stoa_db_value(user, 0, USER_COL_EMAIL),
                                  stoa_db_value(user, 0, USER_COL_NAME))) {
        stoa_db_rollback(db);
        return stoa_http_invalid_fields(req);
    }
    return replace_password(req, user, password, NULL, "password.reset");
}

int auth_password_change(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"current_password", "new_password",
                                          NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *current = stoa_field_string(req, body, "current_password",
                                            STOA_FIELD_REQUIRED, 1, 4096);
    const char *next = stoa_field_string(req, body, "new_password",
                                         STOA_FIELD_REQUIRED, 1, 4096);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    stoa_db_t *db = stoa_request_db(req);
    stoa_db_result_t *user;
    int rc = auth_caller_user(req, &user);
    if (rc != STOA_OK)
        return rc;
    const char *email = stoa_db_value(user, 0, USER_COL_EMAIL);
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;
    const char *phc = stoa_db_value(user, 0, USER_COL_PASSWORD_HASH);
    if (!phc || stoa_password_verify(phc, current) != STOA_OK) {
        auth_throttle_fail(req, email);
        stoa_request_field_error(req, "current_password", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    if (!auth_password_acceptable(req, "new_password", next, email,
                                  stoa_db_value(user, 0, USER_COL_NAME)))
        return stoa_http_invalid_fields(req);
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = auth_credentials_unchanged(req, phc)) != STOA_OK)
        return rc;
    return replace_password(req, user, next, req->principal.session_id,
                            "password.changed");
}
