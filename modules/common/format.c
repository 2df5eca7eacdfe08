/* format.c - email normalisation and RFC 3339 time shapes. */
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

bool stoa_time_shape_valid(const char *s, bool date_only_ok)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";
    size_t n = strlen(s);
    if (n != sizeof(shape) - 1 && !(date_only_ok && n == 10))
        return false;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return false;
    return true;
}
