/* check_hostcache.c - per-process copies checked against the host's
 * version counters: two handles on one file stand for two processes. */
#include <sys/stat.h>
#include <sys/wait.h>

#include "check_util.h"
#include "stoa/hostcache.h"

static char path[64];
static stoa_arena_t *arena;
static stoa_hostcache_t *a, *b; /* two "processes" of one host */

static stoa_hostcache_t *open_or_fail(void)
{
    stoa_hostcache_t *hc = NULL;
    char err[256];
    ck_assert_msg(stoa_hostcache_open(path, &hc, err, sizeof(err)) == STOA_OK,
                  "%s", err);
    return hc;
}

static void setup(void)
{
    snprintf(path, sizeof(path), "/tmp/stoa-hostcache-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    arena = stoa_arena_create(0);
    a = open_or_fail();
    b = open_or_fail();
}

static void teardown(void)
{
    stoa_hostcache_close(a);
    stoa_hostcache_close(b);
    stoa_arena_destroy(arena);
    unlink(path);
}

static bool has(stoa_hostcache_t *hc, const char *key, const char *want)
{
    char *v;
    size_t len;
    if (stoa_hostcache_get(hc, arena, key, &v, &len) != STOA_OK)
        return false;
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_str_eq(v, want);
    return true;
}

START_TEST(a_copy_is_served_until_a_bump)
{
    uint64_t v = stoa_hostcache_version(a, "me:1");
    ck_assert(!has(a, "me:1", "x"));
    stoa_hostcache_put(a, "me:1", v, "{\"n\":1}", 7);
    ck_assert(has(a, "me:1", "{\"n\":1}"));
    /* The other process has no copy of its own. */
    ck_assert(!has(b, "me:1", "{\"n\":1}"));
    stoa_hostcache_put(b, "me:1", stoa_hostcache_version(b, "me:1"),
                       "{\"n\":1}", 7);
    /* A change through b drops both copies. */
    stoa_hostcache_bump(b, "me:1");
    ck_assert(!has(a, "me:1", "{\"n\":1}"));
    ck_assert(!has(b, "me:1", "{\"n\":1}"));
    ck_assert_uint_eq(stoa_hostcache_version(a, "me:1"), v + 1);
    /* Other keys keep theirs (unless they share a counter). */
    stoa_hostcache_put(a, "me:2", stoa_hostcache_version(a, "me:2"), "2", 1);
    stoa_hostcache_bump(a, "me:1");
    ck_assert(has(a, "me:2", "2"));
}
END_TEST

/* A fetch that began before a change is never kept: the version read
 * before it has moved. */
START_TEST(a_fetch_overtaken_by_a_change_is_not_kept)
{
    uint64_t before = stoa_hostcache_version(a, "me:1");
    stoa_hostcache_bump(b, "me:1");
    stoa_hostcache_put(a, "me:1", before, "old", 3);
    ck_assert(!has(a, "me:1", "old"));
    /* Nor is one kept at a version and then bumped. */
    uint64_t now = stoa_hostcache_version(a, "me:1");
    stoa_hostcache_put(a, "me:1", now, "new", 3);
    ck_assert(has(a, "me:1", "new"));
    stoa_hostcache_bump(b, "me:1");
    ck_assert(!has(a, "me:1", "new"));
}
END_TEST

/* A process started later (or after a crash) maps the same counters. */
START_TEST(counters_live_in_the_file)
{
    stoa_hostcache_bump(a, "me:9");
    stoa_hostcache_bump(a, "me:9");
    stoa_hostcache_t *c = open_or_fail();
    ck_assert_uint_eq(stoa_hostcache_version(c, "me:9"),
                      stoa_hostcache_version(a, "me:9"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A real second process bumps through its own mapping. */
        stoa_hostcache_t *child = NULL;
        char err[256];
        if (stoa_hostcache_open(path, &child, err, sizeof(err)) != STOA_OK)
            _exit(2);
        stoa_hostcache_bump(child, "me:9");
        _exit(0);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_uint_eq(stoa_hostcache_version(c, "me:9"),
                      stoa_hostcache_version(a, "me:9"));
    stoa_hostcache_close(c);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
}
END_TEST

/* Without a bump (a change on another host) a copy lives its bound. */
START_TEST(copies_expire)
{
    stoa_hostcache_put(a, "me:1", stoa_hostcache_version(a, "me:1"), "v", 1);
    ck_assert(has(a, "me:1", "v"));
    usleep((STOA_HOSTCACHE_MAX_AGE_MS + 50) * 1000);
    ck_assert(!has(a, "me:1", "v"));
}
END_TEST

START_TEST(limits_and_no_cache)
{
    static char big[STOA_HOSTCACHE_MAX_VALUE + 2];
    memset(big, 'x', sizeof(big) - 1);
    stoa_hostcache_put(a, "me:1", stoa_hostcache_version(a, "me:1"), big,
                       sizeof(big) - 1);
    ck_assert(!has(a, "me:1", big));
    char key[200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    stoa_hostcache_put(a, key, stoa_hostcache_version(a, key), "v", 1);
    ck_assert(!has(a, key, "v"));
    /* Two keys in one slot: the later copy replaces the earlier, and each
     * get checks the key. */
    for (int i = 0; i < 3 * STOA_HOSTCACHE_ENTRIES; i++) {
        char k[32];
        snprintf(k, sizeof(k), "me:%d", i);
        stoa_hostcache_put(a, k, stoa_hostcache_version(a, k), k, strlen(k));
    }
    for (int i = 0; i < 3 * STOA_HOSTCACHE_ENTRIES; i++) {
        char k[32], *v;
        size_t len;
        snprintf(k, sizeof(k), "me:%d", i);
        if (stoa_hostcache_get(a, arena, k, &v, &len) == STOA_OK)
            ck_assert_str_eq(v, k);
    }
    /* No file configured: nothing is kept, nothing fails. */
    stoa_hostcache_put(NULL, "me:1", 0, "v", 1);
    stoa_hostcache_bump(NULL, "me:1");
    char *v;
    size_t len;
    ck_assert_int_eq(stoa_hostcache_get(NULL, arena, "me:1", &v, &len),
                     STOA_DECLINED);
    ck_assert_uint_eq(stoa_hostcache_version(NULL, "me:1"), 0);
    /* An unusable path is an error at start, not later. */
    stoa_hostcache_t *hc = NULL;
    char err[256];
    ck_assert_int_eq(
        stoa_hostcache_open("/nonexistent-dir/x", &hc, err, sizeof(err)),
        STOA_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "host_cache_file"));
}
END_TEST

TEST_MAIN_ONE_CASE("hostcache", setup, teardown, a_copy_is_served_until_a_bump,
                   a_fetch_overtaken_by_a_change_is_not_kept,
                   counters_live_in_the_file, copies_expire,
                   limits_and_no_cache)
