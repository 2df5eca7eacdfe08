/* check_fake_redis.h - a small Redis stand-in on a unix socket for the
 * suites of parts that use Redis through the context (revoke, the
 * dispatcher): it keeps string keys in memory, answers PING, SELECT, GET,
 * MGET, SET (EX ignored but recorded), DEL, and records every command it
 * was sent, so a test can say both what was answered and what was asked.
 *
 * One server per test process (Check forks each test, so each test starts
 * with an empty one when the fixture starts it). Static inline like
 * check_util.h: each suite stays one translation unit. */
#ifndef STOA_CHECK_FAKE_REDIS_H
#define STOA_CHECK_FAKE_REDIS_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "check_util.h"
#include "stoa/ctx.h"

#define FAKE_REDIS_KEYS 512
#define FAKE_REDIS_LOG 64

static struct {
    pthread_mutex_t lock;
    char path[64];
    int listener;
    char *keys[FAKE_REDIS_KEYS];
    char *values[FAKE_REDIS_KEYS];
    char *log[FAKE_REDIS_LOG]; /* commands, arguments joined by spaces */
    size_t nlog;
} fake_redis = {.lock = PTHREAD_MUTEX_INITIALIZER, .listener = -1};

/* Reads one line ending in CRLF (without it) into buf; false at EOF. */
static inline bool fake_redis_line(FILE *in, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, in))
        return false;
    buf[strcspn(buf, "\r\n")] = '\0';
    return true;
}

static inline int fake_redis_find(const char *key)
{
    for (int i = 0; i < FAKE_REDIS_KEYS; i++)
        if (fake_redis.keys[i] && strcmp(fake_redis.keys[i], key) == 0)
            return i;
    return -1;
}

/* Sets (value non-NULL) or deletes a key; tests call it too. */
static inline void fake_redis_put(const char *key, const char *value)
{
    pthread_mutex_lock(&fake_redis.lock);
    int i = fake_redis_find(key);
    if (i >= 0) {
        free(fake_redis.keys[i]);
        free(fake_redis.values[i]);
        fake_redis.keys[i] = fake_redis.values[i] = NULL;
    }
    if (value)
        for (i = 0; i < FAKE_REDIS_KEYS; i++)
            if (!fake_redis.keys[i]) {
                fake_redis.keys[i] = strdup(key);
                fake_redis.values[i] = strdup(value);
                break;
            }
    pthread_mutex_unlock(&fake_redis.lock);
}

static inline void fake_redis_bulk(FILE *out, const char *v)
{
    if (v)
        fprintf(out, "$%zu\r\n%s\r\n", strlen(v), v);
    else
        fputs("$-1\r\n", out);
}

/* Answers one command (argv[0..argc)) while holding the lock. */
static inline void fake_redis_answer(FILE *out, int argc, char **argv)
{
    const char *cmd = argv[0];
    if (strcasecmp(cmd, "PING") == 0) {
        fputs("+PONG\r\n", out);
    } else if (strcasecmp(cmd, "SELECT") == 0) {
        fputs("+OK\r\n", out);
    } else if (strcasecmp(cmd, "GET") == 0 && argc == 2) {
        int i = fake_redis_find(argv[1]);
        fake_redis_bulk(out, i >= 0 ? fake_redis.values[i] : NULL);
    } else if (strcasecmp(cmd, "MGET") == 0) {
        fprintf(out, "*%d\r\n", argc - 1);
        for (int k = 1; k < argc; k++) {
            int i = fake_redis_find(argv[k]);
            fake_redis_bulk(out, i >= 0 ? fake_redis.values[i] : NULL);
        }
    } else if (strcasecmp(cmd, "SET") == 0 && argc >= 3) {
        pthread_mutex_unlock(&fake_redis.lock);
        fake_redis_put(argv[1], argv[2]);
        pthread_mutex_lock(&fake_redis.lock);
        fputs("+OK\r\n", out);
    } else if (strcasecmp(cmd, "DEL") == 0 && argc == 2) {
        bool had = fake_redis_find(argv[1]) >= 0;
        pthread_mutex_unlock(&fake_redis.lock);
        fake_redis_put(argv[1], NULL);
        pthread_mutex_lock(&fake_redis.lock);
        fprintf(out, ":%d\r\n", had ? 1 : 0);
    } else {
        fputs("-ERR unknown command\r\n", out);
    }
}

/* Serves one connection: RESP arrays of bulk strings, as hiredis sends. */
static inline void *fake_redis_connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    FILE *in = fdopen(fd, "r");
    FILE *out = fdopen(dup(fd), "w");
    char line[1024];
    while (in && out && fake_redis_line(in, line, sizeof(line)) &&
           line[0] == '*') {
        int argc = atoi(line + 1);
        if (argc < 1 || argc > 32)
            break;
        char *argv[32];
        int got = 0;
        for (; got < argc; got++) {
            if (!fake_redis_line(in, line, sizeof(line)) || line[0] != '$')
                break;
            size_t n = (size_t)atol(line + 1);
            argv[got] = calloc(1, n + 3);
            if (fread(argv[got], 1, n + 2, in) != n + 2) {
                free(argv[got]);
                break;
            }
            argv[got][n] = '\0';
        }
        if (got == argc) {
            pthread_mutex_lock(&fake_redis.lock);
            if (fake_redis.nlog < FAKE_REDIS_LOG) {
                size_t total = 1;
                for (int i = 0; i < argc; i++)
                    total += strlen(argv[i]) + 1;
                char *entry = calloc(1, total);
                for (int i = 0; i < argc; i++) {
                    if (i)
                        strcat(entry, " ");
                    strcat(entry, argv[i]);
                }
                fake_redis.log[fake_redis.nlog++] = entry;
            }
            fake_redis_answer(out, argc, argv);
            pthread_mutex_unlock(&fake_redis.lock);
            fflush(out);
        }
        for (int i = 0; i < got; i++)
            free(argv[i]);
        if (got != argc)
            break;
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    return NULL;
}

static inline void *fake_redis_accept(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(fake_redis.listener, NULL, NULL);
        if (c < 0)
            return NULL;
        pthread_t t;
        if (pthread_create(&t, NULL, fake_redis_connection,
                           (void *)(intptr_t)c) == 0)
            pthread_detach(t);
        else
            close(c);
    }
}

/* Starts the server; returns its redis_url ("unix:///tmp/..."), static. */
static inline const char *fake_redis_start(void)
{
    static char url[80];
    /* A client that hangs up mid-answer must not end the test process
     * (the pools ignore SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    snprintf(fake_redis.path, sizeof(fake_redis.path),
             "/tmp/stoa-check-redis-%ld.sock", (long)getpid());
    unlink(fake_redis.path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", fake_redis.path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    fake_redis.listener = fd;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, fake_redis_accept, NULL), 0);
    pthread_detach(t);
    snprintf(url, sizeof(url), "unix://%s", fake_redis.path);
    return url;
}

/* The socket goes at the end of the test (the accept thread dies with the
 * forked test process). */
static inline void fake_redis_stop(void)
{
    if (fake_redis.listener >= 0)
        unlink(fake_redis.path);
}

/* How many commands were received so far, and the i-th one (borrowed). */
static inline size_t fake_redis_count(void)
{
    pthread_mutex_lock(&fake_redis.lock);
    size_t n = fake_redis.nlog;
    pthread_mutex_unlock(&fake_redis.lock);
    return n;
}

static inline const char *fake_redis_command(size_t i)
{
    pthread_mutex_lock(&fake_redis.lock);
    const char *c = i < fake_redis.nlog ? fake_redis.log[i] : NULL;
    pthread_mutex_unlock(&fake_redis.lock);
    return c;
}

/* A context whose Redis is redis_url (the fake, or somewhere nothing
 * listens) and whose Postgres is unreachable at once, one connection of
 * each (preparing statements, borrowed): enough for the parts that ask
 * Redis first and Postgres only when Redis cannot answer. */
static inline void fake_ctx_open(stoa_ctx_t *ctx, const char *redis_url,
                                 const stoa_db_statement_t *statements,
                                 size_t nstatements)
{
    memset(ctx, 0, sizeof(*ctx));
    stoa_conf_init(&ctx->conf);
    free(ctx->conf.redis_url);
    ctx->conf.redis_url = strdup(redis_url);
    free(ctx->conf.database_url);
    ctx->conf.database_url =
        strdup("host=/nonexistent/stoa-check port=1 dbname=x user=x");
    ctx->conf.redis_timeout_ms = 500;
    char err[128];
    const stoa_db_table_t table = {statements, nstatements};
    ck_assert_int_eq(stoa_ctx_pools_open(ctx, &table, 1, 1, 1, err,
                                         sizeof(err)),
                     STOA_OK);
}

static inline void fake_ctx_close(stoa_ctx_t *ctx)
{
    stoa_ctx_pools_close(ctx);
    stoa_conf_free(&ctx->conf);
}

#endif
