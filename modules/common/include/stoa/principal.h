/* principal.h - who is calling, as established by the gateway.
 *
 * The nginx gateway verifies the access token and passes the identity as
 * FastCGI params (GATEWAY_SUB, GATEWAY_SID, GATEWAY_ROLE, GATEWAY_JTI,
 * GATEWAY_EXP). nginx never forwards client headers under those names, so
 * the pools trust them and never parse tokens themselves. */
#ifndef STOA_PRINCIPAL_H
#define STOA_PRINCIPAL_H

#include "stoa/core.h"

typedef struct {
    bool present;
    const char *user_id;    /* UUID */
    const char *session_id; /* may be NULL (API-key tokens) */
    const char *role;       /* client | finance | admin */
    const char *token_id;   /* jti */
    int64_t expires_at;
    const char *scope; /* space-separated; NULL: unrestricted (logins) */
} stoa_principal_t;

/* True when the principal's role is one of the space-separated roles. */
bool stoa_principal_has_role(const stoa_principal_t *p, const char *roles);
bool stoa_role_valid(const char *role);

/* Scopes restrict tokens exchanged from API keys. A scope is "*",
 * "<pool>:*", "<pool>:read" (GET and HEAD) or "<pool>:write" (the other
 * methods), pool one of auth, billing, analytics, admin. */
bool stoa_scope_valid(const char *scope);
/* True when the token was traded from an API key. Such tokens always
 * carry a scope claim (a key's scopes are never empty; "*" is the whole)
 * and logins never do, so the claim tells them apart. */
bool stoa_principal_from_api_key(const stoa_principal_t *p);
/* True when the principal may call `method` on a route of scope area
 * `area` (the route's URL prefix: auth, billing, analytics, admin): no
 * scope claim, or one of its scopes covers it. A NULL area is reached by
 * "*" alone. */
bool stoa_principal_scope_allows(const stoa_principal_t *p, const char *area,
                                 const char *method);

#endif
