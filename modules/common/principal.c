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
