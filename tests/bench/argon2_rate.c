/*
 * stoa-argon2-rate: raw Argon2id hashes per second with libargon2, one
 * hashing loop per thread, for the login benchmark's ceiling (SPEC §9: a
 * login costs one Argon2id verification, so logins/s can at best match
 * this with the same parameters on the same cores).
 *
 *   stoa-argon2-rate MEMORY_KIB ITERATIONS PARALLELISM THREADS SECONDS
 *
 * Prints one line: "hashes=N seconds=S hashes_per_second=R".
 */
#include <argon2.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint32_t memory_kib, iterations, parallelism;
    double deadline;
    long hashes;
    int failed;
    pthread_t thread;
} worker_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *hash_loop(void *arg)
{
    worker_t *w = arg;
    /* The password and salt change per hash so nothing can be reused. */
    char password[64];
    uint8_t salt[16], out[32];
    memset(salt, 0x5a, sizeof(salt));
    while (now_s() < w->deadline) {
        int n = snprintf(password, sizeof(password), "bench password %ld",
                         w->hashes);
        memcpy(salt, &w->hashes, sizeof(w->hashes));
        if (argon2id_hash_raw(w->iterations, w->memory_kib, w->parallelism,
                              password, (size_t)n, salt, sizeof(salt), out,
                              sizeof(out)) != ARGON2_OK) {
            w->failed = 1;
            break;
        }
        w->hashes++;
    }
    return NULL;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    uint32_t memory_kib, iterations, parallelism, threads, seconds;
    if (argc != 6 || parse_u32(argv[1], &memory_kib) ||
        parse_u32(argv[2], &iterations) || parse_u32(argv[3], &parallelism) ||
        parse_u32(argv[4], &threads) || parse_u32(argv[5], &seconds) ||
        threads > 1024) {
        fprintf(stderr, "usage: stoa-argon2-rate MEMORY_KIB ITERATIONS "
                        "PARALLELISM THREADS SECONDS\n");
        return 2;
    }
    worker_t *workers = calloc(threads, sizeof(*workers));
    if (!workers)
        return 1;
    double start = now_s();
    for (uint32_t i = 0; i < threads; i++) {
        workers[i].memory_kib = memory_kib;
        workers[i].iterations = iterations;
        workers[i].parallelism = parallelism;
        workers[i].deadline = start + seconds;
        if (pthread_create(&workers[i].thread, NULL, hash_loop, &workers[i])) {
            fprintf(stderr, "stoa-argon2-rate: cannot start a thread\n");
            return 1;
        }
    }
    long total = 0;
    int failed = 0;
    for (uint32_t i = 0; i < threads; i++) {
        pthread_join(workers[i].thread, NULL);
        total += workers[i].hashes;
        failed |= workers[i].failed;
    }
    /* Every thread finishes the hash it had started after the deadline. */
    double took = now_s() - start;
    free(workers);
    if (failed) {
        fprintf(stderr, "stoa-argon2-rate: argon2id_hash_raw failed\n");
        return 1;
    }
    printf("hashes=%ld seconds=%.3f hashes_per_second=%.1f\n", total, took,
           (double)total / took);
    return 0;
}
