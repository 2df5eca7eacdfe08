/* err.c - the table of API error codes. */
#include "stoa/err.h"

#include <string.h>

#include "stoa/core.h"

/* Indexed by id, so a missing entry is a NULL code the unit test finds. */
const stoa_err_info_t stoa_err_table[] = {
    [STOA_ERR_INVALID_REQUEST] = {"invalid_request", 400,
                                  "the request is invalid"},
    [STOA_ERR_INVALID_JSON] = {"invalid_json", 400,
                               "the body is not valid JSON"},
    [STOA_ERR_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415,
                                         "Content-Type must be "
                                         "application/json"},
    [STOA_ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413,
                                    "the request body is too large"},
    [STOA_ERR_NOT_FOUND] = {"not_found", 404, "no such resource"},
    [STOA_ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405,
                                     "method not allowed on this resource"},
    [STOA_ERR_UNAUTHENTICATED] = {"unauthenticated", 401,
                                  "a valid access token is required"},
    [STOA_ERR_FORBIDDEN] = {"forbidden", 403, "your role does not allow this"},
    [STOA_ERR_INSUFFICIENT_SCOPE] = {"insufficient_scope", 403,
                                     "this token's scopes do not cover this "
                                     "route"},
    [STOA_ERR_IDEMPOTENCY_KEY_REUSED] = {"idempotency_key_reused", 422,
                                         "this Idempotency-Key was used with "
                                         "another request"},
    [STOA_ERR_IDEMPOTENCY_IN_PROGRESS] = {"idempotency_in_progress", 409,
                                          "a request with this "
                                          "Idempotency-Key is still running"},
    [STOA_ERR_IDEMPOTENCY_REPLAY_UNAVAILABLE] =
        {"idempotency_replay_unavailable", 409,
         "the answer to this Idempotency-Key was not kept; use a new key"},
    [STOA_ERR_EMAIL_TAKEN] = {"email_taken", 409,
                              "an account with this email already exists"},
    [STOA_ERR_INVALID_CREDENTIALS] = {"invalid_credentials", 401,
                                      "wrong email or password"},
    [STOA_ERR_ACCOUNT_SUSPENDED] = {"account_suspended", 403,
                                    "this account is suspended"},
    [STOA_ERR_TOO_MANY_ATTEMPTS] = {"too_many_attempts", 429,
                                    "too many failed attempts; retry later"},
    [STOA_ERR_INVALID_TOKEN] = {"invalid_token", 401,
                                "the token is unknown, used or expired"},
    [STOA_ERR_TOKEN_REUSED] = {"token_reused", 401,
                               "this refresh token was already used; the "
                               "session is revoked"},
    [STOA_ERR_MFA_REQUIRED] = {"mfa_required", 401,
                               "a second factor is required"},
    [STOA_ERR_INVALID_CODE] = {"invalid_code", 401,
                               "the code is wrong, expired or already used"},
    [STOA_ERR_MFA_ALREADY_ENABLED] = {"mfa_already_enabled", 409,
                                      "two-factor authentication is already "
                                      "on"},
    [STOA_ERR_MFA_NOT_ENABLED] = {"mfa_not_enabled", 409,
                                  "two-factor authentication is off"},
    [STOA_ERR_MFA_NOT_ENROLLED] = {"mfa_not_enrolled", 409,
                                   "no enrolment is in progress"},
    [STOA_ERR_MFA_UNAVAILABLE] = {"mfa_unavailable", 503,
                                  "two-factor authentication is unavailable"},
    [STOA_ERR_LAST_ADMIN] = {"last_admin", 409,
                             "the last active admin cannot be demoted or "
                             "suspended"},
    [STOA_ERR_INVALID_SIGNATURE] = {"invalid_signature", 400,
                                    "the signature is missing, wrong or "
                                    "stale"},
    [STOA_ERR_ALREADY_SUBSCRIBED] = {"already_subscribed", 409,
                                     "there is already a live subscription"},
    [STOA_ERR_NO_CUSTOMER] = {"no_customer", 404,
                              "no billing account yet; subscribe first"},
    [STOA_ERR_NO_SUBSCRIPTION] = {"no_subscription", 404,
                                  "no live subscription"},
    [STOA_ERR_NOT_CANCELABLE] = {"not_cancelable", 409,
                                 "this subscription cannot be canceled"},
    [STOA_ERR_PLAN_EXISTS] = {"plan_exists", 409,
                              "a plan with this key already exists"},
    [STOA_ERR_PRICE_NOT_SYNCED] = {"price_not_synced", 409,
                                   "this price is not in Stripe yet; sync "
                                   "the plan"},
    [STOA_ERR_PAYMENT_PROVIDER_ERROR] = {"payment_provider_error", 502,
                                         "the payment provider refused the "
                                         "request"},
    [STOA_ERR_PAYMENT_PROVIDER_UNAVAILABLE] = {"payment_provider_unavailable",
                                               503,
                                               "the payment provider is "
                                               "unreachable; retry later"},
    [STOA_ERR_INTERNAL] = {"internal", 500, "internal error"},
    [STOA_ERR_UNAVAILABLE] = {"unavailable", 503,
                              "a dependency is unavailable; retry later"},
};
const size_t stoa_err_table_len = STOA_ARRAY_LEN(stoa_err_table);

/* A code added to the enum but not to the table is a build error. */
_Static_assert(STOA_ARRAY_LEN(stoa_err_table) == STOA_ERR_COUNT,
               "one table entry per stoa_err_t");

const stoa_err_info_t *stoa_err_info(stoa_err_t id)
{
    STOA_ASSERT((unsigned)id < STOA_ERR_COUNT);
    return &stoa_err_table[id];
}

const stoa_err_info_t *stoa_err_find(const char *code)
{
    for (size_t i = 0; code && i < stoa_err_table_len; i++)
        if (stoa_err_table[i].code && strcmp(stoa_err_table[i].code, code) == 0)
            return &stoa_err_table[i];
    return NULL;
}
