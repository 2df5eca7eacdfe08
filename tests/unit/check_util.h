/* check_util.h - small helpers shared by the Check suites: building test
 * cases with a timeout, running a suite, temporary files.
 *
 * Everything here is static inline so each suite binary stays one
 * translation unit and unused helpers cost no warnings. */
#ifndef STOA_CHECK_UTIL_H
#define STOA_CHECK_UTIL_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Seconds per test case: generous for ASan builds, small enough that a
 * hang is reported instead of stalling `make test`. */
#define TEST_TIMEOUT_SECONDS 20

/* A test case with the given per-test fixture (either may be NULL). The
 * fixture is "checked": it runs in the forked child around every test, so
 * each test starts from a fresh arena. */
static inline TCase *test_case(const char *name, void (*setup)(void),
                               void (*teardown)(void))
{
    TCase *tc = tcase_create(name);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, TEST_TIMEOUT_SECONDS);
    return tc;
}

/* Adds a test case (as test_case) holding the tests listed, in order:
 *   TEST_CASE(s, "core", setup, teardown, first_test, second_test);
 */
#define TEST_CASE(suite, name, setup, teardown, ...)                           \
    test_case_add((suite), (name), (setup), (teardown),                        \
                  (const TTest *const[]){__VA_ARGS__, NULL})
static inline void test_case_add(Suite *suite, const char *name,
                                 void (*setup)(void), void (*teardown)(void),
                                 const TTest *const *tests)
{
    TCase *tc = test_case(name, setup, teardown);
    for (; *tests; tests++)
        tcase_add_test(tc, *tests);
    suite_add_tcase(suite, tc);
}

/* A row of a table of texts a validator accepts or refuses. */
typedef struct {
    const char *s;
    bool valid;
} text_case_t;

/* A test of a TEST_CASE_OF list: ONCE(test), or LOOP(test, table) to run
 * it once per row of table (its _i). */
typedef struct {
    const TTest *test;
    int loops; /* 0: once */
} test_entry_t;
#define ONCE(test) {(test), 0}
#define LOOP(test, table) {(test), (int)(sizeof(table) / sizeof((table)[0]))}
#define TEST_CASE_OF(suite, name, setup, teardown, ...)                        \
    test_case_add_entries((suite), (name), (setup), (teardown),                \
                          (const test_entry_t[]){__VA_ARGS__, {NULL, 0}})
static inline void test_case_add_entries(Suite *suite, const char *name,
                                         void (*setup)(void),
                                         void (*teardown)(void),
                                         const test_entry_t *tests)
{
    TCase *tc = test_case(name, setup, teardown);
    for (; tests->test; tests++) {
        if (tests->loops)
            tcase_add_loop_test(tc, tests->test, 0, tests->loops);
        else
            tcase_add_test(tc, tests->test);
    }
    suite_add_tcase(suite, tc);
}

/* Runs every test of the suite; returns the process exit status. */
static inline int test_run_suite(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* The main() of a check program: runs the suite suite_fn() builds. */
#define TEST_MAIN(suite_fn)                                                    \
    int main(void)                                                             \
    {                                                                          \
        return test_run_suite(suite_fn());                                     \
    }

/* The main() of a check program whose suite is one test case:
 *   TEST_MAIN_ONE_CASE("events", NULL, NULL, first_test, second_test)
 */
#define TEST_MAIN_ONE_CASE(name, setup, teardown, ...)                         \
    int main(void)                                                             \
    {                                                                          \
        Suite *suite = suite_create(name);                                     \
        TEST_CASE(suite, name, setup, teardown, __VA_ARGS__);                  \
        return test_run_suite(suite);                                          \
    }

/* Writes len bytes into a new temporary file; returns its path, which the
 * caller frees (and unlinks with test_remove_file()). */
static inline char *test_write_file(const void *data, size_t len)
{
    char tmpl[] = "/tmp/stoa-check-XXXXXX";
    int fd = mkstemp(tmpl);
    ck_assert_msg(fd >= 0, "mkstemp failed");
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        ck_assert_msg(n > 0, "write to %s failed", tmpl);
        p += n;
        len -= (size_t)n;
    }
    ck_assert_int_eq(close(fd), 0);
    char *path = malloc(sizeof(tmpl));
    ck_assert_ptr_nonnull(path);
    memcpy(path, tmpl, sizeof(tmpl));
    return path;
}

static inline void test_remove_file(char *path)
{
    if (path) {
        unlink(path);
        free(path);
    }
}

/* n copies of c, NUL-terminated; caller frees. */
static inline char *test_repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

#endif
