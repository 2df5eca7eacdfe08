/* jwt.c - ES256 JWS: keys, JWKS, signing and bounded verification. */
#include "stoa/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

#include "stoa/crypto.h"

#define COORD_LEN 32
#define SIG_LEN 64

/* The order n of the P-256 group and floor(n / 2), big-endian. An ECDSA
 * signature (r, s) has a twin (r, n - s) that verifies just as well, so a
 * token would have two valid spellings (two cache entries, two "unique"
 * strings for one signing). Only the low half, s <= n / 2, is issued and
 * accepted. */
static const uint8_t p256_order[COORD_LEN] = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};
static const uint8_t p256_half_order[COORD_LEN] = {
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
    0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};

/* Fixed-width big-endian numbers compare like their bytes. */
static bool s_is_low(const uint8_t s[COORD_LEN])
{
    return memcmp(s, p256_half_order, COORD_LEN) <= 0;
}

/* s = n - s, for 0 < s < n (what OpenSSL returns). */
static void s_negate(uint8_t s[COORD_LEN])
{
    unsigned borrow = 0;
    for (size_t i = COORD_LEN; i-- > 0;) {
        unsigned d = (unsigned)p256_order[i] - s[i] - borrow;
        s[i] = (uint8_t)d;
        borrow = (d >> 8) & 1;
    }
}

struct stoa_jwt_key_s {
    EVP_PKEY *pkey;
    bool is_private;
    char kid[STOA_JWT_KID_MAX + 1];
    char x[48], y[48]; /* base64url coordinates */
    /* A digest-verify context set up once with this key: each check
     * copies it instead of fetching algorithms and key data again. */
    EVP_MD_CTX *verify_template;
};

const char *stoa_jwt_status_name(stoa_jwt_status_t st)
{
    static const char *const names[] = {
        "ok",          "malformed",     "too_long",      "bad_alg",
        "unknown_kid", "bad_signature", "expired",       "not_yet_valid",
        "bad_issuer",  "bad_audience",  "missing_claim",
    };
    return (size_t)st < STOA_ARRAY_LEN(names) ? names[st] : "unknown";
}

/* Fills x, y and kid (RFC 7638 thumbprint) from the public point. */
static int key_describe(stoa_jwt_key_t *key)
{
    BIGNUM *bx = NULL, *by = NULL;
    uint8_t xb[COORD_LEN], yb[COORD_LEN];
    int rc = STOA_ERROR;
    if (!EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) ||
        !EVP_PKEY_get_bn_param(key->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) ||
        BN_bn2binpad(bx, xb, COORD_LEN) != COORD_LEN ||
        BN_bn2binpad(by, yb, COORD_LEN) != COORD_LEN)
        goto out;
    stoa_b64url_encode(xb, COORD_LEN, key->x);
    stoa_b64url_encode(yb, COORD_LEN, key->y);
    char canonical[160];
    int n =
        snprintf(canonical, sizeof(canonical),
                 "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}",
                 key->x, key->y);
    uint8_t digest[STOA_SHA256_LEN];
    stoa_sha256(canonical, (size_t)n, digest);
    stoa_b64url_encode(digest, sizeof(digest), key->kid);
    rc = STOA_OK;
out:
    BN_free(bx);
    BN_free(by);
    return rc;
}

static bool is_p256(EVP_PKEY *pkey)
{
    char group[32];
    size_t glen = 0;
    return EVP_PKEY_is_a(pkey, "EC") &&
           EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME,
                                          group, sizeof(group), &glen) &&
           strcmp(group, "prime256v1") == 0;
}

static stoa_jwt_key_t *key_wrap(EVP_PKEY *pkey, bool is_private)
{
    if (!pkey || !is_p256(pkey)) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    stoa_jwt_key_t *key = stoa_xcalloc(1, sizeof(*key));
    key->pkey = pkey;
    key->is_private = is_private;
    if (key_describe(key) != STOA_OK) {
        stoa_jwt_key_free(key);
        return NULL;
    }
    return key;
}

stoa_jwt_key_t *stoa_jwt_key_generate(void)
{
    return key_wrap(EVP_EC_gen("P-256"), true);
}

stoa_jwt_key_t *stoa_jwt_key_load_pem(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return key_wrap(pkey, true);
}

int stoa_jwt_key_save_pem(const stoa_jwt_key_t *key, const char *path)
{
    mode_t old = umask(077);
    FILE *f = fopen(path, "wbx");
    umask(old);
    if (!f)
        return STOA_ERROR;
    int ok = PEM_write_PrivateKey(f, key->pkey, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0)
        ok = 0;
    return ok ? STOA_OK : STOA_ERROR;
}

void stoa_jwt_key_free(stoa_jwt_key_t *key)
{
    if (!key)
        return;
    EVP_MD_CTX_free(key->verify_template);
    EVP_PKEY_free(key->pkey);
    free(key);
}

const char *stoa_jwt_key_id(const stoa_jwt_key_t *key)
{
    return key->kid;
}
bool stoa_jwt_key_is_private(const stoa_jwt_key_t *key)
{
    return key->is_private;
}

void stoa_jwt_key_jwk(const stoa_jwt_key_t *key, stoa_buf_t *out)
{
    stoa_buf_printf(
        out,
        "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\","
        "\"kid\":\"%s\",\"alg\":\"ES256\",\"use\":\"sig\"}",
        key->x, key->y, key->kid);
}

/* Builds a public key from JWK coordinates; checks the point. */
static stoa_jwt_key_t *key_from_coords(const uint8_t x[COORD_LEN],
                                       const uint8_t y[COORD_LEN])
{
    uint8_t point[1 + 2 * COORD_LEN];
    point[0] = 0x04;
    memcpy(point + 1, x, COORD_LEN);
    memcpy(point + 1 + COORD_LEN, y, COORD_LEN);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    stoa_jwt_key_t *key = NULL;
    if (!bld ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                         "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point,
                                          sizeof(point)) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1)
        goto out;
    key = key_wrap(pkey, false);
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return key;
}

static const char *tree_string(yajl_val obj, const char *name)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
    return v ? v->u.string : NULL;
}

static STOA_PRINTF(3, 4) int jwks_fail(char *err, size_t errlen,
                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return STOA_DECLINED;
}

static bool decode_coord(const char *b64, uint8_t out[COORD_LEN])
{
    uint8_t buf[64];
    size_t n = 0;
    size_t len = strlen(b64);
    return len <= 64 && stoa_b64url_decode(b64, len, buf, &n) == STOA_OK &&
           n == COORD_LEN && memcpy(out, buf, COORD_LEN);
}

int stoa_jwt_keyset_from_jwks(stoa_jwt_keyset_t *set, const char *text,
                              size_t len, char *err, size_t errlen)
{
    memset(set, 0, sizeof(*set));
    if (len > 256 * 1024)
        return jwks_fail(err, errlen, "JWKS larger than 256 KiB");
    char *copy = stoa_xstrndup(text, len);
    char yerr[128];
    yajl_val root = yajl_tree_parse(copy, yerr, sizeof(yerr));
    free(copy);
    if (!root)
        return jwks_fail(err, errlen, "JWKS is not valid JSON");
    const char *kpath[] = {"keys", NULL};
    yajl_val keys = yajl_tree_get(root, kpath, yajl_t_array);
    int rc = STOA_OK;
    if (!keys) {
        rc = jwks_fail(err, errlen, "JWKS has no \"keys\" array");
        goto out;
    }
    for (size_t i = 0; i < keys->u.array.len; i++) {
        yajl_val k = keys->u.array.values[i];
        const char *kty = tree_string(k, "kty");
        if (!YAJL_IS_OBJECT(k) || !kty || strcmp(kty, "EC") != 0)
            continue; /* other key types are not ours to use */
        const char *crv = tree_string(k, "crv"), *kid = tree_string(k, "kid");
        const char *x = tree_string(k, "x"), *y = tree_string(k, "y");
        const char *alg = tree_string(k, "alg");
        uint8_t xb[COORD_LEN], yb[COORD_LEN];
        if (!crv || strcmp(crv, "P-256") != 0 || !kid || !*kid ||
            strlen(kid) > STOA_JWT_KID_MAX || (alg && strcmp(alg, "ES256")) ||
            !x || !y || !decode_coord(x, xb) || !decode_coord(y, yb)) {
            rc = jwks_fail(err, errlen,
                           "JWKS key %zu is not a valid ES256 "
                           "P-256 key",
                           i);
            goto out;
        }
        if (stoa_jwt_keyset_find(set, kid)) {
            rc = jwks_fail(err, errlen, "JWKS has kid \"%.64s\" twice", kid);
            goto out;
        }
        if (set->nkeys == STOA_JWT_MAX_KEYS) {
            rc = jwks_fail(err, errlen, "JWKS has more than %d keys",
                           STOA_JWT_MAX_KEYS);
            goto out;
        }
        stoa_jwt_key_t *key = key_from_coords(xb, yb);
        if (!key) {
            rc = jwks_fail(err, errlen, "JWKS key %zu is not on P-256", i);
            goto out;
        }
        /* The published kid names the key, whatever its thumbprint. */
        snprintf(key->kid, sizeof(key->kid), "%s", kid);
        set->keys[set->nkeys++] = key;
    }
    if (set->nkeys == 0)
        rc = jwks_fail(err, errlen, "JWKS has no ES256 key");
out:
    yajl_tree_free(root);
    if (rc != STOA_OK)
        stoa_jwt_keyset_free(set);
    return rc;
}

void stoa_jwt_keyset_free(stoa_jwt_keyset_t *set)
{
    for (size_t i = 0; i < set->nkeys; i++)
        stoa_jwt_key_free(set->keys[i]);
    set->nkeys = 0;
}

const stoa_jwt_key_t *stoa_jwt_keyset_find(const stoa_jwt_keyset_t *set,
                                           const char *kid)
{
    for (size_t i = 0; i < set->nkeys; i++)
        if (strcmp(set->keys[i]->kid, kid) == 0)
            return set->keys[i];
    return NULL;
}

int stoa_jwt_sign(const stoa_jwt_key_t *key, const char *claims_json,
                  stoa_buf_t *out)
{
    if (!key->is_private)
        return STOA_ERROR;
    char header[160];
    int hn = snprintf(header, sizeof(header),
                      "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
                      key->kid);
    size_t clen = strlen(claims_json);
    size_t start = out->len;
    stoa_buf_reserve(out, stoa_b64url_encoded_len((size_t)hn) +
                              stoa_b64url_encoded_len(clen) + 100);
    out->len += stoa_b64url_encode(header, (size_t)hn, out->data + out->len);
    out->data[out->len++] = '.';
    stoa_buf_reserve(out, stoa_b64url_encoded_len(clen) + 100);
    out->len += stoa_b64url_encode(claims_json, clen, out->data + out->len);

    uint8_t der[80];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok =
        md &&
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) == 1 &&
        EVP_DigestSign(md, der, &der_len, (const uint8_t *)out->data + start,
                       out->len - start) == 1;
    EVP_MD_CTX_free(md);
    if (!ok)
        goto fail;
    /* DER ECDSA-Sig-Value -> JOSE r||s, each left-padded to 32 bytes. */
    const uint8_t *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (!sig)
        goto fail;
    uint8_t raw[SIG_LEN];
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    ok = BN_bn2binpad(r, raw, COORD_LEN) == COORD_LEN &&
         BN_bn2binpad(s, raw + COORD_LEN, COORD_LEN) == COORD_LEN;
    ECDSA_SIG_free(sig);
    if (!ok)
        goto fail;
    /* OpenSSL returns either half; verifiers here accept only the low. */
    if (!s_is_low(raw + COORD_LEN))
        s_negate(raw + COORD_LEN);
    stoa_buf_reserve(out, 100);
    out->data[out->len++] = '.';
    out->len += stoa_b64url_encode(raw, SIG_LEN, out->data + out->len);
    return STOA_OK;
fail:
    out->len = start;
    if (out->cap)
        out->data[start] = '\0';
    return STOA_ERROR;
}

/* One DER INTEGER from a 32-byte big-endian value: leading zeros dropped,
 * a zero byte added when the high bit is set (DER integers are signed). */
static size_t der_integer(const uint8_t v[COORD_LEN], uint8_t *out)
{
    size_t i = 0;
    while (i < COORD_LEN - 1 && v[i] == 0)
        i++;
    size_t n = COORD_LEN - i;
    bool pad = v[i] & 0x80;
    out[0] = 0x02;
    out[1] = (uint8_t)(n + pad);
    if (pad)
        out[2] = 0;
    memcpy(out + 2 + pad, v + i, n);
    return 2 + pad + n;
}

/* JOSE r||s to the DER ECDSA-Sig-Value OpenSSL verifies. For P-256 the
 * sequence is at most 72 bytes, so every length fits in one byte. */
static size_t jose_to_der(const uint8_t raw[SIG_LEN], uint8_t der[80])
{
    size_t n = der_integer(raw, der + 2);
    n += der_integer(raw + COORD_LEN, der + 2 + n);
    der[0] = 0x30;
    der[1] = (uint8_t)n;
    return n + 2;
}

static bool verify_sig(const stoa_jwt_key_t *key, const char *data, size_t len,
                       const uint8_t raw[SIG_LEN])
{
    uint8_t der[80];
    size_t der_len = jose_to_der(raw, der);
    stoa_jwt_key_t *k = (stoa_jwt_key_t *)key; /* the template is a cache */
    if (!k->verify_template) {
        EVP_MD_CTX *t = EVP_MD_CTX_new();
        if (!t ||
            EVP_DigestVerifyInit(t, NULL, EVP_sha256(), NULL, k->pkey) != 1) {
            EVP_MD_CTX_free(t);
            return false;
        }
        k->verify_template = t;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok =
        md && EVP_MD_CTX_copy_ex(md, k->verify_template) == 1 &&
        EVP_DigestVerify(md, der, der_len, (const uint8_t *)data, len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

/* Decodes one base64url segment into a NUL-terminated buffer. */
static bool decode_segment(const char *s, size_t len, char *out, size_t cap,
                           size_t *out_len)
{
    if (len == 0 || stoa_b64url_encoded_len(cap - 1) < len)
        return false;
    if (stoa_b64url_decode(s, len, (uint8_t *)out, out_len) != STOA_OK)
        return false;
    out[*out_len] = '\0';
    return memchr(out, '\0', *out_len) == NULL;
}

static bool copy_claim(yajl_val obj, const char *name, char *out, size_t cap,
                       bool required)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_any);
    if (!v)
        return !required;
    if (!YAJL_IS_STRING(v) || strlen(v->u.string) >= cap)
        return false;
    strcpy(out, v->u.string);
    return true;
}

static bool int_claim(yajl_val obj, const char *name, int64_t *out,
                      bool required)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_any);
    if (!v)
        return !required;
    if (!YAJL_IS_INTEGER(v))
        return false;
    *out = (int64_t)YAJL_GET_INTEGER(v);
    return true;
}

static bool audience_ok(yajl_val claims, const char *audience)
{
    const char *path[] = {"aud", NULL};
    yajl_val v = yajl_tree_get(claims, path, yajl_t_any);
    if (!v)
        return false;
    if (YAJL_IS_STRING(v))
        return strcmp(v->u.string, audience) == 0;
    if (YAJL_IS_ARRAY(v))
        for (size_t i = 0; i < v->u.array.len; i++) {
            yajl_val a = v->u.array.values[i];
            if (YAJL_IS_STRING(a) && strcmp(a->u.string, audience) == 0)
                return true;
        }
    return false;
}

stoa_jwt_status_t stoa_jwt_verify(const stoa_jwt_keyset_t *set,
                                  const char *token, size_t len,
                                  const stoa_jwt_verify_opts_t *opts,
                                  stoa_jwt_claims_t *claims)
{
    memset(claims, 0, sizeof(*claims));
    if (len > STOA_JWT_MAX_LEN)
        return STOA_JWT_TOO_LONG;
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return STOA_JWT_MALFORMED;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
        return STOA_JWT_MALFORMED;
    size_t hlen = (size_t)(dot1 - token);
    size_t plen = (size_t)(dot2 - dot1 - 1);
    size_t slen = len - (size_t)(dot2 + 1 - token);

    char header[512];
    size_t n;
    if (!decode_segment(token, hlen, header, sizeof(header), &n))
        return STOA_JWT_MALFORMED;
    char yerr[64];
    yajl_val h = yajl_tree_parse(header, yerr, sizeof(yerr));
    if (!h || !YAJL_IS_OBJECT(h)) {
        yajl_tree_free(h);
        return STOA_JWT_MALFORMED;
    }
    const char *alg = tree_string(h, "alg");
    const char *kid = tree_string(h, "kid");
    const char *crit_path[] = {"crit", NULL};
    stoa_jwt_status_t st = STOA_JWT_OK;
    if (!alg || strcmp(alg, "ES256") != 0)
        st = STOA_JWT_BAD_ALG;
    else if (yajl_tree_get(h, crit_path, yajl_t_any))
        st = STOA_JWT_MALFORMED; /* no extensions are understood */
    else if (!kid || strlen(kid) > STOA_JWT_KID_MAX)
        st = STOA_JWT_MALFORMED;
    else
        strcpy(claims->kid, kid);
    yajl_tree_free(h);
    if (st != STOA_JWT_OK)
        return st;
    const stoa_jwt_key_t *key = stoa_jwt_keyset_find(set, claims->kid);
    if (!key)
        return STOA_JWT_UNKNOWN_KID;

    uint8_t sig[SIG_LEN + 3];
    if (slen != stoa_b64url_encoded_len(SIG_LEN) ||
        stoa_b64url_decode(dot2 + 1, slen, sig, &n) != STOA_OK || n != SIG_LEN)
        return STOA_JWT_BAD_SIGNATURE;
    if (!s_is_low(sig + COORD_LEN))
        return STOA_JWT_BAD_SIGNATURE; /* the high twin of a signature */
    if (!verify_sig(key, token, (size_t)(dot2 - token), sig))
        return STOA_JWT_BAD_SIGNATURE;

    /* Signed by us: the payload is still parsed defensively. */
    char payload[STOA_JWT_MAX_LEN];
    if (!decode_segment(dot1 + 1, plen, payload, sizeof(payload), &n))
        return STOA_JWT_MALFORMED;
    yajl_val c = yajl_tree_parse(payload, yerr, sizeof(yerr));
    if (!c || !YAJL_IS_OBJECT(c)) {
        yajl_tree_free(c);
        return STOA_JWT_MALFORMED;
    }
    char iss[256];
    if (!copy_claim(c, "sub", claims->sub, sizeof(claims->sub), true) ||
        !copy_claim(c, "sid", claims->sid, sizeof(claims->sid), false) ||
        !copy_claim(c, "role", claims->role, sizeof(claims->role), true) ||
        !copy_claim(c, "jti", claims->jti, sizeof(claims->jti), false) ||
        !copy_claim(c, "scope", claims->scope, sizeof(claims->scope), false) ||
        !int_claim(c, "exp", &claims->exp, true) ||
        !int_claim(c, "nbf", &claims->nbf, false) ||
        !int_claim(c, "iat", &claims->iat, false)) {
        st = STOA_JWT_MISSING_CLAIM;
    } else if (claims->exp <= opts->now - opts->leeway) {
        st = STOA_JWT_EXPIRED;
    } else if ((claims->nbf && claims->nbf > opts->now + opts->leeway) ||
               (claims->iat && claims->iat > opts->now + opts->leeway)) {
        st = STOA_JWT_NOT_YET_VALID;
    } else if (opts->issuer && (!copy_claim(c, "iss", iss, sizeof(iss), true) ||
                                strcmp(iss, opts->issuer) != 0)) {
        st = STOA_JWT_BAD_ISSUER;
    } else if (opts->audience && !audience_ok(c, opts->audience)) {
        st = STOA_JWT_BAD_AUDIENCE;
    }
    yajl_tree_free(c);
    return st;
}
