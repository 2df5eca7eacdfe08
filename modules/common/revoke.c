/* revoke.c - revocation markers and their per-process cache. */
#include "stoa/revoke.h"

#include <stdio.h>
#include <string.h>

#include "stoa/crypto.h"
#include "stoa/log.h"

/* Tokens live at most access_token_ttl (plus the gateway's leeway); a
 * marker must outlive all of them. */
#define MARKER_EXTRA_S 120
#define CACHE_SLOTS 256

const stoa_db_statement_t stoa_revoke_statements[] = {
    /* The sid of a token is a login session or, for tokens exchanged
     * from an API key, the key. */
    {"revoke_check",
     "SELECT (u.status = 'active') AND ($2::uuid IS NULL OR EXISTS ("
     " SELECT 1 FROM auth.sessions s WHERE s.id = $2::uuid AND"
     " s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())"
     " OR EXISTS (SELECT 1 FROM auth.api_keys k WHERE k.id = $2::uuid AND"
     " k.user_id = u.id AND k.revoked_at IS NULL))"
     " FROM auth.users u WHERE u.id = $1::uuid",
     2},
};
const size_t stoa_revoke_statements_len =
    STOA_ARRAY_LEN(stoa_revoke_statements);

typedef struct {
    char user_id[STOA_UUID_STR_LEN + 1];
    char session_id[STOA_UUID_STR_LEN + 1];
    uint64_t checked_us;
    bool live;
} cache_slot_t;

static cache_slot_t cache[CACHE_SLOTS];

static cache_slot_t *slot_for(const char *user_id, const char *session_id)
{
    /* FNV-1a over both ids: cheap, and a collision only costs a lookup. */
    uint32_t h = 2166136261u;
    for (const char *p = user_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (const char *p = session_id ? session_id : ""; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return &cache[h % CACHE_SLOTS];
}

static int check_postgres(stoa_request_t *req, bool *live)
{
    const char *params[] = {req->principal.user_id, req->principal.session_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(req->ctx->db, req->arena, "revoke_check", params,
                          &res);
    if (rc != STOA_OK)
        return STOA_AGAIN;
    const char *v = stoa_db_value(res, 0, 0);
    *live = v && v[0] == 't';
    return STOA_OK;
}

int stoa_revoke_check(stoa_request_t *req)
{
    const stoa_principal_t *p = &req->principal;
    if (strlen(p->user_id) > STOA_UUID_STR_LEN ||
        (p->session_id && strlen(p->session_id) > STOA_UUID_STR_LEN))
        return STOA_DECLINED;
    cache_slot_t *slot = slot_for(p->user_id, p->session_id);
    uint64_t now = stoa_now_us();
    if (slot->checked_us &&
        now - slot->checked_us < (uint64_t)STOA_REVOKE_CACHE_MS * 1000 &&
        strcmp(slot->user_id, p->user_id) == 0 &&
        strcmp(slot->session_id, p->session_id ? p->session_id : "") == 0)
        return slot->live ? STOA_OK : STOA_DECLINED;

    bool live;
    char *keys[2], *values[2];
    keys[0] = stoa_arena_sprintf(req->arena, "rv:u:%s", p->user_id);
    keys[1] = stoa_arena_sprintf(req->arena, "rv:s:%s",
                                 p->session_id ? p->session_id : "-");
    int rc = stoa_kv_mget(req->ctx->kv, req->arena, 2,
                          (const char *const *)keys, values);
    if (rc == STOA_OK) {
        live = !values[0] && !values[1];
    } else if (check_postgres(req, &live) != STOA_OK) {
        return STOA_AGAIN;
    }
    snprintf(slot->user_id, sizeof(slot->user_id), "%s", p->user_id);
    snprintf(slot->session_id, sizeof(slot->session_id), "%s",
             p->session_id ? p->session_id : "");
    slot->checked_us = now;
    slot->live = live;
    return live ? STOA_OK : STOA_DECLINED;
}

static void mark(stoa_kv_t *kv, const char *prefix, const char *id, long ttl)
{
    char key[64];
    snprintf(key, sizeof(key), "%s%s", prefix, id);
    if (stoa_kv_set(kv, key, "1", 1, ttl) != STOA_OK)
        stoa_log(STOA_LOG_ERR,
                 "could not set revocation marker %s (Redis down: the "
                 "Postgres fallback refuses the session meanwhile)",
                 key);
}

void stoa_revoke_mark_session(stoa_kv_t *kv, long token_ttl,
                              const char *session_id)
{
    mark(kv, "rv:s:", session_id, token_ttl + MARKER_EXTRA_S);
}

void stoa_revoke_mark_user(stoa_kv_t *kv, const char *user_id)
{
    /* A suspended user stays marked until reactivated. */
    mark(kv, "rv:u:", user_id, 0);
}

void stoa_revoke_unmark_user(stoa_kv_t *kv, const char *user_id)
{
    char key[64];
    snprintf(key, sizeof(key), "rv:u:%s", user_id);
    if (stoa_kv_del(kv, key) != STOA_OK)
        stoa_log(STOA_LOG_ERR, "could not clear revocation marker %s", key);
}
