/* register.c - sign-up and email verification. */
#include <string.h>

#include "auth.h"
#include "stoa/format.h"
#include "stoa/audit.h"
#include "stoa/mail_link.h"
#include "stoa/outbox.h"

/* A display name: 1-200 bytes, not blank, no control characters. */
static bool name_ok(const char *name)
{
    bool visible = false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p != ' ')
            visible = true;
    }
    return visible;
}

const char *auth_name_field(stoa_request_t *req, const stoa_json_t *body,
                            unsigned flags)
{
    const char *name = stoa_field_string(req, body, "name", flags, 1, 200);
    if (name && !name_ok(name)) {
        stoa_request_field_error(req, "name", "invalid");
        return NULL;
    }
    return name;
}

/* Queues the verification mail (caller's transaction). Its link is made
 * by stoa-jobs when it sends the mail, so the token is never stored in
 * clear, not even in the outbox. */
static int queue_verification(stoa_request_t *req, const char *user_id,
                              const char *email, const char *name)
{
    stoa_buf_t data;
    stoa_buf_init(&data);
    stoa_jw_t *w = stoa_jw_new(&data);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "name", name);
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    int rc = ok ? stoa_mail_link_enqueue(stoa_request_db(req), req->arena,
                                         "verify_email", email, data.data,
                                         "verify_email", user_id, NULL)
                : STOA_ERROR;
    stoa_buf_free(&data);
    return rc;
}

int auth_register(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"email", "password", "name", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *raw_email =
        stoa_field_string(req, body, "email", STOA_FIELD_REQUIRED, 1, 320);
    const char *password =
        stoa_field_string(req, body, "password", STOA_FIELD_REQUIRED, 1, 4096);
    const char *name = auth_name_field(req, body, STOA_FIELD_REQUIRED);
    char *email = raw_email ? stoa_email_normalise(req->arena, raw_email)
                            : NULL;
    if (raw_email && !email)
        stoa_request_field_error(req, "email", "invalid");
    if (password)
        auth_password_acceptable(req, "password", password, email, name);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    /* Hash before the transaction: no row lock is held during Argon2. */
    char *hash;
    if (auth_password_hash(req, password, &hash) != STOA_OK)
        return STOA_ERROR;
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *params[] = {email, name, hash};
    stoa_db_result_t *user;
    rc = stoa_db_exec(db, req->arena, "user_insert", params, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 409, "email_taken",
                               "an account with this email already exists");
    }
    const char *user_id = stoa_db_value(user, 0, 0);
    char *event = stoa_arena_sprintf(req->arena, "{\"id\":\"%s\"}", user_id);
    if ((rc = queue_verification(req, user_id, email, name)) != STOA_OK ||
        (rc = stoa_outbox_event(db, req->arena, "user.created", event)) !=
            STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "user.registered", user_id, NULL)) !=
            STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "user");
    auth_write_user(w, user, 0, 0);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* Reads {token} of a mailed single-use token. */
const char *auth_token_field(stoa_request_t *req, const stoa_json_t *body,
                             const char *const *allowed)
{
    stoa_field_reject_unknown(req, body, allowed);
    return stoa_field_string(req, body, "token", STOA_FIELD_REQUIRED, 1, 200);
}

int auth_verify_email(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"token", NULL};
    const char *token = auth_token_field(req, body, allowed);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *p1[] = {auth_token_hash_param(req, token), "verify_email"};
    stoa_db_result_t *res;
    if ((rc = stoa_db_exec(db, req->arena, "email_token_use", p1, &res)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_token",
                               "the link is invalid, used or expired");
    }
    const char *user_id = stoa_db_value(res, 0, 0);
    const char *p2[] = {user_id};
    stoa_db_result_t *user;
    if ((rc = stoa_db_exec(db, req->arena, "user_verify_email", p2, &user)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0) {
        stoa_db_rollback(db);
        return stoa_http_error(req, 400, "invalid_token",
                               "the link is invalid, used or expired");
    }
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
