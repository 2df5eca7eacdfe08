/* mail.c - the email.send payload: written by every producer, read by
 * stoa-jobs. */
#include "stoa/mail.h"

#include <string.h>

#include "stoa/buf.h"
#include "stoa/outbox.h"

char *stoa_mail_payload(stoa_arena_t *arena, const stoa_mail_t *mail)
{
    /* A link is minted for the mail that names it: a purpose under another
     * template would mail a token with the wrong words around it. */
    STOA_ASSERT(!mail->link_purpose ||
                (stoa_mail_link_find(mail->link_purpose) &&
                 mail->link_user_id &&
                 strcmp(mail->link_purpose, mail->template_name) == 0));
    /* The address comes from a row: a mail without one is an error of
     * this call, not a reason to take the process down. */
    if (!mail->template_name || !mail->to)
        return NULL;
    const char *data = mail->data_json ? mail->data_json : "{}";
    stoa_buf_t payload;
    stoa_jw_t *w = stoa_jw_object_new(&payload);
    stoa_jw_kv_string(w, "template", mail->template_name);
    stoa_jw_kv_string(w, "to", mail->to);
    stoa_jw_key(w, "data");
    stoa_jw_raw(w, data, strlen(data));
    if (mail->link_purpose) {
        stoa_jw_key(w, "link");
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "purpose", mail->link_purpose);
        stoa_jw_kv_string(w, "user_id", mail->link_user_id);
        stoa_jw_object_close(w);
    }
    stoa_jw_object_close(w);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    char *json =
        ok ? stoa_arena_strndup(arena, payload.data, payload.len) : NULL;
    stoa_buf_free(&payload);
    return json;
}

int stoa_mail_enqueue(stoa_db_t *db, stoa_arena_t *arena,
                      const stoa_mail_t *mail)
{
    char *json = stoa_mail_payload(arena, mail);
    if (!json)
        return STOA_ERROR;
    return stoa_outbox_enqueue(db, arena, STOA_MAIL_JOB_KIND, json,
                               mail->dedupe_key, 0);
}

int stoa_mail_read(const stoa_json_t *payload, stoa_mail_job_t *out,
                   const char **why)
{
    memset(out, 0, sizeof(*out));
    out->template_name = stoa_json_string(stoa_json_get(payload, "template"));
    out->to = stoa_json_string(stoa_json_get(payload, "to"));
    out->data = stoa_json_get(payload, "data");
    if (!out->template_name || !out->to || !out->data) {
        *why = "email.send needs template, to and data";
        return STOA_DECLINED;
    }
    const stoa_json_t *request = stoa_json_get(payload, "link");
    if (!request)
        return STOA_OK;
    out->link = stoa_mail_link_find(
        stoa_json_string(stoa_json_get(request, "purpose")));
    out->link_user_id = stoa_json_string(stoa_json_get(request, "user_id"));
    if (!out->link || !out->link_user_id || !*out->link_user_id) {
        out->link = NULL;
        *why = "email.send asks for an unknown link";
        return STOA_DECLINED;
    }
    return STOA_OK;
}
