/* hostcache.h - small answers cached in each process, kept correct across
 * every process of the host.
 *
 * A read served from Redis costs a round trip to another process (two
 * hand-offs, the largest part of an authenticated read). This cache keeps
 * such answers in the process, and a file every process of the host maps
 * (host_cache_file: on a local file system, ideally tmpfs) holds a version
 * counter per key hash: a writer bumps the key's counter after its commit
 * (and after dropping the Redis copy), and a reader serves its copy only
 * while the counter still reads what it read before it fetched the copy.
 * So a change made by any process of the host (a pool, stoactl, the jobs
 * worker) is seen by the next read on every process of it: read-your-
 * writes across processes. A writer on another host bumps its own host's
 * file only; a copy is therefore also dropped STOA_HOSTCACHE_MAX_AGE_MS
 * after it was fetched, the bound a revocation already has (SPEC §4).
 *
 * Keys share counters by hash (65,536 of them): a bump of one key also
 * invalidates the keys it collides with, which costs them a fetch, never
 * a stale answer. Copies are at most STOA_HOSTCACHE_MAX_VALUE bytes; a
 * process keeps STOA_HOSTCACHE_ENTRIES of them, one per slot of a direct-
 * mapped table. Thread-safe. A NULL cache (no host_cache_file) caches
 * nothing: every call is a no-op or a miss. */
#ifndef STOA_HOSTCACHE_H
#define STOA_HOSTCACHE_H

#include "stoa/arena.h"
#include "stoa/core.h"

#define STOA_HOSTCACHE_MAX_AGE_MS 1000
#define STOA_HOSTCACHE_MAX_VALUE 4096
#define STOA_HOSTCACHE_ENTRIES 4096
#define STOA_HOSTCACHE_COUNTERS 65536

typedef struct stoa_hostcache_s stoa_hostcache_t;

/* Maps path (created 0600 when missing) and makes the process's table.
 * STOA_OK with *out, or STOA_ERROR with err filled (path unusable). */
STOA_MUSTCHECK int stoa_hostcache_open(const char *path, stoa_hostcache_t **out,
                                       char *err, size_t errlen);
void stoa_hostcache_close(stoa_hostcache_t *hc);

/* The key's counter now: read it before fetching what will be put. */
uint64_t stoa_hostcache_version(const stoa_hostcache_t *hc, const char *key);
/* After a change of what key names is committed: every process of the
 * host drops its copy. */
void stoa_hostcache_bump(stoa_hostcache_t *hc, const char *key);

/* A copy of key made at version, still current: STOA_OK with *value
 * (arena-owned, NUL-terminated) and *len; STOA_DECLINED otherwise. */
int stoa_hostcache_get(stoa_hostcache_t *hc, stoa_arena_t *arena,
                       const char *key, char **value, size_t *len);
/* Keeps value as key's copy, made at version (read before the fetch). */
void stoa_hostcache_put(stoa_hostcache_t *hc, const char *key, uint64_t version,
                        const char *value, size_t len);

#endif
