/* core.c - allocation that aborts on OOM, clocks, assertion failure. */
#include "stoa/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void stoa_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "stoa: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

static void *oom(size_t size)
{
    fprintf(stderr, "stoa: out of memory allocating %zu bytes\n", size);
    abort();
}

void *stoa_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    return p ? p : oom(size);
}

void *stoa_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : oom(count * size);
}

void *stoa_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    return p ? p : oom(size);
}

char *stoa_xstrdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *p = stoa_xmalloc(len);
    memcpy(p, s, len);
    return p;
}

uint64_t stoa_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t stoa_unix_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

struct timespec stoa_deadline_ms(clockid_t clock, long ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void stoa_signals_block_stop(sigset_t *stop, sigset_t *old)
{
    sigemptyset(stop);
    sigaddset(stop, SIGTERM);
    sigaddset(stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, stop, old);
    signal(SIGPIPE, SIG_IGN);
}
