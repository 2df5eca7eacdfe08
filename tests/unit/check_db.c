/* check_db.c - the start-up check of statement tables: the highest $n of
 * a text against its declared parameters, holes left by a missing
 * designated entry, names declared twice, and that a program whose table
 * does not add up does not start. No Postgres needed. */
#include "check_util.h"
#include "stoa/audit.h"
#include "stoa/ctx.h"
#include "stoa/db.h"
#include "stoa/idempotency.h"
#include "stoa/outbox.h"
#include "stoa/revoke.h"

START_TEST(max_param_counts_the_highest)
{
    static const struct {
        const char *sql;
        int max;
    } cases[] = {
        {"SELECT 1", 0},
        {"SELECT $1", 1},
        {"SELECT $2, $1", 2},
        {"UPDATE t SET a = $10 WHERE id = $9::uuid", 10},
        {"SELECT $1 WHERE x = '$7'", 1},          /* in a literal */
        {"SELECT \"$5\" FROM t WHERE a = $1", 1}, /* in an identifier */
        {"SELECT $1 -- $4\nFROM t", 1},           /* in a comment */
        {"SELECT $1 /* $4 */ FROM t", 1},
        {"SELECT a$3 FROM t", 0}, /* part of a name */
        {"SELECT $$text$$", 0},   /* dollar quoting has no digit */
        {STOA_DB_TS("created_at") ", $2", 2},
        {"", 0},
    };
    for (size_t i = 0; i < STOA_ARRAY_LEN(cases); i++)
        ck_assert_msg(stoa_db_sql_max_param(cases[i].sql) == cases[i].max,
                      "%s: %d, not %d", cases[i].sql,
                      stoa_db_sql_max_param(cases[i].sql), cases[i].max);
    ck_assert_int_eq(stoa_db_sql_max_param(NULL), 0);
}
END_TEST

static const stoa_db_statement_t good[] = {
    {"one", "SELECT $1", 1, false},
    {"none", "SELECT 1", 0, false},
    {"three", "UPDATE t SET a = $2, b = $3 WHERE id = $1", 3, false},
};

START_TEST(check_accepts_matching_tables)
{
    char err[256] = "";
    const stoa_db_table_t tables[] = {{good, STOA_ARRAY_LEN(good)}, {NULL, 0}};
    ck_assert_int_eq(stoa_db_check_tables(tables, 2, err, sizeof(err)),
                     STOA_OK);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(check_refuses_too_few_declared)
{
    static const stoa_db_statement_t bad[] = {
        {"fine", "SELECT $1", 1, false},
        {"user_by_id", "SELECT * FROM u WHERE id = $1 AND s = $2", 1, false},
    };
    const stoa_db_table_t tables[] = {{good, STOA_ARRAY_LEN(good)},
                                      {bad, STOA_ARRAY_LEN(bad)}};
    char err[256];
    ck_assert_int_eq(stoa_db_check_tables(tables, 2, err, sizeof(err)),
                     STOA_ERROR);
    ck_assert_str_eq(err, "statement user_by_id: its text uses $2 but it "
                          "declares 1 parameter");
}
END_TEST

START_TEST(check_refuses_too_many_declared)
{
    static const stoa_db_statement_t bad[] = {{"wide", "SELECT $1", 3, false}};
    const stoa_db_table_t table = {bad, 1};
    char err[256];
    ck_assert_int_eq(stoa_db_check_tables(&table, 1, err, sizeof(err)),
                     STOA_ERROR);
    ck_assert_str_eq(err, "statement wide: its text uses $1 but it declares "
                          "3 parameters");
}
END_TEST

START_TEST(check_refuses_a_hole)
{
    enum { FIRST, MISSING, LAST, COUNT };
    static const stoa_db_statement_t holed[COUNT] = {
        [FIRST] = {"first", "SELECT 1", 0, false},
        [LAST] = {"last", "SELECT 1", 0, false},
    };
    const stoa_db_table_t table = {holed, COUNT};
    char err[256];
    ck_assert_int_eq(stoa_db_check_tables(&table, 1, err, sizeof(err)),
                     STOA_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "statement 1 of table 0 (after first)"));
}
END_TEST

START_TEST(check_refuses_a_name_twice)
{
    static const stoa_db_statement_t again[] = {
        {"three", "SELECT 1", 0, false}};
    const stoa_db_table_t tables[] = {{good, STOA_ARRAY_LEN(good)}, {again, 1}};
    char err[256];
    ck_assert_int_eq(stoa_db_check_tables(tables, 2, err, sizeof(err)),
                     STOA_ERROR);
    ck_assert_str_eq(err, "statement three is declared twice");
}
END_TEST

/* The library's own tables, which every program prepares. */
START_TEST(library_tables_pass)
{
    const stoa_db_table_t tables[] = {
        {stoa_outbox_statements, stoa_outbox_statements_len},
        {stoa_audit_statements, stoa_audit_statements_len},
        {stoa_revoke_statements, stoa_revoke_statements_len},
        {stoa_idempotency_statements, stoa_idempotency_statements_len},
    };
    char err[256] = "";
    ck_assert_msg(stoa_db_check_tables(tables, STOA_ARRAY_LEN(tables), err,
                                       sizeof(err)) == STOA_OK,
                  "%s", err);
}
END_TEST

/* A program whose table does not add up stops at start-up with the
 * statement named, before any connection is made. */
START_TEST(ctx_open_stops_on_a_mismatch)
{
    static const stoa_db_statement_t bad[] = {
        {"program_query", "SELECT $1, $2", 1, false}};
    stoa_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    char err[512] = "";
    ck_assert_int_eq(stoa_ctx_open(&ctx, "check-db", NULL, bad, 1, 1, 1,
                                   STOA_CTX_LOG_STDERR, err, sizeof(err)),
                     STOA_ERROR);
    ck_assert_msg(strstr(err, "statement program_query: its text uses $2 "
                              "but it declares 1 parameter") != NULL,
                  "%s", err);
    ck_assert_ptr_null(ctx.db_pool);
}
END_TEST

START_TEST(ctx_open_accepts_a_matching_table)
{
    stoa_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    char err[512] = "";
    ck_assert_msg(stoa_ctx_open(&ctx, "check-db", NULL, good,
                                STOA_ARRAY_LEN(good), 1, 1, STOA_CTX_LOG_STDERR,
                                err, sizeof(err)) == STOA_OK,
                  "%s", err);
    ck_assert_uint_eq(ctx.ntables, STOA_CTX_TABLES);
    stoa_ctx_close(&ctx);
}
END_TEST

TEST_MAIN_ONE_CASE("db", NULL, NULL, max_param_counts_the_highest,
                   check_accepts_matching_tables,
                   check_refuses_too_few_declared,
                   check_refuses_too_many_declared, check_refuses_a_hole,
                   check_refuses_a_name_twice, library_tables_pass,
                   ctx_open_stops_on_a_mismatch,
                   ctx_open_accepts_a_matching_table)
