/* check_revoke.c - the revocation check against a fake Redis, with a
 * Postgres that is down: the id length checks and the key-expiry rule
 * (decided before Redis is asked), the markers and the sentinel, the
 * fallback when Redis cannot tell (never "allow"), the per-thread cache
 * (its one-second bound, and that a slot shared by two principals never
 * answers for the wrong one), and the markers written. */
#include <time.h>

#include "check_fake_redis.h"
#include "stoa/crypto.h"
#include "stoa/revoke.h"

#define USER "6f1c0e7a-3b7e-4d0a-9a35-0b0e7c1d2a11"
#define SESSION "0a8f5c2e-1111-4222-8333-944455556666"

static stoa_ctx_t ctx;
static stoa_conns_t conns;
static stoa_arena_t *arena;

static void open_ctx(const char *redis_url)
{
    fake_ctx_open(&ctx, redis_url, stoa_revoke_statements,
                  stoa_revoke_statements_len);
}

/* The context again, with a Redis where nothing listens. */
static void reopen_with_redis_down(void)
{
    stoa_conns_release(&conns);
    fake_ctx_close(&ctx);
    open_ctx("unix:///nonexistent/stoa-check-redis.sock");
    conns.ctx = &ctx;
}

static void setup(void)
{
    open_ctx(fake_redis_start());
    memset(&conns, 0, sizeof(conns));
    conns.ctx = &ctx;
    arena = stoa_arena_create(0);
}

static void teardown(void)
{
    stoa_conns_release(&conns);
    stoa_arena_destroy(arena);
    fake_ctx_close(&ctx);
    fake_redis_stop();
}

static stoa_principal_t login_principal(const char *user, const char *session)
{
    stoa_principal_t p = {.present = true,
                          .user_id = user,
                          .session_id = session,
                          .role = "client",
                          .token_id = "jti-1",
                          .expires_at = stoa_unix_time() + 600};
    return p;
}

/* A login of USER in session (NULL: none), with Redis marked as in step
 * with Postgres (the sentinel set), so markers alone decide. */
static stoa_principal_t synced_login(const char *session)
{
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    return login_principal(USER, session);
}

/* A token traded from an API key: it carries a scope claim. */
static stoa_principal_t key_principal(int64_t expires_at)
{
    stoa_principal_t p = login_principal(USER, SESSION);
    p.scope = "billing:read";
    p.expires_at = expires_at;
    return p;
}

static int check(const stoa_principal_t *p)
{
    return stoa_revoke_check(&conns, arena, p);
}

/* A synced login in session (NULL: none) that the check lets through. */
static stoa_principal_t passing_login(const char *session)
{
    stoa_principal_t p = synced_login(session);
    ck_assert_int_eq(check(&p), STOA_OK);
    return p;
}

START_TEST(live_with_sentinel_and_the_keys_asked)
{
    passing_login(SESSION);
    size_t n = fake_redis_count();
    ck_assert_uint_ge(n, 1);
    ck_assert_str_eq(fake_redis_command(n - 1),
                     "MGET rv:u:" USER " rv:s:" SESSION " rv:synced");
}
END_TEST

START_TEST(markers_decline)
{
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    fake_redis_put("rv:s:" SESSION, "1");
    stoa_principal_t p = login_principal(USER, SESSION);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    /* A suspended user: every session of theirs. */
    fake_redis_put("rv:u:" USER, "1");
    stoa_principal_t other =
        login_principal(USER, "0a8f5c2e-1111-4222-8333-944455556667");
    ck_assert_int_eq(check(&other), STOA_DECLINED);
    /* A marker wins over the sentinel, and without one too. */
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, NULL);
    stoa_principal_t third =
        login_principal(USER, "0a8f5c2e-1111-4222-8333-944455556668");
    ck_assert_int_eq(check(&third), STOA_DECLINED);
}
END_TEST

START_TEST(session_less_token_asks_a_placeholder_key)
{
    passing_login(NULL);
    size_t n = fake_redis_count();
    ck_assert_str_eq(fake_redis_command(n - 1),
                     "MGET rv:u:" USER " rv:s:- rv:synced");
}
END_TEST

START_TEST(no_sentinel_asks_postgres_and_never_allows)
{
    /* No marker but no sentinel either: Redis may have lost them; Postgres
     * (down here) must decide, and nobody is let in. */
    stoa_principal_t p = login_principal(USER, SESSION);
    ck_assert_int_eq(check(&p), STOA_AGAIN);
    /* Not cached: the next check asks again. */
    size_t before = fake_redis_count();
    ck_assert_int_eq(check(&p), STOA_AGAIN);
    ck_assert_uint_eq(fake_redis_count(), before + 1);
    /* Once the sentinel is back the same principal passes. */
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    ck_assert_int_eq(check(&p), STOA_OK);
}
END_TEST

START_TEST(redis_down_asks_postgres)
{
    reopen_with_redis_down();
    stoa_principal_t p = login_principal(USER, SESSION);
    ck_assert_int_eq(check(&p), STOA_AGAIN);
}
END_TEST

START_TEST(overlong_ids_declined_before_redis)
{
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    size_t before = fake_redis_count();
    char *long_id = test_repeat('a', STOA_UUID_STR_LEN + 1);
    stoa_principal_t p = login_principal(long_id, SESSION);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    p = login_principal(USER, long_id);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    ck_assert_uint_eq(fake_redis_count(), before);
    /* Exactly the length of a UUID is asked about. */
    char *exact = test_repeat('b', STOA_UUID_STR_LEN);
    p = login_principal(exact, exact);
    ck_assert_int_eq(check(&p), STOA_OK);
    ck_assert_uint_eq(fake_redis_count(), before + 1);
    free(long_id);
    free(exact);
}
END_TEST

START_TEST(key_token_ends_exactly_at_exp)
{
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    size_t before = fake_redis_count();
    int64_t now = stoa_unix_time();
    /* At exp and after: declined without asking Redis. */
    stoa_principal_t p = key_principal(now);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    p = key_principal(now - 1);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    ck_assert_uint_eq(fake_redis_count(), before);
    /* Before exp, or without one, the markers decide. */
    p = key_principal(now + 5);
    ck_assert_int_eq(check(&p), STOA_OK);
    stoa_principal_t no_exp =
        login_principal(USER, "0a8f5c2e-1111-4222-8333-944455556669");
    no_exp.scope = "*";
    no_exp.expires_at = 0;
    ck_assert_int_eq(check(&no_exp), STOA_OK);
    /* A login's token past its exp is the gateway's to refuse (with its
     * leeway for clock skew): here only the markers count. */
    stoa_principal_t login =
        login_principal(USER, "0a8f5c2e-1111-4222-8333-94445555666a");
    login.expires_at = now - 30;
    ck_assert_int_eq(check(&login), STOA_OK);
}
END_TEST

START_TEST(cache_holds_one_second)
{
    stoa_principal_t p = passing_login(SESSION);
    size_t asked = fake_redis_count();
    /* Revoked now: within the bound the cached answer stands, and Redis
     * is not asked. */
    fake_redis_put("rv:s:" SESSION, "1");
    ck_assert_int_eq(check(&p), STOA_OK);
    ck_assert_uint_eq(fake_redis_count(), asked);
    /* Past it, the marker is seen. */
    long pause_ms = STOA_REVOKE_CACHE_MS + 50;
    struct timespec pause = {pause_ms / 1000, pause_ms % 1000 * 1000000L};
    nanosleep(&pause, NULL);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    ck_assert_uint_eq(fake_redis_count(), asked + 1);
    /* A refusal is cached as well. */
    fake_redis_put("rv:s:" SESSION, NULL);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
    ck_assert_uint_eq(fake_redis_count(), asked + 1);
}
END_TEST

START_TEST(cache_never_answers_for_another_principal)
{
    /* More principals than cache slots, so some share one: each must get
     * its own answer, the first time and from the cache. */
    enum { N = 600 };
    fake_redis_put(STOA_REVOKE_SYNCED_KEY, "1");
    static char sessions[N][STOA_UUID_STR_LEN + 1];
    for (int i = 0; i < N; i++) {
        snprintf(sessions[i], sizeof(sessions[i]),
                 "0a8f5c2e-1111-4222-8333-%012d", i);
        if (i % 3 == 0)
            fake_redis_put(stoa_arena_sprintf(arena, "rv:s:%s", sessions[i]),
                           "1");
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            stoa_principal_t p = login_principal(USER, sessions[i]);
            ck_assert_msg(check(&p) == (i % 3 == 0 ? STOA_DECLINED : STOA_OK),
                          "session %d, round %d", i, round);
        }
}
END_TEST

START_TEST(markers_written)
{
    ck_assert_int_eq(
        stoa_revoke_mark_session(stoa_conns_kv(&conns), 900, SESSION), STOA_OK);
    ck_assert_int_eq(stoa_revoke_mark_user(stoa_conns_kv(&conns), USER),
                     STOA_OK);
    stoa_revoke_unmark_user(stoa_conns_kv(&conns), USER);
    size_t n = fake_redis_count();
    ck_assert_uint_ge(n, 3);
    /* The session marker outlives every token of the session (with the
     * gateway's leeway); the user's lasts until reactivation. */
    ck_assert_str_eq(fake_redis_command(n - 3),
                     "SET rv:s:" SESSION " 1 EX 1020");
    ck_assert_str_eq(fake_redis_command(n - 2), "SET rv:u:" USER " 1");
    ck_assert_str_eq(fake_redis_command(n - 1), "DEL rv:u:" USER);
    /* And the check sees the marker set. */
    stoa_principal_t p = synced_login(SESSION);
    ck_assert_int_eq(check(&p), STOA_DECLINED);
}
END_TEST

START_TEST(marker_not_written_when_redis_down)
{
    reopen_with_redis_down();
    ck_assert_int_eq(
        stoa_revoke_mark_session(stoa_conns_kv(&conns), 900, SESSION),
        STOA_AGAIN);
    ck_assert_int_eq(stoa_revoke_mark_user(stoa_conns_kv(&conns), USER),
                     STOA_AGAIN);
}
END_TEST

TEST_MAIN_ONE_CASE("revoke", setup, teardown,
                   live_with_sentinel_and_the_keys_asked, markers_decline,
                   session_less_token_asks_a_placeholder_key,
                   no_sentinel_asks_postgres_and_never_allows,
                   redis_down_asks_postgres, overlong_ids_declined_before_redis,
                   key_token_ends_exactly_at_exp, cache_holds_one_second,
                   cache_never_answers_for_another_principal, markers_written,
                   marker_not_written_when_redis_down)
