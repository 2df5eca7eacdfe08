/* checkout.c - POST /v1/billing/checkout: a Stripe Checkout session for a
 * price, the customer made on first use. */

#include "billing.h"
#include "stoa/crypto.h"

/* The caller's Stripe customer, created on first need. The Stripe
 * idempotency key is per user, so two racing requests get one customer. */
static int ensure_customer(stoa_request_t *req, const char **customer)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *user_id = req->principal.user_id;
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc =
        stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_OF_USER), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 1) {
        *customer = stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID);
        return STOA_OK;
    }
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(USER_CONTACT), p1,
                           &res)) != STOA_OK)
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
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_INSERT), p2,
                           NULL)) != STOA_OK)
        return rc;
    /* Whoever won a race, the stored link is the truth. */
    if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(CUSTOMER_OF_USER), p1,
                           &res)) != STOA_OK)
        return rc;
    *customer = stoa_db_rows(res)
                    ? stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID)
                    : id;
    return STOA_OK;
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
    const char *success = stoa_field_string(req, body, "success_url",
                                            STOA_FIELD_REQUIRED, 1, 2048);
    const char *cancel = stoa_field_string(req, body, "cancel_url",
                                           STOA_FIELD_REQUIRED, 1, 2048);
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
    int rc =
        stoa_db_exec(db, req->arena, BILLING_SQL(PRICE_FOR_CHECKOUT), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0 ||
        stoa_db_value(res, 0, CHECKOUT_COL_BUYABLE)[0] != 't') {
        stoa_request_field_error(req, "price_id", "unknown_or_inactive");
        return stoa_http_invalid_fields(req);
    }
    const char *stripe_price =
        stoa_db_value(res, 0, CHECKOUT_COL_STRIPE_PRICE_ID);
    if (!stripe_price)
        return stoa_http_fail(req, STOA_ERR_PRICE_NOT_SYNCED,
                              "this price has not been pushed to Stripe yet");
    const char *p2[] = {req->principal.user_id};
    if ((rc = stoa_db_exec(db, req->arena,
                           BILLING_SQL(LIVE_SUBSCRIPTION_OF_USER), p2, &res)) !=
        STOA_OK)
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
                          billing_stripe_key(req, "checkout"), &obj, &err);
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
