/* bench_gateway.c - the gateway's token check (SPEC §9): a first check of a
 * token against a cached repeat, in process, through the very code the
 * nginx module runs (ngx_http_api_gateway_guarded_check: the guard around
 * the shared core, then ngx_http_api_gateway_check: hash, cache probe,
 * stoa_jwt_verify, cache fill).
 *
 * The ceiling is measured in the same run: one ES256 signature verification
 * with OpenSSL (a fresh EVP_MD_CTX, EVP_DigestVerifyInit and
 * EVP_DigestVerify over the token's signing input with its DER signature),
 * i.e. the least any first check must do. Bars: a first check costs at most
 * that plus 10%; a cached repeat at most 2 µs.
 *
 *   bench_gateway [--rounds N] [--json FILE]
 *
 * Prints the medians of the rounds; exit status 1 when a bar is missed. */
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../unit/fixture_util.h"
#include "ngx_http_api_gateway_cache.h"
#include "ngx_http_api_gateway_guard.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/jwt.h"

#define TOKENS 2000
#define CACHED_ITERATIONS 1000000
#define FIRST_CHECK_BAR 1.10
#define CACHED_BAR_US 2.0

typedef struct {
    char *token;
    size_t len;
    size_t signing_len; /* header.payload */
    uint8_t der[80];    /* the signature as OpenSSL wants it */
    size_t der_len;
} bench_token_t;

static bench_token_t tokens[TOKENS];
static EVP_PKEY *public_key;
static stoa_jwt_keyset_t keyset;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_gateway: %s\n", what);
    exit(2);
}

/* JOSE r||s to DER, done once at set-up so the ceiling does no JOSE work. */
static void to_der(bench_token_t *t)
{
    const char *sig = strrchr(t->token, '.') + 1;
    uint8_t raw[66];
    size_t n;
    if (stoa_b64url_decode(sig, strlen(sig), raw, &n) != STOA_OK || n != 64)
        fail("bad signature in a generated token");
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *ss = BN_bin2bn(raw + 32, 32, NULL);
    if (!s || !r || !ss || !ECDSA_SIG_set0(s, r, ss))
        fail("ECDSA_SIG");
    uint8_t *p = t->der;
    int len = i2d_ECDSA_SIG(s, &p);
    if (len <= 0 || len > (int)sizeof(t->der))
        fail("i2d_ECDSA_SIG");
    t->der_len = (size_t)len;
    ECDSA_SIG_free(s);
}

static void set_up(void)
{
    stoa_jwt_key_t *key = stoa_jwt_key_generate();
    if (!key)
        fail("key generation");

    char err[256];
    if (test_public_keyset(key, &keyset, err, sizeof(err)) != STOA_OK)
        fail(err);

    /* The same public key for the ceiling, from the key's PEM. */
    char path[] = "/tmp/bench_gateway_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        fail("mkstemp");
    close(fd);
    unlink(path);
    if (stoa_jwt_key_save_pem(key, path) != STOA_OK)
        fail("saving the key");
    FILE *f = fopen(path, "rb");
    EVP_PKEY *private_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    unlink(path);
    if (!private_key)
        fail("reading the key back");
    /* Public half only, as a verifier holds it. */
    uint8_t *spki = NULL;
    int spki_len = i2d_PUBKEY(private_key, &spki);
    const uint8_t *p = spki;
    public_key = spki_len > 0 ? d2i_PUBKEY(NULL, &p, spki_len) : NULL;
    OPENSSL_free(spki);
    EVP_PKEY_free(private_key);
    if (!public_key)
        fail("public key");

    /* Claims shaped like the auth pool's, each token distinct. */
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < TOKENS; i++) {
        char sub[STOA_UUID_STR_LEN + 1], sid[STOA_UUID_STR_LEN + 1],
            jti[STOA_UUID_STR_LEN + 1], claims[512];
        stoa_uuid_v4(sub);
        stoa_uuid_v4(sid);
        stoa_uuid_v4(jti);
        snprintf(claims, sizeof(claims),
                 "{\"iss\":\"https://127.0.0.1:8443\",\"aud\":\"stoa\","
                 "\"sub\":\"%s\",\"sid\":\"%s\",\"role\":\"client\","
                 "\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"jti\":\"%s\"}",
                 sub, sid, (long long)now, (long long)now, (long long)now + 900,
                 jti);
        stoa_buf_t out;
        stoa_buf_init(&out);
        if (stoa_jwt_sign(key, claims, &out) != STOA_OK)
            fail("signing");
        tokens[i].token = out.data; /* kept for the whole run */
        tokens[i].len = out.len;
        tokens[i].signing_len = (size_t)(strrchr(out.data, '.') - out.data);
        to_der(&tokens[i]);
    }
    stoa_jwt_key_free(key);
}

static ngx_http_api_gateway_check_t check_for(void)
{
    ngx_http_api_gateway_check_t check = {
        .keys = &keyset,
        .generation = 1,
        .profile = 1,
        .issuer = "https://127.0.0.1:8443",
        .audience = "stoa",
        .leeway = 30,
    };
    return check;
}

/* One check the way the module makes it, through the guard. */
static stoa_jwt_status_t gateway_check(ngx_http_api_gateway_cache_t *cache,
                                       const ngx_http_api_gateway_check_t *check,
                                       const bench_token_t *t, int64_t now,
                                       ngx_http_api_gateway_identity_t *id)
{
    stoa_jwt_status_t st;
    if (ngx_http_api_gateway_guarded_check(cache, check, t->token, t->len, now,
                                           id, &st) != STOA_OK)
        fail("the guarded check failed");
    return st;
}

static double elapsed_us(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 +
           (double)(b->tv_nsec - a->tv_nsec) / 1e3;
}

static void verify_ceiling(const bench_token_t *t)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md ||
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, public_key) != 1 ||
        EVP_DigestVerify(md, t->der, t->der_len, (const uint8_t *)t->token,
                         t->signing_len) != 1)
        fail("ceiling verification failed");
    EVP_MD_CTX_free(md);
}

typedef struct {
    double ceiling, core, first; /* µs per token */
} first_round_t;

static double op_ceiling[TOKENS], op_core[TOKENS], op_first[TOKENS];

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One round over every token: the ceiling, the verification core alone
 * (no cache) and the gateway's first check (a cache that has never seen
 * the token), each timed one operation at a time and interleaved. The
 * medians per operation keep a preempted operation (the machine may be
 * busy with other things) from counting. */
static first_round_t bench_first(ngx_http_api_gateway_cache_t *cache)
{
    ngx_http_api_gateway_check_t check = check_for();
    ngx_http_api_gateway_identity_t id;
    int64_t now = (int64_t)time(NULL);
    struct timespec t0, t1, t2, t3;
    ngx_http_api_gateway_cache_clear(cache);
    for (int i = 0; i < TOKENS; i++) {
        const bench_token_t *t = &tokens[i];
        clock_gettime(CLOCK_MONOTONIC, &t0);
        verify_ceiling(t);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (ngx_http_api_gateway_check(NULL, &check, t->token, t->len, now,
                                       &id) != STOA_JWT_OK)
            fail("the core refused a good token");
        clock_gettime(CLOCK_MONOTONIC, &t2);
        if (gateway_check(cache, &check, t, now, &id) != STOA_JWT_OK)
            fail("first check refused a good token");
        clock_gettime(CLOCK_MONOTONIC, &t3);
        op_ceiling[i] = elapsed_us(&t0, &t1);
        op_core[i] = elapsed_us(&t1, &t2);
        op_first[i] = elapsed_us(&t2, &t3);
    }
    first_round_t m = {median(op_ceiling, TOKENS), median(op_core, TOKENS),
                       median(op_first, TOKENS)};
    return m;
}

/* µs per cached repeat, cycling over a few live tokens as a worker would
 * see a handful of active users. */
static double bench_cached(ngx_http_api_gateway_cache_t *cache)
{
    enum { ACTIVE = 64 };
    ngx_http_api_gateway_check_t check = check_for();
    ngx_http_api_gateway_identity_t id;
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < ACTIVE; i++)
        if (gateway_check(cache, &check, &tokens[i], now, &id) != STOA_JWT_OK)
            fail("warm-up refused a good token");
    /* Proof the loop below is all hits: without keys only the cache can
     * answer. */
    stoa_jwt_keyset_t none;
    memset(&none, 0, sizeof(none));
    check.keys = &none;
    double t0 = now_s();
    for (int i = 0; i < CACHED_ITERATIONS; i++) {
        const bench_token_t *t = &tokens[i % ACTIVE];
        if (gateway_check(cache, &check, t, now, &id) != STOA_JWT_OK)
            fail("a cached repeat missed the cache");
    }
    return (now_s() - t0) * 1e6 / CACHED_ITERATIONS;
}

int main(int argc, char **argv)
{
    int rounds = 3;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--rounds N] [--json FILE]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > 100)
        fail("--rounds must be 1..100");

    set_up();
    ngx_http_api_gateway_cache_t *cache =
        ngx_http_api_gateway_cache_create(8192);
    if (!cache)
        fail("cache");

    double ceiling[100], core[100], first[100], cached[100];
    double first_ratios[100], core_ratios[100];
    bench_first(cache); /* warm-up */
    for (int r = 0; r < rounds; r++) {
        first_round_t fr = bench_first(cache);
        ceiling[r] = fr.ceiling;
        core[r] = fr.core;
        first[r] = fr.first;
        first_ratios[r] = fr.first / fr.ceiling;
        core_ratios[r] = fr.core / fr.ceiling;
        cached[r] = bench_cached(cache);
    }
    double c = median(ceiling, rounds), v = median(core, rounds),
           f = median(first, rounds), h = median(cached, rounds);
    double first_ratio = median(first_ratios, rounds),
           core_ratio = median(core_ratios, rounds), cached_ratio = h / c;
    bool first_ok = first_ratio <= FIRST_CHECK_BAR;
    bool cached_ok = h <= CACHED_BAR_US;

    printf(
        "gateway token check, medians of %d rounds (%d tokens, %d repeats)\n",
        rounds, TOKENS, CACHED_ITERATIONS);
    printf("  ES256 verify (OpenSSL, ceiling)  %8.2f us\n", c);
    printf("  stoa_jwt_verify alone            %8.2f us  ratio %.3f\n", v,
           core_ratio);
    printf("  first check                      %8.2f us  ratio %.3f of the "
           "ceiling (bar <= %.2f)  %s\n",
           f, first_ratio, FIRST_CHECK_BAR, first_ok ? "ok" : "MISSED");
    printf("  cached repeat                    %8.3f us  ratio %.4f of the "
           "ceiling (bar <= %.1f us)  %s\n",
           h, cached_ratio, CACHED_BAR_US, cached_ok ? "ok" : "MISSED");

    if (json) {
        FILE *out = fopen(json, "w");
        if (!out)
            fail("cannot write the JSON result");
        fprintf(out,
                "{\"ceiling_verify_us\":%.3f,\"core_verify_us\":%.3f,"
                "\"first_check_us\":%.3f,"
                "\"cached_repeat_us\":%.4f,\"first_check_ratio\":%.4f,"
                "\"cached_repeat_ratio\":%.5f,\"first_check_ok\":%s,"
                "\"cached_repeat_ok\":%s}\n",
                c, v, f, h, first_ratio, cached_ratio,
                first_ok ? "true" : "false", cached_ok ? "true" : "false");
        fclose(out);
    }

    ngx_http_api_gateway_cache_destroy(cache);
    stoa_jwt_keyset_free(&keyset);
    EVP_PKEY_free(public_key);
    for (int i = 0; i < TOKENS; i++)
        free(tokens[i].token);
    return first_ok && cached_ok ? 0 : 1;
}
