/* fields.c - body fields shared by the auth handlers (name, emailed tokens). */

#include "auth.h"

/* A display name: 1-200 bytes, not blank, no control characters. */
static bool name_ok(const char *name)
{
    bool visible = false;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p != ' ')
            visible = true;
    }
    return visible;
}

const char *auth_name_field(stoa_request_t *req, const stoa_json_t *body,
                            unsigned flags)
{
    const char *name = stoa_field_string(req, body, "name", flags, 1, 200);
    if (name && !name_ok(name)) {
        stoa_request_field_error(req, "name", "invalid");
        return NULL;
    }
    return name;
}

/* Reads {token} of a mailed single-use token. */
const char *auth_token_field(stoa_request_t *req, const stoa_json_t *body,
                             const char *const *allowed)
{
    stoa_field_reject_unknown(req, body, allowed);
    return stoa_field_string(req, body, "token", STOA_FIELD_REQUIRED, 1, 200);
}
