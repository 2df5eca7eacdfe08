/* check_buf.c - the growable byte buffer: growth, printf, JSON escaping. */
#include "check_util.h"
#include "stoa/buf.h"
#include "stoa/json.h"

static stoa_buf_t buf;
static stoa_arena_t *arena;

static void setup(void)
{
    stoa_buf_init(&buf);
    arena = stoa_arena_create(0);
}

static void teardown(void)
{
    stoa_buf_free(&buf);
    stoa_arena_destroy(arena);
}

START_TEST(init_is_empty)
{
    ck_assert_ptr_null(buf.data);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_uint_eq(buf.cap, 0);
}
END_TEST

START_TEST(append_grows_and_keeps_content)
{
    /* One byte at a time through many reallocations. */
    for (size_t i = 0; i < 10000; i++) {
        char c = (char)('a' + i % 26);
        stoa_buf_append(&buf, &c, 1);
        ck_assert_uint_eq(buf.len, i + 1);
        ck_assert_uint_gt(buf.cap, buf.len);
        ck_assert_int_eq(buf.data[buf.len], '\0');
    }
    for (size_t i = 0; i < 10000; i++)
        ck_assert_int_eq(buf.data[i], (char)('a' + i % 26));

    /* One chunk far larger than the current capacity. */
    char *big = test_repeat('z', 100000);
    stoa_buf_append(&buf, big, 100000);
    ck_assert_uint_eq(buf.len, 110000);
    ck_assert_int_eq(memcmp(buf.data + 10000, big, 100000), 0);
    ck_assert_int_eq(buf.data[buf.len], '\0');
    free(big);
}
END_TEST

START_TEST(append_binary_and_puts)
{
    stoa_buf_append(&buf, "a\0b", 3);
    ck_assert_uint_eq(buf.len, 3);
    ck_assert_int_eq(memcmp(buf.data, "a\0b", 4), 0);
    stoa_buf_puts(&buf, "cd");
    ck_assert_uint_eq(buf.len, 5);
    ck_assert_int_eq(memcmp(buf.data, "a\0bcd", 6), 0);
    stoa_buf_append(&buf, NULL, 0);
    ck_assert_uint_eq(buf.len, 5);
}
END_TEST

START_TEST(printf_appends_and_grows)
{
    stoa_buf_puts(&buf, "x=");
    stoa_buf_printf(&buf, "%d,%s", -12, "yz");
    ck_assert_str_eq(buf.data, "x=-12,yz");
    ck_assert_uint_eq(buf.len, 8);

    /* Past the first growth step in one call. */
    stoa_buf_printf(&buf, "%0*d", 3000, 7);
    ck_assert_uint_eq(buf.len, 3008);
    ck_assert_int_eq(buf.data[8], '0');
    ck_assert_int_eq(buf.data[3007], '7');
    ck_assert_int_eq(buf.data[3008], '\0');

    /* An empty expansion changes nothing. */
    stoa_buf_printf(&buf, "%s", "");
    ck_assert_uint_eq(buf.len, 3008);
}
END_TEST

START_TEST(reset_keeps_capacity)
{
    stoa_buf_puts(&buf, "some content");
    size_t cap = buf.cap;
    char *data = buf.data;
    stoa_buf_reset(&buf);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_uint_eq(buf.cap, cap);
    ck_assert_ptr_eq(buf.data, data);
    ck_assert_str_eq(buf.data, "");
    stoa_buf_puts(&buf, "new");
    ck_assert_str_eq(buf.data, "new");
}
END_TEST

START_TEST(free_returns_to_empty)
{
    stoa_buf_puts(&buf, "content");
    stoa_buf_free(&buf);
    ck_assert_ptr_null(buf.data);
    ck_assert_uint_eq(buf.len, 0);
    ck_assert_uint_eq(buf.cap, 0);
    stoa_buf_puts(&buf, "again"); /* usable after free */
    ck_assert_str_eq(buf.data, "again");
}
END_TEST

static const struct {
    const char *in;
    size_t len;
    const char *out;
} escape_cases[] = {
    {"plain text", 10, "plain text"},
    {"", 0, ""},
    {"say \"hi\"", 8, "say \\\"hi\\\""},
    {"back\\slash", 10, "back\\\\slash"},
    {"\\\"", 2, "\\\\\\\""},
    {"a\nb", 3, "a\\u000ab"},
    {"\t\r", 2, "\\u0009\\u000d"},
    {"\x01\x1f", 2, "\\u0001\\u001f"},
    {"del\x7f", 4, "del\\u007f"},
    {"nul\0x", 5, "nul\\u0000x"},
    {"/ \x20~", 4, "/  ~"},
    {"caf\xc3\xa9", 5, "caf\xc3\xa9"}, /* UTF-8 passes through */
};

START_TEST(json_escape_table)
{
    stoa_buf_puts(&buf, "<");
    stoa_buf_json_escape(&buf, escape_cases[_i].in, escape_cases[_i].len);
    stoa_buf_puts(&buf, ">");
    char *want = stoa_arena_sprintf(arena, "<%s>", escape_cases[_i].out);
    ck_assert_str_eq(buf.data, want);
}
END_TEST

START_TEST(json_escape_round_trips_through_parser)
{
    /* Every byte 0x01..0x7f, escaped and quoted, must parse back to
     * itself: the escaper and the parser agree. */
    char raw[127];
    for (int i = 0; i < 127; i++)
        raw[i] = (char)(i + 1);
    stoa_buf_puts(&buf, "\"");
    stoa_buf_json_escape(&buf, raw, sizeof(raw));
    stoa_buf_puts(&buf, "\"");
    stoa_json_t *doc;
    char err[200];
    int rc = stoa_json_parse(arena, buf.data, buf.len, STOA_JSON_MAX_DEPTH,
                             &doc, err, sizeof(err));
    ck_assert_msg(rc == STOA_OK, "escaped text did not parse: %s", err);
    const char *s = stoa_json_string(doc);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), sizeof(raw));
    ck_assert_int_eq(memcmp(s, raw, sizeof(raw)), 0);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TEST_CASE_OF(s, "core", setup, teardown, ONCE(init_is_empty),
                 ONCE(append_grows_and_keeps_content),
                 ONCE(append_binary_and_puts), ONCE(printf_appends_and_grows),
                 ONCE(reset_keeps_capacity), ONCE(free_returns_to_empty),
                 LOOP(json_escape_table, escape_cases),
                 ONCE(json_escape_round_trips_through_parser));
    return s;
}

TEST_MAIN(buf_suite)
