/* check_cache_keys.c - the Redis keys shared between programs. */
#include "check_util.h"
#include "stoa/cache_keys.h"
#include "stoa/revoke.h"

#define USER "5b0d6a3e-8c1f-4a57-9d2e-0f6b7c8d9e10"

START_TEST(keys_spell_the_contract)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    /* The exact spellings: a stack running older binaries next to newer
     * ones (a rolling deploy) must keep agreeing on them. */
    ck_assert_str_eq(stoa_key_profile(arena, USER), "me:" USER);
    ck_assert_str_eq(stoa_key_revoked_user(arena, USER), "rv:u:" USER);
    ck_assert_str_eq(stoa_key_revoked_session(arena, USER), "rv:s:" USER);
    ck_assert_str_eq(stoa_key_entitlements(arena, USER), "billing:ent:" USER);
    ck_assert_str_eq(STOA_KEY_PLANS, "billing:plans");
    ck_assert_str_eq(STOA_KEY_REVOKE_SYNCED, "rv:synced");
    ck_assert_str_eq(STOA_REVOKE_SYNCED_KEY, STOA_KEY_REVOKE_SYNCED);
    stoa_arena_destroy(arena);
}
END_TEST

START_TEST(keys_do_not_overlap)
{
    /* No key of one kind may be read as a key of another for some id. */
    static const char *const prefixes[] = {STOA_KEY_PROFILE_PREFIX,
                                           STOA_KEY_REVOKED_USER_PREFIX,
                                           STOA_KEY_REVOKED_SESSION_PREFIX,
                                           STOA_KEY_ENTITLEMENTS_PREFIX,
                                           STOA_KEY_PLANS,
                                           STOA_KEY_REVOKE_SYNCED};
    for (size_t i = 0; i < STOA_ARRAY_LEN(prefixes); i++)
        for (size_t j = 0; j < STOA_ARRAY_LEN(prefixes); j++)
            if (i != j)
                ck_assert_msg(
                    strncmp(prefixes[i], prefixes[j], strlen(prefixes[i])) != 0,
                    "'%s' is a prefix of '%s'", prefixes[i], prefixes[j]);
}
END_TEST

TEST_MAIN_ONE_CASE("cache_keys", NULL, NULL, keys_spell_the_contract,
                   keys_do_not_overlap)
