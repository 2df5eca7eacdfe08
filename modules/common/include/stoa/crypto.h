/* crypto.h - CSPRNG, hashes, HMAC, constant-time compare, encodings, UUIDs.
 *
 * Thin wrappers over OpenSSL 3. Decoders are strict (they refuse padding,
 * whitespace and foreign alphabets) and never abort on bad input. */
#ifndef STOA_CRYPTO_H
#define STOA_CRYPTO_H

#include "stoa/arena.h"
#include "stoa/core.h"

#define STOA_SHA256_LEN 32
#define STOA_UUID_STR_LEN 36

/* Fills buf from the CSPRNG; aborts if the CSPRNG fails (nothing safe can
 * follow). */
void stoa_random_bytes(void *buf, size_t len);

/* nbytes of randomness as base64url without padding; arena-owned. */
char *stoa_random_token(stoa_arena_t *arena, size_t nbytes);

/* Constant-time equality of two buffers of the same length. */
bool stoa_ct_equal(const void *a, const void *b, size_t len);

void stoa_sha256(const void *data, size_t len, uint8_t out[STOA_SHA256_LEN]);
void stoa_hmac_sha256(const void *key, size_t key_len, const void *data,
                      size_t len, uint8_t out[STOA_SHA256_LEN]);

/* Encoders write a NUL-terminated string into out, which must hold
 * stoa_*_encoded_len(len) + 1 bytes. Return the string length. */
size_t stoa_hex_encode(const void *in, size_t len, char *out);
/* The value of one hex digit (either case), -1 for any other character. */
int stoa_hex_digit(char c);
size_t stoa_b64url_encoded_len(size_t len);
size_t stoa_b64url_encode(const void *in, size_t len, char *out);
size_t stoa_b64_encoded_len(size_t len);
size_t stoa_b64_encode(const void *in, size_t len, char *out);

/* Decoders: out must hold len (hex: len/2; base64: len*3/4+1) bytes.
 * STOA_OK with *out_len set, or STOA_DECLINED on malformed input. */
STOA_MUSTCHECK int stoa_hex_decode(const char *in, size_t len, uint8_t *out,
                                   size_t *out_len);
STOA_MUSTCHECK int stoa_b64url_decode(const char *in, size_t len, uint8_t *out,
                                      size_t *out_len);
STOA_MUSTCHECK int stoa_b64_decode(const char *in, size_t len, uint8_t *out,
                                   size_t *out_len);

/* A bytea value as Postgres writes it in text ("\x" then hex digits, the
 * form every sealed column reads back in) into out, which holds cap bytes.
 * text may be NULL (SQL NULL). The length is checked against cap before a
 * byte is written, so a damaged or planted value can neither overrun out
 * nor reach a decryption (AES-GCM writes plaintext before it checks the
 * tag). STOA_OK with *out_len set, or STOA_DECLINED (NULL, no "\x", a
 * malformed digit, longer than cap). */
STOA_MUSTCHECK int stoa_bytea_decode(const char *text, uint8_t *out, size_t cap,
                                     size_t *out_len);

/* A random (version 4) UUID in canonical lower-case form. */
void stoa_uuid_v4(char out[STOA_UUID_STR_LEN + 1]);
bool stoa_uuid_valid(const char *s);
/* The 16 bytes of a UUID in canonical form (either case), in order:
 * STOA_OK, or STOA_DECLINED when s is not one (stoa_uuid_valid). */
STOA_MUSTCHECK int stoa_uuid_bytes(const char *s, uint8_t out[16]);

/* AES-256-GCM with a random 96-bit nonce. Sealed form: nonce || ciphertext
 * || 16-byte tag, so sealed_len = len + STOA_AEAD_OVERHEAD. aad may be
 * NULL. STOA_OK, or STOA_DECLINED when open finds a forged or damaged
 * box. */
#define STOA_AEAD_KEY_LEN 32
#define STOA_AEAD_OVERHEAD 28
STOA_MUSTCHECK int stoa_aead_seal(const uint8_t key[STOA_AEAD_KEY_LEN],
                                  const void *plain, size_t len,
                                  const void *aad, size_t aad_len,
                                  uint8_t *sealed);
STOA_MUSTCHECK int stoa_aead_open(const uint8_t key[STOA_AEAD_KEY_LEN],
                                  const uint8_t *sealed, size_t sealed_len,
                                  const void *aad, size_t aad_len,
                                  uint8_t *plain, size_t *len);

/* Wipes memory the compiler may not optimise away. */
void stoa_wipe(void *ptr, size_t len);

#endif
