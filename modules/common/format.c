/* format.c - email normalisation and RFC 3339 times (shape and calendar). */
#include "stoa/format.h"

#include <ctype.h>
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
    int year = decimal(s, 4), month = decimal(s + 5, 2), day = decimal(s + 8, 2);
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
