/*
 * ngx_http_api_gateway_verify.h - what the gateway takes as a credential,
 * and what it says when it refuses one.
 *
 * - The Bearer token of an Authorization header value (RFC 7235, RFC
 *   6750): the scheme "Bearer" in any case, one or more spaces, then one
 *   token with no space or tab inside; spaces and tabs after it are
 *   ignored.
 * - The token itself is checked by ngx_http_api_gateway_check() (the
 *   cache in front of the shared ES256 core, stoa/jwt.h): three segments,
 *   alg ES256, a known kid, a low-S signature, exp required and exp, nbf
 *   and iat within the leeway, iss and aud when configured, non-empty sub
 *   and role. This part turns its status into a refusal.
 * - A refusal has a reason, for the log (never the token), a message,
 *   for the client's 401 body, and the counter it adds to (stoa/metrics.h:
 *   one of a fixed set, never anything the client sent).
 * - A verified role passes a location when it is one of the location's
 *   roles, or when the location takes any role.
 *
 * Plain C with no nginx types, so the unit tests run it outside nginx.
 * Every string handed out is static.
 */

#ifndef NGX_HTTP_API_GATEWAY_VERIFY_H
#define NGX_HTTP_API_GATEWAY_VERIFY_H

#include <stddef.h>

#include "stoa/jwt.h"
#include "stoa/metrics.h"


typedef struct {
    const char                  *reason;     /* for the log */
    const char                  *message;    /* for the client */
    stoa_metric_t                metric;     /* a GATEWAY_REFUSAL_* */
} ngx_http_api_gateway_refusal_t;


/* A request carrying a token in more than one place. */
extern const ngx_http_api_gateway_refusal_t
    ngx_http_api_gateway_refusal_multiple;


/*
 * Finds the token in an Authorization header value (len bytes, need not
 * be NUL-terminated). STOA_OK with *token (inside value) and *token_len
 * set, or STOA_DECLINED with *refusal set.
 */
int ngx_http_api_gateway_bearer(const char *value, size_t len,
    const char **token, size_t *token_len,
    ngx_http_api_gateway_refusal_t *refusal);

/*
 * The refusal for what ngx_http_api_gateway_check() returned: STOA_OK for
 * STOA_JWT_OK (refusal untouched), STOA_DECLINED with *refusal otherwise.
 */
int ngx_http_api_gateway_status_refusal(stoa_jwt_status_t status,
    ngx_http_api_gateway_refusal_t *refusal);

/*
 * Whether role (NUL-terminated) is one of roles[0..nroles); roles NULL
 * means any role. 1 or 0.
 */
int ngx_http_api_gateway_role_allowed(const char *const *roles,
    size_t nroles, const char *role);

#endif /* NGX_HTTP_API_GATEWAY_VERIFY_H */
