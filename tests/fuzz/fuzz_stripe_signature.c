/* fuzz_stripe_signature.c - the Stripe-Signature header parser and check.
 *
 * Input: the first line is the header, the rest the body. Oracles: no
 * crash or out-of-bounds read; a header we sign ourselves for the same
 * body always verifies; a fuzzed header only verifies when it carries
 * that exact signature (checked by recomputing it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/crypto.h"
#include "stoa/stripe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secrets[] = "whsec_fuzz_one, whsec_fuzz_two";

static void sign(const char *secret, long long t, const char *body, size_t len,
                 char *out, size_t cap)
{
    char prefix[32];
    int n = snprintf(prefix, sizeof(prefix), "%lld.", t);
    char *msg = malloc((size_t)n + len + 1);
    memcpy(msg, prefix, (size_t)n);
    memcpy(msg + n, body, len);
    uint8_t mac[STOA_SHA256_LEN];
    stoa_hmac_sha256(secret, strlen(secret), msg, (size_t)n + len, mac);
    free(msg);
    char hex[2 * STOA_SHA256_LEN + 1];
    stoa_hex_encode(mac, sizeof(mac), hex);
    snprintf(out, cap, "t=%lld,v1=%s", t, hex);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl ? (size_t)(nl - data) : size;
    char *header = malloc(hlen + 1);
    memcpy(header, data, hlen);
    header[hlen] = '\0';
    const char *body = nl ? (const char *)nl + 1 : "";
    size_t blen = nl ? size - hlen - 1 : 0;
    const long long now = 1700000000;

    int rc =
        stoa_stripe_verify_signature(header, body, blen, secrets, now, 300);
    if (rc == STOA_OK && strlen(header) == hlen) {
        /* Accepted: it must contain the real signature under one secret
         * for its own timestamp. */
        const char *t = strstr(header, "t=");
        long long ts = t ? atoll(t + 2) : -1;
        char good1[128], good2[128];
        sign("whsec_fuzz_one", ts, body, blen, good1, sizeof(good1));
        sign("whsec_fuzz_two", ts, body, blen, good2, sizeof(good2));
        if (!strstr(header, strchr(good1, ',') + 1) &&
            !strstr(header, strchr(good2, ',') + 1))
            abort();
    }
    /* Our own signature over the same body always verifies. */
    char mine[128];
    sign("whsec_fuzz_two", now - 10, body, blen, mine, sizeof(mine));
    if (stoa_stripe_verify_signature(mine, body, blen, secrets, now, 300) !=
        STOA_OK)
        abort();
    /* ... and never when stale. */
    sign("whsec_fuzz_two", now - 301, body, blen, mine, sizeof(mine));
    if (stoa_stripe_verify_signature(mine, body, blen, secrets, now, 300) ==
        STOA_OK)
        abort();
    free(header);
    return 0;
}
