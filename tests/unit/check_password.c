/* check_password.c - Argon2id hashing into PHC strings, verification and
 * the rehash check (small cost parameters keep the suite fast), and the
 * password policy. */
#include <argon2.h>

#include "check_util.h"
#include "stoa/password.h"

static const stoa_password_params_t small = {
    .memory_kib = 64, .iterations = 1, .parallelism = 1};

static char phc[STOA_PASSWORD_HASH_MAX];

static void setup(void)
{
    memset(phc, 0, sizeof(phc));
    ck_assert_int_eq(stoa_password_hash(&small, "correct horse", phc), STOA_OK);
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

/* The PHC strings are libargon2's own format: each side reads the other's. */
START_TEST(phc_is_libargon2s_format)
{
    ck_assert_int_eq(argon2id_verify(phc, "correct horse", 13), ARGON2_OK);
    ck_assert_int_ne(argon2id_verify(phc, "correct horsf", 13), ARGON2_OK);

    char theirs[STOA_PASSWORD_HASH_MAX];
    const uint8_t salt[16] = "0123456789abcdef";
    ck_assert_int_eq(argon2id_hash_encoded(1, 64, 1, "battery staple", 14, salt,
                                           sizeof(salt), 32, theirs,
                                           sizeof(theirs)),
                     ARGON2_OK);
    ck_assert_int_eq(stoa_password_verify(theirs, "battery staple"), STOA_OK);
    ck_assert_int_eq(stoa_password_verify(theirs, "battery stapler"),
                     STOA_DECLINED);
    /* Another salt and output length than ours still verifies. */
    const uint8_t long_salt[24] = "0123456789abcdef01234567";
    ck_assert_int_eq(argon2id_hash_encoded(2, 128, 2, "x", 1, long_salt,
                                           sizeof(long_salt), 48, theirs,
                                           sizeof(theirs)),
                     ARGON2_OK);
    ck_assert_int_eq(stoa_password_verify(theirs, "x"), STOA_OK);
}
END_TEST

/* A stored hash is input too (a restored dump, a planted row): parameters
 * out of bounds or not in canonical form are refused before any work. */
START_TEST(hostile_parameters_are_declined)
{
    const char *tail = strchr(phc + strlen("$argon2id$v=19$"), '$');
    ck_assert_ptr_nonnull(tail);
    const char *const heads[] = {
        "$argon2id$v=16$m=64,t=1,p=1",         /* another version */
        "$argon2id$v=19$m=4194304,t=1,p=1",    /* 4 GiB */
        "$argon2id$v=19$m=64,t=1000,p=1",      /* too many passes */
        "$argon2id$v=19$m=64,t=1,p=255",       /* too many lanes */
        "$argon2id$v=19$m=064,t=1,p=1",        /* leading zero */
        "$argon2id$v=19$m=64,t=0,p=1",         /* zero passes */
        "$argon2id$v=19$m=4,t=1,p=1",          /* under 8 KiB a lane */
        "$argon2id$v=19$m=64,t=1",             /* a field missing */
        "$argon2id$v=19$t=1,m=64,p=1",         /* fields reordered */
        "$argon2id$v=19$m=64,t=1,p=1,data=xx", /* a field too many */
        "$argon2id$v=19$m=-64,t=1,p=1",
        "$argon2id$v=19$m=99999999999999999999,t=1,p=1",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(heads); i++) {
        char text[2 * STOA_PASSWORD_HASH_MAX];
        snprintf(text, sizeof(text), "%s%s", heads[i], tail);
        ck_assert_msg(stoa_password_verify(text, "correct horse") ==
                          STOA_DECLINED,
                      "case %zu verified: %s", i, text);
    }
    /* Salt or hash too short, too long, or padded. */
    const char *const bodies[] = {
        "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$AAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAA",
        "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg==$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$",
        "$argon2id$v=19$m=64,t=1,p=1$$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(bodies); i++)
        ck_assert_msg(stoa_password_verify(bodies[i], "x") == STOA_DECLINED,
                      "body %zu verified: %s", i, bodies[i]);
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
    stoa_password_params_t p = {
        .memory_kib = 128, .iterations = 2, .parallelism = 2};
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
    stoa_password_params_t p = {
        .memory_kib = 1, .iterations = 1, .parallelism = 1};
    char h[STOA_PASSWORD_HASH_MAX];
    ck_assert_int_eq(stoa_password_hash(&p, "pw", h), STOA_ERROR);
}
END_TEST

/* --- policy ----------------------------------------------------------- */

static const struct {
    const char *password;
    const char *email;  /* may be NULL */
    const char *name;   /* may be NULL */
    const char *reason; /* NULL: accepted */
} policy_cases[] = {
    /* Weak by the estimate, though none is in the shipped list. */
    {"password1234", "user@example.com", "Some User", "too_weak"},
    {"qwertyuiop12", "user@example.com", "Some User", "too_weak"},
    {"aaaaaaaaaaaa", "user@example.com", "Some User", "too_weak"},
    {"123456789012", "user@example.com", "Some User", "too_weak"},
    {"abcdefghijkl", NULL, NULL, "too_weak"},
    {"Zq9!Zq9!Zq9!", NULL, NULL, "too_weak"},
    /* Four words, with or without spaces. */
    {"purple walrus inside lantern", "user@example.com", "Some User", NULL},
    {"correct horse battery staple", NULL, NULL, NULL},
    {"orange tiger river cloud", "orange@example.com", NULL, "contains_email"},
    {"orange tiger river cloud", "tiger.lily@example.com", NULL, NULL},
    {"Tq7#vLp2!xRz-9mW", "user@example.com", "Some User", NULL},
    /* Exactly 12 random characters. */
    {"Xy7!pQ2#wE9k", NULL, NULL, NULL},
    /* Characters are counted, not bytes. */
    {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3"
     "\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
     NULL, NULL, "too_short"},
    {"Xy7!pQ2#wE9", NULL, NULL, "too_short"},
    {"", NULL, NULL, "too_short"},
    /* The shipped list, in any case; it is checked before the estimate. */
    {"qwerty123456", NULL, NULL, "too_common"},
    {"QWERTY123456", NULL, NULL, "too_common"},
    /* The local part (3+ characters), in any case. */
    {"My-zebrastripe-Pass!", "zebrastripe@example.com", NULL, "contains_email"},
    {"ZEBRASTRIPE#2024xyz", "zebrastripe@example.com", NULL, "contains_email"},
    /* ...and as a word the estimate knows, leet spelling included. */
    {"z3br4str1p3!!", "zebrastripe@example.com", NULL, "too_weak"},
    {"z3br4str1p3!!x9", NULL, NULL, NULL},
    /* Words of the name: strong for anyone else, weak for its owner. */
    {"Brackwater1987!", "q@example.com", "Quillon Brackwater", "too_weak"},
    {"Brackwater1987!", "q@example.com", "Someone Else", NULL},
    {"brackwaterquillon", NULL, "Quillon Brackwater", "too_weak"},
    {"brackwaterquillon", NULL, NULL, NULL},
    /* Pieces of a local part count too. */
    {"Fernsby-Marmaduke-1", "marmaduke.fernsby@example.com", NULL, "too_weak"},
};

START_TEST(policy_table)
{
    for (size_t i = 0; i < STOA_ARRAY_LEN(policy_cases); i++) {
        const char *got =
            stoa_password_refusal(policy_cases[i].password,
                                  policy_cases[i].email, policy_cases[i].name);
        const char *want = policy_cases[i].reason;
        ck_assert_msg((got == NULL && want == NULL) ||
                          (got && want && strcmp(got, want) == 0),
                      "case %zu '%s': got %s, want %s", i,
                      policy_cases[i].password, got ? got : "accepted",
                      want ? want : "accepted");
    }
}
END_TEST

START_TEST(policy_length_limits)
{
    /* 1024 bytes is the most; the estimate of a long password stays fast
     * (it judges a prefix) and a strong start carries it. */
    char pw[STOA_PASSWORD_MAX_BYTES + 2];
    memset(pw, 'a', sizeof(pw));
    memcpy(pw, "Tq7#vLp2!xRz-9mW", 16);
    pw[STOA_PASSWORD_MAX_BYTES] = '\0';
    ck_assert_ptr_null(stoa_password_refusal(pw, NULL, NULL));
    pw[STOA_PASSWORD_MAX_BYTES] = 'a';
    pw[STOA_PASSWORD_MAX_BYTES + 1] = '\0';
    ck_assert_str_eq(stoa_password_refusal(pw, NULL, NULL), "too_long");
    /* Multibyte characters across the cut of the estimated prefix. */
    char wide[STOA_PASSWORD_MAX_BYTES + 1];
    size_t n = 0;
    memcpy(wide, "Tq7#vLp2!xRz-9mW", 16);
    n = 17;
    wide[16] = 'x';
    while (n + 2 <= STOA_PASSWORD_MAX_BYTES) {
        wide[n++] = (char)0xc3;
        wide[n++] = (char)0xa9;
    }
    wide[n] = '\0';
    ck_assert_ptr_null(stoa_password_refusal(wide, "user@example.com", NULL));
}
END_TEST

START_TEST(policy_odd_user_words)
{
    /* Names and addresses of every shape are only hints: none breaks the
     * check. */
    char long_name[600];
    memset(long_name, 'n', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *names[] = {"",
                           " ",
                           "a b c d e f g h i j k l m n o p q r s t",
                           long_name,
                           "Zo\xc3\xab O'Neil-Smith",
                           NULL};
    const char *emails[] = {"@example.com", "ab@example.com", "no-at-sign",
                            "x.y.z.w.v.u.t.s.r.q.p.o.n.m.l.k@example.com",
                            NULL};
    for (size_t i = 0; i < STOA_ARRAY_LEN(names); i++)
        for (size_t j = 0; j < STOA_ARRAY_LEN(emails); j++) {
            ck_assert_ptr_null(stoa_password_refusal(
                "purple walrus inside lantern", emails[j], names[i]));
            ck_assert_str_eq(
                stoa_password_refusal("password1234", emails[j], names[i]),
                "too_weak");
        }
}
END_TEST

static Suite *password_suite(void)
{
    Suite *s = suite_create("password");
    TEST_CASE(s, "argon2id", setup, NULL, hash_is_phc_argon2id,
              phc_is_libargon2s_format, hostile_parameters_are_declined,
              hash_then_verify, salt_makes_hashes_differ,
              wrong_password_declined, malformed_phc_declined, needs_rehash,
              other_params_hash_and_verify, impossible_params_are_an_error);
    TEST_CASE(s, "policy", NULL, NULL, policy_table, policy_length_limits,
              policy_odd_user_words);
    return s;
}

TEST_MAIN(password_suite)
