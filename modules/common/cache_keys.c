/* cache_keys.c - the Redis keys shared between files and programs. */
#include "stoa/cache_keys.h"

char *stoa_key_profile(stoa_arena_t *arena, const char *user_id)
{
    return stoa_arena_sprintf(arena, STOA_KEY_PROFILE_PREFIX "%s", user_id);
}

char *stoa_key_revoked_user(stoa_arena_t *arena, const char *user_id)
{
    return stoa_arena_sprintf(arena, STOA_KEY_REVOKED_USER_PREFIX "%s",
                              user_id);
}

char *stoa_key_revoked_session(stoa_arena_t *arena, const char *session_id)
{
    return stoa_arena_sprintf(arena, STOA_KEY_REVOKED_SESSION_PREFIX "%s",
                              session_id);
}

char *stoa_key_entitlements(stoa_arena_t *arena, const char *user_id)
{
    return stoa_arena_sprintf(arena, STOA_KEY_ENTITLEMENTS_PREFIX "%s",
                              user_id);
}
