/* fixture_util.h - fixtures the Check suites share with the fuzz harnesses
 * and the benchmarks: a request built by hand, as the FastCGI front hands
 * one to a handler, and a key set holding a signing key's public half.
 *
 * Free of Check (a harness reports with abort(), a benchmark with its own
 * message), so the callers assert on what these return. Static inline,
 * like check_util.h. */
#ifndef STOA_FIXTURE_UTIL_H
#define STOA_FIXTURE_UTIL_H

#include <string.h>

#include "stoa/buf.h"
#include "stoa/http.h"
#include "stoa/jwt.h"

/* A request with its own arena and output buffers, an empty query and body
 * (free with test_request_free()). */
static inline void test_request_init(stoa_request_t *r, const char *method,
                                     const char *path, const char *request_id)
{
    memset(r, 0, sizeof(*r));
    r->arena = stoa_arena_create(0);
    stoa_buf_init(&r->headers);
    stoa_buf_init(&r->body_out);
    stoa_buf_init(&r->field_errors);
    r->jw = stoa_jw_new(&r->body_out);
    r->method = method;
    r->path = path;
    r->query = "";
    r->body = "";
    r->request_id = request_id;
}

static inline void test_request_free(stoa_request_t *r)
{
    stoa_jw_free(r->jw);
    stoa_buf_free(&r->headers);
    stoa_buf_free(&r->body_out);
    stoa_buf_free(&r->field_errors);
    stoa_arena_destroy(r->arena);
}

/* Fills set with the public half of key, through its JWK, as the gateway
 * and the services get it: STOA_OK, or the parser's status with the
 * reason in err (free set with stoa_jwt_keyset_free()). */
static inline int test_public_keyset(const stoa_jwt_key_t *key,
                                     stoa_jwt_keyset_t *set, char *err,
                                     size_t errlen)
{
    stoa_buf_t jwks;
    stoa_buf_init(&jwks);
    stoa_buf_puts(&jwks, "{\"keys\":[");
    stoa_jwt_key_jwk(key, &jwks);
    stoa_buf_puts(&jwks, "]}");
    int rc = stoa_jwt_keyset_from_jwks(set, jwks.data, jwks.len, err, errlen);
    stoa_buf_free(&jwks);
    return rc;
}

#endif
