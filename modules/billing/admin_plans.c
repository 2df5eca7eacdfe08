/* admin_plans.c - /v1/admin/plans...: plans and prices for admins,
 * including the push to Stripe (sync). */
#include <ctype.h>
#include <string.h>

#include "billing.h"
#include "stoa/crypto.h"

/* features: an object of at most 50 members, each a boolean, an integer or
 * a short string. Returns its JSON text (arena) or NULL. */
static char *features_json(stoa_request_t *req, const stoa_json_t *v)
{
    if (!stoa_json_is_object(v) || stoa_json_len(v) > 50) {
        stoa_request_field_error(req, "features", "must_be_object");
        return NULL;
    }
    for (size_t i = 0; i < stoa_json_len(v); i++) {
        const stoa_json_t *f = stoa_json_at(v, i);
        const char *s = stoa_json_string(f);
        size_t klen = strlen(stoa_json_key_at(v, i));
        if (klen == 0 || klen > 64 ||
            !(stoa_json_is_bool(f) || stoa_json_is_integer(f) ||
              (s && strlen(s) <= 200))) {
            stoa_request_field_error(req, "features", "invalid_value");
            return NULL;
        }
    }
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_jw_t *w = stoa_jw_new(&out);
    stoa_jw_value(w, v);
    bool ok = stoa_jw_ok(w);
    stoa_jw_free(w);
    char *json = ok ? stoa_arena_strndup(req->arena, out.data, out.len) : NULL;
    stoa_buf_free(&out);
    if (!json)
        stoa_request_field_error(req, "features", "invalid_value");
    return json;
}

typedef struct {
    const char *name, *description, *features, *active, *sort_order;
} plan_fields_t;

static void read_plan_fields(stoa_request_t *req, const stoa_json_t *body,
                             unsigned name_flags, plan_fields_t *f)
{
    f->name = stoa_field_string(req, body, "name", name_flags, 1, 200);
    f->description = stoa_field_string(req, body, "description",
                                       STOA_FIELD_OPTIONAL, 0, 2000);
    const stoa_json_t *features = stoa_json_get(body, "features");
    f->features = features ? features_json(req, features) : NULL;
    bool active;
    f->active = NULL;
    if (stoa_field_bool(req, body, "active", STOA_FIELD_OPTIONAL, &active))
        f->active = active ? "true" : "false";
    int64_t order;
    f->sort_order = NULL;
    if (stoa_field_integer(req, body, "sort_order", STOA_FIELD_OPTIONAL,
                           -1000000, 1000000, &order))
        f->sort_order =
            stoa_arena_sprintf(req->arena, "%lld", (long long)order);
}

/* Answers the plan (admin view) after a change. */
static int answer_plan(stoa_request_t *req, const char *id, int status)
{
    const char *params[] = {"true", id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          BILLING_SQL(PLAN_BY_ID), params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    stoa_jw_t *w = stoa_http_json(req, status);
    billing_write_plan(w, res, 0, true);
    return stoa_http_send(req);
}

int billing_admin_plan_create(stoa_request_t *req)
{
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {
        "key", "name", "description", "features", "active", "sort_order", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *key =
        stoa_field_string(req, body, "key", STOA_FIELD_REQUIRED, 1, 64);
    if (key && !billing_plan_key_valid(key))
        stoa_request_field_error(req, "key", "invalid");
    plan_fields_t f;
    read_plan_fields(req, body, STOA_FIELD_REQUIRED, &f);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    const char *params[] = {key,        f.name,   f.description,
                            f.features, f.active, f.sort_order};
    stoa_db_result_t *res;
    int rc = stoa_request_begin(req, BILLING_SQL(PLAN_INSERT), params, &res);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_PLAN_EXISTS,
                              "a plan with this key exists");
    if (rc != STOA_OK)
        return rc;
    const char *id = stoa_db_value(res, 0, RETURNED_COL_ID);
    char *details = stoa_json_pair(req->arena, "plan_key", key);
    if ((rc = stoa_request_commit(req, "plan.created", NULL, details)) !=
        STOA_OK)
        return rc;
    billing_forget_plans(req);
    return answer_plan(req, id, 201);
}

int billing_admin_plan_update(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"name",   "description", "features",
                                          "active", "sort_order",  NULL};
    stoa_field_reject_unknown(req, body, allowed);
    plan_fields_t f;
    read_plan_fields(req, body, STOA_FIELD_OPTIONAL, &f);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    const char *params[] = {id,         f.name,   f.description,
                            f.features, f.active, f.sort_order};
    int rc = stoa_request_begin(req, BILLING_SQL(PLAN_UPDATE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    char *details = stoa_json_pair(req->arena, "plan_id", id);
    if (rc != STOA_OK || (rc = stoa_request_commit(req, "plan.updated", NULL,
                                                   details)) != STOA_OK)
        return rc;
    billing_forget_plans(req);
    return answer_plan(req, id, 200);
}

int billing_admin_price_create(stoa_request_t *req)
{
    const char *plan_id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(plan_id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"amount", "currency", "interval",
                                          NULL};
    stoa_field_reject_unknown(req, body, allowed);
    int64_t amount = 0;
    stoa_field_integer(req, body, "amount", STOA_FIELD_REQUIRED, 0,
                       99999999999LL, &amount);
    const char *currency =
        stoa_field_string(req, body, "currency", STOA_FIELD_REQUIRED, 3, 3);
    char cur[4] = "";
    if (currency) {
        for (int i = 0; i < 3; i++)
            cur[i] = (char)tolower((unsigned char)currency[i]);
        cur[3] = '\0';
        if (!islower((unsigned char)cur[0]) ||
            !islower((unsigned char)cur[1]) || !islower((unsigned char)cur[2]))
            stoa_request_field_error(req, "currency", "invalid");
    }
    const char *interval =
        stoa_field_string(req, body, "interval", STOA_FIELD_REQUIRED, 1, 10);
    if (interval && strcmp(interval, "month") != 0 &&
        strcmp(interval, "year") != 0)
        stoa_request_field_error(req, "interval", "must_be_month_or_year");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    char amount_s[24];
    snprintf(amount_s, sizeof(amount_s), "%lld", (long long)amount);
    const char *params[] = {plan_id, amount_s, cur, interval};
    stoa_db_result_t *res;
    int rc = stoa_request_begin(req, BILLING_SQL(PRICE_INSERT), params, &res);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    if (rc != STOA_OK)
        return rc;
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_kv_string(d, "plan_id", plan_id);
    stoa_jw_kv_string(d, "price_id", stoa_db_value(res, 0, RETURNED_COL_ID));
    stoa_jw_object_close(d);
    if ((rc = stoa_request_commit(req, "price.created", NULL,
                                  stoa_jw_arena_text(req->arena, d))) !=
        STOA_OK)
        return rc;
    billing_forget_plans(req);
    return answer_plan(req, plan_id, 201);
}

/* Stripe metadata values are strings: the features object travels as one
 * JSON string, the form the product.* webhook reads back. */
static void product_form(stoa_buf_t *form, const stoa_db_result_t *plan)
{
    stoa_stripe_form(form, "name", stoa_db_value(plan, 0, SYNC_PLAN_COL_NAME));
    const char *description = stoa_db_value(plan, 0, SYNC_PLAN_COL_DESCRIPTION);
    if (description && *description)
        stoa_stripe_form(form, "description", description);
    stoa_stripe_form(form, "active",
                     stoa_db_value(plan, 0, SYNC_PLAN_COL_ACTIVE)[0] == 't'
                         ? "true"
                         : "false");
    stoa_stripe_form(form, "metadata[plan_key]",
                     stoa_db_value(plan, 0, SYNC_PLAN_COL_KEY));
    stoa_stripe_form(form, "metadata[features]",
                     stoa_db_value(plan, 0, SYNC_PLAN_COL_FEATURES));
}

int billing_admin_plan_sync(stoa_request_t *req)
{
    const char *plan_id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(plan_id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    stoa_db_t *db = stoa_request_db(req);
    stoa_stripe_t *stripe = billing_state(req)->stripe;
    const char *p1[] = {plan_id};
    stoa_db_result_t *plan, *prices;
    /* The row lock serialises two syncs of one plan: each Stripe object
     * is created once. */
    int rc = stoa_request_begin(req, BILLING_SQL(PLAN_FOR_SYNC), p1, &plan);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such plan");
    if (rc != STOA_OK ||
        (rc = stoa_db_exec(db, req->arena, BILLING_SQL(PRICES_FOR_SYNC), p1,
                           &prices)) != STOA_OK)
        return rc;
    const char *product =
        stoa_db_value(plan, 0, SYNC_PLAN_COL_STRIPE_PRODUCT_ID);
    stoa_buf_t form;
    stoa_buf_init(&form);
    product_form(&form, plan);
    const stoa_json_t *obj;
    stoa_stripe_error_t err;
    /* The key covers the content: an unchanged plan re-synced replays
     * Stripe's stored answer instead of creating anything. */
    uint8_t digest[STOA_SHA256_LEN];
    char hex[2 * STOA_SHA256_LEN + 1];
    stoa_sha256(form.data, form.len, digest);
    stoa_hex_encode(digest, 16, hex);
    /* Create and update are different requests: different keys. */
    char *key =
        product ? stoa_arena_sprintf(req->arena, "stoa-product-update-%s-%s",
                                     product, hex)
                : stoa_arena_sprintf(req->arena, "stoa-product-create-%s-%s",
                                     plan_id, hex);
    char *path =
        product ? stoa_arena_sprintf(req->arena, "/v1/products/%s", product)
                : "/v1/products";
    rc = stoa_stripe_call(stripe, req->arena, "POST", path, form.data, key,
                          &obj, &err);
    stoa_buf_free(&form);
    if (rc != STOA_OK) {
        stoa_db_rollback(db);
        return billing_stripe_failed(req, rc, &err);
    }
    const char *product_id = stoa_json_string(stoa_json_get(obj, "id"));
    if (!product_id) {
        stoa_db_rollback(db);
        return STOA_ERROR;
    }
    if (!product) {
        const char *p2[] = {plan_id, product_id};
        if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(PLAN_SET_PRODUCT),
                               p2, NULL)) != STOA_OK)
            return rc;
    }
    int created = 0;
    for (int i = 0; i < stoa_db_rows(prices); i++) {
        if (stoa_db_value(prices, i, SYNC_PRICE_COL_STRIPE_PRICE_ID))
            continue; /* Stripe prices are immutable: made once */
        const char *price_id = stoa_db_value(prices, i, SYNC_PRICE_COL_ID);
        stoa_buf_init(&form);
        stoa_stripe_form(&form, "product", product_id);
        stoa_stripe_form(&form, "unit_amount",
                         stoa_db_value(prices, i, SYNC_PRICE_COL_AMOUNT));
        stoa_stripe_form(&form, "currency",
                         stoa_db_value(prices, i, SYNC_PRICE_COL_CURRENCY));
        stoa_stripe_form(&form, "recurring[interval]",
                         stoa_db_value(prices, i, SYNC_PRICE_COL_INTERVAL));
        stoa_stripe_form(&form, "active",
                         stoa_db_value(prices, i, SYNC_PRICE_COL_ACTIVE)[0] ==
                                 't'
                             ? "true"
                             : "false");
        stoa_stripe_form(&form, "metadata[stoa_price_id]", price_id);
        char *pkey = stoa_arena_sprintf(req->arena, "stoa-price-%s", price_id);
        rc = stoa_stripe_call(stripe, req->arena, "POST", "/v1/prices",
                              form.data, pkey, &obj, &err);
        stoa_buf_free(&form);
        if (rc != STOA_OK) {
            /* What was created so far is recorded: a retry reuses it
             * through the same idempotency keys. */
            if (stoa_db_commit(db) != STOA_OK)
                stoa_db_rollback(db);
            return billing_stripe_failed(req, rc, &err);
        }
        const char *stripe_price = stoa_json_string(stoa_json_get(obj, "id"));
        if (!stripe_price)
            return STOA_ERROR;
        const char *p3[] = {price_id, stripe_price};
        if ((rc = stoa_db_exec(db, req->arena, BILLING_SQL(PRICE_SET_STRIPE),
                               p3, NULL)) != STOA_OK)
            return rc;
        created++;
    }
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_kv_string(d, "plan_id", plan_id);
    stoa_jw_kv_integer(d, "prices_created", created);
    stoa_jw_object_close(d);
    if ((rc = stoa_request_commit(req, "plan.synced", NULL,
                                  stoa_jw_arena_text(req->arena, d))) !=
        STOA_OK)
        return rc;
    billing_forget_plans(req);
    return answer_plan(req, plan_id, 200);
}
