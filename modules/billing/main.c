/* main.c - the billing pool: start-up (its routes: routes.manifest). */
#include "billing.h"
#include "stoa/log.h"

static billing_state_t state;

static int billing_init(stoa_ctx_t *ctx)
{
    state.stripe =
        stoa_stripe_new(ctx->conf.stripe_api_base, ctx->conf.stripe_secret_key);
    if (!ctx->conf.stripe_secret_key[0])
        stoa_log(STOA_LOG_WARN, "stripe_secret_key is empty: Stripe calls "
                                "will be refused");
    if (!ctx->conf.stripe_webhook_secret[0])
        stoa_log(STOA_LOG_WARN, "stripe_webhook_secret is empty: every "
                                "webhook will be refused");
    ctx->data = &state;
    return STOA_OK;
}

STOA_APP_MAIN("billing", billing_statements, billing_statements_len,
              billing_init)
