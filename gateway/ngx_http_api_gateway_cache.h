/*
 * ngx_http_api_gateway_cache.h - the gateway's token check: a per-worker
 * cache of verified tokens in front of the shared ES256 core (stoa/jwt.h).
 *
 * Plain C with no nginx types, so the module and its benchmark run the very
 * same lookup path. Not thread-safe: one cache per nginx worker process.
 *
 * An entry is keyed by the SHA-256 of the whole token and tagged with the
 * verification profile (key set, issuer, audience, leeway) and the key set
 * generation it was verified under: a token checked for one profile is
 * never accepted from the cache for another, and a key set re-read from
 * disk invalidates everything verified with the previous one. Entries are
 * dropped at exp + leeway. The table is a fixed array of 4-way sets, so its
 * size never depends on what clients send.
 */

#ifndef NGX_HTTP_API_GATEWAY_CACHE_H
#define NGX_HTTP_API_GATEWAY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "stoa/jwt.h"

#define NGX_HTTP_API_GATEWAY_HASH_LEN  32

/*
 * Bytes of sub + sid + role + jti an entry holds. Our own tokens use about
 * 115 (three UUIDs and a role); a token whose claims do not fit is still
 * verified, only not cached.
 */
#define NGX_HTTP_API_GATEWAY_CACHED_CLAIMS  192


typedef struct ngx_http_api_gateway_cache_s  ngx_http_api_gateway_cache_t;

/* The identity a verified token establishes; strings are NUL-terminated. */
typedef struct {
    int64_t                      exp;
    char                         sub[STOA_JWT_CLAIM_MAX + 1];
    char                         sid[STOA_JWT_CLAIM_MAX + 1];
    char                         role[STOA_JWT_CLAIM_MAX + 1];
    char                         jti[STOA_JWT_CLAIM_MAX + 1];
    /* API-key tokens only; empty for login tokens */
    char                         scope[STOA_JWT_CLAIM_MAX * 4 + 1];
} ngx_http_api_gateway_identity_t;

/* What a token is checked against. */
typedef struct {
    const stoa_jwt_keyset_t     *keys;
    uint64_t                     generation;   /* of keys: bump on change */
    uintptr_t                    profile;      /* any value unique per
                                                  (keys, opts) pair */
    const char                  *issuer;       /* NULL: not checked */
    const char                  *audience;     /* NULL: not checked */
    int64_t                      leeway;       /* seconds */
} ngx_http_api_gateway_check_t;


/*
 * Creates a cache of at least `entries` entries (rounded up to a power of
 * two, at least one set); 0 gives NULL without error, meaning "no cache".
 * Returns NULL on allocation failure too; the caller tells them apart by
 * `entries`. Free with ngx_http_api_gateway_cache_destroy().
 */
ngx_http_api_gateway_cache_t *ngx_http_api_gateway_cache_create(
    size_t entries);
void ngx_http_api_gateway_cache_destroy(ngx_http_api_gateway_cache_t *cache);

/* Number of entries (0 for NULL). */
size_t ngx_http_api_gateway_cache_size(ngx_http_api_gateway_cache_t *cache);

/*
 * Checks one compact JWS: a token longer than STOA_JWT_MAX_LEN is refused
 * before any work; a cached token costs a hash and a set probe; anything
 * else goes through stoa_jwt_verify() and, when valid, into the cache.
 * cache may be NULL (no caching). now: unix seconds. On STOA_JWT_OK the
 * identity is filled in; it is left unspecified otherwise. Counts a cache
 * hit, or a miss for every token the core verifies (stoa/metrics.h; a
 * no-op without an open segment).
 */
stoa_jwt_status_t ngx_http_api_gateway_check(
    ngx_http_api_gateway_cache_t *cache,
    const ngx_http_api_gateway_check_t *check, const char *token, size_t len,
    int64_t now, ngx_http_api_gateway_identity_t *identity);

/* Drops every entry (used by tests and benchmarks). */
void ngx_http_api_gateway_cache_clear(ngx_http_api_gateway_cache_t *cache);

#endif /* NGX_HTTP_API_GATEWAY_CACHE_H */
