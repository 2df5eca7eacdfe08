/* verify_email.c - POST /v1/auth/verify-email: the emailed token confirms
 * the address. */
#include "auth.h"

int auth_verify_email(stoa_request_t *req)
{
    const char *token = stoa_request_only_string(req, "token", 200);
    if (!token)
        return STOA_DECLINED;
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *p1[] = {auth_token_hash_param(req, token), "verify_email"};
    stoa_db_result_t *res;
    if ((rc = auth_link_exec(req, db, AUTH_SQL(EMAIL_TOKEN_USE), p1, &res)) !=
        STOA_OK)
        return rc;
    const char *user_id = stoa_db_value(res, 0, TOKEN_COL_USER_ID);
    const char *p2[] = {user_id};
    stoa_db_result_t *user;
    if ((rc = auth_link_exec(req, db, AUTH_SQL(USER_VERIFY_EMAIL), p2,
                             &user)) != STOA_OK)
        return rc;
    /* Welcome mail once per account, whatever the number of links used. */
    char *welcome_key = stoa_arena_sprintf(req->arena, "welcome:%s", user_id);
    if ((rc = auth_mail_name(req, "welcome", stoa_db_value(user, 0, 0),
                             stoa_db_value(user, 0, 1), welcome_key)) !=
            STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "user.email_verified", user_id,
                                 NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    auth_forget_profile(req, user_id);
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_bool(w, "email_verified", true);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
