/* fuzz_text.c - UTF-8 validation, the sanitiser for stored header text and
 * the RFC 3339 calendar check, on the fuzz input as one C string.
 *
 * Oracles: sanitised text is valid UTF-8, within its cap, without C0, DEL
 * or C1 controls, and unchanged when it already was clean and short
 * enough; an accepted time is a real one: converted to seconds and back
 * (timegm, gmtime_r) it gives the same fields (a leap second aside). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stoa/format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool clean(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f ||
            (p[0] == 0xc2 && p[1] >= 0x80 && p[1] < 0xa0))
            return false;
    return true;
}

static int field(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static void check_time(const char *s, bool date_only_ok)
{
    if (!stoa_time_shape_valid(s, date_only_ok))
        return;
    size_t n = strlen(s);
    if (n != 20 && !(date_only_ok && n == 10))
        abort();
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = field(s, 4) - 1900;
    tm.tm_mon = field(s + 5, 2) - 1;
    tm.tm_mday = field(s + 8, 2);
    if (n == 20) {
        tm.tm_hour = field(s + 11, 2);
        tm.tm_min = field(s + 14, 2);
        tm.tm_sec = field(s + 17, 2);
        if (tm.tm_sec == 60) {
            if (tm.tm_hour != 23 || tm.tm_min != 59)
                abort();
            tm.tm_sec = 59;
        }
    }
    struct tm want = tm, got;
    time_t t = timegm(&tm);
    if (!gmtime_r(&t, &got) || got.tm_year != want.tm_year ||
        got.tm_mon != want.tm_mon || got.tm_mday != want.tm_mday ||
        got.tm_hour != want.tm_hour || got.tm_min != want.tm_min ||
        got.tm_sec != want.tm_sec || got.tm_year + 1900 < 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    /* Header values are C strings: the input up to its first NUL. */
    char *text = stoa_arena_strndup(arena, (const char *)data, size);
    size_t len = strlen(text);
    static const size_t caps[] = {0, 1, 3, 4, 64, 512};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        char *out = stoa_text_sanitise(arena, text, caps[i]);
        if (!out)
            continue;
        size_t n = strlen(out);
        if (n == 0 || n > caps[i] || !stoa_utf8_valid(out, n) || !clean(out))
            abort();
        if (len <= caps[i] && stoa_utf8_valid(text, len) && clean(text) &&
            !strchr(text, '\t') && strcmp(out, text) != 0)
            abort();
    }
    check_time(text, false);
    check_time(text, true);
    stoa_arena_destroy(arena);
    return 0;
}
