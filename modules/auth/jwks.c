/* jwks.c - the public JWKS (/.well-known/jwks.json), re-read when the key
 * files change. */
#include <sys/stat.h>

#include "auth.h"

int auth_jwks(stoa_request_t *req)
{
    auth_state_t *st = auth_state(req);
    char path[4096];
    snprintf(path, sizeof(path), "%s/jwks.json", req->ctx->conf.keys_dir);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return STOA_ERROR;
    long long mtime =
        (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    pthread_mutex_lock(&st->lock);
    if (mtime != st->jwks_mtime_ns || !st->jwks.len) {
        FILE *f = fopen(path, "rb");
        if (!f) {
            pthread_mutex_unlock(&st->lock);
            return STOA_ERROR;
        }
        char chunk[4096];
        size_t n;
        stoa_buf_reset(&st->jwks);
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            stoa_buf_append(&st->jwks, chunk, n);
        fclose(f);
        st->jwks_mtime_ns = mtime;
    }
    size_t len = st->jwks.len;
    char *copy = stoa_arena_strndup(req->arena, st->jwks.data, len);
    pthread_mutex_unlock(&st->lock);
    return stoa_http_raw_json(req, 200, copy, len);
}
