/* util.c - helpers shared by the billing handlers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

billing_state_t *billing_state(stoa_request_t *req)
{
    return req->ctx->data;
}

/* The generation counters of the entitlements cache (stoa/cache_keys.h)
 * outlive every value stored under them. */
#define ENTITLEMENTS_GEN_TTL_S 86400

/* Counts a generation of the entitlements cache up: what was cached under
 * the one before is no longer served. */
static void entitlements_renew(stoa_request_t *req, const char *gen_key)
{
    long long gen;
    if (stoa_kv_incr(stoa_request_kv(req), gen_key, ENTITLEMENTS_GEN_TTL_S,
                     &gen) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "entitlements cache not renewed; it expires "
                                "soon");
}

void billing_forget_plans(stoa_request_t *req)
{
    if (stoa_kv_del(stoa_request_kv(req), STOA_KEY_PLANS) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "plans cache not dropped; it expires soon");
    /* What a plan grants may have changed for everyone on it. */
    entitlements_renew(req, STOA_KEY_CATALOGUE_GEN);
}

void billing_forget_entitlements(stoa_request_t *req, const char *user_id)
{
    if (user_id)
        entitlements_renew(req, stoa_key_entitlements_gen(req->arena, user_id));
}

int billing_stripe_failed(stoa_request_t *req, int rc,
                          const stoa_stripe_error_t *err)
{
    /* err->code comes from Stripe's JSON: keep only safe characters. */
    char *code = stoa_arena_strdup(req->arena, err->code);
    for (char *p = code; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_' ||
              (*p >= '0' && *p <= '9')))
            *p = '_';
    stoa_jw_t *d = stoa_jw_arena(req->arena);
    stoa_jw_object_open(d);
    stoa_jw_kv_integer(d, "provider_status", err->http_status);
    stoa_jw_kv_string(d, "provider_code", code);
    stoa_jw_object_close(d);
    char *details = stoa_jw_arena_text(req->arena, d);
    stoa_log(STOA_LOG_WARN, "stripe refused or failed: %s", err->message);
    if (rc == STOA_AGAIN)
        return stoa_http_fail_details(req,
                                      STOA_ERR_PAYMENT_PROVIDER_UNAVAILABLE,
                                      "the payment provider cannot be reached; "
                                      "retry later",
                                      details);
    return stoa_http_fail_details(req, STOA_ERR_PAYMENT_PROVIDER_ERROR,
                                  err->message[0] ? err->message
                                                  : "the payment provider "
                                                    "refused the request",
                                  details);
}

static bool has_prefix_origin(const char *url, const char *origin, size_t n)
{
    /* Same origin: the prefix, then the end or a path/query boundary. */
    if (n == 0 || strncmp(url, origin, n) != 0)
        return false;
    char next = url[n];
    return next == '\0' || next == '/' || next == '?' || next == '#';
}

bool billing_url_allowed(stoa_request_t *req, const char *url)
{
    if (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)
        return false;
    if (strpbrk(url, " \r\n\t\\"))
        return false;
    const stoa_conf_t *conf = &req->ctx->conf;
    size_t n = strlen(conf->public_url);
    while (n && conf->public_url[n - 1] == '/')
        n--;
    if (has_prefix_origin(url, conf->public_url, n))
        return true;
    for (const char *p = conf->cors_origins; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t len = strcspn(p, ", ");
        if (len && has_prefix_origin(url, p, len))
            return true;
        p += len;
    }
    return false;
}

void billing_write_plan(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                        bool admin)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", stoa_db_value(res, row, PLAN_COL_ID));
    stoa_jw_kv_string(w, "key", stoa_db_value(res, row, PLAN_COL_KEY));
    stoa_jw_kv_string(w, "name", stoa_db_value(res, row, PLAN_COL_NAME));
    stoa_jw_kv_string(w, "description",
                      stoa_db_value(res, row, PLAN_COL_DESCRIPTION));
    stoa_jw_key(w, "features");
    const char *features = stoa_db_value(res, row, PLAN_COL_FEATURES);
    stoa_jw_raw(w, features, strlen(features));
    if (admin) {
        stoa_jw_kv_bool(w, "active",
                        stoa_db_value(res, row, PLAN_COL_ACTIVE)[0] == 't');
        stoa_jw_kv_string(w, "stripe_product_id",
                          stoa_db_value(res, row, PLAN_COL_STRIPE_PRODUCT_ID));
    }
    stoa_jw_key(w, "prices");
    const char *prices = stoa_db_value(res, row, PLAN_COL_PRICES);
    if (admin) {
        stoa_jw_raw(w, prices, strlen(prices));
    } else {
        /* The public view shows what a buyer needs, not provider ids. */
        stoa_arena_t *scratch = stoa_arena_create(0);
        stoa_json_t *list;
        char err[64];
        stoa_jw_array_open(w);
        if (stoa_json_parse(scratch, prices, strlen(prices), 8, &list, err,
                            sizeof(err)) == STOA_OK)
            for (size_t i = 0; i < stoa_json_len(list); i++) {
                const stoa_json_t *p = stoa_json_at(list, i);
                stoa_jw_object_open(w);
                static const char *const keys[] = {"id", "amount", "currency",
                                                   "interval", NULL};
                for (const char *const *k = keys; *k; k++) {
                    stoa_jw_key(w, *k);
                    stoa_jw_value(w, stoa_json_get(p, *k));
                }
                stoa_jw_object_close(w);
            }
        stoa_jw_array_close(w);
        stoa_arena_destroy(scratch);
    }
    stoa_jw_object_close(w);
}

bool billing_plan_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > 64 ||
        !((key[0] >= 'a' && key[0] <= 'z') || (key[0] >= '0' && key[0] <= '9')))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

const char *const billing_subscription_statuses[] = {
    "trialing",           "active", "past_due",
    "canceled",           "unpaid", "incomplete",
    "incomplete_expired", "paused", NULL};

bool billing_subscription_status_valid(const char *status)
{
    for (const char *const *s = billing_subscription_statuses; *s; s++)
        if (strcmp(*s, status) == 0)
            return true;
    return false;
}

/* A key for Stripe POSTs made on behalf of a request: the client's own
 * Idempotency-Key when it sent one (a replay to Stripe then returns the
 * same object), else a fresh one. */
char *billing_stripe_key(stoa_request_t *req, const char *what)
{
    if (req->idempotency_key)
        return stoa_arena_sprintf(req->arena, "stoa-%s-%s-%s", what,
                                  req->principal.user_id, req->idempotency_key);
    return stoa_arena_sprintf(req->arena, "stoa-%s-%s", what,
                              stoa_random_token(req->arena, 16));
}
