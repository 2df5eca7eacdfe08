/* db.h - one Postgres connection per handle, prepared statements.
 *
 * Statements are declared once in a table and prepared lazily on each
 * (re)connection. Every query is parameterised. When the connection is
 * broken the call returns STOA_AGAIN (the caller answers 503) and the next
 * call tries to reconnect, at most once per STOA_DB_RETRY_MS, so an outage
 * costs a failed request, never a crash or a pile of stalled workers.
 * Results are arena-owned (PQclear runs at arena reset).
 *
 * A server restart must not cost the first request on each pooled
 * connection: before a statement outside a transaction, an idle connection
 * is checked without waiting (its socket holds an end of file once the
 * server has gone) and replaced when dead. A statement whose connection
 * breaks anyway runs once more on a new connection when it cannot have
 * taken effect: BEGIN, or a read (a statement whose text starts with
 * SELECT, see stoa_db_sql_is_read) outside a transaction. Anything else
 * whose fate is unknown (a lone write, COMMIT, a statement inside a
 * transaction) answers STOA_AGAIN and is never replayed here. */
#ifndef STOA_DB_H
#define STOA_DB_H

#include "stoa/arena.h"
#include "stoa/buf.h"
#include "stoa/core.h"

#define STOA_DB_RETRY_MS 200

typedef struct stoa_db_s stoa_db_t;
typedef struct stoa_db_result_s stoa_db_result_t;

typedef struct {
    const char *name; /* unique, the prepared statement's name and in logs */
    const char *sql;
    int nparams; /* the highest $n of sql (checked at start-up) */
    /* Planned anew at every execution (sent unnamed) instead of prepared
     * once per connection. For statements on a table that is empty when
     * the connection first runs them and grows fast (the jobs outbox):
     * Postgres keeps a generic plan made against the empty table, a
     * sequential scan, for as long as the connection lives or until the
     * next ANALYZE, however large the table grows meanwhile. */
    bool plan_each_time;
} stoa_db_statement_t;

/* A part's statements (the library's audit, outbox, revoke and
 * idempotency, a program's own): list[id] for each id of the part's enum,
 * declared next to the SQL with designated initialisers
 *     enum { AUTH_SQL_USER_BY_ID, ..., AUTH_SQL_COUNT };
 *     const stoa_db_statement_t auth_statements[AUTH_SQL_COUNT] = {
 *         [AUTH_SQL_USER_BY_ID] = {"user_by_id", "SELECT ...", 1}, ...};
 * and an enum of the columns each reading statement returns, so that
 * results are read by name. A statement is passed by its address in its
 * table (each part has a macro for &table[id]); no name is looked up. */
typedef struct {
    const stoa_db_statement_t *list;
    size_t len;
} stoa_db_table_t;

/* A timestamp column as the API shows it: UTC, second precision,
 * "2024-01-31T12:00:00Z". col is SQL text (a column or expression). */
#define STOA_DB_TS(col)                                                        \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

/* The highest $n that sql uses outside quoted text and comments (0 when
 * none). */
int stoa_db_sql_max_param(const char *sql);

/* The start-up check of the statement tables every connection prepares:
 * every slot is filled (an id whose designated initialiser is missing
 * leaves a hole), names are unique, and each statement's nparams is the
 * highest $n of its text (a mismatch would only fail at its first use).
 * STOA_OK, or STOA_ERROR with what is wrong ("statement user_by_id: its
 * text uses $2 but it declares 1 parameter") in err. */
STOA_MUSTCHECK int stoa_db_check_tables(const stoa_db_table_t *tables,
                                        size_t ntables, char *err,
                                        size_t errlen);

/* tables[i].list is borrowed and must outlive the handle (static tables);
 * the array itself is copied. Does not connect. Caller frees with
 * stoa_db_free(). */
stoa_db_t *stoa_db_new(const char *conninfo, const stoa_db_table_t *tables,
                       size_t ntables, long statement_timeout_ms,
                       long connect_timeout_s);
void stoa_db_free(stoa_db_t *db);

/* Whether a statement's text is a read that may run twice: it starts with
 * the word SELECT (a data-modifying statement starts with INSERT, UPDATE,
 * DELETE or WITH). A statement table must not hide a write in a SELECT (a
 * function with side effects); none does. sql may be NULL (false). */
bool stoa_db_sql_is_read(const char *sql);

/* Whether a statement's text may queue outbox jobs: it inserts into
 * jobs.outbox, or updates auth.sessions (a trigger queues the live
 * channel's revocation events). When such a text (a table's statement, an
 * ad-hoc query or a script) succeeded, the handle wakes the jobs workers
 * itself once its transaction commits, or at once outside one (db.c); the
 * outbox trigger does not, on stoa's connections. sql may be NULL
 * (false). */
bool stoa_db_sql_queues_jobs(const char *sql);

/* Makes the wake-up above a call of fn in this process instead of a
 * NOTIFY: for the jobs worker, whose own threads run what it queues (a
 * NOTIFY would come back to its own listener). Set once at start-up,
 * before any thread uses a handle; NULL restores the NOTIFY. */
void stoa_db_wake_jobs_with(void (*fn)(void));

/* Connects if needed, replacing an idle connection whose server has gone.
 * STOA_OK or STOA_AGAIN. */
STOA_MUSTCHECK int stoa_db_connect(stoa_db_t *db);

/* Runs a declared statement: st is the address of an entry of one of the
 * handle's tables (anything else is a bug: assert). params has
 * st->nparams entries and may contain NULL (SQL NULL).
 * *out (may be NULL if unwanted) is arena-owned. Returns STOA_OK,
 * STOA_AGAIN (connection lost, or Postgres could not do it now: a
 * statement timeout, a deadlock, a serialization failure, no resources),
 * or STOA_ERROR (query failed; see stoa_db_sqlstate()). */
STOA_MUSTCHECK int stoa_db_exec(stoa_db_t *db, stoa_arena_t *arena,
                                const stoa_db_statement_t *st,
                                const char *const *params,
                                stoa_db_result_t **out);

/* stoa_db_exec for a statement fed from a request: fields[i] names the
 * request field parameter i was read from (NULL: not from the client), so
 * that a data exception about it is reported by name (see below). fields
 * is borrowed until stoa_db_clear_data_exception() (a static table). */
STOA_MUSTCHECK int stoa_db_exec_fields(stoa_db_t *db, stoa_arena_t *arena,
                                       const stoa_db_statement_t *st,
                                       const char *const *params,
                                       const char *const *fields,
                                       stoa_db_result_t **out);

/* An ad hoc parameterised query (PQexecParams), for tools and migrations
 * bookkeeping; same returns as stoa_db_exec. */
STOA_MUSTCHECK int stoa_db_query(stoa_db_t *db, stoa_arena_t *arena,
                                 const char *sql, int nparams,
                                 const char *const *params,
                                 stoa_db_result_t **out);

/* Runs a trusted multi-statement script (migrations only: PQexec is the
 * only libpq call that accepts several statements). */
STOA_MUSTCHECK int stoa_db_script(stoa_db_t *db, const char *sql);

/* Bulk load through libpq's copy protocol: runs `sql`, a trusted
 * constant "COPY <table> (<columns>) FROM STDIN" of our own, and sends
 * len bytes of rows in COPY's text format (tab-separated, \N for NULL,
 * backslash escapes; see stoa_db_copy_escape). Usually inside a
 * transaction. *rows (may be NULL) gets the rows Postgres took. Returns as
 * stoa_db_exec; a row Postgres refuses fails the whole copy (STOA_ERROR,
 * a data exception marked as for statements). Never retried. */
STOA_MUSTCHECK int stoa_db_copy_in(stoa_db_t *db, const char *sql,
                                   const char *data, size_t len, long *rows);
/* The same inside an open transaction, which it then commits: the COMMIT
 * goes in the copy's own query and is answered with it, a round trip less
 * than stoa_db_copy_in then stoa_db_commit. STOA_OK: copied and
 * committed. Else the transaction is left to stoa_db_rollback (a failed
 * copy skips the COMMIT); a connection lost after the rows were sent
 * leaves the commit's fate unknown (STOA_AGAIN), as for stoa_db_commit. */
STOA_MUSTCHECK int stoa_db_copy_in_commit(stoa_db_t *db, const char *sql,
                                          const char *data, size_t len,
                                          long *rows);

/* Appends len bytes of s to out as one field of COPY's text format:
 * backslash, tab, newline and carriage return escaped. */
void stoa_db_copy_escape(stoa_buf_t *out, const char *s, size_t len);

/* BEGIN and st in one round trip: a transaction whose first statement is
 * st, as stoa_db_begin then stoa_db_exec, open on STOA_OK (and after a
 * failed st: roll it back). The connection must be outside a transaction.
 * lengths and formats are libpq's: formats[i] 1 sends params[i] as
 * lengths[i] bytes of Postgres' binary format for its type, 0 as text;
 * both NULL: every parameter is text. */
STOA_MUSTCHECK int stoa_db_begin_exec(stoa_db_t *db, stoa_arena_t *arena,
                                      const stoa_db_statement_t *st,
                                      const char *const *params,
                                      const int *lengths, const int *formats,
                                      stoa_db_result_t **out);
STOA_MUSTCHECK int stoa_db_begin(stoa_db_t *db);
STOA_MUSTCHECK int stoa_db_commit(stoa_db_t *db);
/* Safe to call in any state; never fails the caller. */
void stoa_db_rollback(stoa_db_t *db);

/* SELECT 1 round trip. */
STOA_MUSTCHECK int stoa_db_ping(stoa_db_t *db);

int stoa_db_rows(const stoa_db_result_t *res);
/* Borrowed until arena reset; NULL for SQL NULL. */
const char *stoa_db_value(const stoa_db_result_t *res, int row, int col);
long stoa_db_affected(const stoa_db_result_t *res);

/* A result made in memory, as a query would return it: nrows rows of
 * ncols text values, row by row (NULL: SQL NULL), copied. For the unit
 * tests of code that reads results. Arena-owned. */
stoa_db_result_t *stoa_db_result_literal(stoa_arena_t *arena, int nrows,
                                         int ncols, const char *const *values);

/* Data exceptions (SQLSTATE class 22): Postgres could not take a
 * parameter's text as its type (22P02 invalid text, 22007/22008 an
 * impossible date or time, 22003 a number out of range, 22021 bytes that
 * are not UTF-8, 22001 a string too long...). Such a failure comes from
 * what a client sent, so the pools answer it 400 invalid_request, never
 * 500 (stoa_app_dispatch does, for any handler that passes the failure
 * up; the transaction is rolled back). The mark stays until cleared, even
 * across later statements (one that fails in the aborted transaction, a
 * rollback), so the cause is not lost.
 *   stoa_db_data_exception        true once one was seen;
 *   stoa_db_data_exception_field  the field it was about, when the
 *                                 statement ran by stoa_db_exec_fields and
 *                                 Postgres' report points at one parameter;
 *                                 else NULL (borrowed);
 *   stoa_db_clear_data_exception  forgets both (at each request's start). */
bool stoa_db_data_exception(const stoa_db_t *db);
const char *stoa_db_data_exception_field(const stoa_db_t *db);
void stoa_db_clear_data_exception(stoa_db_t *db);

/* SQLSTATE of the last failed statement ("" when none), and its message. */
const char *stoa_db_sqlstate(const stoa_db_t *db);
const char *stoa_db_last_error(const stoa_db_t *db);

/* LISTEN support for the jobs worker: the socket to poll and a drain
 * returning how many notifications arrived (STOA_AGAIN when lost). */
int stoa_db_socket(stoa_db_t *db);
STOA_MUSTCHECK int stoa_db_listen(stoa_db_t *db, const char *channel);
STOA_MUSTCHECK int stoa_db_drain_notifications(stoa_db_t *db, int *count);

#endif
