/* jwt.h - ES256 JSON Web Tokens: signing (auth pool) and verification
 * (the nginx gateway and tests). One core so issuer and verifier cannot
 * drift.
 *
 * Only compact JWS with alg ES256 (ECDSA P-256, SHA-256, the 64-byte JOSE
 * r||s signature) is accepted, and only in its low-S form (s <= n/2, as
 * in Bitcoin's BIP 62 and libsecp256k1): the signer normalises, the
 * verifier refuses the high twin (r, n - s), so one signing gives exactly
 * one valid token string. Verification does bounded work: tokens
 * longer than STOA_JWT_MAX_LEN are refused before any decoding, and every
 * decoded part lives in fixed buffers. Nothing here allocates in
 * proportion to attacker input beyond that cap. */
#ifndef STOA_JWT_H
#define STOA_JWT_H

#include "stoa/buf.h"
#include "stoa/core.h"

#define STOA_JWT_MAX_LEN 4096
#define STOA_JWT_KID_MAX 64
#define STOA_JWT_MAX_KEYS 16
#define STOA_JWT_CLAIM_MAX 128

typedef struct stoa_jwt_key_s stoa_jwt_key_t;

/* A set of public (or private) keys by kid. Caller frees with
 * stoa_jwt_keyset_free(). */
typedef struct {
    stoa_jwt_key_t *keys[STOA_JWT_MAX_KEYS];
    size_t nkeys;
} stoa_jwt_keyset_t;

/* Parses a JWKS document ({"keys":[{kty EC, crv P-256, x, y, kid}...]})
 * into set. Keys of other types are skipped; a malformed EC P-256 key, a
 * point not on the curve, a duplicate kid or no usable key at all is an
 * error (STOA_DECLINED, reason in err). */
STOA_MUSTCHECK int stoa_jwt_keyset_from_jwks(stoa_jwt_keyset_t *set,
                                             const char *text, size_t len,
                                             char *err, size_t errlen);
void stoa_jwt_keyset_free(stoa_jwt_keyset_t *set);
const stoa_jwt_key_t *stoa_jwt_keyset_find(const stoa_jwt_keyset_t *set,
                                           const char *kid);

/* Keys. */
stoa_jwt_key_t *stoa_jwt_key_generate(void);
/* Reads / writes a PEM private key (PKCS#8). */
stoa_jwt_key_t *stoa_jwt_key_load_pem(const char *path);
STOA_MUSTCHECK int stoa_jwt_key_save_pem(const stoa_jwt_key_t *key,
                                         const char *path);
void stoa_jwt_key_free(stoa_jwt_key_t *key);
/* The key id: the RFC 7638 JWK thumbprint (base64url SHA-256). Borrowed. */
const char *stoa_jwt_key_id(const stoa_jwt_key_t *key);
bool stoa_jwt_key_is_private(const stoa_jwt_key_t *key);
/* Appends the public JWK object of key to out (with kid, alg, use). */
void stoa_jwt_key_jwk(const stoa_jwt_key_t *key, stoa_buf_t *out);

/* Signs claims_json (a JSON object of our own making) with a private key
 * into out (appended); the signature is always low-S. STOA_OK or
 * STOA_ERROR. */
STOA_MUSTCHECK int stoa_jwt_sign(const stoa_jwt_key_t *key,
                                 const char *claims_json, stoa_buf_t *out);

typedef struct {
    const char *issuer;   /* NULL: not checked */
    const char *audience; /* NULL: not checked */
    int64_t leeway;       /* seconds */
    int64_t now;          /* unix time */
} stoa_jwt_verify_opts_t;

typedef struct {
    char kid[STOA_JWT_KID_MAX + 1];
    char sub[STOA_JWT_CLAIM_MAX + 1];
    char sid[STOA_JWT_CLAIM_MAX + 1];
    char role[STOA_JWT_CLAIM_MAX + 1];
    char jti[STOA_JWT_CLAIM_MAX + 1];
    char scope[STOA_JWT_CLAIM_MAX * 4 + 1];
    int64_t exp, nbf, iat;
} stoa_jwt_claims_t;

/* Why a token was refused. */
typedef enum {
    STOA_JWT_OK = 0,
    STOA_JWT_MALFORMED, /* structure, base64url, JSON */
    STOA_JWT_TOO_LONG,
    STOA_JWT_BAD_ALG,     /* anything but ES256 */
    STOA_JWT_UNKNOWN_KID, /* caller may reload keys and retry */
    STOA_JWT_BAD_SIGNATURE,
    STOA_JWT_EXPIRED,
    STOA_JWT_NOT_YET_VALID,
    STOA_JWT_BAD_ISSUER,
    STOA_JWT_BAD_AUDIENCE,
    STOA_JWT_MISSING_CLAIM
} stoa_jwt_status_t;

const char *stoa_jwt_status_name(stoa_jwt_status_t st);

/* Verifies token (len bytes, need not be NUL-terminated) against set.
 * A high-S signature is STOA_JWT_BAD_SIGNATURE. Fills claims on success. */
stoa_jwt_status_t stoa_jwt_verify(const stoa_jwt_keyset_t *set,
                                  const char *token, size_t len,
                                  const stoa_jwt_verify_opts_t *opts,
                                  stoa_jwt_claims_t *claims);

#endif
