/* password_policy.c - what a new password must be, and hashing it. */

#include "auth.h"

bool auth_password_acceptable(stoa_request_t *req, const char *field,
                              const char *password, const char *email,
                              const char *name)
{
    const char *reason = stoa_password_refusal(password, email, name);
    if (reason)
        stoa_request_field_error(req, field, reason);
    return reason == NULL;
}

int auth_password_hash(stoa_request_t *req, const char *pw, char **phc)
{
    char *out = stoa_arena_alloc(req->arena, STOA_PASSWORD_HASH_MAX);
    if (stoa_password_hash(&auth_state(req)->params, pw, out) != STOA_OK)
        return STOA_ERROR;
    *phc = out;
    return STOA_OK;
}
