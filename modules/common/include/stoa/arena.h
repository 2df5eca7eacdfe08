/* arena.h - per-request bump allocator.
 *
 * One arena per request, reset after the response is written. Everything
 * request-scoped (strings, parsed JSON, query results) is allocated here or
 * registered as a cleanup, which runs (last registered first) on reset and
 * destroy. Allocation failure aborts the process. */
#ifndef STOA_ARENA_H
#define STOA_ARENA_H

#include "stoa/core.h"
#include <stdarg.h>

typedef struct stoa_arena_s stoa_arena_t;
typedef void (*stoa_cleanup_fn)(void *data);

/* Creates an arena whose first block holds block_size bytes (0: default).
 * Caller frees with stoa_arena_destroy(). */
stoa_arena_t *stoa_arena_create(size_t block_size);
void stoa_arena_destroy(stoa_arena_t *arena);

/* Runs cleanups and forgets every allocation; keeps the first block so a
 * steady request load allocates nothing from the system. */
void stoa_arena_reset(stoa_arena_t *arena);

/* Up to max_bytes of the blocks a reset would give back to the system
 * (those mapped from it, 64 KiB and more) are kept for the next
 * allocations instead, until stoa_arena_release: a stream of large
 * requests reuses its pages instead of having them zeroed anew. 0 (the
 * default): every reset gives them back. stoa_arena_spare: bytes kept. */
void stoa_arena_keep_spare(stoa_arena_t *arena, size_t max_bytes);
void stoa_arena_release(stoa_arena_t *arena);
size_t stoa_arena_spare(const stoa_arena_t *arena);

/* Arena-owned memory, 16-byte aligned; valid until the next reset. */
void *stoa_arena_alloc(stoa_arena_t *arena, size_t size);
void *stoa_arena_calloc(stoa_arena_t *arena, size_t count, size_t size);
char *stoa_arena_strdup(stoa_arena_t *arena, const char *s);
char *stoa_arena_strndup(stoa_arena_t *arena, const char *s, size_t len);
char *stoa_arena_sprintf(stoa_arena_t *arena, const char *fmt, ...)
    STOA_PRINTF(2, 3);
char *stoa_arena_vsprintf(stoa_arena_t *arena, const char *fmt, va_list ap)
    STOA_PRINTF(2, 0);

/* Registers fn(data) to run at the next reset or destroy. */
void stoa_arena_cleanup(stoa_arena_t *arena, stoa_cleanup_fn fn, void *data);

/* A whole file read into the arena, NUL-terminated (so a text file reads
 * as a string), its length in *len (may be NULL). NULL when it cannot be
 * opened or read, or holds more than max bytes: a file an operator names
 * (a migration, a password file) is never read without a bound. */
char *stoa_arena_read_file(stoa_arena_t *arena, const char *path, size_t max,
                           size_t *len);

/* Bytes handed out since the last reset (for tests and metrics). */
size_t stoa_arena_used(const stoa_arena_t *arena);

#endif
