/* statements.h - the analytics pool's statements (statements.c) by id, and
 * the columns each reading statement returns, in its SELECT or RETURNING
 * order. */
#ifndef ANALYTICS_STATEMENTS_H
#define ANALYTICS_STATEMENTS_H

#include "stoa/db.h"

enum {
    ANALYTICS_SQL_EVENTS_CLAIM,
    ANALYTICS_SQL_INGEST_KEY_FIND,
    ANALYTICS_SQL_INGEST_KEY_INSERT,
    ANALYTICS_SQL_INGEST_KEY_LIST,
    ANALYTICS_SQL_INGEST_KEY_REVOKE,
    ANALYTICS_SQL_METRICS_HOURLY,
    ANALYTICS_SQL_METRICS_DAILY,
    ANALYTICS_SQL_EXPORT_OPEN,
    ANALYTICS_SQL_EXPORT_FETCH,
    ANALYTICS_SQL_COUNT
};

/* The statement of an id: ANALYTICS_SQL(EVENTS_CLAIM). */
#define ANALYTICS_SQL(id) (&analytics_statements[ANALYTICS_SQL_##id])

extern const stoa_db_statement_t analytics_statements[ANALYTICS_SQL_COUNT];
extern const size_t analytics_statements_len;

/* ANALYTICS_SQL_EVENTS_CLAIM */
enum { CLAIM_COL_ID };
/* ANALYTICS_SQL_INGEST_KEY_FIND */
enum { KEY_FIND_COL_ID };
/* ANALYTICS_SQL_INGEST_KEY_INSERT, _LIST */
enum {
    KEY_COL_ID,
    KEY_COL_NAME,
    KEY_COL_PREFIX,
    KEY_COL_CREATED_BY,
    KEY_COL_CREATED_AT,
    KEY_COL_REVOKED_AT,
    KEY_COL_CURSOR_US
};
/* ANALYTICS_SQL_METRICS_* */
enum { METRICS_COL_T, METRICS_COL_COUNT, METRICS_COL_UNIQUE };
/* ANALYTICS_SQL_EXPORT_FETCH */
enum {
    EXPORT_COL_ID,
    EXPORT_COL_TS,
    EXPORT_COL_EVENT,
    EXPORT_COL_DISTINCT_ID,
    EXPORT_COL_USER_ID,
    EXPORT_COL_PROPERTIES
};
/* Rows fetched from the export's cursor at a time. */
#define ANALYTICS_EXPORT_CHUNK "1000"

#endif
