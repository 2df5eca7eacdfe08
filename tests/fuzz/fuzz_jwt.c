/* fuzz_jwt.c - the token parser the gateway runs on every bearer token
 * (stoa_jwt_verify) and the JWKS parser it loads its keys with.
 *
 * The first byte picks what the rest is:
 *   'T'  a token, verified against a fixed key set at a fixed time;
 *   'S'  a claims document, signed with the fixed key and verified, which
 *        reaches the claims checks behind the signature;
 *   'H'  "<header JSON>\n<claims JSON>" assembled into a token with a junk
 *        signature, which reaches the header checks and the kid lookup;
 *   'J'  a JWKS document.
 * The key is fixed (not generated) so a corpus token stays valid across
 * runs and the inputs replay the same way everywhere.
 *
 * Oracles (abort() on violation): a token over STOA_JWT_MAX_LEN is refused
 * as too long; accepted claims are NUL-terminated inside their buffers and
 * name the key's kid; a token we signed
 * ourselves never fails on its signature, algorithm or kid, and verifies
 * the same way twice; a junk signature is never accepted; a parsed JWKS
 * holds 1..STOA_JWT_MAX_KEYS keys, each found by its kid. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../unit/fixture_util.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A P-256 key made for this harness only; it protects nothing. */
static const char fuzz_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDIqjdOtIB3qCgb6T\n"
    "UOzMgJm08PrM8/bZS8Kq/HaFHamhRANCAARDy5B0rQiInhBZDVMHMy5+oNx//7SM\n"
    "zrYxkX8m6WtWtW9vbtnl3B+hKRjcL9q6t1Egc8JKwaSxDDkGBIBKmRM2\n"
    "-----END PRIVATE KEY-----\n";

/* Corpus tokens are issued around this time (2023-11-14T22:13:20Z). */
#define FUZZ_NOW 1700000000

static stoa_jwt_key_t *key;
static stoa_jwt_keyset_t keyset;

static void set_up(void)
{
    char path[] = "/tmp/fuzz_jwt_key_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    size_t len = sizeof(fuzz_key_pem) - 1;
    if (write(fd, fuzz_key_pem, len) != (ssize_t)len)
        abort();
    close(fd);
    key = stoa_jwt_key_load_pem(path);
    unlink(path);
    if (!key)
        abort();

    /* The public half, published the way the auth pool does it. */
    char err[256];
    if (test_public_keyset(key, &keyset, err, sizeof(err)) != STOA_OK)
        abort();
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_claims(const stoa_jwt_claims_t *c)
{
    if (!terminated(c->kid, sizeof(c->kid)) ||
        !terminated(c->sub, sizeof(c->sub)) ||
        !terminated(c->sid, sizeof(c->sid)) ||
        !terminated(c->role, sizeof(c->role)) ||
        !terminated(c->jti, sizeof(c->jti)) ||
        !terminated(c->scope, sizeof(c->scope)))
        abort();
    /* sub and role may be empty strings here: the gateway refuses those
     * itself (ngx_http_api_gateway_check). */
    if (strcmp(c->kid, stoa_jwt_key_id(key)) != 0)
        abort();
}

static stoa_jwt_status_t verify(const char *token, size_t len,
                                stoa_jwt_claims_t *claims)
{
    stoa_jwt_verify_opts_t opts = {
        .issuer = "https://stoa.example",
        .audience = "stoa",
        .leeway = 30,
        .now = FUZZ_NOW,
    };
    stoa_jwt_status_t st = stoa_jwt_verify(&keyset, token, len, &opts, claims);
    if ((int)st < STOA_JWT_OK || st > STOA_JWT_MISSING_CLAIM)
        abort();
    if (len > STOA_JWT_MAX_LEN && st != STOA_JWT_TOO_LONG)
        abort();
    if (st == STOA_JWT_OK)
        check_claims(claims);
    return st;
}

static void fuzz_token(const uint8_t *data, size_t size)
{
    stoa_jwt_claims_t claims;
    verify((const char *)data, size, &claims);
}

static void fuzz_signed_claims(const uint8_t *data, size_t size)
{
    /* stoa_jwt_sign takes a C string. */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    stoa_buf_t token;
    stoa_buf_init(&token);
    if (stoa_jwt_sign(key, text, &token) != STOA_OK)
        abort();
    free(text);

    stoa_jwt_claims_t first, second;
    stoa_jwt_status_t st = verify(token.data, token.len, &first);
    if (token.len <= STOA_JWT_MAX_LEN &&
        (st == STOA_JWT_TOO_LONG || st == STOA_JWT_BAD_SIGNATURE ||
         st == STOA_JWT_BAD_ALG || st == STOA_JWT_UNKNOWN_KID))
        abort();
    if (verify(token.data, token.len, &second) != st)
        abort();
    if (st == STOA_JWT_OK && memcmp(&first, &second, sizeof(first)) != 0)
        abort();
    stoa_buf_free(&token);
}

static void fuzz_header(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl ? (size_t)(nl - data) : size;
    size_t clen = nl ? size - hlen - 1 : 0;
    /* An all-zero r||s: never a valid ECDSA signature. */
    static const char junk_signature[] =
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAA";
    size_t cap = stoa_b64url_encoded_len(hlen) + stoa_b64url_encoded_len(clen) +
                 sizeof(junk_signature) + 3;
    char *token = malloc(cap);
    size_t n = stoa_b64url_encode(data, hlen, token);
    token[n++] = '.';
    n += stoa_b64url_encode(nl ? nl + 1 : data, clen, token + n);
    token[n++] = '.';
    memcpy(token + n, junk_signature, sizeof(junk_signature) - 1);
    n += sizeof(junk_signature) - 1;

    stoa_jwt_claims_t claims;
    if (verify(token, n, &claims) == STOA_JWT_OK)
        abort();
    free(token);
}

static void fuzz_jwks(const uint8_t *data, size_t size)
{
    stoa_jwt_keyset_t set;
    char err[256];
    if (stoa_jwt_keyset_from_jwks(&set, (const char *)data, size, err,
                                  sizeof(err)) != STOA_OK) {
        if (!terminated(err, sizeof(err)) || set.nkeys != 0)
            abort();
        return;
    }
    if (set.nkeys == 0 || set.nkeys > STOA_JWT_MAX_KEYS)
        abort();
    for (size_t i = 0; i < set.nkeys; i++) {
        const char *kid = stoa_jwt_key_id(set.keys[i]);
        if (stoa_jwt_keyset_find(&set, kid) != set.keys[i] ||
            stoa_jwt_key_is_private(set.keys[i]))
            abort();
    }
    stoa_jwt_keyset_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!key)
        set_up();
    if (size == 0)
        return 0;
    switch (data[0]) {
    case 'T':
        fuzz_token(data + 1, size - 1);
        break;
    case 'S':
        fuzz_signed_claims(data + 1, size - 1);
        break;
    case 'H':
        fuzz_header(data + 1, size - 1);
        break;
    case 'J':
        fuzz_jwks(data + 1, size - 1);
        break;
    default:
        break;
    }
    return 0;
}
