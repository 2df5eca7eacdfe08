/* principal.c - role checks on the identity the gateway established. */
#include "stoa/principal.h"

#include <string.h>

bool stoa_role_valid(const char *role)
{
    return role && (strcmp(role, "client") == 0 ||
                    strcmp(role, "finance") == 0 || strcmp(role, "admin") == 0);
}

bool stoa_principal_has_role(const stoa_principal_t *p, const char *roles)
{
    if (!p->present || !p->role || !p->role[0])
        return false;
    if (!roles)
        return true;
    size_t rlen = strlen(p->role);
    const char *s = roles;
    while (*s) {
        while (*s == ' ')
            s++;
        const char *e = s;
        while (*e && *e != ' ')
            e++;
        if (e > s && (size_t)(e - s) == rlen && memcmp(s, p->role, rlen) == 0)
            return true;
        s = e;
    }
    return false;
}

static const char *const scope_pools[] = {"auth", "billing", "analytics",
                                          "admin", NULL};

bool stoa_scope_valid(const char *scope)
{
    if (strcmp(scope, "*") == 0)
        return true;
    const char *colon = strchr(scope, ':');
    if (!colon)
        return false;
    const char *what = colon + 1;
    if (strcmp(what, "*") != 0 && strcmp(what, "read") != 0 &&
        strcmp(what, "write") != 0)
        return false;
    for (const char *const *p = scope_pools; *p; p++)
        if (strlen(*p) == (size_t)(colon - scope) &&
            strncmp(*p, scope, (size_t)(colon - scope)) == 0)
            return true;
    return false;
}

bool stoa_principal_from_api_key(const stoa_principal_t *p)
{
    return p->present && p->scope != NULL;
}

bool stoa_principal_scope_allows(const stoa_principal_t *p, const char *area,
                                 const char *method)
{
    if (!p->scope)
        return true;
    bool read = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    size_t plen = area ? strlen(area) : 0;
    for (const char *s = p->scope; *s;) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        if (n == 1 && s[0] == '*')
            return true;
        if (area && n > plen + 1 && strncmp(s, area, plen) == 0 &&
            s[plen] == ':') {
            const char *what = s + plen + 1;
            size_t wlen = n - plen - 1;
            if ((wlen == 1 && what[0] == '*') ||
                (wlen == 4 && strncmp(what, "read", 4) == 0 && read) ||
                (wlen == 5 && strncmp(what, "write", 5) == 0 && !read))
                return true;
        }
        s += n;
    }
    return false;
}
