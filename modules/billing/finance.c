/* finance.c - every user's subscriptions and invoices, for the finance
 * and admin roles, filtered by status, plan and time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "billing.h"
#include "stoa/format.h"

/* Filters shared by both lists; false with field errors when invalid. */
typedef struct {
    const char *status, *plan, *from, *to, *cursor_ts, *cursor_id;
    int limit;
} filters_t;

/* The request field behind each parameter of both list statements. */
static const char *const filter_fields[] = {"status", "plan",   "from", "to",
                                            "cursor", "cursor", NULL};

static bool read_filters(stoa_request_t *req, const char *const *statuses,
                         filters_t *f)
{
    memset(f, 0, sizeof(*f));
    stoa_request_limit(req, &f->limit);
    stoa_request_cursor(req, &f->cursor_ts, &f->cursor_id);
    f->status = stoa_request_query(req, "status");
    if (f->status) {
        const char *const *s = statuses;
        while (*s && strcmp(*s, f->status) != 0)
            s++;
        if (!*s)
            stoa_request_field_error(req, "status", "unknown");
    }
    f->plan = stoa_request_query(req, "plan");
    if (f->plan && (!*f->plan || strlen(f->plan) > 64))
        stoa_request_field_error(req, "plan", "invalid");
    f->from = stoa_request_query(req, "from");
    if (f->from && !stoa_time_shape_valid(f->from, true))
        stoa_request_field_error(req, "from", "invalid_time");
    f->to = stoa_request_query(req, "to");
    if (f->to && !stoa_time_shape_valid(f->to, true))
        stoa_request_field_error(req, "to", "invalid_time");
    return !stoa_request_has_field_errors(req);
}

int billing_finance_subscriptions(stoa_request_t *req)
{
    filters_t f;
    if (!read_filters(req, billing_subscription_statuses, &f))
        return stoa_http_invalid_fields(req);
    char fetch[16];
    snprintf(fetch, sizeof(fetch), "%d", f.limit + 1);
    const char *params[] = {f.status,    f.plan,        f.from, f.to,
                            f.cursor_ts, f.cursor_id, fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec_fields(stoa_request_db(req), req->arena,
                                 "finance_subscriptions", params,
                                 filter_fields, &res);
    if (rc != STOA_OK)
        return rc;
    int rows = stoa_db_rows(res), shown = rows > f.limit ? f.limit : rows;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < shown; i++) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", stoa_db_value(res, i, 0));
        stoa_jw_kv_string(w, "user_id", stoa_db_value(res, i, 1));
        stoa_jw_kv_string(w, "email", stoa_db_value(res, i, 2));
        stoa_jw_kv_string(w, "status", stoa_db_value(res, i, 3));
        stoa_jw_kv_string(w, "plan", stoa_db_value(res, i, 4));
        stoa_jw_kv_string(w, "stripe_price_id", stoa_db_value(res, i, 5));
        stoa_jw_kv_string(w, "current_period_end", stoa_db_value(res, i, 6));
        stoa_jw_kv_bool(w, "cancel_at_period_end",
                        stoa_db_value(res, i, 7)[0] == 't');
        stoa_jw_kv_string(w, "updated_at", stoa_db_value(res, i, 8));
        stoa_jw_kv_string(w, "stripe_subscription_id", stoa_db_value(res, i, 10));
        stoa_jw_object_close(w);
    }
    return stoa_http_page_end(req, res, rows, f.limit, 9, 0);
}

int billing_finance_invoices(stoa_request_t *req)
{
    static const char *const statuses[] = {"draft", "open", "paid",
                                           "uncollectible", "void", NULL};
    filters_t f;
    if (!read_filters(req, statuses, &f))
        return stoa_http_invalid_fields(req);
    char fetch[16];
    snprintf(fetch, sizeof(fetch), "%d", f.limit + 1);
    const char *params[] = {f.status,    f.plan,        f.from, f.to,
                            f.cursor_ts, f.cursor_id, fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec_fields(stoa_request_db(req), req->arena, "finance_invoices",
                                 params, filter_fields, &res);
    if (rc != STOA_OK)
        return rc;
    int rows = stoa_db_rows(res), shown = rows > f.limit ? f.limit : rows;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < shown; i++) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", stoa_db_value(res, i, 0));
        stoa_jw_kv_string(w, "user_id", stoa_db_value(res, i, 1));
        stoa_jw_kv_string(w, "email", stoa_db_value(res, i, 2));
        stoa_jw_kv_string(w, "number", stoa_db_value(res, i, 3));
        stoa_jw_kv_string(w, "status", stoa_db_value(res, i, 4));
        stoa_jw_kv_integer(w, "amount_due", atoll(stoa_db_value(res, i, 5)));
        stoa_jw_kv_integer(w, "amount_paid", atoll(stoa_db_value(res, i, 6)));
        stoa_jw_kv_integer(w, "amount_refunded", atoll(stoa_db_value(res, i, 7)));
        stoa_jw_kv_string(w, "currency", stoa_db_value(res, i, 8));
        stoa_jw_kv_string(w, "created", stoa_db_value(res, i, 9));
        stoa_jw_kv_string(w, "hosted_invoice_url", stoa_db_value(res, i, 11));
        stoa_jw_kv_string(w, "plan", stoa_db_value(res, i, 12));
        stoa_jw_object_close(w);
    }
    return stoa_http_page_end(req, res, rows, f.limit, 10, 0);
}
