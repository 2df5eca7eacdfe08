/* format.c - email normalisation and RFC 3339 times (shape and calendar). */
#include "stoa/format.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

char *stoa_email_normalise(stoa_arena_t *arena, const char *in)
{
    while (*in == ' ' || *in == '\t')
        in++;
    size_t len = strlen(in);
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t'))
        len--;
    if (len < 3 || len > 254)
        return NULL;
    char *out = stoa_arena_strndup(arena, in, len);
    const char *at = NULL;
    for (char *p = out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' ||
            c == ',' || c == ';' || c == '\\')
            return NULL;
        if (c == '@') {
            if (at)
                return NULL;
            at = p;
        }
        *p = (char)tolower(c);
    }
    /* local@domain: a domain that neither starts nor ends with a dot and
     * has no empty label. Dotless hosts (admin@localhost, the first admin
     * of a dev stack) are valid addresses. */
    if (!at || at == out || at - out > 64)
        return NULL;
    const char *domain = at + 1;
    size_t dlen = strlen(domain);
    if (dlen == 0 || domain[0] == '.' || domain[dlen - 1] == '.' ||
        strstr(domain, ".."))
        return NULL;
    return out;
}

/* The number n digits spell (the shape check has made them digits). */
static int decimal(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

bool stoa_time_shape_valid(const char *s, bool date_only_ok)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    size_t n = strlen(s);
    if (n != sizeof(shape) - 1 && !(date_only_ok && n == 10))
        return false;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    /* A date Postgres would refuse (Feb 30, month 13) is a client's
     * mistake: refused here, by field, before it reaches a statement.
     * Year 0 does not exist in Postgres' calendar either. */
    int year = decimal(s, 4), month = decimal(s + 5, 2),
        day = decimal(s + 8, 2);
    if (year < 1 || month < 1 || month > 12 || day < 1 ||
        day > days_in_month(year, month))
        return false;
    if (n == 10)
        return true;
    int hour = decimal(s + 11, 2), minute = decimal(s + 14, 2),
        second = decimal(s + 17, 2);
    /* RFC 3339 §5.7: second 60 is a leap second, which only ever ends a
     * UTC day (23:59:60Z); Postgres would take 24:00:00 as midnight of the
     * next day, which RFC 3339 does not allow. */
    if (hour > 23 || minute > 59 || second > 60 ||
        (second == 60 && (hour != 23 || minute != 59)))
        return false;
    return true;
}

/* Length (1..4) of the well-formed UTF-8 sequence at s, or 0 with *bad set
 * to the length of its maximal ill-formed prefix (Unicode §3.9: each such
 * prefix becomes one U+FFFD). The second-byte ranges exclude overlong
 * forms, surrogates and anything above U+10FFFF. */
static size_t utf8_next(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80, hi = 0xbf;
    }
    return n;
}

bool stoa_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, n, bad;
    while (i < len) {
        /* ASCII eight bytes at a time: most of any body is, and this
         * check runs over every byte of every JSON body. */
        uint64_t word;
        while (len - i >= sizeof(word)) {
            memcpy(&word, p + i, sizeof(word));
            if (word & 0x8080808080808080ull)
                break;
            i += sizeof(word);
        }
        if (i == len)
            break;
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if ((n = utf8_next(p + i, len - i, &bad)) == 0)
            return false;
        i += n;
    }
    return true;
}

char *stoa_text_sanitise(stoa_arena_t *arena, const char *in, size_t max_bytes)
{
    if (!in)
        return NULL;
    const unsigned char *p = (const unsigned char *)in;
    size_t len = strlen(in);
    /* At most 3 bytes out per byte in (U+FFFD for one stray byte). */
    size_t cap = len < max_bytes / 3 ? len * 3 : max_bytes;
    char *out = stoa_arena_alloc(arena, cap + 1);
    static const char replacement[] = "\xef\xbf\xbd";
    size_t o = 0, bad = 0;
    for (size_t i = 0, n; i < len; i += n) {
        const char *piece = in + i;
        size_t piece_len = n = utf8_next(p + i, len - i, &bad);
        if (n == 0) {
            piece = replacement;
            piece_len = 3;
            n = bad;
        } else if (n == 1 && p[i] == '\t') {
            piece = " ";
        } else if ((n == 1 && (p[i] < 0x20 || p[i] == 0x7f)) ||
                   (n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
            /* C0 and C1 controls: terminal escapes, line breaks. */
            continue;
        }
        /* Capped on a character boundary, never inside a sequence. */
        if (o + piece_len > max_bytes)
            break;
        memcpy(out + o, piece, piece_len);
        o += piece_len;
    }
    out[o] = '\0';
    return o ? out : NULL;
}
