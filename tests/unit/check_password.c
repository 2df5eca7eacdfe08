/* check_password.c - Argon2id hashing into PHC strings, verification and
 * the rehash check. Small cost parameters keep the suite fast. */
#include "check_util.h"
#include "stoa/password.h"

static const stoa_password_params_t small = {
    .memory_kib = 64, .iterations = 1, .parallelism = 1};

static char phc[STOA_PASSWORD_HASH_MAX];

static void setup(void)
{
    memset(phc, 0, sizeof(phc));
    ck_assert_int_eq(stoa_password_hash(&small, "correct horse", phc),
                     STOA_OK);
}

START_TEST(hash_is_phc_argon2id)
{
    const char *prefix = "$argon2id$v=19$m=64,t=1,p=1$";
    ck_assert_msg(strncmp(phc, prefix, strlen(prefix)) == 0, "phc: %s", phc);
    ck_assert_ptr_null(strstr(phc, "correct horse"));
    /* salt and hash follow: two more '$'-separated parts. */
    const char *rest = phc + strlen(prefix);
    const char *dollar = strchr(rest, '$');
    ck_assert_ptr_nonnull(dollar);
    ck_assert_uint_gt((size_t)(dollar - rest), 0);
    ck_assert_uint_gt(strlen(dollar + 1), 0);
}
END_TEST

START_TEST(hash_then_verify)
{
    ck_assert_int_eq(stoa_password_verify(phc, "correct horse"), STOA_OK);
}
END_TEST

START_TEST(salt_makes_hashes_differ)
{
    char other[STOA_PASSWORD_HASH_MAX];
    ck_assert_int_eq(stoa_password_hash(&small, "correct horse", other),
                     STOA_OK);
    ck_assert_str_ne(phc, other);
    ck_assert_int_eq(stoa_password_verify(other, "correct horse"), STOA_OK);
}
END_TEST

START_TEST(wrong_password_declined)
{
    static const char *const wrong[] = {"correct horsE", "correct horse ",
                                        "correct hors", "", "Correct horse"};
    for (size_t i = 0; i < STOA_ARRAY_LEN(wrong); i++)
        ck_assert_msg(stoa_password_verify(phc, wrong[i]) == STOA_DECLINED,
                      "'%s' verified", wrong[i]);
}
END_TEST

START_TEST(malformed_phc_declined)
{
    /* A valid string with one hash character changed (not the last one,
     * whose low bits are padding). */
    char tampered[STOA_PASSWORD_HASH_MAX];
    memcpy(tampered, phc, sizeof(tampered));
    size_t n = strlen(tampered);
    tampered[n - 10] = tampered[n - 10] == 'A' ? 'B' : 'A';
    /* The same with the algorithm renamed. */
    char argon2i[STOA_PASSWORD_HASH_MAX + 8];
    snprintf(argon2i, sizeof(argon2i), "$argon2i$%s",
             phc + strlen("$argon2id$"));
    /* Truncated inside the salt. */
    char truncated[STOA_PASSWORD_HASH_MAX];
    memcpy(truncated, phc, sizeof(truncated));
    truncated[strlen("$argon2id$v=19$m=64,t=1,p=1$") + 4] = '\0';

    const char *const bad[] = {
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=64,t=1,p=1$",
        "$argon2id$v=19$m=64,t=1,p=1$!!!!$????",
        "$2b$10$abcdefghijklmnopqrstuuOMGz5KjUlEVRyRX7lXQn3Xl3/gRQeEa",
        tampered,
        argon2i,
        truncated,
        NULL,
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(bad); i++)
        ck_assert_msg(stoa_password_verify(bad[i], "correct horse") ==
                          STOA_DECLINED,
                      "case %zu verified: %s", i, bad[i] ? bad[i] : "NULL");
}
END_TEST

START_TEST(needs_rehash)
{
    ck_assert(!stoa_password_needs_rehash(phc, &small));

    stoa_password_params_t p = small;
    p.memory_kib = 128;
    ck_assert(stoa_password_needs_rehash(phc, &p));
    p = small;
    p.iterations = 2;
    ck_assert(stoa_password_needs_rehash(phc, &p));
    p = small;
    p.parallelism = 2;
    ck_assert(stoa_password_needs_rehash(phc, &p));
    /* A prefix of a number is not equal: m=6 must not match m=64. */
    p = small;
    p.memory_kib = 6;
    ck_assert(stoa_password_needs_rehash(phc, &p));

    ck_assert(stoa_password_needs_rehash(NULL, &small));
    ck_assert(stoa_password_needs_rehash("garbage", &small));
}
END_TEST

START_TEST(other_params_hash_and_verify)
{
    stoa_password_params_t p = {.memory_kib = 128, .iterations = 2,
                                .parallelism = 2};
    char h[STOA_PASSWORD_HASH_MAX];
    ck_assert_int_eq(stoa_password_hash(&p, "pw", h), STOA_OK);
    ck_assert_msg(strncmp(h, "$argon2id$v=19$m=128,t=2,p=2$", 29) == 0,
                  "phc: %s", h);
    ck_assert_int_eq(stoa_password_verify(h, "pw"), STOA_OK);
    ck_assert(!stoa_password_needs_rehash(h, &p));
    ck_assert(stoa_password_needs_rehash(h, &small));
}
END_TEST

START_TEST(impossible_params_are_an_error)
{
    /* Argon2 needs at least 8 KiB per lane. */
    stoa_password_params_t p = {.memory_kib = 1, .iterations = 1,
                                .parallelism = 1};
    char h[STOA_PASSWORD_HASH_MAX];
    ck_assert_int_eq(stoa_password_hash(&p, "pw", h), STOA_ERROR);
}
END_TEST

static Suite *password_suite(void)
{
    Suite *s = suite_create("password");
    TCase *tc = test_case("argon2id", setup, NULL);
    tcase_add_test(tc, hash_is_phc_argon2id);
    tcase_add_test(tc, hash_then_verify);
    tcase_add_test(tc, salt_makes_hashes_differ);
    tcase_add_test(tc, wrong_password_declined);
    tcase_add_test(tc, malformed_phc_declined);
    tcase_add_test(tc, needs_rehash);
    tcase_add_test(tc, other_params_hash_and_verify);
    tcase_add_test(tc, impossible_params_are_an_error);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(password_suite());
}
