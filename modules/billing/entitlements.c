/* entitlements.c - GET /v1/billing/entitlements: what the caller's plan
 * grants (cached in Redis), and the same answer for the
 * entitlements.changed event of the Stripe webhooks. */
#include <string.h>

#include "billing.h"
#include "stoa/log.h"

#define ENTITLEMENTS_CACHE_TTL_S 300

int billing_entitlements_of(stoa_request_t *req, const char *user_id,
                            const char **json)
{
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(ENTITLEMENTS_OF_USER), p1, &res);
    if (rc != STOA_OK)
        return rc;
    *json = stoa_db_value(res, 0, 0);
    return *json ? STOA_OK : STOA_ERROR;
}

int billing_entitlements(stoa_request_t *req)
{
    const char *user_id = req->principal.user_id;
    /* One round trip: both generations and the cached answer. */
    const char *keys[] = {stoa_key_entitlements_gen(req->arena, user_id),
                          STOA_KEY_CATALOGUE_GEN,
                          stoa_key_entitlements(req->arena, user_id)};
    char *got[3] = {NULL, NULL, NULL};
    bool reachable =
        stoa_kv_mget(stoa_request_kv(req), req->arena, 3, keys, got) == STOA_OK;
    char *tag = stoa_arena_sprintf(req->arena, "%s:%s:", got[0] ? got[0] : "0",
                                   got[1] ? got[1] : "0");
    size_t tag_len = strlen(tag);
    if (reachable && got[2] && strncmp(got[2], tag, tag_len) == 0)
        return stoa_http_raw_json(req, 200, got[2] + tag_len,
                                  strlen(got[2] + tag_len));
    const char *json;
    int rc = billing_entitlements_of(req, user_id, &json);
    if (rc != STOA_OK)
        return rc;
    rc = stoa_http_raw_json(req, 200, json, strlen(json));
    if (!reachable || rc != STOA_OK)
        return rc;
    /* Stored under the generations read before the database was. */
    char *value = stoa_arena_sprintf(req->arena, "%s%s", tag, json);
    if (stoa_kv_set(stoa_request_kv(req), keys[2], value, strlen(value),
                    ENTITLEMENTS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "entitlements not cached");
    return rc;
}
