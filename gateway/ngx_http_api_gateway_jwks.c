/*
 * ngx_http_api_gateway_jwks.c - reading JWKS files into key sets, and
 * noticing when one was replaced (see the header).
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_api_gateway_jwks.h"
#include "ngx_http_api_gateway_guard.h"


/* a JWKS is a handful of public keys; anything bigger is not one */
#define NGX_HTTP_API_GATEWAY_JWKS_MAX         (256 * 1024)
#define NGX_HTTP_API_GATEWAY_RELOAD_INTERVAL  1000


static ngx_int_t ngx_http_api_gateway_jwks_load(
    ngx_http_api_gateway_jwks_t *jwks, ngx_log_t *log, u_char *err,
    size_t errlen);
static u_char *ngx_http_api_gateway_jwks_read(ngx_fd_t fd,
    ngx_file_info_t *fi, ngx_log_t *log, ssize_t *n, u_char *err,
    size_t errlen);
static void ngx_http_api_gateway_jwks_cleanup(void *data);


ngx_int_t
ngx_http_api_gateway_jwks_get(ngx_conf_t *cf, ngx_array_t *known,
    ngx_str_t *path, ngx_http_api_gateway_jwks_t **jwks, u_char *err,
    size_t errlen)
{
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_http_api_gateway_jwks_t  *set, **setp;

    setp = known->elts;
    for (i = 0; i < known->nelts; i++) {
        if (setp[i]->path.len == path->len
            && ngx_strncmp(setp[i]->path.data, path->data, path->len) == 0)
        {
            *jwks = setp[i];
            return NGX_OK;
        }
    }

    set = ngx_pcalloc(cf->pool, sizeof(ngx_http_api_gateway_jwks_t));
    if (set == NULL) {
        return NGX_ERROR;
    }

    set->path = *path;

    if (ngx_http_api_gateway_jwks_load(set, cf->log, err, errlen) != NGX_OK) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        stoa_jwt_keyset_free(&set->keys);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_api_gateway_jwks_cleanup;
    cln->data = set;

    setp = ngx_array_push(known);
    if (setp == NULL) {
        return NGX_ERROR;
    }

    *setp = set;
    *jwks = set;

    return NGX_OK;
}


/*
 * Reads and parses the JWKS file; on success the new keys replace the old
 * ones and the generation moves on. On failure the old keys stay and err
 * says why.
 */
static ngx_int_t
ngx_http_api_gateway_jwks_load(ngx_http_api_gateway_jwks_t *jwks,
    ngx_log_t *log, u_char *err, size_t errlen)
{
    char               reason[256];
    u_char            *text;
    ssize_t            n;
    ngx_fd_t           fd;
    ngx_int_t          rc;
    ngx_file_info_t    fi;
    stoa_jwt_keyset_t  keys;

    fd = ngx_open_file(jwks->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_snprintf(err, errlen, "cannot open: %s%Z", strerror(ngx_errno));
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    text = ngx_http_api_gateway_jwks_read(fd, &fi, log, &n, err, errlen);
    if (text == NULL) {
        goto done;
    }

    reason[0] = '\0';

    if (ngx_http_api_gateway_keyset_from_jwks(&keys, (const char *) text,
                                              (size_t) n, reason,
                                              sizeof(reason))
        != STOA_OK)
    {
        ngx_snprintf(err, errlen, "%s%Z", reason);
        goto done;
    }

    stoa_jwt_keyset_free(&jwks->keys);
    jwks->keys = keys;
    jwks->generation++;
    jwks->uniq = ngx_file_uniq(&fi);
    jwks->size = ngx_file_size(&fi);
    jwks->mtime = ngx_file_mtime(&fi);

    rc = NGX_OK;

done:

    if (text) {
        ngx_free(text);
    }

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      ngx_close_file_n " \"%s\" failed", jwks->path.data);
    }

    return rc;
}


/*
 * The whole of an open JWKS file, and its file information in fi: a
 * buffer to ngx_free() holding *n bytes, or NULL with err saying why.
 */
static u_char *
ngx_http_api_gateway_jwks_read(ngx_fd_t fd, ngx_file_info_t *fi,
    ngx_log_t *log, ssize_t *n, u_char *err, size_t errlen)
{
    off_t    size;
    u_char  *text;

    if (ngx_fd_info(fd, fi) == NGX_FILE_ERROR) {
        ngx_snprintf(err, errlen, "cannot stat: %s%Z", strerror(ngx_errno));
        return NULL;
    }

    size = ngx_file_size(fi);

    if (!ngx_is_file(fi) || size > NGX_HTTP_API_GATEWAY_JWKS_MAX) {
        ngx_snprintf(err, errlen, "not a regular file of at most %d bytes%Z",
                     NGX_HTTP_API_GATEWAY_JWKS_MAX);
        return NULL;
    }

    text = ngx_alloc((size_t) size + 1, log);
    if (text == NULL) {
        ngx_snprintf(err, errlen, "out of memory%Z");
        return NULL;
    }

    /* one byte more than the size: a file that grew is not read in half */
    *n = ngx_read_fd(fd, text, (size_t) size + 1);

    if (*n != (ssize_t) size) {
        ngx_snprintf(err, errlen, "cannot read: %s%Z",
                     *n == -1 ? strerror(ngx_errno) : "changed while read");
        ngx_free(text);
        return NULL;
    }

    return text;
}


void
ngx_http_api_gateway_jwks_refresh(ngx_http_api_gateway_jwks_t *jwks,
    ngx_log_t *log)
{
    u_char           err[512];
    ngx_file_info_t  fi;

    if (jwks->reloaded_once
        && ngx_current_msec - jwks->reloaded
           < NGX_HTTP_API_GATEWAY_RELOAD_INTERVAL)
    {
        return;
    }

    if (ngx_file_info(jwks->path.data, &fi) == NGX_FILE_ERROR) {
        /* logged at most once a second too */
        jwks->reloaded = ngx_current_msec;
        jwks->reloaded_once = 1;

        ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                      "api gateway: " ngx_file_info_n " \"%s\" failed",
                      jwks->path.data);
        return;
    }

    if (ngx_file_uniq(&fi) == jwks->uniq
        && ngx_file_size(&fi) == jwks->size
        && ngx_file_mtime(&fi) == jwks->mtime)
    {
        return;
    }

    jwks->reloaded = ngx_current_msec;
    jwks->reloaded_once = 1;

    if (ngx_http_api_gateway_jwks_load(jwks, log, err, sizeof(err))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "api gateway: keys in \"%s\" not reloaded, the "
                      "previous ones stay: %s", jwks->path.data, err);
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "api gateway: reloaded %uz keys from \"%s\"",
                  jwks->keys.nkeys, jwks->path.data);
}


static void
ngx_http_api_gateway_jwks_cleanup(void *data)
{
    ngx_http_api_gateway_jwks_t  *jwks = data;

    stoa_jwt_keyset_free(&jwks->keys);
}
