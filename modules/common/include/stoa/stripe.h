/* stripe.h - the Stripe API client and webhook signature check.
 *
 * Calls go to stripe_api_base with libcurl over one kept-alive handle per
 * process, form-encoded as Stripe expects, with `Authorization: Bearer`
 * and an Idempotency-Key on every POST. Network errors, 429 and 5xx are
 * retried with backoff (GETs, and POSTs, which the key makes safe).
 * Stripe's error JSON is kept for the caller to map. */
#ifndef STOA_STRIPE_H
#define STOA_STRIPE_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/json.h"

typedef struct stoa_stripe_s stoa_stripe_t;

typedef struct {
    int http_status; /* 0: no answer (network) */
    char type[64];   /* Stripe error type, e.g. card_error */
    char code[64];   /* Stripe error code, may be empty */
    char param[64];  /* offending parameter, may be empty */
    char message[256];
} stoa_stripe_error_t;

/* Caller frees with stoa_stripe_free(). */
stoa_stripe_t *stoa_stripe_new(const char *api_base, const char *secret_key);
void stoa_stripe_free(stoa_stripe_t *s);

/* Appends key=value, percent-encoded, to a form body. */
void stoa_stripe_form(stoa_buf_t *form, const char *key, const char *value);

/* method "GET" or "POST"; path "/v1/customers"; form may be NULL;
 * idempotency_key required for POST. Returns STOA_OK with *out (the JSON
 * object, arena-owned), STOA_DECLINED when Stripe refused the request
 * (4xx other than 429; err filled), STOA_AGAIN when Stripe could not be
 * reached or kept failing (err filled). */
STOA_MUSTCHECK int stoa_stripe_call(stoa_stripe_t *s, stoa_arena_t *arena,
                                    const char *method, const char *path,
                                    const char *form,
                                    const char *idempotency_key,
                                    const stoa_json_t **out,
                                    stoa_stripe_error_t *err);

/* Verifies a Stripe-Signature header (`t=<unix>,v1=<hex>[,v1=...]`) over
 * the raw body: HMAC-SHA256 with each of the comma-separated secrets,
 * constant-time compare, |now - t| <= tolerance_s. STOA_OK or
 * STOA_DECLINED. Never reads past header or body. */
STOA_MUSTCHECK int stoa_stripe_verify_signature(const char *header,
                                                const char *body, size_t len,
                                                const char *secrets,
                                                int64_t now,
                                                int64_t tolerance_s);

#endif
