/* check_arena.c - the per-request bump allocator: alignment, blocks larger
 * than the block size, cleanups on reset/destroy, reuse, sprintf, and
 * whole files read into it. */
#include <stdint.h>

#include "check_util.h"
#include "stoa/arena.h"

static stoa_arena_t *arena;

/* A small block size so that a handful of allocations crosses blocks. */
#define SMALL_BLOCK 256

static void setup(void)
{
    arena = stoa_arena_create(SMALL_BLOCK);
    ck_assert_ptr_nonnull(arena);
}

static void teardown(void)
{
    stoa_arena_destroy(arena);
    arena = NULL;
}

static const size_t alloc_sizes[] = {1,  2,   7,   8,   15,  16,   17,  31,
                                     33, 100, 255, 256, 257, 1000, 4095};

START_TEST(alloc_is_16_byte_aligned)
{
    /* Odd sizes in between make a naive bump pointer drift off alignment. */
    for (size_t i = 0; i < STOA_ARRAY_LEN(alloc_sizes); i++) {
        unsigned char *p = stoa_arena_alloc(arena, alloc_sizes[i]);
        ck_assert_ptr_nonnull(p);
        ck_assert_msg((uintptr_t)p % 16 == 0, "size %zu: %p not aligned",
                      alloc_sizes[i], (void *)p);
        memset(p, 0x5a, alloc_sizes[i]);
    }
    char *s = stoa_arena_strdup(arena, "x");
    ck_assert_msg((uintptr_t)s % 16 == 0, "strdup result not aligned");
    void *z = stoa_arena_calloc(arena, 3, 5);
    ck_assert_msg((uintptr_t)z % 16 == 0, "calloc result not aligned");
}
END_TEST

START_TEST(allocations_do_not_overlap)
{
    enum { N = 64 };
    unsigned char *ptrs[N];
    for (size_t i = 0; i < N; i++) {
        size_t size = alloc_sizes[i % STOA_ARRAY_LEN(alloc_sizes)];
        ptrs[i] = stoa_arena_alloc(arena, size);
        memset(ptrs[i], (int)i, size);
    }
    for (size_t i = 0; i < N; i++) {
        size_t size = alloc_sizes[i % STOA_ARRAY_LEN(alloc_sizes)];
        for (size_t j = 0; j < size; j++)
            ck_assert_msg(ptrs[i][j] == (unsigned char)i,
                          "allocation %zu byte %zu overwritten", i, j);
    }
}
END_TEST

START_TEST(big_allocation_beyond_block_size)
{
    unsigned char *before = stoa_arena_alloc(arena, 32);
    memset(before, 0x11, 32);

    static const size_t big_sizes[] = {SMALL_BLOCK, SMALL_BLOCK + 1,
                                       10 * SMALL_BLOCK, 1024 * 1024};
    for (size_t i = 0; i < STOA_ARRAY_LEN(big_sizes); i++) {
        unsigned char *big = stoa_arena_alloc(arena, big_sizes[i]);
        ck_assert_ptr_nonnull(big);
        ck_assert((uintptr_t)big % 16 == 0);
        /* Writing every byte proves the block really is that large (ASan
         * reports an overflow otherwise). */
        memset(big, 0x22, big_sizes[i]);
        ck_assert_int_eq(big[big_sizes[i] - 1], 0x22);
    }

    unsigned char *after = stoa_arena_alloc(arena, 32);
    memset(after, 0x33, 32);
    for (size_t j = 0; j < 32; j++)
        ck_assert_int_eq(before[j], 0x11);
    ck_assert(stoa_arena_used(arena) >= 1024 * 1024 + 64);
}
END_TEST

static int cleanup_log[8];
static size_t cleanup_count;

static void record_cleanup(void *data)
{
    ck_assert_uint_lt(cleanup_count, STOA_ARRAY_LEN(cleanup_log));
    cleanup_log[cleanup_count++] = *(int *)data;
}

START_TEST(reset_runs_cleanups_in_reverse_order)
{
    static int ids[] = {1, 2, 3};
    cleanup_count = 0;
    for (size_t i = 0; i < STOA_ARRAY_LEN(ids); i++) {
        stoa_arena_cleanup(arena, record_cleanup, &ids[i]);
        /* Interleaved allocations push cleanups into later blocks. */
        (void)stoa_arena_alloc(arena, SMALL_BLOCK);
    }
    ck_assert_uint_eq(cleanup_count, 0);
    stoa_arena_reset(arena);
    ck_assert_uint_eq(cleanup_count, 3);
    ck_assert_int_eq(cleanup_log[0], 3);
    ck_assert_int_eq(cleanup_log[1], 2);
    ck_assert_int_eq(cleanup_log[2], 1);

    /* Once run, a cleanup is forgotten. */
    stoa_arena_reset(arena);
    ck_assert_uint_eq(cleanup_count, 3);
}
END_TEST

START_TEST(destroy_runs_cleanups)
{
    static int ids[] = {7, 8};
    cleanup_count = 0;
    stoa_arena_t *other = stoa_arena_create(0);
    stoa_arena_cleanup(other, record_cleanup, &ids[0]);
    stoa_arena_cleanup(other, record_cleanup, &ids[1]);
    stoa_arena_destroy(other);
    ck_assert_uint_eq(cleanup_count, 2);
    ck_assert_int_eq(cleanup_log[0], 8);
    ck_assert_int_eq(cleanup_log[1], 7);
    stoa_arena_destroy(NULL); /* documented no-op */
}
END_TEST

START_TEST(reset_makes_memory_reusable)
{
    void *first = stoa_arena_alloc(arena, 64);
    for (int i = 0; i < 20; i++)
        (void)stoa_arena_alloc(arena, 200);
    ck_assert(stoa_arena_used(arena) >= 64 + 20 * 200);

    stoa_arena_reset(arena);
    ck_assert_uint_eq(stoa_arena_used(arena), 0);
    /* The first block is kept and handed out again from its start. */
    void *again = stoa_arena_alloc(arena, 64);
    ck_assert_ptr_eq(first, again);

    /* Many request cycles: the same address every time, so a steady load
     * allocates nothing new. */
    for (int cycle = 0; cycle < 100; cycle++) {
        stoa_arena_reset(arena);
        (void)stoa_arena_alloc(arena, 1000);
        stoa_arena_reset(arena);
        ck_assert_ptr_eq(stoa_arena_alloc(arena, 64), first);
    }
}
END_TEST

START_TEST(calloc_zeroes_reused_memory)
{
    unsigned char *p = stoa_arena_alloc(arena, 128);
    memset(p, 0xaa, 128);
    stoa_arena_reset(arena);
    unsigned char *z = stoa_arena_calloc(arena, 16, 8);
    ck_assert_ptr_eq(p, z); /* same memory, now zeroed */
    for (size_t i = 0; i < 128; i++)
        ck_assert_int_eq(z[i], 0);
}
END_TEST

START_TEST(used_counts_allocations)
{
    ck_assert_uint_eq(stoa_arena_used(arena), 0);
    (void)stoa_arena_alloc(arena, 10);
    size_t one = stoa_arena_used(arena);
    ck_assert_uint_ge(one, 10);
    (void)stoa_arena_alloc(arena, 10);
    ck_assert_uint_ge(stoa_arena_used(arena), one + 10);
}
END_TEST

START_TEST(strdup_and_strndup)
{
    const char *src = "hello world";
    char *a = stoa_arena_strdup(arena, src);
    ck_assert_str_eq(a, src);
    ck_assert_ptr_ne(a, src);
    char *b = stoa_arena_strndup(arena, src, 5);
    ck_assert_str_eq(b, "hello");
    char *c = stoa_arena_strndup(arena, src, 0);
    ck_assert_str_eq(c, "");
    /* strndup copies exactly len bytes even past a NUL-free prefix. */
    char *d = stoa_arena_strndup(arena, "abc\0def", 7);
    ck_assert_int_eq(memcmp(d, "abc\0def", 8), 0);
}
END_TEST

static char *vsprintf_wrapper(const char *fmt, ...) STOA_PRINTF(1, 2);
static char *vsprintf_wrapper(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = stoa_arena_vsprintf(arena, fmt, ap);
    va_end(ap);
    return s;
}

START_TEST(sprintf_formats)
{
    ck_assert_str_eq(stoa_arena_sprintf(arena, "%s-%d-%05.1f", "abc", 42, 2.5),
                     "abc-42-002.5");
    ck_assert_str_eq(stoa_arena_sprintf(arena, "%s", ""), "");
    ck_assert_str_eq(vsprintf_wrapper("[%c%zu]", 'x', (size_t)7), "[x7]");

    /* Longer than the block size: must land in a block of its own. */
    char *long_arg = test_repeat('q', 5000);
    char *s = stoa_arena_sprintf(arena, "<%s>", long_arg);
    ck_assert_uint_eq(strlen(s), 5002);
    ck_assert_int_eq(s[0], '<');
    ck_assert_int_eq(s[5001], '>');
    ck_assert_int_eq(memcmp(s + 1, long_arg, 5000), 0);
    free(long_arg);
}
END_TEST

START_TEST(read_file_whole_and_bounded)
{
    /* Larger than the block size, with a NUL inside: read byte for byte. */
    char *text = test_repeat('m', 5000);
    text[10] = '\0';
    char *path = test_write_file(text, 5000);
    size_t len = 0;
    char *got = stoa_arena_read_file(arena, path, 5000, &len);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(len, 5000);
    ck_assert_int_eq(memcmp(got, text, 5000), 0);
    ck_assert_int_eq(got[5000], '\0');
    /* One byte over the bound: refused, not cut short. */
    len = 7;
    ck_assert_ptr_null(stoa_arena_read_file(arena, path, 4999, &len));
    ck_assert_uint_eq(len, 7);
    test_remove_file(path);
    free(text);

    /* An empty file is an empty string; len may be NULL. */
    path = test_write_file("", 0);
    got = stoa_arena_read_file(arena, path, 0, NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, "");
    test_remove_file(path);

    ck_assert_ptr_null(
        stoa_arena_read_file(arena, "/nonexistent/stoa-check", 100, NULL));
    /* A directory opens but does not read as a file. */
    ck_assert_ptr_null(stoa_arena_read_file(arena, "/", 1 << 20, NULL));
}
END_TEST

/* Resident KiB of this process (each test runs in a forked child). */
static long resident_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    long size = 0, resident = 0;
    ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

START_TEST(reset_gives_large_growth_back)
{
    /* 32 MiB in small pieces, every byte touched (a large body's parsed
     * tree), while other small blocks are malloc'd and kept (the other
     * threads' requests): blocks taken from malloc's heaps would stay
     * resident after the reset, in holes between those. */
    enum { PIECE = 48, TOTAL_KIB = 32 * 1024, KEPT_EVERY = 16 * 1024 };
    stoa_arena_t *a = stoa_arena_create(0);
    void **kept =
        stoa_xcalloc(TOTAL_KIB * 1024 / KEPT_EVERY + 1, sizeof(*kept));
    size_t nkept = 0;
    long before = resident_kib();
    for (size_t used = 0; used < (size_t)TOTAL_KIB * 1024; used += PIECE) {
        memset(stoa_arena_alloc(a, PIECE), 0x5a, PIECE);
        if (used % KEPT_EVERY < PIECE)
            kept[nkept++] = stoa_xmalloc(32);
    }
    memset(stoa_arena_alloc(a, 2 * 1024 * 1024), 0x5b, 2 * 1024 * 1024);
    ck_assert_int_ge(resident_kib(), before + TOTAL_KIB);
    stoa_arena_reset(a);
    long after = resident_kib();
    for (size_t i = 0; i < nkept; i++)
        free(kept[i]);
    free(kept);
    stoa_arena_destroy(a);
    ck_assert_msg(after < before + 2048,
                  "%ld KiB resident before, %ld KiB after the reset", before,
                  after);
}
END_TEST

START_TEST(kept_spares_are_reused_and_released)
{
    enum { MIB = 1024 * 1024 };
    stoa_arena_t *a = stoa_arena_create(0);
    /* Without keep_spare a reset keeps nothing. */
    memset(stoa_arena_alloc(a, MIB), 1, MIB);
    stoa_arena_reset(a);
    ck_assert_uint_eq(stoa_arena_spare(a), 0);

    stoa_arena_keep_spare(a, 2 * MIB + 64 * 1024);
    void *first = stoa_arena_alloc(a, MIB);
    memset(first, 2, MIB);
    stoa_arena_reset(a);
    size_t kept = stoa_arena_spare(a);
    ck_assert_uint_ge(kept, MIB);
    /* The next large piece takes the kept block: the same pages. */
    ck_assert_ptr_eq(stoa_arena_alloc(a, MIB), first);
    ck_assert_uint_eq(stoa_arena_spare(a), 0);
    /* Three pieces of 1 MiB: at most the cap survives the reset. */
    stoa_arena_alloc(a, MIB);
    stoa_arena_alloc(a, MIB);
    stoa_arena_reset(a);
    ck_assert_uint_le(stoa_arena_spare(a), 2 * MIB + 64 * 1024);
    ck_assert_uint_ge(stoa_arena_spare(a), 2 * MIB);
    /* A piece larger than every spare gets a block of its own. */
    char *big = stoa_arena_alloc(a, 3 * MIB);
    memset(big, 3, 3 * MIB);
    ck_assert_uint_ge(stoa_arena_spare(a), 2 * MIB);
    stoa_arena_release(a);
    ck_assert_uint_eq(stoa_arena_spare(a), 0);
    stoa_arena_destroy(a);
}
END_TEST

START_TEST(big_piece_keeps_current_block_in_use)
{
    /* A piece larger than the blocks gets a block of its own; the small
     * allocations around it stay together in the current block. */
    unsigned char *a = stoa_arena_alloc(arena, 16);
    unsigned char *big = stoa_arena_alloc(arena, 1024 * 1024);
    memset(big, 0x44, 1024 * 1024);
    unsigned char *b = stoa_arena_alloc(arena, 16);
    ck_assert_ptr_eq(b, a + 16);
}
END_TEST

START_TEST(growth_blocks_keep_every_allocation)
{
    /* Thousands of blocks' worth of allocations of every size across the
     * growing blocks, each filled with its own byte, all intact after. */
    enum { N = 20000 };
    unsigned char **ptrs = stoa_xmalloc(N * sizeof(*ptrs));
    size_t total = 0;
    for (size_t i = 0; i < N; i++) {
        size_t size = 1 + (i * 37) % 700;
        ptrs[i] = stoa_arena_alloc(arena, size);
        ck_assert((uintptr_t)ptrs[i] % 16 == 0);
        memset(ptrs[i], (int)(i & 0xff), size);
        total += size;
    }
    /* One check per allocation (a check per byte costs Check a write to
     * its pipe each: minutes under ASan). */
    unsigned char want[700];
    for (size_t i = 0; i < N; i++) {
        size_t size = 1 + (i * 37) % 700;
        memset(want, (int)(i & 0xff), size);
        ck_assert_msg(memcmp(ptrs[i], want, size) == 0,
                      "allocation %zu overwritten", i);
    }
    ck_assert_uint_ge(stoa_arena_used(arena), total);
    stoa_arena_reset(arena);
    ck_assert_uint_eq(stoa_arena_used(arena), 0);
    free(ptrs);
}
END_TEST

TEST_MAIN_ONE_CASE("arena", setup, teardown, alloc_is_16_byte_aligned,
                   allocations_do_not_overlap, big_allocation_beyond_block_size,
                   reset_runs_cleanups_in_reverse_order, destroy_runs_cleanups,
                   reset_makes_memory_reusable, calloc_zeroes_reused_memory,
                   used_counts_allocations, strdup_and_strndup, sprintf_formats,
                   read_file_whole_and_bounded, reset_gives_large_growth_back,
                   kept_spares_are_reused_and_released,
                   big_piece_keeps_current_block_in_use,
                   growth_blocks_keep_every_allocation)
