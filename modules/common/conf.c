/* conf.c - the configuration table, its parser and its checks. */
#include "stoa/conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "stoa/buf.h"
#include "stoa/crypto.h"
#include "stoa/log.h"

typedef enum { CONF_STRING, CONF_LONG, CONF_LEVEL } conf_type_t;

/* flags */
#define CONF_SECRET 1u   /* redacted in dumps; may be given as <key>_file */
#define CONF_NONEMPTY 2u /* an empty value is refused */
#define CONF_KEY256 4u   /* empty, or 64 hex digits (a 256-bit key) */
#define CONF_ONOFF 8u    /* exactly "on" or "off" */

typedef struct {
    const char *name;
    conf_type_t type;
    size_t offset;
    const char *default_value;
    long min;
    long max;
    unsigned flags;
} conf_key_t;

#define S(field, def, fl)                                                      \
    {                                                                          \
#field, CONF_STRING, offsetof(stoa_conf_t, field), def, 0, 0, fl       \
    }
#define L(field, def, lo, hi)                                                  \
    {                                                                          \
#field, CONF_LONG, offsetof(stoa_conf_t, field), #def, lo, hi, 0       \
    }

static const conf_key_t conf_keys[] = {
    S(database_url, "dbname=stoa", CONF_NONEMPTY | CONF_SECRET),
    S(redis_url, "redis://127.0.0.1:6379/0", CONF_NONEMPTY | CONF_SECRET),
    S(public_url, "https://127.0.0.1:8443", CONF_NONEMPTY),
    S(log_dir, "-", CONF_NONEMPTY),
    {"log_level", CONF_LEVEL, offsetof(stoa_conf_t, log_level), "info", 0, 5,
     0},
    S(keys_dir, "keys", CONF_NONEMPTY),
    S(host_cache_file, "", 0),
    S(jwt_issuer, "https://127.0.0.1:8443", CONF_NONEMPTY),
    S(jwt_audience, "stoa", CONF_NONEMPTY),
    L(access_token_ttl, 900, 60, 86400),
    L(refresh_token_ttl, 2592000, 3600, 31536000),
    L(refresh_reuse_interval, 10, 0, 300),
    L(argon2_memory_kib, 19456, 8, 4194304),
    L(argon2_iterations, 2, 1, 100),
    L(argon2_parallelism, 1, 1, 64),
    S(mfa_encryption_key, "", CONF_SECRET),
    S(mfa_issuer, "stoa", CONF_NONEMPTY),
    S(idempotency_seal_key, "", CONF_SECRET | CONF_KEY256),
    S(stripe_api_base, "https://api.stripe.com", CONF_NONEMPTY),
    S(stripe_secret_key, "", CONF_SECRET),
    S(stripe_webhook_secret, "", CONF_SECRET),
    S(smtp_url, "file://mail", CONF_NONEMPTY | CONF_SECRET),
    S(mail_from, "stoa <no-reply@localhost>", CONF_NONEMPTY),
    S(cors_origins, "", 0),
    S(webhook_allow_hosts, "", 0),
    S(realtime_socket, "", 0),
    S(realtime_publish_url, "", 0),
    S(metrics_listen, "127.0.0.1:9145", 0),
    S(metrics_dir, "", 0),
    L(max_body_bytes, 1048576, 1024, 67108864),
    L(max_event_body_bytes, 4194304, 1024, 67108864),
    L(db_statement_timeout_ms, 5000, 0, 3600000),
    L(db_connect_timeout_s, 2, 1, 60),
    L(redis_timeout_ms, 500, 10, 60000),
    L(pool_processes, 2, 1, 256),
    L(pool_threads, 8, 1, 256),
    S(pool_batch_scheduling, "on", CONF_ONOFF),
    L(pool_peer_timeout_s, 30, 1, 3600),
    L(db_pool_size, 4, 1, 256),
    L(redis_pool_size, 8, 1, 256),
    L(jobs_concurrency, 4, 1, 256),
    L(jobs_poll_interval_ms, 5000, 100, 600000),
    L(analytics_retention_days, 90, 1, 3650),
    L(analytics_rollup_retention_days, 730, 1, 36500),
    L(analytics_rollup_interval_s, 15, 1, 3600),
    S(pg_data_dir, "", 0),
    S(pg_bin_dir, "/usr/lib/postgresql/15/bin", CONF_NONEMPTY),
    S(pg_os_user, "postgres", 0),
    S(backup_config, "", 0),
    S(backup_stanza, "stoa", CONF_NONEMPTY),
    S(replica, "off", CONF_ONOFF),
    S(replica_sync, "on", CONF_ONOFF),
    S(replica_url, "", CONF_SECRET),
    S(replica_fence_command, "", 0),
    S(replica_repoint_command, "", 0),
};

#undef S
#undef L

static STOA_PRINTF(3, 4) int fail(char *err, size_t errlen, const char *fmt,
                                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return STOA_DECLINED;
}

static const conf_key_t *find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(conf_keys); i++)
        if (strlen(conf_keys[i].name) == len &&
            memcmp(conf_keys[i].name, name, len) == 0)
            return &conf_keys[i];
    return NULL;
}

/* The one bounded number parser: decimal only, no trailing junk. */
static int parse_long(const char *s, long min, long max, long *out)
{
    if (!*s)
        return STOA_DECLINED;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max || isspace((unsigned char)*s))
        return STOA_DECLINED;
    *out = v;
    return STOA_OK;
}

static int set_value(stoa_conf_t *conf, const conf_key_t *k, const char *value,
                     const char *where, char *err, size_t errlen)
{
    char *base = (char *)conf;
    switch (k->type) {
    case CONF_STRING: {
        if ((k->flags & CONF_NONEMPTY) && !*value)
            return fail(err, errlen, "%s: %s must not be empty", where,
                        k->name);
        uint8_t key[32];
        size_t key_len = 0;
        if ((k->flags & CONF_KEY256) && *value &&
            (strlen(value) != 2 * sizeof(key) ||
             stoa_hex_decode(value, strlen(value), key, &key_len) != STOA_OK))
            return fail(err, errlen, "%s: %s must be 64 hex digits", where,
                        k->name);
        stoa_wipe(key, sizeof(key));
        if ((k->flags & CONF_ONOFF) && strcmp(value, "on") != 0 &&
            strcmp(value, "off") != 0)
            return fail(err, errlen, "%s: %s must be on or off", where,
                        k->name);
        char **slot = (char **)(void *)(base + k->offset);
        free(*slot);
        *slot = stoa_xstrdup(value);
        return STOA_OK;
    }
    case CONF_LONG: {
        long v;
        if (parse_long(value, k->min, k->max, &v) != STOA_OK)
            return fail(err, errlen,
                        "%s: %s must be an integer between %ld and %ld", where,
                        k->name, k->min, k->max);
        *(long *)(void *)(base + k->offset) = v;
        return STOA_OK;
    }
    case CONF_LEVEL: {
        int lv = stoa_log_level_parse(value);
        if (lv < 0)
            return fail(err, errlen,
                        "%s: %s must be debug, info, notice, warn, err or crit",
                        where, k->name);
        *(long *)(void *)(base + k->offset) = lv;
        return STOA_OK;
    }
    }
    return STOA_ERROR;
}

/* Reads a secret file: the whole content minus one trailing newline. */
static int read_secret_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return STOA_ERROR;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    int toolong = !feof(f);
    fclose(f);
    if (toolong)
        return STOA_DECLINED;
    buf[n] = '\0';
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *out = stoa_xstrdup(buf);
    return STOA_OK;
}

/* Applies name=value where name may be "<secret>_file". */
static int apply(stoa_conf_t *conf, const char *name, size_t name_len,
                 const char *value, const char *where, char *err, size_t errlen)
{
    const conf_key_t *k = find_key(name, name_len);
    if (k)
        return set_value(conf, k, value, where, err, errlen);
    if (name_len > 5 && memcmp(name + name_len - 5, "_file", 5) == 0) {
        k = find_key(name, name_len - 5);
        if (k && (k->flags & CONF_SECRET)) {
            char *secret = NULL;
            int rc = read_secret_file(value, &secret);
            if (rc != STOA_OK)
                return fail(err, errlen, "%s: %.*s: cannot read %s", where,
                            (int)name_len, name,
                            rc == STOA_DECLINED ? "(file too large)" : value);
            rc = set_value(conf, k, secret, where, err, errlen);
            stoa_wipe(secret, strlen(secret));
            free(secret);
            return rc;
        }
    }
    return fail(err, errlen, "%s: unknown key '%.*s'", where,
                (int)(name_len > 64 ? 64 : name_len), name);
}

void stoa_conf_init(stoa_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    char err[256];
    for (size_t i = 0; i < STOA_ARRAY_LEN(conf_keys); i++) {
        int rc = set_value(conf, &conf_keys[i], conf_keys[i].default_value,
                           "default", err, sizeof(err));
        STOA_ASSERT(rc == STOA_OK);
    }
}

void stoa_conf_free(stoa_conf_t *conf)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(conf_keys); i++) {
        if (conf_keys[i].type != CONF_STRING)
            continue;
        char **slot = (char **)(void *)((char *)conf + conf_keys[i].offset);
        if (*slot && (conf_keys[i].flags & CONF_SECRET))
            stoa_wipe(*slot, strlen(*slot));
        free(*slot);
        *slot = NULL;
    }
}

static const char *trim(char *s, char **end_out)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    *e = '\0';
    if (end_out)
        *end_out = e;
    return s;
}

static int parse_text(stoa_conf_t *conf, const char *text, size_t len,
                      const char *source, char *err, size_t errlen)
{
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        size_t start = pos;
        while (pos < len && text[pos] != '\n')
            pos++;
        size_t line_len = pos - start;
        pos++; /* past '\n' */
        if (line_len > 8192)
            return fail(err, errlen, "%s:%d: line too long", source, lineno);
        char line[8193];
        memcpy(line, text + start, line_len);
        line[line_len] = '\0';
        if (memchr(line, '\0', line_len))
            return fail(err, errlen, "%s:%d: NUL byte", source, lineno);
        const char *s = trim(line, NULL);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return fail(err, errlen, "%s:%d: expected 'key = value'", source,
                        lineno);
        *eq = '\0';
        const char *name = trim((char *)s, NULL);
        const char *value = trim(eq + 1, NULL);
        if (!*name)
            return fail(err, errlen, "%s:%d: missing key", source, lineno);
        char where[300];
        snprintf(where, sizeof(where), "%s:%d", source, lineno);
        int rc = apply(conf, name, strlen(name), value, where, err, errlen);
        if (rc != STOA_OK)
            return rc;
    }
    return STOA_OK;
}

int stoa_conf_parse(stoa_conf_t *conf, const char *text, size_t len, char *err,
                    size_t errlen)
{
    stoa_conf_init(conf);
    return parse_text(conf, text, len, "config", err, errlen);
}

/* STOA_<KEY> and STOA_<KEY>_FILE, after the file. */
static int apply_env(stoa_conf_t *conf, char *err, size_t errlen)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(conf_keys); i++) {
        const conf_key_t *k = &conf_keys[i];
        for (int file = 0; file < 2; file++) {
            if (file && !(k->flags & CONF_SECRET))
                continue;
            char env[96], name[96];
            snprintf(name, sizeof(name), "%s%s", k->name, file ? "_file" : "");
            size_t j = 0;
            j += (size_t)snprintf(env, sizeof(env), "STOA_");
            for (const char *p = name; *p && j + 1 < sizeof(env); p++)
                env[j++] = (char)toupper((unsigned char)*p);
            env[j] = '\0';
            const char *v = getenv(env);
            if (!v)
                continue;
            int rc = apply(conf, name, strlen(name), v, env, err, errlen);
            if (rc != STOA_OK)
                return rc;
        }
    }
    return STOA_OK;
}

int stoa_conf_load(stoa_conf_t *conf, const char *path, char *err,
                   size_t errlen)
{
    stoa_conf_init(conf);
    if (path) {
        FILE *f = fopen(path, "rb");
        if (!f)
            return fail(err, errlen, "cannot open config %s: %s", path,
                        strerror(errno));
        stoa_buf_t text;
        stoa_buf_init(&text);
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
            stoa_buf_append(&text, chunk, n);
        int rd_err = ferror(f);
        fclose(f);
        if (rd_err) {
            stoa_buf_free(&text);
            return fail(err, errlen, "cannot read config %s", path);
        }
        int rc = parse_text(conf, text.data ? text.data : "", text.len, path,
                            err, errlen);
        stoa_buf_free(&text);
        if (rc != STOA_OK)
            return rc;
    }
    return apply_env(conf, err, errlen);
}

void stoa_conf_dump(const stoa_conf_t *conf, FILE *out)
{
    const char *base = (const char *)conf;
    for (size_t i = 0; i < STOA_ARRAY_LEN(conf_keys); i++) {
        const conf_key_t *k = &conf_keys[i];
        if (k->type == CONF_STRING) {
            const char *v = *(char *const *)(const void *)(base + k->offset);
            fprintf(out, "%s = %s\n", k->name,
                    (k->flags & CONF_SECRET) && v && *v ? "<redacted>"
                                                        : (v ? v : ""));
        } else {
            fprintf(out, "%s = %ld\n", k->name,
                    *(const long *)(const void *)(base + k->offset));
        }
    }
}
