/* register.c - POST /v1/auth/register: sign-up, and the verification mail. */

#include "auth.h"
#include "stoa/events.h"
#include "stoa/format.h"
#include "stoa/mail.h"

/* Queues the verification mail (caller's transaction). Its link is made
 * by stoa-jobs when it sends the mail, so the token is never stored in
 * clear, not even in the outbox. */
static int queue_verification(stoa_request_t *req, const char *user_id,
                              const char *email, const char *name)
{
    const stoa_mail_t mail = {.template_name = "verify_email",
                              .to = email,
                              .data_json =
                                  stoa_json_pair(req->arena, "name", name),
                              .link_purpose = "verify_email",
                              .link_user_id = user_id};
    return stoa_mail_enqueue(stoa_request_db(req), req->arena, &mail);
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
    char *email =
        raw_email ? stoa_email_normalise(req->arena, raw_email) : NULL;
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
    rc = stoa_db_exec(db, req->arena, AUTH_SQL(USER_INSERT), params, &user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(user) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_EMAIL_TAKEN,
                              "an account with this email already exists");
    }
    const char *user_id = stoa_db_value(user, 0, USER_COL_ID);
    if ((rc = queue_verification(req, user_id, email, name)) != STOA_OK ||
        (rc = stoa_event_user(db, req->arena, STOA_EVENT_USER_CREATED,
                              user_id)) != STOA_OK ||
        (rc = stoa_request_audit(req, user_id, "user.registered", user_id,
                                 NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "user");
    auth_write_user(w, user, 0, 0);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
