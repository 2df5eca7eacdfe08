/* updates.c - the audience kinds of a product update. */
#include "stoa/updates.h"

#include <string.h>

const char *const stoa_audience_members[] = {
    [STOA_AUDIENCE_USER_IDS] = "user_ids",
    [STOA_AUDIENCE_ROLE] = "role",
    [STOA_AUDIENCE_PLAN] = "plan",
    [STOA_AUDIENCE_ALL] = "all",
    NULL,
};

bool stoa_audience_kind(const char *name, stoa_audience_kind_t *out)
{
    for (int i = 0; name && stoa_audience_members[i]; i++) {
        if (strcmp(stoa_audience_members[i], name) == 0) {
            *out = (stoa_audience_kind_t)i;
            return true;
        }
    }
    return false;
}
