/* keys.c - signing keys on disk: ensure, rotate, publish. */
#include "stoa/keys.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stoa/buf.h"

#define RETIRE_GRACE_S 60

static STOA_PRINTF(3, 4) int keys_fail(char *err, size_t errlen,
                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return STOA_ERROR;
}

/* Writes data to dir/name through a temporary file and rename(2). */
static int write_atomic(const char *dir, const char *name, const char *data,
                        size_t len, mode_t mode)
{
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.tmp", dir, name, (long)getpid());
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return STOA_ERROR;
    bool ok = fwrite(data, 1, len, f) == len;
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    ok = ok && chmod(tmp, mode) == 0 && rename(tmp, path) == 0;
    if (!ok)
        unlink(tmp);
    return ok ? STOA_OK : STOA_ERROR;
}

static bool read_small(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return n > 0;
}

static bool kid_sane(const char *kid)
{
    size_t n = strlen(kid);
    if (n == 0 || n > STOA_JWT_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = kid[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

static bool current_kid(const char *dir, char kid[STOA_JWT_KID_MAX + 1])
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/current", dir);
    return read_small(path, kid, STOA_JWT_KID_MAX + 1) && kid_sane(kid);
}

stoa_jwt_key_t *stoa_keys_load_current(const char *dir)
{
    char kid[STOA_JWT_KID_MAX + 1], path[4096];
    if (!current_kid(dir, kid))
        return NULL;
    snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
    return stoa_jwt_key_load_pem(path);
}

/* Rewrites jwks.json from the keys still in use; deletes keys retired
 * long enough ago that no token they signed can still be valid. */
static int publish(const char *dir, long token_ttl, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d)
        return keys_fail(err, errlen, "cannot open %s: %s", dir,
                         strerror(errno));
    stoa_buf_t jwks;
    stoa_buf_init(&jwks);
    stoa_buf_puts(&jwks, "{\"keys\":[");
    int count = 0;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".pem") != 0)
            continue;
        char kid[STOA_JWT_KID_MAX + 1], path[4096], retired[32];
        if (n - 4 > STOA_JWT_KID_MAX)
            continue;
        memcpy(kid, e->d_name, n - 4);
        kid[n - 4] = '\0';
        if (!kid_sane(kid))
            continue;
        snprintf(path, sizeof(path), "%s/%s.retired", dir, kid);
        if (read_small(path, retired, sizeof(retired)) &&
            atol(retired) + token_ttl + RETIRE_GRACE_S < (long)now) {
            unlink(path);
            snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
            unlink(path);
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
        stoa_jwt_key_t *key = stoa_jwt_key_load_pem(path);
        if (!key)
            continue;
        if (count++)
            stoa_buf_puts(&jwks, ",");
        stoa_jwt_key_jwk(key, &jwks);
        stoa_jwt_key_free(key);
    }
    closedir(d);
    stoa_buf_puts(&jwks, "]}\n");
    int rc = count ? write_atomic(dir, "jwks.json", jwks.data, jwks.len, 0644)
                   : STOA_ERROR;
    stoa_buf_free(&jwks);
    if (rc != STOA_OK)
        return keys_fail(err, errlen, "cannot write %s/jwks.json", dir);
    return STOA_OK;
}

int stoa_keys_rotate(const char *dir, long token_ttl, char *kid_out, char *err,
                     size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return keys_fail(err, errlen, "cannot create %s: %s", dir,
                         strerror(errno));
    stoa_jwt_key_t *key = stoa_jwt_key_generate();
    if (!key)
        return keys_fail(err, errlen, "key generation failed");
    char path[4096], old[STOA_JWT_KID_MAX + 1];
    const char *kid = stoa_jwt_key_id(key);
    snprintf(path, sizeof(path), "%s/%s.pem", dir, kid);
    int rc = stoa_jwt_key_save_pem(key, path);
    if (rc != STOA_OK) {
        stoa_jwt_key_free(key);
        return keys_fail(err, errlen, "cannot write %s", path);
    }
    if (kid_out)
        snprintf(kid_out, STOA_JWT_KID_MAX + 1, "%s", kid);
    bool had_old = current_kid(dir, old);
    /* Publish the new public key before it signs anything, so a verifier
     * never meets a token whose key it cannot find. */
    rc = publish(dir, token_ttl, err, errlen);
    if (rc == STOA_OK && had_old) {
        char stamp[32];
        int n = snprintf(stamp, sizeof(stamp), "%ld\n", (long)time(NULL));
        char name[STOA_JWT_KID_MAX + 16];
        snprintf(name, sizeof(name), "%s.retired", old);
        rc = write_atomic(dir, name, stamp, (size_t)n, 0600);
    }
    if (rc == STOA_OK) {
        char line[STOA_JWT_KID_MAX + 2];
        int n = snprintf(line, sizeof(line), "%s\n", kid);
        rc = write_atomic(dir, "current", line, (size_t)n, 0600);
    }
    stoa_jwt_key_free(key);
    if (rc != STOA_OK && !err[0])
        keys_fail(err, errlen, "cannot switch the current key in %s", dir);
    return rc;
}

int stoa_keys_ensure(const char *dir, long token_ttl, char *err, size_t errlen)
{
    err[0] = '\0';
    stoa_jwt_key_t *key = stoa_keys_load_current(dir);
    if (key) {
        stoa_jwt_key_free(key);
        /* Refresh jwks.json: it also prunes keys that are past use. */
        return publish(dir, token_ttl, err, errlen);
    }
    return stoa_keys_rotate(dir, token_ttl, NULL, err, errlen);
}
