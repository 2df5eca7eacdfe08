/* arena.c - bump allocator with cleanups, reset after each request. */
#include "stoa/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ARENA_DEFAULT_BLOCK (16 * 1024)
#define ARENA_ALIGN 16
/* Blocks after the first double in size up to ARENA_MAX_GROWTH, so a
 * request that needs megabytes (a large body and its parsed tree) takes a
 * dozen blocks, not hundreds. */
#define ARENA_MAX_GROWTH (1024 * 1024)
/* Blocks from this size on are mapped from the system and unmapped at
 * reset: malloc would put them in its heaps (its mmap threshold is fixed
 * higher, app.c), where what a large request leaves stays resident
 * between the small blocks of later requests. */
#define ARENA_MAP_BYTES (64 * 1024)

typedef struct arena_block_s {
    struct arena_block_s *next;
    size_t size;
    size_t used;
    size_t mapped; /* bytes mapped for it, 0 when it came from malloc */
    _Alignas(16) unsigned char data[];
} arena_block_t;

typedef struct arena_cleanup_s {
    struct arena_cleanup_s *next;
    stoa_cleanup_fn fn;
    void *data;
} arena_cleanup_t;

struct stoa_arena_s {
    arena_block_t *first; /* kept across resets */
    arena_block_t *current;
    arena_cleanup_t *cleanups;
    size_t block_size;
    size_t grow_size; /* the size of the next block, reset to block_size */
    size_t used;
    /* Mapped blocks a reset kept for the next requests (stoa_arena_keep_
     * spare), at most spare_max bytes of them, until stoa_arena_release. */
    arena_block_t *spare;
    size_t spare_bytes, spare_max;
};

static arena_block_t *block_new(size_t size)
{
    if (size > SIZE_MAX / 2)
        stoa_assert_fail("arena block size overflow", __FILE__, __LINE__);
    size_t total = sizeof(arena_block_t) + size;
    arena_block_t *b;
    size_t mapped = 0;
    if (total >= ARENA_MAP_BYTES) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        mapped = (total + page - 1) & ~(page - 1);
        /* Populated at once: a block this size is filled by the request
         * that asked for it (a body, its tree), and one call that maps
         * every page costs a fraction of a fault per page (a third of
         * the analytics pool's CPU on 1000-event batches went to those
         * faults). */
        void *p = mmap(NULL, mapped, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED)
            stoa_assert_fail("arena mmap failed", __FILE__, __LINE__);
        b = p;
        /* The rest of the last page is usable too. */
        size = mapped - sizeof(arena_block_t);
    } else {
        b = stoa_xmalloc(total);
    }
    b->next = NULL;
    b->size = size;
    b->used = 0;
    b->mapped = mapped;
    return b;
}

static void block_free(arena_block_t *b)
{
    if (b->mapped)
        munmap(b, b->mapped);
    else
        free(b);
}

/* A block of at least size bytes: the smallest kept spare that fits when
 * the block would be mapped, else a new one. */
static arena_block_t *block_take(stoa_arena_t *a, size_t size)
{
    if (sizeof(arena_block_t) + size >= ARENA_MAP_BYTES) {
        arena_block_t **best = NULL;
        for (arena_block_t **at = &a->spare; *at; at = &(*at)->next)
            if ((*at)->size >= size && (!best || (*at)->size < (*best)->size))
                best = at;
        if (best) {
            arena_block_t *b = *best;
            *best = b->next;
            a->spare_bytes -= b->mapped;
            b->next = NULL;
            b->used = 0;
            return b;
        }
    }
    return block_new(size);
}

void stoa_arena_keep_spare(stoa_arena_t *a, size_t max_bytes)
{
    a->spare_max = max_bytes;
}

void stoa_arena_release(stoa_arena_t *a)
{
    while (a->spare) {
        arena_block_t *next = a->spare->next;
        block_free(a->spare);
        a->spare = next;
    }
    a->spare_bytes = 0;
}

size_t stoa_arena_spare(const stoa_arena_t *a)
{
    return a->spare_bytes;
}

stoa_arena_t *stoa_arena_create(size_t block_size)
{
    stoa_arena_t *a = stoa_xcalloc(1, sizeof(*a));
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
    a->grow_size = a->block_size;
    a->first = a->current = block_new(a->block_size);
    return a;
}

static void run_cleanups(stoa_arena_t *a)
{
    /* Cleanups live in the arena itself, so walk before freeing blocks. */
    arena_cleanup_t *c = a->cleanups;
    a->cleanups = NULL;
    while (c) {
        arena_cleanup_t *next = c->next;
        c->fn(c->data);
        c = next;
    }
}

void stoa_arena_reset(stoa_arena_t *a)
{
    run_cleanups(a);
    arena_block_t *b = a->first->next;
    while (b) {
        arena_block_t *next = b->next;
        if (b->mapped && a->spare_bytes + b->mapped <= a->spare_max) {
            b->next = a->spare;
            a->spare = b;
            a->spare_bytes += b->mapped;
        } else {
            block_free(b);
        }
        b = next;
    }
    a->first->next = NULL;
    a->first->used = 0;
    a->current = a->first;
    a->grow_size = a->block_size;
    a->used = 0;
}

void stoa_arena_destroy(stoa_arena_t *a)
{
    if (!a)
        return;
    stoa_arena_reset(a);
    stoa_arena_release(a);
    free(a->first);
    free(a);
}

void *stoa_arena_alloc(stoa_arena_t *a, size_t size)
{
    size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need < size)
        stoa_assert_fail("arena size overflow", __FILE__, __LINE__);
    arena_block_t *b = a->current;
    if (b->size - b->used < need) {
        if (a->grow_size < ARENA_MAX_GROWTH)
            a->grow_size *= 2;
        if (need > a->grow_size / 2) {
            /* A big piece (a body) gets a block of its own, behind the
             * current one, whose free space stays in use. */
            b = block_take(a, need);
            b->next = a->current->next;
            a->current->next = b;
        } else {
            /* Header included, so a mapped block is whole pages. */
            b = block_take(a, a->grow_size - sizeof(arena_block_t));
            b->next = a->current->next;
            a->current->next = b;
            a->current = b;
        }
    }
    void *p = b->data + b->used;
    b->used += need;
    a->used += need;
    return p;
}

void *stoa_arena_calloc(stoa_arena_t *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        stoa_assert_fail("arena calloc overflow", __FILE__, __LINE__);
    void *p = stoa_arena_alloc(a, count * size);
    memset(p, 0, count * size);
    return p;
}

char *stoa_arena_strndup(stoa_arena_t *a, const char *s, size_t len)
{
    char *p = stoa_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *stoa_arena_strdup(stoa_arena_t *a, const char *s)
{
    return stoa_arena_strndup(a, s, strlen(s));
}

char *stoa_arena_vsprintf(stoa_arena_t *a, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *p = stoa_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *stoa_arena_sprintf(stoa_arena_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = stoa_arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}

void stoa_arena_cleanup(stoa_arena_t *a, stoa_cleanup_fn fn, void *data)
{
    arena_cleanup_t *c = stoa_arena_alloc(a, sizeof(*c));
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
}

size_t stoa_arena_used(const stoa_arena_t *a)
{
    return a->used;
}

char *stoa_arena_read_file(stoa_arena_t *arena, const char *path, size_t max,
                           size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        size = ftell(f);
    if (size < 0 || (unsigned long)size > max || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    char *buf = stoa_arena_alloc(arena, (size_t)size + 1);
    size_t n = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (n != (size_t)size)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}
