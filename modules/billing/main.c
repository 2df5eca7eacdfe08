/* main.c - the billing pool: routes, statements and start-up. */
#include "billing.h"
#include "stoa/log.h"

#define USER STOA_ROUTE_AUTH
#define PUBLIC STOA_ROUTE_PUBLIC
#define IDEMPOTENT STOA_ROUTE_IDEMPOTENT

static const stoa_route_t billing_routes[] = {
    {"GET", "/v1/billing/plans", billing_plans, PUBLIC, NULL},
    {"POST", "/v1/billing/checkout", billing_checkout, USER | IDEMPOTENT, NULL},
    {"POST", "/v1/billing/portal", billing_portal, USER, NULL},
    {"GET", "/v1/billing/subscription", billing_subscription, USER, NULL},
    {"POST", "/v1/billing/subscription/cancel", billing_subscription_cancel,
     USER, NULL},
    {"GET", "/v1/billing/invoices", billing_invoices, USER, NULL},
    {"GET", "/v1/billing/entitlements", billing_entitlements, USER, NULL},
    {"POST", "/v1/billing/webhooks/stripe", billing_webhook, PUBLIC, NULL},
    {"POST", "/v1/admin/plans", billing_admin_plan_create, USER | IDEMPOTENT,
     "admin"},
    {"PATCH", "/v1/admin/plans/{id}", billing_admin_plan_update, USER, "admin"},
    {"POST", "/v1/admin/plans/{id}/prices", billing_admin_price_create,
     USER | IDEMPOTENT, "admin"},
    {"POST", "/v1/admin/plans/{id}/sync", billing_admin_plan_sync, USER,
     "admin"},
    {"GET", "/v1/admin/billing/subscriptions", billing_finance_subscriptions,
     USER, "admin finance"},
    {"GET", "/v1/admin/billing/invoices", billing_finance_invoices, USER,
     "admin finance"},
};

static billing_state_t state;

static int billing_init(stoa_ctx_t *ctx)
{
    state.stripe = stoa_stripe_new(ctx->conf.stripe_api_base,
                                   ctx->conf.stripe_secret_key);
    if (!ctx->conf.stripe_secret_key[0])
        stoa_log(STOA_LOG_WARN, "stripe_secret_key is empty: Stripe calls "
                                "will be refused");
    if (!ctx->conf.stripe_webhook_secret[0])
        stoa_log(STOA_LOG_WARN, "stripe_webhook_secret is empty: every "
                                "webhook will be refused");
    ctx->data = &state;
    return STOA_OK;
}

int main(int argc, char **argv)
{
    stoa_app_t app = {
        .name = "billing",
        .routes = billing_routes,
        .nroutes = STOA_ARRAY_LEN(billing_routes),
        .statements = billing_statements,
        .nstatements = billing_statements_len,
        .init = billing_init,
    };
    return stoa_app_main(argc, argv, &app);
}
