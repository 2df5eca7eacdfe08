/* check_analytics_ingest.c - event batches item by item, RFC 3339 times,
 * event names, COPY escaping and CSV fields. */
#include "check_util.h"
#include "stoa/crypto.h"
#include "stoa/db.h"
#include "stoa/ingest.h"

/* 2026-01-31T12:00:00Z */
#define NOW_US (1769860800LL * 1000000)

static const struct {
    const char *in;
    long long us; /* -1: refused */
} time_cases[] = {
    {"2026-01-31T12:00:00Z", 1769860800LL * 1000000},
    {"2026-01-31t12:00:00z", 1769860800LL * 1000000},
    {"2026-01-31T12:00:00.25Z", 1769860800LL * 1000000 + 250000},
    {"2026-01-31T12:00:00.123456789Z", 1769860800LL * 1000000 + 123456},
    {"2026-01-31T14:00:00+02:00", 1769860800LL * 1000000},
    {"2026-01-31T11:30:00-00:30", 1769860800LL * 1000000},
    {"1970-01-01T00:00:00Z", 0},
    {"2024-02-29T00:00:00Z", 1709164800LL * 1000000},
    {"2025-02-29T00:00:00Z", -1},
    {"2026-02-30T00:00:00Z", -1},
    {"2026-13-01T00:00:00Z", -1},
    {"2026-00-10T00:00:00Z", -1},
    {"2026-01-01T24:00:00Z", -1},
    {"2026-01-01T12:60:00Z", -1},
    {"2026-01-01T12:00:61Z", -1},
    {"2026-01-01T12:00:00+24:00", -1},
    {"2026-01-01T12:00:00", -1},
    {"2026-01-01T12:00:00.Z", -1},
    {"2026-01-01T12:00:00.1234567890Z", -1},
    {"2026-01-01 12:00:00Z", -1},
    {"2026-01-01", -1},
    {"0000-01-01T00:00:00Z", -1},
    {"yesterday", -1},
    {"", -1},
};

START_TEST(time_table)
{
    int64_t us = -1;
    bool ok = stoa_ingest_time_parse(time_cases[_i].in, &us);
    if (time_cases[_i].us < 0)
        ck_assert_msg(!ok, "'%s' accepted", time_cases[_i].in);
    else
        ck_assert_msg(ok && us == time_cases[_i].us, "'%s' gave %lld",
                      time_cases[_i].in, (long long)us);
}
END_TEST

START_TEST(names)
{
    ck_assert(stoa_ingest_name_valid("page.view"));
    ck_assert(stoa_ingest_name_valid("$pageview:a-b_c"));
    ck_assert(!stoa_ingest_name_valid(""));
    ck_assert(!stoa_ingest_name_valid(NULL));
    ck_assert(!stoa_ingest_name_valid("with space"));
    ck_assert(!stoa_ingest_name_valid("tab\t"));
    ck_assert(!stoa_ingest_name_valid("caf\xc3\xa9"));
    char name[STOA_INGEST_NAME_MAX + 2];
    memset(name, 'a', sizeof(name));
    name[STOA_INGEST_NAME_MAX] = '\0';
    ck_assert(stoa_ingest_name_valid(name));
    name[STOA_INGEST_NAME_MAX] = 'a';
    name[STOA_INGEST_NAME_MAX + 1] = '\0';
    ck_assert(!stoa_ingest_name_valid(name));
}
END_TEST

static stoa_ingest_verdict_t run(stoa_arena_t *arena, const char *json,
                                 const char *user, stoa_buf_t *rows,
                                 stoa_ingest_batch_t *out)
{
    stoa_json_t *v;
    char err[128];
    ck_assert_int_eq(
        stoa_json_parse(arena, json, strlen(json), 32, &v, err, sizeof(err)),
        STOA_OK);
    stoa_ingest_opts_t o = {NOW_US, NOW_US - 90LL * 86400 * 1000000, user};
    out->rows = rows;
    return stoa_ingest_batch(arena, stoa_json_get(v, "events"), &o, out);
}

START_TEST(batch_verdicts)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t b;
    ck_assert_int_eq(run(arena, "{}", NULL, &rows, &b), STOA_INGEST_NOT_ARRAY);
    ck_assert_int_eq(run(arena, "{\"events\":{}}", NULL, &rows, &b),
                     STOA_INGEST_NOT_ARRAY);
    ck_assert_int_eq(run(arena, "{\"events\":[]}", NULL, &rows, &b),
                     STOA_INGEST_EMPTY);
    stoa_buf_t many;
    stoa_buf_init(&many);
    stoa_buf_puts(&many, "{\"events\":[");
    for (int i = 0; i <= STOA_INGEST_MAX_EVENTS; i++)
        stoa_buf_puts(&many, i ? ",{}" : "{}");
    stoa_buf_puts(&many, "]}");
    ck_assert_int_eq(run(arena, many.data, NULL, &rows, &b),
                     STOA_INGEST_TOO_MANY);
    ck_assert_uint_eq(rows.len, 0);
    stoa_buf_free(&many);
    stoa_buf_free(&rows);
    stoa_arena_destroy(arena);
}
END_TEST

static const struct {
    const char *item;
    const char *error; /* NULL: accepted */
} item_cases[] = {
    {"{\"event\":\"a\"}", NULL},
    {"{\"event\":\"a\",\"properties\":{\"k\":[1,{\"x\":null}]}}", NULL},
    {"{\"event\":\"a\",\"timestamp\":\"2026-01-31T11:00:00Z\"}", NULL},
    {"{\"event\":\"a\",\"timestamp\":\"2026-02-01T10:59:00Z\"}", NULL},
    {"{\"event\":\"a\",\"timestamp\":\"2026-02-01T11:00:01Z\"}",
     "too_far_in_future"},
    {"{\"event\":\"a\",\"timestamp\":\"2025-11-01T00:00:00Z\"}", "too_old"},
    {"{\"event\":\"a\",\"timestamp\":12}", "invalid_timestamp"},
    {"{\"event\":\"a\",\"id\":\"8d6e1c1e-3b51-4c1a-9f1e-1c2b3d4e5f60\"}", NULL},
    {"{\"event\":\"a\",\"id\":\"8d6e1c1e\"}", "invalid_id"},
    {"{\"event\":\"a\",\"id\":7}", "invalid_id"},
    {"{\"event\":\"a b\"}", "invalid_event"},
    {"{\"event\":7}", "invalid_event"},
    {"{}", "invalid_event"},
    {"[]", "not_an_object"},
    {"null", "not_an_object"},
    {"{\"event\":\"a\",\"x\":1}", "unknown_field"},
    {"{\"event\":\"a\",\"properties\":[]}", "invalid_properties"},
    {"{\"event\":\"a\",\"properties\":\"s\"}", "invalid_properties"},
    {"{\"event\":\"a\",\"distinct_id\":\"\"}", "invalid_distinct_id"},
    {"{\"event\":\"a\",\"distinct_id\":null}", "invalid_distinct_id"},
};

START_TEST(item_table)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows, json;
    stoa_buf_init(&rows);
    stoa_buf_init(&json);
    stoa_buf_printf(&json, "{\"events\":[{\"event\":\"first\"},%s]}",
                    item_cases[_i].item);
    stoa_ingest_batch_t b;
    ck_assert_int_eq(run(arena, json.data, NULL, &rows, &b), STOA_INGEST_OK);
    if (item_cases[_i].error) {
        ck_assert_uint_eq(b.accepted, 1);
        ck_assert_uint_eq(b.nrejected, 1);
        ck_assert_uint_eq(b.rejected[0].index, 1);
        ck_assert_str_eq(b.rejected[0].error, item_cases[_i].error);
    } else {
        ck_assert_msg(b.accepted == 2 && b.nrejected == 0, "%s: %s",
                      item_cases[_i].item,
                      b.nrejected ? b.rejected[0].error : "");
    }
    stoa_buf_free(&rows);
    stoa_buf_free(&json);
    stoa_arena_destroy(arena);
}
END_TEST

START_TEST(size_limit)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows, json;
    stoa_buf_init(&rows);
    stoa_buf_init(&json);
    /* properties {"p":"..."}: 8 bytes around the string, name "a". */
    size_t fits = STOA_INGEST_MAX_EVENT_BYTES - 9;
    for (int over = 0; over <= 1; over++) {
        stoa_buf_reset(&json);
        stoa_buf_puts(&json,
                      "{\"events\":[{\"event\":\"a\",\"properties\":{\"p\":\"");
        for (size_t i = 0; i < fits + (size_t)over; i++)
            stoa_buf_append(&json, "x", 1);
        stoa_buf_puts(&json, "\"}}]}");
        stoa_ingest_batch_t b;
        stoa_buf_reset(&rows);
        ck_assert_int_eq(run(arena, json.data, NULL, &rows, &b),
                         STOA_INGEST_OK);
        ck_assert_uint_eq(b.accepted, over ? 0 : 1);
        if (over)
            ck_assert_str_eq(b.rejected[0].error, "too_large");
    }
    stoa_buf_free(&rows);
    stoa_buf_free(&json);
    stoa_arena_destroy(arena);
}
END_TEST

START_TEST(copy_rows)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t b;
    const char *user = "11111111-2222-4333-8444-555555555555";
    ck_assert_int_eq(
        run(arena,
            "{\"events\":[{\"id\":\"8d6e1c1e-3b51-4c1a-9f1e-1c2b3d4e5f60\","
            "\"event\":\"e\",\"timestamp\":\"2026-01-31T10:00:00.5+01:00\","
            "\"distinct_id\":\"t\\tb\\\\n\",\"properties\":{\"k\":\"a\\nb\"}}]}",
            user, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_str_eq(rows.data, "8d6e1c1e-3b51-4c1a-9f1e-1c2b3d4e5f60\t"
                                "2026-01-31 09:00:00.500000+00\te\tt\\tb\\\\n\t"
                                "11111111-2222-4333-8444-555555555555\t"
                                "{\"k\":\"a\\\\nb\"}\n");
    ck_assert(b.row[0].id_given);
    ck_assert_str_eq(b.row[0].ts, "2026-01-31 09:00:00.500000+00");
    ck_assert_uint_eq(b.row[0].offset, 0);
    ck_assert_uint_eq(b.row[0].len, rows.len);
    /* No id: a generated one, not checked against stored ids; distinct_id
     * defaults to the user. */
    stoa_buf_reset(&rows);
    ck_assert_int_eq(
        run(arena, "{\"events\":[{\"event\":\"e\"}]}", user, &rows, &b),
        STOA_INGEST_OK);
    char id[37];
    memcpy(id, rows.data, 36);
    id[36] = '\0';
    ck_assert(stoa_uuid_valid(id));
    ck_assert_ptr_nonnull(strstr(rows.data, "\te\t11111111-2222-4333-8444-"
                                            "555555555555\t11111111"));
    ck_assert(!b.row[0].id_given);
    ck_assert_str_eq(b.row[0].id, id);
    /* Without a user: both NULL. */
    stoa_buf_reset(&rows);
    ck_assert_int_eq(
        run(arena, "{\"events\":[{\"event\":\"e\"}]}", NULL, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_ptr_nonnull(strstr(rows.data, "\te\t\\N\t\\N\t{}\n"));
    stoa_buf_free(&rows);
    stoa_arena_destroy(arena);
}
END_TEST

/* Properties go to the row as the client wrote them (whitespace and
 * escapes kept, COPY-escaped); a text with a \u escape is written again
 * from the tree, its characters decoded, so jsonb never sees one. */
START_TEST(properties_as_sent)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t b;
    ck_assert_int_eq(
        run(arena,
            "{\"events\":[{\"event\":\"e\",\"properties\":{ \"a\" : "
            "[1, {\"b\":\"}\\\"\\t\"}] }},"
            "{\"event\":\"e\",\"properties\":{\"k\":\"\\u00e9\\\\u\"}},"
            "{\"event\":\"e\",\"properties\":{\"k\":\"\\\\u\"}}]}",
            NULL, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_uint_eq(b.accepted, 3);
    const char *first = rows.data + b.row[0].offset;
    ck_assert_ptr_nonnull(
        strstr(first, "\t{ \"a\" : [1, {\"b\":\"}\\\\\"\\\\t\"}] }\n"));
    const char *second = rows.data + b.row[1].offset;
    ck_assert_ptr_nonnull(strstr(second, "\t{\"k\":\"\xc3\xa9\\\\\\\\u\"}\n"));
    /* An escaped backslash before a u is a false alarm: written again,
     * to the same value. */
    const char *third = rows.data + b.row[2].offset;
    ck_assert_ptr_nonnull(strstr(third, "\t{\"k\":\"\\\\\\\\u\"}\n"));
    /* A number Postgres' numeric cannot hold fails its item, not the
     * batch's COPY. */
    stoa_buf_reset(&rows);
    ck_assert_int_eq(
        run(arena,
            "{\"events\":[{\"event\":\"e\",\"properties\":{\"x\":1e1000000}},"
            "{\"event\":\"e\",\"properties\":{\"x\":[1e-20000]}},"
            "{\"event\":\"e\",\"properties\":{\"x\":1e1000}}]}",
            NULL, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_uint_eq(b.accepted, 1);
    ck_assert_uint_eq(b.nrejected, 2);
    ck_assert_uint_eq(b.rejected[0].index, 0);
    ck_assert_str_eq(b.rejected[0].error, "invalid_properties");
    ck_assert_uint_eq(b.rejected[1].index, 1);
    ck_assert_str_eq(b.rejected[1].error, "invalid_properties");
    stoa_buf_free(&rows);
    stoa_arena_destroy(arena);
}
END_TEST

/* The pool matches the ids it claimed against Postgres' answer, which
 * prints uuids in lower case: an id sent in upper case is lowered, and
 * each row's record locates its bytes (a rejected item between two good
 * ones leaves no gap). */
START_TEST(row_records)
{
    stoa_arena_t *arena = stoa_arena_create(0);
    stoa_buf_t rows;
    stoa_buf_init(&rows);
    stoa_ingest_batch_t b;
    ck_assert_int_eq(
        run(arena,
            "{\"events\":[{\"id\":\"8D6E1C1E-3B51-4C1A-9F1E-1C2B3D4E5F60\","
            "\"event\":\"a\"},{\"event\":\"bad name\"},{\"event\":\"b\","
            "\"timestamp\":\"1969-12-31T23:59:59.75Z\"}]}",
            NULL, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_uint_eq(b.accepted, 1);
    /* 1969 is past the retention of the fixture: too_old, one rejection
     * more; the first row stands alone. */
    ck_assert_uint_eq(b.nrejected, 2);
    ck_assert_str_eq(b.row[0].id, "8d6e1c1e-3b51-4c1a-9f1e-1c2b3d4e5f60");
    ck_assert(strncmp(rows.data, b.row[0].id, 36) == 0);
    ck_assert_uint_eq(b.row[0].len, rows.len);
    stoa_buf_reset(&rows);
    ck_assert_int_eq(
        run(arena,
            "{\"events\":[{\"event\":\"a\"},{\"event\":7},"
            "{\"event\":\"b\",\"id\":\"00000000-0000-4000-8000-00000000000A\"}]}",
            NULL, &rows, &b),
        STOA_INGEST_OK);
    ck_assert_uint_eq(b.accepted, 2);
    ck_assert_uint_eq(b.row[1].offset, b.row[0].len);
    ck_assert_uint_eq(b.row[0].len + b.row[1].len, rows.len);
    ck_assert(rows.data[b.row[1].offset - 1] == '\n');
    ck_assert_str_eq(b.row[1].id, "00000000-0000-4000-8000-00000000000a");
    ck_assert(strncmp(rows.data + b.row[1].offset, b.row[1].id, 36) == 0);
    ck_assert(b.row[1].id_given && !b.row[0].id_given);
    stoa_buf_free(&rows);
    stoa_arena_destroy(arena);
}
END_TEST

static const struct {
    const char *in;
    const char *out;
} csv_cases[] = {
    {"plain", "plain"},   {"", ""},
    {"a,b", "\"a,b\""},   {"say \"hi\"", "\"say \"\"hi\"\"\""},
    {"\"", "\"\"\"\""},   {"line\nbreak", "\"line\nbreak\""},
    {"cr\r", "\"cr\r\""}, {"{\"k\":1}", "\"{\"\"k\"\":1}\""},
};

START_TEST(csv_table)
{
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_ingest_csv_field(&out, csv_cases[_i].in);
    ck_assert_str_eq(out.len ? out.data : "", csv_cases[_i].out);
    stoa_buf_free(&out);
}
END_TEST

START_TEST(csv_null_is_empty)
{
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_ingest_csv_field(&out, NULL);
    ck_assert_uint_eq(out.len, 0);
    stoa_buf_free(&out);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("analytics_ingest");
    TEST_CASE_OF(s, "ingest", NULL, NULL, LOOP(time_table, time_cases),
                 ONCE(names), ONCE(batch_verdicts),
                 LOOP(item_table, item_cases), ONCE(size_limit),
                 ONCE(copy_rows), ONCE(properties_as_sent), ONCE(row_records),
                 LOOP(csv_table, csv_cases), ONCE(csv_null_is_empty));
    return s;
}

TEST_MAIN(ingest_suite)
