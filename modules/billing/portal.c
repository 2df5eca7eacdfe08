/* portal.c - POST /v1/billing/portal: a Stripe billing-portal session. */

#include "billing.h"

int billing_portal(stoa_request_t *req)
{
    const char *p1[] = {req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(CUSTOMER_OF_USER), p1, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NO_CUSTOMER,
                              "there is no billing account yet: subscribe "
                              "first");
    stoa_buf_t form;
    stoa_buf_init(&form);
    stoa_stripe_form(&form, "customer",
                     stoa_db_value(res, 0, CUSTOMER_COL_STRIPE_CUSTOMER_ID));
    stoa_stripe_form(&form, "return_url", req->ctx->conf.public_url);
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    rc = stoa_stripe_call(billing_state(req)->stripe, req->arena, "POST",
                          "/v1/billing_portal/sessions", form.data,
                          billing_stripe_key(req, "portal"), &obj, &err);
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
