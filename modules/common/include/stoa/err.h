/* err.h - the table of API error codes (SPEC §3): each code's HTTP
 * status and default message, defined once for every pool.
 *
 * A handler answers an error by its id (stoa_http_fail in stoa/http.h):
 * the status and, unless the handler has better words, the message come
 * from here. The codes are public API (docs/openapi.yaml lists them under
 * the Error schema, and a test holds the two together): a code never
 * changes meaning once shipped; a new one is added here first.
 *
 * nginx and the gateway module answer a few errors themselves (rate
 * limits, bad tokens at the edge); those are spelled in nginx/ and
 * gateway/, which do not link this library. */
#ifndef STOA_ERR_H
#define STOA_ERR_H

#include <stddef.h>

typedef enum {
    /* The request itself (SPEC §3). */
    STOA_ERR_INVALID_REQUEST,
    STOA_ERR_INVALID_JSON,
    STOA_ERR_UNSUPPORTED_MEDIA_TYPE,
    STOA_ERR_PAYLOAD_TOO_LARGE,
    STOA_ERR_NOT_FOUND,
    STOA_ERR_METHOD_NOT_ALLOWED,
    /* Who is asking. */
    STOA_ERR_UNAUTHENTICATED,
    STOA_ERR_FORBIDDEN,
    STOA_ERR_INSUFFICIENT_SCOPE,
    /* Idempotency-Key. */
    STOA_ERR_IDEMPOTENCY_KEY_REUSED,
    STOA_ERR_IDEMPOTENCY_IN_PROGRESS,
    STOA_ERR_IDEMPOTENCY_REPLAY_UNAVAILABLE,
    /* Accounts, sessions, credentials. */
    STOA_ERR_EMAIL_TAKEN,
    STOA_ERR_INVALID_CREDENTIALS,
    STOA_ERR_ACCOUNT_SUSPENDED,
    STOA_ERR_TOO_MANY_ATTEMPTS,
    STOA_ERR_INVALID_TOKEN,
    STOA_ERR_TOKEN_REUSED,
    STOA_ERR_MFA_REQUIRED,
    STOA_ERR_INVALID_CODE,
    STOA_ERR_MFA_ALREADY_ENABLED,
    STOA_ERR_MFA_NOT_ENABLED,
    STOA_ERR_MFA_NOT_ENROLLED,
    STOA_ERR_MFA_UNAVAILABLE,
    STOA_ERR_LAST_ADMIN,
    /* Billing. */
    STOA_ERR_INVALID_SIGNATURE,
    STOA_ERR_ALREADY_SUBSCRIBED,
    STOA_ERR_NO_CUSTOMER,
    STOA_ERR_NO_SUBSCRIPTION,
    STOA_ERR_NOT_CANCELABLE,
    STOA_ERR_PLAN_EXISTS,
    STOA_ERR_PRICE_NOT_SYNCED,
    STOA_ERR_PAYMENT_PROVIDER_ERROR,
    STOA_ERR_PAYMENT_PROVIDER_UNAVAILABLE,
    /* Our side. */
    STOA_ERR_INTERNAL,
    STOA_ERR_UNAVAILABLE,
    STOA_ERR_COUNT /* not a code: the number of them */
} stoa_err_t;

typedef struct {
    const char *code;    /* snake_case, unique */
    int status;          /* 4xx or 5xx */
    const char *message; /* the default, for humans */
} stoa_err_info_t;

/* The table, indexed by stoa_err_t (stoa_err_table_len == STOA_ERR_COUNT).
 * Borrowed (static). */
extern const stoa_err_info_t stoa_err_table[];
extern const size_t stoa_err_table_len;

/* The entry of id, which must be a stoa_err_t below STOA_ERR_COUNT.
 * Borrowed (static). */
const stoa_err_info_t *stoa_err_info(stoa_err_t id);

/* The entry whose code is code, or NULL (also for NULL). Borrowed
 * (static). */
const stoa_err_info_t *stoa_err_find(const char *code);

#endif
