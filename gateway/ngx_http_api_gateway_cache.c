/*
 * ngx_http_api_gateway_cache.c - verified-token cache and the check path
 * shared by the nginx module and its benchmark.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "stoa/metrics.h"
#include "ngx_http_api_gateway_cache.h"


#define NGX_HTTP_API_GATEWAY_WAYS  4


typedef struct {
    uint8_t                      hash[NGX_HTTP_API_GATEWAY_HASH_LEN];
    uintptr_t                    profile;
    uint64_t                     generation;
    /* unix second from which the entry is dead: exp + leeway; 0 if empty */
    int64_t                      expires;
    int64_t                      exp;
    /* lengths of sub, sid, role, jti, scope, stored one after the other */
    uint16_t                     len[5];
    char                         claims[NGX_HTTP_API_GATEWAY_CACHED_CLAIMS];
} ngx_http_api_gateway_entry_t;


struct ngx_http_api_gateway_cache_s {
    ngx_http_api_gateway_entry_t *entries;
    size_t                        nsets;     /* a power of two */
    /* fetched once: an implicit fetch per digest costs more than hashing
     * a whole token */
    EVP_MD                       *sha256;
    EVP_MD_CTX                   *md_ctx;
};


ngx_http_api_gateway_cache_t *
ngx_http_api_gateway_cache_create(size_t entries)
{
    size_t                         nsets;
    ngx_http_api_gateway_cache_t  *cache;

    if (entries == 0) {
        return NULL;
    }

    nsets = 1;
    while (nsets * NGX_HTTP_API_GATEWAY_WAYS < entries) {
        if (nsets > SIZE_MAX / 2 / NGX_HTTP_API_GATEWAY_WAYS
                    / sizeof(ngx_http_api_gateway_entry_t))
        {
            return NULL;
        }
        nsets *= 2;
    }

    cache = calloc(1, sizeof(ngx_http_api_gateway_cache_t));
    if (cache == NULL) {
        return NULL;
    }

    cache->nsets = nsets;
    cache->entries = calloc(nsets * NGX_HTTP_API_GATEWAY_WAYS,
                            sizeof(ngx_http_api_gateway_entry_t));
    cache->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    cache->md_ctx = EVP_MD_CTX_new();

    if (cache->entries == NULL || cache->sha256 == NULL
        || cache->md_ctx == NULL)
    {
        ngx_http_api_gateway_cache_destroy(cache);
        return NULL;
    }

    return cache;
}


void
ngx_http_api_gateway_cache_destroy(ngx_http_api_gateway_cache_t *cache)
{
    if (cache == NULL) {
        return;
    }

    EVP_MD_CTX_free(cache->md_ctx);
    EVP_MD_free(cache->sha256);
    free(cache->entries);
    free(cache);
}


size_t
ngx_http_api_gateway_cache_size(ngx_http_api_gateway_cache_t *cache)
{
    return cache ? cache->nsets * NGX_HTTP_API_GATEWAY_WAYS : 0;
}


void
ngx_http_api_gateway_cache_clear(ngx_http_api_gateway_cache_t *cache)
{
    if (cache) {
        memset(cache->entries, 0, cache->nsets * NGX_HTTP_API_GATEWAY_WAYS
                                  * sizeof(ngx_http_api_gateway_entry_t));
    }
}


static int
ngx_http_api_gateway_hash(ngx_http_api_gateway_cache_t *cache,
    const char *token, size_t len, uint8_t *out)
{
    unsigned int  n;

    return EVP_DigestInit_ex2(cache->md_ctx, cache->sha256, NULL) == 1
           && EVP_DigestUpdate(cache->md_ctx, token, len) == 1
           && EVP_DigestFinal_ex(cache->md_ctx, out, &n) == 1
           && n == NGX_HTTP_API_GATEWAY_HASH_LEN;
}


static ngx_http_api_gateway_entry_t *
ngx_http_api_gateway_set(ngx_http_api_gateway_cache_t *cache,
    const uint8_t *hash)
{
    uint64_t  h;

    /* the hash is uniform: any 8 of its bytes index as well as any other */
    memcpy(&h, hash, sizeof(h));

    return &cache->entries[(h & (cache->nsets - 1))
                           * NGX_HTTP_API_GATEWAY_WAYS];
}


static ngx_http_api_gateway_entry_t *
ngx_http_api_gateway_lookup(ngx_http_api_gateway_cache_t *cache,
    const uint8_t *hash, const ngx_http_api_gateway_check_t *check,
    int64_t now)
{
    size_t                         i;
    ngx_http_api_gateway_entry_t  *e;

    e = ngx_http_api_gateway_set(cache, hash);

    for (i = 0; i < NGX_HTTP_API_GATEWAY_WAYS; i++, e++) {

        if (e->expires > now
            && e->profile == check->profile
            && e->generation == check->generation
            && memcmp(e->hash, hash, NGX_HTTP_API_GATEWAY_HASH_LEN) == 0)
        {
            return e;
        }
    }

    return NULL;
}


static void
ngx_http_api_gateway_insert(ngx_http_api_gateway_cache_t *cache,
    const uint8_t *hash, const ngx_http_api_gateway_check_t *check,
    int64_t now, int64_t expires,
    const ngx_http_api_gateway_identity_t *id)
{
    size_t                         i, len[5], total;
    char                          *p;
    const char                    *src[5];
    ngx_http_api_gateway_entry_t  *e, *victim;

    src[0] = id->sub;
    src[1] = id->sid;
    src[2] = id->role;
    src[3] = id->jti;
    src[4] = id->scope;

    total = 0;
    for (i = 0; i < 5; i++) {
        len[i] = strlen(src[i]);
        total += len[i];
    }

    if (total > NGX_HTTP_API_GATEWAY_CACHED_CLAIMS) {
        return;
    }

    /*
     * Victim: a dead or empty way, else the way that would die first (it
     * has the least life left to save signature checks).
     */
    e = ngx_http_api_gateway_set(cache, hash);
    victim = e;

    for (i = 0; i < NGX_HTTP_API_GATEWAY_WAYS; i++, e++) {
        if (e->expires <= now) {
            victim = e;
            break;
        }

        if (e->expires < victim->expires) {
            victim = e;
        }
    }

    memcpy(victim->hash, hash, NGX_HTTP_API_GATEWAY_HASH_LEN);
    victim->profile = check->profile;
    victim->generation = check->generation;
    victim->expires = expires;
    victim->exp = id->exp;

    p = victim->claims;
    for (i = 0; i < 5; i++) {
        victim->len[i] = (uint16_t) len[i];
        memcpy(p, src[i], len[i]);
        p += len[i];
    }
}


static void
ngx_http_api_gateway_entry_identity(const ngx_http_api_gateway_entry_t *e,
    ngx_http_api_gateway_identity_t *id)
{
    size_t       i;
    char        *dst[5];
    const char  *p;

    dst[0] = id->sub;
    dst[1] = id->sid;
    dst[2] = id->role;
    dst[3] = id->jti;
    dst[4] = id->scope;

    p = e->claims;
    for (i = 0; i < 5; i++) {
        memcpy(dst[i], p, e->len[i]);
        dst[i][e->len[i]] = '\0';
        p += e->len[i];
    }

    id->exp = e->exp;
}


stoa_jwt_status_t
ngx_http_api_gateway_check(ngx_http_api_gateway_cache_t *cache,
    const ngx_http_api_gateway_check_t *check, const char *token, size_t len,
    int64_t now, ngx_http_api_gateway_identity_t *identity)
{
    int                            hashed;
    int64_t                        expires;
    uint8_t                        hash[NGX_HTTP_API_GATEWAY_HASH_LEN];
    stoa_jwt_claims_t              claims;
    stoa_jwt_status_t              st;
    stoa_jwt_verify_opts_t         opts;
    ngx_http_api_gateway_entry_t  *e;

    /* refused before hashing: the work done never grows past the cap */
    if (len > STOA_JWT_MAX_LEN) {
        return STOA_JWT_TOO_LONG;
    }

    hashed = 0;

    if (cache) {
        hashed = ngx_http_api_gateway_hash(cache, token, len, hash);

        if (hashed) {
            e = ngx_http_api_gateway_lookup(cache, hash, check, now);
            if (e) {
                ngx_http_api_gateway_entry_identity(e, identity);
                stoa_metrics_count(STOA_METRIC_GATEWAY_CACHE_HIT);
                return STOA_JWT_OK;
            }
        }
    }

    /* what the cache did not answer costs a signature check: a miss */
    stoa_metrics_count(STOA_METRIC_GATEWAY_CACHE_MISS);

    opts.issuer = check->issuer;
    opts.audience = check->audience;
    opts.leeway = check->leeway;
    opts.now = now;

    st = stoa_jwt_verify(check->keys, token, len, &opts, &claims);
    if (st != STOA_JWT_OK) {
        return st;
    }

    /*
     * The core takes "sub": "" for a present claim; an identity without a
     * subject or a role is none, and would pass where any role may go.
     */
    if (claims.sub[0] == '\0' || claims.role[0] == '\0') {
        return STOA_JWT_MISSING_CLAIM;
    }

    /* the claim buffers have the same sizes on both sides */
    memcpy(identity->sub, claims.sub, sizeof(identity->sub));
    memcpy(identity->sid, claims.sid, sizeof(identity->sid));
    memcpy(identity->role, claims.role, sizeof(identity->role));
    memcpy(identity->jti, claims.jti, sizeof(identity->jti));
    memcpy(identity->scope, claims.scope, sizeof(identity->scope));
    identity->exp = claims.exp;

    if (hashed) {
        /* saturating: exp is whatever integer the signer put there */
        expires = claims.exp > INT64_MAX - check->leeway
                  ? INT64_MAX : claims.exp + check->leeway;

        ngx_http_api_gateway_insert(cache, hash, check, now, expires,
                                    identity);
    }

    return STOA_JWT_OK;
}
