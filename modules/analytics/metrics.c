/* metrics.c - GET /v1/analytics/metrics: counts and uniques of one event
 * name per hour, day, week or month, read from the rollups (the jobs
 * worker keeps them current, modules/jobs/analytics.c). */
#include <string.h>

#include "analytics.h"
#include "stoa/format.h"
#include "stoa/ingest.h"

/* from and to: required RFC 3339 times or dates, from before to. */
bool analytics_query_range(stoa_request_t *req, const char **from,
                           const char **to)
{
    *from = stoa_request_query(req, "from");
    *to = stoa_request_query(req, "to");
    const char *names[] = {"from", "to"};
    const char **values[] = {from, to};
    for (size_t i = 0; i < 2; i++) {
        if (!*values[i]) {
            if (!stoa_request_has_field_errors(req) ||
                !strstr(req->field_errors.data, names[i]))
                stoa_request_field_error(req, names[i], "required");
        } else if (!stoa_time_shape_valid(*values[i], true)) {
            stoa_request_field_error(req, names[i], "invalid");
            *values[i] = NULL;
        }
    }
    if (*from && *to && strlen(*from) == strlen(*to) &&
        strcmp(*from, *to) >= 0) {
        stoa_request_field_error(req, "to", "not_after_from");
        return false;
    }
    return *from && *to;
}

int analytics_metrics(stoa_request_t *req)
{
    static const char *const allowed[] = {"event", "interval", "from", "to",
                                          NULL};
    stoa_request_query_reject_unknown(req, allowed);
    const char *event = stoa_request_query(req, "event");
    const char *interval = stoa_request_query(req, "interval");
    const char *from, *to;
    analytics_query_range(req, &from, &to);
    if (!event)
        stoa_request_field_error(req, "event", "required");
    else if (!stoa_ingest_name_valid(event))
        stoa_request_field_error(req, "event", "invalid");
    static const char *const intervals[] = {"hour", "day", "week", "month"};
    bool known = false;
    for (size_t i = 0; interval && i < STOA_ARRAY_LEN(intervals); i++)
        known = known || strcmp(interval, intervals[i]) == 0;
    if (!known)
        stoa_request_field_error(req, "interval",
                                 interval ? "invalid" : "required");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    bool hourly = strcmp(interval, "hour") == 0;
    const char *params[] = {event, from, to, interval};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          hourly ? ANALYTICS_SQL(METRICS_HOURLY)
                                 : ANALYTICS_SQL(METRICS_DAILY),
                          params, &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_column_t point[] = {
        {"t", METRICS_COL_T, STOA_COLUMN_TEXT},
        {"count", METRICS_COL_COUNT, STOA_COLUMN_INTEGER},
        {"unique", METRICS_COL_UNIQUE, STOA_COLUMN_INTEGER},
    };
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "event", event);
    stoa_jw_kv_string(w, "interval", interval);
    stoa_jw_key(w, "points");
    stoa_jw_array_open(w);
    for (int i = 0; i < stoa_db_rows(res); i++) {
        stoa_jw_object_open(w);
        stoa_http_write_columns(w, res, i, point, STOA_ARRAY_LEN(point));
        stoa_jw_object_close(w);
    }
    stoa_jw_array_close(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
