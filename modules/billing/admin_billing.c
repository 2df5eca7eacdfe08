/* admin_billing.c - /v1/admin/billing/...: every user's subscriptions
 * and invoices, for the finance and admin roles, filtered by status,
 * plan and time. */
#include <string.h>

#include "billing.h"
#include "stoa/format.h"

/* Filters shared by both lists; false with field errors when invalid. */
typedef struct {
    const char *status, *plan, *from, *to;
    stoa_page_t page;
} filters_t;

/* The request field behind each parameter of both list statements. */
static const char *const filter_fields[] = {"status", "plan",   "from", "to",
                                            "cursor", "cursor", NULL};

static bool read_filters(stoa_request_t *req, const char *const *statuses,
                         filters_t *f)
{
    memset(f, 0, sizeof(*f));
    stoa_request_page(req, STOA_PAGE_KEYSET, &f->page);
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

/* Runs one of the two list statements with the filters and answers the
 * page. */
static int answer_list(stoa_request_t *req, const filters_t *f,
                       const stoa_db_statement_t *st, const stoa_list_t *list)
{
    const char *params[] = {f->status,    f->plan,           f->from,
                            f->to,        f->page.cursor_ts, f->page.cursor_id,
                            f->page.fetch};
    stoa_db_result_t *res;
    int rc = stoa_db_exec_fields(stoa_request_db(req), req->arena, st, params,
                                 filter_fields, &res);
    if (rc != STOA_OK)
        return rc;
    return stoa_http_list(req, res, &f->page, list);
}

static const stoa_column_t subscription_columns[] = {
    {"id", FINANCE_SUB_COL_ID, STOA_COLUMN_TEXT},
    {"user_id", FINANCE_SUB_COL_USER_ID, STOA_COLUMN_TEXT},
    {"email", FINANCE_SUB_COL_EMAIL, STOA_COLUMN_TEXT},
    {"status", FINANCE_SUB_COL_STATUS, STOA_COLUMN_TEXT},
    {"plan", FINANCE_SUB_COL_PLAN, STOA_COLUMN_TEXT},
    {"stripe_price_id", FINANCE_SUB_COL_STRIPE_PRICE_ID, STOA_COLUMN_TEXT},
    {"current_period_end", FINANCE_SUB_COL_CURRENT_PERIOD_END,
     STOA_COLUMN_TEXT},
    {"cancel_at_period_end", FINANCE_SUB_COL_CANCEL_AT_PERIOD_END,
     STOA_COLUMN_BOOL},
    {"updated_at", FINANCE_SUB_COL_UPDATED_AT, STOA_COLUMN_TEXT},
    {"stripe_subscription_id", FINANCE_SUB_COL_STRIPE_SUBSCRIPTION_ID,
     STOA_COLUMN_TEXT},
};

int billing_finance_subscriptions(stoa_request_t *req)
{
    filters_t f;
    if (!read_filters(req, billing_subscription_statuses, &f))
        return stoa_http_invalid_fields(req);
    static const stoa_list_t list = {
        subscription_columns, STOA_ARRAY_LEN(subscription_columns), NULL,
        FINANCE_SUB_COL_CURSOR_US, FINANCE_SUB_COL_ID};
    return answer_list(req, &f, BILLING_SQL(FINANCE_SUBSCRIPTIONS), &list);
}

static const stoa_column_t invoice_columns[] = {
    {"id", FINANCE_INV_COL_ID, STOA_COLUMN_TEXT},
    {"user_id", FINANCE_INV_COL_USER_ID, STOA_COLUMN_TEXT},
    {"email", FINANCE_INV_COL_EMAIL, STOA_COLUMN_TEXT},
    {"number", FINANCE_INV_COL_NUMBER, STOA_COLUMN_TEXT},
    {"status", FINANCE_INV_COL_STATUS, STOA_COLUMN_TEXT},
    {"amount_due", FINANCE_INV_COL_AMOUNT_DUE, STOA_COLUMN_INTEGER},
    {"amount_paid", FINANCE_INV_COL_AMOUNT_PAID, STOA_COLUMN_INTEGER},
    {"amount_refunded", FINANCE_INV_COL_AMOUNT_REFUNDED, STOA_COLUMN_INTEGER},
    {"currency", FINANCE_INV_COL_CURRENCY, STOA_COLUMN_TEXT},
    {"created", FINANCE_INV_COL_CREATED, STOA_COLUMN_TEXT},
    {"hosted_invoice_url", FINANCE_INV_COL_HOSTED_INVOICE_URL,
     STOA_COLUMN_TEXT},
    {"plan", FINANCE_INV_COL_PLAN, STOA_COLUMN_TEXT},
};

int billing_finance_invoices(stoa_request_t *req)
{
    static const char *const statuses[] = {"draft",         "open", "paid",
                                           "uncollectible", "void", NULL};
    filters_t f;
    if (!read_filters(req, statuses, &f))
        return stoa_http_invalid_fields(req);
    static const stoa_list_t list = {
        invoice_columns, STOA_ARRAY_LEN(invoice_columns), NULL,
        FINANCE_INV_COL_CURSOR_US, FINANCE_INV_COL_ID};
    return answer_list(req, &f, BILLING_SQL(FINANCE_INVOICES), &list);
}
