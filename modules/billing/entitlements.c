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
    char *key = stoa_key_entitlements(req->arena, user_id);
    char *cached;
    size_t len;
    if (stoa_kv_get(stoa_request_kv(req), req->arena, key, &cached, &len) ==
        STOA_OK)
        return stoa_http_raw_json(req, 200, cached, len);
    const char *json;
    int rc = billing_entitlements_of(req, user_id, &json);
    if (rc != STOA_OK)
        return rc;
    rc = stoa_http_raw_json(req, 200, json, strlen(json));
    if (rc == STOA_OK &&
        stoa_kv_set(stoa_request_kv(req), key, json, strlen(json),
                    ENTITLEMENTS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "entitlements not cached");
    return rc;
}
