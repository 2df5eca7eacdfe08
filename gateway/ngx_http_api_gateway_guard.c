/*
 * ngx_http_api_gateway_guard.c - the shared core's allocation and assertion
 * failures as errors inside the gateway (see the header).
 */

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_api_gateway_guard.h"


/* The core's own functions, reached through their wrapped names. */
void *__real_stoa_xmalloc(size_t size);
void *__real_stoa_xcalloc(size_t count, size_t size);
void *__real_stoa_xrealloc(void *ptr, size_t size);
char *__real_stoa_xstrdup(const char *s);
STOA_NORETURN void __real_stoa_assert_fail(const char *expr,
    const char *file, int line);


typedef struct ngx_http_api_gateway_guard_s  ngx_http_api_gateway_guard_t;

struct ngx_http_api_gateway_guard_s {
    jmp_buf                        env;
    ngx_http_api_gateway_guard_t  *outer;
};


/* the innermost run, NULL outside any */
static ngx_http_api_gateway_guard_t  *ngx_http_api_gateway_guard;
static char  ngx_http_api_gateway_failure[128];


int
ngx_http_api_gateway_guard_run(ngx_http_api_gateway_guarded_pt fn,
    void *data)
{
    ngx_http_api_gateway_guard_t  guard;

    guard.outer = ngx_http_api_gateway_guard;

    if (setjmp(guard.env) != 0) {
        /* the failing call has already made the outer run current again */
        return STOA_ERROR;
    }

    ngx_http_api_gateway_guard = &guard;

    fn(data);

    ngx_http_api_gateway_guard = guard.outer;

    return STOA_OK;
}


const char *
ngx_http_api_gateway_guard_failure(void)
{
    return ngx_http_api_gateway_failure;
}


/* Leaves the innermost run when there is one; returns when there is none. */
static void
ngx_http_api_gateway_guard_fail(const char *what, const char *detail)
{
    ngx_http_api_gateway_guard_t  *guard;

    guard = ngx_http_api_gateway_guard;

    if (guard == NULL) {
        return;
    }

    snprintf(ngx_http_api_gateway_failure,
             sizeof(ngx_http_api_gateway_failure), "%s%s", what, detail);

    ngx_http_api_gateway_guard = guard->outer;

    longjmp(guard->env, 1);
}


/*
 * Each wrapper allocates as the core's function does; on failure it leaves
 * the run, and outside one it hands over to the core's function, which
 * tries again and aborts with the core's own message.
 */

void *
__wrap_stoa_xmalloc(size_t size)
{
    void  *p;

    p = malloc(size ? size : 1);

    if (p == NULL) {
        ngx_http_api_gateway_guard_fail("out of memory", "");
        return __real_stoa_xmalloc(size);
    }

    return p;
}


void *
__wrap_stoa_xcalloc(size_t count, size_t size)
{
    void  *p;

    p = calloc(count ? count : 1, size ? size : 1);

    if (p == NULL) {
        ngx_http_api_gateway_guard_fail("out of memory", "");
        return __real_stoa_xcalloc(count, size);
    }

    return p;
}


void *
__wrap_stoa_xrealloc(void *ptr, size_t size)
{
    void  *p;

    /* on failure ptr is still the caller's, as it was */
    p = realloc(ptr, size ? size : 1);

    if (p == NULL) {
        ngx_http_api_gateway_guard_fail("out of memory", "");
        return __real_stoa_xrealloc(ptr, size);
    }

    return p;
}


char *
__wrap_stoa_xstrdup(const char *s)
{
    char    *p;
    size_t   len;

    len = strlen(s) + 1;

    p = malloc(len);

    if (p == NULL) {
        ngx_http_api_gateway_guard_fail("out of memory", "");
        return __real_stoa_xstrdup(s);
    }

    memcpy(p, s, len);

    return p;
}


void
__wrap_stoa_assert_fail(const char *expr, const char *file, int line)
{
    ngx_http_api_gateway_guard_fail("assertion failed: ", expr);

    __real_stoa_assert_fail(expr, file, line);
}


/* Guarded entry points */

typedef struct {
    stoa_jwt_keyset_t                *set;
    const char                       *text;
    size_t                            len;
    char                             *err;
    size_t                            errlen;
    int                               rc;
} ngx_http_api_gateway_jwks_call_t;


static void
ngx_http_api_gateway_jwks_call(void *data)
{
    ngx_http_api_gateway_jwks_call_t  *call = data;

    call->rc = stoa_jwt_keyset_from_jwks(call->set, call->text, call->len,
                                         call->err, call->errlen);
}


int
ngx_http_api_gateway_keyset_from_jwks(stoa_jwt_keyset_t *set,
    const char *text, size_t len, char *err, size_t errlen)
{
    ngx_http_api_gateway_jwks_call_t  call;

    memset(set, 0, sizeof(stoa_jwt_keyset_t));

    call.set = set;
    call.text = text;
    call.len = len;
    call.err = err;
    call.errlen = errlen;
    call.rc = STOA_ERROR;

    if (ngx_http_api_gateway_guard_run(ngx_http_api_gateway_jwks_call, &call)
        != STOA_OK)
    {
        /* the keys finished before the failure are counted in nkeys */
        stoa_jwt_keyset_free(set);

        snprintf(err, errlen, "the key parser failed: %s",
                 ngx_http_api_gateway_failure);

        return STOA_ERROR;
    }

    return call.rc == STOA_OK ? STOA_OK : STOA_DECLINED;
}


typedef struct {
    ngx_http_api_gateway_cache_t         *cache;
    const ngx_http_api_gateway_check_t   *check;
    const char                           *token;
    size_t                                len;
    int64_t                               now;
    ngx_http_api_gateway_identity_t      *identity;
    stoa_jwt_status_t                     status;
} ngx_http_api_gateway_check_call_t;


static void
ngx_http_api_gateway_check_call(void *data)
{
    ngx_http_api_gateway_check_call_t  *call = data;

    call->status = ngx_http_api_gateway_check(call->cache, call->check,
                                              call->token, call->len,
                                              call->now, call->identity);
}


int
ngx_http_api_gateway_guarded_check(ngx_http_api_gateway_cache_t *cache,
    const ngx_http_api_gateway_check_t *check, const char *token, size_t len,
    int64_t now, ngx_http_api_gateway_identity_t *identity,
    stoa_jwt_status_t *status)
{
    ngx_http_api_gateway_check_call_t  call;

    call.cache = cache;
    call.check = check;
    call.token = token;
    call.len = len;
    call.now = now;
    call.identity = identity;
    call.status = STOA_JWT_MALFORMED;

    if (ngx_http_api_gateway_guard_run(ngx_http_api_gateway_check_call, &call)
        != STOA_OK)
    {
        return STOA_ERROR;
    }

    *status = call.status;

    return STOA_OK;
}
