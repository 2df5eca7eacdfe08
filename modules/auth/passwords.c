/* passwords.c - forgotten password, reset by mailed token, change. */
#include <string.h>

#include "auth.h"
#include "stoa/format.h"
#include "stoa/audit.h"
#include "stoa/log.h"

#define RESET_TTL_S "3600"
#define COL_PASSWORD_HASH AUTH_USER_NCOLUMNS
#define COL_STATUS (AUTH_USER_NCOLUMNS + 1)

int auth_password_forgot(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"email", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *raw =
        stoa_field_string(req, body, "email", STOA_FIELD_REQUIRED, 1, 320);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    char *email = stoa_email_normalise(req->arena, raw);
    /* 202 whatever happens below: the answer never tells whether an
     * account exists. */
    if (!email)
        return stoa_http_empty(req, 202);
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {email};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(db, req->arena, "user_by_email", p1, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0 ||
        strcmp(stoa_db_value(user, 0, COL_STATUS), "active") != 0)
        return stoa_http_empty(req, 202);
    const char *user_id = stoa_db_value(user, 0, 0);
    char *token, *hash;
    auth_new_token(req, &token, &hash);
    stoa_buf_t data;
    stoa_buf_init(&data);
    stoa_jw_t *w = stoa_jw_new(&data);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name", stoa_db_value(user, 0, 2));
    stoa_jw_kv_string(w, "link",
                      stoa_arena_sprintf(req->arena, "%s/reset-password?token=%s",
                                         req->ctx->conf.public_url, token));
    stoa_jw_kv_integer(w, "expires_in_minutes", 60);
    stoa_jw_object_close(w);
    stoa_jw_free(w);
    const char *p2[] = {hash, user_id, "reset_password", RESET_TTL_S};
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "email_token_insert", p2, NULL)) !=
            STOA_OK ||
        (rc = auth_queue_mail(req, "reset_password", email, data.data, NULL)) !=
            STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "password.reset_requested", user_id,
                         NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK) {
        stoa_buf_free(&data);
        return rc;
    }
    stoa_buf_free(&data);
    return stoa_http_empty(req, 202);
}

/* Sets a new password, revokes sessions (all, or all but keep), audits
 * and mails, inside the caller's transaction; commits. */
static int replace_password(stoa_request_t *req, const stoa_db_result_t *user,
                            const char *password, const char *keep_session,
                            const char *action)
{
    const char *user_id = stoa_db_value(user, 0, 0);
    char *hash;
    if (auth_password_hash(req, password, &hash) != STOA_OK)
        return STOA_ERROR;
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {user_id, hash};
    stoa_db_result_t *revoked;
    int rc;
    if ((rc = stoa_db_exec(db, req->arena, "user_set_password", p1, NULL)) !=
            STOA_OK ||
        /* A reset (no session kept: the caller proved only the mailbox)
         * also revokes every API key: whoever held the account before
         * must not keep a way in. */
        (rc = auth_revoke_sessions(req, user_id, keep_session,
                                   "password_changed", keep_session == NULL,
                                   &revoked)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, action, user_id, NULL)) != STOA_OK ||
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
    const char *p1[] = {auth_token_hash_param(req, token), "reset_password"};
    stoa_db_result_t *res, *user;
    if ((rc = stoa_db_exec(db, req->arena, "email_token_use", p1, &res)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_token",
                               "the link is invalid, used or expired");
    }
    const char *p2[] = {stoa_db_value(res, 0, 0)};
    if ((rc = stoa_db_exec(db, req->arena, "user_by_id", p2, &user)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_token",
                               "the link is invalid, used or expired");
    }
    /* A refused password rolls back, so the token stays usable. */
    if (!auth_password_acceptable(req, "password", password,
                                  stoa_db_value(user, 0, 1))) {
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
    const char *p1[] = {req->principal.user_id};
    stoa_db_result_t *user;
    int rc = stoa_db_exec(db, req->arena, "user_by_id", p1, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0)
        return stoa_http_error(req, 404, "not_found", "no such user");
    const char *email = stoa_db_value(user, 0, 1);
    if (auth_throttle_check(req, email) != STOA_OK)
        return STOA_DECLINED;
    const char *phc = stoa_db_value(user, 0, COL_PASSWORD_HASH);
    if (!phc || stoa_password_verify(phc, current) != STOA_OK) {
        auth_throttle_fail(req, email);
        stoa_request_field_error(req, "current_password", "incorrect");
        return stoa_http_invalid_fields(req);
    }
    if (!auth_password_acceptable(req, "new_password", next, email))
        return stoa_http_invalid_fields(req);
    if ((rc = stoa_db_begin(db)) != STOA_OK)
        return rc;
    return replace_password(req, user, next, req->principal.session_id,
                            "password.changed");
}
