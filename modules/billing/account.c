/* account.c - the caller's billing: checkout, portal, subscription,
 * cancellation, invoices and entitlements. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"
#include "stoa/audit.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

#define ENTITLEMENTS_CACHE_TTL_S 300

/* The caller's Stripe customer, created on first need. The Stripe
 * idempotency key is per user, so two racing requests get one customer. */
static int ensure_customer(stoa_request_t *req, const char **customer)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *user_id = req->principal.user_id;
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(db, req->arena, "customer_of_user", p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 1) {
        *customer = stoa_db_value(res, 0, 0);
        return STOA_OK;
    }
    if ((rc = stoa_db_exec(db, req->arena, "user_contact", p1, &res)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "email", stoa_db_value(res, 0, 0));
    stoa_stripe_form(&form, "name", stoa_db_value(res, 0, 1));
    stoa_stripe_form(&form, "metadata[user_id]", user_id);
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    char *key = stoa_arena_sprintf(req->arena, "stoa-customer-%s", user_id);
    rc = stoa_stripe_call(billing_state(req)->stripe, req->arena, "POST",
                          "/v1/customers", form.data, key, &obj, &err);
    stoa_buf_free(&form);
    if (rc != STOA_OK)
        return billing_stripe_failed(req, rc, &err);
    const char *id = stoa_json_string(stoa_json_get(obj, "id"));
    if (!id)
        return STOA_ERROR;
    const char *p2[] = {user_id, id};
    if ((rc = stoa_db_exec(db, req->arena, "customer_insert", p2, NULL)) !=
        STOA_OK)
        return rc;
    /* Whoever won a race, the stored link is the truth. */
    if ((rc = stoa_db_exec(db, req->arena, "customer_of_user", p1, &res)) !=
        STOA_OK)
        return rc;
    *customer = stoa_db_rows(res) ? stoa_db_value(res, 0, 0) : id;
    return STOA_OK;
}

/* A key for Stripe POSTs made on behalf of a request: the client's own
 * Idempotency-Key when it sent one (a replay to Stripe then returns the
 * same object), else a fresh one. */
static char *stripe_key(stoa_request_t *req, const char *what)
{
    if (req->idempotency_key)
        return stoa_arena_sprintf(req->arena, "stoa-%s-%s-%s", what,
                                  req->principal.user_id, req->idempotency_key);
    return stoa_arena_sprintf(req->arena, "stoa-%s-%s", what,
                              stoa_random_token(req->arena, 16));
}

int billing_checkout(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"price_id", "success_url",
                                          "cancel_url", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *price_id =
        stoa_field_string(req, body, "price_id", STOA_FIELD_REQUIRED, 1, 64);
    const char *success =
        stoa_field_string(req, body, "success_url", STOA_FIELD_REQUIRED, 1, 2048);
    const char *cancel =
        stoa_field_string(req, body, "cancel_url", STOA_FIELD_REQUIRED, 1, 2048);
    if (price_id && !stoa_uuid_valid(price_id))
        stoa_request_field_error(req, "price_id", "invalid");
    if (success && !billing_url_allowed(req, success))
        stoa_request_field_error(req, "success_url", "not_allowed");
    if (cancel && !billing_url_allowed(req, cancel))
        stoa_request_field_error(req, "cancel_url", "not_allowed");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {price_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(db, req->arena, "price_for_checkout", p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0 || stoa_db_value(res, 0, 1)[0] != 't') {
        stoa_request_field_error(req, "price_id", "unknown_or_inactive");
        return stoa_http_invalid_fields(req);
    }
    const char *stripe_price = stoa_db_value(res, 0, 0);
    if (!stripe_price)
        return stoa_http_fail(req, STOA_ERR_PRICE_NOT_SYNCED,
                              "this price has not been pushed to Stripe yet");
    const char *p2[] = {req->principal.user_id};
    if ((rc = stoa_db_exec(db, req->arena, "live_subscription_of_user", p2,
                           &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) > 0)
        return stoa_http_fail(req, STOA_ERR_ALREADY_SUBSCRIBED,
                              "you already have a subscription; use the "
                              "billing portal to change it");
    const char *customer = NULL;
    if ((rc = ensure_customer(req, &customer)) != STOA_OK)
        return rc;
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "mode", "subscription");
    stoa_stripe_form(&form, "customer", customer);
    stoa_stripe_form(&form, "line_items[0][price]", stripe_price);
    stoa_stripe_form(&form, "line_items[0][quantity]", "1");
    stoa_stripe_form(&form, "success_url", success);
    stoa_stripe_form(&form, "cancel_url", cancel);
    stoa_stripe_form(&form, "client_reference_id", req->principal.user_id);
    stoa_stripe_form(&form, "metadata[user_id]", req->principal.user_id);
    stoa_stripe_form(&form, "subscription_data[metadata][user_id]",
                     req->principal.user_id);
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    rc = stoa_stripe_call(billing_state(req)->stripe, req->arena, "POST",
                          "/v1/checkout/sessions", form.data,
                          stripe_key(req, "checkout"), &obj, &err);
    stoa_buf_free(&form);
    if (rc != STOA_OK)
        return billing_stripe_failed(req, rc, &err);
    const char *url = stoa_json_string(stoa_json_get(obj, "url"));
    const char *id = stoa_json_string(stoa_json_get(obj, "id"));
    if (!url || !id)
        return STOA_ERROR;
    stoa_jw_t *w = stoa_http_json(req, 201);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "url", url);
    stoa_jw_kv_string(w, "session_id", id);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int billing_portal(stoa_request_t *req)
{
    const char *p1[] = {req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "customer_of_user", p1,
                          &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NO_CUSTOMER,
                              "there is no billing account yet: subscribe "
                              "first");
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "customer", stoa_db_value(res, 0, 0));
    stoa_stripe_form(&form, "return_url", req->ctx->conf.public_url);
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    rc = stoa_stripe_call(billing_state(req)->stripe, req->arena, "POST",
                          "/v1/billing_portal/sessions", form.data,
                          stripe_key(req, "portal"), &obj, &err);
    stoa_buf_free(&form);
    if (rc != STOA_OK)
        return billing_stripe_failed(req, rc, &err);
    const char *url = stoa_json_string(stoa_json_get(obj, "url"));
    if (!url)
        return STOA_ERROR;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "url", url);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

static void write_subscription(stoa_jw_t *w, const stoa_db_result_t *res)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status", stoa_db_value(res, 0, 1));
    stoa_jw_key(w, "plan");
    if (stoa_db_value(res, 0, 2)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "key", stoa_db_value(res, 0, 2));
        stoa_jw_kv_string(w, "name", stoa_db_value(res, 0, 3));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_key(w, "price");
    if (stoa_db_value(res, 0, 4)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", stoa_db_value(res, 0, 4));
        stoa_jw_kv_integer(w, "amount", atoll(stoa_db_value(res, 0, 5)));
        stoa_jw_kv_string(w, "currency", stoa_db_value(res, 0, 6));
        stoa_jw_kv_string(w, "interval", stoa_db_value(res, 0, 7));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_kv_string(w, "current_period_end", stoa_db_value(res, 0, 8));
    stoa_jw_kv_bool(w, "cancel_at_period_end",
                    stoa_db_value(res, 0, 9)[0] == 't');
    stoa_jw_kv_string(w, "trial_end", stoa_db_value(res, 0, 10));
    stoa_jw_object_close(w);
}

static int load_subscription(stoa_request_t *req, stoa_db_result_t **res)
{
    const char *p1[] = {req->principal.user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "subscription_of_user", p1,
                          res);
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
    write_subscription(w, res);
    return stoa_http_send(req);
}

int billing_subscription_cancel(stoa_request_t *req)
{
    stoa_db_result_t *res;
    int rc = load_subscription(req, &res);
    if (rc != STOA_OK)
        return rc;
    const char *status = stoa_db_value(res, 0, 1);
    if (strcmp(status, "trialing") != 0 && strcmp(status, "active") != 0 &&
        strcmp(status, "past_due") != 0)
        return stoa_http_fail(req, STOA_ERR_NOT_CANCELABLE,
                              "the subscription is not active");
    const char *sub = stoa_db_value(res, 0, 0);
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
    stoa_db_t *db = stoa_request_db(req);
    const char *p1[] = {sub};
    char *details = stoa_arena_sprintf(req->arena, "{\"subscription\":\"%s\"}",
                                       sub);
    if ((rc = stoa_db_begin(db)) != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, "subscription_set_cancel", p1,
                           NULL)) != STOA_OK ||
        (rc = stoa_request_audit(req, NULL, "subscription.cancel_requested", NULL,
                         details)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    if ((rc = load_subscription(req, &res)) != STOA_OK)
        return rc;
    stoa_jw_t *w = stoa_http_json(req, 200);
    write_subscription(w, res);
    return stoa_http_send(req);
}

int billing_invoices(stoa_request_t *req)
{
    int limit;
    const char *ts, *id;
    stoa_request_limit(req, &limit);
    stoa_request_cursor(req, &ts, &id);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    char fetch[16];
    snprintf(fetch, sizeof(fetch), "%d", limit + 1);
    const char *params[] = {req->principal.user_id, ts, id, fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "invoices_of_user", params,
                          &res);
    if (rc != STOA_OK)
        return rc;
    int rows = stoa_db_rows(res), shown = rows > limit ? limit : rows;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < shown; i++) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", stoa_db_value(res, i, 0));
        stoa_jw_kv_string(w, "number", stoa_db_value(res, i, 1));
        stoa_jw_kv_integer(w, "amount_due", atoll(stoa_db_value(res, i, 2)));
        stoa_jw_kv_integer(w, "amount_paid", atoll(stoa_db_value(res, i, 3)));
        stoa_jw_kv_integer(w, "amount_refunded",
                           atoll(stoa_db_value(res, i, 10)));
        stoa_jw_kv_string(w, "currency", stoa_db_value(res, i, 4));
        stoa_jw_kv_string(w, "status", stoa_db_value(res, i, 5));
        stoa_jw_kv_string(w, "created", stoa_db_value(res, i, 6));
        stoa_jw_kv_string(w, "hosted_invoice_url", stoa_db_value(res, i, 7));
        stoa_jw_kv_string(w, "invoice_pdf", stoa_db_value(res, i, 8));
        stoa_jw_object_close(w);
    }
    return stoa_http_page_end(req, res, rows, limit, 9, 0);
}

int billing_entitlements(stoa_request_t *req)
{
    const char *user_id = req->principal.user_id;
    char *key = stoa_key_entitlements(req->arena, user_id);
    char *cached;
    size_t len;
    if (stoa_kv_get(stoa_request_kv(req), req->arena, key, &cached, &len) == STOA_OK)
        return stoa_http_raw_json(req, 200, cached, len);
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "entitlements_of_user", p1,
                          &res);
    if (rc != STOA_OK)
        return rc;
    const char *plan = NULL, *status = "none", *features = "{}";
    if (stoa_db_rows(res) == 1) {
        plan = stoa_db_value(res, 0, 0);
        status = stoa_db_value(res, 0, 1);
        features = stoa_db_value(res, 0, 2);
    } else {
        /* Not entitled by a subscription: the free plan's features. */
        if ((rc = stoa_db_exec(stoa_request_db(req), req->arena, "free_plan", NULL,
                               &res)) != STOA_OK)
            return rc;
        if (stoa_db_rows(res) == 1) {
            plan = stoa_db_value(res, 0, 0);
            features = stoa_db_value(res, 0, 1);
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
        stoa_kv_set(stoa_request_kv(req), key, req->body_out.data, req->body_out.len,
                    ENTITLEMENTS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "entitlements not cached");
    return rc;
}
