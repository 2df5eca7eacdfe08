/* check_jwt.c - ES256 signatures are low-S only: the signer never issues a
 * high-S signature, and the verifier refuses the high twin (r, n - s) of a
 * valid token although plain ECDSA (OpenSSL, checked here) accepts it. */
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <time.h>

#include "check_jwt_util.h"
#include "check_util.h"
#include "stoa/buf.h"
#include "stoa/jwt.h"

#define ISSUER "https://stoa.example"

static stoa_jwt_key_t *key;
static stoa_jwt_keyset_t
    keys; /* the key's public half, as the gateway has it */
static stoa_jwt_verify_opts_t opts;

static void setup(void)
{
    key = stoa_jwt_key_generate();
    ck_assert_ptr_nonnull(key);
    test_jwt_public_keyset(key, &keys);
    opts = (stoa_jwt_verify_opts_t){.issuer = ISSUER,
                                    .audience = "stoa",
                                    .leeway = 5,
                                    .now = (int64_t)time(NULL)};
}

static void teardown(void)
{
    stoa_jwt_keyset_free(&keys);
    stoa_jwt_key_free(key);
}

/* A token with jti n; caller frees. */
static char *token_numbered(int n)
{
    stoa_buf_t claims, out;
    stoa_buf_init(&claims);
    stoa_buf_init(&out);
    stoa_buf_printf(&claims,
                    "{\"iss\":\"" ISSUER "\",\"aud\":\"stoa\",\"sub\":\"u-1\","
                    "\"role\":\"client\",\"exp\":%lld,\"jti\":\"jti-%d\"}",
                    (long long)opts.now + 900, n);
    ck_assert_int_eq(stoa_jwt_sign(key, claims.data, &out), STOA_OK);
    stoa_buf_free(&claims);
    char *token = strdup(out.data);
    stoa_buf_free(&out);
    return token;
}

static stoa_jwt_status_t verify(const char *token)
{
    stoa_jwt_claims_t claims;
    return stoa_jwt_verify(&keys, token, strlen(token), &opts, &claims);
}

/* Plain ECDSA over the token's signing input, with the private key read
 * back from PEM: no low-S rule there. */
static bool openssl_accepts(const char *token)
{
    char *pem = test_write_file("", 0);
    unlink(pem); /* save_pem creates the file itself */
    ck_assert_int_eq(stoa_jwt_key_save_pem(key, pem), STOA_OK);
    FILE *f = fopen(pem, "rb");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    test_remove_file(pem);
    ck_assert_ptr_nonnull(pkey);

    const char *dot = strrchr(token, '.');
    uint8_t raw[67];
    size_t n = 0;
    ck_assert_int_eq(stoa_b64url_decode(dot + 1, strlen(dot + 1), raw, &n),
                     STOA_OK);
    ck_assert_uint_eq(n, 64);
    ECDSA_SIG *sig = ECDSA_SIG_new();
    ck_assert_int_eq(ECDSA_SIG_set0(sig, BN_bin2bn(raw, 32, NULL),
                                    BN_bin2bn(raw + 32, 32, NULL)),
                     1);
    uint8_t *der = NULL;
    int der_len = i2d_ECDSA_SIG(sig, &der);
    ck_assert_int_gt(der_len, 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ck_assert_int_eq(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey),
                     1);
    int ok = EVP_DigestVerify(md, der, (size_t)der_len, (const uint8_t *)token,
                              (size_t)(dot - token));
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    EVP_PKEY_free(pkey);
    return ok == 1;
}

/* OpenSSL returns a high s about half the time: 64 signatures all low is
 * the normalisation at work, not luck (2^-64). */
START_TEST(signer_issues_low_s_only)
{
    for (int i = 0; i < 64; i++) {
        char *token = token_numbered(i);
        ck_assert_msg(test_jwt_is_low_s(token), "signature %d is high-S", i);
        ck_assert_int_eq(verify(token), STOA_JWT_OK);
        ck_assert(openssl_accepts(token));
        free(token);
    }
}
END_TEST

START_TEST(high_s_twin_is_refused)
{
    for (int i = 0; i < 8; i++) {
        char *token = token_numbered(i);
        char *twin = test_jwt_twin(token);
        ck_assert_str_ne(twin, token);
        ck_assert(!test_jwt_is_low_s(twin));
        /* A valid ECDSA signature of the same input... */
        ck_assert_msg(openssl_accepts(twin), "the twin is not a signature");
        /* ...that the verifier does not take. */
        ck_assert_int_eq(verify(twin), STOA_JWT_BAD_SIGNATURE);
        ck_assert_int_eq(verify(token), STOA_JWT_OK);
        free(twin);
        free(token);
    }
}
END_TEST

TEST_MAIN_ONE_CASE("jwt", setup, teardown, signer_issues_low_s_only,
                   high_s_twin_is_refused)
