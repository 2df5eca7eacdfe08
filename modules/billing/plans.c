/* plans.c - GET /v1/billing/plans: the public catalogue (cached in
 * Redis). */

#include "billing.h"
#include "stoa/log.h"

#define PLANS_CACHE_TTL_S 300

int billing_plans(stoa_request_t *req)
{
    char *cached;
    size_t len;
    if (stoa_kv_get(stoa_request_kv(req), req->arena, STOA_KEY_PLANS, &cached,
                    &len) == STOA_OK)
        return stoa_http_raw_json(req, 200, cached, len);
    const char *params[] = {"false"};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(PLANS_PUBLIC), params, &res);
    if (rc != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < stoa_db_rows(res); i++)
        billing_write_plan(w, res, i, false);
    stoa_jw_array_close(w);
    stoa_jw_object_close(w);
    rc = stoa_http_send(req);
    if (rc == STOA_OK &&
        stoa_kv_set(stoa_request_kv(req), STOA_KEY_PLANS, req->body_out.data,
                    req->body_out.len, PLANS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "plans not cached");
    return rc;
}
