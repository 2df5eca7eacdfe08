/* arena.c - bump allocator with cleanups, reset after each request. */
#include "stoa/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_DEFAULT_BLOCK (16 * 1024)
#define ARENA_ALIGN 16

typedef struct arena_block_s {
    struct arena_block_s *next;
    size_t size;
    size_t used;
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
    size_t used;
};

static arena_block_t *block_new(size_t size)
{
    arena_block_t *b = stoa_xmalloc(sizeof(*b) + size);
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

stoa_arena_t *stoa_arena_create(size_t block_size)
{
    stoa_arena_t *a = stoa_xcalloc(1, sizeof(*a));
    a->block_size = block_size ? block_size : ARENA_DEFAULT_BLOCK;
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
        free(b);
        b = next;
    }
    a->first->next = NULL;
    a->first->used = 0;
    a->current = a->first;
    a->used = 0;
}

void stoa_arena_destroy(stoa_arena_t *a)
{
    if (!a)
        return;
    stoa_arena_reset(a);
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
        size_t bsize = need > a->block_size ? need : a->block_size;
        arena_block_t *nb = block_new(bsize);
        nb->next = b->next;
        b->next = nb;
        a->current = b = nb;
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
