/* mail_link.c - the purposes of mailed single-use links, the
 * forgotten-password job, and the hash of link tokens. */
#include "stoa/mail_link.h"

#include <string.h>

#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/outbox.h"

static const stoa_mail_link_t links[] = {
    {"verify_email", "/verify-email", 86400},
    {"reset_password", "/reset-password", 3600},
};

const stoa_mail_link_t *stoa_mail_link_find(const char *purpose)
{
    for (size_t i = 0; purpose && i < STOA_ARRAY_LEN(links); i++)
        if (strcmp(links[i].purpose, purpose) == 0)
            return &links[i];
    return NULL;
}

/* Enqueues the text of w's buffer as a job of kind. */
static int enqueue_written(stoa_db_t *db, stoa_arena_t *arena, const char *kind,
                           stoa_jw_t *w, stoa_buf_t *payload,
                           const char *dedupe_key)
{
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    char *json = stoa_arena_strndup(arena, payload->data, payload->len);
    stoa_buf_free(payload);
    if (!ok)
        return STOA_ERROR;
    return stoa_outbox_enqueue(db, arena, kind, json, dedupe_key, 0);
}

int stoa_mail_link_request_reset(stoa_db_t *db, stoa_arena_t *arena,
                                 const stoa_mail_link_reset_t *reset)
{
    /* Every member is always written (null when unknown): the rows of a
     * known and an unknown address cannot differ in shape. */
    stoa_buf_t payload;
    stoa_jw_t *w = stoa_jw_object_new(&payload);
    stoa_jw_kv_string(w, "email", reset->email);
    stoa_jw_kv_string(w, "ip", reset->ip);
    stoa_jw_kv_string(w, "request_id", reset->request_id);
    stoa_jw_object_close(w);
    return enqueue_written(db, arena, STOA_MAIL_LINK_RESET_JOB_KIND, w,
                           &payload, NULL);
}

int stoa_mail_link_reset_read(const stoa_json_t *payload,
                              stoa_mail_link_reset_t *out)
{
    out->email = stoa_json_string(stoa_json_get(payload, "email"));
    out->ip = stoa_json_string(stoa_json_get(payload, "ip"));
    out->request_id = stoa_json_string(stoa_json_get(payload, "request_id"));
    return out->email && *out->email ? STOA_OK : STOA_DECLINED;
}

char *stoa_mail_link_token_hash(stoa_arena_t *arena, const char *token)
{
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(token, strlen(token), digest);
    char *out = stoa_arena_alloc(arena, 2 + 2 * STOA_SHA256_LEN + 1);
    out[0] = '\\';
    out[1] = 'x';
    stoa_hex_encode(digest, sizeof(digest), out + 2);
    return out;
}
