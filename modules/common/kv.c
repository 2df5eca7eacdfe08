/* kv.c - hiredis connection with timeouts and reconnect, and the circuit
 * breaker that keeps a hung Redis from costing every call its timeout. */
#include "stoa/kv.h"

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/crypto.h"
#include "stoa/log.h"
#include "stoa/metrics.h"

/* Lock-free: every Redis call of every thread reads open_until_us, and a
 * closed breaker must cost no more than that one load. */
struct stoa_kv_breaker_s {
    _Atomic uint64_t open_until_us; /* 0: closed; else skip Redis until */
    _Atomic long backoff_ms;        /* the gap of the current opening */
    void (*on_close)(stoa_kv_t *kv, void *arg);
    void *on_close_arg;
};

struct stoa_kv_s {
    redisContext *ctx;
    char host[256]; /* host name or unix socket path */
    int port;
    int db;
    bool is_unix;
    /* From the url's userinfo: AUTH [user] password after each connect;
     * empty: no AUTH. */
    char user[128];
    char password[256];
    long timeout_ms;
    uint64_t last_attempt_us;
    bool reached;               /* the last call connected or sent */
    bool bypass;                /* inside the breaker's on_close hook */
    stoa_kv_breaker_t *breaker; /* own_breaker, or one shared */
    stoa_kv_breaker_t own_breaker;
};

/* Decimal digits only (strtol would take spaces and signs). */
static bool parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0 || n > 6)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* Copies userinfo "[user]:password" (the part of a redis:// url before
 * its '@') into user and password. */
static bool parse_userinfo(const char *p, size_t n, char *user, size_t userlen,
                           char *password, size_t passlen)
{
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return false;
    size_t ulen = (size_t)(colon - p), plen = n - ulen - 1;
    if (plen == 0 || ulen >= userlen || plen >= passlen)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x21 || p[i] == 0x7f)
            return false;
    memcpy(user, p, ulen);
    user[ulen] = '\0';
    memcpy(password, colon + 1, plen);
    password[plen] = '\0';
    return true;
}

int stoa_kv_parse_url_auth(const char *url, char *host, size_t hostlen,
                           int *port, int *db, bool *is_unix, char *user,
                           size_t userlen, char *password, size_t passlen)
{
    *port = 6379;
    *db = 0;
    *is_unix = false;
    user[0] = password[0] = '\0';
    if (strncmp(url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (*path != '/' || strlen(path) >= hostlen)
            return STOA_DECLINED;
        snprintf(host, hostlen, "%s", path);
        *is_unix = true;
        return STOA_OK;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return STOA_DECLINED;
    const char *p = url + 8;
    /* redis://[user]:password@host...: the last '@' ends the userinfo
     * (a host has none; a password may hold '/' or ':'). */
    const char *at = strrchr(p, '@');
    if (at) {
        if (!parse_userinfo(p, (size_t)(at - p), user, userlen, password,
                            passlen))
            return STOA_DECLINED;
        p = at + 1;
    }
    const char *end = p + strcspn(p, ":/");
    if (end == p || (size_t)(end - p) >= hostlen)
        return STOA_DECLINED;
    memcpy(host, p, (size_t)(end - p));
    host[end - p] = '\0';
    p = end;
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/");
        long v;
        if (!parse_uint(p + 1, n, 65535, &v) || v < 1)
            return STOA_DECLINED;
        *port = (int)v;
        p += 1 + n;
    }
    if (*p == '/' && p[1]) {
        long v;
        if (!parse_uint(p + 1, strlen(p + 1), 15, &v))
            return STOA_DECLINED;
        *db = (int)v;
    } else if (*p && strcmp(p, "/") != 0) {
        return STOA_DECLINED;
    }
    return STOA_OK;
}

int stoa_kv_parse_url(const char *url, char *host, size_t hostlen, int *port,
                      int *db, bool *is_unix)
{
    char user[128], password[256];
    int rc = stoa_kv_parse_url_auth(url, host, hostlen, port, db, is_unix, user,
                                    sizeof(user), password, sizeof(password));
    stoa_wipe(password, sizeof(password));
    return rc;
}

stoa_kv_t *stoa_kv_new(const char *url, long timeout_ms)
{
    stoa_kv_t *kv = stoa_xcalloc(1, sizeof(*kv));
    if (stoa_kv_parse_url_auth(url, kv->host, sizeof(kv->host), &kv->port,
                               &kv->db, &kv->is_unix, kv->user,
                               sizeof(kv->user), kv->password,
                               sizeof(kv->password)) != STOA_OK) {
        stoa_wipe(kv->password, sizeof(kv->password));
        free(kv);
        return NULL;
    }
    kv->timeout_ms = timeout_ms;
    atomic_init(&kv->own_breaker.open_until_us, 0);
    atomic_init(&kv->own_breaker.backoff_ms, 0);
    kv->breaker = &kv->own_breaker;
    return kv;
}

stoa_kv_breaker_t *stoa_kv_breaker_new(void)
{
    stoa_kv_breaker_t *b = stoa_xcalloc(1, sizeof(*b));
    atomic_init(&b->open_until_us, 0);
    atomic_init(&b->backoff_ms, 0);
    return b;
}

void stoa_kv_breaker_free(stoa_kv_breaker_t *b)
{
    free(b);
}

void stoa_kv_breaker_on_close(stoa_kv_breaker_t *b,
                              void (*fn)(stoa_kv_t *kv, void *arg), void *arg)
{
    b->on_close = fn;
    b->on_close_arg = arg;
}

void stoa_kv_share_breaker(stoa_kv_t *kv, stoa_kv_breaker_t *b)
{
    kv->breaker = b ? b : &kv->own_breaker;
}

bool stoa_kv_breaker_is_open(const stoa_kv_t *kv)
{
    return kv && atomic_load(&kv->breaker->open_until_us) != 0;
}

/* Whether a call may go to Redis now. While the breaker is open, no; when
 * its gap has passed, one caller wins the right to probe (*probe) and the
 * others still skip: the probe holds the breaker open for as long as it
 * may wait (connect and command timeouts), then settles it. */
static bool breaker_admit(stoa_kv_breaker_t *b, long timeout_ms, bool *probe)
{
    *probe = false;
    uint64_t until =
        atomic_load_explicit(&b->open_until_us, memory_order_acquire);
    if (until == 0)
        return true;
    uint64_t now = stoa_now_us();
    if (now < until)
        return false;
    uint64_t lease = now + (uint64_t)(2 * timeout_ms + 100) * 1000;
    if (!atomic_compare_exchange_strong(&b->open_until_us, &until, lease))
        return false;
    *probe = true;
    return true;
}

/* A call waited out its timeout: open the breaker (a probe that hung
 * again doubles the gap, up to STOA_KV_BREAKER_MAX_MS). Logged when it
 * opens, not at every probe. */
static void breaker_trip(stoa_kv_breaker_t *b, bool probe)
{
    uint64_t now = stoa_now_us();
    if (probe) {
        long gap = atomic_load(&b->backoff_ms) * 2;
        if (gap > STOA_KV_BREAKER_MAX_MS)
            gap = STOA_KV_BREAKER_MAX_MS;
        atomic_store(&b->backoff_ms, gap);
        atomic_store(&b->open_until_us, now + (uint64_t)gap * 1000);
        return;
    }
    uint64_t closed = 0;
    uint64_t until = now + (uint64_t)STOA_KV_BREAKER_MIN_MS * 1000;
    /* Threads already waiting when it opened time out too: only the first
     * opens it (and the others do not reset the gap of an opening). */
    if (!atomic_compare_exchange_strong(&b->open_until_us, &closed, until))
        return;
    atomic_store(&b->backoff_ms, STOA_KV_BREAKER_MIN_MS);
    stoa_log(STOA_LOG_ERR,
             "redis timed out: circuit open, calls skip Redis (first probe "
             "in %d ms, gaps doubling to %d ms)",
             STOA_KV_BREAKER_MIN_MS, STOA_KV_BREAKER_MAX_MS);
}

static void breaker_settle(stoa_kv_t *kv, bool probe, bool hung, bool reached)
{
    stoa_kv_breaker_t *b = kv->breaker;
    if (hung) {
        breaker_trip(b, probe);
    } else if (probe && !reached) {
        /* This handle did not try (its own retry gap): let the next
         * caller probe instead. */
        atomic_store(&b->open_until_us, stoa_now_us());
    } else if (probe) {
        /* Still open for everyone else: the hook's calls come first. */
        if (b->on_close) {
            kv->bypass = true;
            b->on_close(kv, b->on_close_arg);
            kv->bypass = false;
        }
        atomic_store(&b->backoff_ms, 0);
        atomic_store(&b->open_until_us, 0);
        stoa_log(STOA_LOG_NOTICE, "redis answers again: circuit closed");
    }
}

static void drop(stoa_kv_t *kv)
{
    if (kv->ctx)
        redisFree(kv->ctx);
    kv->ctx = NULL;
}

void stoa_kv_free(stoa_kv_t *kv)
{
    if (!kv)
        return;
    drop(kv);
    stoa_wipe(kv->password, sizeof(kv->password));
    free(kv);
}

static redisReply *command_argv(stoa_kv_t *kv, int argc, const char **argv,
                                const size_t *lens);

static int ensure(stoa_kv_t *kv)
{
    /* NULL: the pool had no connection to give; as if Redis were down. */
    if (!kv)
        return STOA_AGAIN;
    if (kv->ctx)
        return STOA_OK;
    uint64_t now = stoa_now_us();
    if (kv->last_attempt_us &&
        now - kv->last_attempt_us < (uint64_t)STOA_KV_RETRY_MS * 1000)
        return STOA_AGAIN;
    kv->last_attempt_us = now;
    kv->reached = true;
    struct timeval tv = {kv->timeout_ms / 1000, (kv->timeout_ms % 1000) * 1000};
    redisContext *c = kv->is_unix
                          ? redisConnectUnixWithTimeout(kv->host, tv)
                          : redisConnectWithTimeout(kv->host, kv->port, tv);
    if (!c || c->err) {
        stoa_log(STOA_LOG_WARN, "redis connect failed: %s",
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return STOA_AGAIN;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        redisFree(c);
        return STOA_AGAIN;
    }
    kv->ctx = c;
    if (kv->password[0]) {
        /* AUTH password, or AUTH user password (Redis 6 ACLs). */
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (kv->user[0]) {
            argv[argc] = kv->user;
            lens[argc++] = strlen(kv->user);
        }
        argv[argc] = kv->password;
        lens[argc++] = strlen(kv->password);
        redisReply *r = command_argv(kv, argc, argv, lens);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            stoa_log(STOA_LOG_ERR,
                     "redis refused the credentials of redis_url");
            drop(kv);
            return STOA_AGAIN;
        }
    }
    if (kv->db) {
        char dbs[8];
        snprintf(dbs, sizeof(dbs), "%d", kv->db);
        const char *argv[] = {"SELECT", dbs};
        size_t lens[] = {6, strlen(dbs)};
        redisReply *r = command_argv(kv, 2, argv, lens);
        bool ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            drop(kv);
            return STOA_AGAIN;
        }
    }
    kv->last_attempt_us = 0;
    return STOA_OK;
}

/* Runs one command; on any transport error the context is dropped so the
 * next call reconnects. Returns NULL on transport errors. */
static redisReply *command_argv(stoa_kv_t *kv, int argc, const char **argv,
                                const size_t *lens)
{
    redisReply *r = redisCommandArgv(kv->ctx, argc, argv, lens);
    if (!r || kv->ctx->err) {
        stoa_log(STOA_LOG_WARN, "redis command failed: %s",
                 kv->ctx->errstr[0] ? kv->ctx->errstr : "no reply");
        if (r)
            freeReplyObject(r);
        drop(kv);
        return NULL;
    }
    return r;
}

static redisReply *run_once(stoa_kv_t *kv, int argc, const char **argv,
                            const size_t *lens, int *rc)
{
    *rc = ensure(kv);
    if (*rc != STOA_OK)
        return NULL;
    kv->reached = true;
    redisReply *r = command_argv(kv, argc, argv, lens);
    if (!r) {
        *rc = STOA_AGAIN;
        return NULL;
    }
    return r;
}

/* One command through the breaker. A transport failure that took at least
 * half of timeout_ms is a hang (a server that accepts and never answers,
 * or a connect that timed out), not a refusal: a refused connect costs
 * nothing and the retry gap already spaces those out. */
static redisReply *run(stoa_kv_t *kv, int argc, const char **argv,
                       const size_t *lens, int *rc)
{
    bool probe;
    if (kv && kv->bypass)
        return run_once(kv, argc, argv, lens, rc);
    if (!kv || !breaker_admit(kv->breaker, kv->timeout_ms, &probe)) {
        *rc = STOA_AGAIN;
        return NULL;
    }
    uint64_t t0 = stoa_now_us();
    kv->reached = false;
    redisReply *r = run_once(kv, argc, argv, lens, rc);
    bool hung = !r && *rc == STOA_AGAIN &&
                stoa_now_us() - t0 >= (uint64_t)kv->timeout_ms * 500;
    if (hung || probe)
        breaker_settle(kv, probe, hung, kv->reached);
    if (!r) {
        stoa_metrics_count(STOA_METRIC_REDIS_ERRORS);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        stoa_metrics_count(STOA_METRIC_REDIS_ERRORS);
        stoa_log(STOA_LOG_ERR, "redis error reply: %.*s", (int)r->len, r->str);
        freeReplyObject(r);
        *rc = STOA_ERROR;
        return NULL;
    }
    return r;
}

int stoa_kv_ping(stoa_kv_t *kv)
{
    const char *argv[] = {"PING"};
    size_t lens[] = {4};
    int rc;
    redisReply *r = run(kv, 1, argv, lens, &rc);
    if (!r)
        return rc == STOA_ERROR ? STOA_AGAIN : rc;
    freeReplyObject(r);
    return STOA_OK;
}

static int get_command(stoa_kv_t *kv, stoa_arena_t *arena, const char *cmd,
                       const char *key, char **value, size_t *len)
{
    const char *argv[] = {cmd, key};
    size_t lens[] = {strlen(cmd), strlen(key)};
    int rc;
    redisReply *r = run(kv, 2, argv, lens, &rc);
    if (!r)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return STOA_DECLINED;
    }
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return STOA_ERROR;
    }
    *value = stoa_arena_strndup(arena, r->str, (size_t)r->len);
    if (len)
        *len = (size_t)r->len;
    freeReplyObject(r);
    return STOA_OK;
}

int stoa_kv_get(stoa_kv_t *kv, stoa_arena_t *arena, const char *key,
                char **value, size_t *len)
{
    return get_command(kv, arena, "GET", key, value, len);
}

int stoa_kv_getdel(stoa_kv_t *kv, stoa_arena_t *arena, const char *key,
                   char **value, size_t *len)
{
    return get_command(kv, arena, "GETDEL", key, value, len);
}

int stoa_kv_set(stoa_kv_t *kv, const char *key, const char *value, size_t len,
                long ttl_s)
{
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    const char *argv[] = {"SET", key, value, "EX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    int rc;
    redisReply *r = run(kv, ttl_s > 0 ? 5 : 3, argv, lens, &rc);
    if (!r)
        return rc;
    freeReplyObject(r);
    return STOA_OK;
}

int stoa_kv_del(stoa_kv_t *kv, const char *key)
{
    const char *argv[] = {"DEL", key};
    size_t lens[] = {3, strlen(key)};
    int rc;
    redisReply *r = run(kv, 2, argv, lens, &rc);
    if (!r)
        return rc;
    freeReplyObject(r);
    return STOA_OK;
}

int stoa_kv_incr(stoa_kv_t *kv, const char *key, long ttl_s, long long *out)
{
    const char *argv[] = {"INCR", key};
    size_t lens[] = {4, strlen(key)};
    int rc;
    redisReply *r = run(kv, 2, argv, lens, &rc);
    if (!r)
        return rc;
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        return STOA_ERROR;
    }
    *out = r->integer;
    freeReplyObject(r);
    if (*out == 1 && ttl_s > 0) {
        char ttl[24];
        snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
        const char *eargv[] = {"EXPIRE", key, ttl};
        size_t elens[] = {6, strlen(key), strlen(ttl)};
        r = run(kv, 3, eargv, elens, &rc);
        if (!r)
            return rc;
        freeReplyObject(r);
    }
    return STOA_OK;
}

int stoa_kv_mget(stoa_kv_t *kv, stoa_arena_t *arena, size_t n,
                 const char *const *keys, char **values)
{
    const char *argv[17];
    size_t lens[17];
    STOA_ASSERT(n >= 1 && n <= 16);
    argv[0] = "MGET";
    lens[0] = 4;
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = keys[i];
        lens[i + 1] = strlen(keys[i]);
        values[i] = NULL;
    }
    int rc;
    redisReply *r = run(kv, (int)n + 1, argv, lens, &rc);
    if (!r)
        return rc;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        freeReplyObject(r);
        return STOA_ERROR;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING)
            values[i] = stoa_arena_strndup(arena, e->str, (size_t)e->len);
    }
    freeReplyObject(r);
    return STOA_OK;
}

int stoa_kv_ttl(stoa_kv_t *kv, const char *key, long *ttl)
{
    const char *argv[] = {"TTL", key};
    size_t lens[] = {3, strlen(key)};
    int rc;
    redisReply *r = run(kv, 2, argv, lens, &rc);
    if (!r)
        return rc;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    if (v == -2)
        return STOA_DECLINED;
    *ttl = (long)v;
    return STOA_OK;
}
