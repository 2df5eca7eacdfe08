/*
 * ngx_http_api_gateway_jwks.h - the key sets the gateway verifies with.
 *
 * One key set per JWKS file, however many locations name it. It is read
 * when the configuration is loaded (a missing, unreadable or invalid file
 * fails the configuration) and freed with the configuration's pool.
 *
 * Between reloads a worker looks at the file again when a token names a
 * kid the keys lack (ngx_http_api_gateway_jwks_refresh()): one stat each
 * time, a read only when the file was replaced (its inode, size or mtime
 * changed, as a rename into place does) and at most once a second, so
 * unknown kids cannot make a worker parse the file in a loop. A file that
 * cannot be read or parsed leaves the previous keys in place.
 *
 * Every successful read moves `generation` on: cached verifications made
 * with the previous keys die with it. Parsing goes through the guarded
 * core (ngx_http_api_gateway_guard.h), so a worker short of memory keeps
 * its keys and logs an error instead of aborting.
 */

#ifndef NGX_HTTP_API_GATEWAY_JWKS_H
#define NGX_HTTP_API_GATEWAY_JWKS_H

#include <ngx_config.h>
#include <ngx_core.h>

#include "stoa/jwt.h"


typedef struct {
    ngx_str_t                        path;       /* NUL-terminated */
    stoa_jwt_keyset_t                keys;
    /* bumped whenever keys change: cached verifications die with it */
    uint64_t                         generation;
    /* the file the keys came from, to notice a replacement */
    ngx_file_uniq_t                  uniq;
    off_t                            size;
    time_t                           mtime;
    ngx_msec_t                       reloaded;
    ngx_uint_t                       reloaded_once;
} ngx_http_api_gateway_jwks_t;


/*
 * The key set of the file at path (full, NUL-terminated), from known (an
 * array of ngx_http_api_gateway_jwks_t *) or read now and added to it.
 * NGX_OK with *jwks set; NGX_DECLINED when the file cannot be used (err
 * says why); NGX_ERROR when memory ran out. Owned by cf->pool.
 */
ngx_int_t ngx_http_api_gateway_jwks_get(ngx_conf_t *cf, ngx_array_t *known,
    ngx_str_t *path, ngx_http_api_gateway_jwks_t **jwks, u_char *err,
    size_t errlen);

/*
 * Called when a token names an unknown kid: reads the file again when it
 * was replaced (see above). Logs what it did to log; the caller compares
 * jwks->generation to learn whether the keys changed.
 */
void ngx_http_api_gateway_jwks_refresh(ngx_http_api_gateway_jwks_t *jwks,
    ngx_log_t *log);

#endif /* NGX_HTTP_API_GATEWAY_JWKS_H */
