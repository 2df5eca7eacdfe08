/* core.h - status codes and compiler helpers shared by every stoa part.
 *
 * One status convention everywhere: STOA_OK on success, STOA_ERROR for an
 * internal failure (5xx), STOA_DECLINED when the input is refused (4xx),
 * STOA_AGAIN when a dependency is down (503, retryable). */
#ifndef STOA_CORE_H
#define STOA_CORE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define STOA_OK 0
#define STOA_ERROR -1
#define STOA_DECLINED -2
#define STOA_AGAIN -3

#define STOA_MUSTCHECK __attribute__((warn_unused_result))
#define STOA_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define STOA_NORETURN __attribute__((noreturn))
#define STOA_UNUSED __attribute__((unused))

#define STOA_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Invariants of our own code; stays on in production. Never assert on
 * anything a request can influence. */
#define STOA_ASSERT(cond)                                                      \
    do {                                                                       \
        if (!(cond))                                                           \
            stoa_assert_fail(#cond, __FILE__, __LINE__);                       \
    } while (0)

STOA_NORETURN void stoa_assert_fail(const char *expr, const char *file,
                                    int line);

/* Allocation that aborts on out-of-memory: pool processes are respawned by
 * their supervisor, so dying is the safest answer to OOM. */
void *stoa_xmalloc(size_t size);
void *stoa_xcalloc(size_t count, size_t size);
void *stoa_xrealloc(void *ptr, size_t size);
char *stoa_xstrdup(const char *s);
/* The first len bytes of s (which need not be NUL-terminated) as a string.
 * Inline so that the allocation is the caller's call to stoa_xmalloc: the
 * gateway wraps that symbol at link time to refuse instead of aborting. */
static inline char *stoa_xstrndup(const char *s, size_t len)
{
    char *p = stoa_xmalloc(len + 1);
    for (size_t i = 0; i < len; i++)
        p[i] = s[i];
    p[len] = '\0';
    return p;
}

/* Monotonic and wall clocks. */
uint64_t stoa_now_us(void);   /* monotonic microseconds */
int64_t stoa_unix_time(void); /* wall clock seconds since the epoch */
/* The time ms milliseconds from now on clock, as pthread_cond_timedwait
 * wants its deadline (the clock the condition variable waits on). */
struct timespec stoa_deadline_ms(clockid_t clock, long ms);

/* The stop signals (SIGTERM, SIGINT) into *stop, blocked in the calling
 * thread (and so in every thread it starts afterwards), the previous mask
 * in *old (may be NULL); SIGPIPE ignored (a peer closing a socket is an
 * error of the write, not the end of the process). A program then takes
 * the stop signals with sigtimedwait(stop), or restores *old in the one
 * thread that should run its handler. */
void stoa_signals_block_stop(sigset_t *stop, sigset_t *old);

#endif
