/* dashboard.c - GET /v1/analytics/dashboard: the operators' KPIs over a
 * range (signups, active users, MRR, subscribers, churn, ARPU, failed
 * payments, revenue), each figure from one statement over rollups and
 * billing tables (docs/analytics.md defines them; statements.c holds the
 * SQL). */
#include <string.h>

#include "analytics.h"
#include "stoa/format.h"

/* ?from= and ?to=, each optional (RFC 3339 UTC or a date); the range
 * itself (order, length, defaults) is Postgres' to compute, so a date
 * and a time compare as instants rather than as text. */
static void read_bounds(stoa_request_t *req, const char **from, const char **to)
{
    static const char *const allowed[] = {"from", "to", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    const char *names[] = {"from", "to"};
    const char **values[] = {from, to};
    for (size_t i = 0; i < 2; i++) {
        *values[i] = stoa_request_query(req, names[i]);
        if (*values[i] && !stoa_time_shape_valid(*values[i], true)) {
            stoa_request_field_error(req, names[i], "invalid");
            *values[i] = NULL;
        }
    }
}

/* Runs one figure's statement over the checked range; its single row
 * lands in *res. */
static int figure(stoa_request_t *req, const stoa_db_statement_t *st,
                  const char *const *range, stoa_db_result_t **res)
{
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, st, range, res);
    if (rc == STOA_OK && stoa_db_rows(*res) != 1)
        rc = STOA_ERROR; /* each statement aggregates to one row */
    return rc;
}

/* An object member "key" holding the given columns of res's one row. */
static void write_group(stoa_jw_t *w, const char *key,
                        const stoa_db_result_t *res,
                        const stoa_column_t *columns, size_t ncolumns)
{
    stoa_jw_key(w, key);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, res, 0, columns, ncolumns);
    stoa_jw_object_close(w);
}

int analytics_dashboard(stoa_request_t *req)
{
    const char *from, *to;
    read_bounds(req, &from, &to);
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    stoa_db_result_t *range;
    const char *bounds[] = {from, to};
    static const char *const bound_fields[] = {"from", "to"};
    int rc = stoa_db_exec_fields(stoa_request_db(req), req->arena,
                                 ANALYTICS_SQL(DASHBOARD_RANGE), bounds,
                                 bound_fields, &range);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(range) != 1)
        return STOA_ERROR; /* a SELECT without FROM tables: always one row */
    /* The one row: a bad range is the client's, named by the bound that
     * makes it so (to before from; from too far back). */
    if (stoa_db_value(range, 0, RANGE_COL_ORDERED)[0] != 't')
        stoa_request_field_error(req, "to", "not_after_from");
    else if (stoa_db_value(range, 0, RANGE_COL_WITHIN_LIMIT)[0] != 't')
        stoa_request_field_error(req, "from", "range_too_long");
    else if (stoa_db_value(range, 0, RANGE_COL_IN_CALENDAR)[0] != 't')
        stoa_request_field_error(req, "from", "out_of_range");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    const char *epochs[] = {stoa_db_value(range, 0, RANGE_COL_FROM_S),
                            stoa_db_value(range, 0, RANGE_COL_TO_S)};
    stoa_db_result_t *signups, *active, *subs, *churn, *payments, *revenue;
    if ((rc = figure(req, ANALYTICS_SQL(DASHBOARD_SIGNUPS), epochs,
                     &signups)) != STOA_OK ||
        (rc = figure(req, ANALYTICS_SQL(DASHBOARD_ACTIVE), epochs, &active)) !=
            STOA_OK ||
        (rc = figure(req, ANALYTICS_SQL(DASHBOARD_SUBSCRIPTIONS), NULL,
                     &subs)) != STOA_OK ||
        (rc = figure(req, ANALYTICS_SQL(DASHBOARD_CHURN), epochs, &churn)) !=
            STOA_OK ||
        (rc = figure(req, ANALYTICS_SQL(DASHBOARD_PAYMENTS), epochs,
                     &payments)) != STOA_OK ||
        (rc = figure(req, ANALYTICS_SQL(DASHBOARD_REVENUE), epochs,
                     &revenue)) != STOA_OK)
        return rc;

    static const stoa_column_t range_columns[] = {
        {"from", RANGE_COL_FROM, STOA_COLUMN_TEXT},
        {"to", RANGE_COL_TO, STOA_COLUMN_TEXT},
        {"as_of", RANGE_COL_NOW, STOA_COLUMN_TEXT},
    };
    static const stoa_column_t signup_columns[] = {
        {"total", SIGNUPS_COL_TOTAL, STOA_COLUMN_INTEGER},
        {"by_day", SIGNUPS_COL_BY_DAY, STOA_COLUMN_JSON},
    };
    static const stoa_column_t active_columns[] = {
        {"day", ACTIVE_COL_DAY, STOA_COLUMN_TEXT},
        {"dau", ACTIVE_COL_DAU, STOA_COLUMN_INTEGER},
        {"wau", ACTIVE_COL_WAU, STOA_COLUMN_INTEGER},
        {"mau", ACTIVE_COL_MAU, STOA_COLUMN_INTEGER},
    };
    static const stoa_column_t subscription_columns[] = {
        {"active_subscribers", SUBSCRIPTIONS_COL_ACTIVE, STOA_COLUMN_INTEGER},
        {"trialing_subscribers", SUBSCRIPTIONS_COL_TRIALING,
         STOA_COLUMN_INTEGER},
        {"mrr", SUBSCRIPTIONS_COL_MRR, STOA_COLUMN_JSON},
        {"arpu", SUBSCRIPTIONS_COL_ARPU, STOA_COLUMN_JSON},
    };
    /* The rate is Postgres' float8 text: a JSON number as it stands. */
    static const stoa_column_t churn_columns[] = {
        {"rate", RATIO_COL_RATE, STOA_COLUMN_JSON},
        {"ended", RATIO_COL_NUMERATOR, STOA_COLUMN_INTEGER},
        {"active_at_start", RATIO_COL_DENOMINATOR, STOA_COLUMN_INTEGER},
    };
    static const stoa_column_t payment_columns[] = {
        {"rate", RATIO_COL_RATE, STOA_COLUMN_JSON},
        {"failed", RATIO_COL_NUMERATOR, STOA_COLUMN_INTEGER},
        {"due", RATIO_COL_DENOMINATOR, STOA_COLUMN_INTEGER},
    };
    static const stoa_column_t revenue_columns[] = {
        {"total", REVENUE_COL_TOTAL, STOA_COLUMN_JSON},
        {"by_day", REVENUE_COL_BY_DAY, STOA_COLUMN_JSON},
    };

    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, range, 0, range_columns,
                            STOA_ARRAY_LEN(range_columns));
    write_group(w, "signups", signups, signup_columns,
                STOA_ARRAY_LEN(signup_columns));
    write_group(w, "active_users", active, active_columns,
                STOA_ARRAY_LEN(active_columns));
    /* The subscription figures are the state now (billing keeps each
     * subscription's current state only), at the top level. */
    stoa_http_write_columns(w, subs, 0, subscription_columns,
                            STOA_ARRAY_LEN(subscription_columns));
    write_group(w, "churn", churn, churn_columns,
                STOA_ARRAY_LEN(churn_columns));
    write_group(w, "failed_payments", payments, payment_columns,
                STOA_ARRAY_LEN(payment_columns));
    write_group(w, "revenue", revenue, revenue_columns,
                STOA_ARRAY_LEN(revenue_columns));
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}
