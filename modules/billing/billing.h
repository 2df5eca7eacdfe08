/* billing.h - shared state and helpers of the billing pool. */
#ifndef BILLING_H
#define BILLING_H

#include "stoa/app.h"
#include "stoa/cache_keys.h"
#include "stoa/stripe.h"

typedef struct {
    stoa_stripe_t *stripe;
} billing_state_t;

billing_state_t *billing_state(stoa_request_t *req);

void billing_forget_plans(stoa_request_t *req);
void billing_forget_entitlements(stoa_request_t *req, const char *user_id);
/* The user's entitlements as GET /v1/billing/entitlements answers them,
 * read on the request's connection (inside its transaction, if open):
 * *json arena-owned. STOA_OK or the failure. */
STOA_MUSTCHECK int billing_entitlements_of(stoa_request_t *req,
                                           const char *user_id,
                                           const char **json);

/* Answers 502 payment_provider_error (or 503 when Stripe is unreachable)
 * from a failed Stripe call. */
int billing_stripe_failed(stoa_request_t *req, int rc,
                          const stoa_stripe_error_t *err);

/* A redirect URL the caller may send users to: under public_url or one of
 * cors_origins. */
bool billing_url_allowed(stoa_request_t *req, const char *url);

/* The user's own view of a subscription (GET /v1/billing/subscription) and
 * of an invoice (GET /v1/billing/invoices), from row 0 of a result with
 * the SUBSCRIPTION_COL_* / INVOICE_COL_* columns (statements.h): the API
 * answers and the domain events about them show the same object. */
void billing_write_subscription(stoa_jw_t *w, const stoa_db_result_t *res);
#define BILLING_INVOICE_NCOLUMNS 10
extern const stoa_column_t billing_invoice_columns[BILLING_INVOICE_NCOLUMNS];
/* A key for Stripe POSTs made on behalf of a request ("checkout",
 * "portal"): the client's own Idempotency-Key when it sent one (a replay to
 * Stripe then returns the same object), else a fresh one; arena-owned. */
char *billing_stripe_key(stoa_request_t *req, const char *what);

/* Writes a plan with its prices from the plan row at `row` (columns of
 * BILLING_PLAN_COLUMNS) and the JSON array text of prices. */
#define BILLING_PLAN_COLUMNS                                                   \
    "p.id, p.key, p.name, p.description, p.features::text, p.active, "        \
    "p.stripe_product_id, coalesce((SELECT json_agg(json_build_object("       \
    "'id', pr.id, 'amount', pr.amount, 'currency', pr.currency, "             \
    "'interval', pr.interval, 'active', pr.active, 'stripe_price_id', "       \
    "pr.stripe_price_id) ORDER BY pr.amount) FROM billing.prices pr WHERE "   \
    "pr.plan_id = p.id AND ($1::bool OR pr.active)), '[]'::json)::text"
/* Its columns. */
enum {
    PLAN_COL_ID,
    PLAN_COL_KEY,
    PLAN_COL_NAME,
    PLAN_COL_DESCRIPTION,
    PLAN_COL_FEATURES,
    PLAN_COL_ACTIVE,
    PLAN_COL_STRIPE_PRODUCT_ID,
    PLAN_COL_PRICES /* a JSON array */
};
void billing_write_plan(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                        bool admin);

/* A plan key as the schema's CHECK has it: [a-z0-9][a-z0-9_-]{0,63}. The
 * admin API and the product.* webhook (metadata.plan_key) share it. */
bool billing_plan_key_valid(const char *key);

/* Stripe's subscription statuses, as the schema's CHECK has them
 * (NULL-terminated): the finance filter and the subscription webhooks. */
extern const char *const billing_subscription_statuses[];
bool billing_subscription_status_valid(const char *status);

/* Handlers. */
int billing_plans(stoa_request_t *req);
int billing_admin_plan_create(stoa_request_t *req);
int billing_admin_plan_update(stoa_request_t *req);
int billing_admin_price_create(stoa_request_t *req);
int billing_admin_plan_sync(stoa_request_t *req);
int billing_checkout(stoa_request_t *req);
int billing_portal(stoa_request_t *req);
int billing_subscription(stoa_request_t *req);
int billing_subscription_cancel(stoa_request_t *req);
int billing_invoices(stoa_request_t *req);
int billing_entitlements(stoa_request_t *req);
int billing_webhook(stoa_request_t *req);
int billing_finance_subscriptions(stoa_request_t *req);
int billing_finance_invoices(stoa_request_t *req);


#include "statements.h"

#endif
