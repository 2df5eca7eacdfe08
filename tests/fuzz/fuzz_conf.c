/* fuzz_conf.c - the configuration parser on arbitrary text.
 *
 * Oracles: the result is STOA_OK or STOA_DECLINED with a terminated
 * message; an accepted config has every string key set; freeing always
 * releases everything (LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool mentions(const uint8_t *data, size_t size, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, word, n) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* `<secret>_file = /dev/stdin` (or a tty, or /proc) would make the
     * parser block on or read a device: not a parser bug, so skip. */
    if (mentions(data, size, "/dev") || mentions(data, size, "/proc") ||
        mentions(data, size, "/sys"))
        return 0;

    static FILE *sink;
    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();

    stoa_conf_t conf;
    char err[256];
    memset(err, 'x', sizeof(err));
    int rc = stoa_conf_parse(&conf, (const char *)data, size, err, sizeof(err));
    if (rc == STOA_OK) {
        const char *const strings[] = {
            conf.database_url, conf.redis_url,       conf.public_url,
            conf.log_dir,      conf.keys_dir,        conf.jwt_issuer,
            conf.jwt_audience, conf.stripe_api_base, conf.stripe_secret_key,
            conf.smtp_url,     conf.mail_from,       conf.cors_origins,
        };
        for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
            if (!strings[i])
                abort();
        stoa_conf_dump(&conf, sink);
    } else if (rc != STOA_DECLINED || !memchr(err, '\0', sizeof(err))) {
        abort();
    }
    stoa_conf_free(&conf);
    return 0;
}
