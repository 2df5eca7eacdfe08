/* export.c - GET /v1/analytics/export: raw events of a range as CSV
 * (RFC 4180), streamed from a cursor a chunk at a time. */
#include <string.h>

#include "analytics.h"
#include "stoa/ingest.h"
#include "stoa/log.h"

#define EXPORT_HEADER "id,timestamp,event,distinct_id,user_id,properties\r\n"

/* The rows of one fetch as CSV records into out (emptied first). */
static void chunk_csv(stoa_buf_t *out, const stoa_db_result_t *res)
{
    static const int columns[] = {EXPORT_COL_ID,      EXPORT_COL_TS,
                                  EXPORT_COL_EVENT,   EXPORT_COL_DISTINCT_ID,
                                  EXPORT_COL_USER_ID, EXPORT_COL_PROPERTIES};
    stoa_buf_reset(out);
    for (int r = 0; r < stoa_db_rows(res); r++) {
        for (size_t c = 0; c < STOA_ARRAY_LEN(columns); c++) {
            if (c)
                stoa_buf_append(out, ",", 1);
            stoa_ingest_csv_field(out, stoa_db_value(res, r, columns[c]));
        }
        stoa_buf_append(out, "\r\n", 2);
    }
}

int analytics_export(stoa_request_t *req)
{
    static const char *const allowed[] = {"event", "from", "to", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    const char *from, *to;
    analytics_query_range(req, &from, &to);
    const char *event = stoa_request_query(req, "event");
    if (event && !stoa_ingest_name_valid(event))
        stoa_request_field_error(req, "event", "invalid");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    stoa_db_t *db = stoa_request_db(req);
    const char *params[] = {from, to, event};
    /* Each chunk's result lives in an arena of its own, reset before the
     * next fetch: the request's arena would keep every one to the end. */
    stoa_arena_t *chunk = stoa_arena_create(0);
    stoa_db_result_t *res = NULL;
    int rc = stoa_db_begin(db);
    if (rc == STOA_OK)
        rc = stoa_db_exec(db, req->arena, ANALYTICS_SQL(EXPORT_OPEN), params,
                          NULL);
    if (rc == STOA_OK)
        rc = stoa_db_exec(db, chunk, ANALYTICS_SQL(EXPORT_FETCH), NULL, &res);
    if (rc != STOA_OK) {
        stoa_arena_destroy(chunk);
        return rc;
    }
    /* The first chunk is in hand: from here the answer is the stream. */
    stoa_http_header(req, "Content-Disposition",
                     "attachment; filename=\"events.csv\"");
    stoa_buf_t out;
    stoa_buf_init(&out);
    stoa_buf_puts(&out, EXPORT_HEADER);
    rc = stoa_http_stream_begin(req, 200, "text/csv; charset=utf-8");
    if (rc == STOA_OK)
        rc = stoa_http_stream_write(req, out.data, out.len);
    long rows = 0;
    while (rc == STOA_OK && stoa_db_rows(res) > 0) {
        rows += stoa_db_rows(res);
        chunk_csv(&out, res);
        rc = stoa_http_stream_write(req, out.data, out.len);
        stoa_arena_reset(chunk);
        res = NULL;
        if (rc == STOA_OK)
            rc = stoa_db_exec(db, chunk, ANALYTICS_SQL(EXPORT_FETCH), NULL,
                              &res);
    }
    stoa_arena_destroy(chunk);
    stoa_buf_free(&out);
    stoa_db_rollback(db);
    if (rc != STOA_OK) {
        stoa_log(STOA_LOG_WARN, "export ended early after %ld rows", rows);
        stoa_http_stream_abort(req);
    }
    return STOA_OK;
}
