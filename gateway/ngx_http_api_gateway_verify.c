/*
 * ngx_http_api_gateway_verify.c - Bearer tokens, refusals and roles (see
 * the header).
 */

#include <string.h>

#include "ngx_http_api_gateway_verify.h"


#define NGX_HTTP_API_GATEWAY_SCHEME      "Bearer "
#define NGX_HTTP_API_GATEWAY_SCHEME_LEN  (sizeof(NGX_HTTP_API_GATEWAY_SCHEME) - 1)

#define NGX_HTTP_API_GATEWAY_NOT_BEARER                                       \
    "the Authorization header must hold a Bearer token"


const ngx_http_api_gateway_refusal_t  ngx_http_api_gateway_refusal_multiple = {
    "more than one token",
    "the request carries more than one access token",
    STOA_METRIC_GATEWAY_REFUSAL_MULTIPLE
};


/* The counter of each status the core refuses with, by its order. */
static const stoa_metric_t  ngx_http_api_gateway_status_metrics[] = {
    [STOA_JWT_MALFORMED] = STOA_METRIC_GATEWAY_REFUSAL_MALFORMED,
    [STOA_JWT_TOO_LONG] = STOA_METRIC_GATEWAY_REFUSAL_TOO_LONG,
    [STOA_JWT_BAD_ALG] = STOA_METRIC_GATEWAY_REFUSAL_BAD_ALG,
    [STOA_JWT_UNKNOWN_KID] = STOA_METRIC_GATEWAY_REFUSAL_UNKNOWN_KID,
    [STOA_JWT_BAD_SIGNATURE] = STOA_METRIC_GATEWAY_REFUSAL_BAD_SIGNATURE,
    [STOA_JWT_EXPIRED] = STOA_METRIC_GATEWAY_REFUSAL_EXPIRED,
    [STOA_JWT_NOT_YET_VALID] = STOA_METRIC_GATEWAY_REFUSAL_NOT_YET_VALID,
    [STOA_JWT_BAD_ISSUER] = STOA_METRIC_GATEWAY_REFUSAL_BAD_ISSUER,
    [STOA_JWT_BAD_AUDIENCE] = STOA_METRIC_GATEWAY_REFUSAL_BAD_AUDIENCE,
    [STOA_JWT_MISSING_CLAIM] = STOA_METRIC_GATEWAY_REFUSAL_MISSING_CLAIM
};


/* ASCII only: a header's case does not depend on the process's locale. */
static int
ngx_http_api_gateway_ascii_caseeq(const char *a, const char *b, size_t n)
{
    unsigned char  ca, cb;

    while (n--) {
        ca = (unsigned char) *a++;
        cb = (unsigned char) *b++;

        if (ca >= 'A' && ca <= 'Z') {
            ca |= 0x20;
        }

        if (cb >= 'A' && cb <= 'Z') {
            cb |= 0x20;
        }

        if (ca != cb) {
            return 0;
        }
    }

    return 1;
}


int
ngx_http_api_gateway_bearer(const char *value, size_t len,
    const char **token, size_t *token_len,
    ngx_http_api_gateway_refusal_t *refusal)
{
    const char  *p, *last;

    p = value;
    last = value + len;

    if (len < NGX_HTTP_API_GATEWAY_SCHEME_LEN
        || !ngx_http_api_gateway_ascii_caseeq(p, NGX_HTTP_API_GATEWAY_SCHEME,
                                              NGX_HTTP_API_GATEWAY_SCHEME_LEN))
    {
        refusal->reason = "not a Bearer authorization";
        refusal->message = NGX_HTTP_API_GATEWAY_NOT_BEARER;
        refusal->metric = STOA_METRIC_GATEWAY_REFUSAL_NOT_BEARER;
        return STOA_DECLINED;
    }

    p += NGX_HTTP_API_GATEWAY_SCHEME_LEN;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    if (p == last
        || memchr(p, ' ', last - p) != NULL
        || memchr(p, '\t', last - p) != NULL)
    {
        refusal->reason = "malformed Bearer authorization";
        refusal->message = NGX_HTTP_API_GATEWAY_NOT_BEARER;
        refusal->metric = STOA_METRIC_GATEWAY_REFUSAL_MALFORMED_HEADER;
        return STOA_DECLINED;
    }

    *token = p;
    *token_len = last - p;

    return STOA_OK;
}


int
ngx_http_api_gateway_status_refusal(stoa_jwt_status_t status,
    ngx_http_api_gateway_refusal_t *refusal)
{
    switch (status) {

    case STOA_JWT_OK:
        return STOA_OK;

    case STOA_JWT_EXPIRED:
        refusal->message = "the access token has expired";
        break;

    case STOA_JWT_NOT_YET_VALID:
        refusal->message = "the access token is not valid yet";
        break;

    default:
        /* the client is not told which check failed; the log is */
        refusal->message = "the access token is invalid";
        break;
    }

    refusal->reason = stoa_jwt_status_name(status);

    /* a status the table does not know (a newer core) still counts */
    refusal->metric = STOA_METRIC_GATEWAY_REFUSAL_MALFORMED;

    if ((size_t) status < STOA_ARRAY_LEN(ngx_http_api_gateway_status_metrics)
        && ngx_http_api_gateway_status_metrics[status] != 0)
    {
        refusal->metric = ngx_http_api_gateway_status_metrics[status];
    }

    return STOA_DECLINED;
}


int
ngx_http_api_gateway_role_allowed(const char *const *roles, size_t nroles,
    const char *role)
{
    size_t  i;

    if (roles == NULL) {
        return 1;
    }

    for (i = 0; i < nroles; i++) {
        if (strcmp(roles[i], role) == 0) {
            return 1;
        }
    }

    return 0;
}
