/* mail.c - mail to a user, queued in the outbox. */
#include "stoa/mail.h"
#include "auth.h"

int auth_queue_mail(stoa_request_t *req, const char *tmpl, const char *to,
                    const char *data_json, const char *dedupe_key)
{
    const stoa_mail_t mail = {.template_name = tmpl,
                              .to = to,
                              .data_json = data_json,
                              .dedupe_key = dedupe_key};
    return stoa_mail_enqueue(stoa_request_db(req), req->arena, &mail);
}

int auth_mail_name(stoa_request_t *req, const char *tmpl, const char *to,
                   const char *name, const char *dedupe_key)
{
    return auth_queue_mail(
        req, tmpl, to, stoa_json_pair(req->arena, "name", name), dedupe_key);
}

int auth_mail_user(stoa_request_t *req, const stoa_db_result_t *user,
                   const char *tmpl)
{
    return auth_mail_name(req, tmpl, stoa_db_value(user, 0, USER_COL_EMAIL),
                          stoa_db_value(user, 0, USER_COL_NAME), NULL);
}
