/* db.c - one libpq connection per handle: lazy prepare, reconnect with
 * a retry gap, a check of an idle socket before use and one retry of a
 * statement that cannot have taken effect, results owned by the request
 * arena. */
#include "stoa/db.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stoa/crypto.h"
#include "stoa/format.h"
#include "stoa/log.h"
#include "stoa/metrics.h"

struct stoa_db_s {
    PGconn *conn;
    char *conninfo;
    stoa_db_table_t *tables;
    size_t ntables;
    size_t *first;      /* per table: the slot of its first statement */
    size_t nstatements; /* over all tables */
    bool *prepared;     /* per statement, for the current connection */
    bool *reads;        /* per statement: its text is a lone SELECT */
    bool *wakes;        /* per statement: it may queue outbox jobs */
    /* The open transaction queued jobs: wake the workers after COMMIT. */
    bool wake_pending;
    long statement_timeout_ms;
    long connect_timeout_s;
    uint64_t last_attempt_us;
    char sqlstate[6];
    char error[256];
    /* Sticky until stoa_db_clear_data_exception(): a data exception seen
     * during the request, and the field it was about (borrowed). */
    bool data_exception;
    const char *data_exception_field;
};

struct stoa_db_result_s {
    PGresult *res;
};

stoa_db_t *stoa_db_new(const char *conninfo, const stoa_db_table_t *tables,
                       size_t ntables, long statement_timeout_ms,
                       long connect_timeout_s)
{
    stoa_db_t *db = stoa_xcalloc(1, sizeof(*db));
    db->conninfo = stoa_xstrdup(conninfo);
    db->tables = stoa_xcalloc(ntables ? ntables : 1, sizeof(*db->tables));
    db->first = stoa_xcalloc(ntables ? ntables : 1, sizeof(*db->first));
    db->ntables = ntables;
    for (size_t t = 0; t < ntables; t++) {
        db->tables[t] = tables[t];
        db->first[t] = db->nstatements;
        db->nstatements += tables[t].len;
    }
    size_t n = db->nstatements ? db->nstatements : 1;
    db->prepared = stoa_xcalloc(n, sizeof(bool));
    db->reads = stoa_xcalloc(n, sizeof(bool));
    db->wakes = stoa_xcalloc(n, sizeof(bool));
    for (size_t t = 0; t < ntables; t++)
        for (size_t i = 0; i < tables[t].len; i++) {
            db->reads[db->first[t] + i] =
                stoa_db_sql_is_read(tables[t].list[i].sql);
            db->wakes[db->first[t] + i] =
                stoa_db_sql_queues_jobs(tables[t].list[i].sql);
        }
    db->statement_timeout_ms = statement_timeout_ms;
    db->connect_timeout_s = connect_timeout_s;
    return db;
}

int stoa_db_sql_max_param(const char *sql)
{
    int max = 0;
    for (const char *p = sql; p && *p;) {
        /* Quoted text and identifiers, and comments, may hold a '$' that
         * is no parameter (a dollar in a literal); '' inside a literal
         * reads as two literals, which changes nothing here. */
        if (*p == '\'' || *p == '"') {
            const char *end = strchr(p + 1, *p);
            p = end ? end + 1 : p + strlen(p);
        } else if (p[0] == '-' && p[1] == '-') {
            const char *end = strchr(p, '\n');
            p = end ? end + 1 : p + strlen(p);
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
        } else if (*p == '$' && isdigit((unsigned char)p[1]) &&
                   (p == sql ||
                    !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))) {
            int n = 0;
            for (p++; isdigit((unsigned char)*p) && n < 100000; p++)
                n = n * 10 + (*p - '0');
            if (n > max)
                max = n;
        } else {
            p++;
        }
    }
    return max;
}

int stoa_db_check_tables(const stoa_db_table_t *tables, size_t ntables,
                         char *err, size_t errlen)
{
    for (size_t t = 0; t < ntables; t++) {
        for (size_t i = 0; i < tables[t].len; i++) {
            const stoa_db_statement_t *st = &tables[t].list[i];
            if (!st->name || !st->sql) {
                const char *before = i ? tables[t].list[i - 1].name : NULL;
                snprintf(err, errlen,
                         "statement %zu of table %zu (after %s) "
                         "has no text: its id has no entry in the table",
                         i, t, before ? before : "none");
                return STOA_ERROR;
            }
            int used = stoa_db_sql_max_param(st->sql);
            if (used != st->nparams) {
                snprintf(err, errlen,
                         "statement %s: its text uses $%d but "
                         "it declares %d parameter%s",
                         st->name, used, st->nparams,
                         st->nparams == 1 ? "" : "s");
                return STOA_ERROR;
            }
            for (size_t u = 0; u <= t; u++)
                for (size_t j = 0; j < (u == t ? i : tables[u].len); j++)
                    if (tables[u].list[j].name &&
                        strcmp(tables[u].list[j].name, st->name) == 0) {
                        snprintf(err, errlen,
                                 "statement %s is declared "
                                 "twice",
                                 st->name);
                        return STOA_ERROR;
                    }
        }
    }
    return STOA_OK;
}

static void drop(stoa_db_t *db)
{
    if (db->conn)
        PQfinish(db->conn);
    db->conn = NULL;
    db->wake_pending = false;
    memset(db->prepared, 0,
           (db->nstatements ? db->nstatements : 1) * sizeof(bool));
}

void stoa_db_free(stoa_db_t *db)
{
    if (!db)
        return;
    drop(db);
    stoa_wipe(db->conninfo, strlen(db->conninfo));
    free(db->conninfo);
    free(db->prepared);
    free(db->reads);
    free(db->wakes);
    free(db->tables);
    free(db->first);
    free(db);
}

static void set_error(stoa_db_t *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(db->sqlstate, sizeof(db->sqlstate), "%s", state ? state : "");
    const char *msg =
        res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg && db->conn)
        msg = PQerrorMessage(db->conn);
    snprintf(db->error, sizeof(db->error), "%s", msg ? msg : "unknown error");
    char *nl = strchr(db->error, '\n');
    if (nl)
        *nl = '\0';
}

bool stoa_db_sql_is_read(const char *sql)
{
    while (sql && isspace((unsigned char)*sql))
        sql++;
    return sql && strncasecmp(sql, "SELECT", 6) == 0 &&
           (sql[6] == '\0' || isspace((unsigned char)sql[6]));
}

/* Whether an idle connection (no statement in flight, no transaction)
 * still has a server. libpq reports CONNECTION_OK until it next reads, so a
 * connection whose server restarted looks healthy while its socket holds
 * the server's goodbye and an end of file: poll without waiting, and let
 * libpq read whatever is there. Anything but a notification (LISTEN) on an
 * idle connection is such a goodbye; libpq keeps notifications for
 * PQnotifies. The socket is non-blocking (libpq sets it so), so nothing
 * here waits. */
static bool idle_connection_alive(PGconn *conn)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return false;
    for (int reads = 0; reads < 8; reads++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 0);
        if (n < 0)
            return errno == EINTR;
        if (n == 0)
            return true;
        if (p.revents & (POLLERR | POLLNVAL))
            return false;
        if (PQconsumeInput(conn) != 1 || PQstatus(conn) != CONNECTION_OK)
            return false;
        if (p.revents & POLLHUP)
            return false;
    }
    /* Still readable after eight reads: a stream of notifications, not a
     * closed socket (which reads as end of file at once). */
    return PQstatus(conn) == CONNECTION_OK;
}

int stoa_db_connect(stoa_db_t *db)
{
    /* NULL: the pool had no connection to give (db.h). */
    if (!db)
        return STOA_AGAIN;
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK) {
        /* Inside a transaction the connection was used a moment ago by
         * this same taker; a break there shows on the statement itself. */
        if (PQtransactionStatus(db->conn) != PQTRANS_IDLE ||
            idle_connection_alive(db->conn))
            return STOA_OK;
        stoa_log(STOA_LOG_WARN, "postgres connection found closed while "
                                "idle; reconnecting");
        drop(db);
    }
    uint64_t now = stoa_now_us();
    /* During an outage every request would otherwise pay a connect
     * timeout; answer 503 at once until the retry gap has passed. */
    if (db->last_attempt_us &&
        now - db->last_attempt_us < (uint64_t)STOA_DB_RETRY_MS * 1000)
        return STOA_AGAIN;
    db->last_attempt_us = now;
    drop(db);

    char timeout[32], options[128];
    snprintf(timeout, sizeof(timeout), "%ld", db->connect_timeout_s);
    snprintf(
        options, sizeof(options),
        "-c statement_timeout=%ld -c TimeZone=UTC -c client_min_messages=warning "
        "-c stoa.jobs_wake=client",
        db->statement_timeout_ms);
    const char *keys[] = {"dbname", "connect_timeout", "options",
                          "application_name", NULL};
    const char *values[] = {db->conninfo, timeout, options, "stoa", NULL};
    /* expand_dbname: the first dbname may be a full conninfo or URI; the
     * later keys only fill in what it does not set. */
    db->conn = PQconnectdbParams(keys, values, 1);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        set_error(db, NULL);
        stoa_log(STOA_LOG_ERR, "postgres connect failed: %s", db->error);
        stoa_metrics_count(STOA_METRIC_PG_ERRORS);
        drop(db);
        return STOA_AGAIN;
    }
    db->last_attempt_us = 0;
    return STOA_OK;
}

/* Classifies a finished result. A failed query on a connection that is
 * now broken is an outage (AGAIN); otherwise it is a query error. */
static int check_result(stoa_db_t *db, PGresult *res)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        db->sqlstate[0] = '\0';
        return STOA_OK;
    }
    set_error(db, res);
    /* Integrity and data exceptions (classes 23 and 22) are answers about
     * the request (a taken email, a bad uuid), not failures of Postgres. */
    if (strncmp(db->sqlstate, "23", 2) != 0 &&
        strncmp(db->sqlstate, "22", 2) != 0)
        stoa_metrics_count(STOA_METRIC_PG_ERRORS);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        stoa_log(STOA_LOG_ERR, "postgres connection lost: %s", db->error);
        drop(db);
        return STOA_AGAIN;
    }
    /* 57P01 admin shutdown, 08xxx connection exceptions: the server is
     * going away even if libpq has not noticed yet. */
    if (strncmp(db->sqlstate, "08", 2) == 0 ||
        strncmp(db->sqlstate, "57P", 3) == 0) {
        drop(db);
        return STOA_AGAIN;
    }
    /* Postgres could not do it now, though the statement is fine: a
     * statement timeout (57014, such as a wait on a lock), a lock not
     * available (55P03), a serialization failure or deadlock (class 40),
     * insufficient resources (class 53). The connection stays; the
     * request is answered 503 and may be retried. */
    if (strcmp(db->sqlstate, "57014") == 0 ||
        strcmp(db->sqlstate, "55P03") == 0 ||
        strncmp(db->sqlstate, "40", 2) == 0 ||
        strncmp(db->sqlstate, "53", 2) == 0)
        return STOA_AGAIN;
    return STOA_ERROR;
}

static void result_free(void *data)
{
    PQclear(data);
}

/* The field a data exception was about: Postgres names no parameter, but
 * quotes the text it refused ("invalid input syntax for type uuid: "x"",
 * "value "9..." is out of range for type bigint"), and refuses bytes that
 * are not UTF-8 before anything else. NULL unless exactly one field fits. */
static const char *refused_field(const PGresult *res, int nparams,
                                 const char *const *params,
                                 const char *const *fields)
{
    const char *message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    bool encoding = state && strcmp(state, "22021") == 0;
    const char *found = NULL;
    for (int i = 0; i < nparams; i++) {
        if (!fields[i] || !params[i])
            continue;
        size_t n = strlen(params[i]);
        bool fits;
        if (n == 0) {
            continue;
        } else if (encoding) {
            fits = !stoa_utf8_valid(params[i], n);
        } else {
            const char *at = message ? strstr(message, params[i]) : NULL;
            while (at && !(at > message && at[-1] == '"' && at[n] == '"'))
                at = strstr(at + 1, params[i]);
            fits = at != NULL;
        }
        if (!fits)
            continue;
        if (found && strcmp(found, fields[i]) != 0)
            return NULL;
        found = fields[i];
    }
    return found;
}

/* Marks a failure of SQLSTATE class 22, data exception: a parameter's
 * text is not a value of its type (an impossible date, a number out of
 * range, bytes that are not UTF-8, a string too long). res may be NULL or
 * a success (nothing to mark). */
static void note_data_exception(stoa_db_t *db, const PGresult *res, int nparams,
                                const char *const *params,
                                const char *const *fields)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strncmp(state, "22", 2) != 0)
        return;
    if (!db->data_exception && fields && params)
        db->data_exception_field = refused_field(res, nparams, params, fields);
    db->data_exception = true;
}

static int finish(stoa_db_t *db, stoa_arena_t *arena, PGresult *res,
                  stoa_db_result_t **out)
{
    int rc = check_result(db, res);
    if (rc != STOA_OK || !out || !arena) {
        PQclear(res);
        if (out)
            *out = NULL;
        return rc;
    }
    stoa_db_result_t *r = stoa_arena_alloc(arena, sizeof(*r));
    r->res = res;
    stoa_arena_cleanup(arena, result_free, res);
    *out = r;
    return STOA_OK;
}

/* The slot of st among the handle's statements: the table whose range
 * holds its address (a handful of tables; addresses compared as integers,
 * since they may point into different arrays). */
static size_t statement_slot(const stoa_db_t *db, const stoa_db_statement_t *st)
{
    uintptr_t at = (uintptr_t)st;
    for (size_t t = 0; t < db->ntables; t++) {
        uintptr_t base = (uintptr_t)db->tables[t].list;
        if (at >= base && at < base + db->tables[t].len * sizeof(*st))
            return db->first[t] + (at - base) / sizeof(*st);
    }
    stoa_assert_fail("statement in one of the handle's tables", __FILE__,
                     __LINE__);
}

bool stoa_db_sql_queues_jobs(const char *sql)
{
    /* Direct inserts, and the updates of sessions whose trigger queues the
     * live channel's revocation events (migration 0023). */
    return sql && (strstr(sql, "INSERT INTO jobs.outbox") != NULL ||
                   strstr(sql, "UPDATE auth.sessions") != NULL);
}

/*
 * The jobs worker LISTENs on stoa_jobs. Our connections tell the outbox
 * trigger not to NOTIFY inside the transaction (stoa.jobs_wake, migration
 * 0030): NOTIFY holds a cluster-wide lock through the commit's WAL flush,
 * which made every enqueuing transaction commit alone. The wake-up is sent
 * here instead, after the commit, in a transaction of its own that does
 * not wait for its flush (a lost wake-up costs a poll interval, never a
 * job). Each commit takes a ticket; a NOTIFY covers every ticket taken
 * before it started, so a commit whose ticket a send has covered sends
 * nothing. One send is in flight per process: a commit waits for the one
 * in flight, then sends itself unless a later send covers it. A commit
 * therefore waits for two sends at most, and a burst of commits costs a
 * few.
 */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_done = PTHREAD_COND_INITIALIZER;
static uint64_t wake_asked, wake_covered;
static bool wake_sending;
static void (*wake_in_process)(void);

void stoa_db_wake_jobs_with(void (*fn)(void))
{
    wake_in_process = fn;
}

static void wake_jobs(stoa_db_t *db)
{
    if (wake_in_process) {
        wake_in_process();
        return;
    }
    pthread_mutex_lock(&wake_lock);
    uint64_t ticket = ++wake_asked;
    while (wake_sending && wake_covered < ticket)
        pthread_cond_wait(&wake_done, &wake_lock);
    if (wake_covered >= ticket) {
        pthread_mutex_unlock(&wake_lock);
        return;
    }
    wake_sending = true;
    uint64_t cover = wake_asked;
    pthread_mutex_unlock(&wake_lock);
    if (db->conn && PQtransactionStatus(db->conn) == PQTRANS_IDLE) {
        PGresult *res =
            PQexec(db->conn, "BEGIN; SET LOCAL synchronous_commit = off; "
                             "NOTIFY stoa_jobs; COMMIT");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            stoa_log(STOA_LOG_WARN, "could not wake the jobs worker: %s",
                     PQerrorMessage(db->conn));
        PQclear(res);
    }
    pthread_mutex_lock(&wake_lock);
    wake_covered = cover;
    wake_sending = false;
    pthread_cond_broadcast(&wake_done);
    pthread_mutex_unlock(&wake_lock);
}

/* Passes on rc, a statement's status. When it succeeded and its text may
 * have queued jobs (queues), the workers are woken after the transaction
 * commits, or now when the statement ran alone. */
static int after_statement(stoa_db_t *db, bool queues, int rc)
{
    if (rc == STOA_OK && queues) {
        if (PQtransactionStatus(db->conn) == PQTRANS_IDLE)
            wake_jobs(db);
        else
            db->wake_pending = true;
    }
    return rc;
}

/* Passes on rc, a COMMIT's status, waking the workers when it committed
 * a transaction that queued jobs. */
static int after_commit(stoa_db_t *db, int rc)
{
    if (!db)
        return rc;
    bool wake = db->wake_pending;
    db->wake_pending = false;
    if (rc == STOA_OK && wake)
        wake_jobs(db);
    return rc;
}

int stoa_db_exec(stoa_db_t *db, stoa_arena_t *arena,
                 const stoa_db_statement_t *st, const char *const *params,
                 stoa_db_result_t **out)
{
    return stoa_db_exec_fields(db, arena, st, params, NULL, out);
}

/* Whether a failed statement may run once more on a new connection: its
 * connection broke, and nothing it could have changed is in doubt. That
 * holds outside a transaction for a read, and for BEGIN (nothing was sent
 * in the transaction yet). A lone write, COMMIT, or any statement inside a
 * transaction may have taken effect before the break, or lost the
 * statements before it: those answer STOA_AGAIN and the client decides.
 * idle: the connection was outside a transaction before the statement. */
static bool may_retry(stoa_db_t *db, const PGresult *res, bool idle,
                      bool harmless)
{
    if (!idle || !harmless)
        return false;
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return false;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    bool lost = !db->conn || PQstatus(db->conn) != CONNECTION_OK ||
                (state && (strncmp(state, "08", 2) == 0 ||
                           strncmp(state, "57P", 3) == 0));
    if (lost) {
        set_error(db, res);
        stoa_log(STOA_LOG_WARN,
                 "postgres connection lost before a "
                 "statement took effect (%s); retrying once "
                 "on a new connection",
                 db->error);
        drop(db);
    }
    return lost;
}

/* Connects for try number `attempt` of one statement and says in *idle
 * whether a retry may follow a break (see may_retry). */
static int connect_attempt(stoa_db_t *db, int attempt, bool *idle)
{
    int rc = stoa_db_connect(db);
    *idle = rc == STOA_OK && attempt == 0 &&
            PQtransactionStatus(db->conn) == PQTRANS_IDLE;
    return rc;
}

/* Prepares statement idx on this connection if it is not yet. STOA_OK;
 * *again: the connection broke before anything took effect and the caller
 * may try once more (see may_retry); else the failure's status. */
static int ensure_prepared(stoa_db_t *db, size_t idx,
                           const stoa_db_statement_t *st, bool idle,
                           bool *again)
{
    *again = false;
    if (db->prepared[idx] || st->plan_each_time)
        return STOA_OK;
    PGresult *pr = PQprepare(db->conn, st->name, st->sql, st->nparams, NULL);
    /* A PREPARE changes nothing but the connection it dies with. */
    if (may_retry(db, pr, idle, true)) {
        PQclear(pr);
        *again = true;
        return STOA_AGAIN;
    }
    int rc = check_result(db, pr);
    PQclear(pr);
    if (rc != STOA_OK) {
        if (rc == STOA_ERROR)
            stoa_log(STOA_LOG_CRIT, "prepare %s failed: %s", st->name,
                     db->error);
        return rc;
    }
    db->prepared[idx] = true;
    return STOA_OK;
}

int stoa_db_exec_fields(stoa_db_t *db, stoa_arena_t *arena,
                        const stoa_db_statement_t *st,
                        const char *const *params, const char *const *fields,
                        stoa_db_result_t **out)
{
    if (out)
        *out = NULL;
    if (!db)
        return STOA_AGAIN;
    size_t idx = statement_slot(db, st);
    for (int attempt = 0;; attempt++) {
        bool idle, again;
        int rc = connect_attempt(db, attempt, &idle);
        if (rc != STOA_OK)
            return rc;
        rc = ensure_prepared(db, idx, st, idle, &again);
        if (again)
            continue;
        if (rc != STOA_OK)
            return rc;
        PGresult *res = st->plan_each_time
                            ? PQexecParams(db->conn, st->sql, st->nparams, NULL,
                                           params, NULL, NULL, 0)
                            : PQexecPrepared(db->conn, st->name, st->nparams,
                                             params, NULL, NULL, 0);
        if (may_retry(db, res, idle, db->reads[idx])) {
            PQclear(res);
            continue;
        }
        note_data_exception(db, res, st->nparams, params, fields);
        return after_statement(db, db->wakes[idx], finish(db, arena, res, out));
    }
}

/* The results of one pipelined query: its result (NULL when the pipeline
 * broke before it), then the NULL that ends it. */
static PGresult *pipeline_result(PGconn *conn)
{
    PGresult *res = PQgetResult(conn);
    if (res) {
        PGresult *end = PQgetResult(conn);
        PQclear(end);
    }
    return res;
}

int stoa_db_begin_exec(stoa_db_t *db, stoa_arena_t *arena,
                       const stoa_db_statement_t *st, const char *const *params,
                       const int *lengths, const int *formats,
                       stoa_db_result_t **out)
{
    if (out)
        *out = NULL;
    if (!db)
        return STOA_AGAIN;
    size_t idx = statement_slot(db, st);
    for (int attempt = 0;; attempt++) {
        bool idle, again;
        int rc = connect_attempt(db, attempt, &idle);
        if (rc != STOA_OK)
            return rc;
        /* Only a fresh transaction: BEGIN inside one would warn and go on
         * in the old one. */
        STOA_ASSERT(PQtransactionStatus(db->conn) == PQTRANS_IDLE);
        rc = ensure_prepared(db, idx, st, idle, &again);
        if (again)
            continue;
        if (rc != STOA_OK)
            return rc;
        /* BEGIN and the statement leave in one write and are answered in
         * one: a round trip less than stoa_db_begin and stoa_db_exec. The
         * Sync after them ends the pipeline, not the transaction BEGIN
         * opened. */
        if (PQenterPipelineMode(db->conn) != 1 ||
            PQsendQueryParams(db->conn, "BEGIN", 0, NULL, NULL, NULL, NULL,
                              0) != 1 ||
            (st->plan_each_time
                 ? PQsendQueryParams(db->conn, st->sql, st->nparams, NULL,
                                     params, lengths, formats, 0)
                 : PQsendQueryPrepared(db->conn, st->name, st->nparams, params,
                                       lengths, formats, 0)) != 1 ||
            PQpipelineSync(db->conn) != 1) {
            set_error(db, NULL);
            stoa_log(STOA_LOG_ERR, "postgres pipeline failed: %s", db->error);
            drop(db);
            if (attempt == 0 && idle)
                continue;
            return STOA_AGAIN;
        }
        PGresult *begun = pipeline_result(db->conn);
        PGresult *res = begun ? pipeline_result(db->conn) : NULL;
        PGresult *sync = res ? PQgetResult(db->conn) : NULL;
        bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
        PQclear(sync);
        /* A connection left in pipeline mode would refuse the next plain
         * statement: one that cannot leave it is dropped below. */
        synced = synced && PQexitPipelineMode(db->conn) == 1;
        /* Nothing of a transaction that never committed took effect: a
         * break anywhere in it may be tried once more, like BEGIN alone. */
        int brc = check_result(db, begun);
        PQclear(begun);
        if (brc != STOA_OK || !synced) {
            PQclear(res);
            if (db->conn && !synced)
                drop(db);
            if (attempt == 0 && idle && !db->conn)
                continue;
            return brc != STOA_OK ? brc : STOA_AGAIN;
        }
        if (may_retry(db, res, idle, true)) {
            PQclear(res);
            continue;
        }
        note_data_exception(db, res, st->nparams, params, NULL);
        return after_statement(db, db->wakes[idx], finish(db, arena, res, out));
    }
}

int stoa_db_query(stoa_db_t *db, stoa_arena_t *arena, const char *sql,
                  int nparams, const char *const *params,
                  stoa_db_result_t **out)
{
    if (out)
        *out = NULL;
    bool harmless = strcmp(sql, "BEGIN") == 0 || stoa_db_sql_is_read(sql);
    for (int attempt = 0;; attempt++) {
        bool idle;
        int rc = connect_attempt(db, attempt, &idle);
        if (rc != STOA_OK)
            return rc;
        PGresult *res =
            PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
        if (may_retry(db, res, idle, harmless)) {
            PQclear(res);
            continue;
        }
        note_data_exception(db, res, nparams, params, NULL);
        return after_statement(db, stoa_db_sql_queues_jobs(sql),
                               finish(db, arena, res, out));
    }
}

int stoa_db_script(stoa_db_t *db, const char *sql)
{
    int rc = stoa_db_connect(db);
    if (rc != STOA_OK)
        return rc;
    PGresult *res = PQexec(db->conn, sql);
    return after_statement(db, stoa_db_sql_queues_jobs(sql),
                           finish(db, NULL, res, NULL));
}

/* The copy of stoa_db_copy_in; commit: sql is "COPY ...; COMMIT", sent
 * as a simple query (the only protocol that takes two statements), whose
 * second answer is the COMMIT's. */
static int copy_in(stoa_db_t *db, const char *sql, const char *data, size_t len,
                   long *rows, bool commit)
{
    if (rows)
        *rows = 0;
    int rc = stoa_db_connect(db);
    if (rc != STOA_OK)
        return rc;
    PGresult *res =
        commit ? PQexec(db->conn, sql)
               : PQexecParams(db->conn, sql, 0, NULL, NULL, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_COPY_IN) {
        rc = check_result(db, res);
        PQclear(res);
        /* A statement that succeeded without starting a copy is a bug. */
        return rc == STOA_OK ? STOA_ERROR : rc;
    }
    PQclear(res);
    /* libpq buffers what it is given and sends it in its own pieces; a
     * few large calls cost fewer copies than one a row. */
    const size_t piece = 256 * 1024;
    bool sent = true;
    for (size_t at = 0; at < len && sent; at += piece) {
        size_t n = len - at < piece ? len - at : piece;
        sent = PQputCopyData(db->conn, data + at, (int)n) == 1;
    }
    if (PQputCopyEnd(db->conn, sent ? NULL : "client gave up") != 1)
        sent = false;
    rc = STOA_OK;
    /* Drain every result, or the next statement sees the copy's. The
     * first is the copy's; with commit, the COMMIT's follows. */
    int answers = 0;
    while ((res = PQgetResult(db->conn)) != NULL) {
        if (rc == STOA_OK) {
            note_data_exception(db, res, 0, NULL, NULL);
            if (PQresultStatus(res) == PGRES_COMMAND_OK && rows && answers == 0)
                *rows = atol(PQcmdTuples(res));
            rc = check_result(db, res);
        }
        answers++;
        PQclear(res);
        if (!db->conn)
            break;
    }
    if (rc == STOA_OK && !sent) {
        set_error(db, NULL);
        rc = STOA_AGAIN;
    }
    /* Committed only when the COMMIT answered and the connection is out
     * of the transaction; a lost answer leaves its fate unknown. */
    if (rc == STOA_OK && commit &&
        (answers < 2 || !db->conn ||
         PQtransactionStatus(db->conn) != PQTRANS_IDLE)) {
        set_error(db, NULL);
        rc = STOA_AGAIN;
    }
    return rc;
}

int stoa_db_copy_in(stoa_db_t *db, const char *sql, const char *data,
                    size_t len, long *rows)
{
    return copy_in(db, sql, data, len, rows, false);
}

int stoa_db_copy_in_commit(stoa_db_t *db, const char *sql, const char *data,
                           size_t len, long *rows)
{
    return after_commit(db, copy_in(db, sql, data, len, rows, true));
}

void stoa_db_copy_escape(stoa_buf_t *out, const char *s, size_t len)
{
    stoa_buf_reserve(out, len + 8);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        char esc;
        switch (s[i]) {
        case '\\':
            esc = '\\';
            break;
        case '\t':
            esc = 't';
            break;
        case '\n':
            esc = 'n';
            break;
        case '\r':
            esc = 'r';
            break;
        default:
            continue;
        }
        stoa_buf_append(out, s + run, i - run);
        char pair[2] = {'\\', esc};
        stoa_buf_append(out, pair, 2);
        run = i + 1;
    }
    stoa_buf_append(out, s + run, len - run);
}

static int simple(stoa_db_t *db, const char *sql)
{
    return stoa_db_query(db, NULL, sql, 0, NULL, NULL);
}

int stoa_db_begin(stoa_db_t *db)
{
    if (db)
        db->wake_pending = false;
    return simple(db, "BEGIN");
}
int stoa_db_commit(stoa_db_t *db)
{
    return after_commit(db, simple(db, "COMMIT"));
}

void stoa_db_rollback(stoa_db_t *db)
{
    if (db)
        db->wake_pending = false;
    if (db && db->conn && PQstatus(db->conn) == CONNECTION_OK &&
        PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(db->conn, "ROLLBACK");
        PQclear(res);
    }
}

int stoa_db_ping(stoa_db_t *db)
{
    int rc = simple(db, "SELECT 1");
    return rc == STOA_ERROR ? STOA_AGAIN : rc;
}

int stoa_db_rows(const stoa_db_result_t *r)
{
    return r ? PQntuples(r->res) : 0;
}

const char *stoa_db_value(const stoa_db_result_t *r, int row, int col)
{
    if (!r || row >= PQntuples(r->res) || col >= PQnfields(r->res) ||
        PQgetisnull(r->res, row, col))
        return NULL;
    return PQgetvalue(r->res, row, col);
}

stoa_db_result_t *stoa_db_result_literal(stoa_arena_t *arena, int nrows,
                                         int ncols, const char *const *values)
{
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    STOA_ASSERT(res != NULL);
    PGresAttDesc *attrs =
        stoa_xcalloc(ncols ? (size_t)ncols : 1, sizeof(*attrs));
    char name[] = "column";
    for (int c = 0; c < ncols; c++) {
        attrs[c].name = name;
        attrs[c].format = 0;
        attrs[c].typlen = -1;
        attrs[c].atttypmod = -1;
    }
    STOA_ASSERT(PQsetResultAttrs(res, ncols, attrs));
    free(attrs);
    for (int r = 0; r < nrows; r++)
        for (int c = 0; c < ncols; c++) {
            const char *v = values[r * ncols + c];
            /* Length -1: SQL NULL. */
            STOA_ASSERT(
                PQsetvalue(res, r, c, (char *)v, v ? (int)strlen(v) : -1));
        }
    stoa_db_result_t *out = stoa_arena_alloc(arena, sizeof(*out));
    out->res = res;
    stoa_arena_cleanup(arena, result_free, res);
    return out;
}

long stoa_db_affected(const stoa_db_result_t *r)
{
    return r ? atol(PQcmdTuples(r->res)) : 0;
}

bool stoa_db_data_exception(const stoa_db_t *db)
{
    return db && db->data_exception;
}

const char *stoa_db_data_exception_field(const stoa_db_t *db)
{
    return db && db->data_exception ? db->data_exception_field : NULL;
}

void stoa_db_clear_data_exception(stoa_db_t *db)
{
    if (!db)
        return;
    db->data_exception = false;
    db->data_exception_field = NULL;
}

const char *stoa_db_sqlstate(const stoa_db_t *db)
{
    return db ? db->sqlstate : "";
}
const char *stoa_db_last_error(const stoa_db_t *db)
{
    return db ? db->error : "no connection free";
}

int stoa_db_socket(stoa_db_t *db)
{
    return db->conn ? PQsocket(db->conn) : -1;
}

int stoa_db_listen(stoa_db_t *db, const char *channel)
{
    int rc = stoa_db_connect(db);
    if (rc != STOA_OK)
        return rc;
    char *ident = PQescapeIdentifier(db->conn, channel, strlen(channel));
    if (!ident)
        return STOA_ERROR;
    char sql[256];
    snprintf(sql, sizeof(sql), "LISTEN %s", ident);
    PQfreemem(ident);
    return simple(db, sql);
}

int stoa_db_drain_notifications(stoa_db_t *db, int *count)
{
    *count = 0;
    if (!db->conn || PQconsumeInput(db->conn) != 1) {
        set_error(db, NULL);
        drop(db);
        return STOA_AGAIN;
    }
    PGnotify *n;
    while ((n = PQnotifies(db->conn)) != NULL) {
        (*count)++;
        PQfreemem(n);
    }
    return STOA_OK;
}
