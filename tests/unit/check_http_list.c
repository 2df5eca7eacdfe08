/* check_http_list.c - the list writer (stoa_http_list) and the paging
 * parameters (stoa_request_page), driven through a stoa_request_t built by
 * hand (no FastCGI). */
#include "check_util.h"
#include "fixture_util.h"
#include "stoa/http.h"

static stoa_request_t req;

static void setup(void)
{
    test_request_init(&req, "GET", "/", "req-test-1");
}

static void teardown(void)
{
    test_request_free(&req);
}

enum { L_ID, L_NAME, L_COUNT, L_ON, L_TAGS, L_CURSOR_US, L_NCOLS };
static const stoa_column_t list_columns[] = {
    {"id", L_ID, STOA_COLUMN_TEXT},          {"name", L_NAME, STOA_COLUMN_TEXT},
    {"count", L_COUNT, STOA_COLUMN_INTEGER}, {"on", L_ON, STOA_COLUMN_BOOL},
    {"tags", L_TAGS, STOA_COLUMN_JSON},
};
#define UUID_A "0b0e8f52-2f7e-4b5e-9a43-1d1f7c8f0a01"
#define UUID_B "0b0e8f52-2f7e-4b5e-9a43-1d1f7c8f0a02"
#define UUID_C "0b0e8f52-2f7e-4b5e-9a43-1d1f7c8f0a03"
static const char *const list_rows[] = {
    UUID_A,
    "a \"quoted\" name",
    "12",
    "t",
    "[\"x\",\"y\"]",
    "300",
    UUID_B,
    NULL,
    NULL,
    "f",
    NULL,
    "200",
    UUID_C,
    "c",
    "-3",
    NULL,
    "{}",
    "100",
};

static void extra_member(stoa_request_t *r, stoa_jw_t *w,
                         const stoa_db_result_t *res, int row)
{
    (void)r;
    stoa_jw_kv_integer(w, "row", row);
    (void)res;
}

START_TEST(list_writes_every_kind_and_null)
{
    stoa_db_result_t *res =
        stoa_db_result_literal(req.arena, 3, L_NCOLS, list_rows);
    const stoa_list_t list = {list_columns, STOA_ARRAY_LEN(list_columns),
                              extra_member, 0, 0};
    ck_assert_int_eq(stoa_http_list(&req, res, NULL, &list), STOA_OK);
    ck_assert_int_eq(req.status, 200);
    ck_assert_str_eq(
        req.body_out.data,
        "{\"data\":["
        "{\"id\":\"" UUID_A
        "\",\"name\":\"a \\\"quoted\\\" name\",\"count\":12,"
        "\"on\":true,\"tags\":[\"x\",\"y\"],\"row\":0},"
        "{\"id\":\"" UUID_B "\",\"name\":null,\"count\":null,\"on\":false,"
        "\"tags\":null,\"row\":1},"
        "{\"id\":\"" UUID_C "\",\"name\":\"c\",\"count\":-3,\"on\":null,"
        "\"tags\":{},\"row\":2}"
        "],\"next_cursor\":null}");
}
END_TEST

START_TEST(list_keyset_page_has_next_cursor)
{
    req.query = "limit=2";
    stoa_page_t page;
    ck_assert(stoa_request_page(&req, STOA_PAGE_KEYSET, &page));
    ck_assert_int_eq(page.limit, 2);
    ck_assert_str_eq(page.fetch, "3");
    ck_assert_ptr_null(page.cursor_ts);
    ck_assert_ptr_null(page.cursor_id);
    /* The statement returned limit + 1 rows: two shown, the cursor is the
     * second's position. */
    stoa_db_result_t *res =
        stoa_db_result_literal(req.arena, 3, L_NCOLS, list_rows);
    const stoa_list_t list = {list_columns, 1, NULL, L_CURSOR_US, L_ID};
    ck_assert_int_eq(stoa_http_list(&req, res, &page, &list), STOA_OK);
    ck_assert_str_eq(req.body_out.data,
                     "{\"data\":[{\"id\":\"" UUID_A "\"},{\"id\":\"" UUID_B
                     "\"}],\"next_cursor\":\"200_" UUID_B "\"}");
}
END_TEST

START_TEST(list_last_page_has_null_cursor)
{
    req.query = "limit=3&cursor=400_" UUID_A;
    stoa_page_t page;
    ck_assert(stoa_request_page(&req, STOA_PAGE_KEYSET, &page));
    ck_assert_str_eq(page.cursor_ts, "400");
    ck_assert_str_eq(page.cursor_id, UUID_A);
    stoa_db_result_t *res =
        stoa_db_result_literal(req.arena, 3, L_NCOLS, list_rows);
    const stoa_list_t list = {list_columns, 1, NULL, L_CURSOR_US, L_ID};
    ck_assert_int_eq(stoa_http_list(&req, res, &page, &list), STOA_OK);
    ck_assert_ptr_nonnull(strstr(req.body_out.data, "\"next_cursor\":null}"));
    ck_assert_ptr_nonnull(strstr(req.body_out.data, UUID_C));
}
END_TEST

START_TEST(list_serial_page_cursor_is_the_id)
{
    static const char *const rows[] = {"9", "8", "7"};
    req.query = "limit=2&cursor=10";
    stoa_page_t page;
    ck_assert(stoa_request_page(&req, STOA_PAGE_SERIAL, &page));
    ck_assert_str_eq(page.cursor_id, "10");
    static const stoa_column_t columns[] = {{"id", 0, STOA_COLUMN_INTEGER}};
    const stoa_list_t list = {columns, 1, NULL, 0, 0};
    stoa_db_result_t *res = stoa_db_result_literal(req.arena, 3, 1, rows);
    ck_assert_int_eq(stoa_http_list(&req, res, &page, &list), STOA_OK);
    ck_assert_str_eq(
        req.body_out.data,
        "{\"data\":[{\"id\":9},{\"id\":8}],\"next_cursor\":\"8\"}");
}
END_TEST

/* The errors of the parameters, as the lists have always given them. */
START_TEST(page_refuses_bad_parameters)
{
    static const struct {
        stoa_page_kind_t kind;
        const char *query;
        const char *fields; /* the recorded field errors */
    } cases[] = {
        {STOA_PAGE_KEYSET, "limit=0", "\"limit\":\"out_of_range\""},
        {STOA_PAGE_KEYSET, "limit=101", "\"limit\":\"out_of_range\""},
        {STOA_PAGE_KEYSET, "limit=1000", "\"limit\":\"out_of_range\""},
        {STOA_PAGE_KEYSET, "limit=-1", "\"limit\":\"out_of_range\""},
        {STOA_PAGE_KEYSET, "limit=x&cursor=1_nope",
         "\"limit\":\"out_of_range\",\"cursor\":\"invalid\""},
        {STOA_PAGE_KEYSET, "cursor=" UUID_A, "\"cursor\":\"invalid\""},
        {STOA_PAGE_KEYSET, "cursor=_" UUID_A, "\"cursor\":\"invalid\""},
        {STOA_PAGE_KEYSET, "cursor=12a_" UUID_A, "\"cursor\":\"invalid\""},
        {STOA_PAGE_KEYSET, "cursor=1234567890123456789_" UUID_A,
         "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=0", "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=-5", "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=+5", "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=5x", "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=", "\"cursor\":\"invalid\""},
        {STOA_PAGE_SERIAL, "cursor=%FF", "\"cursor\":\"invalid_encoding\""},
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++) {
        stoa_buf_reset(&req.field_errors);
        req.query = cases[i].query;
        stoa_page_t page;
        ck_assert_msg(!stoa_request_page(&req, cases[i].kind, &page), "%s",
                      cases[i].query);
        ck_assert_msg(strcmp(req.field_errors.data, cases[i].fields) == 0,
                      "%s: %s", cases[i].query, req.field_errors.data);
    }
}
END_TEST

START_TEST(page_defaults)
{
    req.query = "";
    stoa_page_t page;
    ck_assert(stoa_request_page(&req, STOA_PAGE_SERIAL, &page));
    ck_assert_int_eq(page.limit, 20);
    ck_assert_str_eq(page.fetch, "21");
    ck_assert_ptr_null(page.cursor_id);
    req.query = "limit=100&cursor=9223372036854775807";
    ck_assert(stoa_request_page(&req, STOA_PAGE_SERIAL, &page));
    ck_assert_int_eq(page.limit, 100);
    /* Its range is left to Postgres, which names the field. */
    ck_assert_str_eq(page.cursor_id, "9223372036854775807");
}
END_TEST

TEST_MAIN_ONE_CASE("http_list", setup, teardown,
                   list_writes_every_kind_and_null,
                   list_keyset_page_has_next_cursor,
                   list_last_page_has_null_cursor,
                   list_serial_page_cursor_is_the_id,
                   page_refuses_bad_parameters, page_defaults)
