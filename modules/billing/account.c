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
    int rc = stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_OF_USER), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 1) {
        *customer = stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID);
        return STOA_OK;
    }
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(USER_CONTACT), p1, &res)) !=
        STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "email", stoa_db_value(res, 0, CONTACT_COL_EMAIL));
    stoa_stripe_form(&form, "name", stoa_db_value(res, 0, CONTACT_COL_NAME));
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
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_INSERT), p2, NULL)) !=
        STOA_OK)
        return rc;
    /* Whoever won a race, the stored link is the truth. */
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_OF_USER), p1, &res)) !=
        STOA_OK)
        return rc;
    *customer = stoa_db_rows(res)
                    ? stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID)
                    : id;
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
    int rc = stoa_db_exec(db, req->arena, BILLING_SQL(PRICE_FOR_CHECKOUT), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0 || stoa_db_value(res, 0, CHECKOUT_COL_BUYABLE)[0] != 't') {
        stoa_request_field_error(req, "price_id", "unknown_or_inactive");
        return stoa_http_invalid_fields(req);
    }
    const char *stripe_price = stoa_db_value(res, 0, CHECKOUT_COL_STRIPE_PRICE_ID);
    if (!stripe_price)
        return stoa_http_fail(req, STOA_ERR_PRICE_NOT_SYNCED,
                              "this price has not been pushed to Stripe yet");
    const char *p2[] = {req->principal.user_id};
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(LIVE_SUBSCRIPTION_OF_USER), p2,
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
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, BILLING_SQL(CUSTOMER_OF_USER), p1,
                          &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NO_CUSTOMER,
                              "there is no billing account yet: subscribe "
                              "first");
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "customer", stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID));
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

void billing_write_subscription(stoa_jw_t *w, const stoa_db_result_t *res)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "status", stoa_db_value(res, 0, SUBSCRIPTION_COL_STATUS));
    stoa_jw_key(w, "plan");
    if (stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_KEY)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "key", stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_KEY));
        stoa_jw_kv_string(w, "name", stoa_db_value(res, 0, SUBSCRIPTION_COL_PLAN_NAME));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_key(w, "price");
    if (stoa_db_value(res, 0, SUBSCRIPTION_COL_PRICE_ID)) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", stoa_db_value(res, 0, SUBSCRIPTION_COL_PRICE_ID));
        stoa_jw_kv_integer(w, "amount", atoll(stoa_db_value(res, 0, SUBSCRIPTION_COL_AMOUNT)));
        stoa_jw_kv_string(w, "currency", stoa_db_value(res, 0, SUBSCRIPTION_COL_CURRENCY));
        stoa_jw_kv_string(w, "interval", stoa_db_value(res, 0, SUBSCRIPTION_COL_INTERVAL));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_kv_string(w, "current_period_end", stoa_db_value(res, 0, SUBSCRIPTION_COL_CURRENT_PERIOD_END));
    stoa_jw_kv_bool(w, "cancel_at_period_end",
                    stoa_db_value(res, 0, SUBSCRIPTION_COL_CANCEL_AT_PERIOD_END)[0] == 't');
    stoa_jw_kv_string(w, "trial_end", stoa_db_value(res, 0, SUBSCRIPTION_COL_TRIAL_END));
    stoa_jw_object_close(w);
}

static int load_subscription(stoa_request_t *req, stoa_db_result_t **res)
{
    const char *p1[] = {req->principal.user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, BILLING_SQL(SUBSCRIPTION_OF_USER), p1,
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

const stoa_column_t billing_invoice_columns[] = {
    {"id", INVOICE_COL_ID, STOA_COLUMN_TEXT},
    {"number", INVOICE_COL_NUMBER, STOA_COLUMN_TEXT},
    {"amount_due", INVOICE_COL_AMOUNT_DUE, STOA_COLUMN_INTEGER},
    {"amount_paid", INVOICE_COL_AMOUNT_PAID, STOA_COLUMN_INTEGER},
    {"amount_refunded", INVOICE_COL_AMOUNT_REFUNDED, STOA_COLUMN_INTEGER},
    {"currency", INVOICE_COL_CURRENCY, STOA_COLUMN_TEXT},
    {"status", INVOICE_COL_STATUS, STOA_COLUMN_TEXT},
    {"created", INVOICE_COL_CREATED, STOA_COLUMN_TEXT},
    {"hosted_invoice_url", INVOICE_COL_HOSTED_INVOICE_URL, STOA_COLUMN_TEXT},
    {"invoice_pdf", INVOICE_COL_INVOICE_PDF, STOA_COLUMN_TEXT},
};

int billing_invoices(stoa_request_t *req)
{
    stoa_page_t page;
    if (!stoa_request_page(req, STOA_PAGE_KEYSET, &page))
        return stoa_http_invalid_fields(req);
    const char *params[] = {req->principal.user_id, page.cursor_ts,
                            page.cursor_id, page.fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, BILLING_SQL(INVOICES_OF_USER), params,
                          &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_list_t list = {billing_invoice_columns,
                                     BILLING_INVOICE_NCOLUMNS, NULL,
                                     INVOICE_COL_CURSOR_US, INVOICE_COL_ID};
    return stoa_http_list(req, res, &page, &list);
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
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, BILLING_SQL(ENTITLEMENTS_OF_USER), p1,
                          &res);
    if (rc != STOA_OK)
        return rc;
    const char *plan = NULL, *status = "none", *features = "{}";
    if (stoa_db_rows(res) == 1) {
        plan = stoa_db_value(res, 0, ENTITLEMENT_COL_PLAN_KEY);
        status = stoa_db_value(res, 0, ENTITLEMENT_COL_STATUS);
        features = stoa_db_value(res, 0, ENTITLEMENT_COL_FEATURES);
    } else {
        /* Not entitled by a subscription: the free plan's features. */
        if ((rc = stoa_db_exec(stoa_request_db(req), req->arena, BILLING_SQL(FREE_PLAN), NULL,
                               &res)) != STOA_OK)
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
        stoa_kv_set(stoa_request_kv(req), key, req->body_out.data, req->body_out.len,
                    ENTITLEMENTS_CACHE_TTL_S) != STOA_OK)
        stoa_log(STOA_LOG_DEBUG, "entitlements not cached");
    return rc;
}
