/* crypto.c - randomness, hashes, encodings (OpenSSL 3). */
#include "stoa/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void stoa_random_bytes(void *buf, size_t len)
{
    if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1) {
        fprintf(stderr, "stoa: CSPRNG failure\n");
        abort();
    }
}

char *stoa_random_token(stoa_arena_t *arena, size_t nbytes)
{
    uint8_t raw[128];
    STOA_ASSERT(nbytes <= sizeof(raw));
    stoa_random_bytes(raw, nbytes);
    char *out = stoa_arena_alloc(arena, stoa_b64url_encoded_len(nbytes) + 1);
    stoa_b64url_encode(raw, nbytes, out);
    stoa_wipe(raw, nbytes);
    return out;
}

bool stoa_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

void stoa_wipe(void *ptr, size_t len)
{
    OPENSSL_cleanse(ptr, len);
}

void stoa_sha256(const void *data, size_t len, uint8_t out[STOA_SHA256_LEN])
{
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1)
        stoa_assert_fail("EVP_Digest", __FILE__, __LINE__);
}

void stoa_hmac_sha256(const void *key, size_t key_len, const void *data,
                      size_t len, uint8_t out[STOA_SHA256_LEN])
{
    unsigned int n = 0;
    if (key_len > INT32_MAX ||
        !HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &n))
        stoa_assert_fail("HMAC", __FILE__, __LINE__);
}

size_t stoa_hex_encode(const void *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = in;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * len] = '\0';
    return 2 * len;
}

int stoa_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int stoa_hex_decode(const char *in, size_t len, uint8_t *out, size_t *out_len)
{
    if (len % 2)
        return STOA_DECLINED;
    for (size_t i = 0; i < len; i += 2) {
        int hi = stoa_hex_digit(in[i]), lo = stoa_hex_digit(in[i + 1]);
        if (hi < 0 || lo < 0)
            return STOA_DECLINED;
        out[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    *out_len = len / 2;
    return STOA_OK;
}

int stoa_bytea_decode(const char *text, uint8_t *out, size_t cap,
                      size_t *out_len)
{
    if (!text || text[0] != '\\' || text[1] != 'x')
        return STOA_DECLINED;
    size_t hex_len = strlen(text + 2);
    if (hex_len / 2 > cap)
        return STOA_DECLINED;
    return stoa_hex_decode(text + 2, hex_len, out, out_len);
}

static const char b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const char *alphabet, bool pad, const uint8_t *in,
                         size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    size_t rest = len - i;
    if (rest) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (rest == 2)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        if (rest == 2)
            out[o++] = alphabet[(v >> 6) & 63];
        if (pad) {
            if (rest == 1)
                out[o++] = '=';
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    return o;
}

size_t stoa_b64url_encoded_len(size_t len)
{
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

size_t stoa_b64url_encode(const void *in, size_t len, char *out)
{
    return b64_encode(b64_url, false, in, len, out);
}

size_t stoa_b64_encoded_len(size_t len)
{
    return (len + 2) / 3 * 4;
}

size_t stoa_b64_encode(const void *in, size_t len, char *out)
{
    return b64_encode(b64_std, true, in, len, out);
}

/* Arithmetic instead of a search of the alphabet: the gateway decodes a
 * token per request, and this is its inner loop. */
static int b64_value(const char *alphabet, char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == alphabet[62])
        return 62;
    if (c == alphabet[63])
        return 63;
    return -1;
}

/* Strict decoder: canonical encodings only (unused trailing bits must be
 * zero), so one byte string has exactly one accepted text form. */
static int b64_decode(const char *alphabet, bool padded, const char *in,
                      size_t len, uint8_t *out, size_t *out_len)
{
    if (padded) {
        if (len % 4)
            return STOA_DECLINED;
        if (len && in[len - 1] == '=')
            len--;
        if (len && in[len - 1] == '=')
            len--;
    }
    if (len % 4 == 1)
        return STOA_DECLINED;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(alphabet, in[i]);
        if (v < 0)
            return STOA_DECLINED;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits && (acc & ((1u << bits) - 1)))
        return STOA_DECLINED;
    *out_len = o;
    return STOA_OK;
}

int stoa_b64url_decode(const char *in, size_t len, uint8_t *out,
                       size_t *out_len)
{
    return b64_decode(b64_url, false, in, len, out, out_len);
}

int stoa_b64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len)
{
    return b64_decode(b64_std, true, in, len, out, out_len);
}

void stoa_uuid_v4(char out[STOA_UUID_STR_LEN + 1])
{
    uint8_t b[16];
    stoa_random_bytes(b, sizeof(b));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, STOA_UUID_STR_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

bool stoa_uuid_valid(const char *s)
{
    if (!s || strlen(s) != STOA_UUID_STR_LEN)
        return false;
    for (size_t i = 0; i < STOA_UUID_STR_LEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (stoa_hex_digit(s[i]) < 0) {
            return false;
        }
    }
    return true;
}

int stoa_uuid_bytes(const char *s, uint8_t out[16])
{
    if (!stoa_uuid_valid(s))
        return STOA_DECLINED;
    /* The five groups of hex digits, 8-4-4-4-12, between the dashes. */
    static const size_t at[] = {0, 9, 14, 19, 24}, len[] = {8, 4, 4, 4, 12};
    size_t o = 0;
    for (size_t g = 0; g < 5; g++) {
        size_t n;
        if (stoa_hex_decode(s + at[g], len[g], out + o, &n) != STOA_OK)
            return STOA_DECLINED;
        o += n;
    }
    return STOA_OK;
}

#define AEAD_NONCE_LEN 12
#define AEAD_TAG_LEN 16

int stoa_aead_seal(const uint8_t key[STOA_AEAD_KEY_LEN], const void *plain,
                   size_t len, const void *aad, size_t aad_len, uint8_t *sealed)
{
    if (len > INT32_MAX || aad_len > INT32_MAX)
        return STOA_ERROR;
    uint8_t *nonce = sealed, *ct = sealed + AEAD_NONCE_LEN;
    stoa_random_bytes(nonce, AEAD_NONCE_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0,
        ok = c &&
             EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
             (!aad || EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
             EVP_EncryptUpdate(c, ct, &n, plain, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, ct + n, &n) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, AEAD_TAG_LEN,
                                 ct + len) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? STOA_OK : STOA_ERROR;
}

int stoa_aead_open(const uint8_t key[STOA_AEAD_KEY_LEN], const uint8_t *sealed,
                   size_t sealed_len, const void *aad, size_t aad_len,
                   uint8_t *plain, size_t *len)
{
    if (sealed_len < STOA_AEAD_OVERHEAD || sealed_len > INT32_MAX ||
        aad_len > INT32_MAX)
        return STOA_DECLINED;
    size_t ct_len = sealed_len - STOA_AEAD_OVERHEAD;
    const uint8_t *nonce = sealed, *ct = sealed + AEAD_NONCE_LEN;
    uint8_t tag[AEAD_TAG_LEN];
    memcpy(tag, ct + ct_len, AEAD_TAG_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0,
        ok = c &&
             EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
             (!aad || EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) == 1) &&
             EVP_DecryptUpdate(c, plain, &n, ct, (int)ct_len) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, AEAD_TAG_LEN, tag) ==
                 1 &&
             EVP_DecryptFinal_ex(c, plain + n, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        stoa_wipe(plain, ct_len);
        return STOA_DECLINED;
    }
    *len = ct_len;
    return STOA_OK;
}
