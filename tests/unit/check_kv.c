/* check_kv.c - Redis url parsing (no server needed), and the circuit
 * breaker against a fake server on a unix socket: one that accepts and
 * never answers (a Redis stopped by SIGSTOP), then one that answers. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "check_util.h"
#include "stoa/kv.h"

static const struct {
    const char *url;
    const char *host;
    int port;
    int db;
    bool is_unix;
} good_urls[] = {
    {"redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, false},
    {"redis://localhost", "localhost", 6379, 0, false},
    {"redis://cache:6380/15", "cache", 6380, 15, false},
    {"redis://cache/3", "cache", 6379, 3, false},
    {"redis://h:1/", "h", 1, 0, false},
    {"redis://h:65535", "h", 65535, 0, false},
    {"unix:///run/stoa/redis.sock", "/run/stoa/redis.sock", 6379, 0, true},
    {"unix:///x", "/x", 6379, 0, true},
};

START_TEST(parse_good_urls)
{
    char host[64];
    int port = -1, db = -1;
    bool is_unix = !good_urls[_i].is_unix;
    int rc = stoa_kv_parse_url(good_urls[_i].url, host, sizeof(host), &port,
                               &db, &is_unix);
    ck_assert_msg(rc == STOA_OK, "'%s' refused", good_urls[_i].url);
    ck_assert_str_eq(host, good_urls[_i].host);
    ck_assert(is_unix == good_urls[_i].is_unix);
    if (!good_urls[_i].is_unix) {
        ck_assert_int_eq(port, good_urls[_i].port);
        ck_assert_int_eq(db, good_urls[_i].db);
    }
}
END_TEST

static const char *const bad_urls[] = {
    "",
    "redis://",
    "redis://:6379",
    "redis://h:",
    "redis://h:0",
    "redis://h:65536",
    "redis://h:-1",
    "redis://h:abc",
    "redis://h:6379x",
    "redis://h:99999999999999999999",
    "redis://h/16",
    "redis://h/-1",
    "redis://h/1x",
    "redis://h/1/",
    "redis://h:6379/0/extra",
    "redis://nopassword@h:6379",
    "redis://:@h",
    "redis://user:@h",
    "redis://:pass word@h",
    "redis://:pass@",
    "rediss://h:6379",
    "http://h:6379",
    "REDIS://h",
    "h:6379",
    "unix://",
    "unix://relative.sock",
    "unix:",
};

START_TEST(parse_bad_urls)
{
    char host[64];
    int port, db;
    bool is_unix;
    ck_assert_msg(stoa_kv_parse_url(bad_urls[_i], host, sizeof(host), &port,
                                    &db, &is_unix) == STOA_DECLINED,
                  "'%s' accepted", bad_urls[_i]);
}
END_TEST

START_TEST(parse_credentials)
{
    char host[64], user[32], password[32];
    int port, db;
    bool is_unix;
    /* The last '@' ends the userinfo: a password may hold ':', '/', '@'. */
    ck_assert_int_eq(stoa_kv_parse_url_auth("redis://:s3/cr:@t@cache:6380/2",
                                            host, sizeof(host), &port, &db,
                                            &is_unix, user, sizeof(user),
                                            password, sizeof(password)),
                     STOA_OK);
    ck_assert_str_eq(user, "");
    ck_assert_str_eq(password, "s3/cr:@t");
    ck_assert_str_eq(host, "cache");
    ck_assert_int_eq(port, 6380);
    ck_assert_int_eq(db, 2);
    ck_assert_int_eq(stoa_kv_parse_url_auth("redis://app:pw@h", host,
                                            sizeof(host), &port, &db, &is_unix,
                                            user, sizeof(user), password,
                                            sizeof(password)),
                     STOA_OK);
    ck_assert_str_eq(user, "app");
    ck_assert_str_eq(password, "pw");
    ck_assert_int_eq(port, 6379);
    /* No userinfo: no AUTH. */
    ck_assert_int_eq(stoa_kv_parse_url_auth(
                         "redis://h", host, sizeof(host), &port, &db, &is_unix,
                         user, sizeof(user), password, sizeof(password)),
                     STOA_OK);
    ck_assert_str_eq(password, "");
    /* A password longer than its buffer is refused, not cut. */
    ck_assert_int_eq(
        stoa_kv_parse_url_auth("redis://:0123456789abcdef0123456789abcdef@h",
                               host, sizeof(host), &port, &db, &is_unix, user,
                               sizeof(user), password, sizeof(password)),
        STOA_DECLINED);
}
END_TEST

/* A real redis-server on a loopback port with requirepass: the url's
 * password is sent with AUTH on connect; a wrong one never connects. */
START_TEST(auth_reaches_a_server_with_requirepass)
{
    int port = 20000 + (int)(getpid() % 20000);
    char portstr[16], url[128];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t server = fork();
    ck_assert_int_ge(server, 0);
    if (server == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("redis-server", "redis-server", "--port", portstr, "--bind",
               "127.0.0.1", "--requirepass", "s3cret", "--save", "",
               "--appendonly", "no", "--protected-mode", "yes", (char *)NULL);
        _exit(127);
    }
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/1", port);
    stoa_kv_t *good = stoa_kv_new(url, 500);
    ck_assert_ptr_nonnull(good);
    int rc = STOA_AGAIN;
    for (int i = 0; i < 100 && rc != STOA_OK; i++) {
        usleep(50 * 1000);
        rc = stoa_kv_set(good, "stoa-check-auth", "v", 1, 10);
    }
    ck_assert_int_eq(rc, STOA_OK);
    stoa_arena_t *arena = stoa_arena_create(0);
    char *value = NULL;
    ck_assert_int_eq(stoa_kv_get(good, arena, "stoa-check-auth", &value, NULL),
                     STOA_OK);
    ck_assert_str_eq(value, "v");

    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/1", port);
    stoa_kv_t *bad = stoa_kv_new(url, 500);
    ck_assert_int_ne(stoa_kv_set(bad, "stoa-check-auth", "w", 1, 10), STOA_OK);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/1", port);
    stoa_kv_t *none = stoa_kv_new(url, 500);
    ck_assert_int_ne(stoa_kv_set(none, "stoa-check-auth", "w", 1, 10), STOA_OK);
    ck_assert_int_eq(stoa_kv_get(good, arena, "stoa-check-auth", &value, NULL),
                     STOA_OK);
    ck_assert_str_eq(value, "v");

    stoa_kv_free(good);
    stoa_kv_free(bad);
    stoa_kv_free(none);
    stoa_arena_destroy(arena);
    kill(server, SIGTERM);
    waitpid(server, NULL, 0);
}
END_TEST

START_TEST(parse_host_too_long)
{
    char host[8];
    int port, db;
    bool is_unix;
    ck_assert_int_eq(stoa_kv_parse_url("redis://abcdefg:1", host, sizeof(host),
                                       &port, &db, &is_unix),
                     STOA_OK);
    ck_assert_str_eq(host, "abcdefg");
    ck_assert_int_eq(stoa_kv_parse_url("redis://abcdefgh:1", host, sizeof(host),
                                       &port, &db, &is_unix),
                     STOA_DECLINED);
    ck_assert_int_eq(stoa_kv_parse_url("unix:///abcdefg", host, sizeof(host),
                                       &port, &db, &is_unix),
                     STOA_DECLINED);
}
END_TEST

START_TEST(new_checks_url_without_connecting)
{
    /* Port 1 on loopback: nothing listens, and nothing is tried yet. */
    stoa_kv_t *kv = stoa_kv_new("redis://127.0.0.1:1/2", 100);
    ck_assert_ptr_nonnull(kv);
    stoa_kv_free(kv);
    ck_assert_ptr_null(stoa_kv_new("redis://h:0", 100));
    ck_assert_ptr_null(stoa_kv_new("memcached://h", 100));
    stoa_kv_free(NULL);
}
END_TEST

START_TEST(regression_port_and_db_refuse_whitespace)
{
    /* kv.c reads the port and db with bare strtol(), which skips leading
     * whitespace (and takes a sign), so these are accepted as 80 and 1. */
    static const char *const bad[] = {"redis://h: 80", "redis://h:\t80",
                                      "redis://h/ 1", "redis://h:80/\n1"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++) {
        char host[64];
        int port, db;
        bool is_unix;
        ck_assert_msg(stoa_kv_parse_url(bad[i], host, sizeof(host), &port, &db,
                                        &is_unix) == STOA_DECLINED,
                      "'%s' accepted", bad[i]);
    }
}
END_TEST

/* A unix listener at path: the kernel completes connects into its backlog
 * while nobody accepts, so a client connects and then waits for replies
 * that never come. */
static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    unlink(path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    return fd;
}

/* Answers +PONG to every read of one connection. */
static void *answer_connection(void *arg)
{
    int c = (int)(intptr_t)arg;
    char buf[512];
    while (read(c, buf, sizeof(buf)) > 0)
        if (write(c, "+PONG\r\n", 7) != 7)
            break;
    close(c);
    return NULL;
}

/* Serves every connection at once, each on a thread of its own. */
static void *answer_pong(void *arg)
{
    int listener = *(int *)arg;
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, answer_connection, (void *)(intptr_t)c) ==
            0)
            pthread_detach(t);
        else
            close(c);
    }
}

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Pings through kv; returns the call's status and its duration in *ms. */
static int timed_ping(stoa_kv_t *kv, double *ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = stoa_kv_ping(kv);
    *ms = ms_since(&t0);
    return rc;
}

/* The close hook: runs once, on the probing handle, and its own call
 * reaches the server although the breaker is not closed yet. */
static int hook_runs, hook_rc = -100;

static void on_close(stoa_kv_t *kv, void *arg)
{
    (void)arg;
    hook_runs++;
    hook_rc = stoa_kv_ping(kv);
}

START_TEST(breaker_one_timeout_spares_every_handle)
{
    char path[64], url[80];
    snprintf(path, sizeof(path), "/tmp/stoa-check-kv-%ld.sock", (long)getpid());
    snprintf(url, sizeof(url), "unix://%s", path);
    int hung = listen_unix(path);
    const long timeout_ms = 100;
    stoa_kv_breaker_t *shared = stoa_kv_breaker_new();
    stoa_kv_t *a = stoa_kv_new(url, timeout_ms);
    stoa_kv_t *b = stoa_kv_new(url, timeout_ms);
    stoa_kv_t *alone = stoa_kv_new(url, timeout_ms);
    stoa_kv_share_breaker(a, shared);
    stoa_kv_share_breaker(b, shared);
    stoa_kv_breaker_on_close(shared, on_close, NULL);
    double ms;

    /* The first call waits out its timeout and opens the breaker... */
    ck_assert_int_eq(timed_ping(a, &ms), STOA_AGAIN);
    ck_assert_msg(ms >= timeout_ms / 2, "hung call took %.1f ms", ms);
    ck_assert(stoa_kv_breaker_is_open(a));
    /* ...so the other handle of the pool skips Redis at once, */
    ck_assert_int_eq(timed_ping(b, &ms), STOA_AGAIN);
    ck_assert_msg(ms < timeout_ms / 4, "skipped call took %.1f ms", ms);
    /* and a handle with its own breaker still tries. */
    ck_assert(!stoa_kv_breaker_is_open(alone));
    ck_assert_int_eq(timed_ping(alone, &ms), STOA_AGAIN);
    ck_assert_msg(ms >= timeout_ms / 2, "own-breaker call took %.1f ms", ms);

    /* After the first gap one call probes, hangs again and reopens it. */
    usleep((STOA_KV_BREAKER_MIN_MS + 20) * 1000);
    ck_assert_int_eq(timed_ping(b, &ms), STOA_AGAIN);
    ck_assert_msg(ms >= timeout_ms / 2, "probe took %.1f ms", ms);
    ck_assert(stoa_kv_breaker_is_open(a));
    ck_assert_int_eq(timed_ping(a, &ms), STOA_AGAIN);
    ck_assert_msg(ms < timeout_ms / 4, "skipped call took %.1f ms", ms);

    /* The server answers again: still skipped until the doubled gap ends,
     * then the probe's answer closes the breaker for every handle. */
    close(hung);
    int live = listen_unix(path);
    pthread_t server;
    ck_assert_int_eq(pthread_create(&server, NULL, answer_pong, &live), 0);
    ck_assert_int_eq(timed_ping(a, &ms), STOA_AGAIN);
    ck_assert_msg(ms < timeout_ms / 4, "skipped call took %.1f ms", ms);
    usleep((2 * STOA_KV_BREAKER_MIN_MS + 20) * 1000);
    ck_assert_int_eq(hook_runs, 0);
    ck_assert_int_eq(timed_ping(a, &ms), STOA_OK);
    ck_assert_int_eq(hook_runs, 1);
    ck_assert_int_eq(hook_rc, STOA_OK);
    ck_assert(!stoa_kv_breaker_is_open(b));
    ck_assert_int_eq(timed_ping(b, &ms), STOA_OK);
    ck_assert_int_eq(hook_runs, 1);

    stoa_kv_free(a);
    stoa_kv_free(b);
    stoa_kv_free(alone);
    stoa_kv_breaker_free(shared);
    unlink(path);
}
END_TEST

START_TEST(breaker_stays_closed_on_a_refused_connection)
{
    /* Nothing listens: a refusal costs no wait and must not open it (the
     * retry gap spaces reconnects; an open breaker would delay recovery). */
    char url[80];
    snprintf(url, sizeof(url), "unix:///tmp/stoa-check-kv-none-%ld.sock",
             (long)getpid());
    stoa_kv_t *kv = stoa_kv_new(url, 100);
    double ms;
    ck_assert_int_eq(timed_ping(kv, &ms), STOA_AGAIN);
    ck_assert(!stoa_kv_breaker_is_open(kv));
    stoa_kv_free(kv);
}
END_TEST

static Suite *kv_suite(void)
{
    Suite *s = suite_create("kv");
    TEST_CASE_OF(s, "url", NULL, NULL, LOOP(parse_good_urls, good_urls),
                 LOOP(parse_bad_urls, bad_urls), ONCE(parse_credentials),
                 ONCE(parse_host_too_long),
                 ONCE(new_checks_url_without_connecting));

    TEST_CASE(s, "breaker", NULL, NULL, breaker_one_timeout_spares_every_handle,
              breaker_stays_closed_on_a_refused_connection);

    TEST_CASE(s, "auth", NULL, NULL, auth_reaches_a_server_with_requirepass);

    TEST_CASE(s, "regression", NULL, NULL,
              regression_port_and_db_refuse_whitespace);
    return s;
}

TEST_MAIN(kv_suite)
