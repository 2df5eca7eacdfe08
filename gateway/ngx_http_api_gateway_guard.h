/*
 * ngx_http_api_gateway_guard.h - the gateway's calls into the shared core
 * (modules/common), with the core's aborting allocation turned into an
 * error.
 *
 * The core allocates with stoa_xmalloc() and its siblings, which abort on
 * out-of-memory: right for a pool process its supervisor respawns, wrong in
 * an nginx worker, whose abort drops every connection it holds. The module
 * is linked with --wrap for those functions and for stoa_assert_fail()
 * (gateway/config lists them), so the core's calls land here:
 *
 * - inside ngx_http_api_gateway_guard_run(), a failed allocation or a
 *   failed assertion of the core (such as a digest OpenSSL could not
 *   compute) jumps back out of the core, and the run returns STOA_ERROR;
 * - outside a run, they do exactly what the core's own do (abort).
 *
 * Every call the module makes into the core from a worker goes through
 * one of the guarded entry points below. What the abandoned work had
 * allocated is leaked, not freed: that only happens when memory is
 * already exhausted, and a JWKS is re-read at most once a second.
 *
 * Plain C with no nginx types, so the unit tests run it. Not thread-safe,
 * like everything an nginx worker runs.
 */

#ifndef NGX_HTTP_API_GATEWAY_GUARD_H
#define NGX_HTTP_API_GATEWAY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "stoa/jwt.h"
#include "ngx_http_api_gateway_cache.h"


typedef void (*ngx_http_api_gateway_guarded_pt)(void *data);


/*
 * Runs fn(data). STOA_OK when fn returned; STOA_ERROR when an allocation
 * or an assertion of the core failed inside it (fn did not finish).
 * Runs nest.
 */
int ngx_http_api_gateway_guard_run(ngx_http_api_gateway_guarded_pt fn,
    void *data);

/* What made the last failed run fail ("out of memory", ...); static. */
const char *ngx_http_api_gateway_guard_failure(void);

/*
 * stoa_jwt_keyset_from_jwks(), guarded: STOA_OK; STOA_DECLINED when the
 * text is not a usable JWKS; STOA_ERROR when the core failed. Either way
 * err says why on failure, and set is left empty.
 */
int ngx_http_api_gateway_keyset_from_jwks(stoa_jwt_keyset_t *set,
    const char *text, size_t len, char *err, size_t errlen);

/*
 * ngx_http_api_gateway_check(), guarded: STOA_OK with *status set, or
 * STOA_ERROR when the core failed (the token was neither accepted nor
 * refused).
 */
int ngx_http_api_gateway_guarded_check(ngx_http_api_gateway_cache_t *cache,
    const ngx_http_api_gateway_check_t *check, const char *token, size_t len,
    int64_t now, ngx_http_api_gateway_identity_t *identity,
    stoa_jwt_status_t *status);


/* Where the linker sends the core's calls (ld --wrap); not called directly. */
void *__wrap_stoa_xmalloc(size_t size);
void *__wrap_stoa_xcalloc(size_t count, size_t size);
void *__wrap_stoa_xrealloc(void *ptr, size_t size);
char *__wrap_stoa_xstrdup(const char *s);
STOA_NORETURN void __wrap_stoa_assert_fail(const char *expr,
    const char *file, int line);

#endif /* NGX_HTTP_API_GATEWAY_GUARD_H */
