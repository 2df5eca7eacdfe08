/* kv.h - one Redis connection per handle (hiredis), with reconnect.
 *
 * Redis holds caches, counters and markers only: callers must treat
 * STOA_AGAIN (Redis unreachable) as "no cache", never as permission.
 * Connect and command timeouts always apply. After any error the
 * connection is dropped and the next call reconnects (at most once per
 * STOA_KV_RETRY_MS). */
#ifndef STOA_KV_H
#define STOA_KV_H

#include "stoa/arena.h"
#include "stoa/core.h"

#define STOA_KV_RETRY_MS 200

/* The circuit breaker: a call that waits out redis_timeout_ms (a server
 * that accepts and never answers, say stopped by SIGSTOP) opens it, and
 * every call of every handle sharing it answers STOA_AGAIN at once for
 * STOA_KV_BREAKER_MIN_MS; then one call probes, and each probe that hangs
 * again doubles the gap up to STOA_KV_BREAKER_MAX_MS. A probe that gets
 * any answer (or a quick refusal) closes it. Opening and closing are
 * logged once each. A refused connection never opens it: it costs no
 * wait, and STOA_KV_RETRY_MS spaces reconnects out already. */
#define STOA_KV_BREAKER_MIN_MS 250
#define STOA_KV_BREAKER_MAX_MS 5000

typedef struct stoa_kv_s stoa_kv_t;
typedef struct stoa_kv_breaker_s stoa_kv_breaker_t;

/* url: redis://host:port[/db] or unix:///path/to.sock. NULL on a malformed
 * url. Does not connect. Caller frees with stoa_kv_free(). */
stoa_kv_t *stoa_kv_new(const char *url, long timeout_ms);
void stoa_kv_free(stoa_kv_t *kv);

/* A breaker for several handles (a process's pool: one timeout opens it
 * for every thread). Each handle starts with one of its own. Caller frees
 * with stoa_kv_breaker_free() once no handle uses it. */
stoa_kv_breaker_t *stoa_kv_breaker_new(void);
void stoa_kv_breaker_free(stoa_kv_breaker_t *b);
/* kv uses breaker b from now on (borrowed: must outlive kv; NULL: its own
 * again). Not thread-safe: call before the handle is shared. */
void stoa_kv_share_breaker(stoa_kv_t *kv, stoa_kv_breaker_t *b);
/* fn(kv, arg) runs on the probing handle when b closes after an opening,
 * before any other call goes to Redis again: the calls skipped while it
 * was open may have been writes, and fn makes up for them. fn's own calls
 * on kv bypass the breaker. Not thread-safe: call before the handles are
 * shared. */
void stoa_kv_breaker_on_close(stoa_kv_breaker_t *b,
                              void (*fn)(stoa_kv_t *kv, void *arg), void *arg);
/* True while kv's breaker is open (its calls skip Redis). */
bool stoa_kv_breaker_is_open(const stoa_kv_t *kv);

STOA_MUSTCHECK int stoa_kv_ping(stoa_kv_t *kv);
/* STOA_OK with *value (arena-owned, NUL-terminated) and *len, STOA_DECLINED
 * when the key is missing, STOA_AGAIN when Redis is unreachable. */
STOA_MUSTCHECK int stoa_kv_get(stoa_kv_t *kv, stoa_arena_t *arena,
                               const char *key, char **value, size_t *len);
/* GETDEL (Redis 6.2+): as stoa_kv_get, and the key is gone, so of two
 * callers racing for a single-use value only one gets it. */
STOA_MUSTCHECK int stoa_kv_getdel(stoa_kv_t *kv, stoa_arena_t *arena,
                                  const char *key, char **value, size_t *len);
/* ttl_s 0: no expiry. */
STOA_MUSTCHECK int stoa_kv_set(stoa_kv_t *kv, const char *key,
                               const char *value, size_t len, long ttl_s);
STOA_MUSTCHECK int stoa_kv_del(stoa_kv_t *kv, const char *key);
/* INCR, and EXPIRE when the counter was just created; *out the new value. */
STOA_MUSTCHECK int stoa_kv_incr(stoa_kv_t *kv, const char *key, long ttl_s,
                                long long *out);

/* MGET of n keys: values[i] is arena-owned or NULL when missing. */
STOA_MUSTCHECK int stoa_kv_mget(stoa_kv_t *kv, stoa_arena_t *arena, size_t n,
                                const char *const *keys, char **values);
/* Seconds to live of key: STOA_OK with *ttl (-1: no expiry), STOA_DECLINED
 * when missing. */
STOA_MUSTCHECK int stoa_kv_ttl(stoa_kv_t *kv, const char *key, long *ttl);

/* Parses a url without connecting (exposed for tests):
 * redis://[[user]:password@]host[:port][/db] or unix:///path. The _auth
 * form also gives the userinfo (empty strings when there is none); the
 * credentials are sent with AUTH after every connect. */
STOA_MUSTCHECK int stoa_kv_parse_url_auth(const char *url, char *host,
                                          size_t hostlen, int *port, int *db,
                                          bool *is_unix, char *user,
                                          size_t userlen, char *password,
                                          size_t passlen);
STOA_MUSTCHECK int stoa_kv_parse_url(const char *url, char *host,
                                     size_t hostlen, int *port, int *db,
                                     bool *is_unix);

#endif
