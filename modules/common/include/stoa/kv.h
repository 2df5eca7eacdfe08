/* kv.h - one Redis connection per process (hiredis), with reconnect.
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

typedef struct stoa_kv_s stoa_kv_t;

/* url: redis://host:port[/db] or unix:///path/to.sock. NULL on a malformed
 * url. Does not connect. Caller frees with stoa_kv_free(). */
stoa_kv_t *stoa_kv_new(const char *url, long timeout_ms);
void stoa_kv_free(stoa_kv_t *kv);

STOA_MUSTCHECK int stoa_kv_ping(stoa_kv_t *kv);
/* STOA_OK with *value (arena-owned, NUL-terminated) and *len, STOA_DECLINED
 * when the key is missing, STOA_AGAIN when Redis is unreachable. */
STOA_MUSTCHECK int stoa_kv_get(stoa_kv_t *kv, stoa_arena_t *arena,
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

/* Parses a url without connecting (exposed for tests). */
STOA_MUSTCHECK int stoa_kv_parse_url(const char *url, char *host,
                                     size_t hostlen, int *port, int *db,
                                     bool *is_unix);

#endif
