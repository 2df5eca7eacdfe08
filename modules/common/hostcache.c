/* hostcache.c - per-process copies, host-wide version counters. */
#include "stoa/hostcache.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_MAX 96

typedef struct {
    pthread_mutex_t lock;
    char key[KEY_MAX];
    uint64_t version;
    uint64_t fetched_us;
    char *value; /* malloc'd, NUL-terminated; NULL: empty slot */
    size_t len;
} entry_t;

struct stoa_hostcache_s {
    _Atomic uint64_t *counters; /* STOA_HOSTCACHE_COUNTERS, MAP_SHARED */
    entry_t *entries;           /* STOA_HOSTCACHE_ENTRIES */
};

#define MAP_BYTES (STOA_HOSTCACHE_COUNTERS * sizeof(uint64_t))

/* FNV-1a, 64 bits: the low half picks a counter, the high half a slot. */
static uint64_t hash_key(const char *key)
{
    uint64_t h = 14695981039346656037ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

int stoa_hostcache_open(const char *path, stoa_hostcache_t **out, char *err,
                        size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "host_cache_file %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return STOA_ERROR;
    }
    /* Every process grows it to the same size; a shorter file is one no
     * process has used yet (its counters read zero). */
    if ((size_t)st.st_size < MAP_BYTES &&
        ftruncate(fd, (off_t)MAP_BYTES) != 0) {
        snprintf(err, errlen, "host_cache_file %s: %s", path, strerror(errno));
        close(fd);
        return STOA_ERROR;
    }
    void *map =
        mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "host_cache_file %s: %s", path, strerror(errno));
        return STOA_ERROR;
    }
    stoa_hostcache_t *hc = stoa_xcalloc(1, sizeof(*hc));
    hc->counters = map;
    hc->entries = stoa_xcalloc(STOA_HOSTCACHE_ENTRIES, sizeof(entry_t));
    for (size_t i = 0; i < STOA_HOSTCACHE_ENTRIES; i++)
        pthread_mutex_init(&hc->entries[i].lock, NULL);
    *out = hc;
    return STOA_OK;
}

void stoa_hostcache_close(stoa_hostcache_t *hc)
{
    if (!hc)
        return;
    for (size_t i = 0; i < STOA_HOSTCACHE_ENTRIES; i++) {
        free(hc->entries[i].value);
        pthread_mutex_destroy(&hc->entries[i].lock);
    }
    free(hc->entries);
    munmap((void *)hc->counters, MAP_BYTES);
    free(hc);
}

static _Atomic uint64_t *counter(const stoa_hostcache_t *hc, uint64_t h)
{
    return &hc->counters[h % STOA_HOSTCACHE_COUNTERS];
}

uint64_t stoa_hostcache_version(const stoa_hostcache_t *hc, const char *key)
{
    if (!hc)
        return 0;
    return atomic_load(counter(hc, hash_key(key)));
}

void stoa_hostcache_bump(stoa_hostcache_t *hc, const char *key)
{
    if (hc)
        atomic_fetch_add(counter(hc, hash_key(key)), 1);
}

static entry_t *slot(stoa_hostcache_t *hc, uint64_t h)
{
    return &hc->entries[(h >> 32) % STOA_HOSTCACHE_ENTRIES];
}

int stoa_hostcache_get(stoa_hostcache_t *hc, stoa_arena_t *arena,
                       const char *key, char **value, size_t *len)
{
    if (!hc || strlen(key) >= KEY_MAX)
        return STOA_DECLINED;
    uint64_t h = hash_key(key);
    uint64_t now = stoa_now_us();
    uint64_t current = atomic_load(counter(hc, h));
    entry_t *e = slot(hc, h);
    int rc = STOA_DECLINED;
    pthread_mutex_lock(&e->lock);
    if (e->value && e->version == current && strcmp(e->key, key) == 0 &&
        now - e->fetched_us < (uint64_t)STOA_HOSTCACHE_MAX_AGE_MS * 1000) {
        *value = stoa_arena_strndup(arena, e->value, e->len);
        *len = e->len;
        rc = STOA_OK;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

void stoa_hostcache_put(stoa_hostcache_t *hc, const char *key, uint64_t version,
                        const char *value, size_t len)
{
    if (!hc || strlen(key) >= KEY_MAX || len > STOA_HOSTCACHE_MAX_VALUE)
        return;
    uint64_t h = hash_key(key);
    /* Fetched at a version already passed: not worth keeping. */
    if (atomic_load(counter(hc, h)) != version)
        return;
    char *copy = malloc(len + 1);
    if (!copy)
        return;
    memcpy(copy, value, len);
    copy[len] = '\0';
    entry_t *e = slot(hc, h);
    pthread_mutex_lock(&e->lock);
    char *old = e->value;
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->version = version;
    e->fetched_us = stoa_now_us();
    e->value = copy;
    e->len = len;
    pthread_mutex_unlock(&e->lock);
    free(old);
}
