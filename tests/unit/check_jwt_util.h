/* check_jwt_util.h - the high-S twin of an ES256 token, for the suites that
 * check it is refused (check_jwt, the gateway's check_gateway_cache).
 *
 * Computed with OpenSSL's BIGNUM and the group order OpenSSL reports, not
 * with the byte arithmetic of jwt.c, so the test does not share the code
 * it checks. Static inline, like check_util.h. */
#ifndef STOA_CHECK_JWT_UTIL_H
#define STOA_CHECK_JWT_UTIL_H

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "fixture_util.h"
#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/jwt.h"

#define TEST_JWT_COORD 32

/* Fills set with the public half of key, through its JWK, as the gateway
 * gets it (free with stoa_jwt_keyset_free()). */
static inline void test_jwt_public_keyset(const stoa_jwt_key_t *key,
                                          stoa_jwt_keyset_t *set)
{
    char err[256];
    ck_assert_msg(test_public_keyset(key, set, err, sizeof(err)) == STOA_OK,
                  "JWKS refused: %s", err);
}

/* The token's signature s as a BIGNUM (caller frees with BN_free). */
static inline BIGNUM *test_jwt_s(const char *token)
{
    const char *sig = strrchr(token, '.');
    ck_assert_ptr_nonnull(sig);
    sig++;
    uint8_t raw[2 * TEST_JWT_COORD + 3];
    size_t n = 0;
    ck_assert_int_eq(stoa_b64url_decode(sig, strlen(sig), raw, &n), STOA_OK);
    ck_assert_uint_eq(n, 2 * TEST_JWT_COORD);
    BIGNUM *s = BN_bin2bn(raw + TEST_JWT_COORD, TEST_JWT_COORD, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* The order n of P-256 (caller frees with BN_free). */
static inline BIGNUM *test_jwt_order(void)
{
    EC_GROUP *group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    ck_assert_ptr_nonnull(group);
    BIGNUM *order = BN_dup(EC_GROUP_get0_order(group));
    ck_assert_ptr_nonnull(order);
    EC_GROUP_free(group);
    return order;
}

/* True when the token's s is in the low half: 2s <= n. */
static inline bool test_jwt_is_low_s(const char *token)
{
    BIGNUM *s = test_jwt_s(token), *order = test_jwt_order();
    ck_assert_int_eq(BN_lshift1(s, s), 1);
    bool low = BN_cmp(s, order) <= 0;
    BN_free(s);
    BN_free(order);
    return low;
}

/* The same token with s replaced by n - s: the other signature that
 * verifies under plain ECDSA. Caller frees. */
static inline char *test_jwt_twin(const char *token)
{
    BIGNUM *s = test_jwt_s(token), *order = test_jwt_order();
    ck_assert_int_eq(BN_sub(s, order, s), 1);
    const char *sig = strrchr(token, '.') + 1;
    uint8_t raw[2 * TEST_JWT_COORD + 3];
    size_t n = 0;
    ck_assert_int_eq(stoa_b64url_decode(sig, strlen(sig), raw, &n), STOA_OK);
    ck_assert_int_eq(BN_bn2binpad(s, raw + TEST_JWT_COORD, TEST_JWT_COORD),
                     TEST_JWT_COORD);
    BN_free(s);
    BN_free(order);
    size_t prefix = (size_t)(sig - token);
    char *twin = malloc(prefix + stoa_b64url_encoded_len(n) + 1);
    ck_assert_ptr_nonnull(twin);
    memcpy(twin, token, prefix);
    stoa_b64url_encode(raw, n, twin + prefix);
    return twin;
}

#endif
