/* check_gateway_verify.c - the gateway's parts that run without nginx:
 * Bearer tokens, refusals and roles (gateway/ngx_http_api_gateway_verify.c)
 * and the guard that turns the shared core's allocation failures into
 * errors (gateway/ngx_http_api_gateway_guard.c).
 *
 * Allocation failure is injected: this binary is linked with --wrap for
 * malloc, calloc and realloc (mk/gateway.mk), so every allocation of the
 * statically linked code (the core, the guard) passes through
 * test_malloc_fail_from() below. Libraries linked dynamically (OpenSSL,
 * yajl) are not affected. */
#include "../unit/check_util.h"

#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "ngx_http_api_gateway_cache.h"
#include "ngx_http_api_gateway_guard.h"
#include "ngx_http_api_gateway_verify.h"
#include "stoa/buf.h"
#include "stoa/jwt.h"
#include "stoa/metrics.h"

#define ISSUER "https://stoa.example"
#define SUB "6f1c2b7e-3d4a-4b5c-8d9e-0f1a2b3c4d5e"

/* --- allocation failure ----------------------------------------------- */

/* What a failed, abandoned parse had allocated stays allocated (the guard
 * leaks it by design); LeakSanitizer is told not to count it. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#define test_leaks_ignored_begin() __lsan_disable()
#define test_leaks_ignored_end() __lsan_enable()
#else
#define test_leaks_ignored_begin() ((void)0)
#define test_leaks_ignored_end() ((void)0)
#endif

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *ptr, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *ptr, size_t size);

/* Allocations that still succeed; negative: all of them. */
static long allocations_left = -1;

/* From the n-th allocation on (0: the next one), every allocation fails. */
static void test_malloc_fail_from(long n)
{
    allocations_left = n;
}

static void test_malloc_restore(void)
{
    allocations_left = -1;
}

static int allocation_fails(void)
{
    if (allocations_left == 0)
        return 1;
    if (allocations_left > 0)
        allocations_left--;
    return 0;
}

void *__wrap_malloc(size_t size)
{
    return allocation_fails() ? NULL : __real_malloc(size);
}

void *__wrap_calloc(size_t count, size_t size)
{
    return allocation_fails() ? NULL : __real_calloc(count, size);
}

void *__wrap_realloc(void *ptr, size_t size)
{
    return allocation_fails() ? NULL : __real_realloc(ptr, size);
}

/* --- keys and tokens -------------------------------------------------- */

static stoa_jwt_key_t *key, *other;
static stoa_buf_t jwks; /* the public halves of both keys */
static int64_t now;

static void setup(void)
{
    key = stoa_jwt_key_generate();
    other = stoa_jwt_key_generate();
    ck_assert_ptr_nonnull(key);
    ck_assert_ptr_nonnull(other);
    stoa_buf_init(&jwks);
    stoa_buf_puts(&jwks, "{\"keys\":[");
    stoa_jwt_key_jwk(key, &jwks);
    stoa_buf_puts(&jwks, ",");
    stoa_jwt_key_jwk(other, &jwks);
    stoa_buf_puts(&jwks, "]}");
    now = (int64_t)time(NULL);
}

static void teardown(void)
{
    test_malloc_restore();
    stoa_buf_free(&jwks);
    stoa_jwt_key_free(other);
    stoa_jwt_key_free(key);
}

/* A token with the given audience, nbf and exp; caller frees. */
static char *token_with(const char *aud, int64_t nbf, int64_t exp)
{
    stoa_buf_t claims, out;
    stoa_buf_init(&claims);
    stoa_buf_init(&out);
    stoa_buf_printf(&claims,
                    "{\"iss\":\"" ISSUER "\",\"aud\":\"%s\",\"sub\":\"" SUB
                    "\",\"role\":\"client\",\"nbf\":%lld,\"exp\":%lld}",
                    aud, (long long)nbf, (long long)exp);
    ck_assert_int_eq(stoa_jwt_sign(key, claims.data, &out), STOA_OK);
    stoa_buf_free(&claims);
    char *token = strdup(out.data);
    stoa_buf_free(&out);
    return token;
}

/* A check against both keys (loaded into *keys: free them), for ISSUER
 * and the audience "stoa". */
static ngx_http_api_gateway_check_t check_with(stoa_jwt_keyset_t *keys,
                                               int64_t leeway)
{
    char err[256];
    ck_assert_int_eq(ngx_http_api_gateway_keyset_from_jwks(
                         keys, jwks.data, jwks.len, err, sizeof(err)),
                     STOA_OK);
    ngx_http_api_gateway_check_t check = {
        .keys = keys,
        .generation = 1,
        .profile = 1,
        .issuer = ISSUER,
        .audience = "stoa",
        .leeway = leeway,
    };
    return check;
}

/* What the gateway makes of token: the check, then its refusal. Returns
 * the refusal's message, or NULL when the token is accepted. */
static const char *outcome(const char *token, int64_t leeway,
                           const char **reason)
{
    stoa_jwt_keyset_t keys;
    ngx_http_api_gateway_check_t check = check_with(&keys, leeway);
    ngx_http_api_gateway_identity_t id;
    stoa_jwt_status_t st;
    ck_assert_int_eq(ngx_http_api_gateway_guarded_check(
                         NULL, &check, token, strlen(token), now, &id, &st),
                     STOA_OK);
    stoa_jwt_keyset_free(&keys);
    ngx_http_api_gateway_refusal_t refusal = {NULL, NULL, 0};
    if (ngx_http_api_gateway_status_refusal(st, &refusal) == STOA_OK) {
        ck_assert_str_eq(id.sub, SUB);
        ck_assert_ptr_null(refusal.message);
        return NULL;
    }
    *reason = refusal.reason;
    return refusal.message;
}

/* --- Bearer ----------------------------------------------------------- */

static int bearer(const char *value, const char **token, size_t *len,
                  ngx_http_api_gateway_refusal_t *refusal)
{
    return ngx_http_api_gateway_bearer(value, strlen(value), token, len,
                                       refusal);
}

START_TEST(bearer_takes_the_one_token)
{
    static const char *const values[] = {
        "Bearer abc.def.ghi",     "bearer abc.def.ghi",
        "BEARER abc.def.ghi",     "Bearer    abc.def.ghi",
        "Bearer abc.def.ghi \t ", "bEaReR abc.def.ghi\t",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(values); i++) {
        const char *token = NULL;
        size_t len = 0;
        ngx_http_api_gateway_refusal_t refusal = {NULL, NULL, 0};
        ck_assert_int_eq(bearer(values[i], &token, &len, &refusal), STOA_OK);
        ck_assert_uint_eq(len, strlen("abc.def.ghi"));
        ck_assert_int_eq(memcmp(token, "abc.def.ghi", len), 0);
        ck_assert_ptr_null(refusal.reason);
    }
    /* the value need not be NUL-terminated: only len bytes are read */
    const char *value = "Bearer tok trailing";
    const char *token;
    size_t len;
    ngx_http_api_gateway_refusal_t refusal;
    ck_assert_int_eq(ngx_http_api_gateway_bearer(value, strlen("Bearer tok"),
                                                 &token, &len, &refusal),
                     STOA_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(token, "tok", 3), 0);
}
END_TEST

START_TEST(bearer_refuses_other_schemes_and_blanks)
{
    static const struct {
        const char *value, *reason;
    } cases[] = {
        {"", "not a Bearer authorization"},
        {"Basic dXNlcjpwYXNz", "not a Bearer authorization"},
        {"Bearer", "not a Bearer authorization"},
        {"Bearerabc", "not a Bearer authorization"},
        {"Bearer\tabc", "not a Bearer authorization"},
        {" Bearer abc", "not a Bearer authorization"},
        {"Bearer ", "malformed Bearer authorization"},
        {"Bearer    \t ", "malformed Bearer authorization"},
        {"Bearer abc def", "malformed Bearer authorization"},
        {"Bearer abc\tdef", "malformed Bearer authorization"},
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++) {
        const char *token = NULL;
        size_t len = 0;
        ngx_http_api_gateway_refusal_t refusal = {NULL, NULL, 0};
        ck_assert_msg(bearer(cases[i].value, &token, &len, &refusal) ==
                          STOA_DECLINED,
                      "\"%s\" taken", cases[i].value);
        ck_assert_str_eq(refusal.reason, cases[i].reason);
        ck_assert_str_eq(refusal.message,
                         "the Authorization header must hold a Bearer token");
        ck_assert_ptr_null(token);
    }
}
END_TEST

/* --- refusals --------------------------------------------------------- */

START_TEST(every_refused_status_has_a_reason_and_a_message)
{
    ngx_http_api_gateway_refusal_t refusal = {NULL, NULL, 0};
    ck_assert_int_eq(ngx_http_api_gateway_status_refusal(STOA_JWT_OK, &refusal),
                     STOA_OK);
    ck_assert_ptr_null(refusal.reason);

    for (int st = STOA_JWT_MALFORMED; st <= STOA_JWT_MISSING_CLAIM; st++) {
        ck_assert_int_eq(ngx_http_api_gateway_status_refusal(
                             (stoa_jwt_status_t)st, &refusal),
                         STOA_DECLINED);
        ck_assert_str_eq(refusal.reason,
                         stoa_jwt_status_name((stoa_jwt_status_t)st));
        const char *want = "the access token is invalid";
        if (st == STOA_JWT_EXPIRED)
            want = "the access token has expired";
        else if (st == STOA_JWT_NOT_YET_VALID)
            want = "the access token is not valid yet";
        ck_assert_str_eq(refusal.message, want);
    }
    ck_assert_str_eq(ngx_http_api_gateway_refusal_multiple.message,
                     "the request carries more than one access token");
}
END_TEST

START_TEST(claims_are_checked_within_the_leeway)
{
    const char *reason = NULL;
    char *token;

    token = token_with("stoa", now - 10, now + 600);
    ck_assert_ptr_null(outcome(token, 30, &reason));
    free(token);

    /* expired 20 s ago: inside a 30 s leeway, outside a 10 s one */
    token = token_with("stoa", now - 600, now - 20);
    ck_assert_ptr_null(outcome(token, 30, &reason));
    ck_assert_str_eq(outcome(token, 10, &reason),
                     "the access token has expired");
    ck_assert_str_eq(reason, "expired");
    free(token);

    /* valid from 20 s on: the same */
    token = token_with("stoa", now + 20, now + 600);
    ck_assert_ptr_null(outcome(token, 30, &reason));
    ck_assert_str_eq(outcome(token, 10, &reason),
                     "the access token is not valid yet");
    ck_assert_str_eq(reason, "not_yet_valid");
    free(token);

    /* another audience: the client hears "invalid", the log why */
    token = token_with("billing", now - 10, now + 600);
    ck_assert_str_eq(outcome(token, 30, &reason),
                     "the access token is invalid");
    ck_assert_str_eq(reason, "bad_audience");
    free(token);
}
END_TEST

/* --- roles ------------------------------------------------------------ */

START_TEST(roles_are_matched_whole)
{
    static const char *const roles[] = {"admin", "finance"};
    ck_assert(ngx_http_api_gateway_role_allowed(NULL, 0, "client"));
    ck_assert(ngx_http_api_gateway_role_allowed(roles, 2, "admin"));
    ck_assert(ngx_http_api_gateway_role_allowed(roles, 2, "finance"));
    ck_assert(!ngx_http_api_gateway_role_allowed(roles, 2, "client"));
    ck_assert(!ngx_http_api_gateway_role_allowed(roles, 2, "admi"));
    ck_assert(!ngx_http_api_gateway_role_allowed(roles, 2, "admins"));
    ck_assert(!ngx_http_api_gateway_role_allowed(roles, 2, ""));
    ck_assert(!ngx_http_api_gateway_role_allowed(roles, 1, "finance"));
}
END_TEST

/* --- the guard -------------------------------------------------------- */

/* Every allocation the JWKS parser makes fails in turn: the parse either
 * succeeds (the failure came too late to matter) or reports the failure,
 * with no keys; the process never aborts. */
START_TEST(jwks_parse_fails_instead_of_aborting)
{
    int failures = 0;
    for (long n = 0;; n++) {
        stoa_jwt_keyset_t keys;
        char err[256] = "";
        test_leaks_ignored_begin();
        test_malloc_fail_from(n);
        int rc = ngx_http_api_gateway_keyset_from_jwks(
            &keys, jwks.data, jwks.len, err, sizeof(err));
        int injected = allocations_left == 0;
        test_malloc_restore();
        test_leaks_ignored_end();
        if (rc == STOA_ERROR) {
            failures++;
            ck_assert_uint_eq(keys.nkeys, 0);
            ck_assert_ptr_nonnull(strstr(err, "out of memory"));
            continue;
        }
        ck_assert_int_eq(rc, STOA_OK);
        ck_assert_uint_eq(keys.nkeys, 2);
        stoa_jwt_keyset_free(&keys);
        if (!injected)
            break; /* every allocation of the parse has been failed once */
    }
    /* the copy of the text, and one per key */
    ck_assert_int_ge(failures, 3);

    /* and the guard is gone once it returned: a plain parse works */
    stoa_jwt_keyset_t keys;
    char err[256];
    ck_assert_int_eq(ngx_http_api_gateway_keyset_from_jwks(
                         &keys, jwks.data, jwks.len, err, sizeof(err)),
                     STOA_OK);
    stoa_jwt_keyset_free(&keys);
}
END_TEST

START_TEST(a_bad_jwks_is_declined_not_failed)
{
    stoa_jwt_keyset_t keys;
    char err[256] = "";
    ck_assert_int_eq(ngx_http_api_gateway_keyset_from_jwks(
                         &keys, "{\"keys\":[]}", 11, err, sizeof(err)),
                     STOA_DECLINED);
    ck_assert_uint_eq(keys.nkeys, 0);
    ck_assert_str_eq(err, "JWKS has no ES256 key");
}
END_TEST

static void assert_in_core(void *data)
{
    int *reached = data;
    STOA_ASSERT(*reached < 0);
    *reached = 1;
}

static void guarded_inner(void *data)
{
    int *inner = data;
    int reached = 0;
    *inner = ngx_http_api_gateway_guard_run(assert_in_core, &reached);
    ck_assert_int_eq(reached, 0);
}

START_TEST(failed_assertions_leave_the_innermost_run)
{
    int reached = 0;
    ck_assert_int_eq(ngx_http_api_gateway_guard_run(assert_in_core, &reached),
                     STOA_ERROR);
    ck_assert_int_eq(reached, 0);
    ck_assert_str_eq(ngx_http_api_gateway_guard_failure(),
                     "assertion failed: *reached < 0");

    /* nested: the inner run fails, the outer one finishes */
    int inner = STOA_OK;
    ck_assert_int_eq(ngx_http_api_gateway_guard_run(guarded_inner, &inner),
                     STOA_OK);
    ck_assert_int_eq(inner, STOA_ERROR);
}
END_TEST

/* Outside a guarded run the core's allocation aborts, as it always did. */
START_TEST(unguarded_allocation_failure_still_aborts)
{
    test_malloc_fail_from(0);
    void *p = stoa_xmalloc(64);
    test_malloc_restore();
    free(p);
}
END_TEST

/* --- counting --------------------------------------------------------- */

static char metrics_dir[64];

/* This test's process is an nginx worker with a segment of its own. */
static void metrics_setup(void)
{
    static const stoa_metrics_labels_t none = {NULL, NULL, 0, NULL, 0};
    char err[256];
    setup();
    snprintf(metrics_dir, sizeof(metrics_dir), "/tmp/stoa-gw-metrics-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(metrics_dir));
    ck_assert_msg(stoa_metrics_open(metrics_dir, STOA_METRICS_GATEWAY, &none,
                                    err, sizeof(err)) == STOA_OK,
                  "%s", err);
}

static void metrics_teardown(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.metrics", metrics_dir,
             STOA_METRICS_GATEWAY);
    unlink(path);
    rmdir(metrics_dir);
    teardown();
}

/* The scrape's value of one gateway series, `family{...}` without the
 * pool label; -1 when the scrape does not have it. */
static long long scraped(const char *family, const char *labels)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_metrics_snapshot_t **snaps;
    size_t n;
    ck_assert_int_eq(stoa_metrics_snapshot_dir(metrics_dir, arena, &snaps, &n),
                     STOA_OK);
    stoa_buf_t out, want;
    stoa_buf_init(&out);
    stoa_buf_init(&want);
    stoa_metrics_expose(&out, snaps, n);
    stoa_buf_append(&out, "", 1);
    stoa_buf_printf(&want, "\n%s{pool=\"gateway\",%s} ", family, labels);
    const char *at = strstr(out.data, want.data);
    long long v = at ? strtoll(at + want.len, NULL, 10) : -1;
    stoa_buf_free(&want);
    stoa_buf_free(&out);
    stoa_arena_destroy(arena);
    return v;
}

static long long refusals(const char *reason)
{
    char labels[64];
    snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
    return scraped("stoa_gateway_refusals_total", labels);
}

/* Every refusal adds to the series named like the reason it logs (the
 * core's status names), each to its own. */
START_TEST(every_refusal_counts_under_its_own_reason)
{
    ngx_http_api_gateway_refusal_t refusal;
    for (int st = STOA_JWT_MALFORMED; st <= STOA_JWT_MISSING_CLAIM; st++) {
        ck_assert_int_eq(ngx_http_api_gateway_status_refusal(
                             (stoa_jwt_status_t)st, &refusal),
                         STOA_DECLINED);
        for (int i = 0; i < st; i++)
            stoa_metrics_count(refusal.metric);
    }
    for (int st = STOA_JWT_MALFORMED; st <= STOA_JWT_MISSING_CLAIM; st++)
        ck_assert_int_eq(refusals(stoa_jwt_status_name((stoa_jwt_status_t)st)),
                         st);
    const char *token;
    size_t len;
    ck_assert_int_eq(bearer("Basic dXNlcjpwYXNz", &token, &len, &refusal),
                     STOA_DECLINED);
    stoa_metrics_count(refusal.metric);
    ck_assert_int_eq(bearer("Bearer a b", &token, &len, &refusal),
                     STOA_DECLINED);
    stoa_metrics_count(refusal.metric);
    stoa_metrics_count(refusal.metric);
    stoa_metrics_count(ngx_http_api_gateway_refusal_multiple.metric);
    ck_assert_int_eq(refusals("not_bearer"), 1);
    ck_assert_int_eq(refusals("malformed_header"), 2);
    ck_assert_int_eq(refusals("multiple"), 1);
    ck_assert_int_eq(refusals("missing"), 0);
    ck_assert_int_eq(refusals("role"), 0);
}
END_TEST

/* A token verified once is a hit after: one miss per signature check. */
START_TEST(the_check_counts_cache_hits_and_misses)
{
    stoa_jwt_keyset_t keys;
    ngx_http_api_gateway_check_t check = check_with(&keys, 30);
    ngx_http_api_gateway_cache_t *cache = ngx_http_api_gateway_cache_create(16);
    ck_assert_ptr_nonnull(cache);
    ngx_http_api_gateway_identity_t id;
    stoa_jwt_status_t st;
    char *good = token_with("stoa", now - 10, now + 600);
    char *other_aud = token_with("billing", now - 10, now + 600);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ngx_http_api_gateway_guarded_check(
                             cache, &check, good, strlen(good), now, &id, &st),
                         STOA_OK);
        ck_assert_int_eq(st, STOA_JWT_OK);
    }
    /* a refused token is never cached: a miss every time */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(ngx_http_api_gateway_guarded_check(
                             cache, &check, other_aud, strlen(other_aud), now,
                             &id, &st),
                         STOA_OK);
        ck_assert_int_eq(st, STOA_JWT_BAD_AUDIENCE);
    }
    /* one refused for its length is neither: no work was done */
    static char huge[STOA_JWT_MAX_LEN + 2];
    memset(huge, 'a', sizeof(huge) - 1);
    ck_assert_int_eq(ngx_http_api_gateway_guarded_check(
                         cache, &check, huge, strlen(huge), now, &id, &st),
                     STOA_OK);
    ck_assert_int_eq(st, STOA_JWT_TOO_LONG);
    ck_assert_int_eq(scraped("stoa_gateway_cache_total", "result=\"hit\""), 2);
    ck_assert_int_eq(scraped("stoa_gateway_cache_total", "result=\"miss\""),
                     3);
    free(good);
    free(other_aud);
    ngx_http_api_gateway_cache_destroy(cache);
    stoa_jwt_keyset_free(&keys);
}
END_TEST

static Suite *gateway_verify_suite(void)
{
    Suite *s = suite_create("gateway_verify");
    TCase *tc = test_case("verify", setup, teardown);
    tcase_add_test(tc, bearer_takes_the_one_token);
    tcase_add_test(tc, bearer_refuses_other_schemes_and_blanks);
    tcase_add_test(tc, every_refused_status_has_a_reason_and_a_message);
    tcase_add_test(tc, claims_are_checked_within_the_leeway);
    tcase_add_test(tc, roles_are_matched_whole);
    suite_add_tcase(s, tc);
    tc = test_case("metrics", metrics_setup, metrics_teardown);
    tcase_add_test(tc, every_refusal_counts_under_its_own_reason);
    tcase_add_test(tc, the_check_counts_cache_hits_and_misses);
    suite_add_tcase(s, tc);
    tc = test_case("guard", setup, teardown);
    tcase_add_test(tc, jwks_parse_fails_instead_of_aborting);
    tcase_add_test(tc, a_bad_jwks_is_declined_not_failed);
    tcase_add_test(tc, failed_assertions_leave_the_innermost_run);
    tcase_add_test_raise_signal(tc, unguarded_allocation_failure_still_aborts,
                                SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(gateway_verify_suite());
}
