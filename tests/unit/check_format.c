/* check_format.c - email normalisation and RFC 3339 times. */
#include "check_util.h"
#include "stoa/format.h"

static const struct {
    const char *in;
    const char *out; /* NULL: refused */
} email_cases[] = {
    {"Alice@Example.COM", "alice@example.com"},
    {"  bob@example.com\t", "bob@example.com"},
    {"admin@localhost", "admin@localhost"},
    {"a@b", "a@b"},
    {"first.last+tag@sub.example.org", "first.last+tag@sub.example.org"},
    {"", NULL},
    {"ab", NULL},
    {"no-at-sign.example.com", NULL},
    {"@example.com", NULL},
    {"user@", NULL},
    {"two@@example.com", NULL},
    {"a@b@c.com", NULL},
    {"with space@example.com", NULL},
    {"quote\"@example.com", NULL},
    {"<a@example.com>", NULL},
    {"a,b@example.com", NULL},
    {"a;b@example.com", NULL},
    {"a\\b@example.com", NULL},
    {"tab\tin@example.com", NULL},
    {"user@.example.com", NULL},
    {"user@example.com.", NULL},
    {"user@example..com", NULL},
    {"user@exa\x7fmple.com", NULL},
};

START_TEST(email_table)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    char *got = stoa_email_normalise(arena, email_cases[_i].in);
    if (email_cases[_i].out)
        ck_assert_msg(got && strcmp(got, email_cases[_i].out) == 0,
                      "'%s' gave '%s'", email_cases[_i].in, got ? got : "(refused)");
    else
        ck_assert_msg(got == NULL, "'%s' accepted as '%s'", email_cases[_i].in,
                      got);
    stoa_arena_destroy(arena);
}
END_TEST

START_TEST(email_length_limits)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    char local[80], addr[300];
    memset(local, 'a', 64);
    local[64] = '\0';
    snprintf(addr, sizeof(addr), "%s@example.com", local);
    ck_assert_ptr_nonnull(stoa_email_normalise(arena, addr));
    memset(local, 'a', 65);
    local[65] = '\0';
    snprintf(addr, sizeof(addr), "%s@example.com", local);
    ck_assert_ptr_null(stoa_email_normalise(arena, addr));
    /* 254 bytes in all pass, 255 do not. */
    memset(addr, 'd', sizeof(addr));
    memcpy(addr, "a@", 2);
    addr[254] = '\0';
    ck_assert_ptr_nonnull(stoa_email_normalise(arena, addr));
    addr[254] = 'd';
    addr[255] = '\0';
    ck_assert_ptr_null(stoa_email_normalise(arena, addr));
    stoa_arena_destroy(arena);
}
END_TEST

static const struct {
    const char *in;
    bool full_ok, date_ok; /* accepted without / with date_only_ok */
} time_cases[] = {
    {"2027-01-31T12:00:00Z", true, true},
    {"2027-01-31", false, true},
    {"2027-01-31T12:00:00", false, false},
    {"2027-01-31T12:00:00+00:00", false, false},
    {"2027-01-31 12:00:00Z", false, false},
    {"2027-1-31", false, false},
    {"20270131", false, false},
    {"2027-01-31T12:00:00.5Z", false, false},
    {"abcd-ef-ghTij:kl:mnZ", false, false},
    {"", false, false},
    {" 2027-01-31", false, false},
    /* The calendar: only dates and times that exist. */
    {"2027-13-01", false, false},
    {"2027-00-10", false, false},
    {"2027-01-00", false, false},
    {"2027-01-32", false, false},
    {"2027-04-31", false, false},
    {"2027-04-30", false, true},
    {"2026-02-30", false, false},
    {"2025-02-29", false, false},
    {"2024-02-29", false, true},
    {"2000-02-29", false, true},
    {"2100-02-29", false, false},
    {"2100-02-28", false, true},
    {"0000-01-01", false, false},
    {"0001-01-01", false, true},
    {"9999-12-31", false, true},
    {"2099-13-45T99:99:99Z", false, false},
    {"2027-02-29T00:00:00Z", false, false},
    {"2028-02-29T00:00:00Z", true, true},
    {"2027-01-31T24:00:00Z", false, false},
    {"2027-01-31T23:60:00Z", false, false},
    {"2027-01-31T23:59:59Z", true, true},
    {"2027-01-31T12:00:61Z", false, false},
    {"2027-01-31T12:00:60Z", false, false},
    {"2027-01-31T23:58:60Z", false, false},
    {"2027-01-31T22:59:60Z", false, false},
    {"2027-12-31T23:59:60Z", true, true},
    {"2027-01-31T12:00:00+25:00", false, false},
    {"2027-01-31T12:00:00-00:00", false, false},
    {"2027-01-31T12:00:00z", false, false},
};

START_TEST(time_table)
{
    ck_assert_msg(stoa_time_shape_valid(time_cases[_i].in, false) ==
                      time_cases[_i].full_ok,
                  "'%s' (full only)", time_cases[_i].in);
    ck_assert_msg(stoa_time_shape_valid(time_cases[_i].in, true) ==
                      time_cases[_i].date_ok,
                  "'%s' (date allowed)", time_cases[_i].in);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = test_case("format", NULL, NULL);
    tcase_add_loop_test(tc, email_table, 0, (int)STOA_ARRAY_LEN(email_cases));
    tcase_add_test(tc, email_length_limits);
    tcase_add_loop_test(tc, time_table, 0, (int)STOA_ARRAY_LEN(time_cases));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return test_run_suite(format_suite());
}
