/* fuzz_b64.c - the strict decoders (base64url, base64, hex) and their
 * encoders.
 *
 * Oracles: whatever a decoder accepts re-encodes to exactly the input (one
 * text form per byte string; hex compares case-insensitively because the
 * decoder reads both cases and the encoder writes lower case); whatever an
 * encoder writes decodes back to the bytes. Buffers have exactly the
 * documented sizes, so ASan catches any overrun. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stoa/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef size_t (*encode_fn)(const void *, size_t, char *);
typedef size_t (*encoded_len_fn)(size_t);
typedef int (*decode_fn)(const char *, size_t, uint8_t *, size_t *);

static size_t hex_encoded_len(size_t len)
{
    return 2 * len;
}

static void check_codec(const uint8_t *data, size_t size, encode_fn encode,
                        encoded_len_fn encoded_len, decode_fn decode,
                        size_t decode_cap, bool ignore_case)
{
    /* Decode the input; if accepted, encode it back. */
    uint8_t *raw = malloc(decode_cap ? decode_cap : 1);
    size_t n = 0;
    if (decode((const char *)data, size, raw, &n) == STOA_OK) {
        if (n > decode_cap)
            abort();
        size_t elen = encoded_len(n);
        char *text = malloc(elen + 1);
        if (encode(raw, n, text) != elen || text[elen] != '\0' || elen != size)
            abort();
        if (ignore_case ? strncasecmp(text, (const char *)data, size) != 0
                        : memcmp(text, data, size) != 0)
            abort();
        free(text);
    }
    free(raw);

    /* Encode the input as bytes and decode it back. */
    size_t elen = encoded_len(size);
    char *text = malloc(elen + 1);
    if (encode(data, size, text) != elen || strlen(text) != elen)
        abort();
    uint8_t *back = malloc(size + 1);
    if (decode(text, elen, back, &n) != STOA_OK || n != size ||
        memcmp(back, data, size) != 0)
        abort();
    free(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Output sizes from crypto.h: base64 len*3/4+1, hex len/2. */
    check_codec(data, size, stoa_b64url_encode, stoa_b64url_encoded_len,
                stoa_b64url_decode, size * 3 / 4 + 1, false);
    check_codec(data, size, stoa_b64_encode, stoa_b64_encoded_len,
                stoa_b64_decode, size * 3 / 4 + 1, false);
    check_codec(data, size, stoa_hex_encode, hex_encoded_len, stoa_hex_decode,
                size / 2, true);
    return 0;
}
