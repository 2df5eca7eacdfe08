/* subscription.c - GET /v1/billing/subscription and POST
 * /v1/billing/subscription/cancel. */
#include <stdlib.h>
#include <string.h>

#include "billing.h"

void billing_write_subscription(stoa_jw_t *w, const stoa_db_result_t *res)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status",
                      stoa_db_value(res, 0, SUBSCRIPTION_COL_STATUS));
    stoa_jw_key(w, "plan");
    if (stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_KEY)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "key",
                          stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_KEY));
        stoa_jw_kv_string(w, "name",
                          stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_NAME));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_key(w, "price");
    if (stoa_db_value(res, 0, SUBSCRIPTION_COL_PRICE_ID)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id",
                          stoa_db_value(res, 0, SUBSCRIPTION_COL_PRICE_ID));
        stoa_jw_kv_integer(
            w, "amount", atoll(stoa_db_value(res, 0, SUBSCRIPTION_COL_AMOUNT)));
        stoa_jw_kv_string(w, "currency",
                          stoa_db_value(res, 0, SUBSCRIPTION_COL_CURRENCY));
        stoa_jw_kv_string(w, "interval",
                          stoa_db_value(res, 0, SUBSCRIPTION_COL_INTERVAL));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_kv_string(
        w, "current_period_end",
        stoa_db_value(res, 0, SUBSCRIPTION_COL_CURRENT_PERIOD_END));
    stoa_jw_kv_bool(
        w, "cancel_at_period_end",
        stoa_db_value(res, 0, SUBSCRIPTION_COL_CANCEL_AT_PERIOD_END)[0] == 't');
    stoa_jw_kv_string(w, "trial_end",
                      stoa_db_value(res, 0, SUBSCRIPTION_COL_TRIAL_END));
    stoa_jw_object_close(w);
}

static int load_subscription(stoa_request_t *req, stoa_db_result_t **res)
{
    const char *p1[] = {req->principal.user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(SUBSCRIPTION_OF_USER), p1, res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*res) == 0)
        return stoa_http_fail(req, STOA_ERR_NO_SUBSCRIPTION,
                              "you have no subscription");
    return STOA_OK;
}

int billing_subscription(stoa_request_t *req)
{
    stoa_db_result_t *res;
    int rc = load_subscription(req, &res);
    if (rc != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 200);
    billing_write_subscription(w, res);
    return stoa_http_send(req);
}

int billing_subscription_cancel(stoa_request_t *req)
{
    stoa_db_result_t *res;
    int rc = load_subscription(req, &res);
    if (rc != STOA_OK)
        return rc;
    const char *status = stoa_db_value(res, 0, SUBSCRIPTION_COL_STATUS);
    if (strcmp(status, "trialing") != 0 && strcmp(status, "active") != 0 &&
        strcmp(status, "past_due") != 0)
        return stoa_http_fail(req, STOA_ERR_NOT_CANCELABLE,
                              "the subscription is not active");
    const char *sub = stoa_db_value(res, 0, SUBSCRIPTION_COL_STRIPE_ID);
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "cancel_at_period_end", "true");
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    char *path = stoa_arena_sprintf(req->arena, "/v1/subscriptions/%s", sub);
    /* Cancelling twice is the same request: one key per subscription. */
    char *key = stoa_arena_sprintf(req->arena, "stoa-cancel-%s", sub);
    rc = stoa_stripe_call(billing_state(req)->stripe, req->arena, "POST", path,
                          form.data, key, &obj, &err);
    stoa_buf_free(&form);
    if (rc != STOA_OK)
        return billing_stripe_failed(req, rc, &err);
    const char *p1[] = {sub};
    char *details = stoa_json_pair(req->arena, "subscription", sub);
    /* An update of nothing (the row not yet written by the webhook) is
     * no refusal: Stripe has the cancellation either way. */
    if ((rc = stoa_request_begin(req, NULL, NULL, NULL)) != STOA_OK ||
        (rc = stoa_db_exec(stoa_request_db(req), req->arena,
                           BILLING_SQL(SUBSCRIPTION_SET_CANCEL), p1, NULL)) !=
            STOA_OK ||
        (rc = stoa_request_commit(req, "subscription.cancel_requested", NULL,
                                  details)) != STOA_OK)
        return rc;
    if ((rc = load_subscription(req, &res)) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 200);
    billing_write_subscription(w, res);
    return stoa_http_send(req);
}
