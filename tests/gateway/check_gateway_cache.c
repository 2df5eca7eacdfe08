/* check_gateway_cache.c - the gateway's token check and its verified-token
 * cache (gateway/ngx_http_api_gateway_cache.c), outside nginx.
 *
 * A cache hit is told from a verification by swapping the key set for an
 * empty one under the same generation: only a cached token still passes. */
#include "../unit/check_util.h"
#include "../unit/check_jwt_util.h"

#include <stdint.h>
#include <time.h>

#include "ngx_http_api_gateway_cache.h"
#include "stoa/buf.h"
#include "stoa/jwt.h"

#define ISSUER "https://stoa.example"
#define SUB "6f1c2b7e-3d4a-4b5c-8d9e-0f1a2b3c4d5e"
#define SID "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

static stoa_jwt_key_t *key;
static stoa_jwt_keyset_t keys;    /* the key's public half */
static stoa_jwt_keyset_t no_keys; /* what a hit must not need */
static ngx_http_api_gateway_check_t check;
static ngx_http_api_gateway_cache_t *cache; /* 64 entries unless a test says */
static ngx_http_api_gateway_identity_t id;  /* what the last check filled */
static int64_t now;

/* Strings a test makes (tokens, long claims), freed by the teardown. */
static char *made[16];
static size_t n_made;

static void setup(void)
{
    key = stoa_jwt_key_generate();
    ck_assert_ptr_nonnull(key);
    test_jwt_public_keyset(key, &keys);
    memset(&no_keys, 0, sizeof(no_keys));

    now = (int64_t)time(NULL);
    memset(&check, 0, sizeof(check));
    check.keys = &keys;
    check.generation = 1;
    check.profile = 1;
    check.issuer = ISSUER;
    check.audience = "stoa";
    check.leeway = 5;
    cache = ngx_http_api_gateway_cache_create(64);
    ck_assert_ptr_nonnull(cache);
    n_made = 0;
}

static void teardown(void)
{
    while (n_made > 0)
        free(made[--n_made]);
    ngx_http_api_gateway_cache_destroy(cache);
    stoa_jwt_keyset_free(&keys);
    stoa_jwt_key_free(key);
}

/* s, to be freed by the teardown. */
static char *keep(char *s)
{
    ck_assert_uint_lt(n_made, STOA_ARRAY_LEN(made));
    made[n_made++] = s;
    return s;
}

/* The cache the test goes on with: a new one of the given size. */
static void use_cache_of(size_t entries)
{
    ngx_http_api_gateway_cache_destroy(cache);
    cache = ngx_http_api_gateway_cache_create(entries);
    ck_assert_ptr_nonnull(cache);
}

/* A token with the given subject, role and expiry; caller frees. */
static char *token_with(const char *sub, const char *sid, const char *role,
                        int64_t exp, const char *jti)
{
    stoa_buf_t claims, out;
    stoa_buf_init(&claims);
    stoa_buf_init(&out);
    stoa_buf_printf(&claims,
                    "{\"iss\":\"" ISSUER "\",\"aud\":\"stoa\",\"sub\":\"%s\","
                    "\"sid\":\"%s\",\"role\":\"%s\",\"iat\":%lld,"
                    "\"nbf\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
                    sub, sid, role, (long long)(now - 1), (long long)(now - 1),
                    (long long)exp, jti);
    ck_assert_int_eq(stoa_jwt_sign(key, claims.data, &out), STOA_OK);
    stoa_buf_free(&claims);
    char *token = strdup(out.data);
    stoa_buf_free(&out);
    return token;
}

/* A client token of the default subject and session; freed by the
 * teardown. */
static char *client_token(int64_t exp, const char *jti)
{
    return keep(token_with(SUB, SID, "client", exp, jti));
}

static char *token_numbered(int n)
{
    char jti[40];
    snprintf(jti, sizeof(jti), "jti-%d", n);
    return token_with(SUB, SID, "client", now + 900, jti);
}

/* The check of token at time at through cache c (NULL: none). */
static stoa_jwt_status_t run_in(ngx_http_api_gateway_cache_t *c,
                                const char *token, int64_t at)
{
    return ngx_http_api_gateway_check(c, &check, token, strlen(token), at, &id);
}

static stoa_jwt_status_t run(const char *token, int64_t at)
{
    return run_in(cache, token, at);
}

/* What the check of token says at time at with the empty key set: OK only
 * when the cache has it. The key set is put back afterwards. */
static stoa_jwt_status_t run_keyless(const char *token, int64_t at)
{
    check.keys = &no_keys;
    stoa_jwt_status_t st = run(token, at);
    check.keys = &keys;
    return st;
}

START_TEST(verifies_and_fills_the_identity)
{
    char *token = keep(token_with(SUB, SID, "finance", now + 900, "jti-1"));
    for (int round = 0; round < 2; round++) { /* verified, then cached */
        memset(&id, 'x', sizeof(id));
        ck_assert_int_eq(run(token, now), STOA_JWT_OK);
        ck_assert_str_eq(id.sub, SUB);
        ck_assert_str_eq(id.sid, SID);
        ck_assert_str_eq(id.role, "finance");
        ck_assert_str_eq(id.jti, "jti-1");
        ck_assert_int_eq(id.exp, now + 900);
    }
}
END_TEST

START_TEST(repeat_is_served_from_the_cache)
{
    char *token = keep(token_numbered(1));
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);

    ck_assert_int_eq(run_keyless(token, now), STOA_JWT_OK);
    ck_assert_str_eq(id.sub, SUB);

    /* Without a cache the same token needs its key. */
    check.keys = &no_keys;
    ck_assert_int_eq(run_in(NULL, token, now), STOA_JWT_UNKNOWN_KID);

    /* A key set read again invalidates what the old one verified. */
    check.generation++;
    ck_assert_int_eq(run(token, now), STOA_JWT_UNKNOWN_KID);
}
END_TEST

START_TEST(entries_belong_to_one_profile)
{
    char *token = keep(token_numbered(1));
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);

    /* Another location wants another issuer: no shortcut through the
     * cache, the token is checked (and refused) for what it is. */
    check.profile = 2;
    check.issuer = "https://elsewhere.example";
    ck_assert_int_eq(run(token, now), STOA_JWT_BAD_ISSUER);
    ck_assert_int_eq(run_keyless(token, now), STOA_JWT_UNKNOWN_KID);

    /* The first profile still has it. */
    check.profile = 1;
    check.issuer = ISSUER;
    ck_assert_int_eq(run_keyless(token, now), STOA_JWT_OK);
}
END_TEST

START_TEST(entries_die_at_expiry_plus_leeway)
{
    char *token = client_token(now + 10, "short");
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);

    /* exp 10 s away, leeway 5 s: alive until the 15th second. */
    ck_assert_int_eq(run_keyless(token, now + 14), STOA_JWT_OK);
    ck_assert_int_eq(run_keyless(token, now + 15), STOA_JWT_UNKNOWN_KID);

    ck_assert_int_eq(run(token, now + 15), STOA_JWT_EXPIRED);
}
END_TEST

START_TEST(refused_tokens_are_not_cached)
{
    char *token = keep(token_numbered(1));
    /* Refused for its audience, then presented where any audience goes:
     * it must be verified (and fail on the missing key), not looked up. */
    check.audience = "other";
    ck_assert_int_eq(run(token, now), STOA_JWT_BAD_AUDIENCE);
    check.audience = "stoa";
    ck_assert_int_eq(run_keyless(token, now), STOA_JWT_UNKNOWN_KID);

    /* A tampered copy of a cached token is not the cached token. */
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);
    size_t len = strlen(token);
    token[len - 2] = token[len - 2] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(run(token, now), STOA_JWT_BAD_SIGNATURE);
}
END_TEST

/* The high-S twin of a cached token is another string, so it is
 * verified, and refused, rather than found. */
START_TEST(high_s_twin_is_refused_even_after_the_original)
{
    char *token = keep(token_numbered(1));
    char *twin = keep(test_jwt_twin(token));
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);
    for (int round = 0; round < 2; round++)
        ck_assert_int_eq(run(twin, now), STOA_JWT_BAD_SIGNATURE);
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);
}
END_TEST

START_TEST(oversized_tokens_are_refused_first)
{
    char *big = keep(test_repeat('e', STOA_JWT_MAX_LEN + 1));
    ck_assert_int_eq(run(big, now), STOA_JWT_TOO_LONG);
    big = keep(test_repeat('e', 12 * 1024));
    ck_assert_int_eq(run(big, now), STOA_JWT_TOO_LONG);
}
END_TEST

START_TEST(size_is_bounded)
{
    ck_assert_ptr_null(ngx_http_api_gateway_cache_create(0));
    use_cache_of(5);
    ck_assert_uint_eq(ngx_http_api_gateway_cache_size(cache), 8);

    enum { N = 200 };
    char *tokens[N];
    for (int i = 0; i < N; i++) {
        tokens[i] = token_numbered(i);
        ck_assert_int_eq(run(tokens[i], now), STOA_JWT_OK);
    }
    ck_assert_uint_eq(ngx_http_api_gateway_cache_size(cache), 8);

    /* At most 8 of the 200 still pass without their key; the newest does. */
    int hits = 0;
    for (int i = 0; i < N; i++)
        hits += run_keyless(tokens[i], now) == STOA_JWT_OK;
    ck_assert_int_ge(hits, 1);
    ck_assert_int_le(hits, 8);
    ck_assert_int_eq(run_keyless(tokens[N - 1], now), STOA_JWT_OK);

    ngx_http_api_gateway_cache_clear(cache);
    ck_assert_int_eq(run_keyless(tokens[N - 1], now), STOA_JWT_UNKNOWN_KID);
    for (int i = 0; i < N; i++)
        free(tokens[i]);
}
END_TEST

START_TEST(the_entry_with_most_life_left_stays)
{
    /* One set of four ways and seven tokens: the one with most life left
     * must survive the six short-lived ones, which evict each other. */
    use_cache_of(4);
    char *lasting = client_token(now + 900, "lasting");
    ck_assert_int_eq(run(lasting, now), STOA_JWT_OK);
    for (int i = 0; i < 6; i++) {
        char jti[32];
        snprintf(jti, sizeof(jti), "short-%d", i);
        char *t = token_with(SUB, SID, "client", now + 1, jti);
        ck_assert_int_eq(run(t, now), STOA_JWT_OK);
        free(t);
    }
    ck_assert_int_eq(run_keyless(lasting, now), STOA_JWT_OK);
}
END_TEST

START_TEST(long_claims_verify_but_are_not_cached)
{
    char *sub = keep(test_repeat('s', STOA_JWT_CLAIM_MAX));
    char *sid = keep(test_repeat('i', STOA_JWT_CLAIM_MAX));
    char *token = keep(token_with(sub, sid, "client", now + 900, "long"));
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);
    ck_assert_str_eq(id.sub, sub);
    ck_assert_str_eq(id.sid, sid);
    ck_assert_int_eq(run_keyless(token, now), STOA_JWT_UNKNOWN_KID);
}
END_TEST

START_TEST(empty_subject_or_role_is_no_identity)
{
    char *token = keep(token_with("", SID, "client", now + 900, "no-sub"));
    ck_assert_int_eq(run(token, now), STOA_JWT_MISSING_CLAIM);
    token = keep(token_with(SUB, SID, "", now + 900, "no-role"));
    ck_assert_int_eq(run(token, now), STOA_JWT_MISSING_CLAIM);
}
END_TEST

START_TEST(extreme_expiry_does_not_overflow)
{
    /* exp at the top of int64: the checks must not overflow adding the
     * leeway (an UBSan build aborts if they do), and the entry lives. */
    char *token = client_token(INT64_MAX, "forever");
    ck_assert_int_eq(run(token, now), STOA_JWT_OK);
    ck_assert_int_eq(id.exp, INT64_MAX);
    ck_assert_int_eq(run_keyless(token, now + 86400), STOA_JWT_OK);
}
END_TEST

static Suite *gateway_cache_suite(void)
{
    Suite *s = suite_create("gateway_cache");
    TCase *tc = test_case("check", setup, teardown);
    tcase_add_test(tc, verifies_and_fills_the_identity);
    tcase_add_test(tc, repeat_is_served_from_the_cache);
    tcase_add_test(tc, entries_belong_to_one_profile);
    tcase_add_test(tc, entries_die_at_expiry_plus_leeway);
    tcase_add_test(tc, refused_tokens_are_not_cached);
    tcase_add_test(tc, high_s_twin_is_refused_even_after_the_original);
    tcase_add_test(tc, oversized_tokens_are_refused_first);
    tcase_add_test(tc, size_is_bounded);
    tcase_add_test(tc, the_entry_with_most_life_left_stays);
    tcase_add_test(tc, long_claims_verify_but_are_not_cached);
    tcase_add_test(tc, empty_subject_or_role_is_no_identity);
    tcase_add_test(tc, extreme_expiry_does_not_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(gateway_cache_suite());
}
