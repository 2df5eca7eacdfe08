/* cache_keys.c - the Redis keys shared between files and programs. */
#include "stoa/cache_keys.h"

#include "stoa/hostcache.h"
#include "stoa/kv.h"

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

char *stoa_key_entitlements_gen(stoa_arena_t *arena, const char *user_id)
{
    return stoa_arena_sprintf(arena, STOA_KEY_ENTITLEMENTS_GEN_PREFIX "%s",
                              user_id);
}

int stoa_profile_forget(stoa_conns_t *c, stoa_arena_t *arena,
                        const char *user_id)
{
    char *key = stoa_key_profile(arena, user_id);
    int rc =
        stoa_kv_del(stoa_conns_kv(c), key) == STOA_OK ? STOA_OK : STOA_AGAIN;
    stoa_hostcache_bump(c->ctx->hostcache, key);
    return rc;
}
