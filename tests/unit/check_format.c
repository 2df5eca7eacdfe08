/* check_format.c - email normalisation, RFC 3339 times, UTF-8 text. */
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
                      "'%s' gave '%s'", email_cases[_i].in,
                      got ? got : "(refused)");
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

static const struct {
    const char *in;
    bool valid;
} utf8_cases[] = {
    {"", true},
    {"plain ascii", true},
    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", true},
    {"\xef\xbf\xbd", true},
    {"\xf4\x8f\xbf\xbf", true}, /* U+10FFFF */
    {"\xff", false},
    {"Mozilla\xff\xfe", false},
    {"\xc0\xaf", false},         /* overlong '/' */
    {"\xe0\x80\xaf", false},     /* overlong */
    {"\xed\xa0\x80", false},     /* surrogate U+D800 */
    {"\xf4\x90\x80\x80", false}, /* above U+10FFFF */
    {"\xe2\x82", false},         /* truncated */
    {"a\x80"
     "b",
     false}, /* stray continuation */
    {"\xf8\x88\x80\x80\x80", false},
};

START_TEST(utf8_table)
{
    const char *s = utf8_cases[_i].in;
    ck_assert_msg(stoa_utf8_valid(s, strlen(s)) == utf8_cases[_i].valid,
                  "case %d", _i);
}
END_TEST

/* The eight-bytes-at-a-time ASCII scan hands over to the byte check at
 * every offset: a bad or a good sequence after 0..17 ASCII bytes, with
 * ASCII after it, and a truncated one at the very end. */
START_TEST(utf8_after_ascii_runs)
{
    char buf[64];
    for (int run = 0; run < 18; run++) {
        memset(buf, 'a', (size_t)run);
        memcpy(buf + run,
               "\xc3\xa9"
               "aaaaaaaaa",
               11);
        bool good = stoa_utf8_valid(buf, (size_t)run + 11);
        memcpy(buf + run,
               "\xed\xa0\x80"
               "aaaaaaaaa",
               12);
        bool surrogate = stoa_utf8_valid(buf, (size_t)run + 12);
        memcpy(buf + run, "\xe2\x82", 2);
        bool truncated = stoa_utf8_valid(buf, (size_t)run + 2);
        ck_assert_msg(good && !surrogate && !truncated, "after %d ASCII bytes",
                      run);
    }
}
END_TEST

static const struct {
    const char *in;
    size_t max;
    const char *out; /* NULL: nothing left */
} sanitise_cases[] = {
    {"Mozilla/5.0 (X11)", 512, "Mozilla/5.0 (X11)"},
    {"Mozilla\xff\xfe", 512, "Mozilla\xef\xbf\xbd\xef\xbf\xbd"},
    /* One U+FFFD per maximal ill-formed prefix. */
    {"a\xe2\x82"
     "b",
     512,
     "a\xef\xbf\xbd"
     "b"},
    {"\xf0\x9f\x98", 512, "\xef\xbf\xbd"},
    {"\xc0\xaf", 512, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"\xed\xa0\x80", 512, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
    {"caf\xc3\xa9", 512, "caf\xc3\xa9"},
    /* Controls dropped (C0, DEL, C1), tabs made spaces. */
    {"a\x01\x1b[31mb\x7f"
     "c\r\nd",
     512, "a[31mbcd"},
    {"x\xc2\x9b"
     "y\xc2\xa0z",
     512, "xy\xc2\xa0z"},
    {"tab\there", 512, "tab here"},
    {"\x01\x02", 512, NULL},
    {"", 512, NULL},
    /* Capped on a character boundary. */
    {"abcdef", 4, "abcd"},
    {"\xc3\xa9\xc3\xa9\xc3\xa9", 5, "\xc3\xa9\xc3\xa9"},
    {"ab\xff", 4, "ab"},
    {"\xe2\x82\xac", 2, NULL},
};

START_TEST(sanitise_table)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    char *got = stoa_text_sanitise(arena, sanitise_cases[_i].in,
                                   sanitise_cases[_i].max);
    if (sanitise_cases[_i].out) {
        ck_assert_msg(got && strcmp(got, sanitise_cases[_i].out) == 0,
                      "case %d gave '%s'", _i, got ? got : "(null)");
        ck_assert(stoa_utf8_valid(got, strlen(got)));
    } else {
        ck_assert_msg(got == NULL, "case %d gave '%s'", _i, got);
    }
    stoa_arena_destroy(arena);
}
END_TEST

START_TEST(sanitise_null_and_long_input)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    ck_assert_ptr_null(stoa_text_sanitise(arena, NULL, 512));
    /* 4000 stray bytes: each a U+FFFD, the whole cut at the cap. */
    char in[4001];
    memset(in, 0xff, 4000);
    in[4000] = '\0';
    char *got = stoa_text_sanitise(arena, in, 512);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(strlen(got), 510);
    ck_assert(stoa_utf8_valid(got, strlen(got)));
    stoa_arena_destroy(arena);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TEST_CASE_OF(s, "format", NULL, NULL, LOOP(email_table, email_cases),
                 ONCE(email_length_limits), LOOP(time_table, time_cases),
                 LOOP(utf8_table, utf8_cases), ONCE(utf8_after_ascii_runs),
                 LOOP(sanitise_table, sanitise_cases),
                 ONCE(sanitise_null_and_long_input));
    return s;
}

TEST_MAIN(format_suite)
