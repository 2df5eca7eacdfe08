/* entitlements.c - GET /v1/billing/entitlements: what the caller's plan
 * grants (cached in Redis). */
#include <string.h>

#include "billing.h"
#include "stoa/log.h"

#define ENTITLEMENTS_CACHE_TTL_S 300

int billing_entitlements(stoa_request_t *req)
{
    const char *user_id = req->principal.user_id;
    char *key = stoa_key_entitlements(req->arena, user_id);
    char *cached;
    size_t len;
    if (stoa_kv_get(stoa_request_kv(req), req->arena, key, &cached, &len) ==
        STOA_OK)
        return stoa_http_raw_json(req, 200, cached, len);
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(ENTITLEMENTS_OF_USER), p1, &res);
    if (rc != STOA_OK)
        return rc;
    const char *plan = NULL, *status = "none", *features = "{}";
    if (stoa_db_rows(res) == 1) {
        plan = stoa_db_value(res, 0, ENTITLEMENT_COL_PLAN_KEY);
        status = stoa_db_value(res, 0, ENTITLEMENT_COL_STATUS);
        features = stoa_db_value(res, 0, ENTITLEMENT_COL_FEATURES);
    } else {
        /* Not entitled by a subscription: the free plan's features. */
        if ((rc = stoa_db_exec(stoa_request_db(req), req->arena,
                               BILLING_SQL(FREE_PLAN), NULL, &res)) != STOA_OK)
            return rc;
        if (stoa_db_rows(res) == 1) {
            plan = stoa_db_value(res, 0, FREE_PLAN_COL_KEY);
            features = stoa_db_value(res, 0, FREE_PLAN_COL_FEATURES);
        }
    }
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "plan", plan);
    stoa_jw_kv_string(w, "subscription_status", status);
    stoa_jw_key(w, "features");
    stoa_jw_raw(w, features, strlen(features));
    stoa_jw_object_close(w);
    rc = stoa_http_send(req);
    if (rc == STOA_OK &&
        stoa_kv_set(stoa_request_kv(req), key, req->body_out.data,
                    req->body_out.len, ENTITLEMENTS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "entitlements not cached");
    return rc;
}
